//! Account passwords, hashed with Argon2id (PHC strings, parameters inside,
//! so they can be raised later without breaking existing hashes).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::Error;

/// Shortest password we accept; long passphrases are encouraged, not capped below 1024.
pub const MIN_LENGTH: usize = 10;
pub const MAX_LENGTH: usize = 1024;

/// Checks a new password against the rules we can state to a user.
pub fn check_strength(password: &str) -> Result<(), Error> {
    let chars = password.chars().count();
    if chars < MIN_LENGTH {
        return Err(Error::Invalid(format!(
            "the password must be at least {MIN_LENGTH} characters long"
        )));
    }
    if chars > MAX_LENGTH {
        return Err(Error::Invalid(format!(
            "the password must be at most {MAX_LENGTH} characters long"
        )));
    }
    Ok(())
}

pub fn hash(password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("hashing a password: {e}")))
}

/// Whether `password` matches the PHC string `hash`. A malformed hash is a mismatch.
pub fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Burns the same time as a real verification, so that a login for an
/// unknown address cannot be told apart by its latency.
pub fn verify_dummy(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash("caliop-dummy-password").unwrap_or_default());
    let _ = verify(password, hash);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &a));
        assert!(!verify("wrong horse battery", &a));
        assert!(!verify("anything", "not a hash"));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_strength("short").is_err());
        assert!(check_strength("long enough password").is_ok());
    }
}
