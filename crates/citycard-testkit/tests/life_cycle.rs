//! The spec's command/state table (§3.2) is exactly what the card does, for
//! commands sent with valid form but no session: in each persistent state,
//! each instruction gets the status word the table gives.
#![cfg(test)]

use citycard_card::{Applet, MemoryStorage};
use citycard_proto::{apdu::ContactlessCard, consts::LifeCycle, sw::StatusWord};
use citycard_testkit::keys::{city, date, test_key, PREPARATION_DATE};
use citycard_testkit::script::{personalise_sample, prepare, select_command, Script};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn card_in(state: LifeCycle) -> Applet<MemoryStorage, ChaCha20Rng> {
    let mut card = Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed([3; 32]));
    if state == LifeCycle::Blank {
        return card;
    }
    let city = city();
    let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
    if state == LifeCycle::Prepared {
        let mut s = Script::new(&mut link);
        s.expect_ok("select", &select_command()).unwrap();
        prepare(&mut s, &city, date(PREPARATION_DATE)).unwrap();
        drop(s);
        return card;
    }
    personalise_sample(&mut link, true, 4, 2).unwrap();
    if state == LifeCycle::Terminated {
        let mut s = Script::new(&mut link);
        s.expect_ok("select", &select_command()).unwrap();
        let (_, mut ch) =
            citycard_testkit::script::authenticate_station(&mut s, &city, &test_key("e"), 2)
                .unwrap();
        let data = ch.seal([0x80, 0xE6, 0, 0], &[]).unwrap();
        s.expect_ok(
            "terminate",
            &citycard_proto::apdu::Command::new(0x80, 0xE6, 0, 0).with_data(data),
        )
        .unwrap();
    }
    card
}

fn sw(card: &mut impl ContactlessCard, apdu: &[u8]) -> u16 {
    let r = card.transmit(apdu).unwrap();
    u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]])
}

#[test]
fn state_table_matches_the_spec() {
    // (name, apdu) — well-formed commands with dummy data, no session.
    let commands: Vec<(&str, Vec<u8>)> = vec![
        ("PREPARE (bad data)", vec![0x80, 0x10, 0, 0, 1, 0]),
        (
            "STORE PREPARATION CERTIFICATE (bad data)",
            vec![0x80, 0x12, 0, 0, 1, 0],
        ),
        ("PSO (bad certificate)", vec![0x00, 0x2A, 0x00, 0xBE, 1, 0]),
        ("GET CHALLENGE", vec![0x00, 0x84, 0, 0, 0x10]),
        (
            "EXTERNAL AUTHENTICATE",
            vec![0x00, 0x82, 0, 0, 2, 0x7C, 0, 0],
        ),
        ("PUT DATA", vec![0x80, 0xDA, 0, 0, 1, 0]),
        ("ACTIVATE", vec![0x80, 0x44, 0, 0, 1, 0]),
        ("TERMINATE", vec![0x80, 0xE6, 0, 0, 1, 0]),
        (
            "GENERAL AUTHENTICATE",
            vec![0x00, 0x86, 0, 0, 2, 0x7C, 0, 0],
        ),
        ("GET RESPONSE", vec![0x00, 0xC0, 0, 0, 0]),
    ];
    // Expected SW per state, in the order of `commands` (spec §3.2; GET
    // CHALLENGE succeeds where allowed).
    let table: [(LifeCycle, [u16; 10]); 4] = [
        (
            LifeCycle::Blank,
            [
                0x6A80, 0x6A80, 0x6985, 0x6985, 0x6985, 0x6985, 0x6985, 0x6985, 0x6985, 0x6985,
            ],
        ),
        (
            LifeCycle::Prepared,
            [
                0x6985, 0x6985, 0x6A80, 0x9000, 0x6982, 0x6982, 0x6982, 0x6985, 0x6985, 0x6985,
            ],
        ),
        (
            LifeCycle::Issued,
            [
                0x6985, 0x6985, 0x6A80, 0x9000, 0x6982, 0x6985, 0x6985, 0x6982, 0x6A80, 0x6985,
            ],
        ),
        (LifeCycle::Terminated, [0x6985; 10]),
    ];
    for (state, expected) in table {
        let mut card = card_in(state);
        assert_eq!(card.life_cycle(), Some(state));
        let select = select_command().to_short_bytes().unwrap();
        let select_sw = sw(&mut card, &select);
        assert_eq!(
            select_sw,
            if state == LifeCycle::Terminated {
                0x6283
            } else {
                0x9000
            },
            "{state:?}"
        );
        for ((name, apdu), want) in commands.iter().zip(expected) {
            let got = sw(&mut card, apdu);
            assert_eq!(
                got, want,
                "{state:?}: {name}: got {:04X}, spec says {want:04X}",
                got
            );
        }
        // Nothing above changed the persistent state (the blank card's bad
        // preparation data was refused).
        assert_eq!(card.life_cycle(), Some(state));
    }
    assert_eq!(
        StatusWord::from_u16(0x6982),
        StatusWord::SecurityStatusNotSatisfied
    );
}
