//! Exact JSON text of the documents, and their key order.

use std::path::PathBuf;

use citycard_piv_card::Summary;
use citycard_proto::cert::Certificate;
use citycard_proto::{attr::AttributeId, date::Date};
use citycard_registry::{AuditEntry, CardRecord, CardState, Counts, Intent, RevocationReason};

use super::*;
use crate::batch::BatchSummary;
use crate::home::{PartnerInfo, StationInfo};
use crate::issue::Reconciled;
use crate::registry::MigrateReport;
use citycard_proto::attr::AttributeSet;
use serde_json::Value;

fn day(s: &str) -> Date {
    Date::parse_iso(s).expect("a date")
}

fn text(doc: &impl Serialize) -> String {
    serde_json::to_string(doc).expect("serialisable")
}

/// The text the commands printed before the documents were typed: a
/// `serde_json::Value` map, keys sorted at every level.
fn as_value_map(doc: &impl Serialize) -> String {
    serde_json::to_value(doc).expect("serialisable").to_string()
}

/// A document's text, and the text of the same document as a `Value` map.
fn pair(doc: impl Serialize) -> (String, String) {
    (text(&doc), as_value_map(&doc))
}

fn revoked_card() -> CardRecord {
    CardRecord {
        intent_id: 7,
        card_number: "LG-000002".into(),
        resident_ref: Some("F-0001".into()),
        station: "desk-1".into(),
        issued_on: day("2026-11-02"),
        expires_on: day("2031-11-01"),
        state: CardState::Revoked {
            reason: RevocationReason::Lost,
            at: 1_790_000_000,
        },
        card_key: Some([2; 33]),
        revocation_id: Some([0xAB; 8]),
        batch: None,
        replaces: Some(("LG-000001".into(), RevocationReason::Damaged)),
        created_at: 1_789_000_000,
    }
}

#[test]
fn failure_document() {
    assert_eq!(
        text(&Failure::new("station desk-9: unknown", 3)),
        r#"{"error":"station desk-9: unknown","exit_code":3,"ok":false,"schema_version":1}"#
    );
}

#[test]
fn station_list_document() {
    let stations = [
        StationInfo {
            name: "desk-1".into(),
            effective: day("2026-11-01"),
            expiry: day("2027-04-30"),
            key: "file:stations/desk-1/key.pem".into(),
            fingerprint: "ab".repeat(32),
            retired_on: None,
        },
        StationInfo {
            name: "desk-0".into(),
            effective: day("2026-01-01"),
            expiry: day("2026-06-30"),
            key: "file:stations/desk-0/key.pem".into(),
            fingerprint: "cd".repeat(32),
            retired_on: Some("2026-03-01".into()),
        },
    ];
    assert_eq!(
        text(&StationList::new(&stations)),
        format!(
            concat!(
                r#"{{"ok":true,"schema_version":1,"stations":["#,
                r#"{{"effective":"2026-11-01","expiry":"2027-04-30","fingerprint":"{}","key":"file:stations/desk-1/key.pem","name":"desk-1","retired_on":null}},"#,
                r#"{{"effective":"2026-01-01","expiry":"2026-06-30","fingerprint":"{}","key":"file:stations/desk-0/key.pem","name":"desk-0","retired_on":"2026-03-01"}}]}}"#
            ),
            "ab".repeat(32),
            "cd".repeat(32)
        )
    );
}

#[test]
fn card_show_document_of_a_revoked_replacement() {
    assert_eq!(
        text(&CardShow::from(&revoked_card())),
        concat!(
            r#"{"card_number":"LG-000002","created_at":1789000000,"expires_on":"2031-11-01","#,
            r#""issued_on":"2026-11-02","ok":true,"reason":"lost","replaces":"LG-000001","#,
            r#""revocation_id":"abababababababab","revoked_at":1790000000,"schema_version":1,"#,
            r#""state":"revoked","station":"desk-1"}"#
        )
    );
    let mut spoiled = revoked_card();
    spoiled.state = CardState::Spoiled {
        reason: "torn".into(),
    };
    spoiled.revocation_id = None;
    spoiled.replaces = None;
    let v: Value = serde_json::from_str(&text(&CardShow::from(&spoiled))).expect("JSON");
    assert_eq!(v["reason"], "torn");
    assert_eq!(v["revoked_at"], Value::Null);
    assert_eq!(v["revocation_id"], Value::Null);
    assert_eq!(v["replaces"], Value::Null);
}

#[test]
fn resident_show_shows_dates_text_and_bytes_as_one_sorted_object() {
    let attributes = vec![
        (AttributeId::NAME, b"Alex Martin".to_vec()),
        (
            AttributeId::BIRTH_DATE,
            day("1990-04-01").to_bytes().to_vec(),
        ),
        (AttributeId::RESIDENT, vec![1]),
    ];
    let doc = ResidentShow::new("F-0001", None, &attributes, Some(1_800_000_000));
    // People see the registry's order; the JSON object is sorted.
    assert_eq!(doc.attributes[0].name, "name");
    assert_eq!(
        text(&doc),
        concat!(
            r#"{"attributes":{"birth_date":"1990-04-01","name":"Alex Martin","resident":"01"},"#,
            r#""live_card":null,"live_card_state":null,"ok":true,"resident_id":"F-0001","#,
            r#""retained_until":1800000000,"schema_version":1}"#
        )
    );
}

#[test]
fn batch_summary_is_nested_under_summary() {
    let summary = BatchSummary {
        rows: 5,
        issued: 3,
        skipped: 1,
        refused: 1,
        failed: 0,
        end: crate::batch::BatchEnd::Interrupted,
    };
    let counts = Counts {
        issued: 9,
        spoiled: 2,
        revoked: 1,
        open_intents: 0,
    };
    assert_eq!(
        text(&BatchFinished::new(&summary, 130, &counts)),
        concat!(
            r#"{"schema_version":1,"summary":{"end":"interrupted","exit_code":130,"failed":0,"#,
            r#""issued":3,"refused":1,"registry":{"issued":9,"open_intents":0,"revoked":1,"spoiled":2},"#,
            r#""rows":5,"skipped":1}}"#
        )
    );
}

fn station_certificate() -> Certificate {
    use rand_chacha::rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
    let root = citycard_proto::crypto::generate(&mut rng);
    let key = citycard_proto::crypto::generate(&mut rng);
    citycard_proto::cert::CertificateBody {
        issuer: "LIEGE".into(),
        holder: "desk-1".into(),
        role: citycard_proto::cert::Role::Station,
        grants: AttributeSet::EMPTY,
        domain: None,
        group: None,
        effective: day("2026-11-01"),
        expiry: day("2027-04-30"),
        public_key: key.public_key(),
    }
    .sign(&root)
    .expect("a certificate")
}

#[test]
fn a_certified_key_is_named_by_its_role_only() {
    let cert = station_certificate();
    let fingerprint = hex::encode(cert.fingerprint());
    assert_eq!(
        text(&KeyCertified::new(KeyRole::Station, "desk-1", &cert)),
        format!(
            r#"{{"effective":"2026-11-01","expiry":"2027-04-30","fingerprint":"{fingerprint}","ok":true,"schema_version":1,"station":"desk-1"}}"#
        )
    );
    assert_eq!(
        text(&KeyCertified::new(KeyRole::Preparer, "factory", &cert)),
        format!(
            r#"{{"effective":"2026-11-01","expiry":"2027-04-30","fingerprint":"{fingerprint}","ok":true,"preparer":"factory","schema_version":1}}"#
        )
    );
}

/// Every document serialises its keys sorted, as the commands printed
/// them: each is filled in completely (every optional key present).
#[test]
fn every_document_prints_its_keys_in_the_order_the_commands_printed_them() {
    let docs = [
        home_documents(),
        keys_documents(),
        records_documents(),
        issuing_documents(),
    ]
    .concat();
    for (typed, map) in &docs {
        assert_eq!(typed, map, "the typed document is the sorted map");
    }
    // And the typed documents print that text themselves.
    let blank = EmulatedCardState::blank();
    assert_eq!(text(&blank), r#"{"life_cycle":"blank","stored":false}"#);
    assert_eq!(text(&blank), as_value_map(&blank));
}

/// The home documents, each as (typed text, text of the same sorted map).
fn home_documents() -> Vec<(String, String)> {
    let s = String::from;
    let counts = Counts::default();
    let intent = Intent {
        id: 1,
        card_number: s("LG-000003"),
        resident_ref: s("F-0002"),
        station: s("desk-1"),
        issued_on: day("2026-11-02"),
        expires_on: day("2031-11-01"),
        batch: None,
        replaces: None,
        card_key: None,
        owner: Some(citycard_registry::Lease {
            id: s("00"),
            desk: s("pcsc:ACS"),
            holder: s("host:1"),
            expires_at: 0,
            released: false,
        }),
    };
    vec![
        pair(Failure::new("x", 1)),
        pair(IssuerInit {
            city: s("Liège"),
            dir: PathBuf::from("/srv/citycard"),
            groups: 1,
            issuer_id: s("LIEGE"),
            ok: true,
            registry: s("/srv/citycard/registry.sqlite"),
            retain_attributes_days: Some(30),
            root_fingerprint: s("00"),
            root_key: s("file:root.key"),
            schema_version: SCHEMA_VERSION,
        }),
        pair(IssuerShow {
            card_prefix: s("LG"),
            card_validity_days: 1826,
            cards: CardCounts::from(&counts),
            city: s("Liège"),
            desks_at_work: 0,
            issuer_id: s("LIEGE"),
            ok: true,
            partners: 1,
            registry: s("r"),
            residents_with_attributes: 0,
            retain_attributes_days: None,
            root_fingerprint: s("00"),
            root_key: s("file:root.key"),
            schema_version: SCHEMA_VERSION,
            stations: 2,
            stations_retired: 1,
        }),
        pair(IssuerBackup {
            cards: 1,
            files: vec![PathBuf::from("issuer.json")],
            ok: true,
            out: PathBuf::from("b.tar"),
            schema_version: SCHEMA_VERSION,
        }),
        pair(IssuerMigrate::from(&MigrateReport::Upgraded {
            location: s("r"),
            from: 3,
            to: 4,
        })),
        pair(IssuerMigrate::from(&MigrateReport::Moved {
            url: s("postgres://db/registry"),
            copied: citycard_registry::pg::CopyReport::default(),
            old_file: PathBuf::from("registry.sqlite.moved"),
        })),
        pair(ReconcileSpoiled::from(&Reconciled::default())),
        pair(ReconcileOrphans::new(&[intent])),
    ]
}

/// The keys documents, each as (typed text, text of the same sorted map).
fn keys_documents() -> Vec<(String, String)> {
    let s = String::from;
    let partner = PartnerInfo {
        name: s("library"),
        grants: AttributeSet::parse_list("pseudonym,resident").expect("grants"),
        effective: day("2026-11-01"),
        expiry: day("2027-11-01"),
        fingerprint: s("ef"),
    };
    vec![
        pair(StationRetired::new("desk-1", day("2026-11-02"))),
        pair(CardPrepared::new("factory", "B1")),
        pair(PartnerCredential {
            effective: s("2026-11-01"),
            expiry: s("2027-11-01"),
            grants: s("resident"),
            ok: true,
            out: PathBuf::from("library.cred"),
            partner: s("library"),
            schema_version: SCHEMA_VERSION,
        }),
        pair(PartnerList::new(&[partner])),
    ]
}

/// The records documents, each as (typed text, text of the same sorted map).
fn records_documents() -> Vec<(String, String)> {
    let s = String::from;
    let audit = AuditEntry {
        seq: 4,
        at: 1_790_000_000,
        actor: s("clerk"),
        station: Some(s("desk-1")),
        action: s("issued"),
        card_number: Some(s("LG-000002")),
    };
    vec![
        pair(Revoked::new("LG-000002", RevocationReason::Stolen)),
        pair(RevocationPublished {
            bytes: 900,
            group: 0,
            next_update_days: 7,
            ok: true,
            out: PathBuf::from("liege.bundle"),
            revoked: 1,
            schema_version: SCHEMA_VERSION,
            sequence: 2,
        }),
        pair(TrustExported {
            bytes: 900,
            ok: true,
            out: PathBuf::from("liege.bundle"),
            revocation_sequence: 2,
            revoked: 1,
            schema_version: SCHEMA_VERSION,
            stations: 2,
        }),
        pair(TrustShow {
            bundle_issued_at: 1,
            bytes: 900,
            group: 0,
            issuer: s("LIEGE"),
            revocation_list: RevocationListSummary {
                age_secs: 5,
                issued_at: 1,
                next_update: 2,
                revoked: 0,
                sequence: 1,
                stale: true,
            },
            root_fingerprint: s("00"),
            schema_version: SCHEMA_VERSION,
            signature_valid: true,
            stations: 1,
        }),
        pair(ResidentForgotten::new(
            "F-0001",
            &citycard_registry::ForgetReport {
                attributes_erased: 3,
                cards_unlinked: 1,
                wal_truncated: true,
            },
        )),
        pair(CardShow::from(&revoked_card())),
        pair(AuditLine::from(&audit)),
    ]
}

/// The issuing documents, each as (typed text, text of the same sorted map).
fn issuing_documents() -> Vec<(String, String)> {
    let s = String::from;
    let some_strings = || Some(vec![s("age_over_18")]);
    vec![
        pair(CardIssued {
            apdus: 30,
            bytes_received: 2000,
            bytes_sent: 3000,
            card_number: s("LG-000002"),
            expires_on: s("2031-11-01"),
            issued_on: s("2026-11-02"),
            key_generated: Some(true),
            not_on_card: some_strings(),
            ok: true,
            predicates: some_strings(),
            profile: Some(s("piv")),
            resident_id: s("F-0001"),
            schema_version: SCHEMA_VERSION,
        }),
        pair(BatchLine {
            card_number: Some(s("LG-000002")),
            error: Some(s("e")),
            exit_code: Some(1),
            field: Some(s("name")),
            key_generated: Some(false),
            line: 2,
            not_on_card: some_strings(),
            ok: false,
            predicates: some_strings(),
            profile: Some(s("piv")),
            resident_id: None,
            schema_version: SCHEMA_VERSION,
            status: s("failed"),
        }),
        pair(EmulatedCardState::blank()),
        pair(EmulatedCardState::from(&Summary {
            key_slots: vec![0x9E],
            objects: vec![0x5F_C1_01],
            pin_tries_left: 3,
            puk_tries_left: 3,
            management_key_algorithm: 3,
        })),
        pair(EmulatedCardState::Applet(AppletState {
            anchored_issuer: Some(s("LIEGE")),
            attributes: some_strings(),
            cached_reader_certificates: 0,
            card_date: Some(s("2026-11-02")),
            groups: Some(1),
            life_cycle: s("ACTIVATED"),
            personalised: true,
        })),
    ]
}
