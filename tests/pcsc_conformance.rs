//! Every vector of `applet-spec/vectors` through the real PC/SC stack: the
//! reference card (deterministic mode, fresh file-backed state) served to
//! pcscd's vpcd reader, and the `pcsc` backend sending each command raw.
#![cfg(test)]

use citycard_e2e::{bench_available, connect, raw_link, vpcd_lock, ServedCard};
use citycard_testkit::vectors::{load_all, run, seed_of, vectors_dir};

#[test]
fn every_vector_passes_through_pcscd() {
    let _lock = vpcd_lock();
    if !bench_available("every_vector_passes_through_pcscd") {
        return;
    }
    let vectors = load_all(&vectors_dir()).expect("vectors");
    assert!(vectors.len() >= 12);
    let mut passed = 0;
    for v in &vectors {
        let dir = tempfile::tempdir().unwrap();
        let served = ServedCard::start(&dir.path().join("card.state"), seed_of(v).unwrap());
        let mut t = connect();
        let mut link = raw_link(&mut t);
        run(v, &mut link).unwrap_or_else(|e| panic!("vector {} through pcscd: {e}", v.name));
        drop(link);
        t.disconnect().ok();
        drop(served);
        passed += 1;
    }
    assert_eq!(passed, vectors.len());
}
