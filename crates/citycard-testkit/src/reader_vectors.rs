//! The `applet-spec/vectors/reader/*.json` reader vectors (SPEC §13):
//! everything a reader is given (trust bundle, revocation list, credential
//! file, date, ephemeral keys) and everything a card answers in one tap,
//! with the verdict a conforming reader must reach — genuine (two groups),
//! clone, replay, tampered, refused, revoked, expired, unknown issuer.
//!
//! The answers come from the reference card in deterministic mode (or are
//! derived from its answers: replayed, flipped, truncated, or made by a
//! card that lies with its own keys); the reader's side follows SPEC §8
//! with `citycard_proto::auth::ReaderSession`, so this module does not
//! depend on the reader library it tests.
//!
//! One file on purpose: the reader-vector format, its generator and its runner
//! must agree byte for byte.

use std::collections::BTreeMap;

use citycard_card::{Applet, Faults, MemoryStorage};
use citycard_proto::apdu::Command;
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::auth::{
    self, AuthorisedReader, CardData, CardGroup, Disclosure, ReaderSession, RealAnswer,
};
use citycard_proto::consts::{cla, ins};
use citycard_proto::crypto::{self, OpCount};
use citycard_proto::record::{GroupRecord, StoredValue};
use citycard_proto::revocation::TrustBundle;
use citycard_proto::{apdu::ContactlessCard, date::Date, error::Error as ProtoError};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use p256::SecretKey;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::keys::{
    city, city_named, date, key_hex, reader, test_key, trust_bundle, BundleSpec, TestCity,
    TestReader, ISSUE_DATE, TODAY, VALID_TO,
};
use crate::script::{personalise, sample_resident, Personalisation, Script};
use crate::vectors::{seed_for, VERIFY_GROUPS};

/// One reader vector file (SPEC §13).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderVector {
    /// Scenario name (file stem).
    pub name: String,
    /// What the scenario shows.
    pub description: String,
    /// The trust bundle file (`E5`), hex.
    pub trust_bundle: String,
    /// The revocation list inside the bundle (`E3`), hex.
    pub revocation_list: String,
    /// The partner credential file's text (SPEC §5.10).
    pub credential_file: String,
    /// The reader certificate inside the credential (`7F21`), hex.
    pub reader_certificate: String,
    /// The reader's private scalar inside the credential, hex.
    pub reader_key: String,
    /// The reader's clock, Unix seconds.
    pub now_unix: u64,
    /// The reader's UTC date, `YYYY-MM-DD`.
    pub today: String,
    /// The attribute set asked for (hex), or `None` for everything granted.
    pub requested: Option<String>,
    /// The reader sends its certificate before the first GENERAL AUTHENTICATE.
    pub always_send_certificate: bool,
    /// The reader's ephemeral private scalars, hex, in the order it draws them.
    pub reader_ephemeral_keys: Vec<String>,
    /// The reader's commands and the card's whole answers, in order.
    pub exchanges: Vec<Exchange>,
    /// The verdict a conforming reader reaches.
    pub verdict: ExpectedVerdict,
}

/// One command and the card's whole answer (data ‖ SW, before response chaining).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// The command APDU, hex.
    pub command: String,
    /// The whole response data and the final status word, hex.
    pub response: String,
    /// What the step is.
    pub note: String,
}

/// The expected verdict: its name, and for `genuine` what was disclosed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedVerdict {
    /// The verdict name (the reference reader's `kind`).
    pub kind: String,
    /// What a genuine verdict carries.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub genuine: Option<ExpectedGenuine>,
}

/// What a genuine verdict discloses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedGenuine {
    /// Disclosed stored attributes by dictionary name, values hex.
    pub attributes: BTreeMap<String, String>,
    /// The pseudonym, hex, when requested.
    pub pseudonym: Option<String>,
    /// Each requested predicate: true, false, or null (not evaluable).
    pub predicates: BTreeMap<String, Option<bool>>,
    /// The card's last valid day.
    pub expires: String,
}

/// The credential file as the reference reader writes it (SPEC §5.10).
#[derive(Serialize)]
struct CredentialFile<'a> {
    schema_version: u64,
    issuer_id: &'a str,
    partner: &'a str,
    certificate: String,
    private_key: &'a str,
}

/// The reader's clock in every vector: TODAY, 12:00 UTC.
pub fn now_unix() -> u64 {
    date(TODAY).days_since_epoch() as u64 * 86_400 + 43_200
}

type Card = Applet<MemoryStorage, ChaCha20Rng>;

/// The sample resident issued for `groups` groups by `city`, valid to `valid_to`.
fn issued_card(name: &str, city: &TestCity, valid_to: Date) -> Card {
    let mut card = crate::vectors::deterministic_card(seed_for(name));
    {
        let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
        let mut s = Script::new(&mut link);
        let mut rng = ChaCha20Rng::from_seed(crypto::sha256(&[b"station ", name.as_bytes()]));
        personalise(
            &mut s,
            Personalisation {
                city,
                station_ephemeral: test_key("station ephemeral"),
                rng: &mut rng,
                resident: sample_resident(),
                issue_date: date(ISSUE_DATE),
                valid_to,
                groups: VERIFY_GROUPS,
                prepare: true,
            },
        )
        .expect("personalisation of the reader-vector card");
    }
    card.reset();
    card
}

/// Sends `apdu` and fetches the whole answer with GET RESPONSE: data ‖ final SW.
fn whole(card: &mut Card, apdu: &[u8]) -> Vec<u8> {
    let mut r = card.transmit(apdu).expect("in-process card");
    let mut data = Vec::new();
    loop {
        let (d, sw) = r.split_at(r.len() - 2);
        data.extend_from_slice(d);
        if sw[0] != 0x61 {
            data.extend_from_slice(sw);
            return data;
        }
        r = card
            .transmit(&[0x00, 0xC0, 0x00, 0x00, sw[1]])
            .expect("in-process card");
    }
}

fn bytes(c: &Command) -> Vec<u8> {
    c.to_short_bytes().expect("short command")
}

fn pso(reader: &TestReader) -> Vec<u8> {
    bytes(
        &Command::new(cla::ISO, ins::PSO, 0x00, 0xBE)
            .with_data(reader.certificate.as_bytes().to_vec()),
    )
}

/// What a tap collects: the exchanges and the ephemeral keys used.
struct Tap {
    exchanges: Vec<Exchange>,
    ephemerals: Vec<SecretKey>,
    sessions: Vec<ReaderSession>,
}

impl Tap {
    fn new() -> Self {
        Self {
            exchanges: Vec::new(),
            ephemerals: Vec::new(),
            sessions: Vec::new(),
        }
    }

    fn push(&mut self, command: &[u8], response: &[u8], note: &str) {
        self.exchanges.push(Exchange {
            command: hex::encode_upper(command),
            response: hex::encode_upper(response),
            note: note.into(),
        });
    }

    /// A GENERAL AUTHENTICATE session with the next ephemeral key of `label`.
    fn session(
        &mut self,
        reader: &TestReader,
        requested: AttributeSet,
        label: &str,
    ) -> ReaderSession {
        let e = test_key(&format!("{label} {}", self.ephemerals.len() + 1));
        self.ephemerals.push(e.clone());
        ReaderSession::with_ephemeral(e, reader.certificate.fingerprint(), requested, date(TODAY))
    }
}

/// SPEC §8 steps 1–2 against the reference card, as the reference reader
/// does them: SELECT; GENERAL AUTHENTICATE (PSO first when
/// `send_certificate`); on a decoy PSO and GENERAL AUTHENTICATE again.
/// Returns the tap and the last answer opened.
fn procedure(
    card: &mut Card,
    reader: &TestReader,
    requested: AttributeSet,
    send_certificate: bool,
    label: &str,
) -> (Tap, Result<Disclosure, ProtoError>) {
    let mut tap = Tap::new();
    let select = bytes(&citycard_proto::fci::select_command());
    let r = whole(card, &select);
    tap.push(&select, &r, "SELECT");
    if send_certificate {
        let c = pso(reader);
        let r = whole(card, &c);
        tap.push(&c, &r, "PSO: VERIFY CERTIFICATE (reader)");
    }
    let mut opened = general_authenticate(card, reader, requested, &mut tap, label);
    if !send_certificate && opened.as_ref().err() == Some(&ProtoError::Decoy) {
        let c = pso(reader);
        let r = whole(card, &c);
        tap.push(&c, &r, "PSO: VERIFY CERTIFICATE (reader), after a decoy");
        opened = general_authenticate(card, reader, requested, &mut tap, label);
    }
    (tap, opened)
}

fn general_authenticate(
    card: &mut Card,
    reader: &TestReader,
    requested: AttributeSet,
    tap: &mut Tap,
    label: &str,
) -> Result<Disclosure, ProtoError> {
    let session = tap.session(reader, requested, label);
    let c = bytes(&session.command());
    let r = whole(card, &c);
    tap.push(&c, &r, "GENERAL AUTHENTICATE (whole answer)");
    let opened = session.open(&r[..r.len() - 2], &reader.key, reader.group);
    tap.sessions.push(session);
    opened
}

/// What a reader is given, and how it runs.
struct Given<'a> {
    city: &'a TestCity,
    reader: &'a TestReader,
    bundle: TrustBundle,
    always_send_certificate: bool,
}

impl<'a> Given<'a> {
    /// `reader` of `city` with its group's bundle (nothing revoked, `city`'s station).
    fn of(city: &'a TestCity, reader: &'a TestReader) -> Self {
        let now = now_unix();
        let bundle = trust_bundle(
            city,
            BundleSpec::of(city, now - 3_600, now + 86_400).in_group(reader.group),
        );
        Self {
            city,
            reader,
            bundle,
            always_send_certificate: false,
        }
    }

    fn with_bundle(mut self, spec: BundleSpec) -> Self {
        self.bundle = trust_bundle(self.city, spec.in_group(self.reader.group));
        self
    }

    fn vector(
        self,
        name: &str,
        description: &str,
        tap: Tap,
        verdict: ExpectedVerdict,
    ) -> ReaderVector {
        let key_pem = self
            .reader
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 of a P-256 key");
        let cert = &self.reader.certificate;
        let mut credential_file = serde_json::to_string_pretty(&CredentialFile {
            schema_version: 1,
            issuer_id: &cert.body().issuer,
            partner: &cert.body().holder,
            certificate: hex::encode_upper(cert.as_bytes()),
            private_key: key_pem.as_str(),
        })
        .expect("credential JSON");
        credential_file.push('\n');
        ReaderVector {
            name: name.into(),
            description: description.into(),
            trust_bundle: hex::encode_upper(self.bundle.as_bytes()),
            revocation_list: hex::encode_upper(self.bundle.body().revocations.as_bytes()),
            credential_file,
            reader_certificate: hex::encode_upper(cert.as_bytes()),
            reader_key: key_hex(&self.reader.key),
            now_unix: now_unix(),
            today: date(TODAY).to_string(),
            requested: None,
            always_send_certificate: self.always_send_certificate,
            reader_ephemeral_keys: tap.ephemerals.iter().map(key_hex).collect(),
            exchanges: tap.exchanges,
            verdict,
        }
    }
}

fn verdict(kind: &str) -> ExpectedVerdict {
    ExpectedVerdict {
        kind: kind.into(),
        genuine: None,
    }
}

/// The genuine verdict for `disclosure` of a request for everything `reader` is granted.
fn genuine(reader: &TestReader, disclosure: &Disclosure) -> ExpectedVerdict {
    let requested = reader.certificate.body().grants;
    let attributes = disclosure
        .present()
        .map(|(id, v)| (id.name().to_string(), hex::encode_upper(v)))
        .collect();
    let predicates = requested
        .iter()
        .filter(|id| id.age_threshold().is_some())
        .map(|id| {
            let answer = disclosure
                .predicates
                .and_then(|p| p.answered.contains(id).then_some(p.holds.contains(id)));
            (id.name().to_string(), answer)
        })
        .collect();
    ExpectedVerdict {
        kind: "genuine".into(),
        genuine: Some(ExpectedGenuine {
            attributes,
            pseudonym: disclosure.pseudonym.map(hex::encode_upper),
            predicates,
            expires: disclosure.record.body().valid_to.to_string(),
        }),
    }
}

/// Shows `reader`'s certificate to `card` in a power-up of its own (a past tap).
fn cached(card: &mut Card, reader: &TestReader) {
    whole(card, &bytes(&citycard_proto::fci::select_command()));
    let r = whole(card, &pso(reader));
    assert_eq!(r, [0x90, 0x00]);
    card.reset();
}

/// Generates every reader vector.
pub fn generate_all() -> Vec<ReaderVector> {
    let city = city();
    let city = &city;
    let library = reader(city, "library");
    let transit = reader(city, "transit");
    let full = reader(city, "full");
    let mut out = genuine_vectors(city, &library, &transit);
    out.push(clone(city, &library));
    out.push(replay(city, &library));
    out.extend(tampered(city, &library, &full));
    out.push(refused(&library));
    out.extend(standing(city, &library));
    out
}

/// Genuine taps: cache first (decoy, PSO, answer), certificate first, and a
/// reader of another group on the same card.
fn genuine_vectors(
    city: &TestCity,
    library: &TestReader,
    transit: &TestReader,
) -> Vec<ReaderVector> {
    let mut out = Vec::new();
    let name = "reader-genuine";
    let (tap, opened) = tap_new_card(name, city, library, false);
    let v = genuine(library, &opened.expect("genuine answer"));
    out.push(Given::of(city, library).vector(name, "A genuine card (3 groups) and the library reader of group 0, cache tried first (the policy default): SELECT, GENERAL AUTHENTICATE answered with a decoy (the card has not met this reader), PSO, GENERAL AUTHENTICATE answered for real. Verdict genuine: resident and the library's pseudonym.", tap, v));

    let name = "reader-genuine-certificate-first";
    let (tap, opened) = tap_new_card(name, city, library, true);
    let v = genuine(library, &opened.expect("genuine answer"));
    let mut given = Given::of(city, library);
    given.always_send_certificate = true;
    out.push(given.vector(name, "The same with the certificate sent first (always_send_certificate): SELECT, PSO, GENERAL AUTHENTICATE. Verdict genuine.", tap, v));

    let name = "reader-genuine-group-1";
    let (tap, opened) = tap_new_card(name, city, transit, false);
    let v = genuine(transit, &opened.expect("genuine answer"));
    out.push(Given::of(city, transit).vector(name, "A second linkability group: the transit reader of group 1, with group 1's trust bundle, on a 3-group card: the card answers with its group-1 record (another card key, signature and revocation id than group 0's). Verdict genuine: age_over_65 and age_over_18 hold, nothing else disclosed.", tap, v));
    out
}

/// A card whose keys are not the ones its records certify.
fn clone(city: &TestCity, library: &TestReader) -> ReaderVector {
    let name = "reader-clone";
    let mut card = issued_card(name, city, date(VALID_TO));
    card.set_faults(Faults { clone: true });
    let (tap, opened) = procedure(
        &mut card,
        library,
        library.certificate.body().grants,
        false,
        name,
    );
    assert_eq!(opened.err(), Some(ProtoError::BadMac));
    Given::of(city, library).vector(name, "A clone: the records and values of a genuine card on a card with other keys. The answer opens (it is encrypted to the reader) but its MAC, made with the clone's key, does not verify with the card key the record certifies. Verdict clone.", tap, verdict("clone"))
}

/// An answer recorded in an earlier tap, replayed to a new request.
fn replay(city: &TestCity, library: &TestReader) -> ReaderVector {
    let name = "reader-replay";
    let mut card = issued_card(name, city, date(VALID_TO));
    let grants = library.certificate.body().grants;
    // The earlier tap (recorded by an eavesdropper): cache first, then the real answer.
    let (earlier, opened) = procedure(&mut card, library, grants, false, "reader-replay earlier");
    assert!(opened.is_ok());
    let recorded = earlier
        .exchanges
        .last()
        .expect("an answer")
        .response
        .clone();
    let mut tap = Tap::new();
    let select = bytes(&citycard_proto::fci::select_command());
    card.reset();
    let r = whole(&mut card, &select);
    tap.push(&select, &r, "SELECT");
    let session = tap.session(library, grants, name);
    let c = bytes(&session.command());
    tap.push(
        &c,
        &hex::decode(&recorded).expect("hex"),
        "GENERAL AUTHENTICATE: the answer of an earlier tap, replayed",
    );
    let answer = hex::decode(&recorded).expect("hex");
    assert_eq!(
        session
            .open(&answer[..answer.len() - 2], &library.key, library.group)
            .err(),
        Some(ProtoError::TranscriptMismatch)
    );
    Given::of(city, library).vector(name, "A replayed answer: the card's real answer to the library reader in an earlier tap, sent again to a new request. Its tag verifies (K_tag depends on E_C and the reader key only) but it does not decrypt to this tap's echo of E_R. Verdict replay.", tap, verdict("replay"))
}

/// A lying card, a flipped byte in transit, a short answer.
fn tampered(city: &TestCity, library: &TestReader, full: &TestReader) -> Vec<ReaderVector> {
    vec![
        tampered_value(city, full),
        tampered_in_transit(city, library),
        tampered_length(city, library),
    ]
}

/// A card that holds its keys but changes one byte of a disclosed value.
fn tampered_value(city: &TestCity, full: &TestReader) -> ReaderVector {
    let name = "reader-tampered-value";
    let mut card = issued_card(name, city, date(VALID_TO));
    let grants = full.certificate.body().grants;
    let mut tap = Tap::new();
    let select = bytes(&citycard_proto::fci::select_command());
    let r = whole(&mut card, &select);
    tap.push(&select, &r, "SELECT");
    let session = tap.session(full, grants, name);
    let answer = lying_answer(&card, full, &session);
    // It opens and authenticates; only the value's digest gives it away.
    match session.open(&answer, &full.key, full.group) {
        Err(ProtoError::Decoy | ProtoError::TranscriptMismatch | ProtoError::BadMac) | Ok(_) => {
            panic!("the lying card's answer must fail at the entry check")
        }
        Err(_) => {}
    }
    let mut response = answer;
    response.extend_from_slice(&[0x90, 0x00]);
    tap.push(&bytes(&session.command()), &response, "GENERAL AUTHENTICATE: a real answer, MAC made with the card's own key, but one byte of the disclosed name changed");
    Given::of(city, full).vector(name, "A card that lies: it holds its keys and authenticates (the MAC verifies) but changed one byte of the name it discloses, so the value's digest is not among the record's signed slots. Verdict tampered.", tap, verdict("tampered"))
}

/// A new card of `name` tapped once by `reader` asking for all it is
/// granted (certificate sent first or not): the tap and what it opened.
fn tap_new_card(
    name: &str,
    city: &TestCity,
    reader: &TestReader,
    send_certificate: bool,
) -> (Tap, Result<Disclosure, ProtoError>) {
    let mut card = issued_card(name, city, date(VALID_TO));
    procedure(
        &mut card,
        reader,
        reader.certificate.body().grants,
        send_certificate,
        name,
    )
}

/// A card of `name` with `library`'s certificate cached, and the tap so far
/// (SELECT, then GENERAL AUTHENTICATE) with its genuine answer taken out, for
/// a vector to alter.
fn genuine_cached_answer(
    name: &str,
    city: &TestCity,
    library: &TestReader,
) -> (Card, Tap, Exchange) {
    let mut card = issued_card(name, city, date(VALID_TO));
    cached(&mut card, library);
    let (mut tap, opened) = procedure(
        &mut card,
        library,
        library.certificate.body().grants,
        false,
        name,
    );
    assert!(opened.is_ok(), "the untouched answer is genuine");
    let ga = tap.exchanges.pop().expect("GENERAL AUTHENTICATE");
    (card, tap, ga)
}

/// One byte of each answer flipped in transit.
fn tampered_in_transit(city: &TestCity, library: &TestReader) -> ReaderVector {
    let name = "reader-tampered-in-transit";
    // The card had the certificate cached: the first answer was real. Flip it,
    // then the reader goes on as after a decoy.
    let (mut card, mut tap, ga) = genuine_cached_answer(name, city, library);
    let mut flipped = hex::decode(&ga.response).expect("hex");
    flipped[60] ^= 0x01;
    tap.exchanges.push(Exchange {
        response: hex::encode_upper(&flipped),
        note: "GENERAL AUTHENTICATE: the real answer with one ciphertext byte flipped (the tag fails, like a decoy's)".into(),
        ..ga
    });
    let c = pso(library);
    let r = whole(&mut card, &c);
    tap.push(
        &c,
        &r,
        "PSO: VERIFY CERTIFICATE (reader), after what looked like a decoy",
    );
    let session = tap.session(library, library.certificate.body().grants, name);
    let c = bytes(&session.command());
    let mut r = whole(&mut card, &c);
    r[60] ^= 0x01;
    tap.push(&c, &r, "GENERAL AUTHENTICATE: again a byte flipped");
    Given::of(city, library).vector(name, "One byte of the ciphertext flipped in transit, in both answers: the tag fails, which a reader cannot tell from a decoy (by design, SPEC §8 step 3a). Verdict card_refused.", tap, verdict("card_refused"))
}

/// An answer one byte short.
fn tampered_length(city: &TestCity, library: &TestReader) -> ReaderVector {
    let name = "reader-tampered-length";
    let (_card, mut tap, ga) = genuine_cached_answer(name, city, library);
    let mut short = hex::decode(&ga.response).expect("hex");
    short.remove(short.len() - 3);
    tap.exchanges.push(Exchange {
        response: hex::encode_upper(&short),
        note: "GENERAL AUTHENTICATE: the real answer one byte short".into(),
        ..ga
    });
    Given::of(city, library).vector(name, "An answer one byte shorter than answer_len(request): checked before anything else. Verdict tampered.", tap, verdict("tampered"))
}

/// The real answer to `session` with one byte of the disclosed name changed,
/// made by `card`'s own keys (a card that lies about its data).
fn lying_answer(card: &Card, reader: &TestReader, session: &ReaderSession) -> Vec<u8> {
    let p = card
        .state()
        .and_then(|s| s.personalisation.clone())
        .expect("an issued card");
    let group = &p.groups[usize::from(reader.group)];
    let group0 = &p.groups[0];
    let mut values = p.values.clone();
    for v in &mut values {
        if v.id == AttributeId::NAME {
            v.value[0] ^= 0x20;
        }
    }
    let values: Vec<StoredValue> = values;
    let body = reader.certificate.body();
    let authorised = AuthorisedReader {
        public_key: body.public_key,
        grants: body.grants,
        domain: body.domain.expect("reader domain"),
        group: reader.group,
    };
    let group0_public = group0.card_key.public_key();
    let data = CardData {
        group0: CardGroup {
            card_key: &group0.card_key,
            record: &group0.record,
            seed: &group0.seed,
        },
        group0_public: &group0_public,
        pseudonym_key: &p.pseudonym_key,
        values: &values,
    };
    let request = session.request();
    auth::card_answer(
        &mut OpCount::default(),
        &request.encode(),
        request,
        request.reader_point(),
        &data,
        Some(RealAnswer {
            reader: &authorised,
            group: CardGroup {
                card_key: &group.card_key,
                record: &group.record,
                seed: &group.seed,
            },
        }),
        &mut ChaCha20Rng::from_seed(seed_for("reader-tampered-value lie")),
    )
}

/// Another city's card: two decoys.
fn refused(library: &TestReader) -> ReaderVector {
    let name = "reader-refused";
    let other = city_named("LIEGE", "other city root");
    let mut card = issued_card(name, &other, date(VALID_TO));
    let (tap, opened) = procedure(
        &mut card,
        library,
        library.certificate.body().grants,
        false,
        name,
    );
    assert_eq!(opened.err(), Some(ProtoError::Decoy));
    let ours = city();
    Given::of(&ours, library).vector(name, "Another city's card (same issuer id, another root): it refuses the library reader's certificate, so both GENERAL AUTHENTICATEs are answered with decoys of the answer's length. The reader's request and certificate are in order, so the verdict is card_refused.", tap, verdict("card_refused"))
}

/// Genuine answers the bundle or the date refuses: revoked, expired, unknown issuer.
fn standing(city: &TestCity, library: &TestReader) -> Vec<ReaderVector> {
    let mut out = Vec::new();
    let now = now_unix();
    let grants = library.certificate.body().grants;

    let name = "reader-revoked";
    let mut card = issued_card(name, city, date(VALID_TO));
    let (tap, opened) = procedure(&mut card, library, grants, false, name);
    let record: GroupRecord = opened.expect("genuine answer").record;
    let mut spec = BundleSpec::of(city, now - 3_600, now + 86_400);
    spec.revoked = vec![record.revocation_id(), [0x11; 8], [0xEE; 8]];
    spec.revoked.sort_unstable();
    out.push(Given::of(city, library).with_bundle(spec).vector(name, "A genuine card whose group-0 revocation id is in the group-0 list of the bundle (with two other ids). Verdict revoked.", tap, verdict("revoked")));

    let name = "reader-expired";
    let mut card = issued_card(name, city, date((2026, 11, 25)));
    let (tap, opened) = procedure(&mut card, library, grants, false, name);
    assert!(opened.is_ok());
    out.push(Given::of(city, library).vector(name, "A genuine card whose last valid day (2026-11-25) is before the reader's date (2026-11-26): the card answers (it checks the reader, not itself), the reader refuses. Verdict expired.", tap, verdict("expired")));

    let name = "reader-unknown-issuer";
    let mut card = issued_card(name, city, date(VALID_TO));
    let (tap, opened) = procedure(&mut card, library, grants, false, name);
    assert!(opened.is_ok());
    let mut spec = BundleSpec::of(city, now - 3_600, now + 86_400);
    spec.stations = Vec::new();
    out.push(Given::of(city, library).with_bundle(spec).vector(name, "A genuine card whose station is not in the bundle (the city removed it, or the card comes from elsewhere): no station certificate matches the record's station reference. Verdict unknown_issuer.", tap, verdict("unknown_issuer")));
    out
}

/// The folder holding the committed reader vectors.
pub fn dir() -> std::path::PathBuf {
    crate::vectors::vectors_dir().join("reader")
}

/// Loads every committed reader vector, sorted by name.
pub fn load_all(dir: &std::path::Path) -> Result<Vec<ReaderVector>, String> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    out.sort_by(|a: &ReaderVector, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Serialises a reader vector as committed (pretty JSON, trailing newline).
pub fn to_json(v: &ReaderVector) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// Hands every reader vector to `emit` (path, committed text), creating the
/// folder first unless `check` (the generator's `--check` only compares).
pub fn emit_all(check: bool, emit: &mut dyn FnMut(&std::path::Path, &str)) {
    let dir = dir();
    if !check {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("error: creating {}: {e}", dir.display());
            std::process::exit(1);
        }
    }
    for v in generate_all() {
        emit(&dir.join(format!("{}.json", v.name)), &to_json(&v));
    }
}
