//! Sign-in that never shows the server the password, and the secret key
//! locked with a secret only the user's device can derive.
//!
//! The construction, precisely enough to write a second client from it
//! (`docs/sign-in.md` walks through the HTTP flow):
//!
//! - **OPAQUE** (RFC 9807) with the suite of `@serenity-kit/opaque` 1.x,
//!   so that a browser can run it as WebAssembly: OPRF on ristretto255
//!   (SHA-512), 3DH key exchange on ristretto255 with SHA-512, no client or
//!   server identifiers (both default to the public keys), no context.
//! - **Key stretching** inside OPAQUE: Argon2id v1.3 over the OPRF output,
//!   with a salt of 16 zero bytes (the OPRF output is already unique to the
//!   user and the server), output as long as its input. Its parameters are
//!   stored per account and sent to the client before it stretches, so they
//!   can be raised over time (at the next password change); the default is
//!   RFC 9106's memory-constrained choice (t = 3, m = 64 MiB, p = 4).
//! - **Two secrets from one password.** OPAQUE's `export_key` (64 bytes)
//!   never leaves the client. The key-encryption key is
//!   `HKDF-SHA-256(salt = "caliop/key-wrap/v1", ikm = export_key,
//!   info = "caliop secret key")`, 32 bytes. The account's OpenPGP secret
//!   key, armored *without* a passphrase, is sealed with AES-256-GCM under
//!   it (a random 12-byte nonce, additional data `caliop-key-v1`), and the
//!   server stores `caliop-key-v1:` followed by the unpadded base64url of
//!   `nonce || ciphertext || tag`. The server holds the OPAQUE record (the
//!   client's public key, masking key and envelope) and this blob: neither
//!   yields the password or the key without an offline attack that runs
//!   Argon2id per guess *and* needs the server's OPRF seed.
//!
//! Every OPAQUE message travels as unpadded base64url, as
//! `@serenity-kit/opaque` writes them.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use base64::Engine;
use generic_array::{ArrayLength, GenericArray};
use opaque_ke::errors::InternalError;
use opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialFinalization, CredentialRequest,
    CredentialResponse, Identifiers, RegistrationRequest, RegistrationResponse, RegistrationUpload,
    ServerLogin, ServerLoginParameters, ServerRegistration, ServerSetup,
};
use serde::{Deserialize, Serialize};

use crate::VaultError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The cipher suite, identical to `@serenity-kit/opaque`'s default one.
pub struct Suite;

impl opaque_ke::CipherSuite for Suite {
    type OprfCs = opaque_ke::Ristretto255;
    type KeyExchange = opaque_ke::TripleDh<opaque_ke::Ristretto255, sha2::Sha512>;
    type Ksf = Stretch;
}

/// Argon2id parameters of an account's key stretching.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KsfParams {
    /// Passes over memory (Argon2's t).
    pub iterations: u32,
    /// Memory in KiB (Argon2's m).
    pub memory_kib: u32,
    /// Lanes (Argon2's p).
    pub parallelism: u32,
}

impl Default for KsfParams {
    /// RFC 9106 §4, second recommendation (memory-constrained), which is
    /// also `@serenity-kit/opaque`'s default.
    fn default() -> Self {
        KsfParams {
            iterations: 3,
            memory_kib: 65_536,
            parallelism: 4,
        }
    }
}

impl KsfParams {
    /// Cheap parameters, for tests that sign in many times.
    pub fn for_tests() -> KsfParams {
        KsfParams {
            iterations: 1,
            memory_kib: 256,
            parallelism: 1,
        }
    }

    fn stretch(&self) -> Result<Stretch, VaultError> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| VaultError::Opaque(format!("key stretching parameters: {e}")))?;
        Ok(Stretch(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        )))
    }
}

/// Argon2id with a zero salt, as OPAQUE's key stretching function.
#[derive(Default)]
pub struct Stretch(argon2::Argon2<'static>);

impl opaque_ke::ksf::Ksf for Stretch {
    fn hash<L: ArrayLength<u8>>(
        &self,
        input: GenericArray<u8, L>,
    ) -> Result<GenericArray<u8, L>, InternalError> {
        let mut output = GenericArray::default();
        self.0
            .hash_password_into(&input, &[0; argon2::RECOMMENDED_SALT_LEN], &mut output)
            .map_err(|_| InternalError::KsfError)?;
        Ok(output)
    }
}

fn decode(what: &str, text: &str) -> Result<Vec<u8>, VaultError> {
    B64.decode(text.trim())
        .map_err(|_| VaultError::Opaque(format!("`{what}` is not unpadded base64url")))
}

fn protocol(what: &'static str) -> impl Fn(opaque_ke::errors::ProtocolError) -> VaultError {
    move |e| VaultError::Opaque(format!("{what}: {e}"))
}

fn no_identifiers() -> Identifiers<'static> {
    Identifiers {
        client: None,
        server: None,
    }
}

// ---------------------------------------------------------------------------
// The server's side

/// A server's OPAQUE secrets (OPRF seed, static key pair, fake-record key),
/// serialized; kept sealed under the master key, one per tenant so that an
/// exported tenant's users sign in unchanged on the instance it moves to.
pub fn new_server_setup() -> Vec<u8> {
    ServerSetup::<Suite>::new(&mut rand08::rngs::OsRng)
        .serialize()
        .to_vec()
}

/// The context a tenant's OPAQUE secrets are sealed under the master key with.
pub fn setup_context(tenant: &impl std::fmt::Display) -> String {
    format!("opaque-setup:{tenant}")
}

fn server_setup(bytes: &[u8]) -> Result<ServerSetup<Suite>, VaultError> {
    ServerSetup::<Suite>::deserialize(bytes).map_err(protocol("server setup"))
}

/// Registration, first server step: the answer to the client's blinded
/// request for `credential_id` (the account's id).
pub fn registration_response(
    setup: &[u8],
    request: &str,
    credential_id: &[u8],
) -> Result<String, VaultError> {
    let request =
        RegistrationRequest::<Suite>::deserialize(&decode("registration_request", request)?)
            .map_err(protocol("registration request"))?;
    let started = ServerRegistration::<Suite>::start(&server_setup(setup)?, request, credential_id)
        .map_err(protocol("registration"))?;
    Ok(B64.encode(started.message.serialize()))
}

/// Registration, last server step: the record to store, checked to parse.
pub fn registration_record(upload: &str) -> Result<Vec<u8>, VaultError> {
    let upload = RegistrationUpload::<Suite>::deserialize(&decode("registration_record", upload)?)
        .map_err(protocol("registration record"))?;
    Ok(ServerRegistration::<Suite>::finish(upload)
        .serialize()
        .to_vec())
}

/// Sign-in, first server step. With no record (an unknown address, or one
/// that has not registered), the answer is a fake that looks the same, so
/// that nobody learns which addresses exist. Returns (response to send,
/// state to keep until the client's last message).
pub fn login_start(
    setup: &[u8],
    record: Option<&[u8]>,
    request: &str,
    credential_id: &[u8],
) -> Result<(String, Vec<u8>), VaultError> {
    let record = record
        .map(ServerRegistration::<Suite>::deserialize)
        .transpose()
        .map_err(protocol("stored record"))?;
    let request = CredentialRequest::<Suite>::deserialize(&decode("credential_request", request)?)
        .map_err(protocol("credential request"))?;
    let started = ServerLogin::start(
        &mut rand08::rngs::OsRng,
        &server_setup(setup)?,
        record,
        request,
        credential_id,
        ServerLoginParameters {
            context: None,
            identifiers: no_identifiers(),
        },
    )
    .map_err(protocol("sign-in"))?;
    Ok((
        B64.encode(started.message.serialize()),
        started.state.serialize().to_vec(),
    ))
}

/// Sign-in, last server step: whether the client proved it knows the
/// password (its key confirmation verifies).
pub fn login_finish(state: &[u8], finalization: &str) -> Result<bool, VaultError> {
    let state = ServerLogin::<Suite>::deserialize(state).map_err(protocol("sign-in state"))?;
    let finalization = CredentialFinalization::<Suite>::deserialize(&decode(
        "credential_finalization",
        finalization,
    )?)
    .map_err(protocol("credential finalization"))?;
    Ok(state
        .finish(
            finalization,
            ServerLoginParameters {
                context: None,
                identifiers: no_identifiers(),
            },
        )
        .is_ok())
}

// ---------------------------------------------------------------------------
// The client's side (the `caliop` command line and tests; the browser runs
// `@serenity-kit/opaque`)

/// What a client keeps between its two steps.
pub struct ClientState(Vec<u8>);

/// Registration, first client step: (state, request to send).
pub fn client_register_start(password: &str) -> Result<(ClientState, String), VaultError> {
    let started = ClientRegistration::<Suite>::start(&mut rand08::rngs::OsRng, password.as_bytes())
        .map_err(protocol("registration"))?;
    Ok((
        ClientState(started.state.serialize().to_vec()),
        B64.encode(started.message.serialize()),
    ))
}

/// Registration, last client step: (record to upload, export key).
pub fn client_register_finish(
    state: ClientState,
    password: &str,
    response: &str,
    ksf: &KsfParams,
) -> Result<(String, ExportKey), VaultError> {
    let state = ClientRegistration::<Suite>::deserialize(&state.0)
        .map_err(protocol("registration state"))?;
    let response =
        RegistrationResponse::<Suite>::deserialize(&decode("registration_response", response)?)
            .map_err(protocol("registration response"))?;
    let stretch = ksf.stretch()?;
    let finished = state
        .finish(
            &mut rand08::rngs::OsRng,
            password.as_bytes(),
            response,
            ClientRegistrationFinishParameters::new(no_identifiers(), Some(&stretch)),
        )
        .map_err(protocol("registration"))?;
    Ok((
        B64.encode(finished.message.serialize()),
        ExportKey(finished.export_key.to_vec()),
    ))
}

/// Sign-in, first client step: (state, request to send).
pub fn client_login_start(password: &str) -> Result<(ClientState, String), VaultError> {
    let started = ClientLogin::<Suite>::start(&mut rand08::rngs::OsRng, password.as_bytes())
        .map_err(protocol("sign-in"))?;
    Ok((
        ClientState(started.state.serialize().to_vec()),
        B64.encode(started.message.serialize()),
    ))
}

/// Sign-in, last client step: (finalization to send, export key), or
/// [`VaultError::WrongPassphrase`] when the password is not the one
/// registered (the client finds out before sending anything).
pub fn client_login_finish(
    state: ClientState,
    password: &str,
    response: &str,
    ksf: &KsfParams,
) -> Result<(String, ExportKey), VaultError> {
    let state = ClientLogin::<Suite>::deserialize(&state.0).map_err(protocol("sign-in state"))?;
    let response =
        CredentialResponse::<Suite>::deserialize(&decode("credential_response", response)?)
            .map_err(protocol("credential response"))?;
    let stretch = ksf.stretch()?;
    let finished = state
        .finish(
            &mut rand08::rngs::OsRng,
            password.as_bytes(),
            response,
            ClientLoginFinishParameters::new(None, no_identifiers(), Some(&stretch)),
        )
        .map_err(|_| VaultError::WrongPassphrase)?;
    Ok((
        B64.encode(finished.message.serialize()),
        ExportKey(finished.export_key.to_vec()),
    ))
}

/// OPAQUE's export key: known to the client only.
pub struct ExportKey(Vec<u8>);

impl std::fmt::Debug for ExportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportKey(..)")
    }
}

impl ExportKey {
    /// For tests that check it never reaches the server.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Any bytes taken for an export key: for tests that try what the
    /// server holds as one.
    pub fn from_bytes(bytes: &[u8]) -> ExportKey {
        ExportKey(bytes.to_vec())
    }

    fn key_encryption_key(&self) -> LessSafeKey {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"caliop/key-wrap/v1");
        let info: &[&[u8]] = &[b"caliop secret key"];
        let prk = salt.extract(&self.0);
        let okm = prk
            .expand(info, &AES_256_GCM)
            .expect("32 bytes of HKDF output");
        LessSafeKey::new(UnboundKey::from(okm))
    }

    /// Seals an armored secret key (without a passphrase) for storage.
    pub fn wrap(&self, armored: &str) -> Result<String, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| VaultError::Opaque("no randomness for a nonce".into()))?;
        let mut sealed = armored.as_bytes().to_vec();
        self.key_encryption_key()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(WRAP_PREFIX.trim_end_matches(':').as_bytes()),
                &mut sealed,
            )
            .map_err(|_| VaultError::Opaque("sealing the key failed".into()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(format!("{WRAP_PREFIX}{}", B64.encode(blob)))
    }

    /// Opens what [`ExportKey::wrap`] sealed.
    pub fn unwrap(&self, wrapped: &str) -> Result<String, VaultError> {
        let blob = wrapped
            .strip_prefix(WRAP_PREFIX)
            .ok_or_else(|| VaultError::Opaque("not a caliop-key-v1 blob".into()))?;
        let mut blob = decode("wrapped key", blob)?;
        if blob.len() < NONCE_LEN {
            return Err(VaultError::Opaque("the wrapped key is truncated".into()));
        }
        let sealed = blob.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&blob)
            .map_err(|_| VaultError::Opaque("the wrapped key has no nonce".into()))?;
        let mut sealed = sealed;
        let plain = self
            .key_encryption_key()
            .open_in_place(
                nonce,
                Aad::from(WRAP_PREFIX.trim_end_matches(':').as_bytes()),
                &mut sealed,
            )
            .map_err(|_| VaultError::WrongPassphrase)?;
        String::from_utf8(plain.to_vec())
            .map_err(|_| VaultError::Opaque("the unwrapped key is not text".into()))
    }
}

/// A one-time activation secret: 32 random bytes carried in the fragment of
/// an activation link (after `#`, so no server and no log receives it with
/// the page). It gives two values: the *token*, which the client shows the
/// server to act on the activation, and a key-encryption key the server
/// never sees. An account an administrator creates has its key pair made
/// on the server, locked at once with that key-encryption key (the same
/// `caliop-key-v1:` sealing as above, with `export_key` replaced by the
/// 32-byte `HKDF-SHA-256(salt = "caliop/activation/v1", ikm = secret,
/// info = "key")`), and the plain key forgotten; the token is
/// `HKDF-SHA-256(salt = "caliop/activation/v1", ikm = secret,
/// info = "token")`, unpadded base64url, and the server keeps only its
/// SHA-256. The person who opens the link unlocks the key on their device
/// and locks it again under their own password's export key.
pub struct Activation([u8; 32]);

impl std::fmt::Debug for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Activation(..)")
    }
}

impl Activation {
    pub fn new() -> Activation {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).expect("randomness for an activation secret");
        Activation(secret)
    }

    /// The secret as the link carries it (unpadded base64url).
    pub fn parse(link_secret: &str) -> Result<Activation, VaultError> {
        let bytes = decode("activation secret", link_secret)?;
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|_| VaultError::Opaque("an activation secret has 32 bytes".into()))?;
        Ok(Activation(secret))
    }

    pub fn link_secret(&self) -> String {
        B64.encode(self.0)
    }

    fn derive(&self, info: &[u8]) -> [u8; 32] {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"caliop/activation/v1").extract(&self.0);
        let mut out = [0u8; 32];
        prk.expand(&[info], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut out))
            .expect("32 bytes of HKDF output");
        out
    }

    /// What the client shows the server; the server stores its SHA-256.
    pub fn token(&self) -> String {
        B64.encode(self.derive(b"token"))
    }

    fn wrapping(&self) -> ExportKey {
        ExportKey(self.derive(b"key").to_vec())
    }

    /// Locks an armored secret key (without a passphrase) for the link's holder.
    pub fn lock(&self, armored: &str) -> Result<String, VaultError> {
        self.wrapping().wrap(armored)
    }

    /// Opens what [`Activation::lock`] sealed.
    pub fn unlock(&self, locked: &str) -> Result<String, VaultError> {
        self.wrapping().unwrap(locked)
    }
}

impl Default for Activation {
    fn default() -> Self {
        Activation::new()
    }
}

/// How a secret key locked with the export key starts, where the stored
/// secret key column tells the two forms apart.
pub const WRAP_PREFIX: &str = "caliop-key-v1:";

/// Whether a stored secret key is in the device-locked form.
pub fn is_wrapped(stored: &str) -> bool {
    stored.starts_with(WRAP_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_activation_link_opens_its_key_and_its_token_does_not() {
        let activation = Activation::new();
        let locked = activation
            .lock("-----BEGIN PGP PRIVATE KEY BLOCK-----")
            .unwrap();
        assert!(is_wrapped(&locked));
        let again = Activation::parse(&activation.link_secret()).unwrap();
        assert_eq!(again.token(), activation.token());
        assert_eq!(
            again.unlock(&locked).unwrap(),
            "-----BEGIN PGP PRIVATE KEY BLOCK-----"
        );
        // What the server holds (the token) is not the key: taken as a
        // link secret, it opens nothing.
        let token_as_secret = Activation::parse(&activation.token()).unwrap();
        assert!(matches!(
            token_as_secret.unlock(&locked),
            Err(VaultError::WrongPassphrase)
        ));
        assert!(Activation::parse("short").is_err());
    }

    fn register(setup: &[u8], password: &str, ksf: &KsfParams) -> (Vec<u8>, ExportKey) {
        let (state, request) = client_register_start(password).unwrap();
        let response = registration_response(setup, &request, b"account-1").unwrap();
        let (upload, export) = client_register_finish(state, password, &response, ksf).unwrap();
        (registration_record(&upload).unwrap(), export)
    }

    fn login(
        setup: &[u8],
        record: Option<&[u8]>,
        password: &str,
        ksf: &KsfParams,
    ) -> Result<ExportKey, VaultError> {
        let (state, request) = client_login_start(password).unwrap();
        let (response, server_state) = login_start(setup, record, &request, b"account-1").unwrap();
        let (finalization, export) = client_login_finish(state, password, &response, ksf)?;
        assert!(login_finish(&server_state, &finalization).unwrap());
        Ok(export)
    }

    #[test]
    fn the_right_password_signs_in_and_opens_the_key_a_wrong_one_neither() {
        let ksf = KsfParams::for_tests();
        let setup = new_server_setup();
        let (record, export) = register(&setup, "correct horse", &ksf);
        let wrapped = export
            .wrap("-----BEGIN PGP PRIVATE KEY BLOCK-----")
            .unwrap();
        assert!(is_wrapped(&wrapped));
        assert!(!wrapped.contains("PRIVATE KEY BLOCK"));

        let again = login(&setup, Some(&record), "correct horse", &ksf).unwrap();
        assert_eq!(
            again.bytes(),
            export.bytes(),
            "the same export key each time"
        );
        assert_eq!(
            again.unwrap(&wrapped).unwrap(),
            "-----BEGIN PGP PRIVATE KEY BLOCK-----"
        );
        assert!(matches!(
            login(&setup, Some(&record), "wrong horse", &ksf),
            Err(VaultError::WrongPassphrase)
        ));
        // Other stretching parameters are another password.
        assert!(
            login(
                &setup,
                Some(&record),
                "correct horse",
                &KsfParams::default()
            )
            .is_err()
        );
        // Another server's secrets do not open this record.
        assert!(login(&new_server_setup(), Some(&record), "correct horse", &ksf).is_err());
    }

    /// Everything the server holds (its secrets, the record, the locked
    /// key) and a full capture of one sign-in: nothing among them is the
    /// export key or opens the key; only a guess of the password, run
    /// through the whole protocol (the offline attack, one Argon2id each),
    /// does, and wrong guesses do not.
    #[test]
    fn the_server_and_a_captured_sign_in_open_nothing_without_the_password() {
        let ksf = KsfParams::for_tests();
        let setup = new_server_setup();
        let (record, export) = register(&setup, "correct horse", &ksf);
        let wrapped = export
            .wrap("-----BEGIN PGP PRIVATE KEY BLOCK-----")
            .unwrap();

        let (state, ke1) = client_login_start("correct horse").unwrap();
        let (ke2, server_state) = login_start(&setup, Some(&record), &ke1, b"account-1").unwrap();
        let (ke3, _) = client_login_finish(state, "correct horse", &ke2, &ksf).unwrap();
        assert!(login_finish(&server_state, &ke3).unwrap());

        let held: Vec<Vec<u8>> = vec![
            setup.clone(),
            record.clone(),
            server_state.clone(),
            decode("", &ke1).unwrap(),
            decode("", &ke2).unwrap(),
            decode("", &ke3).unwrap(),
            wrapped.clone().into_bytes(),
        ];
        for bytes in &held {
            assert!(
                !bytes
                    .windows(export.bytes().len())
                    .any(|w| w == export.bytes()),
                "the export key is in what the server holds"
            );
            // Taken for an export key (or a part of one): opens nothing.
            for candidate in [bytes.as_slice(), &bytes[..bytes.len().min(64)]] {
                assert!(ExportKey(candidate.to_vec()).unwrap(&wrapped).is_err());
            }
        }
        for guess in ["correct", "horse", "Correct horse", "correct horse "] {
            assert!(
                login(&setup, Some(&record), guess, &ksf).is_err(),
                "{guess}"
            );
        }
        let found = login(&setup, Some(&record), "correct horse", &ksf).unwrap();
        assert!(found.unwrap(&wrapped).is_ok());
    }

    #[test]
    fn an_unknown_account_gets_an_answer_of_the_same_shape() {
        let ksf = KsfParams::for_tests();
        let setup = new_server_setup();
        let (record, _) = register(&setup, "pw", &ksf);
        let (_, request) = client_login_start("pw").unwrap();
        let (real, _) = login_start(&setup, Some(&record), &request, b"account-1").unwrap();
        let (fake, _) = login_start(&setup, None, &request, b"nobody").unwrap();
        assert_eq!(real.len(), fake.len());
        assert_ne!(real, fake);
    }

    #[test]
    fn a_tampered_wrapped_key_does_not_open() {
        let ksf = KsfParams::for_tests();
        let (_, export) = register(&new_server_setup(), "pw", &ksf);
        let wrapped = export.wrap("secret").unwrap();
        let mut bytes = wrapped.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert!(export.unwrap(&String::from_utf8(bytes).unwrap()).is_err());
    }
}
