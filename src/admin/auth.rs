//! Passwords, tokens and random values: argon2id hashes for users, SHA-256 digests for
//! API tokens, and identifiers nobody can guess from the system's random source.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use ring::rand::{SecureRandom, SystemRandom};

use crate::store::User;

/// Why a password or user name is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the password must have at least {MIN_PASSWORD} characters")]
    TooShort,
    #[error("user names are 1 to 64 letters, digits and . _ @ -")]
    BadName,
    #[error("hashing the password failed: {0}")]
    Hash(String),
    #[error("the system's random source failed")]
    Random,
}

/// Fewest characters in a password.
pub const MIN_PASSWORD: usize = 10;

pub fn check_name(name: &str) -> Result<(), AuthError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if ok { Ok(()) } else { Err(AuthError::BadName) }
}

/// The argon2id PHC string of `password`, with a fresh salt.
pub fn hash(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(AuthError::TooShort);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Checks passwords so that an unknown user costs the same as a wrong password: the
/// time of a refusal tells nothing about which user names exist.
pub struct Verifier {
    dummy: String,
}

impl Verifier {
    pub fn new() -> Result<Verifier, AuthError> {
        Ok(Verifier {
            dummy: hash(&token()?)?,
        })
    }

    pub fn verify(&self, user: Option<&User>, password: &str) -> bool {
        let phc = user.map_or(self.dummy.as_str(), |u| u.hash.as_str());
        let ok = PasswordHash::new(phc).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
        ok && user.is_some()
    }
}

/// 32 random bytes, hex: session ids, CSRF tokens, API tokens.
pub fn token() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AuthError::Random)?;
    Ok(hex(&bytes))
}

/// Whether `text` has the shape of a `token()`.
pub fn is_token(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The SHA-256 of a token, hex: what the store keeps of it.
pub fn digest(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

/// Compares secrets in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        let user = User {
            name: "alice".into(),
            hash: phc,
            changed_at: Utc::now(),
        };
        let v = Verifier::new().unwrap();
        assert!(v.verify(Some(&user), "correct horse battery"));
        assert!(!v.verify(Some(&user), "wrong horse battery"));
        assert!(!v.verify(None, "correct horse battery"));
    }

    #[test]
    fn short_passwords_and_odd_names_are_refused() {
        assert_eq!(hash("short"), Err(AuthError::TooShort));
        assert!(check_name("alice.smith@example").is_ok());
        assert_eq!(check_name(""), Err(AuthError::BadName));
        assert_eq!(check_name("a b"), Err(AuthError::BadName));
        assert_eq!(check_name("<x>"), Err(AuthError::BadName));
    }

    #[test]
    fn tokens_are_random_and_digests_stable() {
        let (a, b) = (token().unwrap(), token().unwrap());
        assert_eq!(a.len(), 64);
        assert!(is_token(&a) && !is_token("abc") && !is_token(&"g".repeat(64)));
        assert_ne!(a, b);
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(same(&a, &a.clone()) && !same(&a, &b) && !same("a", "ab"));
    }
}
