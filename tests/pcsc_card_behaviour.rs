//! The emulated card behaves like a card through pcscd: it keeps its state
//! across client reconnects, resets and emulator restarts (its state file is
//! its EEPROM), a reset drops volatile state, and `--fault clone` is detected.
#![cfg(test)]

use std::time::Duration;

use citycard_e2e::{bench_available, connect, raw_link, vpcd_lock, EmulatorProcess};
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::{error::Error, sw::StatusWord};
use citycard_testkit::keys::{city, date, reader, test_key, TODAY};
use citycard_testkit::script::{
    self, personalise, sample_resident, select_command, Personalisation, Script, ScriptError,
};
use citycard_transport::pcsc::Disposition;
use citycard_transport::CardTransport;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn personalise_via(
    t: &mut citycard_transport::PcscTransport,
    prepare: bool,
) -> Result<(), ScriptError> {
    let city = city();
    let mut rng = ChaCha20Rng::from_seed([8; 32]);
    let mut link = raw_link(t);
    let mut s = Script::new(&mut link);
    personalise(
        &mut s,
        Personalisation {
            city: &city,
            station_ephemeral: test_key("station ephemeral"),
            rng: &mut rng,
            resident: sample_resident(),
            issue_date: date((2026, 11, 20)),
            valid_to: date((2031, 11, 19)),
            groups: 3,
            prepare,
        },
    )
    .map(|_| ())
}

fn library() -> AttributeSet {
    [AttributeId::PSEUDONYM, AttributeId::RESIDENT]
        .into_iter()
        .collect()
}

fn tap(
    t: &mut citycard_transport::PcscTransport,
    pso: bool,
) -> Result<citycard_proto::auth::Disclosure, ScriptError> {
    let city = city();
    let r = reader(&city, "library");
    let mut link = raw_link(t);
    let mut s = Script::new(&mut link);
    script::verify(
        &mut s,
        &r,
        library(),
        date(TODAY),
        test_key(&format!("tap {pso}")),
        pso,
    )
}

fn life_cycle(t: &mut citycard_transport::PcscTransport) -> u8 {
    let r = t
        .transmit_raw(&select_command().to_short_bytes().unwrap())
        .unwrap();
    assert_eq!(&r[r.len() - 2..], &[0x90, 0x00]);
    r[r.len() - 3]
}

#[test]
fn state_survives_reconnects_resets_and_restarts() {
    let _lock = vpcd_lock();
    if !bench_available("state_survives_reconnects_resets_and_restarts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("card.state");
    let emu = EmulatorProcess::start(&state, &[]);
    let mut t = connect();
    assert_eq!(life_cycle(&mut t), 0x01);
    personalise_via(&mut t, true).unwrap();
    let first = tap(&mut t, true).unwrap();

    // Client disconnects leaving the card, reconnects: same card, same pseudonym.
    t.disconnect().unwrap();
    let mut t = connect();
    assert_eq!(life_cycle(&mut t), 0x07);
    let again = tap(&mut t, false).unwrap();
    assert_eq!(first.pseudonym, again.pseudonym);

    // A reset (power cycle through vpcd) drops volatile state: a pending
    // response is gone, but the certificate cache (persistent) is kept.
    let mut link = raw_link(&mut t);
    let mut s = Script::new(&mut link);
    s.expect_ok("SELECT", &select_command()).unwrap();
    let session = citycard_proto::auth::ReaderSession::with_ephemeral(
        test_key("reset"),
        reader(&city(), "library").certificate.fingerprint(),
        library(),
        date(TODAY),
    );
    let r = s.raw(&session.command().to_short_bytes().unwrap()).unwrap();
    assert!(matches!(r.sw, StatusWord::BytesRemaining(_)), "{:?}", r.sw);
    drop(s);
    drop(link);
    t.reset().unwrap();
    let r = t.transmit_raw(&[0x00, 0xC0, 0x00, 0x00, 0x00]).unwrap();
    assert_eq!(
        &r[r.len() - 2..],
        &[0x69, 0x85],
        "after reset: not selected, nothing pending"
    );
    tap(&mut t, false).unwrap();
    t.disconnect_with(Disposition::ResetCard).unwrap();

    // The emulator process is killed (card pulled) and restarted on the same
    // state file: still issued, same pseudonym, certificate still cached.
    emu.kill();
    let _emu = EmulatorProcess::start(&state, &[]);
    let mut t = connect();
    assert_eq!(life_cycle(&mut t), 0x07);
    let after = tap(&mut t, false).unwrap();
    assert_eq!(first.pseudonym, after.pseudonym);
    t.disconnect().unwrap();
}

#[test]
fn clone_fault_is_detected_by_the_reader() {
    let _lock = vpcd_lock();
    if !bench_available("clone_fault_is_detected_by_the_reader") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("card.state");
    {
        let _emu = EmulatorProcess::start(&state, &[]);
        let mut t = connect();
        personalise_via(&mut t, true).unwrap();
        tap(&mut t, true).unwrap();
        t.disconnect().unwrap();
    }
    citycard_e2e::wait_for_removal(Duration::from_secs(5));
    let _clone = EmulatorProcess::start(&state, &["--fault", "clone"]);
    let mut t = connect();
    match tap(&mut t, false) {
        Err(ScriptError::Protocol(Error::BadMac)) => {}
        other => panic!("a clone must fail card authentication, got {other:?}"),
    }
    t.disconnect().unwrap();
}

#[test]
fn latency_fault_delays_responses() {
    let _lock = vpcd_lock();
    if !bench_available("latency_fault_delays_responses") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _emu = EmulatorProcess::start(
        &dir.path().join("card.state"),
        &["--fault", "latency-ms=150"],
    );
    let mut t = connect();
    let start = std::time::Instant::now();
    assert_eq!(life_cycle(&mut t), 0x01);
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );
    t.disconnect().unwrap();
}
