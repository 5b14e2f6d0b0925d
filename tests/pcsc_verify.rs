//! Partners verify cards through the real PC/SC stack with `citycard verify`:
//! a genuine card discloses exactly the granted attributes; an unauthorised
//! request, a clone, a replayed transcript, a revoked card, another city's
//! card and a blank card each give their own verdict and exit code; two
//! partners get different pseudonyms and share no identifying JSON value.
#![cfg(test)]

use std::collections::BTreeSet;
use std::path::Path;

use citycard_e2e::citycard_ok as ok;
use citycard_e2e::verify_json as verify;
use citycard_e2e::{
    bench_available, citycard, enrol_partner, export_trust, issuer_home, vpcd_lock,
    EmulatorProcess, ServedCard, READER,
};
use citycard_proto::{CardLost, ContactlessCard};

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

#[test]
fn partners_verify_through_pcscd() {
    let _lock = vpcd_lock();
    if !bench_available("partners_verify_through_pcscd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let liege = city(d, "LIEGE");
    let cred = |name: &str, attrs: &str| enrol_partner(&liege.home, d, name, attrs);
    let library = cred("library", "pseudonym,resident");
    let transit = cred("transit", "age_over_65,age_over_18");
    let museum = cred("museum", "pseudonym,resident,language");
    let bundle = d.join("liege.bundle");
    export_trust(&liege.home, &bundle);
    let state = d.join("zoe.state");
    personalise(&liege, d, &state, "F-ZOE");

    // Genuine, library: exactly pseudonym + resident.
    let emu = EmulatorProcess::start(&state, &[]);
    let (code, lib, err) = verify(&bundle, &library, &[]);
    assert_eq!(code, 0, "{lib} {err}");
    assert_eq!(lib["verdict"], "genuine", "{lib}");
    let text = lib.to_string();
    assert!(text.contains("\"resident\":true"), "{text}");
    assert!(
        !text.contains("Zo") && !text.contains("1950") && !text.contains("Quai"),
        "{text}"
    );
    // Transit: age over 65 only.
    let (code, tr, err) = verify(&bundle, &transit, &["--attributes", "age_over_65"]);
    assert_eq!(code, 0, "{tr} {err}");
    assert!(tr.to_string().contains("\"age_over_65\":true"), "{tr}");
    assert!(
        tr.get("pseudonym").is_none() || tr["pseudonym"].is_null(),
        "{tr}"
    );
    // A second partner with a pseudonym: different pseudonym, no shared identifying value.
    let (code, mu, err) = verify(&bundle, &museum, &[]);
    assert_eq!(code, 0, "{mu} {err}");
    let (a, b) = (identifying_values(&lib), identifying_values(&mu));
    assert!(!a.is_empty() && !b.is_empty());
    let shared: Vec<_> = a.intersection(&b).collect();
    assert!(
        shared.is_empty(),
        "library and museum share {shared:?}\n{lib}\n{mu}"
    );
    // Unauthorised: the library asks for the name; the card's answers carry no ungranted value.
    let (code, v, err) = verify(
        &bundle,
        &library,
        &["--attributes", "pseudonym,resident,name"],
    );
    assert_eq!(code, 14, "{v} {err}");
    assert_eq!(v["verdict"], "unauthorised");
    // Same through --trace: look at every response byte.
    let (code, _, trace) = citycard(&[
        "--trace",
        "verify",
        "--reader",
        READER,
        "--trust",
        bundle.to_str().unwrap(),
        "--credential",
        library.to_str().unwrap(),
        "--attributes",
        "pseudonym,resident,name",
        "--wait",
        "10",
    ]);
    assert_eq!(code, 14);
    let responses: String = trace
        .lines()
        .filter_map(|l| l.strip_prefix("<< "))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(!responses.is_empty(), "{trace}");
    for secret in ["Zoé Lambert", "Quai de la Batte", "Lambert"] {
        assert!(
            !responses.contains(&hex::encode_upper(secret.as_bytes())),
            "{secret} on the wire: {responses}"
        );
    }
    // Record a genuine cached tap for the replay below.
    let (code, _, trace) = citycard(&[
        "--trace",
        "verify",
        "--reader",
        READER,
        "--trust",
        bundle.to_str().unwrap(),
        "--credential",
        library.to_str().unwrap(),
        "--wait",
        "10",
    ]);
    assert_eq!(code, 0, "{trace}");
    let recorded: Vec<Vec<u8>> = trace
        .lines()
        .filter_map(|l| l.strip_prefix("<< "))
        .map(|l| hex::decode(l.split_whitespace().next().unwrap()).unwrap())
        .collect();
    assert_eq!(
        recorded.len(),
        3,
        "a cached tap is SELECT, GENERAL AUTHENTICATE, GET RESPONSE: {trace}"
    );
    emu.kill();

    // Replay of that transcript by a fake card.
    let replay = ServedCard::serve_card(move || ReplayCard {
        responses: recorded,
        next: 0,
    });
    let (code, v, err) = verify(&bundle, &library, &[]);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (21, Some("replay")),
        "{v} {err}"
    );
    drop(replay);

    // A clone: same data, another private key.
    let clone = EmulatorProcess::start(&state, &["--fault", "clone"]);
    let (code, v, err) = verify(&bundle, &library, &[]);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (22, Some("clone")),
        "{v} {err}"
    );
    clone.kill();

    // Revoked: the city revokes the card and publishes; the partner loads the new bundle.
    ok(&[
        "revoke",
        "T-000001",
        "--dir",
        &liege.home,
        "--reason",
        "stolen",
    ]);
    let bundle2 = d.join("liege2.bundle");
    ok(&[
        "revocation",
        "publish",
        "--dir",
        &liege.home,
        "--out",
        bundle2.to_str().unwrap(),
    ]);
    let emu = EmulatorProcess::start(&state, &[]);
    let (code, v, err) = verify(&bundle2, &library, &[]);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (32, Some("revoked")),
        "{v} {err}"
    );
    emu.kill();

    // Another city's card.
    let namur = city(d, "NAMUR");
    let other_state = d.join("namur.state");
    personalise(&namur, d, &other_state, "N-1");
    let emu = EmulatorProcess::start(&other_state, &[]);
    // (The first bundle is refused from now on: this partner loaded list #2.)
    let (code, v, err) = verify(&bundle2, &library, &[]);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (13, Some("card_refused")),
        "{v} {err}"
    );
    emu.kill();

    // A blank card.
    let emu = EmulatorProcess::start(&d.join("blank.state"), &[]);
    let (code, v, err) = verify(&bundle2, &library, &[]);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (11, Some("blank")),
        "{v} {err}"
    );
    emu.kill();
}
