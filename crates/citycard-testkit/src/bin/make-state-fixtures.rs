//! Writes stored-state fixtures for this version into
//! `tests/state_test_data/<version>/`: the persistent state of the
//! `verify-library` vector card (issued, library certificate cached), raw and
//! as the emulator's state file. Later versions must still read them (`tests/state_fixtures.rs`).

use citycard_proto::apdu::ContactlessCard;
use citycard_testkit::vectors::{card_for, load_all, vectors_dir};

fn main() {
    let Some(root) = vectors_dir()
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.to_path_buf())
    else {
        eprintln!("error: cannot find the repository root");
        std::process::exit(1);
    };
    let out = root
        .join("tests/state_test_data")
        .join(env!("CARGO_PKG_VERSION"));
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("error: {}: {e}", out.display());
        std::process::exit(1);
    }
    let vectors = load_all(&vectors_dir()).unwrap_or_default();
    let Some(v) = vectors.iter().find(|v| v.name == "verify-library") else {
        eprintln!("error: vector verify-library not found");
        std::process::exit(1);
    };
    let Ok(mut card) = card_for(v) else {
        std::process::exit(1)
    };
    for step in &v.steps {
        let Ok(cmd) = hex::decode(&step.command) else {
            std::process::exit(1)
        };
        let _ = card.transmit(&cmd);
    }
    let Some(state) = card.state() else {
        std::process::exit(1)
    };
    let bytes = state.encode();
    let path = out.join("card-issued.state.bin");
    if let Err(e) = std::fs::write(&path, bytes.as_slice()) {
        eprintln!("error: {}: {e}", path.display());
        std::process::exit(1);
    }
    println!("wrote {} ({} bytes)", path.display(), bytes.len());
    // The same state as the emulator's state file (header, checksum).
    let Ok(file) = citycard_emulator::filestore::encode_state(&bytes) else {
        std::process::exit(1)
    };
    let path = out.join("card-issued.state");
    if let Err(e) = std::fs::write(&path, &file) {
        eprintln!("error: {}: {e}", path.display());
        std::process::exit(1);
    }
    println!("wrote {} ({} bytes)", path.display(), file.len());
}
