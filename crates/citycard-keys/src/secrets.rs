//! Where passphrases and PINs come from: the [`SecretSource`] a caller hands
//! to the functions that unlock keys. This library never prompts; the
//! command-line tool's source reads the environment and the terminal.

use zeroize::Zeroizing;

use crate::KeyError;

/// The environment variable the command-line tool reads a key file passphrase from.
pub const PASSPHRASE_ENV: &str = "CITYCARD_PASSPHRASE";
/// The environment variable the command-line tool reads a PKCS#11 user PIN from.
pub const PIN_ENV: &str = "CITYCARD_PKCS11_PIN";

/// Supplies the secrets that unlock keys: the one way this library receives
/// a passphrase or a PIN (fixed values in tests, environment or terminal in
/// the command-line tool, an HSM agent elsewhere).
pub trait SecretSource {
    /// The passphrase of an existing key file; `purpose` names it for a prompt
    /// (for example the file's path).
    fn passphrase(&self, purpose: &str) -> Result<Zeroizing<String>, KeyError>;

    /// The passphrase for a key file about to be created. By default the same
    /// as [`passphrase`](Self::passphrase); an interactive source asks twice.
    fn new_passphrase(&self, purpose: &str) -> Result<Zeroizing<String>, KeyError> {
        self.passphrase(purpose)
    }

    /// The user PIN of the PKCS#11 token labelled `token`.
    fn pkcs11_pin(&self, token: &str) -> Result<Zeroizing<String>, KeyError>;
}

/// Fixed secrets, for tests and for callers that already hold them.
///
/// `Debug` prints neither value.
#[derive(Clone)]
pub struct FixedSecrets {
    passphrase: Zeroizing<String>,
    pin: Zeroizing<String>,
}

impl FixedSecrets {
    /// A source that always answers `passphrase` and `pin`.
    pub fn new(passphrase: &str, pin: &str) -> Self {
        FixedSecrets {
            passphrase: Zeroizing::new(passphrase.to_owned()),
            pin: Zeroizing::new(pin.to_owned()),
        }
    }
}

impl std::fmt::Debug for FixedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedSecrets")
            .field("passphrase", &"REDACTED")
            .field("pin", &"REDACTED")
            .finish()
    }
}

impl SecretSource for FixedSecrets {
    fn passphrase(&self, _purpose: &str) -> Result<Zeroizing<String>, KeyError> {
        Ok(self.passphrase.clone())
    }

    fn pkcs11_pin(&self, _token: &str) -> Result<Zeroizing<String>, KeyError> {
        Ok(self.pin.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_secrets_debug_is_redacted() {
        let s = FixedSecrets::new("hunter2", "9999");
        let d = format!("{s:?}");
        assert!(!d.contains("hunter2") && !d.contains("9999"), "{d}");
        assert_eq!(s.passphrase("x").unwrap().as_str(), "hunter2");
        assert_eq!(s.pkcs11_pin("x").unwrap().as_str(), "9999");
    }
}
