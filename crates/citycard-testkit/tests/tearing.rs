//! Tear safety in-process: power is lost at every persistent write of
//! personalisation and verification, before or after the write lands; after
//! reset the card is in a state the spec allows (§3.3), never a mix, and a
//! second attempt succeeds.
#![cfg(test)]

use citycard_card::{Applet, MemoryStorage, Storage, StorageError};
use citycard_proto::{apdu::ContactlessCard, consts::LifeCycle};
use citycard_testkit::script::{personalise_sample, tap_library};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Lets `allowed` commits through, then loses power on the next one, either
/// before it lands (`lands = false`) or right after (`lands = true`).
struct Tear {
    inner: MemoryStorage,
    allowed: u32,
    lands: bool,
    armed: bool,
}

impl Storage for Tear {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.load()
    }
    fn commit(&mut self, state: &[u8]) -> Result<(), StorageError> {
        if self.armed && self.allowed == 0 {
            self.armed = false;
            if self.lands {
                self.inner.commit(state)?;
            }
            return Err(StorageError::PowerLost);
        }
        self.allowed = self.allowed.saturating_sub(1);
        self.inner.commit(state)
    }
}

fn personalise_on(card: &mut Applet<Tear, ChaCha20Rng>, prepare: bool) -> Result<(), String> {
    let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
    personalise_sample(&mut link, prepare, 5, 2)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn tap(card: &mut Applet<Tear, ChaCha20Rng>, pso: bool) -> Result<(), String> {
    let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
    tap_library(&mut link, pso, "tear tap")
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn personalisation_writes_count_is_two() {
    let mut card = Applet::new(
        Tear {
            inner: MemoryStorage::new(),
            allowed: 0,
            lands: false,
            armed: false,
        },
        ChaCha20Rng::from_seed([1; 32]),
    );
    personalise_on(&mut card, true).unwrap();
    assert_eq!(
        card.storage().inner.commits(),
        2,
        "W1 preparation + W2 activate"
    );
    tap(&mut card, true).unwrap();
    assert_eq!(
        card.storage().inner.commits(),
        3,
        "W3 reader certificate cached"
    );
    tap(&mut card, false).unwrap();
    tap(&mut card, true).unwrap();
    assert_eq!(
        card.storage().inner.commits(),
        3,
        "later PSOs of the same power-up write nothing"
    );
    card.reset();
    tap(&mut card, true).unwrap();
    assert_eq!(
        card.storage().inner.commits(),
        4,
        "the first PSO of a power-up writes once, even for a cached certificate"
    );
}

#[test]
fn tear_at_every_personalisation_write_leaves_old_or_new_state() {
    // Write index → (state if the write did not land, state if it landed).
    let expected = [
        (LifeCycle::Blank, LifeCycle::Prepared),
        (LifeCycle::Prepared, LifeCycle::Issued),
    ];
    for (n, (before, after)) in expected.iter().enumerate() {
        for lands in [false, true] {
            let storage = Tear {
                inner: MemoryStorage::new(),
                allowed: n as u32,
                lands,
                armed: true,
            };
            let mut card = Applet::new(storage, ChaCha20Rng::from_seed([n as u8 + 10; 32]));
            let err =
                personalise_on(&mut card, true).expect_err("the tear interrupts personalisation");
            assert!(err.contains("lost power"), "write {n}: {err}");
            // The card is mute until reset, like a card pulled from the field.
            assert!(card.transmit(&[0x00, 0xA4, 0x04, 0x00]).is_err());
            card.reset();
            let state = card.life_cycle().expect("state readable after tear");
            assert_eq!(
                state,
                if lands { *after } else { *before },
                "write {n}, lands={lands}"
            );
            // Consistency of what is stored with the state byte.
            let st = card.state().unwrap();
            assert_eq!(st.anchor.is_some(), state != LifeCycle::Blank);
            assert_eq!(st.personalisation.is_some(), state == LifeCycle::Issued);
            // A second attempt from where the card is completes, and the card verifies.
            if state != LifeCycle::Issued {
                personalise_on(&mut card, state == LifeCycle::Blank).unwrap();
            }
            tap(&mut card, true).unwrap();
        }
    }
}

#[test]
fn tear_while_caching_a_reader_certificate() {
    for lands in [false, true] {
        let storage = Tear {
            inner: MemoryStorage::new(),
            allowed: 2,
            lands,
            armed: true,
        };
        let mut card = Applet::new(storage, ChaCha20Rng::from_seed([30; 32]));
        personalise_on(&mut card, true).unwrap();
        assert!(tap(&mut card, true).is_err());
        card.reset();
        assert_eq!(card.life_cycle(), Some(LifeCycle::Issued));
        assert_eq!(card.state().unwrap().cache.len(), usize::from(lands));
        // Cached or not, the reader's normal procedure works after the tear.
        if lands {
            tap(&mut card, false).unwrap();
        } else {
            assert!(
                tap(&mut card, false).is_err(),
                "not cached: GENERAL AUTHENTICATE alone is refused"
            );
            tap(&mut card, true).unwrap();
        }
    }
}
