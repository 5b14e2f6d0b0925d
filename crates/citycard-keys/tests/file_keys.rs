//! Keys in encrypted PKCS#8 files.
#![cfg(test)]

use std::path::Path;
use std::process::Command;

use citycard_keys::{
    generate, open, FileSigner, FixedSecrets, KeyError, KeyLocation, SecretSource, Signer,
};
use zeroize::Zeroizing;

const PASS: &str = "Zebra-Quartz-Obelisk-8841";

fn secrets() -> FixedSecrets {
    FixedSecrets::new(PASS, "0000")
}

fn loc(dir: &Path, name: &str) -> KeyLocation {
    KeyLocation::File(dir.join(name))
}

#[test]
fn generate_open_sign_verify() {
    let dir = tempfile::tempdir().unwrap();
    let loc = loc(dir.path(), "root.key");
    let root = generate(&loc, &secrets()).unwrap();
    let msg = b"trust bundle v1";
    let sig = root.sign(msg).unwrap();
    citycard_proto::crypto::verify(&root.public_key(), msg, &sig).unwrap();
    assert!(citycard_proto::crypto::verify(&root.public_key(), b"other", &sig).is_err());

    let again = open(&loc, &secrets()).unwrap();
    assert_eq!(again.public_key(), root.public_key());
    let sig2 = again.sign(msg).unwrap();
    citycard_proto::crypto::verify(&root.public_key(), msg, &sig2).unwrap();
    assert_eq!(again.locator(), loc.locator());
    assert!(again.locator().starts_with("file:"));

    // Box<dyn Signer> is itself a Signer, for generic callers.
    fn sign_with(s: &impl Signer, m: &[u8]) -> [u8; 64] {
        s.sign(m).unwrap()
    }
    citycard_proto::crypto::verify(&root.public_key(), b"g", &sign_with(&again, b"g")).unwrap();

    // Two different keys.
    let other = generate(
        &KeyLocation::File(dir.path().join("station.key")),
        &secrets(),
    )
    .unwrap();
    assert_ne!(other.public_key(), root.public_key());
}

#[test]
fn wrong_passphrase_is_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let loc = loc(dir.path(), "k.key");
    generate(&loc, &secrets()).unwrap();
    for wrong in ["", "x", "Zebra-Quartz-Obelisk-8842", &PASS.to_uppercase()] {
        let err = open(&loc, &FixedSecrets::new(wrong, "")).unwrap_err();
        assert!(
            matches!(err, KeyError::WrongPassphrase),
            "{wrong:?}: {err:?}"
        );
    }
}

#[test]
fn empty_passphrase_refused_at_generation() {
    let dir = tempfile::tempdir().unwrap();
    let loc = loc(dir.path(), "k.key");
    let err = generate(&loc, &FixedSecrets::new("", "")).unwrap_err();
    assert!(matches!(err, KeyError::EmptyPassphrase), "{err:?}");
    assert!(!dir.path().join("k.key").exists());
    // No temporary file left behind either.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[cfg(unix)]
#[test]
fn file_mode_is_0600() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.key");
    FileSigner::generate(&path, &secrets()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    // Only the key file is in the directory: the temporary file was linked, then removed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let loc = loc(dir.path(), "k.key");
    let first = generate(&loc, &secrets()).unwrap();
    let before = std::fs::read(dir.path().join("k.key")).unwrap();
    let err = generate(&loc, &secrets()).unwrap_err();
    assert!(matches!(err, KeyError::AlreadyExists(_)), "{err:?}");
    assert_eq!(std::fs::read(dir.path().join("k.key")).unwrap(), before);
    assert_eq!(
        open(&loc, &secrets()).unwrap().public_key(),
        first.public_key()
    );

    // Any existing file counts, even one that is not a key.
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, b"keep me").unwrap();
    let err = generate(&KeyLocation::File(other.clone()), &secrets()).unwrap_err();
    assert!(matches!(err, KeyError::AlreadyExists(_)), "{err:?}");
    assert_eq!(std::fs::read(&other).unwrap(), b"keep me");

    // A device is not written into either: a new key sent to /dev/null
    // would be lost.
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let null = std::path::PathBuf::from("/dev/null");
        let err = generate(&KeyLocation::File(null.clone()), &secrets()).unwrap_err();
        assert!(matches!(err, KeyError::AlreadyExists(_)), "{err:?}");
        assert!(std::fs::metadata(&null)
            .unwrap()
            .file_type()
            .is_char_device());
    }
    // Only the two files: no temporary file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let err = open(&loc(dir.path(), "nope.key"), &secrets()).unwrap_err();
    assert!(matches!(err, KeyError::NotFound(_)), "{err:?}");
    // A missing directory on generation is an I/O error, not a panic.
    let err = generate(&loc(&dir.path().join("no/such/dir"), "k.key"), &secrets()).unwrap_err();
    assert!(matches!(err, KeyError::Io { .. }), "{err:?}");
}

#[test]
fn corrupt_files_are_corrupt_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good_path = dir.path().join("good.key");
    FileSigner::generate(&good_path, &secrets()).unwrap();
    let good = std::fs::read_to_string(&good_path).unwrap();
    assert!(good.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));

    // An unencrypted PKCS#8 key is refused too: keys are encrypted at rest.
    let plain = {
        use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
        let sk = p256::SecretKey::random(&mut rand_core::OsRng);
        sk.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    };
    let lines: Vec<&str> = good.lines().collect();
    let truncated = lines[..lines.len() / 2].join("\n");
    let no_footer = lines[..lines.len() - 1].join("\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("garbage", b"hello world".to_vec()),
        ("binary", vec![0xff, 0x00, 0x13, 0x37]),
        ("truncated", truncated.into_bytes()),
        ("no footer", no_footer.into_bytes()),
        (
            "wrong label",
            good.replace("ENCRYPTED PRIVATE KEY", "CERTIFICATE")
                .into_bytes(),
        ),
        ("plain pkcs8", plain.into_bytes()),
        ("bad base64", good.replacen('M', "!", 1).into_bytes()),
        (
            "empty PEM",
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n-----END ENCRYPTED PRIVATE KEY-----\n"
                .to_vec(),
        ),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(format!("{}.key", name.replace(' ', "_")));
        std::fs::write(&path, &bytes).unwrap();
        let err = FileSigner::open(&path, &secrets()).unwrap_err();
        assert!(matches!(err, KeyError::Corrupt { .. }), "{name}: {err:?}");
    }

    // A directory is not a key file.
    let err = FileSigner::open(dir.path(), &secrets()).unwrap_err();
    assert!(matches!(err, KeyError::Corrupt { .. }), "{err:?}");

    // Every single-byte flip in the base64 body gives an error or (if the
    // flip is harmless, e.g. in padding) the same key, never a panic.
    let public = FileSigner::open(&good_path, &secrets())
        .unwrap()
        .public_key();
    let bytes = good.as_bytes();
    let path = dir.path().join("flip.key");
    for i in (0..bytes.len()).step_by(7) {
        let mut b = bytes.to_vec();
        b[i] ^= 0x01;
        std::fs::write(&path, &b).unwrap();
        if let Ok(s) = FileSigner::open(&path, &secrets()) {
            assert_eq!(s.public_key(), public, "byte {i}");
        }
    }
}

#[test]
fn secrets_never_leak() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.key");
    let signer = FileSigner::generate(&path, &secrets()).unwrap();
    let file = std::fs::read(&path).unwrap();
    assert!(!file.windows(PASS.len()).any(|w| w == PASS.as_bytes()));

    let boxed = open(&KeyLocation::File(path.clone()), &secrets()).unwrap();
    let wrong = open(
        &KeyLocation::File(path.clone()),
        &FixedSecrets::new("nope-nope", ""),
    )
    .unwrap_err();
    let debug = [
        format!("{signer:?}"),
        format!("{boxed:?}"),
        format!("{:?}", secrets()),
        format!("{wrong:?}"),
        wrong.to_string(),
        format!("{:?}", KeyError::EmptyPassphrase),
        format!("{:?}", secrets().passphrase("x").map(|_| ())),
    ];
    for d in &debug {
        assert!(!d.contains(PASS), "{d}");
        assert!(!d.contains("0000"), "{d}");
        assert!(!d.contains("nope-nope"), "{d}");
    }
    // The secret scalar does not show up in Debug output either.
    let der = {
        use p256::pkcs8::DecodePrivateKey as _;
        let sk =
            p256::SecretKey::from_pkcs8_encrypted_pem(std::str::from_utf8(&file).unwrap(), PASS)
                .unwrap();
        hex::encode(sk.to_bytes())
    };
    for d in &debug {
        assert!(!d.to_lowercase().contains(&der), "{d}");
    }
}

/// A source that counts how often it is asked, to show the passphrase is
/// requested only after the file is known to be a key file.
struct Counting(std::cell::Cell<u32>);
impl SecretSource for Counting {
    fn passphrase(&self, _purpose: &str) -> Result<Zeroizing<String>, KeyError> {
        self.0.set(self.0.get() + 1);
        Ok(Zeroizing::new(PASS.to_owned()))
    }
    fn pkcs11_pin(&self, _token: &str) -> Result<Zeroizing<String>, KeyError> {
        Ok(Zeroizing::new(String::new()))
    }
}

#[test]
fn no_prompt_for_missing_or_existing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.key");
    let c = Counting(Default::default());
    assert!(FileSigner::open(&path, &c).is_err());
    std::fs::write(&path, b"junk").unwrap();
    assert!(FileSigner::open(&path, &c).is_err());
    assert!(FileSigner::generate(&path, &c).is_err());
    assert_eq!(c.0.get(), 0);
}

/// Our files are standard encrypted PKCS#8: OpenSSL reads them, and we read
/// keys OpenSSL encrypted (PBKDF2-SHA256 + AES-256-CBC). Skipped without `openssl`.
#[test]
fn openssl_interop() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not installed; interop test skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.key");
    let signer = FileSigner::generate(&ours, &secrets()).unwrap();
    let out = Command::new("openssl")
        .args([
            "pkey",
            "-pubout",
            "-outform",
            "DER",
            "-passin",
            "env:KEYPASS",
            "-in",
        ])
        .arg(&ours)
        .env("KEYPASS", PASS)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use p256::pkcs8::DecodePublicKey as _;
    assert_eq!(
        p256::PublicKey::from_public_key_der(&out.stdout).unwrap(),
        signer.public_key()
    );

    let theirs = dir.path().join("theirs.key");
    let status = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-aes-256-cbc", "-pass", "env:KEYPASS", "-out"])
        .arg(&theirs)
        .env("KEYPASS", PASS)
        .status()
        .unwrap();
    assert!(status.success());
    let s = FileSigner::open(&theirs, &secrets()).unwrap();
    citycard_proto::crypto::verify(&s.public_key(), b"m", &s.sign(b"m").unwrap()).unwrap();
    let err = FileSigner::open(&theirs, &FixedSecrets::new("nope", "")).unwrap_err();
    assert!(matches!(err, KeyError::WrongPassphrase), "{err:?}");
}
