//! The SoftHSM2 set-up shared by the PKCS#11 test binaries.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, at `C_Initialize`, and the process
//! initialises each module once, so each test binary has one token directory
//! (in a temporary directory) with one token per test, all created with
//! `softhsm2-util` before the library is first loaded.

use std::path::PathBuf;
use std::process::Command;

/// The user PIN of every test token.
pub const PIN: &str = "1234";
const SO_PIN: &str = "5678";

/// The SoftHSM2 module: `CITYCARD_TEST_PKCS11_MODULE`, or where the
/// distributions install it.
pub fn module_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CITYCARD_TEST_PKCS11_MODULE") {
        return p.into();
    }
    let candidates = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
        "/usr/lib64/pkcs11/libsofthsm2.so",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("SoftHSM2 not found: install it (apt-get install softhsm2) or set CITYCARD_TEST_PKCS11_MODULE")
        })
}

/// Creates a token directory with one token per label (user PIN [`PIN`])
/// and points `SOFTHSM2_CONF` at it. Call it before any thread loads the
/// module; the directory lives as long as the returned value.
pub fn init_tokens(labels: &[&str]) -> tempfile::TempDir {
    // Under target/, since the caller keeps it in a static that is never
    // dropped to clean it up.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .unwrap();
    for label in labels {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                PIN,
                "--so-pin",
                SO_PIN,
            ])
            .output()
            .expect("softhsm2-util (apt-get install softhsm2)");
        assert!(
            out.status.success(),
            "softhsm2-util: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::env::set_var("SOFTHSM2_CONF", &conf);
    dir
}
