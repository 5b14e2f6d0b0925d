//! In-memory tests of every command and of the state rules of the PIV card.
//!
//! Long on purpose: one test per command and state rule of SP 800-73-4,
//! sharing the card fixtures; split by command it would repeat them.
#![cfg(test)]

use citycard_card::{MemoryStorage, Storage, StorageError};
use citycard_piv_card::consts::{DEFAULT_MANAGEMENT_KEY, PIV_AID};
use citycard_piv_card::{Faults, PivCard, PivState};
use citycard_proto::apdu::ContactlessCard;
use des::cipher::{BlockDecrypt, KeyInit};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::PublicKey;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

type Card = PivCard<MemoryStorage, ChaCha20Rng>;

fn card() -> Card {
    PivCard::new(MemoryStorage::new(), ChaCha20Rng::from_seed([7; 32]))
}

/// Sends one APDU; (data, SW).
fn tx(card: &mut impl ContactlessCard, apdu: &[u8]) -> (Vec<u8>, u16) {
    let r = card.transmit(apdu).expect("card answers");
    assert!(r.len() >= 2, "response shorter than a status word");
    let (data, sw) = r.split_at(r.len() - 2);
    (data.to_vec(), u16::from_be_bytes([sw[0], sw[1]]))
}

fn cmd(ins: u8, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
    assert!(data.len() <= 255);
    let mut out = vec![0x00, ins, p1, p2];
    if !data.is_empty() {
        out.push(data.len() as u8);
        out.extend_from_slice(data);
    }
    out
}

fn select(card: &mut impl ContactlessCard) -> (Vec<u8>, u16) {
    let mut apdu = cmd(0xA4, 0x04, 0x00, &PIV_AID);
    apdu.push(0x00);
    tx(card, &apdu)
}

/// Reads a whole response, following 61xx with GET RESPONSE.
fn tx_all(card: &mut impl ContactlessCard, apdu: &[u8]) -> (Vec<u8>, u16) {
    let (mut data, mut sw) = tx(card, apdu);
    while sw >> 8 == 0x61 {
        let (more, next) = tx(card, &[0x00, 0xC0, 0x00, 0x00, (sw & 0xFF) as u8]);
        data.extend_from_slice(&more);
        sw = next;
    }
    (data, sw)
}

/// Sends `data` with command chaining in segments of at most 255 bytes.
fn chained(
    card: &mut impl ContactlessCard,
    ins: u8,
    p1: u8,
    p2: u8,
    data: &[u8],
) -> (Vec<u8>, u16) {
    let chunks: Vec<&[u8]> = data.chunks(255).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut apdu = cmd(ins, p1, p2, chunk);
        if i + 1 < chunks.len() {
            apdu[0] = 0x10;
            let (resp, sw) = tx(card, &apdu);
            assert_eq!((resp.len(), sw), (0, 0x9000), "segment {i}");
        } else {
            return tx_all(card, &apdu);
        }
    }
    unreachable!("no data")
}

fn tlv(tag: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    match value.len() {
        n @ 0..=0x7F => out.push(n as u8),
        n @ 0x80..=0xFF => out.extend_from_slice(&[0x81, n as u8]),
        n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(value);
    out
}

fn tdes_decrypt(key: &[u8], block: &[u8]) -> Vec<u8> {
    let c = des::TdesEde3::new_from_slice(key).unwrap();
    let mut b = des::cipher::Block::<des::TdesEde3>::default();
    b.copy_from_slice(block);
    c.decrypt_block(&mut b);
    b.to_vec()
}

fn encrypt(alg: u8, key: &[u8], block: &[u8]) -> Vec<u8> {
    citycard_piv_card::mgmt::encrypt_block(alg, key, block).unwrap()
}

fn decrypt(alg: u8, key: &[u8], block: &[u8]) -> Vec<u8> {
    fn with<C: BlockDecrypt + KeyInit>(key: &[u8], block: &[u8]) -> Vec<u8> {
        let c = C::new_from_slice(key).unwrap();
        let mut b = des::cipher::Block::<C>::default();
        b.copy_from_slice(block);
        c.decrypt_block(&mut b);
        b.to_vec()
    }
    match alg {
        0x03 => tdes_decrypt(key, block),
        0x08 => with::<aes::Aes128>(key, block),
        0x0A => with::<aes::Aes192>(key, block),
        0x0C => with::<aes::Aes256>(key, block),
        _ => panic!("alg"),
    }
}

/// Mutual authentication with the management key (SP 800-73-4 Part 2, A.1).
fn mgmt_auth_with(card: &mut impl ContactlessCard, alg: u8, key: &[u8]) -> u16 {
    let (r, sw) = tx(card, &cmd(0x87, alg, 0x9B, &[0x7C, 0x02, 0x80, 0x00]));
    if sw != 0x9000 {
        return sw;
    }
    let block = if alg == 0x03 { 8 } else { 16 };
    assert_eq!(r[..4], [0x7C, block as u8 + 2, 0x80, block as u8]);
    let witness = decrypt(alg, key, &r[4..]);
    let challenge: Vec<u8> = (0..block as u8).collect();
    let inner = [tlv(&[0x80], &witness), tlv(&[0x81], &challenge)].concat();
    let (r, sw) = tx(card, &cmd(0x87, alg, 0x9B, &tlv(&[0x7C], &inner)));
    if sw == 0x9000 {
        assert_eq!(
            r,
            tlv(&[0x7C], &tlv(&[0x82], &encrypt(alg, key, &challenge)))
        );
    }
    sw
}

fn mgmt_auth(card: &mut impl ContactlessCard) {
    assert_eq!(mgmt_auth_with(card, 0x03, &DEFAULT_MANAGEMENT_KEY), 0x9000);
}

fn put(card: &mut impl ContactlessCard, tag: &[u8], content: &[u8]) -> u16 {
    let data = [tlv(&[0x5C], tag), tlv(&[0x53], content)].concat();
    chained(card, 0xDB, 0x3F, 0xFF, &data).1
}

fn get(card: &mut impl ContactlessCard, tag: &[u8]) -> (Vec<u8>, u16) {
    let mut apdu = cmd(0xCB, 0x3F, 0xFF, &tlv(&[0x5C], tag));
    apdu.push(0x00);
    tx_all(card, &apdu)
}

fn generate(card: &mut impl ContactlessCard, slot: u8) -> (Vec<u8>, u16) {
    tx(
        card,
        &cmd(0x47, 0x00, slot, &[0xAC, 0x03, 0x80, 0x01, 0x11]),
    )
}

fn generate_key(card: &mut impl ContactlessCard, slot: u8) -> PublicKey {
    let (r, sw) = generate(card, slot);
    assert_eq!(sw, 0x9000);
    assert_eq!(r[..5], [0x7F, 0x49, 0x43, 0x86, 0x41]);
    PublicKey::from_sec1_bytes(&r[5..]).unwrap()
}

fn verify_pin(card: &mut impl ContactlessCard, pin: &[u8]) -> u16 {
    let mut padded = pin.to_vec();
    padded.resize(8, 0xFF);
    tx(card, &cmd(0x20, 0x00, 0x80, &padded)).1
}

fn sign(card: &mut impl ContactlessCard, slot: u8, prehash: &[u8]) -> (Vec<u8>, u16) {
    let inner = [vec![0x82, 0x00], tlv(&[0x81], prehash)].concat();
    tx(card, &cmd(0x87, 0x11, slot, &tlv(&[0x7C], &inner)))
}

fn signature_verifies(public: &PublicKey, prehash: &[u8], response: &[u8]) -> bool {
    assert_eq!(response[0], 0x7C);
    let inner = &response[2..];
    assert_eq!(inner[0], 0x82);
    let der = &inner[2..2 + inner[1] as usize];
    let sig = Signature::from_der(der).unwrap();
    VerifyingKey::from(public)
        .verify_prehash(prehash, &sig)
        .is_ok()
}

#[test]
fn select_answers_the_application_property_template_for_the_aid_and_its_truncations() {
    let mut c = card();
    assert_eq!(tx(&mut c, &[0x00, 0xCA, 0xDF, 0x30, 0x05]).1, 0x6D00);
    assert_eq!(
        tx(&mut c, &cmd(0xCB, 0x3F, 0xFF, &[0x5C, 0x01, 0x7E])).1,
        0x6985
    );
    let (apt, sw) = select(&mut c);
    assert_eq!(sw, 0x9000);
    assert_eq!(apt[0], 0x61);
    assert_eq!(apt[2..10], [0x4F, 0x06, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00]);
    assert_eq!(
        apt[10..19],
        [0x79, 0x07, 0x4F, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08]
    );
    assert!(
        apt.windows(3).any(|w| w == [0x80, 0x01, 0x11]),
        "P-256 listed"
    );
    assert!(apt.ends_with(&[0x06, 0x01, 0x00]));
    for len in 5..=11 {
        let mut c = card();
        let (r, sw) = tx(&mut c, &cmd(0xA4, 0x04, 0x00, &PIV_AID[..len]));
        assert_eq!((sw, r == apt), (0x9000, true), "AID truncated to {len}");
    }
    let (r, sw) = tx(&mut c, &cmd(0xA4, 0x04, 0x0C, &PIV_AID));
    assert_eq!((r.len(), sw), (0, 0x9000));
    let mut c = card();
    for aid in [
        &PIV_AID[..4],
        &[0xA0, 0, 0, 5, 0x27, 0x20, 1, 1][..],
        &[0xF0, 0x43][..],
    ] {
        assert_eq!(tx(&mut c, &cmd(0xA4, 0x04, 0x00, aid)).1, 0x6A82);
    }
    let mut longer = PIV_AID.to_vec();
    longer.push(0);
    assert_eq!(tx(&mut c, &cmd(0xA4, 0x04, 0x00, &longer)).1, 0x6A82);
    assert_eq!(tx(&mut c, &cmd(0xA4, 0x04, 0x01, &PIV_AID)).1, 0x6A86);
    assert_eq!(
        tx(&mut c, &cmd(0xCB, 0x3F, 0xFF, &[0x5C, 0x01, 0x7E])).1,
        0x6985
    );
}

#[test]
fn the_atr_carries_the_piv_aid_in_its_historical_bytes() {
    let c = card();
    let atr = c.atr();
    assert_eq!(atr[..4], [0x3B, 0x8D, 0x80, 0x01]);
    assert_eq!(atr[4..6], [0x80, 0xFB]);
    assert_eq!(atr[6..17], PIV_AID);
}

#[test]
fn get_data_answers_the_discovery_object_and_6a82_for_absent_objects() {
    let mut c = card();
    select(&mut c);
    let (r, sw) = get(&mut c, &[0x7E]);
    assert_eq!(sw, 0x9000);
    let expected = [tlv(&[0x4F], &PIV_AID), tlv(&[0x5F, 0x2F], &[0x40, 0x00])].concat();
    assert_eq!(r, tlv(&[0x7E], &expected));
    assert_eq!(get(&mut c, &[0x5F, 0xC1, 0x02]).1, 0x6A82);
    assert_eq!(get(&mut c, &[0x7F, 0x61]).1, 0x6A82);
    assert_eq!(get(&mut c, &[0x5F, 0xFF, 0x00]).1, 0x6A82);
    assert_eq!(
        tx(&mut c, &cmd(0xCB, 0x3F, 0xFE, &[0x5C, 0x01, 0x7E])).1,
        0x6A86
    );
    assert_eq!(tx(&mut c, &cmd(0xCB, 0x3F, 0xFF, &[0x5C, 0x00])).1, 0x6A80);
    assert_eq!(
        tx(&mut c, &cmd(0xCB, 0x3F, 0xFF, &[0x5C, 0x04, 1, 2, 3, 4])).1,
        0x6A80
    );
    assert_eq!(
        tx(&mut c, &cmd(0xCB, 0x3F, 0xFF, &[0x5D, 0x01, 0x7E])).1,
        0x6A80
    );
    assert_eq!(
        tx(&mut c, &cmd(0xCB, 0x3F, 0xFF, &[0x5C, 0x03, 0x7E])).1,
        0x6A80
    );
    assert_eq!(tx(&mut c, &cmd(0xCA, 0xDF, 0x30, &[])).1, 0x6D00);
    assert_eq!(
        tx(&mut c, &[0x80, 0xCB, 0x3F, 0xFF, 0x03, 0x5C, 0x01, 0x7E]).1,
        0x6E00
    );
}

#[test]
fn put_data_needs_the_management_key_and_round_trips_through_get_data() {
    let mut c = card();
    select(&mut c);
    let chuid = vec![0x30, 0x19, 0xD4, 0xE7];
    assert_eq!(put(&mut c, &[0x5F, 0xC1, 0x02], &chuid), 0x6982);
    assert_eq!(get(&mut c, &[0x5F, 0xC1, 0x02]).1, 0x6A82);
    mgmt_auth(&mut c);
    assert_eq!(put(&mut c, &[0x5F, 0xC1, 0x02], &chuid), 0x9000);
    assert_eq!(
        get(&mut c, &[0x5F, 0xC1, 0x02]),
        (tlv(&[0x53], &chuid), 0x9000)
    );
    // Persistent: a power cycle keeps it, and loses the management-key status.
    c.reset();
    select(&mut c);
    assert_eq!(get(&mut c, &[0x5F, 0xC1, 0x02]).0, tlv(&[0x53], &chuid));
    assert_eq!(put(&mut c, &[0x5F, 0xC1, 0x02], &[]), 0x6982);
    mgmt_auth(&mut c);
    // Empty content deletes.
    assert_eq!(put(&mut c, &[0x5F, 0xC1, 0x02], &[]), 0x9000);
    assert_eq!(get(&mut c, &[0x5F, 0xC1, 0x02]).1, 0x6A82);
    // Read-only or unknown objects, malformed data.
    assert_eq!(put(&mut c, &[0x7E], &[1]), 0x6A81);
    assert_eq!(put(&mut c, &[0x5F, 0xFF, 0x00], &[1]), 0x6A81);
    let disc = tlv(&[0x7E], &[0x4F, 0x00]);
    assert_eq!(tx(&mut c, &cmd(0xDB, 0x3F, 0xFF, &disc)).1, 0x6A81);
    assert_eq!(
        tx(
            &mut c,
            &cmd(0xDB, 0x3F, 0xFF, &[0x5C, 0x03, 0x5F, 0xC1, 0x02])
        )
        .1,
        0x6A80
    );
    assert_eq!(
        tx(&mut c, &cmd(0xDB, 0x3F, 0xFF, &[0x5C, 0x03, 0x5F, 0xC1])).1,
        0x6A80
    );
    assert_eq!(
        tx(&mut c, &cmd(0xDB, 0x3F, 0x00, &[0x5C, 0x01, 0x7E])).1,
        0x6A86
    );
}

#[test]
fn long_objects_use_chaining_in_and_get_response_out_and_are_limited_to_3063_bytes() {
    let mut c = card();
    select(&mut c);
    mgmt_auth(&mut c);
    let cert: Vec<u8> = (0..3063u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(put(&mut c, &[0x5F, 0xC1, 0x01], &cert), 0x9000);
    // One byte more is refused, and the stored object is unchanged.
    let too_long = vec![0xAA; 3064];
    assert_eq!(put(&mut c, &[0x5F, 0xC1, 0x01], &too_long), 0x6A84);
    // Le = 00: 256 bytes and 61xx until the end.
    let mut apdu = cmd(0xCB, 0x3F, 0xFF, &[0x5C, 0x03, 0x5F, 0xC1, 0x01]);
    apdu.push(0x00);
    let (first, sw) = tx(&mut c, &apdu);
    assert_eq!((first.len(), sw), (256, 0x6100));
    let (all, sw) = get(&mut c, &[0x5F, 0xC1, 0x01]);
    assert_eq!(sw, 0x9000);
    assert_eq!(all, tlv(&[0x53], &cert));
    // GET RESPONSE with a small Le, then a different command drops the rest.
    let (_, sw) = tx(&mut c, &apdu);
    assert_eq!(sw, 0x6100);
    let (part, sw) = tx(&mut c, &[0x00, 0xC0, 0x00, 0x00, 0x10]);
    assert_eq!((part.len(), sw), (16, 0x6100));
    assert_eq!(part, all[256..272]);
    assert_eq!(tx(&mut c, &[0x00, 0xC0, 0x01, 0x00, 0x00]).1, 0x6A86);
    select(&mut c);
    assert_eq!(tx(&mut c, &[0x00, 0xC0, 0x00, 0x00, 0x00]).1, 0x6985);
    // A short Le: the card answers Le bytes and announces the rest.
    let (r, sw) = tx(
        &mut c,
        &cmd(0xCB, 0x3F, 0xFF, &[0x5C, 0x01, 0x7E])
            .into_iter()
            .chain([8])
            .collect::<Vec<_>>(),
    );
    assert_eq!((r.len(), sw), (8, 0x610C));
    // Extended length: the whole object in one response.
    let mut ext = vec![
        0x00, 0xCB, 0x3F, 0xFF, 0x00, 0x00, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x01,
    ];
    ext.extend_from_slice(&[0x00, 0x00]);
    let (r, sw) = tx(&mut c, &ext);
    assert_eq!((r, sw), (tlv(&[0x53], &cert), 0x9000));
}

#[test]
fn chaining_rules() {
    let mut c = card();
    select(&mut c);
    mgmt_auth(&mut c);
    // A chain interrupted by a different command is refused.
    let data = [tlv(&[0x5C], &[0x5F, 0xC1, 0x02]), tlv(&[0x53], &[1; 300])].concat();
    let mut first = cmd(0xDB, 0x3F, 0xFF, &data[..200]);
    first[0] = 0x10;
    assert_eq!(tx(&mut c, &first).1, 0x9000);
    assert_eq!(
        tx(&mut c, &cmd(0xCB, 0x3F, 0xFF, &[0x5C, 0x01, 0x7E])).1,
        0x6883
    );
    // Chaining VERIFY or GET DATA is not supported.
    let mut v = cmd(0x20, 0x00, 0x80, b"123456\xFF\xFF");
    v[0] = 0x10;
    assert_eq!(tx(&mut c, &v).1, 0x6884);
    // Chained PUT DATA accumulates beyond one segment.
    assert_eq!(put(&mut c, &[0x5F, 0xC1, 0x02], &[1; 300]), 0x9000);
    assert_eq!(get(&mut c, &[0x5F, 0xC1, 0x02]).0, tlv(&[0x53], &[1; 300]));
    // A chain longer than the buffer is refused.
    let mut seg = cmd(0xDB, 0x3F, 0xFF, &[0; 255]);
    seg[0] = 0x10;
    let mut last = 0;
    for _ in 0..20 {
        last = tx(&mut c, &seg).1;
        if last != 0x9000 {
            break;
        }
    }
    assert_eq!(last, 0x6700);
}

#[test]
fn pin_protected_objects_need_the_pin() {
    let mut c = card();
    select(&mut c);
    mgmt_auth(&mut c);
    for tag in [
        [0x5F, 0xC1, 0x03],
        [0x5F, 0xC1, 0x08],
        [0x5F, 0xC1, 0x09],
        [0x5F, 0xC1, 0x21],
    ] {
        assert_eq!(put(&mut c, &tag, b"secret"), 0x9000);
        assert_eq!(get(&mut c, &tag).1, 0x6982, "{tag:02X?}");
    }
    assert_eq!(verify_pin(&mut c, b"123456"), 0x9000);
    assert_eq!(
        get(&mut c, &[0x5F, 0xC1, 0x09]),
        (tlv(&[0x53], b"secret"), 0x9000)
    );
}

#[test]
fn verify_counts_tries_blocks_and_reports_status() {
    let mut c = card();
    select(&mut c);
    assert_eq!(tx(&mut c, &[0x00, 0x20, 0x00, 0x80]).1, 0x63C3);
    assert_eq!(verify_pin(&mut c, b"000000"), 0x63C2);
    assert_eq!(verify_pin(&mut c, b"123456"), 0x9000);
    assert_eq!(tx(&mut c, &[0x00, 0x20, 0x00, 0x80]).1, 0x9000);
    assert_eq!(tx(&mut c, &[0x00, 0x20, 0xFF, 0x80]).1, 0x9000);
    assert_eq!(
        tx(&mut c, &[0x00, 0x20, 0x00, 0x80]).1,
        0x63C3,
        "P1=FF resets"
    );
    assert_eq!(verify_pin(&mut c, b"000000"), 0x63C2);
    assert_eq!(verify_pin(&mut c, b"000000"), 0x63C1);
    c.reset();
    select(&mut c);
    assert_eq!(
        tx(&mut c, &[0x00, 0x20, 0x00, 0x80]).1,
        0x63C1,
        "counter is persistent"
    );
    assert_eq!(verify_pin(&mut c, b"000000"), 0x63C0);
    assert_eq!(verify_pin(&mut c, b"123456"), 0x6983, "blocked");
    assert_eq!(tx(&mut c, &[0x00, 0x20, 0x00, 0x80]).1, 0x6983);
    assert_eq!(c.summary().unwrap().pin_tries_left, 0);
    // Malformed: wrong length, other key references, P1.
    assert_eq!(tx(&mut c, &cmd(0x20, 0x00, 0x80, b"123456")).1, 0x6A80);
    assert_eq!(
        tx(&mut c, &cmd(0x20, 0x00, 0x00, b"123456\xFF\xFF")).1,
        0x6A88
    );
    assert_eq!(
        tx(&mut c, &cmd(0x20, 0x01, 0x80, b"123456\xFF\xFF")).1,
        0x6A86
    );
}

#[test]
fn change_reference_data_and_reset_retry_counter() {
    let mut c = card();
    select(&mut c);
    let pair = |old: &[u8], new: &[u8]| {
        let mut d = old.to_vec();
        d.resize(8, 0xFF);
        let mut n = new.to_vec();
        n.resize(8, 0xFF);
        d.extend_from_slice(&n);
        d
    };
    assert_eq!(
        tx(&mut c, &cmd(0x24, 0x00, 0x80, &pair(b"000000", b"654321"))).1,
        0x63C2
    );
    assert_eq!(
        tx(&mut c, &cmd(0x24, 0x00, 0x80, &pair(b"123456", b"12345"))).1,
        0x6A80
    );
    assert_eq!(
        tx(&mut c, &cmd(0x24, 0x00, 0x80, &pair(b"123456", b"654321"))).1,
        0x9000
    );
    assert_eq!(verify_pin(&mut c, b"123456"), 0x63C2);
    assert_eq!(verify_pin(&mut c, b"654321"), 0x9000);
    // Block the PIN, unblock it with the PUK.
    for expected in [0x63C2, 0x63C1, 0x63C0] {
        assert_eq!(verify_pin(&mut c, b"999999"), expected);
    }
    assert_eq!(
        tx(
            &mut c,
            &cmd(0x2C, 0x00, 0x80, &pair(b"87654321", b"111111"))
        )
        .1,
        0x63C2
    );
    assert_eq!(
        tx(
            &mut c,
            &cmd(0x2C, 0x00, 0x80, &pair(b"12345678", b"111111"))
        )
        .1,
        0x9000
    );
    assert_eq!(verify_pin(&mut c, b"111111"), 0x9000);
    // Change the PUK.
    assert_eq!(
        tx(
            &mut c,
            &cmd(0x24, 0x00, 0x81, &pair(b"12345678", b"87654321"))
        )
        .1,
        0x9000
    );
    assert_eq!(
        tx(
            &mut c,
            &cmd(0x2C, 0x00, 0x80, &pair(b"12345678", b"222222"))
        )
        .1,
        0x63C2
    );
    assert_eq!(
        tx(
            &mut c,
            &cmd(0x2C, 0x00, 0x80, &pair(b"87654321", b"222222"))
        )
        .1,
        0x9000
    );
    assert_eq!(
        tx(
            &mut c,
            &cmd(0x2C, 0x00, 0x81, &pair(b"87654321", b"222222"))
        )
        .1,
        0x6A86
    );
    assert_eq!(
        tx(
            &mut c,
            &cmd(0x24, 0x00, 0x9B, &pair(b"87654321", b"222222"))
        )
        .1,
        0x6A86
    );
    assert_eq!(tx(&mut c, &cmd(0x24, 0x00, 0x80, b"short")).1, 0x6A80);
}

#[test]
fn management_key_mutual_and_single_challenge_response() {
    let mut c = card();
    select(&mut c);
    // Wrong witness: refused, no authentication.
    let (r, sw) = tx(&mut c, &cmd(0x87, 0x03, 0x9B, &[0x7C, 0x02, 0x80, 0x00]));
    assert_eq!((r.len(), sw), (12, 0x9000));
    let inner = [tlv(&[0x80], &[0; 8]), tlv(&[0x81], &[1; 8])].concat();
    assert_eq!(
        tx(&mut c, &cmd(0x87, 0x03, 0x9B, &tlv(&[0x7C], &inner))).1,
        0x6982
    );
    // Step 2 without step 1.
    assert_eq!(
        tx(&mut c, &cmd(0x87, 0x03, 0x9B, &tlv(&[0x7C], &inner))).1,
        0x6985
    );
    assert_eq!(generate(&mut c, 0x9E).1, 0x6982);
    // Wrong algorithm for the key.
    assert_eq!(
        tx(&mut c, &cmd(0x87, 0x08, 0x9B, &[0x7C, 0x02, 0x80, 0x00])).1,
        0x6A86
    );
    // The encryption oracle (81 challenge + 82 empty) is refused.
    let oracle = [tlv(&[0x81], &[1; 8]), vec![0x82, 0x00]].concat();
    assert_eq!(
        tx(&mut c, &cmd(0x87, 0x03, 0x9B, &tlv(&[0x7C], &oracle))).1,
        0x6A80
    );
    // Single challenge-response: 81 00 → challenge; 82 E(challenge) → 9000.
    let (r, sw) = tx(&mut c, &cmd(0x87, 0x03, 0x9B, &[0x7C, 0x02, 0x81, 0x00]));
    assert_eq!((sw, &r[..4]), (0x9000, &[0x7C, 0x0A, 0x81, 0x08][..]));
    let wrong = tlv(&[0x7C], &tlv(&[0x82], &[0; 8]));
    assert_eq!(tx(&mut c, &cmd(0x87, 0x03, 0x9B, &wrong)).1, 0x6982);
    let (r, _) = tx(&mut c, &cmd(0x87, 0x03, 0x9B, &[0x7C, 0x02, 0x81, 0x00]));
    let response = encrypt(0x03, &DEFAULT_MANAGEMENT_KEY, &r[4..]);
    let answer = tlv(&[0x7C], &tlv(&[0x82], &response));
    assert_eq!(
        tx(&mut c, &cmd(0x87, 0x03, 0x9B, &answer)),
        (vec![], 0x9000)
    );
    generate_key(&mut c, 0x9E);
    // The same answer cannot be replayed.
    assert_eq!(tx(&mut c, &cmd(0x87, 0x03, 0x9B, &answer)).1, 0x6985);
    assert_eq!(
        generate(&mut c, 0x9E).1,
        0x6982,
        "a new attempt drops the status"
    );
    // Malformed templates.
    for bad in [
        &[0x7C, 0x00][..],
        &[0x7C, 0x02, 0x80],
        &[0x7D, 0x02, 0x80, 0x00],
        &[0x7C, 0x04, 0x80, 0x00, 0x80, 0x00],
    ] {
        assert_eq!(
            tx(&mut c, &cmd(0x87, 0x03, 0x9B, bad)).1,
            0x6A80,
            "{bad:02X?}"
        );
    }
}

#[test]
fn set_management_key_yubico_extension_with_every_algorithm() {
    let mut c = card();
    select(&mut c);
    let new = [0x42u8; 24];
    let set = |alg: u8, key: &[u8]| {
        let mut d = vec![alg, 0x9B, key.len() as u8];
        d.extend_from_slice(key);
        cmd(0xFF, 0xFF, 0xFF, &d)
    };
    assert_eq!(tx(&mut c, &set(0x03, &new)).1, 0x6982);
    mgmt_auth(&mut c);
    assert_eq!(tx(&mut c, &set(0x03, &new[..16])).1, 0x6A80);
    assert_eq!(tx(&mut c, &set(0x11, &new)).1, 0x6A80);
    assert_eq!(
        tx(
            &mut c,
            &cmd(
                0xFF,
                0xFF,
                0xFE,
                &[0x03, 0x9B, 24]
                    .iter()
                    .chain(&new)
                    .copied()
                    .collect::<Vec<_>>()
            )
        )
        .1,
        0x6A86
    );
    assert_eq!(tx(&mut c, &set(0x03, &new)).1, 0x9000);
    c.reset();
    select(&mut c);
    assert_eq!(
        mgmt_auth_with(&mut c, 0x03, &DEFAULT_MANAGEMENT_KEY),
        0x6982
    );
    assert_eq!(mgmt_auth_with(&mut c, 0x03, &new), 0x9000);
    for (alg, len) in [(0x08u8, 16usize), (0x0A, 24), (0x0C, 32)] {
        let key: Vec<u8> = (0..len as u8).map(|i| i ^ alg).collect();
        assert_eq!(tx(&mut c, &set(alg, &key)).1, 0x9000);
        assert_eq!(c.summary().unwrap().management_key_algorithm, alg);
        c.reset();
        select(&mut c);
        assert_eq!(mgmt_auth_with(&mut c, 0x03, &new), 0x6A86, "old algorithm");
        assert_eq!(mgmt_auth_with(&mut c, alg, &key), 0x9000, "alg {alg:02X}");
        generate_key(&mut c, 0x9A);
    }
}

#[test]
fn generate_needs_the_management_key_p256_only_and_key_slots_only() {
    let mut c = card();
    select(&mut c);
    assert_eq!(generate(&mut c, 0x9E).1, 0x6982);
    mgmt_auth(&mut c);
    for rsa_or_p384 in [0x06u8, 0x07, 0x14] {
        let d = [0xAC, 0x03, 0x80, 0x01, rsa_or_p384];
        assert_eq!(tx(&mut c, &cmd(0x47, 0x00, 0x9A, &d)).1, 0x6A80);
    }
    let with_policy = [0xAC, 0x06, 0x80, 0x01, 0x11, 0xAA, 0x01, 0x02];
    assert_eq!(tx(&mut c, &cmd(0x47, 0x00, 0x9A, &with_policy)).1, 0x6A80);
    for slot in [0x80u8, 0x81, 0x9B, 0x00, 0x96, 0xF9] {
        assert_eq!(generate(&mut c, slot).1, 0x6A86, "slot {slot:02X}");
    }
    assert_eq!(
        tx(
            &mut c,
            &cmd(0x47, 0x01, 0x9A, &[0xAC, 0x03, 0x80, 0x01, 0x11])
        )
        .1,
        0x6A86
    );
    let mut slots = vec![0x9A, 0x9C, 0x9D, 0x9E, 0x82, 0x95];
    for slot in &slots {
        generate_key(&mut c, *slot);
    }
    slots.sort();
    assert_eq!(c.summary().unwrap().key_slots, slots);
    // Regenerating replaces the key.
    let a = generate_key(&mut c, 0x9E);
    let b = generate_key(&mut c, 0x9E);
    assert_ne!(a, b);
    assert_eq!(c.state().unwrap().public_key(0x9E), Some(b));
}

#[test]
fn signatures_follow_the_slot_access_rules() {
    let mut c = card();
    select(&mut c);
    mgmt_auth(&mut c);
    let keys: Vec<(u8, PublicKey)> = [0x9A, 0x9C, 0x9D, 0x9E, 0x82]
        .into_iter()
        .map(|s| (s, generate_key(&mut c, s)))
        .collect();
    c.reset();
    select(&mut c);
    let hash = [0x5Au8; 32];
    // 9E: no PIN needed.
    let (r, sw) = sign(&mut c, 0x9E, &hash);
    assert_eq!(sw, 0x9000);
    assert!(signature_verifies(&keys[3].1, &hash, &r));
    // The others need the PIN.
    for slot in [0x9A, 0x9C, 0x9D, 0x82] {
        assert_eq!(sign(&mut c, slot, &hash).1, 0x6982, "{slot:02X}");
    }
    assert_eq!(verify_pin(&mut c, b"123456"), 0x9000);
    for (slot, public) in &keys {
        let (r, sw) = sign(&mut c, *slot, &hash);
        assert_eq!(sw, 0x9000, "{slot:02X}");
        assert!(signature_verifies(public, &hash, &r));
    }
    // 9C needs a VERIFY before each use; the others keep the session.
    assert_eq!(sign(&mut c, 0x9C, &hash).1, 0x6982);
    assert_eq!(sign(&mut c, 0x9A, &hash).1, 0x9000);
    assert_eq!(verify_pin(&mut c, b"123456"), 0x9000);
    assert_eq!(sign(&mut c, 0x9C, &hash).1, 0x9000);
    // A malformed request does not consume the 9C authorisation.
    assert_eq!(verify_pin(&mut c, b"123456"), 0x9000);
    assert_eq!(sign(&mut c, 0x9C, &[0; 31]).1, 0x6A80);
    assert_eq!(sign(&mut c, 0x9C, &hash).1, 0x9000);
    // Malformed requests and empty slots.
    assert_eq!(sign(&mut c, 0x9E, &[0; 31]).1, 0x6A80);
    assert_eq!(sign(&mut c, 0x9E, &[0; 48]).1, 0x6A80);
    assert_eq!(sign(&mut c, 0x83, &hash).1, 0x6A88);
    assert_eq!(sign(&mut c, 0x80, &hash).1, 0x6A86);
    let inner = [vec![0x82, 0x00], tlv(&[0x81], &hash)].concat();
    assert_eq!(
        tx(&mut c, &cmd(0x87, 0x07, 0x9E, &tlv(&[0x7C], &inner))).1,
        0x6A86
    );
    let no_response_tag = tlv(&[0x7C], &tlv(&[0x81], &hash));
    assert_eq!(
        tx(&mut c, &cmd(0x87, 0x11, 0x9E, &no_response_tag)).1,
        0x6A80
    );
}

#[test]
fn ecdh_with_a_key_management_key() {
    let mut c = card();
    select(&mut c);
    mgmt_auth(&mut c);
    let card_public = generate_key(&mut c, 0x9D);
    let host = p256::SecretKey::from_slice(&[9u8; 32]).unwrap();
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let point = host.public_key().to_encoded_point(false);
    let inner = [vec![0x82, 0x00], tlv(&[0x85], point.as_bytes())].concat();
    let apdu = cmd(0x87, 0x11, 0x9D, &tlv(&[0x7C], &inner));
    assert_eq!(tx(&mut c, &apdu).1, 0x6982);
    assert_eq!(verify_pin(&mut c, b"123456"), 0x9000);
    let (r, sw) = tx(&mut c, &apdu);
    assert_eq!(sw, 0x9000);
    let expected = p256::ecdh::diffie_hellman(host.to_nonzero_scalar(), card_public.as_affine());
    assert_eq!(r, tlv(&[0x7C], &tlv(&[0x82], expected.raw_secret_bytes())));
    let bad = [vec![0x82, 0x00], tlv(&[0x85], &[4; 65])].concat();
    assert_eq!(
        tx(&mut c, &cmd(0x87, 0x11, 0x9D, &tlv(&[0x7C], &bad))).1,
        0x6A80
    );
}

#[test]
fn clone_fault_signs_9e_with_another_key_and_keeps_everything_else() {
    let mut c = card();
    select(&mut c);
    mgmt_auth(&mut c);
    let public = generate_key(&mut c, 0x9E);
    assert_eq!(put(&mut c, &[0x5F, 0xC1, 0x01], b"certificate"), 0x9000);
    let storage = c.into_storage();
    let mut clone = PivCard::new(storage, ChaCha20Rng::from_seed([1; 32]));
    clone.set_faults(Faults { clone: true });
    select(&mut clone);
    let hash = [3u8; 32];
    let (r, sw) = sign(&mut clone, 0x9E, &hash);
    assert_eq!(sw, 0x9000);
    assert!(!signature_verifies(&public, &hash, &r));
    assert_eq!(
        get(&mut clone, &[0x5F, 0xC1, 0x01]).0,
        tlv(&[0x53], b"certificate")
    );
    clone.set_faults(Faults::default());
    let (r, _) = sign(&mut clone, 0x9E, &hash);
    assert!(signature_verifies(&public, &hash, &r));
}

#[test]
fn the_seed_makes_key_generation_deterministic() {
    let run = |seed: [u8; 32]| {
        let mut c = PivCard::new(MemoryStorage::new(), ChaCha20Rng::from_seed(seed));
        select(&mut c);
        mgmt_auth(&mut c);
        generate_key(&mut c, 0x9E)
    };
    assert_eq!(run([5; 32]), run([5; 32]));
    assert_ne!(run([5; 32]), run([6; 32]));
}

#[test]
fn corrupt_storage_makes_the_card_mute() {
    let mut storage = MemoryStorage::new();
    storage.commit(b"CCPIV\x01garbage").unwrap();
    let mut c = PivCard::new(storage, ChaCha20Rng::from_seed([0; 32]));
    assert!(c.state().is_none());
    assert_eq!(select(&mut c).1, 0x6F00);
    let mut storage = MemoryStorage::new();
    storage.commit(b"not a piv card").unwrap();
    let mut c = PivCard::new(storage, ChaCha20Rng::from_seed([0; 32]));
    assert_eq!(select(&mut c).1, 0x6F00);
}

#[test]
fn summary_lists_slots_objects_and_counters_only() {
    let mut c = card();
    select(&mut c);
    mgmt_auth(&mut c);
    generate_key(&mut c, 0x9E);
    assert_eq!(put(&mut c, &[0x5F, 0xC1, 0x02], b"chuid"), 0x9000);
    assert_eq!(verify_pin(&mut c, b"1"), 0x63C2);
    let s = c.summary().unwrap();
    assert_eq!(s.key_slots, [0x9E]);
    assert_eq!(s.objects, [0x5FC102]);
    assert_eq!(
        (
            s.pin_tries_left,
            s.puk_tries_left,
            s.management_key_algorithm
        ),
        (2, 3, 3)
    );
    let bytes = c.state().unwrap().encode();
    assert!(PivState::is_piv_state(&bytes));
    assert_eq!(citycard_piv_card::Summary::from_bytes(&bytes).unwrap(), s);
    assert!(!format!("{:?}", c.state().unwrap()).contains("chuid"));
}

/// Storage that loses power at its `fail_at`-th commit (0-based), either
/// before writing (`persist = false`) or right after (`persist = true`).
struct Tearing {
    inner: MemoryStorage,
    fail_at: usize,
    persist: bool,
    commits: usize,
}

impl Storage for Tearing {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.load()
    }
    fn commit(&mut self, state: &[u8]) -> Result<(), StorageError> {
        let n = self.commits;
        self.commits += 1;
        if n == self.fail_at {
            if self.persist {
                self.inner.commit(state)?;
            }
            return Err(StorageError::PowerLost);
        }
        if n > self.fail_at {
            return Err(StorageError::PowerLost);
        }
        self.inner.commit(state)
    }
}

/// A session with every kind of write: key generation, PUT DATA (chained),
/// wrong and right PINs, PIN change, PUK use, management key change.
fn writing_session(c: &mut impl ContactlessCard) -> Option<()> {
    let send = |c: &mut dyn ContactlessCard, apdu: &[u8]| c.transmit(apdu).ok();
    let mut sel = cmd(0xA4, 0x04, 0x00, &PIV_AID);
    sel.push(0);
    send(c, &sel)?;
    let r = send(c, &cmd(0x87, 0x03, 0x9B, &[0x7C, 0x02, 0x80, 0x00]))?;
    let witness = tdes_decrypt(&DEFAULT_MANAGEMENT_KEY, &r[4..12]);
    let inner = [tlv(&[0x80], &witness), tlv(&[0x81], &[0; 8])].concat();
    send(c, &cmd(0x87, 0x03, 0x9B, &tlv(&[0x7C], &inner)))?;
    send(c, &cmd(0x47, 0x00, 0x9E, &[0xAC, 0x03, 0x80, 0x01, 0x11]))?;
    let data = [tlv(&[0x5C], &[0x5F, 0xC1, 0x01]), tlv(&[0x53], &[9; 600])].concat();
    for (i, chunk) in data.chunks(255).enumerate() {
        let mut apdu = cmd(0xDB, 0x3F, 0xFF, chunk);
        if i + 1 < data.len().div_ceil(255) {
            apdu[0] = 0x10;
        }
        send(c, &apdu)?;
    }
    send(c, &cmd(0x20, 0x00, 0x80, b"000000\xFF\xFF"))?;
    send(c, &cmd(0x20, 0x00, 0x80, b"123456\xFF\xFF"))?;
    send(c, &cmd(0x24, 0x00, 0x80, b"123456\xFF\xFF654321\xFF\xFF"))?;
    send(c, &cmd(0x2C, 0x00, 0x80, b"12345678111111\xFF\xFF"))?;
    let mut set = vec![0x08, 0x9B, 16];
    set.extend_from_slice(&[7; 16]);
    send(c, &cmd(0xFF, 0xFF, 0xFF, &set))?;
    Some(())
}

#[test]
fn a_tear_at_every_write_leaves_the_old_or_the_new_state() {
    // The reference run: every committed state, in order.
    let mut reference = PivCard::new(
        Tearing {
            inner: MemoryStorage::new(),
            fail_at: usize::MAX,
            persist: false,
            commits: 0,
        },
        ChaCha20Rng::from_seed([4; 32]),
    );
    let mut states = vec![PivState::factory().encode().to_vec()];
    writing_session(&mut reference).unwrap();
    let writes = reference.storage().commits;
    assert!(writes >= 9, "the session writes {writes} times");
    // Replay, recording each state via a storage that never fails.
    for n in 0..writes {
        let mut c = PivCard::new(
            Tearing {
                inner: MemoryStorage::new(),
                fail_at: n,
                persist: false,
                commits: 0,
            },
            ChaCha20Rng::from_seed([4; 32]),
        );
        assert!(writing_session(&mut c).is_none(), "power lost at write {n}");
        let before = c.into_storage().inner.load().unwrap();
        let before = before.unwrap_or_else(|| PivState::factory().encode().to_vec());
        assert_eq!(before, states[n], "write {n}: the old state");
        let mut c = PivCard::new(
            Tearing {
                inner: MemoryStorage::new(),
                fail_at: n,
                persist: true,
                commits: 0,
            },
            ChaCha20Rng::from_seed([4; 32]),
        );
        assert!(writing_session(&mut c).is_none());
        let mut storage = c.into_storage();
        let after = storage.inner.load().unwrap().unwrap();
        // The card powers up on whatever is stored, and it is a valid state.
        PivState::decode(&after).unwrap();
        states.push(after);
        let mut fresh = PivCard::new(storage.inner, ChaCha20Rng::from_seed([0; 32]));
        assert_eq!(select(&mut fresh).1, 0x9000);
    }
    assert_eq!(states.len(), writes + 1);
    assert_eq!(
        states.last().unwrap(),
        &reference.state().unwrap().encode().to_vec()
    );
    // After a tear the card answers nothing until reset.
    let mut c = PivCard::new(
        Tearing {
            inner: MemoryStorage::new(),
            fail_at: 0,
            persist: false,
            commits: 0,
        },
        ChaCha20Rng::from_seed([4; 32]),
    );
    assert!(writing_session(&mut c).is_none());
    assert!(c.transmit(&[0x00, 0xA4, 0x04, 0x00]).is_err());
    c.reset();
    assert!(c.transmit(&[0x00, 0xA4, 0x04, 0x00]).is_ok());
}

#[test]
fn a_chained_put_data_is_refused_at_its_first_segment_without_the_management_key() {
    let mut c = card();
    select(&mut c);
    let mut first = cmd(
        0xDB,
        0x3F,
        0xFF,
        &[0x5C, 0x03, 0x5F, 0xC1, 0x01, 0x53, 0x82, 0x01, 0x00],
    );
    first[0] = 0x10;
    assert_eq!(tx(&mut c, &first).1, 0x6982);
}

mod garbage {
    use super::*;
    use proptest::prelude::*;

    fn apdu() -> impl Strategy<Value = Vec<u8>> {
        let ins = prop::sample::select(vec![
            0xA4u8, 0xCB, 0xDB, 0x20, 0x24, 0x2C, 0x87, 0x47, 0xC0, 0xFF, 0xFD, 0x00, 0xCA,
        ]);
        let cla = prop::sample::select(vec![0x00u8, 0x10, 0x80, 0x0C]);
        let p = prop::sample::select(vec![
            0x00u8, 0x3F, 0xFF, 0x80, 0x81, 0x9B, 0x9A, 0x9C, 0x9E, 0x03, 0x11, 0x04,
        ]);
        prop_oneof![
            // Structured: header + data + optional Le (sometimes extended).
            (
                cla,
                ins,
                p.clone(),
                p,
                prop::collection::vec(any::<u8>(), 0..300),
                any::<Option<u8>>(),
                any::<bool>()
            )
                .prop_map(|(cla, ins, p1, p2, data, le, ext)| {
                    let mut out = vec![cla, ins, p1, p2];
                    if ext {
                        out.push(0);
                        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
                        out.extend_from_slice(&data);
                        if let Some(le) = le {
                            out.extend_from_slice(&[0, le]);
                        }
                    } else {
                        let data = &data[..data.len().min(255)];
                        if !data.is_empty() {
                            out.push(data.len() as u8);
                            out.extend_from_slice(data);
                        }
                        if let Some(le) = le {
                            out.push(le);
                        }
                    }
                    out
                }),
            // Raw bytes.
            prop::collection::vec(any::<u8>(), 0..40),
            // Well-formed headers with TLV-looking bodies.
            (ins_tlv(), prop::collection::vec(any::<u8>(), 0..60)).prop_map(
                |((ins, p1, p2, tag), body)| {
                    let data = [tag, body].concat();
                    let mut out = vec![0x00, ins, p1, p2, data.len().min(255) as u8];
                    out.extend_from_slice(&data[..data.len().min(255)]);
                    out
                }
            ),
        ]
    }

    fn ins_tlv() -> impl Strategy<Value = (u8, u8, u8, Vec<u8>)> {
        prop::sample::select(vec![
            (0xCBu8, 0x3F, 0xFF, vec![0x5C]),
            (0xDB, 0x3F, 0xFF, vec![0x5C, 0x03, 0x5F, 0xC1]),
            (0x87, 0x03, 0x9B, vec![0x7C]),
            (0x87, 0x11, 0x9E, vec![0x7C]),
            (0x47, 0x00, 0x9A, vec![0xAC]),
            (0xFF, 0xFF, 0xFF, vec![0x03, 0x9B]),
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn random_apdu_sequences_never_panic(
            authenticate in any::<bool>(),
            sequence in prop::collection::vec(apdu(), 1..40),
        ) {
            let mut c = card();
            select(&mut c);
            if authenticate {
                mgmt_auth(&mut c);
                generate_key(&mut c, 0x9E);
            }
            for apdu in &sequence {
                let r = c.transmit(apdu).expect("no tear in memory");
                prop_assert!(r.len() >= 2);
                if r.len() > 2 {
                    prop_assert!(r.len() <= 0xFFF2, "response of {} bytes", r.len());
                }
            }
            // The card still works afterwards.
            c.reset();
            prop_assert_eq!(select(&mut c).1, 0x9000);
        }
    }
}
