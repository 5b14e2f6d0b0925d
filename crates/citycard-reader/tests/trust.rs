//! The partner credential file and trust loading: each problem its own error.
#![cfg(test)]

use citycard_proto::crypto;
use citycard_proto::revocation::TrustBundle;
use citycard_reader::{root_fingerprint, PartnerCredential, ReaderError, Trust};
use citycard_testkit::keys::{
    city, city_named, key_hex, reader, test_key, trust_bundle, BundleSpec, TestCity,
};

fn bundle(city: &TestCity) -> TrustBundle {
    trust_bundle(city, BundleSpec::of(city, 1_790_000_000, 1_790_086_400))
}

fn library(city: &TestCity) -> PartnerCredential {
    let r = reader(city, "library");
    PartnerCredential::new(r.certificate, r.key).unwrap()
}

#[test]
fn credential_file_round_trips_with_private_permissions() {
    let city = city();
    let cred = library(&city);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("library.credential.json");
    cred.write_to(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = PartnerCredential::load(&path).unwrap();
    assert_eq!(again.certificate(), cred.certificate());
    assert_eq!(again.key().to_bytes(), cred.key().to_bytes());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["issuer_id"], "LIEGE");
    assert_eq!(json["partner"], "library");
    assert!(json["private_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    // Never overwritten, and nothing left behind.
    assert!(matches!(
        cred.write_to(&path),
        Err(ReaderError::AlreadyExists(_))
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // A missing directory is an I/O error naming the path.
    let err = cred
        .write_to(&dir.path().join("missing/library.credential.json"))
        .unwrap_err();
    assert!(
        matches!(&err, ReaderError::Io { path, .. } if path.ends_with("missing")),
        "{err}"
    );
    // A device is written through, never replaced (as `--out /dev/stdout`).
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        cred.write_to(std::path::Path::new("/dev/null")).unwrap();
        assert!(std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
    }
}

#[test]
fn the_private_key_never_shows() {
    let city = city();
    let cred = library(&city);
    let scalar = key_hex(cred.key());
    let pem_line = cred.to_json().unwrap();
    let debug = format!(
        "{cred:?} {:?}",
        Trust::new(bundle(&city), cred.clone()).unwrap()
    );
    assert!(
        !debug.contains(&scalar) && !debug.contains("PRIVATE KEY"),
        "{debug}"
    );
    assert!(debug.contains("REDACTED"));
    // A broken key is reported by field, without echoing it.
    let broken = pem_line.replace("MIG", "XXX");
    let err = PartnerCredential::from_json(&broken).unwrap_err();
    assert!(matches!(err, ReaderError::Malformed { .. }), "{err}");
    assert!(!err.to_string().contains("XXX"));
}

#[test]
fn each_credential_problem_has_its_own_error() {
    let city = city();
    let r = reader(&city, "library");
    // Key of another reader.
    assert!(matches!(
        PartnerCredential::new(r.certificate.clone(), test_key("someone else")),
        Err(ReaderError::CredentialKeyMismatch)
    ));
    // A station certificate is not a reader credential.
    assert!(matches!(
        PartnerCredential::new(city.station_certificate.clone(), city.station.clone()),
        Err(ReaderError::CredentialNotAReader)
    ));
    // Another city's reader.
    let other = city_named("BRUXELLES", "root");
    assert!(matches!(
        Trust::new(bundle(&city), library(&other)),
        Err(ReaderError::CredentialNotForThisIssuer { .. })
    ));
    // Same issuer id, not signed by this root.
    let rogue = city_named("LIEGE", "rogue root");
    assert!(matches!(
        Trust::new(bundle(&city), library(&rogue)),
        Err(ReaderError::CredentialSignature)
    ));
    // A bundle signed by another key than its root.
    let good = bundle(&city);
    let forged = TrustBundle::assemble(
        &good.body().to_be_signed().unwrap(),
        &crypto::sign(&rogue.root, &good.body().to_be_signed().unwrap()),
    )
    .unwrap();
    assert!(matches!(
        Trust::new(forged, library(&city)),
        Err(ReaderError::BundleSignature)
    ));
    // Wrong schema version, mismatching names.
    let text = library(&city).to_json().unwrap();
    assert!(matches!(
        PartnerCredential::from_json(
            &text.replace("\"schema_version\": 1", "\"schema_version\": 2")
        ),
        Err(ReaderError::UnsupportedSchema(2))
    ));
    assert!(matches!(
        PartnerCredential::from_json(
            &text.replace("\"partner\": \"library\"", "\"partner\": \"museum\"")
        ),
        Err(ReaderError::Malformed { .. })
    ));
}

#[test]
fn trust_loads_from_files_and_pins_the_root() {
    let city = city();
    let dir = tempfile::tempdir().unwrap();
    let bundle_path = dir.path().join("bundle.bin");
    let hex_path = dir.path().join("bundle.hex");
    let cred_path = dir.path().join("cred.json");
    std::fs::write(&bundle_path, bundle(&city).as_bytes()).unwrap();
    std::fs::write(&hex_path, hex::encode(bundle(&city).as_bytes()) + "\n").unwrap();
    library(&city).write_to(&cred_path).unwrap();
    let t = Trust::load(&bundle_path, &cred_path).unwrap();
    assert_eq!(t.issuer_id(), "LIEGE");
    Trust::load(&hex_path, &cred_path).unwrap();
    let fp = root_fingerprint(&city.root.public_key());
    assert_eq!(t.root_fingerprint(), fp);
    let t = t.with_expected_root(&fp).unwrap();
    assert!(matches!(
        t.with_expected_root(&[0; 32]),
        Err(ReaderError::UnexpectedRoot { .. })
    ));
    // A flipped byte in the bundle file: malformed or bad signature, never accepted.
    let bytes = bundle(&city).as_bytes().to_vec();
    for i in (0..bytes.len()).step_by(7) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x04;
        std::fs::write(&bundle_path, &bad).unwrap();
        let err = Trust::load(&bundle_path, &cred_path).unwrap_err();
        assert!(
            matches!(
                err,
                ReaderError::Malformed { .. } | ReaderError::BundleSignature
            ),
            "{i}: {err}"
        );
    }
    assert!(matches!(
        Trust::load(&dir.path().join("missing"), &cred_path),
        Err(ReaderError::Io { .. })
    ));
}

fn bundle_with_sequence(city: &TestCity, sequence: u32, next_update: u64) -> TrustBundle {
    trust_bundle(
        city,
        BundleSpec {
            sequence,
            ..BundleSpec::of(city, 1_790_000_000, next_update)
        },
    )
}

/// An attacker who can replace the bundle file replays an older, still
/// fresh bundle (issued before a revocation) after the reader restarts.
#[test]
fn an_older_list_is_refused_after_a_restart() {
    let city = city();
    let dir = tempfile::tempdir().unwrap();
    let cred_path = dir.path().join("library.credential.json");
    library(&city).write_to(&cred_path).unwrap();
    let bundle_path = dir.path().join("city.bundle");
    let state = citycard_reader::revocation_state_path(&cred_path);
    assert_eq!(
        state,
        dir.path().join("library.credential.json.revocation-state")
    );

    let write = |seq: u32| {
        std::fs::write(
            &bundle_path,
            bundle_with_sequence(&city, seq, 1_790_086_400).as_bytes(),
        )
        .unwrap()
    };
    write(5);
    // Each load is a fresh process's view: nothing in memory carries over.
    Trust::load(&bundle_path, &cred_path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    write(4);
    match Trust::load(&bundle_path, &cred_path) {
        Err(ReaderError::RevocationListRollback { seen, found, .. }) => {
            assert_eq!((seen, found), (5, 4))
        }
        other => panic!("older list accepted: {other:?}"),
    }
    // Inspecting does not record nor refuse.
    Trust::load_unrecorded(&bundle_path, &cred_path).unwrap();
    write(5);
    Trust::load(&bundle_path, &cred_path).unwrap();
    write(6);
    Trust::load(&bundle_path, &cred_path).unwrap();
    write(5);
    assert!(matches!(
        Trust::load(&bundle_path, &cred_path),
        Err(ReaderError::RevocationListRollback { seen: 6, .. })
    ));
    // A damaged state file is an error, not a reset to zero.
    std::fs::write(&state, b"{not json").unwrap();
    write(6);
    assert!(matches!(
        Trust::load(&bundle_path, &cred_path),
        Err(ReaderError::Malformed {
            what: "revocation state"
        })
    ));
    // Nothing else was left in the directory.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn freshness_warns_before_the_next_update() {
    use citycard_reader::Freshness;
    let city = city();
    let next = 1_790_086_400;
    let trust = Trust::new(bundle_with_sequence(&city, 1, next), library(&city)).unwrap();
    assert_eq!(trust.freshness(next - 100_000, 86_400), Freshness::Fresh);
    assert_eq!(
        trust.freshness(next - 50_000, 86_400),
        Freshness::ExpiresSoon {
            next_update: next,
            remaining_secs: 50_000
        }
    );
    assert_eq!(
        trust.freshness(next + 1, 86_400),
        Freshness::Stale { next_update: next }
    );
}

#[test]
fn credential_file_limit_at_and_past() {
    use citycard_proto::limits::MAX_CREDENTIAL_LEN;
    let city = city();
    let text = library(&city).to_json().unwrap();
    assert!(text.len() < MAX_CREDENTIAL_LEN / 2, "{} bytes", text.len());
    let dir = tempfile::tempdir().unwrap();
    // JSON allows trailing white space: a file of exactly the limit loads.
    let at = format!("{text}{}", " ".repeat(MAX_CREDENTIAL_LEN - text.len()));
    assert_eq!(at.len(), MAX_CREDENTIAL_LEN);
    let path = dir.path().join("at.cred");
    std::fs::write(&path, &at).unwrap();
    PartnerCredential::load(&path).unwrap();
    PartnerCredential::from_json(&at).unwrap();
    // One byte more is refused, from a file and from memory.
    let past = format!("{at} ");
    let path = dir.path().join("past.cred");
    std::fs::write(&path, &past).unwrap();
    for err in [
        PartnerCredential::load(&path).unwrap_err(),
        PartnerCredential::from_json(&past).unwrap_err(),
    ] {
        assert!(
            matches!(err, ReaderError::Malformed { what } if what.contains("too large")),
            "{err:?}"
        );
    }
}
