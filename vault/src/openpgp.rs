//! Account key pairs: an Ed25519 primary key for signing and certification
//! with an X25519 (Curve25519) encryption subkey, in the v4 "legacy" forms
//! that GnuPG 2.2 and Thunderbird read. The secret key is locked with the
//! account's password (iterated and salted S2K, AES-256), so the server
//! cannot use it, and the user can import it into any OpenPGP client.

use pgp::composed::{
    ArmorOptions, Deserializable, EncryptionCaps, KeyType, SecretKeyParamsBuilder, SignedPublicKey,
    SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::{KeyDetails, Password};

use crate::VaultError;

/// The secret key with each packet's header framed for what it now holds.
/// rpgp keeps a secret key packet's header (its length) when the password
/// is set or removed, then writes the right length and logs "packet header
/// mismatch" for every such packet: twice per account created, which an
/// operator reads as an error. Rebuilding the packets computes the header.
fn reframed(mut secret: SignedSecretKey) -> Result<SignedSecretKey, VaultError> {
    use pgp::packet::{SecretKey, SecretSubkey};
    secret.primary_key = SecretKey::new(
        secret.primary_key.public_key().clone(),
        secret.primary_key.secret_params().clone(),
    )
    .map_err(pgp_err)?;
    for sub in &mut secret.secret_subkeys {
        sub.key = SecretSubkey::new(
            sub.key.public_key().clone(),
            sub.key.secret_params().clone(),
        )
        .map_err(pgp_err)?;
    }
    Ok(secret)
}

/// A freshly generated or re-locked account key, ASCII-armored.
#[derive(Clone)]
pub struct AccountKey {
    /// Upper-case hex fingerprint of the primary key.
    pub fingerprint: String,
    pub public_armored: String,
    /// The transferable secret key, locked with the account's password.
    pub secret_armored: String,
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn pgp_err(e: impl std::fmt::Display) -> VaultError {
    VaultError::OpenPgp(e.to_string())
}

impl AccountKey {
    /// Generates a key pair for `user_id` (`Name <address>`), locked with `passphrase`.
    pub fn generate(user_id: &str, passphrase: &str) -> Result<AccountKey, VaultError> {
        Self::generate_with(user_id, Some(passphrase))
    }

    /// Generates a key pair whose secret half has no passphrase: for a
    /// caller that locks it otherwise at once (an activation link's key).
    pub fn generate_unprotected(user_id: &str) -> Result<AccountKey, VaultError> {
        Self::generate_with(user_id, None)
    }

    fn generate_with(user_id: &str, passphrase: Option<&str>) -> Result<AccountKey, VaultError> {
        let mut rng = rand08::thread_rng();
        let encryption = SubkeyParamsBuilder::default()
            .key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
            .can_encrypt(EncryptionCaps::All)
            .passphrase(passphrase.map(str::to_owned))
            .build()
            .map_err(pgp_err)?;
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(user_id.to_owned())
            .passphrase(passphrase.map(str::to_owned))
            .preferred_symmetric_algorithms(
                [SymmetricKeyAlgorithm::AES256, SymmetricKeyAlgorithm::AES128]
                    .into_iter()
                    .collect(),
            )
            .preferred_hash_algorithms(
                [HashAlgorithm::Sha256, HashAlgorithm::Sha512]
                    .into_iter()
                    .collect(),
            )
            .subkeys(vec![encryption])
            .build()
            .map_err(pgp_err)?;
        let secret = params.generate(&mut rng).map_err(pgp_err)?;
        Self::from_secret(secret)
    }

    fn from_secret(secret: SignedSecretKey) -> Result<AccountKey, VaultError> {
        let secret = reframed(secret)?;
        let public: SignedPublicKey = secret.to_public_key();
        Ok(AccountKey {
            fingerprint: hex_upper(secret.fingerprint().as_bytes()),
            public_armored: public
                .to_armored_string(ArmorOptions::default())
                .map_err(pgp_err)?,
            secret_armored: secret
                .to_armored_string(ArmorOptions::default())
                .map_err(pgp_err)?,
        })
    }

    /// Re-locks an armored secret key: unlocks it with `old` and locks it with `new`.
    pub fn relock(secret_armored: &str, old: &str, new: &str) -> Result<AccountKey, VaultError> {
        let (mut secret, _) = SignedSecretKey::from_string(secret_armored).map_err(pgp_err)?;
        let mut rng = rand08::thread_rng();
        let (old, new) = (Password::from(old), Password::from(new));
        secret
            .primary_key
            .remove_password(&old)
            .map_err(|_| VaultError::WrongPassphrase)?;
        secret
            .primary_key
            .set_password(&mut rng, &new)
            .map_err(pgp_err)?;
        for sub in &mut secret.secret_subkeys {
            sub.key
                .remove_password(&old)
                .map_err(|_| VaultError::WrongPassphrase)?;
            sub.key.set_password(&mut rng, &new).map_err(pgp_err)?;
        }
        Self::from_secret(secret)
    }

    /// The armored secret key unlocked with `passphrase` and armored again
    /// without one: for the user's own machine (and to lock it again there).
    pub fn unprotect(secret_armored: &str, passphrase: &str) -> Result<String, VaultError> {
        let (mut secret, _) = SignedSecretKey::from_string(secret_armored).map_err(pgp_err)?;
        let passphrase = Password::from(passphrase);
        secret
            .primary_key
            .remove_password(&passphrase)
            .map_err(|_| VaultError::WrongPassphrase)?;
        for sub in &mut secret.secret_subkeys {
            sub.key
                .remove_password(&passphrase)
                .map_err(|_| VaultError::WrongPassphrase)?;
        }
        reframed(secret)?
            .to_armored_string(ArmorOptions::default())
            .map_err(pgp_err)
    }

    /// The armored public key in binary form (what WKD serves).
    pub fn binary_public_key(public_armored: &str) -> Result<Vec<u8>, VaultError> {
        use pgp::ser::Serialize;
        let (key, _) = SignedPublicKey::from_string(public_armored).map_err(pgp_err)?;
        key.to_bytes().map_err(pgp_err)
    }

    /// A key found for `address` (e.g. by Web Key Directory), in binary
    /// form: accepted, armored, only if its self-signatures verify, it
    /// names the address in a user ID and it can encrypt.
    pub fn armored_for_address(binary: &[u8], address: &str) -> Result<String, VaultError> {
        let key = SignedPublicKey::from_bytes(binary).map_err(pgp_err)?;
        key.verify_bindings().map_err(pgp_err)?;
        let wanted = address.to_ascii_lowercase();
        let names_address = key.details.users.iter().any(|user| {
            let id = String::from_utf8_lossy(user.id.id()).to_ascii_lowercase();
            id == wanted || id.ends_with(&format!("<{wanted}>"))
        });
        if !names_address {
            return Err(VaultError::OpenPgp(format!(
                "the key has no user ID for {address}"
            )));
        }
        if !key
            .public_subkeys
            .iter()
            .any(|k| k.algorithm().can_encrypt())
        {
            return Err(VaultError::OpenPgp(
                "the key has no encryption subkey".into(),
            ));
        }
        key.to_armored_string(ArmorOptions::default())
            .map_err(pgp_err)
    }

    /// A public key a user's device made for its own account at `address`:
    /// accepted only as [`AccountKey::armored_for_address`] accepts one, and
    /// if a message encrypts to it; answered armored, with its fingerprint.
    pub fn accept_own(public_armored: &str, address: &str) -> Result<(String, String), VaultError> {
        use pgp::ser::Serialize;
        let (key, _) = SignedPublicKey::from_string(public_armored).map_err(pgp_err)?;
        let armored = Self::armored_for_address(&key.to_bytes().map_err(pgp_err)?, address)?;
        crate::seal::encrypt(&armored, b"a message sealed to the new key")?;
        Ok((hex_upper(key.fingerprint().as_bytes()), armored))
    }

    /// Whether `passphrase` unlocks the armored secret key.
    pub fn unlocks(secret_armored: &str, passphrase: &str) -> bool {
        let Ok((secret, _)) = SignedSecretKey::from_string(secret_armored) else {
            return false;
        };
        let mut primary = secret.primary_key.clone();
        primary.remove_password(&Password::from(passphrase)).is_ok()
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_locked_and_relock() {
        let key = AccountKey::generate("Alice <alice@example.com>", "first passphrase").unwrap();
        assert_eq!(key.fingerprint.len(), 40);
        assert!(
            key.public_armored
                .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        );
        assert!(
            key.secret_armored
                .starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----")
        );
        assert!(AccountKey::unlocks(&key.secret_armored, "first passphrase"));
        assert!(!AccountKey::unlocks(&key.secret_armored, "wrong"));

        let relocked =
            AccountKey::relock(&key.secret_armored, "first passphrase", "second passphrase")
                .unwrap();
        assert_eq!(relocked.fingerprint, key.fingerprint, "same key, new lock");
        assert!(AccountKey::unlocks(
            &relocked.secret_armored,
            "second passphrase"
        ));
        assert!(!AccountKey::unlocks(
            &relocked.secret_armored,
            "first passphrase"
        ));
        assert!(matches!(
            AccountKey::relock(&key.secret_armored, "wrong", "x"),
            Err(VaultError::WrongPassphrase)
        ));
    }

    /// Whether any secret key packet's header says a length other than
    /// what is written (what rpgp logs as "packet header mismatch").
    fn stale_header(secret: &SignedSecretKey) -> bool {
        use pgp::packet::PacketTrait;
        use pgp::ser::Serialize;
        let stale = |header: &pgp::packet::PacketHeader, len: usize| {
            header.packet_length().maybe_len() != Some(len as u32)
        };
        stale(
            secret.primary_key.packet_header(),
            secret.primary_key.write_len(),
        ) || secret
            .secret_subkeys
            .iter()
            .any(|s| stale(s.key.packet_header(), s.key.write_len()))
    }

    #[test]
    fn secret_key_packets_are_framed_for_their_lock() {
        let key = AccountKey::generate("Carol <carol@example.com>", "carol's passphrase").unwrap();
        let (mut secret, _) = SignedSecretKey::from_string(&key.secret_armored).unwrap();
        assert!(!stale_header(&secret), "a parsed key is framed as read");
        let password = Password::from("carol's passphrase");
        secret.primary_key.remove_password(&password).unwrap();
        for sub in &mut secret.secret_subkeys {
            sub.key.remove_password(&password).unwrap();
        }
        assert!(stale_header(&secret), "rpgp keeps the locked length");
        let secret = reframed(secret).unwrap();
        assert!(!stale_header(&secret));
        // Written and read back, it is the same key, framed as written.
        let armored = secret.to_armored_string(ArmorOptions::default()).unwrap();
        let (read, _) = SignedSecretKey::from_string(&armored).unwrap();
        assert_eq!(hex_upper(read.fingerprint().as_bytes()), key.fingerprint);
        assert_eq!(read.secret_subkeys.len(), secret.secret_subkeys.len());
        assert!(!stale_header(&read));
    }

    #[test]
    fn keys_found_for_an_address_must_name_it() {
        let key = AccountKey::generate("Bob <bob@example.com>", "bob's passphrase").unwrap();
        let binary = AccountKey::binary_public_key(&key.public_armored).unwrap();
        let armored = AccountKey::armored_for_address(&binary, "Bob@Example.com").unwrap();
        assert!(armored.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
        let wrong = AccountKey::armored_for_address(&binary, "eve@example.com").unwrap_err();
        assert!(
            wrong.to_string().contains("no user ID for eve@example.com"),
            "{wrong}"
        );
        assert!(AccountKey::armored_for_address(b"not a key", "bob@example.com").is_err());
    }
}
