//! A city, its station, three partners (each in its own linkability group)
//! and cards issued with all eight groups, in process, with the real issuer
//! and reader libraries (the setup of `citycard demo`).

use std::collections::BTreeMap;

use anyhow::Context;
use citycard_card::{Applet, Storage, StorageError};
use citycard_issuer::home::{IssuerHome, LoadedPreparer, LoadedStation};
use citycard_issuer::issue::{issue_one, Issued};
use citycard_issuer::personalise::{self, Preparer};
use citycard_issuer::resident::{self, Resident};
use citycard_keys::FixedSecrets;
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::date::Date;
use citycard_reader::{PartnerCredential, Policy, Trust};
use citycard_transport::{CardChannel, CardTransport, MemoryTransport, Traced};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::model::Writes;

/// Linkability groups the bench city issues on every card: all the issuer
/// supports (SPEC §5.3).
pub const GROUPS: u8 = citycard_proto::limits::MAX_GROUPS as u8;

/// The in-process card's storage: RAM, counting every write and the bytes it
/// changed (SPEC §12 charges writes by size).
#[derive(Clone, Debug, Default)]
pub struct SizedStorage {
    state: Option<Vec<u8>>,
    writes: Writes,
}

impl SizedStorage {
    /// An empty store (a card fresh from the factory).
    pub fn new() -> Self {
        Self::default()
    }

    /// The writes so far.
    pub fn writes(&self) -> Writes {
        self.writes
    }

    /// Bytes of the stored state (0 when nothing is stored).
    pub fn state_len(&self) -> usize {
        self.state.as_ref().map_or(0, Vec::len)
    }
}

/// Bytes a write of `next` over `previous` changes, as a card that stores
/// each field in place would write them: after the longest common prefix and
/// suffix, the bytes of `next` not covered by a 16-byte run that `previous`
/// also holds (anywhere: the reference card's state is one encoded blob, so
/// an entry inserted into a list shifts the entries after it without
/// changing them).
pub fn changed_bytes(previous: &[u8], next: &[u8]) -> u64 {
    const RUN: usize = 16;
    let prefix = previous
        .iter()
        .zip(next)
        .take_while(|(a, b)| a == b)
        .count();
    let (p, n) = (
        previous.get(prefix..).unwrap_or_default(),
        next.get(prefix..).unwrap_or_default(),
    );
    let suffix = p
        .iter()
        .rev()
        .zip(n.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let middle = n.get(..n.len().saturating_sub(suffix)).unwrap_or_default();
    let known: std::collections::HashSet<&[u8]> = previous.windows(RUN).collect();
    let mut changed = 0u64;
    let mut i = 0;
    while i < middle.len() {
        match middle.get(i..i + RUN) {
            Some(run) if known.contains(run) => i += RUN,
            _ => {
                changed += 1;
                i += 1;
            }
        }
    }
    changed
}

impl Storage for SizedStorage {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.state.clone())
    }

    fn commit(&mut self, state: &[u8]) -> Result<(), StorageError> {
        let changed = changed_bytes(self.state.as_deref().unwrap_or_default(), state);
        self.writes.add(&Writes::one(changed));
        self.state = Some(state.to_vec());
        Ok(())
    }
}

/// The in-process reference card.
pub type Card = Applet<SizedStorage, ChaCha20Rng>;
/// A traced channel to an in-process card.
pub type MemChannel = CardChannel<Traced<MemoryTransport<Card>>>;

/// A verification profile: a partner, its grants and what it requests.
pub struct Profile {
    /// Name in the report.
    pub name: &'static str,
    /// What the reader requests.
    pub requested: AttributeSet,
    /// The partner's trust (bundle + credential).
    pub trust: Trust,
}

/// The city, its station and partners.
pub struct City {
    _dir: tempfile::TempDir,
    /// The issuer home (in a temporary directory).
    pub home: IssuerHome,
    /// The station.
    pub station: LoadedStation,
    /// The preparer (cards are prepared before they reach the station).
    pub preparer: LoadedPreparer,
    /// The registry.
    pub registry: Box<dyn citycard_registry::IssuanceRegistry + Send>,
    /// Library, transit, full identity.
    pub profiles: Vec<Profile>,
    /// Today.
    pub today: Date,
    /// Now (Unix seconds), fixed for the whole run.
    pub now_unix: u64,
    /// Randomness for the station and readers.
    pub rng: ChaCha20Rng,
    next_resident: u64,
}

fn set(ids: &[AttributeId]) -> AttributeSet {
    ids.iter().copied().collect()
}

/// The three profiles of SPEC §12: (name, grants, request).
pub fn profile_sets() -> Vec<(&'static str, AttributeSet, AttributeSet)> {
    let library = set(&[AttributeId::PSEUDONYM, AttributeId::RESIDENT]);
    let full = set(&[
        AttributeId::PSEUDONYM,
        AttributeId::CARD_NUMBER,
        AttributeId::NAME,
        AttributeId::BIRTH_DATE,
        AttributeId::ADDRESS,
        AttributeId::LANGUAGE,
        AttributeId::RESIDENT,
    ]);
    vec![
        ("library", library, library),
        (
            "transit",
            set(&[AttributeId::AGE_OVER_65, AttributeId::AGE_OVER_18]),
            set(&[AttributeId::AGE_OVER_65]),
        ),
        ("full_identity", full, full),
    ]
}

impl City {
    /// Creates the city: root, station `desk-1`, partners, trust bundle.
    pub fn new() -> anyhow::Result<Self> {
        let (today, now_unix) = citycard_issuer::home::now()?;
        let mut rng = ChaCha20Rng::from_rng(rand_core::OsRng).context("no OS randomness")?;
        let dir = tempfile::tempdir().context("temporary directory")?;
        let mut pass = [0u8; 16];
        rng.fill_bytes(&mut pass);
        let secrets = FixedSecrets::new(&hex::encode(pass), "");
        let mut home = IssuerHome::init(
            &dir.path().join("city"),
            "Bench City",
            "LIEGE",
            "LG",
            None,
            None,
            &secrets,
        )?;
        home.set_groups(GROUPS)?;
        home.add_station("desk-1", 180, None, &secrets, today)?;
        home.add_preparer("prep-1", 180, None, &secrets, today)?;
        let preparer = home.preparer("prep-1", &secrets)?;
        let mut profiles = Vec::new();
        for (group, (name, grants, requested)) in (0u8..).zip(profile_sets()) {
            let (cert, key) = home.enrol_partner(name, grants, group, 365, &secrets, today)?;
            let bundle = home.export_trust_for(group, &secrets, now_unix)?;
            profiles.push(Profile {
                name,
                requested,
                trust: Trust::new(bundle, PartnerCredential::new(cert, key)?)?,
            });
        }
        let station = home.station("desk-1", &secrets, today)?;
        let registry = home.registry()?;
        Ok(Self {
            _dir: dir,
            home,
            station,
            preparer,
            registry,
            profiles,
            today,
            now_unix,
            rng,
            next_resident: 0,
        })
    }

    /// The reader policy of `profile`, at the run's fixed time.
    pub fn policy(&self, profile: &Profile) -> Policy {
        Policy::at(self.now_unix).with_requested(profile.requested)
    }

    /// A new resident, the SPEC's sample person (Alex Moreau, born 1958).
    pub fn next_resident(&mut self) -> anyhow::Result<Resident> {
        self.next_resident += 1;
        let fields: BTreeMap<String, String> = [
            ("resident_id", format!("F-{:06}", self.next_resident)),
            ("name", "Alex Moreau".into()),
            ("birth_date", "1958-03-14".into()),
            ("address", "Rue Léopold 12, 4000 Liège".into()),
            ("language", "fr".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        resident::validate(&fields).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// A prepared in-process card (SPEC §6.3: what a station receives)
    /// behind a traced channel; the preparation is not in the trace.
    pub fn blank_card(&mut self) -> anyhow::Result<MemChannel> {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let card = Applet::new(SizedStorage::new(), ChaCha20Rng::from_seed(seed));
        let card = self.prepare(card)?;
        Ok(CardChannel::new(Traced::new(MemoryTransport::new(card))))
    }

    /// Prepares a blank card with the city's preparer.
    pub fn prepare<C: citycard_proto::apdu::ContactlessCard>(&self, card: C) -> anyhow::Result<C> {
        let mut ch = CardChannel::new(MemoryTransport::new(card));
        let root = self.home.root_public_key()?;
        let sign = |m: &[u8]| self.preparer.signer.sign(m);
        personalise::prepare(
            &mut ch,
            &Preparer {
                issuer: &self.home.config().issuer_id,
                root: &root,
                certificate: &self.preparer.certificate,
                sign: &sign,
                batch: "bench",
            },
            self.today,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(ch.into_inner().into_inner())
    }

    /// Issues the card on `ch` (any transport) to a new resident.
    pub fn issue<T: CardTransport>(&mut self, ch: &mut CardChannel<T>) -> anyhow::Result<Issued> {
        let resident = self.next_resident()?;
        issue_one(
            &self.home,
            &self.station,
            &mut self.registry,
            ch,
            &citycard_issuer::IssueRequest {
                resident: &resident,
                actor: "bench",
                batch: None,
                replaces: None,
                today: self.today,
            },
            &mut self.rng,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Persistent writes the in-process card has made so far.
pub fn writes(ch: &MemChannel) -> Writes {
    ch.transport().inner().card().storage().writes()
}

/// Card storage the group records take on the in-process card (bytes): per
/// group the signed record, the group's private key (32) and its salt seed
/// (16) — SPEC §5.5.
pub fn record_storage(ch: &MemChannel) -> u64 {
    ch.transport()
        .inner()
        .card()
        .state()
        .and_then(|s| s.personalisation.as_ref())
        .map_or(0, |p| {
            p.groups
                .iter()
                .map(|g| (g.record.len() + 32 + g.seed.len()) as u64)
                .sum()
        })
}

/// Attributes stored on the in-process card (0 before personalisation).
pub fn stored_values(ch: &MemChannel) -> u32 {
    ch.transport()
        .inner()
        .card()
        .state()
        .and_then(|s| s.personalisation.as_ref())
        .map_or(0, |p| u32::try_from(p.values.len()).unwrap_or(u32::MAX))
}

/// What the in-process card counted so far: its operations (`Applet::ops`)
/// and its persistent writes.
pub fn counted(ch: &MemChannel) -> (Option<citycard_card::OpCount>, Writes) {
    (Some(ch.transport().inner().card().ops()), writes(ch))
}

/// Bytes of the in-process card's whole stored state.
pub fn state_len(ch: &MemChannel) -> u64 {
    ch.transport().inner().card().storage().state_len() as u64
}
