//! SELECT and the answer to it (spec §5.5, §6.1), built and read in one place
//! for the card, the issuing station and the reader.
//!
//! ```text
//! 6F
//!   84 0A  AID
//!   A5
//!     80 01  protocol version (02)
//!     81 01  life cycle (§3.1)
//! ```

use alloc::vec::Vec;

use crate::apdu::Command;
use crate::consts::{cla, ins, LifeCycle, AID, PROTOCOL_VERSION};
use crate::tlv::{self, Sequence};

const TAG_FCI: u32 = 0x6F;
const TAG_AID: u32 = 0x84;
const TAG_PROPRIETARY: u32 = 0xA5;
const TAG_VERSION: u32 = 0x80;
const TAG_LIFE_CYCLE: u32 = 0x81;

/// SELECT by AID, asking for the FCI: `00 A4 04 00 0A <AID> 00`.
pub fn select_command() -> Command {
    Command::new(cla::ISO, ins::SELECT, 0x04, 0x00)
        .with_data(AID.to_vec())
        .with_le(256)
}

/// The FCI a card in `life_cycle` answers to SELECT.
pub fn encode(life_cycle: LifeCycle) -> Vec<u8> {
    let mut proprietary = tlv::encode(TAG_VERSION, &[PROTOCOL_VERSION]);
    tlv::push(&mut proprietary, TAG_LIFE_CYCLE, &[life_cycle.to_byte()]);
    let mut fci = tlv::encode(TAG_AID, &AID);
    tlv::push(&mut fci, TAG_PROPRIETARY, &proprietary);
    tlv::encode(TAG_FCI, &fci)
}

/// The life cycle in a citycard FCI, or `None` if `fci` is not exactly one
/// (other AID, other protocol version, extra or missing fields).
pub fn life_cycle(fci: &[u8]) -> Option<LifeCycle> {
    let outer = tlv::read_exact(fci, TAG_FCI).ok()?;
    let mut s = Sequence::new(outer.value).ok()?;
    let aid = s.required(TAG_AID).ok()?;
    let prop = s.required(TAG_PROPRIETARY).ok()?;
    s.finish().ok()?;
    if aid.value != AID {
        return None;
    }
    let mut p = Sequence::new(prop.value).ok()?;
    let version = p.required(TAG_VERSION).ok()?;
    let state = p.required(TAG_LIFE_CYCLE).ok()?;
    p.finish().ok()?;
    if version.value != [PROTOCOL_VERSION] {
        return None;
    }
    match state.value {
        [b] => LifeCycle::from_byte(*b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_fci_and_round_trips() {
        let fci = hex::decode("6F14840AF0434954594341524402A506800102810107").unwrap();
        assert_eq!(encode(LifeCycle::Issued), fci);
        assert_eq!(life_cycle(&fci), Some(LifeCycle::Issued));
        for lc in [
            LifeCycle::Blank,
            LifeCycle::Prepared,
            LifeCycle::Issued,
            LifeCycle::Terminated,
        ] {
            assert_eq!(life_cycle(&encode(lc)), Some(lc));
        }
        for i in 0..fci.len() {
            let mut bad = fci.clone();
            bad[i] ^= 0x40;
            assert_ne!(life_cycle(&bad), Some(LifeCycle::Issued), "flip at {i}");
        }
        assert_eq!(life_cycle(&[]), None);
        // A version-1 card is not a citycard to a version-2 reader.
        let v1 = hex::decode("6F14840AF0434954594341524401A506800101810107").unwrap();
        assert_eq!(life_cycle(&v1), None);
        assert_eq!(
            select_command().to_short_bytes().unwrap(),
            hex::decode("00A404000AF043495459434152440200").unwrap()
        );
    }
}
