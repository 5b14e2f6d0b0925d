//! Where a key lives.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a key lives; stored in the issuer's configuration as
/// `{"file": "/path"}` or `{"pkcs11": {"module": …, "token": …, "key_label": …}}`.
///
/// Also parses from and prints as a locator string (see [`locator`](Self::locator)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyLocation {
    /// A passphrase-encrypted PKCS#8 PEM file.
    File(PathBuf),
    /// A private key object on a PKCS#11 token.
    Pkcs11(Pkcs11Location),
}

/// A key on a PKCS#11 token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Location {
    /// The PKCS#11 module (shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token label (`CKA_LABEL` of the token, blank padding ignored).
    pub token: String,
    /// The `CKA_LABEL` of the key pair on the token.
    pub key_label: String,
}

impl Pkcs11Location {
    /// The RFC 7512 URI of the private key:
    /// `pkcs11:token=…;object=…;type=private?module-path=…`.
    pub fn locator(&self) -> String {
        self.locator_of_type("private")
    }

    /// The RFC 7512 URI of the object with this `type=` (`private`, `secret-key`).
    pub(crate) fn locator_of_type(&self, key_type: &str) -> String {
        format!(
            "pkcs11:token={};object={};type={key_type}?module-path={}",
            pct_encode(&self.token),
            pct_encode(&self.key_label),
            pct_encode(&self.module.to_string_lossy()),
        )
    }
}

impl KeyLocation {
    /// The locator string: `file:/path` or the RFC 7512 `pkcs11:` URI.
    /// Never secret; suitable for logs.
    pub fn locator(&self) -> String {
        match self {
            KeyLocation::File(p) => format!("file:{}", p.display()),
            KeyLocation::Pkcs11(p) => p.locator(),
        }
    }
}

impl std::fmt::Display for KeyLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.locator())
    }
}

/// The error of parsing a locator string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad key locator: {0} (expected file:/path or pkcs11:token=…;object=…?module-path=…)")]
pub struct LocatorParseError(pub(crate) &'static str);

impl FromStr for KeyLocation {
    type Err = LocatorParseError;

    /// Parses `file:/path`, a bare path, or
    /// `pkcs11:token=T;object=L[;type=private]?module-path=M`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("pkcs11:") {
            Ok(KeyLocation::Pkcs11(parse_pkcs11(rest, "private")?))
        } else {
            let path = s.strip_prefix("file:").unwrap_or(s);
            if path.is_empty() {
                return Err(LocatorParseError("empty path"));
            }
            Ok(KeyLocation::File(path.into()))
        }
    }
}

/// Parses the part of an RFC 7512 URI after `pkcs11:`: `token=T;object=L`,
/// an optional `type=` that must be `key_type` (`private`, `secret-key`),
/// and the `module-path` query attribute.
pub(crate) fn parse_pkcs11(
    rest: &str,
    key_type: &str,
) -> Result<Pkcs11Location, LocatorParseError> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (mut token, mut object, mut module) = (None, None, None);
    for attr in path.split(';').filter(|a| !a.is_empty()) {
        let (k, v) = key_value(attr, "attribute without '='")?;
        match k {
            "token" => token = Some(v),
            "object" => object = Some(v),
            "type" if v == key_type => {}
            "type" if key_type == "private" => {
                return Err(LocatorParseError("only type=private keys sign"))
            }
            "type" => return Err(LocatorParseError("a management key is type=secret-key")),
            _ => return Err(LocatorParseError("unsupported pkcs11 URI attribute")),
        }
    }
    for attr in query.split('&').filter(|a| !a.is_empty()) {
        let (k, v) = key_value(attr, "query without '='")?;
        match k {
            "module-path" => module = Some(v),
            _ => return Err(LocatorParseError("unsupported pkcs11 URI query attribute")),
        }
    }
    Ok(Pkcs11Location {
        module: module
            .ok_or(LocatorParseError("missing module-path"))?
            .into(),
        token: token.ok_or(LocatorParseError("missing token"))?,
        key_label: object.ok_or(LocatorParseError("missing object"))?,
    })
}

/// `k=v` of a pkcs11 URI, `v` percent-decoded; `no_equals` if there is no `=`.
fn key_value<'a>(
    attr: &'a str,
    no_equals: &'static str,
) -> Result<(&'a str, String), LocatorParseError> {
    let (k, v) = attr.split_once('=').ok_or(LocatorParseError(no_equals))?;
    let v = pct_decode(v).ok_or(LocatorParseError("bad percent-encoding"))?;
    Ok((k, v))
}

fn pct_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn pct_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_round_trip() {
        let locs = [
            KeyLocation::File("/etc/citycard/root.key".into()),
            KeyLocation::Pkcs11(Pkcs11Location {
                module: "/usr/lib/softhsm/libsofthsm2.so".into(),
                token: "City Hall; HSM=1".into(),
                key_label: "station-7 ü%".into(),
            }),
        ];
        for loc in locs {
            let s = loc.locator();
            assert_eq!(s.parse::<KeyLocation>().unwrap(), loc, "{s}");
            let json = serde_json::to_string(&loc).unwrap();
            assert_eq!(serde_json::from_str::<KeyLocation>(&json).unwrap(), loc);
        }
        assert_eq!(
            "file:/a/b".parse::<KeyLocation>().unwrap().locator(),
            "file:/a/b"
        );
        assert!("pkcs11:token=x".parse::<KeyLocation>().is_err());
        assert!("pkcs11:token=x;object=y?module-path=%G1"
            .parse::<KeyLocation>()
            .is_err());
        assert!("pkcs11:token=x;object=y;type=public?module-path=m"
            .parse::<KeyLocation>()
            .is_err());
    }

    #[test]
    fn config_json_shape() {
        let json = r#"{"pkcs11":{"module":"/m.so","token":"T","key_label":"root"}}"#;
        let loc: KeyLocation = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&loc).unwrap(), json);
        let json = r#"{"file":"/k.pem"}"#;
        let loc: KeyLocation = serde_json::from_str(json).unwrap();
        assert_eq!(loc, KeyLocation::File("/k.pem".into()));
    }
}
