//! Partners verify cards through the real PC/SC stack with `citycard verify`:
//! a genuine card discloses exactly the granted attributes; an unauthorised
//! request, a clone, a replayed transcript, a revoked card, another city's
//! card and a blank card each give their own verdict and exit code; two
//! partners get different pseudonyms and share no identifying JSON value.
#![cfg(test)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use citycard_e2e::citycard_ok as ok;
use citycard_e2e::verify_json as verify;
use citycard_e2e::{
    bench_available, citycard, enrol_partner, export_trust, issuer_home, vpcd_lock,
    EmulatorProcess, ServedCard, READER,
};
use citycard_proto::{apdu::CardLost, apdu::ContactlessCard};

struct City {
    home: String,
}

fn city(dir: &Path, issuer: &str) -> City {
    City {
        home: issuer_home(dir, issuer, "T", &[]),
    }
}

fn personalise(c: &City, dir: &Path, state: &Path, resident_id: &str) {
    let resident = dir.join(format!("{resident_id}.json"));
    std::fs::write(
        &resident,
        format!(r#"{{"resident_id": "{resident_id}", "name": "Zoé Lambert", "birth_date": "1950-07-01", "address": "Quai de la Batte 7, 4000 Liège", "language": "fr"}}"#),
    )
    .unwrap();
    let _card = ServedCard::start(state, [7; 32]);
    citycard_e2e::prepare_in_reader(&c.home);
    ok(&[
        "personalise",
        "--dir",
        &c.home,
        "--station",
        "desk-1",
        "--reader",
        READER,
        "--resident",
        resident.to_str().unwrap(),
    ]);
}

/// The values of a verdict JSON that could identify a card: everything but
/// the envelope (schema version, reader, timing, APDU count) and the verdict kind.
fn identifying_values(v: &serde_json::Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if ![
                        "schema_version",
                        "reader",
                        "timing_ms",
                        "apdus",
                        "verdict",
                        "code",
                        "revocation_age_secs",
                        "revocation_stale",
                        "profile",
                    ]
                    .contains(&k.as_str())
                    {
                        walk(v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            serde_json::Value::Bool(_) => {}
            other => {
                out.insert(format!("{other}"));
            }
        }
    }
    walk(v, &mut out);
    out
}

/// Replays recorded responses in order, whatever the commands: a fake card
/// that recorded a genuine card's answers.
struct ReplayCard {
    responses: Vec<Vec<u8>>,
    next: usize,
}

impl ContactlessCard for ReplayCard {
    fn atr(&self) -> Vec<u8> {
        citycard_proto::consts::atr().to_vec()
    }
    fn reset(&mut self) {}
    fn transmit(&mut self, _command: &[u8]) -> Result<Vec<u8>, CardLost> {
        let r = self
            .responses
            .get(self.next)
            .cloned()
            .unwrap_or_else(|| vec![0x69, 0x85]);
        self.next += 1;
        Ok(r)
    }
}

/// Liège with three enrolled partners, its trust bundle and Zoé's card
/// state; each step of the partners' day is a function over it.
struct Partners {
    tmp: tempfile::TempDir,
    liege: City,
    library: PathBuf,
    transit: PathBuf,
    museum: PathBuf,
    bundle: PathBuf,
    zoe: PathBuf,
}

impl Partners {
    fn enrol() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let liege = city(d, "LIEGE");
        let cred = |name: &str, attrs: &str| enrol_partner(&liege.home, d, name, attrs);
        let library = cred("library", "pseudonym,resident");
        let transit = cred("transit", "age_over_65,age_over_18");
        let museum = cred("museum", "pseudonym,resident,language");
        let bundle = d.join("liege.bundle");
        export_trust(&liege.home, &bundle);
        let zoe = d.join("zoe.state");
        personalise(&liege, d, &zoe, "F-ZOE");
        Self {
            tmp,
            liege,
            library,
            transit,
            museum,
            bundle,
            zoe,
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// `citycard --trace verify` by the library with `extra` arguments:
    /// (exit code, trace on stderr).
    fn library_traced(&self, extra: &[&str]) -> (i32, String) {
        let mut args = vec![
            "--trace",
            "verify",
            "--reader",
            READER,
            "--trust",
            self.bundle.to_str().unwrap(),
            "--credential",
            self.library.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--wait", "10"]);
        let (code, _, trace) = citycard(&args);
        (code, trace)
    }
}

/// The card's responses in a `--trace` output, one per `<< ` line.
fn traced_responses(trace: &str) -> impl Iterator<Item = &str> {
    trace.lines().filter_map(|l| l.strip_prefix("<< "))
}

/// Verifies the card in the reader with `bundle` and `cred` and asserts the
/// exit code and verdict kind.
fn assert_verdict(bundle: &Path, cred: &Path, code: i32, verdict: &str) {
    let (c, v, err) = verify(bundle, cred, &[]);
    assert_eq!(
        (c, v["verdict"].as_str()),
        (code, Some(verdict)),
        "{v} {err}"
    );
}

/// Genuine, library: exactly pseudonym + resident, nothing of the name,
/// birth date or address. Returns the library's verdict.
fn library_sees_only_pseudonym_and_residence(p: &Partners) -> serde_json::Value {
    let (code, lib, err) = verify(&p.bundle, &p.library, &[]);
    assert_eq!(code, 0, "{lib} {err}");
    assert_eq!(lib["verdict"], "genuine", "{lib}");
    let text = lib.to_string();
    assert!(text.contains("\"resident\":true"), "{text}");
    assert!(
        !text.contains("Zo") && !text.contains("1950") && !text.contains("Quai"),
        "{text}"
    );
    lib
}

/// Transit: age over 65 only, no pseudonym.
fn transit_sees_only_age_over_65(p: &Partners) {
    let (code, tr, err) = verify(&p.bundle, &p.transit, &["--attributes", "age_over_65"]);
    assert_eq!(code, 0, "{tr} {err}");
    assert!(tr.to_string().contains("\"age_over_65\":true"), "{tr}");
    assert!(
        tr.get("pseudonym").is_none() || tr["pseudonym"].is_null(),
        "{tr}"
    );
}

/// A second partner with a pseudonym: different pseudonym, no identifying
/// value shared with the library's verdict `lib`.
fn museum_shares_no_identifying_value_with(p: &Partners, lib: &serde_json::Value) {
    let (code, mu, err) = verify(&p.bundle, &p.museum, &[]);
    assert_eq!(code, 0, "{mu} {err}");
    let (a, b) = (identifying_values(lib), identifying_values(&mu));
    assert!(!a.is_empty() && !b.is_empty());
    let shared: Vec<_> = a.intersection(&b).collect();
    assert!(
        shared.is_empty(),
        "library and museum share {shared:?}\n{lib}\n{mu}"
    );
}

/// Unauthorised: the library asks for the name (exit 14); through
/// `--trace`, no response byte carries an ungranted value.
fn unauthorised_request_refused_with_nothing_on_the_wire(p: &Partners) {
    let (code, v, err) = verify(
        &p.bundle,
        &p.library,
        &["--attributes", "pseudonym,resident,name"],
    );
    assert_eq!(code, 14, "{v} {err}");
    assert_eq!(v["verdict"], "unauthorised");
    // Same through --trace: look at every response byte.
    let (code, trace) = p.library_traced(&["--attributes", "pseudonym,resident,name"]);
    assert_eq!(code, 14);
    let responses: String = traced_responses(&trace).collect::<Vec<_>>().join(" ");
    assert!(!responses.is_empty(), "{trace}");
    for secret in ["Zoé Lambert", "Quai de la Batte", "Lambert"] {
        assert!(
            !responses.contains(&hex::encode_upper(secret.as_bytes())),
            "{secret} on the wire: {responses}"
        );
    }
}

/// Records a genuine cached tap (three responses) for the replay below.
fn record_a_cached_tap(p: &Partners) -> Vec<Vec<u8>> {
    let (code, trace) = p.library_traced(&[]);
    assert_eq!(code, 0, "{trace}");
    let recorded: Vec<Vec<u8>> = traced_responses(&trace)
        .map(|l| hex::decode(l.split_whitespace().next().unwrap()).unwrap())
        .collect();
    assert_eq!(
        recorded.len(),
        3,
        "a cached tap is SELECT, GENERAL AUTHENTICATE, GET RESPONSE: {trace}"
    );
    recorded
}

/// A fake card replaying the recorded transcript: exit 21, `replay`.
fn replayed_transcript_is_a_replay(p: &Partners, recorded: Vec<Vec<u8>>) {
    let replay = ServedCard::serve_card(move || ReplayCard {
        responses: recorded,
        next: 0,
    });
    assert_verdict(&p.bundle, &p.library, 21, "replay");
    drop(replay);
}

/// A clone (same data, another private key): exit 22, `clone`.
fn clone_is_a_clone(p: &Partners) {
    let clone = EmulatorProcess::start(&p.zoe, &["--fault", "clone"]);
    assert_verdict(&p.bundle, &p.library, 22, "clone");
    clone.kill();
}

/// The city revokes the card and publishes; the partner loads the new
/// bundle and gets exit 32, `revoked`. Returns the new bundle.
fn revoked_card_is_revoked(p: &Partners) -> PathBuf {
    let home = &p.liege.home;
    ok(&["revoke", "T-000001", "--dir", home, "--reason", "stolen"]);
    let bundle2 = p.dir().join("liege2.bundle");
    ok(&[
        "revocation",
        "publish",
        "--dir",
        home,
        "--out",
        bundle2.to_str().unwrap(),
    ]);
    let emu = EmulatorProcess::start(&p.zoe, &[]);
    assert_verdict(&bundle2, &p.library, 32, "revoked");
    emu.kill();
    bundle2
}

/// Another city's card: exit 13, `card_refused`.
fn other_citys_card_is_refused(p: &Partners, bundle2: &Path) {
    let namur = city(p.dir(), "NAMUR");
    let other_state = p.dir().join("namur.state");
    personalise(&namur, p.dir(), &other_state, "N-1");
    let emu = EmulatorProcess::start(&other_state, &[]);
    // (The first bundle is refused from now on: this partner loaded list #2.)
    assert_verdict(bundle2, &p.library, 13, "card_refused");
    emu.kill();
}

/// A blank card: exit 11, `blank`.
fn blank_card_is_blank(p: &Partners, bundle2: &Path) {
    let emu = EmulatorProcess::start(&p.dir().join("blank.state"), &[]);
    assert_verdict(bundle2, &p.library, 11, "blank");
    emu.kill();
}

#[test]
fn partners_verify_through_pcscd() {
    let _lock = vpcd_lock();
    if !bench_available("partners_verify_through_pcscd") {
        return;
    }
    let p = Partners::enrol();

    let emu = EmulatorProcess::start(&p.zoe, &[]);
    let lib = library_sees_only_pseudonym_and_residence(&p);
    transit_sees_only_age_over_65(&p);
    museum_shares_no_identifying_value_with(&p, &lib);
    unauthorised_request_refused_with_nothing_on_the_wire(&p);
    let recorded = record_a_cached_tap(&p);
    emu.kill();

    replayed_transcript_is_a_replay(&p, recorded);
    clone_is_a_clone(&p);
    let bundle2 = revoked_card_is_revoked(&p);
    other_citys_card_is_refused(&p, &bundle2);
    blank_card_is_blank(&p, &bundle2);
}
