//! CardChannel, Traced and MemoryTransport against small fake cards.
//!
//! Long on purpose: one test per transport rule (61xx, 6Cxx, chaining, limits,
//! tracing) over the same small fake cards.
#![cfg(test)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use citycard_proto::apdu::{CardLost, Command, CommandView, ContactlessCard, Response};
use citycard_proto::sw::StatusWord;
use citycard_transport::{
    CardChannel, CardTransport, ChannelConfig, MemoryTransport, TraceStats, Traced, TransactionFn,
    TransportError,
};

const ATR: [u8; 4] = [0x3B, 0x80, 0x80, 0x01];

/// A fake card whose behaviour is a closure over (command, card log).
struct FnCard<F> {
    respond: F,
    received: Vec<Vec<u8>>,
    resets: usize,
}

impl<F: FnMut(&[u8]) -> Result<Vec<u8>, CardLost>> FnCard<F> {
    fn new(respond: F) -> Self {
        Self {
            respond,
            received: Vec::new(),
            resets: 0,
        }
    }
}

impl<F: FnMut(&[u8]) -> Result<Vec<u8>, CardLost>> ContactlessCard for FnCard<F> {
    fn atr(&self) -> Vec<u8> {
        ATR.to_vec()
    }
    fn reset(&mut self) {
        self.resets += 1;
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        self.received.push(command.to_vec());
        (self.respond)(command)
    }
}

fn traced<F: FnMut(&[u8]) -> Result<Vec<u8>, CardLost>>(
    respond: F,
) -> CardChannel<Traced<MemoryTransport<FnCard<F>>>> {
    CardChannel::new(Traced::new(MemoryTransport::new(FnCard::new(respond))))
}

fn ok(mut data: Vec<u8>, sw: u16) -> Result<Vec<u8>, CardLost> {
    data.extend_from_slice(&sw.to_be_bytes());
    Ok(data)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

/// Serves `data` T=0-style: the command answers `61xx`, each GET RESPONSE
/// hands out up to Le bytes and announces the rest.
struct Outbox {
    pending: Vec<u8>,
}

impl Outbox {
    fn announce(&self) -> Result<Vec<u8>, CardLost> {
        let n = self.pending.len().min(256);
        ok(Vec::new(), 0x6100 | (n % 256) as u16)
    }

    fn get_response(&mut self, le: usize) -> Result<Vec<u8>, CardLost> {
        let n = le.min(self.pending.len());
        let chunk: Vec<u8> = self.pending.drain(..n).collect();
        if self.pending.is_empty() {
            ok(chunk, 0x9000)
        } else {
            let more = self.pending.len().min(256);
            ok(chunk, 0x6100 | (more % 256) as u16)
        }
    }
}

#[test]
fn get_response_reassembles_long_response_with_exact_counts() {
    let payload = pattern(600);
    let mut outbox = Outbox {
        pending: Vec::new(),
    };
    let served = payload.clone();
    let mut ch = traced(move |cmd| {
        let view = CommandView::parse(cmd).unwrap();
        match view.ins {
            0xB0 => {
                outbox.pending = served.clone();
                outbox.announce()
            }
            0xC0 => outbox.get_response(view.le.unwrap()),
            _ => ok(Vec::new(), 0x6D00),
        }
    });

    let resp = ch
        .exchange(&Command::new(0x80, 0xB0, 0, 0).with_le(256))
        .unwrap();
    assert_eq!(resp.sw, StatusWord::Success);
    assert_eq!(resp.data, payload);

    let trace = ch.transport().entries();
    let commands: Vec<&[u8]> = trace.iter().map(|e| e.command.as_slice()).collect();
    assert_eq!(
        commands,
        [
            &[0x80, 0xB0, 0, 0, 0x00][..],
            &[0x00, 0xC0, 0, 0, 0x00][..], // 61 00 means 256
            &[0x00, 0xC0, 0, 0, 0x00][..],
            &[0x00, 0xC0, 0, 0, 0x58][..], // 600 - 512 = 88
        ]
    );
    assert_eq!(trace[0].response, [0x61, 0x00]);
    assert_eq!(trace[3].response.len(), 88 + 2);
    let stats = ch.transport().stats();
    assert_eq!(stats.apdus, 4);
    assert_eq!(stats.bytes_sent, 4 * 5);
    assert_eq!(stats.bytes_received, 2 + 258 + 258 + 90);
    assert_eq!(stats.resets, 0);
}

#[test]
fn data_before_61xx_is_kept() {
    let mut ch = traced(|cmd| match cmd[1] {
        0xCA => ok(vec![1; 10], 0x6105),
        0xC0 => {
            assert_eq!(cmd, [0x00, 0xC0, 0, 0, 5]);
            ok(vec![2; 5], 0x6283)
        }
        _ => ok(Vec::new(), 0x6D00),
    });
    let resp = ch.exchange(&Command::new(0, 0xCA, 0, 0)).unwrap();
    assert_eq!(resp.data, [[1u8; 10].as_slice(), &[2; 5]].concat());
    assert_eq!(
        resp.sw,
        StatusWord::SelectedFileDeactivated,
        "final SW is the last round's"
    );
}

#[test]
fn wrong_le_is_retried_once_with_the_card_s_le() {
    let mut ch = traced(|cmd| {
        let view = CommandView::parse(cmd).unwrap();
        if view.le == Some(5) {
            ok(vec![9; 5], 0x9000)
        } else {
            ok(Vec::new(), 0x6C05)
        }
    });
    let cmd = Command::new(0, 0xCA, 0x01, 0x02)
        .with_data([0xAA])
        .with_le(256);
    let resp = ch.exchange(&cmd).unwrap();
    assert_eq!(
        resp,
        Response {
            data: vec![9; 5],
            sw: StatusWord::Success
        }
    );
    let sent: Vec<Vec<u8>> = ch
        .transport()
        .entries()
        .iter()
        .map(|e| e.command.clone())
        .collect();
    assert_eq!(
        sent,
        [
            vec![0, 0xCA, 1, 2, 1, 0xAA, 0x00],
            vec![0, 0xCA, 1, 2, 1, 0xAA, 0x05]
        ]
    );
    assert_eq!(
        ch.transport().stats(),
        TraceStats {
            apdus: 2,
            bytes_sent: 14,
            bytes_received: 2 + 7,
            ..stats_time(&ch)
        }
    );

    // A case-1 command (no Le) answered 6Cxx gets Le appended.
    ch.transport_mut().clear();
    let resp = ch.exchange(&Command::new(0, 0xCA, 0, 0)).unwrap();
    assert_eq!(resp.sw, StatusWord::Success);
    assert_eq!(ch.transport().entries()[1].command, [0, 0xCA, 0, 0, 5]);
}

fn stats_time<T: CardTransport>(ch: &CardChannel<Traced<T>>) -> TraceStats {
    TraceStats {
        elapsed: ch.transport().stats().elapsed,
        ..TraceStats::default()
    }
}

#[test]
fn stubborn_wrong_le_is_returned_after_one_retry() {
    let mut ch = traced(|_| ok(Vec::new(), 0x6C00));
    let resp = ch
        .exchange(&Command::new(0, 0xCA, 0, 0).with_le(4))
        .unwrap();
    assert_eq!(resp.sw, StatusWord::WrongLe(0));
    let entries = ch.transport().entries();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[1].command,
        [0, 0xCA, 0, 0, 0x00],
        "6C00 means Le = 256"
    );
}

#[test]
fn wrong_le_on_get_response_is_retried() {
    let mut ch = traced(|cmd| match (cmd[1], cmd.get(4)) {
        (0xB0, _) => ok(Vec::new(), 0x6110),
        (0xC0, Some(0x10)) => ok(Vec::new(), 0x6C08),
        (0xC0, Some(0x08)) => ok(vec![4; 8], 0x9000),
        _ => ok(Vec::new(), 0x6F00),
    });
    let resp = ch.exchange(&Command::new(0, 0xB0, 0, 0)).unwrap();
    assert_eq!(
        resp,
        Response {
            data: vec![4; 8],
            sw: StatusWord::Success
        }
    );
    assert_eq!(ch.transport().stats().apdus, 3);
}

#[test]
fn endless_61xx_is_bounded() {
    let mut ch = traced(|_| ok(Vec::new(), 0x6110));
    let err = ch.exchange(&Command::new(0, 0xB0, 0, 0)).unwrap_err();
    assert!(
        matches!(err, TransportError::TooManyGetResponse { limit: 16 }),
        "{err:?}"
    );
    // The command plus exactly 16 GET RESPONSE.
    assert_eq!(ch.transport().stats().apdus, 17);

    let mut config = ChannelConfig::default();
    config.max_get_response = 2;
    *ch.config_mut() = config;
    ch.transport_mut().clear();
    let err = ch.exchange(&Command::new(0, 0xB0, 0, 0)).unwrap_err();
    assert!(
        matches!(err, TransportError::TooManyGetResponse { limit: 2 }),
        "{err:?}"
    );
    assert_eq!(ch.transport().stats().apdus, 3);
}

#[test]
fn endless_61xx_with_data_hits_the_size_limit() {
    let mut ch = traced(|_| ok(vec![0x55; 256], 0x6100));
    let err = ch.exchange(&Command::new(0, 0xB0, 0, 0)).unwrap_err();
    assert!(
        matches!(err, TransportError::ResponseTooLong { limit: 4096 }),
        "{err:?}"
    );
    // 16 responses fill 4096 bytes exactly; the 17th overflows.
    assert_eq!(ch.transport().stats().apdus, 17);

    let mut small = ChannelConfig::default();
    small.max_response_len = 100;
    let mut ch = CardChannel::with_config(
        MemoryTransport::new(FnCard::new(|_| ok(vec![0; 101], 0x9000))),
        small,
    );
    assert!(matches!(
        ch.exchange(&Command::new(0, 0xB0, 0, 0)),
        Err(TransportError::ResponseTooLong { limit: 100 })
    ));
}

/// A card that implements receiving chains: it checks the CLA bits and Lc of
/// every segment, reassembles the data and echoes it back T=0-style.
struct ChainCard {
    buffer: Vec<u8>,
    segments: Vec<(u8, usize, Option<usize>)>,
    outbox: Outbox,
}

impl ContactlessCard for ChainCard {
    fn atr(&self) -> Vec<u8> {
        ATR.to_vec()
    }
    fn reset(&mut self) {
        self.buffer.clear();
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        let Ok(view) = CommandView::parse(command) else {
            return ok(Vec::new(), 0x6700);
        };
        if view.ins == 0xC0 {
            return self.outbox.get_response(view.le.unwrap_or(256));
        }
        self.segments.push((view.cla, view.data.len(), view.le));
        self.buffer.extend_from_slice(view.data);
        if view.is_chained() {
            if view.le.is_some() {
                return ok(Vec::new(), 0x6700);
            }
            return ok(Vec::new(), 0x9000);
        }
        self.outbox.pending = std::mem::take(&mut self.buffer);
        self.outbox.announce()
    }
}

#[test]
fn chaining_splits_600_bytes_with_cla_bits_and_reassembles() {
    let card = ChainCard {
        buffer: Vec::new(),
        segments: Vec::new(),
        outbox: Outbox {
            pending: Vec::new(),
        },
    };
    let mut ch = CardChannel::new(Traced::new(MemoryTransport::new(card)));
    let data = pattern(600);
    let resp = ch
        .exchange(
            &Command::new(0x80, 0xDA, 0x01, 0x02)
                .with_data(data.clone())
                .with_le(256),
        )
        .unwrap();
    assert_eq!(resp.sw, StatusWord::Success);
    assert_eq!(resp.data, data, "echoed back through GET RESPONSE");

    let card = ch.transport().inner().card();
    assert_eq!(
        card.segments,
        [(0x90, 255, None), (0x90, 255, None), (0x80, 90, Some(256))]
    );

    let stats = ch.transport().stats();
    // 3 segments + GET RESPONSE ×3 (256, 256, 88).
    assert_eq!(stats.apdus, 6);
    assert_eq!(stats.bytes_sent, (5 + 255) * 2 + (5 + 90 + 1) + 5 * 3);
    assert_eq!(stats.bytes_received, 2 + 2 + 2 + 258 + 258 + 90);
}

#[test]
fn chaining_segment_size_is_configurable_and_exact_multiples_work() {
    let card = ChainCard {
        buffer: Vec::new(),
        segments: Vec::new(),
        outbox: Outbox {
            pending: Vec::new(),
        },
    };
    let mut config = ChannelConfig::default();
    config.max_command_data = 100;
    let mut ch = CardChannel::with_config(MemoryTransport::new(card), config);
    let resp = ch
        .exchange(&Command::new(0x00, 0xDA, 0, 0).with_data(pattern(200)))
        .unwrap();
    assert_eq!(resp.data, pattern(200));
    assert_eq!(
        ch.transport().card().segments,
        [(0x10, 100, None), (0x00, 100, None)]
    );

    // 510 bytes with the default: exactly two full segments, no empty third.
    ch.config_mut().max_command_data = 255;
    ch.transport_mut().card_mut().segments.clear();
    ch.exchange(&Command::new(0x00, 0xDA, 0, 0).with_data(pattern(510)))
        .unwrap();
    assert_eq!(
        ch.transport().card().segments,
        [(0x10, 255, None), (0x00, 255, None)]
    );
}

#[test]
fn chaining_refused_midway_returns_the_card_s_status() {
    let mut seen = 0;
    let mut ch = traced(move |_| {
        seen += 1;
        if seen == 1 {
            ok(Vec::new(), 0x9000)
        } else {
            ok(Vec::new(), 0x6884)
        }
    });
    let cmd = Command::new(0x80, 0xDA, 0, 0).with_data(pattern(700));
    let resp = ch.exchange(&cmd).unwrap();
    assert_eq!(resp.sw, StatusWord::ChainingNotSupported);
    assert!(resp.data.is_empty());
    // The third segment was never sent.
    assert_eq!(ch.transport().stats().apdus, 2);

    ch.config_mut().chaining_refusal_is_error = true;
    let mut ch = CardChannel::with_config(
        Traced::new(MemoryTransport::new(FnCard::new(|_| {
            ok(Vec::new(), 0x6982)
        }))),
        ch.config().clone(),
    );
    let err = ch.exchange(&cmd).unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::ChainingRefused(StatusWord::SecurityStatusNotSatisfied)
        ),
        "{err:?}"
    );
    assert_eq!(ch.transport().stats().apdus, 1);
}

#[test]
fn malformed_responses_are_typed_errors() {
    for (raw, len) in [(vec![0x90], 1), (vec![], 0)] {
        let mut ch = traced(move |_| Ok(raw.clone()));
        let err = ch.exchange(&Command::new(0, 0xA4, 4, 0)).unwrap_err();
        assert!(
            matches!(err, TransportError::MalformedResponse { len: l } if l == len),
            "{err:?}"
        );
        // The exchange itself happened and is counted.
        assert_eq!(ch.transport().stats().apdus, 1);
        assert_eq!(ch.transport().stats().bytes_received, len as u64);
    }
    // Malformed in the middle of GET RESPONSE rounds, and in a chain.
    let mut ch = traced(|cmd| {
        if cmd[1] == 0xC0 {
            Ok(vec![0x61])
        } else {
            ok(Vec::new(), 0x6101)
        }
    });
    assert!(matches!(
        ch.exchange(&Command::new(0, 0xB0, 0, 0)),
        Err(TransportError::MalformedResponse { len: 1 })
    ));
    let mut ch = traced(|_| Ok(vec![]));
    assert!(matches!(
        ch.exchange(&Command::new(0, 0xDA, 0, 0).with_data(pattern(300))),
        Err(TransportError::MalformedResponse { len: 0 })
    ));
}

#[test]
fn invalid_le_and_invalid_raw_lengths_are_rejected_before_the_card() {
    let mut ch = traced(|_| ok(Vec::new(), 0x9000));
    for le in [0, 257, usize::MAX] {
        let err = ch
            .exchange(&Command::new(0, 0xB0, 0, 0).with_le(le))
            .unwrap_err();
        assert!(
            matches!(err, TransportError::InvalidLe(l) if l == le),
            "{err:?}"
        );
    }
    assert_eq!(ch.transport().stats().apdus, 0);

    let mut t = MemoryTransport::new(FnCard::new(|_| ok(Vec::new(), 0x9000)));
    assert!(matches!(
        t.transmit_raw(&[0, 1, 2]),
        Err(TransportError::InvalidCommandLength { len: 3 })
    ));
    assert!(matches!(
        t.transmit_raw(&[0; 262]),
        Err(TransportError::InvalidCommandLength { len: 262 })
    ));
    assert!(t.transmit_raw(&[0; 261]).is_ok());
    assert_eq!(t.card().received.len(), 1);
}

#[test]
fn power_loss_maps_to_card_removed_until_reset() {
    let mut ch = traced(|cmd| {
        if cmd[1] == 0xEE {
            Err(CardLost)
        } else {
            ok(Vec::new(), 0x9000)
        }
    });
    assert_eq!(
        ch.transport().inner().card().resets,
        1,
        "insertion powers the card up"
    );
    assert_eq!(ch.atr().unwrap(), ATR);

    let err = ch.exchange(&Command::new(0, 0xEE, 0, 0)).unwrap_err();
    assert!(matches!(err, TransportError::CardRemoved), "{err:?}");
    assert!(!ch.transport().inner().is_powered());
    // Still removed: not even sent to the card.
    assert!(matches!(
        ch.exchange(&Command::new(0, 0xA4, 4, 0)),
        Err(TransportError::CardRemoved)
    ));
    assert!(matches!(ch.atr(), Err(TransportError::CardRemoved)));
    assert_eq!(ch.transport().inner().card().received.len(), 1);

    ch.reset().unwrap();
    assert_eq!(ch.transport().inner().card().resets, 2);
    assert_eq!(
        ch.exchange(&Command::new(0, 0xA4, 4, 0)).unwrap().sw,
        StatusWord::Success
    );

    let stats = ch.transport().stats();
    assert_eq!(
        (
            stats.apdus,
            stats.bytes_sent,
            stats.bytes_received,
            stats.resets
        ),
        (3, 12, 2, 1)
    );
    let errors: Vec<Option<String>> = ch
        .transport()
        .entries()
        .iter()
        .map(|e| e.error.clone())
        .collect();
    assert!(errors[0].is_some() && errors[1].is_some() && errors[2].is_none());

    // Pulling the card off the reader.
    ch.transport_mut().inner_mut().remove();
    assert!(matches!(
        ch.exchange(&Command::new(0, 0xA4, 4, 0)),
        Err(TransportError::CardRemoved)
    ));
    let card = ch.into_inner().into_inner().into_inner();
    assert_eq!(card.received.len(), 2);
}

/// A `Write` that appends to a shared buffer.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn echo_prints_hex_lines() {
    let mut ch = traced(|_| ok(vec![0x6F, 0x01, 0xAB], 0x9000));
    let sink = Shared::default();
    ch.transport_mut().set_echo(Some(Box::new(sink.clone())));
    ch.exchange(
        &Command::new(0, 0xA4, 4, 0)
            .with_data([0xF0, 0x01])
            .with_le(256),
    )
    .unwrap();
    ch.reset().unwrap();
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], ">> 00A4040002F00100");
    assert!(lines[1].starts_with("<< 6F01AB9000  ("), "{}", lines[1]);
    assert!(lines[1].ends_with(" ms)"), "{}", lines[1]);
    assert_eq!(lines[2], "-- reset");
}

#[test]
fn counters_only_keeps_no_entries_and_clear_resets() {
    let mut ch = CardChannel::new(Traced::counters_only(MemoryTransport::new(FnCard::new(
        |_| ok(vec![1, 2], 0x9000),
    ))));
    ch.exchange(&Command::new(0, 0xB0, 0, 0).with_le(2))
        .unwrap();
    assert!(ch.transport().entries().is_empty());
    assert_eq!(ch.transport().stats().apdus, 1);
    assert_eq!(ch.transport().stats().bytes_received, 4);
    ch.transport_mut().clear();
    assert_eq!(ch.transport().stats(), TraceStats::default());
}

/// A backend that counts transactions around a MemoryTransport.
struct Locking<T> {
    inner: T,
    begun: usize,
    ended: usize,
    inside: bool,
}

impl<T: CardTransport> CardTransport for Locking<T> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.inner.transmit_raw(apdu)
    }
    fn atr(&self) -> Result<Vec<u8>, TransportError> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.inner.reset()
    }
    fn transaction(&mut self, body: &mut TransactionFn<'_>) -> Result<(), TransportError> {
        self.begun += 1;
        self.inside = true;
        let result = body(&mut self.inner);
        self.inside = false;
        self.ended += 1;
        result
    }
}

#[derive(Debug)]
enum AppError {
    Transport(#[allow(dead_code)] TransportError),
    Refused(StatusWord),
}

impl From<TransportError> for AppError {
    fn from(err: TransportError) -> Self {
        Self::Transport(err)
    }
}

#[test]
fn transactions_run_once_keep_tracing_and_propagate_errors() {
    let backend = Locking {
        inner: MemoryTransport::new(FnCard::new(|cmd| {
            if cmd[1] == 0xA4 {
                ok(Vec::new(), 0x9000)
            } else {
                ok(Vec::new(), 0x6982)
            }
        })),
        begun: 0,
        ended: 0,
        inside: false,
    };
    let mut ch = CardChannel::new(Traced::new(backend));
    let sw = ch
        .transaction(|tx| -> Result<StatusWord, AppError> {
            tx.exchange(&Command::new(0, 0xA4, 4, 0))?;
            Ok(tx.exchange(&Command::new(0, 0xA4, 4, 0))?.sw)
        })
        .unwrap();
    assert_eq!(sw, StatusWord::Success);
    assert_eq!(
        ch.transport().stats().apdus,
        2,
        "APDUs inside the transaction are traced"
    );

    let err = ch
        .transaction(|tx| -> Result<(), AppError> {
            let resp = tx.exchange(&Command::new(0x80, 0x20, 0, 0))?;
            if resp.sw != StatusWord::Success {
                return Err(AppError::Refused(resp.sw));
            }
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(
        err,
        AppError::Refused(StatusWord::SecurityStatusNotSatisfied)
    ));
    let backend = ch.transport().inner();
    assert_eq!(
        (backend.begun, backend.ended, backend.inside),
        (2, 2, false)
    );
    assert_eq!(ch.transport().stats().apdus, 3);
}

#[test]
fn boxed_dyn_transport_works() {
    let boxed: Box<dyn CardTransport> =
        Box::new(MemoryTransport::new(FnCard::new(|_| ok(vec![7], 0x9000))));
    let mut ch = CardChannel::new(boxed);
    assert_eq!(ch.exchange(&Command::new(0, 0xB0, 0, 0)).unwrap().data, [7]);
    assert_eq!(ch.atr().unwrap(), ATR);
}

#[test]
fn random_card_bytes_never_panic_and_always_terminate() {
    // Deterministic xorshift; responses of random length with random SWs,
    // biased towards 61xx and 6Cxx.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut ch = traced(move |_| {
        let r = next();
        let len = (r % 300) as usize;
        let mut out: Vec<u8> = (0..len).map(|i| (r >> (i % 56)) as u8).collect();
        match r % 4 {
            0 => out.push(0x61),
            1 => out.push(0x6C),
            _ => {}
        }
        if r % 3 == 0 {
            out.push((r >> 8) as u8);
        }
        Ok(out)
    });
    for i in 0..2000usize {
        let cmd = Command::new(0, (i % 256) as u8, 0, 0)
            .with_data(pattern(i % 700))
            .with_le(1 + i % 256);
        let before = ch.transport().stats().apdus;
        let _ = ch.exchange(&cmd);
        // At most 3 segments + (1 + 16 GET RESPONSE) × 2 (one 6Cxx retry each).
        assert!(ch.transport().stats().apdus - before <= 3 + 17 * 2);
    }
}
