//! The API token: parsed from configuration, kept only as a hash, and checked in constant
//! time. A leaf: configuration holds one, and authentication asks it to verify a candidate.
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// The demo README's placeholder. Spelled in two pieces so that a search for the literal finds
/// only places that would ship or accept it; this one exists to refuse it.
const PLACEHOLDER_TOKEN: &str = concat!("REPLACE_WITH_", "PROD_TOKEN");
const MIN_TOKEN_LEN: usize = 16;

/// The accepted token. Only its SHA-256 is kept for checks; the secret itself is kept solely so
/// a generated token can be shown once at start-up. `Debug` never prints it.
pub struct ApiToken {
    secret: SecretString,
    fingerprint: [u8; 32],
}

impl ApiToken {
    /// Refuses the demo's placeholder, short tokens and tokens with spaces or control
    /// characters (they cannot travel in a header or a query string unchanged).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let text = text.trim();
        if text == PLACEHOLDER_TOKEN {
            return Err("the demo's placeholder token is not accepted; choose a secret one");
        }
        if text.len() < MIN_TOKEN_LEN {
            return Err("a token has at least 16 characters");
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a token is printable ASCII without spaces");
        }
        Ok(Self::from_secret(text.to_owned()))
    }

    /// 32 random bytes as hex, for servers started without a configured token.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self::from_secret(hex::encode(bytes))
    }

    fn from_secret(secret: String) -> Self {
        let fingerprint = Sha256::digest(secret.as_bytes()).into();
        Self {
            secret: SecretString::from(secret),
            fingerprint,
        }
    }

    /// Constant-time check. Both sides are hashed first so neither the content nor the length
    /// of the real token shapes the comparison's timing.
    pub fn verify(&self, candidate: &str) -> bool {
        let candidate: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        candidate.ct_eq(&self.fingerprint).into()
    }

    /// The key browser sessions opened with this token are stored under: derived from the
    /// token's hash, so a session ends when the token changes.
    pub fn session_key(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(b"ingest session key v1\0");
        hash.update(self.fingerprint);
        hash.finalize().into()
    }

    /// The token itself: only for showing a generated one to the operator once.
    pub fn reveal(&self) -> &str {
        self.secret.expose_secret()
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_the_placeholder_and_weak_tokens() {
        assert!(ApiToken::parse(PLACEHOLDER_TOKEN).is_err());
        assert!(ApiToken::parse("short").is_err());
        assert!(ApiToken::parse("has a space in the middle").is_err());
        assert!(ApiToken::parse("a-perfectly-fine-token").is_ok());
    }

    #[test]
    fn verifies_only_the_exact_token() {
        let token = ApiToken::parse("a-perfectly-fine-token").unwrap();
        assert!(token.verify("a-perfectly-fine-token"));
        assert!(!token.verify("a-perfectly-fine-token "));
        assert!(!token.verify(""));
        assert_eq!(format!("{token:?}"), "ApiToken([redacted])");
    }
}
