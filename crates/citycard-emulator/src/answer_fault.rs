//! A card that answers wrongly on purpose: faults applied by the vpcd bridge to
//! the card's answers, for reader makers to test their error paths.
//!
//! The reference card itself stays correct; [`AnswerFaults`] sits between it
//! and vpcd and recognises the GENERAL AUTHENTICATE exchange (INS `86` and the
//! GET RESPONSE chain that fetches its answer, spec §4 and §6.10). When a
//! GENERAL AUTHENTICATE is *answered* (`61xx` or `9000`: on an issued card,
//! a real answer or the card's own decoy), the bridge fetches the whole answer
//! from the card, alters it as the fault says, and serves it to the reader
//! itself, chunked by the reader's Le with `61xx` exactly as the card would.
//! Status-word answers and every other command pass through unchanged, so
//! SELECT, PSO, preparation and personalisation behave as on a correct card.
//!
//! | `--fault` | What the card does | Verdict of a correct version-2 reader |
//! |---|---|---|
//! | `wrong-sw` | answers GENERAL AUTHENTICATE with `6A80`, a status word §6.10 never gives | not a valid answer: tampered |
//! | `truncated` | drops the last 8 bytes of the answer | tampered |
//! | `over-long` | appends 8 bytes after the answer | tampered |
//! | `flip-ciphertext` | flips one bit in the middle of the ciphertext (`87`) | the tag fails, as for a decoy, on the retry too: refused (SPEC §8 3a) |
//! | `replay` | answers the first tap genuinely and records it; answers every later tap with that recorded answer | replay |
//! | `decoy` | answers with a decoy: same length and status words, a real point `E_C`, random ciphertext | refused |
//! | `stale-record` | answers the first tap genuinely and records it; on later taps sends this tap's `E_C` with the recorded tap's ciphertext (an old disclosure under a new key exchange) | the tag (keyed by `E_C`) fails: refused |
//! | `endless-61xx` | every GET RESPONSE answers more data with `6100`, forever | tampered (the reader must bound the chain) |
//! | `removed-mid-answer` | sends the first part of the answer (`61xx`), then leaves the field: the vpcd connection is dropped before the first GET RESPONSE is answered | card removed |
//!
//! A version-2 card answers a refused GENERAL AUTHENTICATE with a decoy of its
//! own, and a modified answer is indistinguishable from one: a reader reports
//! both as the card's refusal (`card_refused`).

use std::fmt;
use std::str::FromStr;

use citycard_proto::apdu::{CardLost, CommandView, ContactlessCard};
use citycard_proto::tlv;
use sha2::{Digest, Sha256};

/// INS of GENERAL AUTHENTICATE.
const INS_GENERAL_AUTHENTICATE: u8 = 0x86;
/// INS of GET RESPONSE.
const INS_GET_RESPONSE: u8 = 0xC0;
/// How many bytes `truncated` removes and `over-long` adds.
pub const LENGTH_FAULT_BYTES: usize = 8;
/// The status word `wrong-sw` answers to GENERAL AUTHENTICATE.
pub const WRONG_STATUS_WORD: [u8; 2] = [0x6A, 0x80];
/// Upper bound of GET RESPONSE rounds when the bridge drains an answer from the
/// card (a correct card needs 3 for the longest answer).
const MAX_DRAIN_ROUNDS: usize = 16;

/// One way of answering wrongly; see the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AnswerFault {
    /// `wrong-sw`
    WrongStatusWord,
    /// `truncated`
    Truncated,
    /// `over-long`
    OverLong,
    /// `flip-ciphertext`
    FlippedCiphertext,
    /// `replay`
    ReplayedAnswer,
    /// `decoy`
    Decoy,
    /// `stale-record`
    StaleRecord,
    /// `endless-61xx`
    EndlessGetResponse,
    /// `removed-mid-answer`
    RemovedMidAnswer,
}

impl AnswerFault {
    /// Every answer fault, in documentation order.
    pub const ALL: [AnswerFault; 9] = [
        Self::WrongStatusWord,
        Self::Truncated,
        Self::OverLong,
        Self::FlippedCiphertext,
        Self::ReplayedAnswer,
        Self::Decoy,
        Self::StaleRecord,
        Self::EndlessGetResponse,
        Self::RemovedMidAnswer,
    ];

    /// The `--fault` value.
    pub const fn name(self) -> &'static str {
        match self {
            Self::WrongStatusWord => "wrong-sw",
            Self::Truncated => "truncated",
            Self::OverLong => "over-long",
            Self::FlippedCiphertext => "flip-ciphertext",
            Self::ReplayedAnswer => "replay",
            Self::Decoy => "decoy",
            Self::StaleRecord => "stale-record",
            Self::EndlessGetResponse => "endless-61xx",
            Self::RemovedMidAnswer => "removed-mid-answer",
        }
    }

    /// `true` when the first tap is answered genuinely (the fault needs an
    /// earlier tap's answer).
    pub const fn needs_earlier_tap(self) -> bool {
        matches!(self, Self::ReplayedAnswer | Self::StaleRecord)
    }
}

impl fmt::Display for AnswerFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown answer-fault name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown answer fault {0:?}")]
pub struct UnknownAnswerFault(pub String);

impl FromStr for AnswerFault {
    type Err = UnknownAnswerFault;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s.trim())
            .ok_or_else(|| UnknownAnswerFault(s.to_owned()))
    }
}

/// What the bridge does with one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this response APDU.
    Reply(Vec<u8>),
    /// Leave the field: drop the connection without answering.
    Remove,
}

/// The answer-fault layer between a card and vpcd.
#[derive(Debug)]
pub struct AnswerFaults {
    fault: AnswerFault,
    /// The rest of an altered answer, served by GET RESPONSE.
    pending: Option<Vec<u8>>,
    /// The first tap's answer (replay, stale record).
    recorded: Option<Vec<u8>>,
    /// Counter for the decoy's pseudo-random bytes.
    decoys: u64,
}

impl AnswerFaults {
    /// The layer for `fault`.
    pub fn new(fault: AnswerFault) -> Self {
        Self {
            fault,
            pending: None,
            recorded: None,
            decoys: 0,
        }
    }

    /// The fault applied.
    pub fn fault(&self) -> AnswerFault {
        self.fault
    }

    /// The card was reset or powered off: a pending answer is gone (a recorded
    /// earlier tap is kept, as an attacker's recording would be).
    pub fn reset(&mut self) {
        self.pending = None;
    }

    /// Handles one command APDU for `card`.
    ///
    /// # Errors
    ///
    /// [`CardLost`] when the card lost power.
    pub fn handle<C: ContactlessCard + ?Sized>(
        &mut self,
        card: &mut C,
        command: &[u8],
    ) -> Result<Action, CardLost> {
        let header = command.get(..4);
        let is_get_response = matches!(header, Some([0x00, INS_GET_RESPONSE, 0x00, 0x00]));
        if is_get_response {
            if let Some(pending) = self.pending.take() {
                if self.fault == AnswerFault::RemovedMidAnswer {
                    // The first part went out with `61xx`; the card leaves now.
                    return Ok(Action::Remove);
                }
                return Ok(self.serve_more(pending, le_of(command)));
            }
        }
        self.pending = None;
        let is_general_authenticate = matches!(
            header,
            Some([cla, INS_GENERAL_AUTHENTICATE, 0x00, 0x00]) if cla & !0x10 == 0x00
        );
        let response = card.transmit(command)?;
        if !is_general_authenticate {
            return Ok(Action::Reply(response));
        }
        let Some(answer) = drain(card, response.clone())? else {
            // A refusal or an answer that cannot be drained: unchanged.
            return Ok(Action::Reply(response));
        };
        let altered = match self.fault {
            AnswerFault::WrongStatusWord => return Ok(Action::Reply(WRONG_STATUS_WORD.to_vec())),
            AnswerFault::Truncated => {
                let keep = answer.len().saturating_sub(LENGTH_FAULT_BYTES);
                answer.get(..keep).unwrap_or_default().to_vec()
            }
            AnswerFault::OverLong => {
                let mut longer = answer;
                longer.extend_from_slice(&[0u8; LENGTH_FAULT_BYTES]);
                longer
            }
            AnswerFault::FlippedCiphertext => {
                let mut flipped = answer;
                let middle = ciphertext_range(&flipped).map(|(start, end)| (start + end) / 2);
                if let Some(byte) = middle.and_then(|i| flipped.get_mut(i)) {
                    *byte ^= 0x01;
                }
                flipped
            }
            AnswerFault::ReplayedAnswer => match &self.recorded {
                Some(earlier) => earlier.clone(),
                None => {
                    self.recorded = Some(answer.clone());
                    answer
                }
            },
            AnswerFault::StaleRecord => match &self.recorded {
                Some(earlier) => splice(&answer, earlier).unwrap_or(answer),
                None => {
                    self.recorded = Some(answer.clone());
                    answer
                }
            },
            AnswerFault::Decoy => self.decoy(&answer),
            AnswerFault::EndlessGetResponse | AnswerFault::RemovedMidAnswer => answer,
        };
        Ok(self.serve_more(altered, le_of(command)))
    }

    /// Serves the next chunk of `rest` for a command with Le `le`.
    fn serve_more(&mut self, rest: Vec<u8>, le: usize) -> Action {
        let (chunk, remaining) = rest.split_at(le.min(rest.len()));
        let mut reply = chunk.to_vec();
        if self.fault == AnswerFault::EndlessGetResponse {
            // Never done: always more to come, and the chunk is resent.
            reply.extend_from_slice(&[0x61, 0x00]);
            self.pending = Some(rest.clone());
            return Action::Reply(reply);
        }
        if remaining.is_empty() {
            reply.extend_from_slice(&[0x90, 0x00]);
            return Action::Reply(reply);
        }
        reply.push(0x61);
        reply.push(u8::try_from(remaining.len()).unwrap_or(0));
        self.pending = Some(remaining.to_vec());
        Action::Reply(reply)
    }

    /// A decoy as long as `answer`: its `E_C` and pseudo-random ciphertext.
    fn decoy(&mut self, answer: &[u8]) -> Vec<u8> {
        let mut decoy = answer.to_vec();
        let Some((start, end)) = ciphertext_range(answer) else {
            return decoy;
        };
        self.decoys = self.decoys.wrapping_add(1);
        let mut block = 0u64;
        let mut stream = Vec::new();
        while stream.len() < end - start {
            stream.extend_from_slice(&Sha256::digest(
                [
                    &b"citycard emulator decoy"[..],
                    &self.decoys.to_be_bytes(),
                    &block.to_be_bytes(),
                    answer,
                ]
                .concat(),
            ));
            block += 1;
        }
        for (slot, byte) in decoy
            .get_mut(start..end)
            .unwrap_or_default()
            .iter_mut()
            .zip(stream)
        {
            *slot = byte;
        }
        decoy
    }
}

/// The Le of a short command APDU (`00` = 256); 256 when absent or unparsable.
fn le_of(command: &[u8]) -> usize {
    CommandView::parse(command)
        .ok()
        .and_then(|c| c.le)
        .unwrap_or(256)
}

/// Fetches the whole answer from the card after a `61xx` (or takes a `9000`
/// answer as it is). `None` for a refusal or a chain that does not end.
fn drain<C: ContactlessCard + ?Sized>(
    card: &mut C,
    first: Vec<u8>,
) -> Result<Option<Vec<u8>>, CardLost> {
    let mut response = first;
    let mut answer = Vec::new();
    for _ in 0..MAX_DRAIN_ROUNDS {
        let Some(split) = response.len().checked_sub(2) else {
            return Ok(None);
        };
        let (data, sw) = response.split_at(split);
        answer.extend_from_slice(data);
        match sw {
            [0x90, 0x00] if !answer.is_empty() => return Ok(Some(answer)),
            [0x61, _] => response = card.transmit(&[0x00, INS_GET_RESPONSE, 0x00, 0x00, 0x00])?,
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// The answer `7C { 86 E_C, 87 C }` (SPEC §6.10), parsed with the protocol's
/// one TLV reader: its `E_C` and `C` objects, whole.
fn answer_parts(answer: &[u8]) -> Option<(tlv::Field<'_>, tlv::Field<'_>)> {
    let outer = tlv::read_exact(answer, 0x7C).ok()?;
    let mut inner = tlv::Sequence::new(outer.value).ok()?;
    let point = inner.required(0x86).ok()?;
    let cipher = inner.required(0x87).ok()?;
    inner.finish().ok()?;
    Some((point, cipher))
}

/// Where the ciphertext (`87` value) lies in an answer: it is the answer's
/// last object, so it ends where the answer ends.
fn ciphertext_range(answer: &[u8]) -> Option<(usize, usize)> {
    let (_, cipher) = answer_parts(answer)?;
    let end = answer.len();
    Some((end - cipher.value.len(), end))
}

/// This answer's `E_C` with the earlier answer's ciphertext.
fn splice(answer: &[u8], earlier: &[u8]) -> Option<Vec<u8>> {
    let (point, _) = answer_parts(answer)?;
    let (_, cipher) = answer_parts(earlier)?;
    Some(tlv::encode(0x7C, &[point.raw, cipher.raw].concat()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A fake card whose GENERAL AUTHENTICATE answer is a 300-byte `7C` TLV,
    /// served by GET RESPONSE like the reference card.
    struct Fake {
        pending: Vec<u8>,
        taps: u8,
    }

    fn answer(tap: u8) -> Vec<u8> {
        let mut inner = vec![0x86, 0x21, 0x02];
        inner.extend_from_slice(&[tap; 32]);
        inner.extend_from_slice(&[0x87, 0x81, 0xF0]);
        inner.extend_from_slice(&[tap.wrapping_add(0x40); 0xF0]);
        let mut out = vec![0x7C, 0x82];
        out.extend_from_slice(&(inner.len() as u16).to_be_bytes());
        out.extend_from_slice(&inner);
        out
    }

    impl ContactlessCard for Fake {
        fn atr(&self) -> Vec<u8> {
            vec![0x3B]
        }
        fn reset(&mut self) {}
        fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
            match command[1] {
                0x86 => {
                    self.taps += 1;
                    self.pending = answer(self.taps);
                    Ok(vec![0x61, 0x00])
                }
                0xC0 => {
                    let n = self.pending.len().min(256);
                    let mut r: Vec<u8> = self.pending.drain(..n).collect();
                    if self.pending.is_empty() {
                        r.extend_from_slice(&[0x90, 0x00]);
                    } else {
                        r.extend_from_slice(&[0x61, self.pending.len() as u8]);
                    }
                    Ok(r)
                }
                _ => Ok(vec![0x69, 0x85]),
            }
        }
    }

    const GA: [u8; 8] = [0x00, 0x86, 0x00, 0x00, 0x01, 0x7C, 0x00, 0x00];

    /// What a tap ends with: the answer, the failing status word, or `None` when removed.
    type TapEnd = Option<Result<Vec<u8>, [u8; 2]>>;

    /// Taps through the layer as a reader would: the reassembled answer, or the
    /// final status word when it is not `9000`, or `None` when removed.
    fn tap(layer: &mut AnswerFaults, card: &mut Fake) -> TapEnd {
        let mut data = Vec::new();
        let mut cmd = GA.to_vec();
        for _ in 0..20 {
            let Action::Reply(r) = layer.handle(card, &cmd).unwrap() else {
                return None;
            };
            let (d, sw) = r.split_at(r.len() - 2);
            data.extend_from_slice(d);
            match sw {
                [0x90, 0x00] => return Some(Ok(data)),
                [0x61, n] => cmd = vec![0x00, 0xC0, 0x00, 0x00, *n],
                other => return Some(Err([other[0], other[1]])),
            }
        }
        Some(Err([0x61, 0x00]))
    }

    fn run(fault: AnswerFault) -> (TapEnd, TapEnd) {
        let mut layer = AnswerFaults::new(fault);
        let mut card = Fake {
            pending: Vec::new(),
            taps: 0,
        };
        let first = tap(&mut layer, &mut card);
        layer.reset();
        let second = tap(&mut layer, &mut card);
        (first, second)
    }

    #[test]
    fn names_round_trip() {
        for f in AnswerFault::ALL {
            assert_eq!(f.name().parse::<AnswerFault>(), Ok(f));
        }
        assert!("flip".parse::<AnswerFault>().is_err());
    }

    #[test]
    fn each_fault_alters_the_answer_as_documented() {
        let genuine1 = answer(1);
        let genuine2 = answer(2);
        let (a, b) = run(AnswerFault::WrongStatusWord);
        assert_eq!((a, b), (Some(Err([0x6A, 0x80])), Some(Err([0x6A, 0x80]))));
        let (a, _) = run(AnswerFault::Truncated);
        assert_eq!(a.unwrap().unwrap(), genuine1[..genuine1.len() - 8]);
        let (a, _) = run(AnswerFault::OverLong);
        let a = a.unwrap().unwrap();
        assert_eq!(&a[..genuine1.len()], &genuine1[..]);
        assert_eq!(a.len(), genuine1.len() + 8);
        let (a, _) = run(AnswerFault::FlippedCiphertext);
        let a = a.unwrap().unwrap();
        let diff: Vec<usize> = (0..a.len()).filter(|i| a[*i] != genuine1[*i]).collect();
        assert_eq!(diff.len(), 1);
        assert!(diff[0] > 40, "inside the ciphertext");
        let (a, b) = run(AnswerFault::ReplayedAnswer);
        assert_eq!(a.unwrap().unwrap(), genuine1);
        assert_eq!(b.unwrap().unwrap(), genuine1);
        let (a, b) = run(AnswerFault::StaleRecord);
        assert_eq!(a.unwrap().unwrap(), genuine1);
        let b = b.unwrap().unwrap();
        assert_eq!(&b[..39], &genuine2[..39], "this tap's E_C");
        assert_eq!(&b[39..], &genuine1[39..], "the earlier ciphertext");
        let (a, _) = run(AnswerFault::Decoy);
        let a = a.unwrap().unwrap();
        assert_eq!(a.len(), genuine1.len());
        assert_eq!(&a[..42], &genuine1[..42]);
        assert_ne!(&a[42..], &genuine1[42..]);
        let (a, _) = run(AnswerFault::EndlessGetResponse);
        assert_eq!(a, Some(Err([0x61, 0x00])), "never ends");
        let (a, b) = run(AnswerFault::RemovedMidAnswer);
        assert_eq!((a, b), (None, None));
    }

    #[test]
    fn refusals_and_other_commands_pass_through() {
        struct Refuser;
        impl ContactlessCard for Refuser {
            fn atr(&self) -> Vec<u8> {
                vec![0x3B]
            }
            fn reset(&mut self) {}
            fn transmit(&mut self, _: &[u8]) -> Result<Vec<u8>, CardLost> {
                Ok(vec![0x69, 0x82])
            }
        }
        for fault in AnswerFault::ALL {
            let mut layer = AnswerFaults::new(fault);
            assert_eq!(
                layer.handle(&mut Refuser, &GA).unwrap(),
                Action::Reply(vec![0x69, 0x82])
            );
            let select = [0x00, 0xA4, 0x04, 0x00, 0x01, 0xF0, 0x00];
            assert_eq!(
                layer.handle(&mut Refuser, &select).unwrap(),
                Action::Reply(vec![0x69, 0x82])
            );
        }
    }

    #[test]
    fn le_is_read_from_every_command_case() {
        assert_eq!(le_of(&[0, 0xC0, 0, 0, 0x20]), 0x20);
        assert_eq!(le_of(&[0, 0xC0, 0, 0, 0x00]), 256);
        assert_eq!(le_of(&[0, 0x86, 0, 0, 1, 0x7C, 0x00]), 256);
        assert_eq!(le_of(&[0, 0x86, 0, 0, 1, 0x7C]), 256);
        assert_eq!(le_of(&[0, 0x86, 0, 0, 1, 0x7C, 0x10]), 0x10);
    }
}
