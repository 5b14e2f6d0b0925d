//! What a partner sees: `verify`, `watch` and `serve` on the emulated card
//! (no pcscd), every JSON line checked against `schemas/`, the service's
//! failure exits, the origin allow-list, and the desk page in a real
//! headless Chromium driven through chromedriver's WebDriver API.
//!
//! Long on purpose: one partner's whole journey (files, verify, watch, serve,
//! browser, bindings) shares the city fixture built at the top.
#![cfg(test)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use citycard_testkit::schemas::{assert_valid_text, Schema};
use serde_json::{json, Value};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_citycard"));
    c.env("CITYCARD_PASSPHRASE", "test-only-passphrase")
        .env("CITYCARD_OPERATOR", "test");
    c
}

fn ok(dir: &Path, args: &[&str]) {
    let out = bin().current_dir(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "citycard {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test city in `dir`: `library.cred`, `liege.bundle`, and Alex's card in
/// `alex.card` (taken off the emulated reader's directory).
fn city(dir: &Path) {
    ok(
        dir,
        &[
            "issuer",
            "init",
            "--dir",
            "city",
            "--city",
            "Liège",
            "--issuer-id",
            "LIEGE",
            "--card-prefix",
            "LG",
        ],
    );
    ok(
        dir,
        &[
            "station",
            "add",
            "desk-1",
            "--dir",
            "city",
            "--valid-days",
            "180",
        ],
    );
    ok(dir, &["preparer", "add", "prep-1", "--dir", "city"]);
    ok(
        dir,
        &[
            "partner",
            "enrol",
            "library",
            "--dir",
            "city",
            "--attributes",
            "pseudonym,resident,name,age_over_18",
            "--valid-days",
            "365",
            "--out",
            "library.cred",
        ],
    );
    ok(
        dir,
        &["trust", "export", "--dir", "city", "--out", "liege.bundle"],
    );
    std::fs::write(
        dir.join("alex.json"),
        r#"{"resident_id": "F-0001", "name": "Alex Moreau", "birth_date": "1958-03-14", "address": "Rue Léopold 12, 4000 Liège", "language": "fr"}"#,
    )
    .unwrap();
    ok(
        dir,
        &[
            "personalise",
            "--dir",
            "city",
            "--station",
            "desk-1",
            "--reader",
            "emulated:cards",
            "--prepare-with",
            "prep-1",
            "--resident",
            "alex.json",
        ],
    );
    std::fs::rename(dir.join("cards/card-000001.state"), dir.join("alex.card")).unwrap();
}

/// `citycard ARGS` in `dir`: its exit code and the one JSON document it
/// printed, checked against `schema`.
fn one_json(dir: &Path, args: &[&str], schema: Schema) -> (i32, Value) {
    let out = bin().current_dir(dir).args(args).output().unwrap();
    let doc = assert_valid_text(schema, String::from_utf8(out.stdout).unwrap().trim());
    (out.status.code().unwrap(), doc)
}

/// Revokes Alex's card (`reason`) and publishes: the new bundle replaces
/// `liege.bundle` in one rename, as a city's publication would reach a partner.
fn revoke_alex_and_publish(dir: &Path, reason: &str) {
    ok(
        dir,
        &["revoke", "LG-000001", "--dir", "city", "--reason", reason],
    );
    ok(
        dir,
        &[
            "revocation",
            "publish",
            "--dir",
            "city",
            "--next-update-days",
            "7",
            "--out",
            "new.bundle",
        ],
    );
    std::fs::rename(dir.join("new.bundle"), dir.join("liege.bundle")).unwrap();
}

/// A temporary directory holding [`city`].
fn test_city() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    city(tmp.path());
    tmp
}

fn verify_json(dir: &Path, reader: &str, extra: &[&str]) -> (Value, i32) {
    let mut args = vec![
        "verify",
        "--reader",
        reader,
        "--trust",
        "liege.bundle",
        "--credential",
        "library.cred",
        "--json",
        "--wait",
        "1",
    ];
    args.extend_from_slice(extra);
    let out = bin().current_dir(dir).args(&args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object on stdout: {stdout:?}");
    let doc = assert_valid_text(Schema::Verify, lines[0]);
    let code = out.status.code().unwrap();
    assert_eq!(doc["code"], code, "exit code = JSON code");
    (doc, code)
}

#[test]
fn verify_on_the_emulated_card_and_every_error_as_json() {
    let tmp = test_city();
    let dir = tmp.path();
    let (doc, code) = verify_json(dir, "emulated:alex.card", &[]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["verdict"], "genuine");
    assert_eq!(doc["profile"], "citycard");
    assert_eq!(doc["attributes"]["name"], "Alex Moreau");
    assert_eq!(doc["attributes"]["age_over_18"], true);
    assert_eq!(doc["reader"], "emulated:alex.card");
    assert!(doc.get("birth_date").is_none() && doc["attributes"].get("birth_date").is_none());
    // Asking for more than the grants: refused, with what was not granted.
    let (doc, code) = verify_json(dir, "emulated:alex.card", &["--attributes", "birth_date"]);
    assert_eq!((code, &doc["verdict"]), (14, &json!("unauthorised")));
    assert_eq!(doc["not_granted"], json!(["birth_date"]));
    // No card on the reader.
    let (doc, code) = verify_json(dir, "emulated:nothing-here.card", &[]);
    assert_eq!((code, &doc["error"]), (1, &json!("no_card")));
    // A bundle that is not one.
    let (code, doc) = one_json(
        dir,
        &[
            "verify",
            "--reader",
            "emulated:alex.card",
            "--trust",
            "alex.json",
            "--credential",
            "library.cred",
            "--json",
        ],
        Schema::Verify,
    );
    assert_eq!((code, &doc["error"]), (3, &json!("trust_unusable")));
    // A root that is not the pinned one.
    let (doc, code) = verify_json(
        dir,
        "emulated:alex.card",
        &["--root-fingerprint", &"00".repeat(32)],
    );
    assert_eq!((code, &doc["error"]), (3, &json!("trust_unusable")));
    // Usage errors while parsing options: JSON too.
    let (doc, code) = verify_json(dir, "emulated:alex.card", &["--attributes", "nationality"]);
    assert_eq!((code, &doc["error"]), (2, &json!("usage")));
    // Usage errors found by the argument parser: JSON too, exit 2.
    let (code, doc) = one_json(
        dir,
        &[
            "verify",
            "--reader",
            "emulated:alex.card",
            "--json",
            "--stale",
            "sometimes",
        ],
        Schema::Verify,
    );
    assert_eq!((code, &doc["error"]), (2, &json!("usage")));
    for service in ["watch", "serve"] {
        let (code, doc) = one_json(dir, &[service, "--heartbeat", "often"], Schema::TapEvent);
        assert_eq!(
            (code, &doc["event"], &doc["error"]),
            (2, &json!("fatal"), &json!("usage"))
        );
    }
    assert!(bin()
        .args(["verify", "--help"])
        .output()
        .unwrap()
        .status
        .success());
    // Revoked after a new bundle.
    revoke_alex_and_publish(dir, "lost");
    let (doc, code) = verify_json(dir, "emulated:alex.card", &[]);
    assert_eq!((code, &doc["verdict"]), (32, &json!("revoked")));
    assert!(doc.get("pseudonym").is_none() && doc.get("attributes").is_none());
}

/// Lines of a child's stream, as they come.
fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next event of `kind`, every line on the way checked against the schema.
fn next_event(rx: &mpsc::Receiver<String>, kind: &str, seen: &mut Vec<Value>) -> Value {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {kind} event; seen {seen:#?}"));
        let doc = assert_valid_text(Schema::TapEvent, &line);
        seen.push(doc.clone());
        if doc["event"] == kind {
            return doc;
        }
    }
}

fn terminate(child: &mut Child) -> i32 {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < end, "the service did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn watch_the_emulated_reader_every_event_json() {
    let tmp = test_city();
    let dir = tmp.path();
    let mut child = bin()
        .current_dir(dir)
        .args([
            "watch",
            "--reader",
            "emulated:desk.card",
            "--trust",
            "liege.bundle",
            "--credential",
            "library.cred",
            "--heartbeat",
            "1",
            "--stdout",
            "all",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(child.stdout.take().unwrap());
    let errors = lines_of(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    let started = next_event(&rx, "started", &mut seen);
    assert_eq!(seen.len(), 1, "started comes first");
    assert_eq!(started["partner"], "library");
    assert_eq!(started["readers"], json!(["emulated:desk.card"]));
    next_event(&rx, "reader_added", &mut seen);
    let beat = next_event(&rx, "heartbeat", &mut seen);
    assert_eq!(beat["readers"], json!(["emulated:desk.card"]));
    // Tap: the card arrives on the reader.
    std::fs::rename(dir.join("alex.card"), dir.join("desk.card")).unwrap();
    let tap = next_event(&rx, "tap", &mut seen);
    assert_eq!(tap["verdict"]["verdict"], "genuine");
    assert_eq!(tap["verdict"]["attributes"]["resident"], true);
    // Left on the reader: verified once; taken off and back: verified again.
    std::thread::sleep(Duration::from_millis(600));
    std::fs::rename(dir.join("desk.card"), dir.join("alex.card")).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    std::fs::rename(dir.join("alex.card"), dir.join("desk.card")).unwrap();
    next_event(&rx, "tap", &mut seen);
    assert_eq!(seen.iter().filter(|e| e["event"] == "tap").count(), 2);
    assert_eq!(terminate(&mut child), 0);
    let stopped = next_event(&rx, "stopped", &mut seen);
    assert_eq!(stopped["reason"], "signal");
    assert!(
        errors.try_iter().all(|l| l.is_empty()),
        "stderr stays empty with --stdout all"
    );
}

/// Runs a service to its end; its stderr lines (the non-tap events) and exit code.
fn run_to_end(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> (Vec<Value>, i32) {
    let mut cmd = bin();
    cmd.current_dir(dir).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("citycard {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut text = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let events = text
        .lines()
        .map(|l| assert_valid_text(Schema::TapEvent, l))
        .collect();
    (events, status.code().unwrap())
}

#[test]
fn watch_and_serve_exit_when_pcsc_is_unreachable() {
    let tmp = test_city();
    let dir = tmp.path();
    // pcsc-lite looks for pcscd's socket here: nothing listens.
    let env = [("PCSCLITE_CSOCK_NAME", "/nonexistent/pcscd.comm")];
    for service in [&["watch"][..], &["serve", "--listen", "127.0.0.1:0"][..]] {
        let mut args = service.to_vec();
        args.extend(["--trust", "liege.bundle", "--credential", "library.cred"]);
        let (events, code) = run_to_end(&args, dir, &env);
        assert_eq!(code, 1, "{events:#?}");
        assert_eq!(events.first().unwrap()["event"], "started");
        let last = events.last().unwrap();
        assert_eq!(
            (&last["event"], &last["error"]),
            (&json!("fatal"), &json!("pcsc_unavailable"))
        );
        assert_eq!(last["exit_code"], 1);
    }
    // An unusable bundle: exit 3 with a fatal event, nothing else.
    let (events, code) = run_to_end(
        &[
            "watch",
            "--trust",
            "alex.json",
            "--credential",
            "library.cred",
        ],
        dir,
        &[],
    );
    assert_eq!(code, 3);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["error"], "trust_unusable");
}

#[test]
fn watch_exits_5_when_a_named_reader_matches_nothing() {
    let tmp = test_city();
    let dir = tmp.path();
    let (events, code) = run_to_end(
        &[
            "watch",
            "--readers",
            "No Such Reader 42",
            "--reader-wait",
            "1",
            "--trust",
            "liege.bundle",
            "--credential",
            "library.cred",
        ],
        dir,
        &[],
    );
    if events.iter().any(|e| e["error"] == "pcsc_unavailable") {
        panic!("this test needs pcscd (tools/testbench start): {events:#?}");
    }
    assert_eq!(code, 5, "{events:#?}");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["started", "warning", "fatal"]);
    assert_eq!(events[1]["warning"], "no_matching_reader");
    assert_eq!(events[2]["error"], "no_matching_reader");
}

/// A running `citycard serve` on the emulated reader `desk.card`.
struct Served {
    child: Child,
    events: mpsc::Receiver<String>,
    seen: Vec<Value>,
    url: String,
    port: u16,
}

impl Served {
    fn start(dir: &Path, allow: &[&str]) -> Self {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--reader",
            "emulated:desk.card",
            "--trust",
            "liege.bundle",
            "--credential",
            "library.cred",
        ];
        for a in allow {
            args.extend(["--allow-origin", a]);
        }
        let mut child = bin()
            .current_dir(dir)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let events = lines_of(child.stdout.take().unwrap());
        let mut seen = Vec::new();
        let started = next_event(&events, "started", &mut seen);
        assert_eq!(started["service"], "serve");
        let url = started["url"].as_str().unwrap().to_owned();
        let port = url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Self {
            child,
            events,
            seen,
            url,
            port,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.1 GET; the status line and headers (the body is not awaited: SSE never ends).
fn head(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text.to_lowercase())
}

#[test]
fn serve_refuses_origins_not_on_the_list() {
    let tmp = test_city();
    let dir = tmp.path();
    let served = Served::start(dir, &["https://desk.library.example"]);
    let p = served.port;
    // Not on the list: refused, for the event stream and the page.
    assert_eq!(
        head(p, "/events", &[("Origin", "https://evil.example")]).0,
        403
    );
    assert_eq!(head(p, "/", &[("Origin", "https://evil.example")]).0, 403);
    assert_eq!(head(p, "/events", &[("Origin", "null")]).0, 403);
    // A DNS-rebinding page: its own origin, but a Host that is not ours.
    assert_eq!(
        head(p, "/events", &[("Host", &format!("evil.example:{p}"))]).0,
        403
    );
    // On the list: the stream, with CORS for that origin only.
    let (status, headers) = head(p, "/events", &[("Origin", "https://desk.library.example")]);
    assert_eq!(status, 200);
    assert!(
        headers.contains("access-control-allow-origin: https://desk.library.example"),
        "{headers}"
    );
    assert!(
        headers.contains("content-type: text/event-stream"),
        "{headers}"
    );
    // The service's own page (no Origin on a same-origin GET).
    assert_eq!(head(p, "/", &[]).0, 200);
    assert_eq!(
        head(p, "/health", &[("Host", &format!("localhost:{p}"))]).0,
        200
    );
    // The credential is nowhere to be had.
    for path in ["/library.cred", "/credential", "/../library.cred"] {
        assert_eq!(head(p, path, &[]).0, 404, "{path}");
    }
}

/// The event stream as a page receives it: every `data:` payload of
/// `/events` is a tap event of `schemas/tap-event.v1.json`, from `started`
/// to the tap of a card.
#[test]
fn the_event_stream_carries_schema_valid_events() {
    let tmp = test_city();
    let dir = tmp.path();
    let served = Served::start(dir, &["https://desk.library.example"]);
    let agent = ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(30))
        .build();
    let response = agent
        .get(&format!("http://127.0.0.1:{}/events", served.port))
        .set("Origin", "https://desk.library.example")
        .call()
        .unwrap();
    assert_eq!(response.content_type(), "text/event-stream");
    let lines = lines_of(response.into_reader());
    let mut events = Vec::new();
    let mut next = |kind: &str| {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {kind} event on /events; got {events:#?}"));
            // SSE: `data:` lines carry the payload; comments (keep-alive),
            // `event:`/`id:` fields and blank separators do not.
            let Some(payload) = line.strip_prefix("data:") else {
                continue;
            };
            let doc = assert_valid_text(Schema::TapEvent, payload.trim_start());
            events.push(doc.clone());
            if doc["event"] == kind {
                return doc;
            }
        }
    };
    let started = next("started");
    assert_eq!(started["service"], "serve");
    std::fs::rename(dir.join("alex.card"), dir.join("desk.card")).unwrap();
    let tap = next("tap");
    assert_eq!(tap["verdict"]["verdict"], "genuine");
    assert_eq!(tap["verdict"]["attributes"]["name"], "Alex Moreau");
    assert_eq!(events.first().unwrap()["event"], "started");
}

// --- the desk page in headless Chromium -----------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver with one headless Chromium session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(language: &str) -> Self {
        let chromedriver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("chromedriver not installed (apt-get install chromium chromium-driver; tools/testbench install does it)");
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let end = Instant::now() + Duration::from_secs(20);
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < end, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            format!("--user-data-dir={}", profile.path().display()),
            format!("--lang={language}"),
        ])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args,
                                   "prefs": {"intl.accept_languages": language}}}}});
        let resp: Value = ureq::post(&format!("{base}/session"))
            .send_json(caps)
            .unwrap_or_else(|e| panic!("new session: {e}"))
            .into_json()
            .unwrap();
        let session = resp["value"]["sessionId"].as_str().unwrap().to_owned();
        Self {
            driver,
            base,
            session,
            _profile: profile,
        }
    }

    fn cmd(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let v: Value = ureq::post(&url)
            .send_json(body)
            .unwrap()
            .into_json()
            .unwrap();
        v["value"].clone()
    }

    fn open(&self, url: &str) {
        self.cmd("url", json!({"url": url}));
    }

    /// What the page shows.
    fn page(&self) -> Value {
        self.cmd("execute/sync", json!({"script": r#"
            const attrs = {};
            for (const dd of document.querySelectorAll('#attributes dd')) attrs[dd.dataset.attribute] = dd.textContent;
            return { lang: document.documentElement.lang,
                     status: document.getElementById('status').dataset.state,
                     status_text: document.getElementById('status').textContent,
                     verdict: document.getElementById('result').dataset.verdict,
                     class: document.getElementById('result').className,
                     title: document.getElementById('result-title').textContent,
                     reason: document.getElementById('reason').textContent,
                     partner: document.getElementById('partner').textContent,
                     pseudonym: document.getElementById('pseudonym').textContent,
                     attributes: attrs };"#, "args": []}))
    }

    fn wait_for(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let page = self.page();
            if ok(&page) {
                return page;
            }
            assert!(Instant::now() < end, "page never showed {what}: {page:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn desk_page_in_headless_chromium_shows_the_tap_in_the_browser_language() {
    let tmp = test_city();
    let dir = tmp.path();
    let mut served = Served::start(dir, &[]);
    let browser = Browser::start("fr-BE");
    browser.open(&served.url);
    let page = browser.wait_for("ready", |p| {
        p["status"] == "ready" && p["partner"] == "library"
    });
    assert_eq!(page["lang"], "fr");
    assert_eq!(
        page["status_text"],
        "Prêt : posez une carte sur le lecteur."
    );

    // Tap Alex's card on the emulated reader.
    std::fs::rename(dir.join("alex.card"), dir.join("desk.card")).unwrap();
    let tap = next_event(&served.events, "tap", &mut served.seen);
    let page = browser.wait_for("the verdict", |p| p["verdict"] == "genuine");
    assert_eq!(page["class"], "genuine");
    assert_eq!(page["title"], "Carte authentique");
    assert_eq!(page["attributes"]["name"], "Alex Moreau");
    assert_eq!(page["attributes"]["resident"], "oui");
    assert_eq!(page["attributes"]["age_over_18"], "oui");
    assert_eq!(page["pseudonym"], tap["verdict"]["pseudonym"]);
    assert_eq!(page["pseudonym"].as_str().unwrap().len(), 32);

    // Revoke the card; the service reloads the new bundle; the next tap is refused.
    std::fs::rename(dir.join("desk.card"), dir.join("alex.card")).unwrap();
    revoke_alex_and_publish(dir, "stolen");
    next_event(&served.events, "trust_reloaded", &mut served.seen);
    std::fs::rename(dir.join("alex.card"), dir.join("desk.card")).unwrap();
    let page = browser.wait_for("the refusal", |p| p["verdict"] == "revoked");
    assert_eq!(page["class"], "refused");
    assert_eq!(page["title"], "Refusée");
    assert_eq!(page["reason"], "Cette carte a été révoquée.");
    assert_eq!(page["attributes"], json!({}));
    assert_eq!(page["pseudonym"], "");
}

#[test]
fn desk_page_speaks_dutch_german_and_english() {
    let tmp = test_city();
    let dir = tmp.path();
    let served = Served::start(dir, &[]);
    for (language, lang, ready) in [
        ("nl-BE", "nl", "Klaar: houd een kaart tegen de lezer."),
        ("de-DE", "de", "Bereit: Karte an das Lesegerät halten."),
        ("ja-JP", "en", "Ready: tap a card on the reader."),
    ] {
        let browser = Browser::start(language);
        browser.open(&served.url);
        let page = browser.wait_for("ready", |p| p["status"] == "ready");
        assert_eq!(
            (page["lang"].as_str(), page["status_text"].as_str()),
            (Some(lang), Some(ready))
        );
    }
}

// --- the C ABI ---------------------------------------------------------------

#[test]
fn the_c_example_verifies_through_the_c_abi() {
    let tmp = test_city();
    let dir = tmp.path();
    // libcitycard.so is built next to this test (citycard-capi is a dev-dependency).
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        deps.join("libcitycard.so").exists(),
        "no libcitycard.so in {}",
        deps.display()
    );
    let capi = Path::new(env!("CARGO_MANIFEST_DIR")).join("../citycard-capi");
    let exe = dir.join("verify");
    let cc = Command::new("cc")
        .arg(capi.join("examples/verify.c"))
        .arg("-I")
        .arg(capi.join("include"))
        .arg("-L")
        .arg(&deps)
        .arg(format!("-Wl,-rpath,{}", deps.display()))
        .args(["-lcitycard", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let run = |args: &[&str]| {
        let out = Command::new(&exe)
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let doc = assert_valid_text(Schema::Verify, text.trim());
        assert_eq!(
            doc["code"],
            out.status.code().unwrap(),
            "exit = code: {doc}"
        );
        doc
    };
    let doc = run(&["emulated:alex.card", "liege.bundle", "library.cred"]);
    assert_eq!(doc["verdict"], "genuine", "{doc}");
    assert_eq!(doc["attributes"]["name"], "Alex Moreau");
    let doc = run(&[
        "emulated:alex.card",
        "liege.bundle",
        "library.cred",
        r#"{"attributes":["resident"]}"#,
    ]);
    assert_eq!(doc["attributes"], json!({"resident": true}));
    assert!(doc.get("pseudonym").is_none());
    let doc = run(&[
        "emulated:alex.card",
        "liege.bundle",
        "library.cred",
        r#"{"attributes":["birth_date"]}"#,
    ]);
    assert_eq!(doc["verdict"], "unauthorised");
    let doc = run(&[
        "emulated:gone.card",
        "liege.bundle",
        "library.cred",
        r#"{"wait_secs":0}"#,
    ]);
    assert_eq!(doc["error"], "no_card");
    let doc = run(&["emulated:alex.card", "alex.json", "library.cred"]);
    assert_eq!(
        (&doc["error"], &doc["code"]),
        (&json!("trust_unusable"), &json!(3))
    );
    for bad in [r#"[1]"#, r#"{"wait":1}"#, r#"{"reader":"x"}"#, "not json"] {
        let doc = run(&["emulated:alex.card", "liege.bundle", "library.cred", bad]);
        assert_eq!(
            (&doc["error"], &doc["code"]),
            (&json!("usage"), &json!(2)),
            "{bad}"
        );
    }
}

// --- the README's partner section, as written --------------------------------

#[test]
fn the_readme_partner_section_runs_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let start = readme
        .find("<!-- partner-try-it")
        .expect("partner-try-it marker in README.md");
    let block = &readme[start..];
    let block = &block[block.find("```sh\n").unwrap() + 6..];
    let script = &block[..block.find("```").unwrap()];
    let tmp = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_citycard")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(tmp.path())
        .env("PATH", path)
        .env_remove("CITYCARD_PASSPHRASE")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap();
    let doc = assert_valid_text(Schema::Verify, last);
    assert_eq!(
        (&doc["verdict"], &doc["code"]),
        (&json!("genuine"), &json!(0))
    );
    assert_eq!(
        doc["attributes"],
        json!({"age_over_65": true, "resident": true})
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the try-it sequence is quick"
    );
}

/// A one-page web server on its own port (another origin than the service):
/// the page subscribes to `events_url` and writes what happens into the DOM.
fn other_origin_page(events_url: &str) -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let page = format!(
        r#"<!doctype html><html><body><p id="state">connecting</p><p id="first"></p><script>
const s = new EventSource("{events_url}");
s.onmessage = (m) => {{ document.getElementById("first").textContent = JSON.parse(m.data).event;
                        document.getElementById("state").textContent = "open"; }};
s.onerror = () => {{ if (document.getElementById("state").textContent !== "open")
                        document.getElementById("state").textContent = "refused"; s.close(); }};
</script></body></html>"#
    );
    let handle = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        // Serves the page to the few requests a test makes (page, favicon).
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (origin, handle)
}

#[test]
fn in_the_browser_only_allowed_origins_receive_events() {
    let tmp = test_city();
    let dir = tmp.path();
    // The service's events URL, and two pages on other origins.
    let port = free_port();
    let events_url = format!("http://127.0.0.1:{port}/events");
    let (allowed, _a) = other_origin_page(&events_url);
    let (refused, _r) = other_origin_page(&events_url);
    let mut args = vec!["serve", "--listen"];
    let listen = format!("127.0.0.1:{port}");
    args.push(&listen);
    args.extend([
        "--reader",
        "emulated:desk.card",
        "--trust",
        "liege.bundle",
        "--credential",
        "library.cred",
        "--allow-origin",
        &allowed,
    ]);
    let mut child = bin()
        .current_dir(dir)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let events = lines_of(child.stdout.take().unwrap());
    next_event(&events, "started", &mut Vec::new());
    let browser = Browser::start("en-GB");
    let state = |b: &Browser| {
        b.cmd("execute/sync", json!({"script": "return [document.getElementById('state').textContent, document.getElementById('first').textContent];", "args": []}))
    };
    let wait = |b: &Browser, want: &str| {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let s = state(b);
            if s[0] == want {
                return s;
            }
            assert!(Instant::now() < end, "page state {s} never became {want}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    browser.open(&format!("{allowed}/"));
    let s = wait(&browser, "open");
    assert_eq!(s[1], "started", "the allowed page gets the events");
    browser.open(&format!("{refused}/"));
    let s = wait(&browser, "refused");
    assert_eq!(s[1], "", "the other page gets nothing");
    let _ = child.kill();
    let _ = child.wait();
}
