//! Writes `applet-spec/vectors/*.json` from the reference card (and
//! `applet-spec/vectors/piv/*.json` from fixed keys, and the reader vectors
//! `applet-spec/vectors/reader/*.json`), or with `--check` fails if the
//! committed files differ from what the card produces.

use std::path::Path;

use citycard_testkit::vectors::{generate_all, to_json, vectors_dir};
use citycard_testkit::{piv_vectors, reader_vectors};

/// Writes `text` to `path`, or with `check` records `path` in `stale` when
/// the committed file differs.
fn emit(path: &Path, text: &str, check: bool, stale: &mut Vec<String>) {
    if check {
        if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
            stale.push(path.display().to_string());
        }
    } else if let Err(e) = std::fs::write(path, text) {
        eprintln!("error: writing {}: {e}", path.display());
        std::process::exit(1);
    } else {
        println!("wrote {}", path.display());
    }
}

fn main() {
    let check = std::env::args().any(|a| a == "--check");
    let dir = vectors_dir();
    let mut stale = Vec::new();
    for v in generate_all() {
        emit(
            &dir.join(format!("{}.json", v.name)),
            &to_json(&v),
            check,
            &mut stale,
        );
    }
    let piv_dir = piv_vectors::dir();
    if !check {
        if let Err(e) = std::fs::create_dir_all(&piv_dir) {
            eprintln!("error: creating {}: {e}", piv_dir.display());
            std::process::exit(1);
        }
    }
    for (name, v) in piv_vectors::generate_all() {
        emit(
            &piv_dir.join(format!("{name}.json")),
            &piv_vectors::to_json(&v),
            check,
            &mut stale,
        );
    }
    reader_vectors::emit_all(check, &mut |path, text| emit(path, text, check, &mut stale));
    if !stale.is_empty() {
        eprintln!(
            "error: vectors out of date (run `cargo run -p citycard-testkit --bin gen-vectors`):"
        );
        for s in stale {
            eprintln!("  {s}");
        }
        std::process::exit(1);
    }
}
