//! Tearing through the real stack: `citycard card emulate --fault
//! tear-after-writes=N` loses power at its (N+1)th persistent write (the
//! process exits with status 75, like a pulled card). After a restart on the
//! same state file the card is in the state before that write (SPEC §3.3), and
//! personalisation can be completed.
#![cfg(test)]

use std::time::Duration;

use citycard_e2e::{bench_available, connect, raw_link, vpcd_lock, EmulatorProcess};
use citycard_testkit::keys::{city, date, reader, test_key, TODAY};
use citycard_testkit::script::{self, select_command, Script};
use citycard_transport::CardTransport;

fn personalise_via(t: &mut citycard_transport::PcscTransport, prepare: bool) -> Result<(), String> {
    let mut link = raw_link(t);
    script::personalise_sample(&mut link, prepare, 8, 3)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn tap(t: &mut citycard_transport::PcscTransport, pso: bool) -> Result<(), String> {
    let city = city();
    let r = reader(&city, "library");
    let mut link = raw_link(t);
    let mut s = Script::new(&mut link);
    let req = [
        citycard_proto::attr::AttributeId::PSEUDONYM,
        citycard_proto::attr::AttributeId::RESIDENT,
    ]
    .into_iter()
    .collect();
    script::verify(&mut s, &r, req, date(TODAY), test_key("tear"), pso)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn life_cycle(t: &mut citycard_transport::PcscTransport) -> u8 {
    let r = t
        .transmit_raw(&select_command().to_short_bytes().unwrap())
        .unwrap();
    assert_eq!(&r[r.len() - 2..], &[0x90, 0x00]);
    r[r.len() - 3]
}

#[test]
fn tear_at_each_persistent_write_through_pcscd() {
    let _lock = vpcd_lock();
    if !bench_available("tear_at_each_persistent_write_through_pcscd") {
        return;
    }
    // N = completed writes before the torn one; the state the card must be in
    // after the tear (the write did not land: old state).
    for (n, expected_after, what) in [
        (0u32, 0x01u8, "W1 SET ISSUER ANCHOR"),
        (1, 0x03, "W2 ACTIVATE"),
        (2, 0x07, "W3 reader certificate cache"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("card.state");
        let emu = EmulatorProcess::start(&state, &["--fault", &format!("tear-after-writes={n}")]);
        let mut t = connect();
        let result = personalise_via(&mut t, true).and_then(|()| tap(&mut t, true));
        assert!(
            result.is_err(),
            "{what}: the tear must interrupt the exchange"
        );
        drop(t);
        assert_eq!(
            emu.wait_exit(Duration::from_secs(10)),
            Some(75),
            "{what}: emulator exit status"
        );

        let _emu = EmulatorProcess::start(&state, &[]);
        let mut t = connect();
        assert_eq!(
            life_cycle(&mut t),
            expected_after,
            "{what}: state after the tear"
        );
        if expected_after != 0x07 {
            personalise_via(&mut t, expected_after == 0x01)
                .unwrap_or_else(|e| panic!("{what}: second attempt: {e}"));
        }
        tap(&mut t, true).unwrap_or_else(|e| panic!("{what}: verification after recovery: {e}"));
        assert_eq!(life_cycle(&mut t), 0x07);
        t.disconnect().unwrap();
    }
}
