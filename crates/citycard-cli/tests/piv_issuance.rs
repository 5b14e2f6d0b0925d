//! `citycard personalise|batch --profile piv` on emulated PIV cards
//! (`--reader emulated:DIR`): exit codes, JSON, what the registry holds, the
//! management-key rules, revocation; and the default profile's output shape.
#![cfg(test)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use citycard_registry::{CardState, Registry};

const CITY_KEY_HEX: &str = "3a915c07e2441b689f10d37e25b6814c0df962a733c85e14";
const FACTORY_HEX: &str = "010203040506070801020304050607080102030405060708";

struct Office {
    dir: tempfile::TempDir,
}

impl Office {
    fn new() -> Self {
        let o = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        o.ok(&[
            "issuer",
            "init",
            "--dir",
            "HOME",
            "--city",
            "Liège",
            "--issuer-id",
            "LIEGE",
            "--card-prefix",
            "LG",
        ]);
        o.ok(&["station", "add", "desk-1", "--dir", "HOME"]);
        o.ok(&["preparer", "add", "prep-1", "--dir", "HOME"]);
        o.write("alex.json", r#"{"resident_id": "F-1", "name": "Alex Moreau", "birth_date": "1958-03-14", "address": "Rue 12", "language": "fr"}"#, 0o600);
        o.write("teen.json", r#"{"resident_id": "F-2", "name": "Sam", "birth_date": "2010-01-01", "address": "Rue 13"}"#, 0o600);
        o.write("city.key", &format!("{CITY_KEY_HEX}\n"), 0o600);
        o.write("factory.key", &format!("{FACTORY_HEX}\n"), 0o600);
        o
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str, mode: u32) {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .env("CITYCARD_OPERATOR", "test")
            .output()
            .unwrap()
    }

    /// `citycard ARGS` with `HOME`, `CARDS` and the office's file names
    /// replaced by their paths, and the issuer passphrase set.
    fn command(&self, args: &[&str]) -> Command {
        let home = self.path("home");
        let cards = format!("emulated:{}", self.path("cards").display());
        let args: Vec<String> = args
            .iter()
            .map(|a| match *a {
                "HOME" => home.display().to_string(),
                "CARDS" => cards.clone(),
                a if a.ends_with(".json")
                    || a.ends_with(".key")
                    || a.ends_with(".pem")
                    || a.ends_with(".csv")
                    || a.ends_with(".bundle") =>
                {
                    self.path(a).display().to_string()
                }
                a => a.to_string(),
            })
            .collect();
        let mut command = Command::new(env!("CARGO_BIN_EXE_citycard"));
        command
            .args(&args)
            .env("CITYCARD_PASSPHRASE", "correct horse");
        command
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn registry(&self) -> Registry {
        Registry::open(self.path("home").join("registry.sqlite")).unwrap()
    }
}

fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().next().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `personalise` of `resident` at desk-1 on the emulated reader, `--json`,
/// then `extra`.
fn personalise<'a>(resident: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = personalise_text(resident, &["--json"]);
    v.extend_from_slice(extra);
    v
}

/// `personalise` of `resident` at desk-1 on the emulated reader, then `extra`.
fn personalise_text<'a>(resident: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = at_desk("personalise", &["--resident", resident]);
    v.extend_from_slice(extra);
    v
}

/// `batch` of the rows in `file` at desk-1 on the emulated reader, then `extra`.
fn batch<'a>(file: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = at_desk("batch", &[file]);
    v.extend_from_slice(extra);
    v
}

/// `command` with the office's home, station desk-1 and the emulated
/// reader (its new applet cards prepared by prep-1), then `extra`.
fn at_desk<'a>(command: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        command,
        "--dir",
        "HOME",
        "--station",
        "desk-1",
        "--reader",
        "CARDS",
        "--prepare-with",
        "prep-1",
    ];
    v.extend_from_slice(extra);
    v
}

/// The command exited with `code` (its stderr in the message otherwise).
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn card_states(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// `personalise alex.json --profile piv` with `extra`, run at the office.
fn piv_alex(o: &Office, extra: &[&str]) -> Output {
    let mut args = vec!["--profile", "piv"];
    args.extend_from_slice(extra);
    o.run(&personalise("alex.json", &args))
}

/// The registry holds nothing: no intent, no card.
fn registry_is_empty(o: &Office) {
    assert_eq!(o.registry().counts().unwrap(), Default::default());
}

/// Usage (exit 2): PIV options need `--profile piv`; `--profile piv` needs
/// a key; DES is no management-key algorithm.
fn usage_errors_exit_2(o: &Office) {
    let out = o.run(&personalise("alex.json", &["--management-key", "city.key"]));
    assert_eq!(out.status.code(), Some(2));
    let out = o.run(&personalise("alex.json", &["--profile", "piv"]));
    assert_eq!(out.status.code(), Some(2));
    let out = piv_alex(
        o,
        &[
            "--management-key",
            "city.key",
            "--management-key-algorithm",
            "des",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
}

/// A key file others can read, or the factory key configured: refused (5),
/// with the way out.
fn unsafe_management_keys_exit_5(o: &Office) {
    o.write("open.key", &format!("{CITY_KEY_HEX}\n"), 0o644);
    let out = piv_alex(o, &["--management-key", "open.key"]);
    assert_exit(&out, 5);
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    let out = piv_alex(o, &["--management-key", "factory.key"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("set-mgm-key"));
}

/// The city's key on a factory-fresh card: the card still accepts the
/// default key, refused (10); allowed, the card refuses the city's key
/// (10). Nothing written anywhere either time.
fn city_key_on_a_factory_card_exits_10(o: &Office) {
    let out = piv_alex(o, &["--management-key", "city.key"]);
    assert_exit(&out, 10);
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("factory management key"),
        "{v}"
    );
    registry_is_empty(o);
    let out = piv_alex(
        o,
        &[
            "--management-key",
            "city.key",
            "--allow-default-management-key",
        ],
    );
    assert_eq!(out.status.code(), Some(10));
    assert!(json(&out)["error"]
        .as_str()
        .unwrap()
        .contains("refused the management key"));
    registry_is_empty(o);
}

/// `--card-key-from` with a key the card does not hold: 13, nothing
/// written; with a file that is no key: 3.
fn card_key_from_refusals(o: &Office) {
    o.write(
        "other.pem",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEDFPOUAFX8BeO4rWkRgC16j4bEcvn\nWzZfwtNXTLGVeUmafP9T4FSdoWgC7vrIZdYXgrwFCP2QusaL86BEF9GNjA==\n-----END PUBLIC KEY-----\n",
        0o644,
    );
    let allowed_from = |pem| {
        piv_alex(
            o,
            &["--allow-default-management-key", "--card-key-from", pem],
        )
    };
    let out = allowed_from("other.pem");
    assert_exit(&out, 13);
    registry_is_empty(o);
    o.write("bad.pem", "not a key\n", 0o644);
    let out = allowed_from("bad.pem");
    assert_eq!(out.status.code(), Some(3));
}

/// A test card with the factory key, allowed: issued, with the JSON naming
/// the predicates and what is not on the card; the registry holds it as
/// issued and the state file is a PIV card. Returns the card number and
/// its revocation id.
fn factory_key_card_issued_when_allowed(o: &Office) -> (String, Option<[u8; 8]>) {
    let out = o.ok(&personalise(
        "alex.json",
        &["--profile", "piv", "--allow-default-management-key"],
    ));
    let v = json(&out);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["profile"], "piv");
    assert_eq!(v["key_generated"], true);
    assert_eq!(
        v["predicates"],
        serde_json::json!(["age_over_18", "age_over_21", "age_over_65"])
    );
    assert_eq!(
        v["not_on_card"],
        serde_json::json!(["name", "birth_date", "address", "language"])
    );
    let number = v["card_number"].as_str().unwrap().to_string();
    let rec = o.registry().card(&number).unwrap().unwrap();
    assert_eq!(rec.state, CardState::Issued);
    // The state file is a PIV card holding a 9E key and the certificate.
    let state = std::fs::read_dir(o.path("cards"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let show = o.ok(&["card", "show", "--state", state.to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(shown.contains("piv") || shown.contains("PIV"), "{shown}");
    (number, rec.revocation_id)
}

/// Text output names what is not on the card (and a teenager's card holds
/// no age predicate).
fn text_output_names_what_is_not_on_the_card(o: &Office) {
    let out = o.ok(&personalise_text(
        "teen.json",
        &["--profile", "piv", "--allow-default-management-key"],
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Signed age predicates (true on the issue date): none"),
        "{text}"
    );
    assert!(text.contains("Not written to the card"), "{text}");
    assert!(text.contains("name, birth_date, address"), "{text}");
}

/// Revocation of a PIV card reaches the published list.
fn piv_revocation_is_published(o: &Office, number: &str, revocation_id: Option<[u8; 8]>) {
    o.ok(&["revoke", number, "--dir", "HOME", "--reason", "lost"]);
    o.ok(&[
        "revocation",
        "publish",
        "--dir",
        "HOME",
        "--out",
        "city.bundle",
    ]);
    let bundle = citycard_proto::revocation::TrustBundle::decode(
        &std::fs::read(o.path("city.bundle")).unwrap(),
    )
    .unwrap();
    bundle.verify().unwrap();
    assert!(bundle
        .body()
        .revocations
        .is_revoked(&revocation_id.unwrap()));
}

#[test]
fn piv_issuance_end_to_end_with_its_refusals() {
    let o = Office::new();
    usage_errors_exit_2(&o);
    unsafe_management_keys_exit_5(&o);
    city_key_on_a_factory_card_exits_10(&o);
    card_key_from_refusals(&o);
    let (number, revocation_id) = factory_key_card_issued_when_allowed(&o);
    text_output_names_what_is_not_on_the_card(&o);
    piv_revocation_is_published(&o, &number, revocation_id);
}

#[test]
fn piv_batch_issues_every_row() {
    let o = Office::new();
    o.write(
        "rows.csv",
        "resident_id,name,birth_date,address\nR1,Ann,2010-01-01,Rue 1\nR2,Bob,1950-05-05,Rue 2\n",
        0o600,
    );
    let out = o.run(&batch(
        "rows.csv",
        &[
            "--profile",
            "piv",
            "--allow-default-management-key",
            "--json",
        ],
    ));
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["profile"], "piv");
    assert_eq!(lines[0]["predicates"], serde_json::json!([]));
    assert_eq!(lines[1]["predicates"].as_array().unwrap().len(), 3);
    assert_eq!(lines[2]["summary"]["issued"], 2);
    assert_eq!(card_states(&o.path("cards")), 2);
    // --card-key-from is for one card only.
    let out = o.run(&batch(
        "rows.csv",
        &["--profile", "piv", "--card-key-from", "x.pem"],
    ));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_default_profile_output_is_unchanged() {
    let o = Office::new();
    let out = o.ok(&personalise("alex.json", &[]));
    let v = json(&out);
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "apdus",
            "bytes_received",
            "bytes_sent",
            "card_number",
            "expires_on",
            "issued_on",
            "ok",
            "resident_id",
            "schema_version"
        ]
    );
    let out = o.ok(&personalise_text("teen.json", &[]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("Issued card LG-000002 (valid "), "{text}");
    assert!(
        text.trim_end()
            .ends_with("; the card's check value matches what was sent."),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1);
}

/// Sends one APDU to an in-process card; the data and status word.
fn apdu(
    card: &mut impl citycard_proto::apdu::ContactlessCard,
    cmd: &citycard_proto::apdu::Command,
) -> (Vec<u8>, u16) {
    let mut r = card.transmit(&cmd.to_short_bytes().unwrap()).unwrap();
    let sw = r.split_off(r.len() - 2);
    (r, u16::from_be_bytes([sw[0], sw[1]]))
}

/// An emulated PIV card in `path` with the city's 3DES management key set,
/// as `yubico-piv-tool -a set-mgm-key` would leave it.
fn prepare_piv_card(path: &Path, key_hex: &str) {
    use citycard_keys::{ManagementKey, SoftManagementKey};
    use citycard_proto::piv;
    use rand_chacha::rand_core::SeedableRng;
    let store = citycard_emulator::FileStore::new(path).unwrap();
    let mut card =
        citycard_piv_card::PivCard::new(store, rand_chacha::ChaCha20Rng::from_seed([1; 32]));
    let alg = piv::ManagementAlgorithm::TripleDes;
    let factory = SoftManagementKey::factory_default(alg);
    assert_eq!(apdu(&mut card, &piv::select_command()).1, 0x9000);
    let (data, sw) = apdu(&mut card, &piv::management_witness_request(alg));
    assert_eq!(sw, 0x9000);
    let plain = factory
        .decrypt_block(&piv::parse_management_witness(&data, alg).unwrap())
        .unwrap();
    let (_, sw) = apdu(
        &mut card,
        &piv::management_response_command(alg, &plain, &[9; 8]),
    );
    assert_eq!(sw, 0x9000);
    let mut set = vec![0x03, 0x9B, 24];
    set.extend_from_slice(&hex::decode(key_hex).unwrap());
    let (_, sw) = apdu(
        &mut card,
        &citycard_proto::apdu::Command::new(0x00, 0xFF, 0xFF, 0xFF).with_data(set),
    );
    assert_eq!(sw, 0x9000);
}

fn softhsm_module() -> PathBuf {
    std::env::var_os("CITYCARD_TEST_PKCS11_MODULE")
        .map(PathBuf::from)
        .or_else(|| {
            [
                "/usr/lib/softhsm/libsofthsm2.so",
                "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
            ]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        })
        .expect("SoftHSM2 (apt-get install softhsm2)")
}

/// The management key on a PKCS#11 token (SoftHSM2, imported with OpenSC's
/// pkcs11-tool as a city would), on a card prepared with the city's key
/// (an emulated PIV card state waiting in the emulated reader's directory).
#[test]
fn piv_issuance_with_the_management_key_on_a_pkcs11_token() {
    let o = Office::new();
    std::fs::create_dir_all(o.path("cards")).unwrap();
    prepare_piv_card(&o.path("cards").join("card-000001.state"), CITY_KEY_HEX);
    // A SoftHSM2 token with the key as a sensitive DES3 secret key.
    let tokens = o.path("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = o.path("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .unwrap();
    let module = softhsm_module();
    let run = |cmd: &str, args: &[&str]| {
        let out = Command::new(cmd)
            .env("SOFTHSM2_CONF", &conf)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e} (apt-get install softhsm2 opensc)"));
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        "softhsm2-util",
        &[
            "--init-token",
            "--free",
            "--label",
            "city",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ],
    );
    let raw = o.path("mgm.bin");
    std::fs::write(&raw, hex::decode(CITY_KEY_HEX).unwrap()).unwrap();
    run(
        "pkcs11-tool",
        &[
            "--module",
            module.to_str().unwrap(),
            "--token-label",
            "city",
            "--login",
            "--pin",
            "1234",
            "--write-object",
            raw.to_str().unwrap(),
            "--type",
            "secrkey",
            "--key-type",
            "DES3:24",
            "--label",
            "piv-mgm",
            "--sensitive",
        ],
    );
    std::fs::remove_file(&raw).unwrap();
    let locator = format!(
        "pkcs11:token=city;object=piv-mgm;type=secret-key?module-path={}",
        module.display()
    );
    let issue = |pin: &str| {
        let mut args = personalise("alex.json", &["--profile", "piv", "--management-key"]);
        args.push(&locator);
        o.command(&args)
            .env("CITYCARD_PKCS11_PIN", pin)
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap()
    };
    // A wrong PIN: key access failed (6), nothing written.
    let out = issue("0000");
    assert_exit(&out, 6);
    assert_eq!(o.registry().counts().unwrap(), Default::default());
    // The right PIN: the prepared card (not a new one) is issued.
    let out = issue("1234");
    assert_exit(&out, 0);
    let v = json(&out);
    assert_eq!(v["profile"], "piv", "{v}");
    assert_eq!(card_states(&o.path("cards")), 1);
    assert_eq!(o.registry().counts().unwrap().issued, 1);
}
