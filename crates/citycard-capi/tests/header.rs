//! `include/citycard.h` is what cbindgen generates from `src/lib.rs` today.
//! `CITYCARD_BLESS=1 cargo test -p citycard-capi` rewrites it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;

#[test]
fn the_header_is_generated_by_cbindgen_and_up_to_date() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    for f in [
        "citycard_verify",
        "citycard_string_free",
        "citycard_version",
    ] {
        assert!(generated.contains(f), "{f} missing from the header");
    }
    let path = crate_dir.join("include/citycard.h");
    if std::env::var_os("CITYCARD_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/citycard.h is out of date: run CITYCARD_BLESS=1 cargo test -p citycard-capi --test header"
    );
}
