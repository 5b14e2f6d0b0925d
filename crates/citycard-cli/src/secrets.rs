//! The command-line tool's [`SecretSource`]: the environment, else the
//! terminal. Prompting is the tool's business; the keys library only receives
//! secrets through the trait.

use std::io::IsTerminal;

use citycard_keys::{KeyError, SecretSource, PASSPHRASE_ENV, PIN_ENV};
use zeroize::Zeroizing;

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
}
