//! A desk at work: reconciling what a stopped run left on this reader,
//! issuing one card ([`Counter::issue`]) or a whole batch file
//! ([`Counter::run_batch`]), with a typed report per row. The CLI parses
//! arguments and prints; everything else is here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use citycard_registry::{IssuanceRegistry, RegistryError, RevocationReason};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::cards::{CardSource, Channel};
use crate::desk::{self, Desk};
use crate::error::IssuerError;
use crate::home::{IssuerHome, LoadedStation};
use crate::issue::{self, IssueError, IssueRequest, Issued, Reconciled};
use crate::piv::{self, PivIssued, PivOptions};
use crate::resident::{BatchRow, InputError, Resident};

/// One issuing process: the home, a loaded station, the registry, the desk
/// lease and the card source.
pub struct Counter<'a> {
    /// The issuer home.
    pub home: &'a IssuerHome,
    /// The station (its `desk_lease` is this counter's lease).
    pub station: LoadedStation,
    /// The registry connection.
    pub registry: Box<dyn IssuanceRegistry + Send>,
    /// Where the cards are.
    pub source: CardSource,
    /// Today (UTC).
    pub today: citycard_proto::date::Date,
    /// The operator, for the audit log.
    pub actor: String,
    /// Print every APDU on stderr.
    pub trace: bool,
    /// How long to wait for a card.
    pub wait: Duration,
    desk: Desk,
    rng: ChaCha20Rng,
}

/// What reconciliation found at the start of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartReport {
    /// Orphaned intents of this reader, settled.
    pub reconciled: Reconciled,
    /// Card numbers of orphaned intents of other readers (left for them).
    pub elsewhere: Vec<String>,
    /// Intents of other desks at work (never touched).
    pub working: usize,
}

/// What happened to one batch row.
#[derive(Debug)]
pub enum RowOutcome {
    /// Issued now.
    Issued {
        /// Card number and validity.
        card: Issued,
        /// For the PIV profile: what the card carries.
        piv: Option<PivIssued>,
    },
    /// Nothing to do: the row (or its resident) already has a card, from an
    /// earlier run of this file or (with `--resume`) of a corrected copy.
    Skipped {
        /// The card the row or resident has.
        card_number: String,
    },
    /// The row is invalid: refused before anything was allocated.
    Refused(InputError),
    /// The row was valid but not issued (the resident has a live card or an
    /// issuance in progress at another desk; the card failed and its intent
    /// was marked spoiled).
    Failed(IssueError),
}

/// One row's report.
#[derive(Debug)]
pub struct RowReport {
    /// The row's line in the file.
    pub line: u64,
    /// The row's `resident_id`, when it has one.
    pub resident_id: Option<String>,
    /// What happened.
    pub outcome: RowOutcome,
}

/// Why a batch ended.
#[derive(Debug)]
pub enum BatchEnd {
    /// Every row was handled.
    Completed,
    /// The operator interrupted it (Ctrl-C): the card in progress was
    /// finished first, nothing is left open.
    Interrupted,
    /// The card was lost mid-way: its intent stays open until the same card
    /// is back in this reader (`--resume`).
    CardLost {
        /// The row.
        line: u64,
        /// What happened.
        error: IssueError,
    },
    /// No card came, or the reader failed.
    NoCard {
        /// The row waiting for a card.
        line: u64,
        /// What happened.
        error: IssuerError,
    },
    /// A refusal that would repeat on every row (registry, keys, station).
    Fatal {
        /// The row.
        line: u64,
        /// What happened.
        error: IssueError,
    },
    /// Another desk took this desk's lease over (it was suspended longer
    /// than the lease lasts): it stops before issuing more.
    LeaseLost,
}

impl BatchEnd {
    /// Its machine name, the `end` of the batch summary: `completed`,
    /// `interrupted`, `lease-lost`, `card-lost`, `no-card` or `stopped`.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Interrupted => "interrupted",
            Self::LeaseLost => "lease-lost",
            Self::CardLost { .. } => "card-lost",
            Self::NoCard { .. } => "no-card",
            Self::Fatal { .. } => "stopped",
        }
    }
}

/// Counts of a batch run.
#[derive(Debug)]
pub struct BatchSummary {
    /// Rows in the file.
    pub rows: u64,
    /// Issued now.
    pub issued: u64,
    /// Already done.
    pub skipped: u64,
    /// Invalid rows.
    pub refused: u64,
    /// Valid rows not issued.
    pub failed: u64,
    /// Why it ended.
    pub end: BatchEnd,
}

impl<'a> Counter<'a> {
    /// Opens a counter: loads the station, opens the registry, takes a desk
    /// lease for the card source.
    pub fn open(
        home: &'a IssuerHome,
        mut station: LoadedStation,
        source: CardSource,
        today: citycard_proto::date::Date,
        actor: String,
    ) -> Result<Self, IssuerError> {
        let mut registry = home.registry()?;
        let desk = Desk::start(home, &source.desk_id())?;
        desk::sweep_lock_files(home, &mut registry);
        station.desk_lease = Some(desk.lease_id().to_string());
        let rng = ChaCha20Rng::from_rng(rand_core::OsRng)
            .map_err(|_| IssuerError::Config("no OS randomness".into()))?;
        Ok(Self {
            home,
            station,
            registry,
            source,
            today,
            actor,
            trace: false,
            wait: Duration::from_secs(30),
            desk,
            rng,
        })
    }

    /// The open intents this reader's stopped runs left (orphans here).
    pub fn orphans(&self) -> Result<desk::Orphans, IssuerError> {
        desk::orphans(
            self.home,
            &self.registry,
            self.desk.desk(),
            Some(self.desk.lease_id()),
        )
    }

    /// Takes over and settles this reader's orphaned intents against `ch`
    /// (the card in the reader, if any); other desks' intents are untouched.
    pub fn reconcile(
        &mut self,
        piv: bool,
        ch: Option<&mut Channel>,
    ) -> Result<StartReport, IssuerError> {
        let orphans = self.orphans()?;
        let mine = desk::take_over(&mut self.registry, orphans.here, self.desk.lease_id())?;
        let reconciled = if piv {
            piv::reconcile_intents(
                self.home,
                &mut self.registry,
                mine,
                ch,
                &self.actor,
                &mut self.rng,
            )?
        } else {
            issue::reconcile_intents(
                self.home,
                &mut self.registry,
                &self.station,
                mine,
                ch,
                &self.actor,
                &mut self.rng,
            )?
        };
        Ok(StartReport {
            reconciled,
            elsewhere: orphans
                .elsewhere
                .into_iter()
                .map(|i| i.card_number)
                .collect(),
            working: orphans.working,
        })
    }

    /// Reconciles against the card currently in the reader (taken and put
    /// back), for the start of a `batch --resume`.
    pub fn reconcile_current(&mut self, piv: bool) -> Result<StartReport, IssuerError> {
        if self.orphans()?.here.is_empty() {
            return self.reconcile(piv, None);
        }
        let mut current = self.source.current_card(self.wait, self.trace)?;
        let report = self.reconcile(piv, current.as_mut());
        if let Some(ch) = current {
            self.source.card_done(ch, self.wait);
        }
        report
    }

    /// The next card from the source.
    pub fn next_card(&mut self) -> Result<Channel, IssuerError> {
        self.source.next_card(self.wait, self.trace)
    }

    /// Issues one card on `ch` (the applet's flow, or the PIV one).
    pub fn issue(
        &mut self,
        ch: &mut Channel,
        piv: Option<&PivOptions<'_>>,
        resident: &Resident,
        batch: Option<(&str, u64)>,
        replaces: Option<RevocationReason>,
    ) -> Result<(Issued, Option<PivIssued>), IssueError> {
        let request = IssueRequest {
            resident,
            actor: &self.actor,
            batch,
            replaces,
            today: self.today,
        };
        match piv {
            None => issue::issue_one(
                self.home,
                &self.station,
                &mut self.registry,
                ch,
                &request,
                &mut self.rng,
            )
            .map(|issued| (issued, None)),
            Some(options) => piv::issue_one(
                self.home,
                &self.station,
                &mut self.registry,
                ch,
                &request,
                options,
                &mut self.rng,
            )
            .map(|p| (p.issued.clone(), Some(p))),
        }
    }

    /// Runs a batch: settles this reader's orphans first (refused with
    /// [`IssuerError::NeedsResume`] unless `job.resume`), then each row in
    /// turn. `job.interrupted` is checked before each row: once set, the run
    /// stops with [`BatchEnd::Interrupted`] (the card in progress is finished
    /// first). `on_start` gets the reconciliation report, `on_row` each row's.
    pub fn run_batch(
        &mut self,
        rows: Vec<BatchRow>,
        job: &BatchJob<'_>,
        on_start: &mut dyn FnMut(&StartReport),
        on_row: &mut dyn FnMut(&RowReport),
    ) -> Result<BatchSummary, IssuerError> {
        let orphans = self.orphans()?;
        if !orphans.here.is_empty() && !job.resume {
            return Err(IssuerError::NeedsResume {
                count: orphans.here.len(),
            });
        }
        let start = self.reconcile_current(job.piv.is_some())?;
        on_start(&start);
        let mut summary = BatchSummary {
            rows: rows.len() as u64,
            issued: 0,
            skipped: 0,
            refused: 0,
            failed: 0,
            end: BatchEnd::Completed,
        };
        for (line, parsed) in rows {
            if job.interrupted.load(Ordering::SeqCst) {
                summary.end = BatchEnd::Interrupted;
                break;
            }
            if self.desk.is_lost() {
                summary.end = BatchEnd::LeaseLost;
                break;
            }
            let resident = match parsed {
                Ok(r) => r,
                Err(e) => {
                    summary.refused += 1;
                    on_row(&RowReport {
                        line,
                        resident_id: e.resident_id.clone(),
                        outcome: RowOutcome::Refused(e),
                    });
                    continue;
                }
            };
            let report = |outcome| RowReport {
                line,
                resident_id: Some(resident.resident_id.clone()),
                outcome,
            };
            if let Some(card_number) = self.already_issued(job, line, &resident)? {
                summary.skipped += 1;
                on_row(&report(RowOutcome::Skipped { card_number }));
                continue;
            }
            match self.issue_row(job, line, &resident) {
                RowStep::Done(outcome) => {
                    summary.count(&outcome);
                    on_row(&report(outcome));
                }
                RowStep::Stop(end) => {
                    summary.end = end;
                    break;
                }
            }
        }
        Ok(summary)
    }

    /// The card number of a row that needs no card: issued by an earlier run
    /// of this batch, or (`--resume` with a corrected file) a resident who
    /// already holds a live card.
    fn already_issued(
        &mut self,
        job: &BatchJob<'_>,
        line: u64,
        resident: &Resident,
    ) -> Result<Option<String>, IssuerError> {
        if let Some(card_number) = self.registry.batch_row_done(job.batch_id, line)? {
            return Ok(Some(card_number));
        }
        if job.resume {
            if let Some(card) = self.registry.live_card_of(&resident.resident_id)? {
                if card.state == citycard_registry::CardState::Issued {
                    return Ok(Some(card.card_number));
                }
            }
        }
        Ok(None)
    }

    /// Waits for the next card and issues one row on it.
    fn issue_row(&mut self, job: &BatchJob<'_>, line: u64, resident: &Resident) -> RowStep {
        let mut ch = match self.next_card() {
            Ok(ch) => ch,
            Err(IssuerError::Interrupted) => return RowStep::Stop(BatchEnd::Interrupted),
            Err(error) => return RowStep::Stop(BatchEnd::NoCard { line, error }),
        };
        let result = self.issue(&mut ch, job.piv, resident, Some((job.batch_id, line)), None);
        let step = match result {
            Ok((card, piv)) => RowStep::Done(RowOutcome::Issued { card, piv }),
            Err(error @ IssueError::CardLost { .. }) => {
                return RowStep::Stop(BatchEnd::CardLost { line, error })
            }
            Err(IssueError::Issuer(IssuerError::Registry(RegistryError::BatchRowDone {
                card_number,
                ..
            }))) => RowStep::Done(RowOutcome::Skipped { card_number }),
            Err(
                error @ IssueError::Issuer(IssuerError::Registry(
                    RegistryError::ResidentHasLiveCard { .. }
                    | RegistryError::ResidentHasOpenIntent { .. },
                )),
            ) => RowStep::Done(RowOutcome::Failed(error)),
            Err(error @ IssueError::Issuer(_)) => {
                return RowStep::Stop(BatchEnd::Fatal { line, error })
            }
            Err(error) => RowStep::Done(RowOutcome::Failed(error)),
        };
        self.source.card_done(ch, self.wait);
        step
    }
}

/// What a batch run does besides its rows.
#[derive(Clone, Copy)]
pub struct BatchJob<'a> {
    /// The batch id (rows already done in an earlier run of it are skipped).
    pub batch_id: &'a str,
    /// Settle this reader's orphaned intents first instead of refusing.
    pub resume: bool,
    /// The PIV profile's options; `None` for the citycard applet.
    pub piv: Option<&'a PivOptions<'a>>,
    /// Set (e.g. by a Ctrl-C handler) to stop before the next row.
    pub interrupted: &'a AtomicBool,
}

/// One row's end: an outcome to report, or the end of the run.
enum RowStep {
    Done(RowOutcome),
    Stop(BatchEnd),
}

impl BatchSummary {
    /// Counts one row's outcome.
    fn count(&mut self, outcome: &RowOutcome) {
        match outcome {
            RowOutcome::Issued { .. } => self.issued += 1,
            RowOutcome::Skipped { .. } => self.skipped += 1,
            RowOutcome::Refused(_) => self.refused += 1,
            RowOutcome::Failed(_) => self.failed += 1,
        }
    }
}
