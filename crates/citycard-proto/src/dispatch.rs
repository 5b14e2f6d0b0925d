//! The one APDU dispatcher every card application plugs into: command
//! chaining, GET RESPONSE and response shaping (short or extended Le), in the
//! spirit of trussed's apdu-dispatch.
//!
//! A card application implements [`Application`]: it *admits* a command
//! header into its own typed command (selection, class, instruction and life
//! cycle, all checked before any parameter, for a whole command and for the
//! first segment of a chain alike) and *executes* one whole command, returning
//! one whole response. The [`Dispatcher`] does the rest, in this order:
//!
//! 1. [`Application::ready`]: a card whose state is unreadable answers that
//!    status word (`6F00`) to every command, well-formed or not.
//! 2. Parse ([`CommandView::parse`], or [`CommandView::parse_extended`] when
//!    [`Limits::extended_length`]). A malformed command answers `6700` and
//!    drops any chain being collected and any pending response.
//! 3. GET RESPONSE (CLA `00`, INS `C0`): P1-P2 other than `00 00` → `6A86`,
//!    nothing pending → `6985`, else the next Le bytes of the pending response.
//!    GET RESPONSE leaves a chain being collected untouched.
//! 4. Any other command drops the pending response.
//! 5. Command chaining (ISO 7816-4 §5.3.3): the header of a chain is CLA with
//!    the chaining bit cleared, INS, P1, P2. A command that continues a chain
//!    with another header → `6883` (chain dropped); data beyond
//!    [`Limits::max_chained_data`] → `6700` (chain dropped). The first segment
//!    of a chain is admitted ([`Segment::FirstOfChain`]) exactly as the whole
//!    command would be and answered `9000`; so is every further segment but
//!    the last.
//! 6. The whole command is admitted ([`Segment::Whole`]) and executed.
//! 7. Response shaping: at most Le bytes (256 when Le is absent, never more
//!    than [`Limits::max_response_data`]); the rest waits for GET RESPONSE and
//!    is announced with `61xx` (`6100` for 256 bytes or more).
//!
//! No step can panic; every refusal is a status word.

use alloc::vec::Vec;

use crate::apdu::CardLost;
use crate::apdu::{CommandView, CLA_CHAINING, HEADER_LEN, INS_GET_RESPONSE, MAX_SHORT_RESPONSE};
use crate::sw::StatusWord;

/// What one command handler answers: the whole response data, or the status
/// word that refuses the command.
pub type Outcome = Result<Vec<u8>, StatusWord>;

/// The header of a (reassembled) command, chaining bit cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Class byte without the chaining bit (b5).
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
}

impl Header {
    /// The header of `command`, chaining bit cleared.
    pub const fn of(command: &CommandView<'_>) -> Self {
        Self {
            cla: command.cla & !CLA_CHAINING,
            ins: command.ins,
            p1: command.p1,
            p2: command.p2,
        }
    }

    /// CLA, INS, P1, P2 (the header a secure channel authenticates).
    pub const fn to_bytes(self) -> [u8; HEADER_LEN] {
        [self.cla, self.ins, self.p1, self.p2]
    }

    /// `Ok` when P1-P2 are exactly `p1p2`, else `6A86`.
    pub fn expect_p1p2(self, p1p2: (u8, u8)) -> Result<(), StatusWord> {
        if (self.p1, self.p2) == p1p2 {
            Ok(())
        } else {
            Err(StatusWord::IncorrectP1P2)
        }
    }
}

/// Which part of a command is being admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    /// A whole command (unchained, or the reassembled chain), about to run.
    Whole,
    /// The first segment of a chain: refuse it as the whole command would be
    /// refused, and refuse instructions that do not take chaining (`6884`).
    FirstOfChain,
}

/// The APDU limits of one card application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `true` to accept extended-length APDUs; `false` refuses them (`6700`).
    pub extended_length: bool,
    /// Largest data field a chain may accumulate (`6700` past it).
    pub max_chained_data: usize,
    /// Largest response data sent in one response, whatever Le asks for.
    pub max_response_data: usize,
}

impl Limits {
    /// Short APDUs only: Le at most 256.
    pub const fn short(max_chained_data: usize) -> Self {
        Self {
            extended_length: false,
            max_chained_data,
            max_response_data: MAX_SHORT_RESPONSE,
        }
    }
}

/// A card application behind the [`Dispatcher`].
pub trait Application {
    /// A command admitted by [`admit`](Self::admit): the instruction, typed.
    type Command: Copy;

    /// The application's APDU limits.
    const LIMITS: Limits;

    /// `Err` (`6F00`) when the card cannot answer at all (state unreadable).
    fn ready(&self) -> Result<(), StatusWord>;

    /// Every check made before parameters: selection, class, instruction,
    /// life cycle or security status, in the application's documented
    /// order. `Ok` gives the typed command to execute.
    fn admit(&self, header: Header, segment: Segment) -> Result<Self::Command, StatusWord>;

    /// Runs one whole admitted command and returns its whole response data.
    fn execute(
        &mut self,
        command: Self::Command,
        header: Header,
        data: &[u8],
        le: Option<usize>,
    ) -> Outcome;

    /// The application's dispatcher (volatile: reset it at power-up).
    fn dispatcher(&mut self) -> &mut Dispatcher;

    /// `false` once a persistent write was torn: the card answers nothing
    /// until it is reset.
    fn powered(&self) -> bool;

    /// One raw command in, the whole response (data and SW) out, or
    /// [`CardLost`] when the card has no power (before or after the command):
    /// the body of [`ContactlessCard::transmit`](crate::apdu::ContactlessCard::transmit).
    fn transmit_apdu(&mut self, raw: &[u8]) -> Result<Vec<u8>, CardLost>
    where
        Self: Sized,
    {
        if !self.powered() {
            return Err(CardLost);
        }
        let mut dispatcher = core::mem::take(self.dispatcher());
        let response = dispatcher.process(self, raw);
        *self.dispatcher() = dispatcher;
        if !self.powered() {
            return Err(CardLost);
        }
        Ok(response)
    }
}

/// The volatile transport state of one card application: the chain being
/// collected and the response waiting for GET RESPONSE. Lost on reset.
#[derive(Debug, Default)]
pub struct Dispatcher {
    chain: Option<(Header, Vec<u8>)>,
    pending: Vec<u8>,
}

impl Dispatcher {
    /// Processes one raw command APDU for `app` (steps 1–7 of the module
    /// documentation) and returns the whole response: data and SW.
    pub fn process<A: Application>(&mut self, app: &mut A, raw: &[u8]) -> Vec<u8> {
        let (mut out, status) = match self.dispatch(app, raw) {
            Ok((data, le)) => self.shape::<A>(data, le),
            Err(status) => (Vec::new(), status),
        };
        out.extend_from_slice(&status.to_bytes());
        out
    }

    /// Steps 1–6: the response data and the Le it is shaped to.
    fn dispatch<A: Application>(
        &mut self,
        app: &mut A,
        raw: &[u8],
    ) -> Result<(Vec<u8>, Option<usize>), StatusWord> {
        app.ready()?;
        let parsed = if A::LIMITS.extended_length {
            CommandView::parse_extended(raw)
        } else {
            CommandView::parse(raw)
        };
        let command = match parsed {
            Ok(command) => command,
            Err(error) => {
                self.chain = None;
                self.pending.clear();
                return Err(error.status());
            }
        };

        if command.cla == 0x00 && command.ins == INS_GET_RESPONSE {
            Header::of(&command).expect_p1p2((0, 0))?;
            if self.pending.is_empty() {
                return Err(StatusWord::ConditionsNotSatisfied);
            }
            return Ok((core::mem::take(&mut self.pending), command.le));
        }
        self.pending.clear();

        let header = Header::of(&command);
        let assembled = match self.chain.take() {
            Some((chain_header, mut buffer)) => {
                if chain_header != header {
                    return Err(StatusWord::LastCommandExpected);
                }
                if buffer.len().saturating_add(command.data.len()) > A::LIMITS.max_chained_data {
                    return Err(StatusWord::WrongLength);
                }
                buffer.extend_from_slice(command.data);
                if command.is_chained() {
                    self.chain = Some((header, buffer));
                    return Ok((Vec::new(), None));
                }
                Some(buffer)
            }
            None if command.is_chained() => {
                app.admit(header, Segment::FirstOfChain)?;
                if command.data.len() > A::LIMITS.max_chained_data {
                    return Err(StatusWord::WrongLength);
                }
                self.chain = Some((header, command.data.to_vec()));
                return Ok((Vec::new(), None));
            }
            None => None,
        };
        let data = assembled.as_deref().unwrap_or(command.data);
        let admitted = app.admit(header, Segment::Whole)?;
        let response = app.execute(admitted, header, data, command.le)?;
        Ok((response, command.le))
    }

    /// Step 7: at most Le bytes now, the rest pending with `61xx`.
    fn shape<A: Application>(
        &mut self,
        mut data: Vec<u8>,
        le: Option<usize>,
    ) -> (Vec<u8>, StatusWord) {
        let le = le
            .unwrap_or(MAX_SHORT_RESPONSE)
            .min(A::LIMITS.max_response_data);
        if data.len() > le {
            self.pending = data.split_off(le);
        }
        let status = match self.pending.len() {
            0 => StatusWord::Success,
            n => StatusWord::BytesRemaining(u8::try_from(n).unwrap_or(0)),
        };
        (data, status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A toy application: INS `01` echoes its data repeated P1 times,
    /// chainable; every other INS is `6D00`.
    #[derive(Default)]
    struct Echo {
        dispatcher: Dispatcher,
        mute: bool,
    }

    impl Application for Echo {
        type Command = ();
        const LIMITS: Limits = Limits::short(600);

        fn ready(&self) -> Result<(), StatusWord> {
            if self.mute {
                Err(StatusWord::Unknown)
            } else {
                Ok(())
            }
        }

        fn admit(&self, header: Header, _segment: Segment) -> Result<(), StatusWord> {
            match header.ins {
                0x01 => Ok(()),
                _ => Err(StatusWord::InstructionNotSupported),
            }
        }

        fn execute(&mut self, (): (), header: Header, data: &[u8], _: Option<usize>) -> Outcome {
            Ok(data.repeat(usize::from(header.p1)))
        }

        fn dispatcher(&mut self) -> &mut Dispatcher {
            &mut self.dispatcher
        }

        fn powered(&self) -> bool {
            true
        }
    }

    fn sw(response: &[u8]) -> [u8; 2] {
        let (_, sw) = response.split_last_chunk::<2>().unwrap();
        *sw
    }

    #[test]
    fn shapes_long_responses_and_serves_get_response() {
        let mut app = Echo::default();
        // 300 bytes: 256 now with 61 2C, then 44 with 9000.
        let command = [&[0u8, 1, 3, 0, 100][..], &[7u8; 100]].concat();
        let r = app.transmit_apdu(&command).unwrap();
        assert_eq!(r.len(), 256 + 2);
        assert_eq!(sw(&r), [0x61, 44]);
        let r = app.transmit_apdu(&[0, 0xC0, 0, 0, 44]).unwrap();
        assert_eq!((r.len(), sw(&r)), (44 + 2, [0x90, 0]));
        let r = app.transmit_apdu(&[0, 0xC0, 0, 0, 0]).unwrap();
        assert_eq!(r, [0x69, 0x85]);
    }

    #[test]
    fn malformed_or_other_command_drops_pending_response() {
        let mut app = Echo::default();
        let big = [&[0u8, 1, 3, 0, 100][..], &[5u8; 100]].concat();
        assert_eq!(sw(&app.transmit_apdu(&big).unwrap()), [0x61, 44]);
        // Wrong P1-P2 keeps it; a malformed APDU drops it.
        assert_eq!(
            app.transmit_apdu(&[0, 0xC0, 1, 0, 0]).unwrap(),
            [0x6A, 0x86]
        );
        assert_eq!(app.transmit_apdu(&[0, 1, 0]).unwrap(), [0x67, 0x00]);
        assert_eq!(
            app.transmit_apdu(&[0, 0xC0, 0, 0, 0]).unwrap(),
            [0x69, 0x85]
        );
    }

    #[test]
    fn chains_at_and_past_the_limit() {
        let mut app = Echo::default();
        let segment = |cla: u8, p2: u8, len: u8| {
            [&[cla, 1, 1, p2, len][..], &vec![9u8; usize::from(len)]].concat()
        };
        // 255 + 255 + 90 = 600 bytes: exactly the limit.
        assert_eq!(
            app.transmit_apdu(&segment(0x10, 0, 255)).unwrap(),
            [0x90, 0]
        );
        assert_eq!(
            app.transmit_apdu(&segment(0x10, 0, 255)).unwrap(),
            [0x90, 0]
        );
        let r = app.transmit_apdu(&segment(0x00, 0, 90)).unwrap();
        assert_eq!((r.len(), sw(&r)), (258, [0x61, 0x00]));
        // One byte more is 6700 and drops the chain.
        assert_eq!(
            app.transmit_apdu(&segment(0x10, 0, 255)).unwrap(),
            [0x90, 0]
        );
        assert_eq!(
            app.transmit_apdu(&segment(0x10, 0, 255)).unwrap(),
            [0x90, 0]
        );
        assert_eq!(app.transmit_apdu(&segment(0x00, 0, 91)).unwrap(), [0x67, 0]);
        // Another header interrupts a chain: 6883, chain dropped.
        assert_eq!(app.transmit_apdu(&segment(0x10, 0, 1)).unwrap(), [0x90, 0]);
        assert_eq!(
            app.transmit_apdu(&segment(0x00, 1, 1)).unwrap(),
            [0x68, 0x83]
        );
        let r = app.transmit_apdu(&segment(0x00, 0, 1)).unwrap();
        assert_eq!(r, [9, 0x90, 0]);
        // The first segment is admitted as the whole command would be.
        assert_eq!(
            app.transmit_apdu(&[0x10, 2, 0, 0, 1, 1]).unwrap(),
            [0x6D, 0]
        );
    }

    #[test]
    fn a_mute_card_answers_6f00_to_everything() {
        let mut app = Echo {
            mute: true,
            ..Echo::default()
        };
        for raw in [&[0u8, 1, 1, 0, 1, 1][..], &[0], &[0, 0xC0, 0, 0, 0]] {
            assert_eq!(app.transmit_apdu(raw).unwrap(), [0x6F, 0]);
        }
    }
}
