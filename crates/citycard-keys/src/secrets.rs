//! Where passphrases and PINs come from.

use std::io::IsTerminal;

use zeroize::Zeroizing;

use crate::KeyError;

/// The environment variable [`EnvOrPrompt`] reads a key file passphrase from.
pub const PASSPHRASE_ENV: &str = "CITYCARD_PASSPHRASE";
/// The environment variable [`EnvOrPrompt`] reads a PKCS#11 user PIN from.
pub const PIN_ENV: &str = "CITYCARD_PKCS11_PIN";

/// Supplies the secrets that unlock keys.
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

/// Secrets from the environment ([`PASSPHRASE_ENV`], [`PIN_ENV`]), else typed on
/// the terminal without echo; without a terminal, a [`KeyError::NoSecret`]
/// naming the variable to set.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvOrPrompt;

impl EnvOrPrompt {
    fn from_env(var: &str) -> Option<Zeroizing<String>> {
        std::env::var_os(var).and_then(|v| v.into_string().ok().map(Zeroizing::new))
    }

    fn prompt(
        what: &'static str,
        env_var: &'static str,
        text: &str,
    ) -> Result<Zeroizing<String>, KeyError> {
        if !std::io::stdin().is_terminal() {
            return Err(KeyError::NoSecret { what, env_var });
        }
        rpassword::prompt_password(text)
            .map(Zeroizing::new)
            .map_err(|source| KeyError::Prompt { what, source })
    }
}

impl SecretSource for EnvOrPrompt {
    fn passphrase(&self, purpose: &str) -> Result<Zeroizing<String>, KeyError> {
        match Self::from_env(PASSPHRASE_ENV) {
            Some(p) => Ok(p),
            None => Self::prompt(
                "passphrase",
                PASSPHRASE_ENV,
                &format!("Passphrase for {purpose}: "),
            ),
        }
    }

    fn new_passphrase(&self, purpose: &str) -> Result<Zeroizing<String>, KeyError> {
        if let Some(p) = Self::from_env(PASSPHRASE_ENV) {
            return Ok(p);
        }
        let first = Self::prompt(
            "passphrase",
            PASSPHRASE_ENV,
            &format!("New passphrase for {purpose}: "),
        )?;
        let second = Self::prompt("passphrase", PASSPHRASE_ENV, "Repeat the passphrase: ")?;
        if *first != *second {
            return Err(KeyError::PassphraseMismatch);
        }
        Ok(first)
    }

    fn pkcs11_pin(&self, token: &str) -> Result<Zeroizing<String>, KeyError> {
        match Self::from_env(PIN_ENV) {
            Some(p) => Ok(p),
            None => Self::prompt(
                "PIN",
                PIN_ENV,
                &format!("User PIN for PKCS#11 token {token:?}: "),
            ),
        }
    }
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

    /// The only test in this binary that touches the environment.
    #[test]
    fn env_or_prompt() {
        std::env::set_var(PASSPHRASE_ENV, "from-env-pass");
        std::env::set_var(PIN_ENV, "4321");
        assert_eq!(
            EnvOrPrompt.passphrase("k").unwrap().as_str(),
            "from-env-pass"
        );
        assert_eq!(
            EnvOrPrompt.new_passphrase("k").unwrap().as_str(),
            "from-env-pass"
        );
        assert_eq!(EnvOrPrompt.pkcs11_pin("T").unwrap().as_str(), "4321");
        std::env::remove_var(PASSPHRASE_ENV);
        std::env::remove_var(PIN_ENV);
        if !std::io::stdin().is_terminal() {
            let err = EnvOrPrompt.passphrase("k").unwrap_err();
            assert!(
                matches!(
                    err,
                    KeyError::NoSecret {
                        env_var: PASSPHRASE_ENV,
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(err.to_string().contains("CITYCARD_PASSPHRASE"), "{err}");
            let err = EnvOrPrompt.pkcs11_pin("T").unwrap_err();
            assert!(err.to_string().contains("CITYCARD_PKCS11_PIN"), "{err}");
        }
    }

    #[test]
    fn fixed_secrets_debug_is_redacted() {
        let s = FixedSecrets::new("hunter2", "9999");
        let d = format!("{s:?}");
        assert!(!d.contains("hunter2") && !d.contains("9999"), "{d}");
        assert_eq!(s.passphrase("x").unwrap().as_str(), "hunter2");
        assert_eq!(s.pkcs11_pin("x").unwrap().as_str(), "9999");
    }
}
