//! What monitoring and people at a terminal see: `check --format prometheus --output FILE` read back by the
//! official Prometheus client's parser (PyPI `prometheus-client`, through `$KUBEFORGE_PYTHON`) and compared with the
//! certificates read independently; `--output` replacing the file atomically; and the progress bar of long runs,
//! on the real binary under a pseudo-terminal (util-linux `script`), absent without a terminal or with `--quiet`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use kubeforge::ops::report::{CHECK_METRIC, CheckReport, EXPIRY_METRIC, Expiry};
use serde_json::Value;
use support::Cluster;

/// When `check` runs in these tests: well inside every certificate's validity (issued at `support::NOW`).
const CHECK_AT: &str = "2026-03-01T12:00:00Z";

/// Parses `file` with `prometheus_client.parser.text_string_to_metric_families` and returns its families as JSON
/// (`name`, `type`, `documentation`, `samples` with `name`, `labels`, `value`, `timestamp`), or the parser's error.
fn parse(file: &Path) -> Result<Value, String> {
    const DRIVER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
with open(sys.argv[1], encoding="utf-8") as f:
    text = f.read()
families = []
for fam in text_string_to_metric_families(text):
    families.append({
        "name": fam.name, "type": fam.type, "documentation": fam.documentation,
        "samples": [{"name": s.name, "labels": s.labels, "value": s.value, "timestamp": s.timestamp}
                    for s in fam.samples],
    })
print(json.dumps(families))
"#;
    let mut cmd = Command::new(support::tool("KUBEFORGE_PYTHON"));
    cmd.arg("-c").arg(DRIVER).arg(file);
    let out = support::output(&mut cmd);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the driver printed no JSON ({e}){}", support::show(&out))))
}

/// Prometheus's rule for metric names (`[a-zA-Z_:][a-zA-Z0-9_:]*`) and, with `label`, for label names
/// (`[a-zA-Z_][a-zA-Z0-9_]*`, and `__` is reserved).
fn valid_name(s: &str, label: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (!label && c == ':') || (!first && c.is_ascii_digit())
    };
    let mut chars = s.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false)) && !(label && s.starts_with("__"))
}

/// A certificate as read from its file with x509-parser, not through kubeforge.
#[derive(Debug, PartialEq)]
struct Truth {
    not_after: i64,
    is_ca: bool,
    /// The issuer as x509-parser prints it (`C=DE, O=Example Corp, CN=example-etcd-ca`).
    issuer: String,
}

fn read_cert(path: &Path) -> Truth {
    let pem = fs::read(path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cert = pem.parse_x509().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Truth {
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.basic_constraints().unwrap().is_some_and(|b| b.value.ca),
        issuer: cert.issuer().to_string(),
    }
}

/// Every certificate file under `dir` by its id (the path below `dir` without `.crt`).
fn certificates_under(dir: &Path, base: &Path, found: &mut BTreeMap<String, Truth>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            certificates_under(&p, base, found);
        } else if p.extension().is_some_and(|x| x == "crt") {
            let id = p.strip_prefix(base).unwrap().with_extension("").to_str().unwrap().to_string();
            found.insert(id, read_cert(&p));
        }
    }
}

/// Generates `fixtures/<fixture>.yaml` with the seed and clock of the test kit, runs `check --format prometheus
/// --output FILE` at [`CHECK_AT`] through the command line, parses FILE with the official parser and checks it
/// against the store read independently and against `kubeforge::ops::check`; returns the samples.
fn round_trip(fixture: &str, extra: &[(&str, PathBuf)]) -> Vec<Value> {
    let c = Cluster::new(&format!("monitoring-{fixture}"), &support::fixture(fixture));
    // The fixture's relative paths (a CA's files) are relative to the spec: keep the spec where it was.
    let spec = support::fixture_path(fixture);
    let (spec, out) = (spec.to_str().unwrap(), c.out.to_str().unwrap());
    let seed = support::SEED.to_string();
    let o = support::kubeforge(&["gen", "--spec", spec, "--out", out, "--seed", &seed, "--now", support::NOW]);
    assert_eq!(o.code, 0, "{}", o.text);

    let file = c.tmp.join("textfile").join("kubeforge.prom");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    let file_s = file.to_str().unwrap();
    let o =
        support::kubeforge(&["check", "--out", out, "--now", CHECK_AT, "--format", "prometheus", "--output", file_s]);
    assert_eq!((o.code, o.text.as_str()), (0, ""), "check --output prints nothing and exits 0 when nothing expires");
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.ends_with('\n') && !text.ends_with("\n\n"), "one final newline, as the textfile collector wants");
    assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o7777, 0o644);
    // Without --output, the same text on stdout.
    let o = support::kubeforge(&["check", "--out", out, "--now", CHECK_AT, "--format", "prometheus"]);
    assert_eq!(format!("{}\n", o.text), text, "stdout and --output differ");

    let families = parse(&file).unwrap_or_else(|e| panic!("the official parser rejects the output: {e}\n{text}"));
    let families = families.as_array().unwrap();
    let names: Vec<&str> = families.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, [EXPIRY_METRIC, CHECK_METRIC], "one family each, in this order");
    for f in families {
        let name = f["name"].as_str().unwrap();
        assert_eq!(f["type"], "gauge", "{name}: TYPE gauge");
        assert!(f["documentation"].as_str().unwrap().len() > 20, "{name}: a HELP line");
        assert!(text.contains(&format!("# HELP {name} ")) && text.contains(&format!("# TYPE {name} gauge\n")));
        assert!(valid_name(name, false), "{name}: not a valid metric name");
        // Naming conventions: the application's prefix, the base unit, `_timestamp_seconds` for a Unix time.
        assert!(name.starts_with("kubeforge_") && name.ends_with("_timestamp_seconds"), "{name}");
        for s in f["samples"].as_array().unwrap() {
            assert_eq!(s["name"], name, "a gauge's samples carry its name");
            assert!(s["timestamp"].is_null(), "no sample timestamps (the textfile collector refuses them): {s}");
            for label in s["labels"].as_object().unwrap().keys() {
                assert!(valid_name(label, true), "{label}: not a valid label name");
            }
        }
    }
    let check_at = kubeforge::parse_instant(CHECK_AT).unwrap().unix_timestamp();
    let ran = &families[1]["samples"].as_array().unwrap();
    assert_eq!((ran.len(), ran[0]["labels"].as_object().unwrap().len()), (1, 0), "{ran:?}");
    assert_eq!(ran[0]["value"].as_f64(), Some(check_at as f64), "{CHECK_METRIC} is when check ran (--now)");

    // Every certificate kubeforge keeps, read from its file without kubeforge, plus what the caller adds (CAs
    // installed but not kept in the store).
    let mut truth = BTreeMap::new();
    let store = c.out.join("pki");
    certificates_under(&store, &store, &mut truth);
    for (id, path) in extra {
        truth.insert(id.to_string(), read_cert(path));
    }
    assert!(truth.values().filter(|t| t.is_ca).count() >= 2 && truth.len() > 15, "too few to say much: {truth:?}");
    let report = kubeforge::ops::check(&c.out, kubeforge::parse_instant(CHECK_AT).unwrap(), 30 * 86400).unwrap();
    let rows: BTreeMap<&str, &Expiry> = report.certificates.iter().map(|r| (r.name.as_str(), r)).collect();
    assert_eq!(rows.len(), report.certificates.len());

    let samples = families[0]["samples"].as_array().unwrap().clone();
    let mut seen = BTreeSet::new();
    for s in &samples {
        let l = s["labels"].as_object().unwrap();
        let label = |k: &str| l.get(k).and_then(Value::as_str).unwrap_or_else(|| panic!("{k} missing: {s}"));
        assert_eq!(l.len(), 5, "certificate, profile, node, signer, is_ca: {s}");
        let id = label("certificate");
        assert!(seen.insert(id.to_string()), "{id} twice");
        let t = truth.get(id).unwrap_or_else(|| panic!("{id} is in the metrics but not a certificate of OUT"));
        assert_eq!(s["value"].as_f64(), Some(t.not_after as f64), "{id}: the value is its notAfter");
        assert_eq!(label("is_ca"), if t.is_ca { "true" } else { "false" }, "{id}");
        assert_eq!(label("signer").replace(" = ", "="), t.issuer, "{id}: the signer is its issuer");
        let (node, profile) = match id.strip_prefix("nodes/").and_then(|r| r.split_once('/')) {
            Some((node, profile)) => (node, profile),
            None => ("", id),
        };
        assert_eq!(label("node"), node, "{id}");
        let known = kubeforge::pki::profile::Profile::by_name(profile).is_some();
        assert_eq!(label("profile"), if known { profile } else { "" }, "{id}: the row of the certificate table");
        // And what `check` itself says of it.
        let r = rows[id];
        assert_eq!(
            (
                r.not_after_unix,
                r.is_ca,
                r.signer.as_str(),
                r.node.as_deref().unwrap_or(""),
                r.profile.as_deref().unwrap_or("")
            ),
            (t.not_after, t.is_ca, label("signer"), label("node"), label("profile")),
            "{id}: the metric and the check report disagree"
        );
    }
    let expected: BTreeSet<String> = truth.keys().cloned().collect();
    assert_eq!(seen, expected, "every certificate and CA exactly once");
    assert_eq!(seen.len(), rows.len());
    samples
}

#[test]
fn the_demo_round_trips_through_the_official_parser() {
    let samples = round_trip("demo", &[]);
    assert_eq!(samples.len(), 23, "20 leaves and 3 CAs");
    let one = |id: &str| samples.iter().find(|s| s["labels"]["certificate"] == id).unwrap()["labels"].clone();
    assert_eq!(
        one("nodes/worker-1/kubelet-serving"),
        serde_json::json!({"certificate": "nodes/worker-1/kubelet-serving", "profile": "kubelet-serving",
            "node": "worker-1", "signer": "CN = kubernetes", "is_ca": "false"})
    );
    assert_eq!(
        one("etcd-ca"),
        serde_json::json!({"certificate": "etcd-ca", "profile": "etcd-ca", "node": "", "signer": "CN = etcd-ca", "is_ca": "true"})
    );
    // Leaves first, then CAs, each by id: the order is the report's, so the file only changes when a value does.
    let ids: Vec<&str> = samples.iter().map(|s| s["labels"]["certificate"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|id| (["ca", "etcd-ca", "front-proxy-ca"].contains(id), *id));
    assert_eq!(ids, sorted);
}

/// An external etcd's client CA: installed on the control planes, not kept in the store, known from index.json;
/// it has no row of the certificate table, so its `profile` is empty.
#[test]
fn an_external_etcd_client_ca_is_there_with_an_empty_profile() {
    let ca = support::fixture_path("external-etcd-ca").with_file_name("external-etcd-ca").join("ca.crt");
    let samples = round_trip("external-etcd-ca", &[("external-etcd-ca", ca)]);
    let s = samples.iter().find(|s| s["labels"]["certificate"] == "external-etcd-ca").unwrap();
    assert_eq!((s["labels"]["profile"].as_str(), s["labels"]["is_ca"].as_str()), (Some(""), Some("true")));
}

/// Label values are escaped as the exposition format says (backslash, double quote, line feed): hostile values
/// come back from the official parser exactly as they went in.
#[test]
fn label_values_are_escaped_so_that_the_parser_gives_them_back() {
    let nasty =
        ["CN = a \"quoted\" CA", "O = back\\slash\\\\, CN = x\\n", "CN = two\nlines", "CN = ünïcödé ✓", "}{,=\\"];
    let report = CheckReport {
        api_version: "kubeforge/v1alpha1",
        kind: "CheckReport",
        now: CHECK_AT.into(),
        now_unix: 1_772_366_400,
        within_seconds: 0,
        expiring: 0,
        certificates: nasty
            .iter()
            .enumerate()
            .map(|(i, v)| Expiry {
                name: format!("nodes/n{i}/{v}"),
                profile: Some(v.to_string()),
                node: Some(v.to_string()),
                is_ca: i % 2 == 0,
                subject: String::new(),
                signer: v.to_string(),
                not_after: String::new(),
                not_after_unix: 2_000_000_000 + i as i64,
                residual_seconds: 0,
                expires_within_window: false,
            })
            .collect(),
    };
    let tmp = support::temp_dir("monitoring-escape");
    let file = tmp.join("nasty.prom");
    fs::write(&file, report.prometheus()).unwrap();
    let families = parse(&file).unwrap_or_else(|e| panic!("{e}\n{}", report.prometheus()));
    let samples = families[0]["samples"].as_array().unwrap();
    assert_eq!(samples.len(), nasty.len());
    for (i, (s, v)) in samples.iter().zip(nasty).enumerate() {
        let l = &s["labels"];
        assert_eq!(l["certificate"].as_str(), Some(format!("nodes/n{i}/{v}").as_str()));
        assert_eq!((l["profile"].as_str(), l["node"].as_str(), l["signer"].as_str()), (Some(v), Some(v), Some(v)));
        assert_eq!(s["value"].as_f64(), Some(2_000_000_000.0 + i as f64));
    }
    assert_eq!(report.prometheus().lines().count(), 4 + nasty.len() + 1, "no label value spills onto a new line");
}

/// The negative control: the parser the tests above rely on does reject malformed exposition text.
#[test]
fn the_parser_rejects_malformed_lines() {
    let tmp = support::temp_dir("monitoring-malformed");
    let good = format!(
        "# HELP {EXPIRY_METRIC} x\n# TYPE {EXPIRY_METRIC} gauge\n{EXPIRY_METRIC}{{certificate=\"admin\",signer=\"CN = kubernetes\"}} 1798761600\n"
    );
    let file = tmp.join("m.prom");
    fs::write(&file, &good).unwrap();
    assert!(parse(&file).is_ok(), "the well-formed control must parse");
    let cases = [
        ("an unescaped quote in a label value", good.replace("CN = kubernetes", "CN = \"kubernetes\"")),
        ("an unclosed label set", good.replace("\"} ", "\" ")),
        ("a value that is not a number", good.replace("1798761600", "2027-01-01T00:00:00Z")),
        ("a raw line feed in a label value", good.replace("CN = kubernetes", "CN =\nkubernetes")),
    ];
    for (what, text) in cases {
        fs::write(&file, &text).unwrap();
        assert!(parse(&file).is_err(), "{what}: the parser accepted\n{text}");
    }
}

/// `--output` writes a temporary file beside the target and renames it over it: the file is replaced (a new
/// inode, mode 0644 whatever it had), never rewritten in place, and nothing else is left in the directory. A
/// reader running alongside only ever sees a whole file. Exit status 1 (something expires) still writes the file.
#[test]
fn output_replaces_the_file_atomically() {
    let c = Cluster::new("monitoring-atomic", kubeforge::DEMO_SPEC);
    c.generate_seeded();
    let out = c.out.to_str().unwrap();
    let dir = c.tmp.join("textfile");
    fs::create_dir(&dir).unwrap();
    let file = dir.join("kubeforge.prom");
    fs::write(&file, "stale\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let before = fs::metadata(&file).unwrap().ino();
    let check = |now: &str, within: &str, format: &str| {
        support::kubeforge(&[
            "check",
            "--out",
            out,
            "--now",
            now,
            "--within",
            within,
            "--format",
            format,
            "--output",
            file.to_str().unwrap(),
        ])
    };
    let listing = || -> Vec<String> {
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    };

    assert_eq!(check(CHECK_AT, "30d", "prometheus").code, 0);
    let first = fs::read_to_string(&file).unwrap();
    let meta = fs::metadata(&file).unwrap();
    assert_ne!(meta.ino(), before, "replaced by a rename, not rewritten in place");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
    assert_eq!(listing(), ["kubeforge.prom"], "no temporary file left");

    // Again, at a time when every leaf expires within the window: exit 1, and the file is written all the same.
    let late = "2026-12-15T00:00:00Z";
    assert_eq!(check(late, "30d", "prometheus").code, 1);
    let second = fs::read_to_string(&file).unwrap();
    assert_ne!(second, first);
    let late_unix = kubeforge::parse_instant(late).unwrap().unix_timestamp();
    assert!(second.ends_with(&format!("\n{CHECK_METRIC} {late_unix}\n")), "{second}");
    assert_eq!(listing(), ["kubeforge.prom"], "no temporary file left");

    // Every format goes through the same writer.
    assert_eq!(check(CHECK_AT, "30d", "json").code, 0);
    let json: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(json["kind"], "CheckReport");
    assert_eq!(check(CHECK_AT, "30d", "text").code, 0);
    assert!(fs::read_to_string(&file).unwrap().starts_with("CERTIFICATE "));

    // A reader alongside a run of writers sees one whole file or another, never a part of one.
    let (a, b) = (check_text(out, CHECK_AT), check_text(out, late));
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || reads == 0 {
                let t = fs::read_to_string(&file).unwrap();
                assert!(t == a || t == b || t.starts_with("CERTIFICATE "), "a reader saw a partial file:\n{t}");
                reads += 1;
            }
            reads
        });
        for i in 0..40 {
            let (now, within) = if i % 2 == 0 { (CHECK_AT, "30d") } else { (late, "1d") };
            check(now, within, "prometheus");
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
    });
    assert_eq!(listing(), ["kubeforge.prom"], "no temporary file left");

    // Where the file cannot be written: an error, and nothing left behind.
    let o = support::kubeforge(&["check", "--out", out, "--format", "prometheus", "--output", dir.to_str().unwrap()]);
    assert!(o.code == 1 && o.text.contains("is a directory"), "{o:?}");
    let missing = dir.join("no-such-dir").join("kubeforge.prom");
    let o =
        support::kubeforge(&["check", "--out", out, "--format", "prometheus", "--output", missing.to_str().unwrap()]);
    assert!(o.code == 1 && o.text.contains("no-such-dir"), "{o:?}");
    assert_eq!(listing(), ["kubeforge.prom"]);
}

/// What `check --format prometheus` prints at `now` (the whole file's text).
fn check_text(out: &str, now: &str) -> String {
    let o = support::kubeforge(&["check", "--out", out, "--now", now, "--format", "prometheus"]);
    format!("{}\n", o.text)
}

/// `--format prometheus` belongs to `check` alone: the other commands refuse it as a usage error.
#[test]
fn only_check_takes_the_prometheus_format() {
    let c = Cluster::new("monitoring-usage", kubeforge::DEMO_SPEC);
    for cmd in ["gen", "plan", "renew"] {
        let mut args = vec![cmd];
        if cmd == "renew" {
            args.push("all");
        }
        args.extend(["--spec", c.spec.to_str().unwrap(), "--out", c.out.to_str().unwrap(), "--format", "prometheus"]);
        let o = support::kubeforge(&args);
        assert_eq!(o.code, 2, "{cmd}: {o:?}");
        assert!(
            o.text.contains("invalid value 'prometheus'") && o.text.contains("[possible values: text, json]"),
            "{o:?}"
        );
    }
    assert!(!c.out.exists(), "a usage error writes nothing");
}

// -------------------------------------------------------------------------------------------------------------
// Progress on long runs: the real binary under a pseudo-terminal.
// -------------------------------------------------------------------------------------------------------------

/// The demo on RSA-2048 with six more workers (9 nodes): 41 certificates to issue, a few seconds of key generation.
fn big_spec() -> String {
    let mut s = kubeforge::DEMO_SPEC.replace("keyAlgorithm: ECDSA-P256", "keyAlgorithm: RSA-2048");
    assert_ne!(s, kubeforge::DEMO_SPEC);
    for i in 3..=8 {
        s.push_str(&format!("  - name: worker-{i}\n    role: worker\n    address: 10.0.0.{}\n", 20 + i));
    }
    s
}

/// util-linux's `script`, which runs a command on a new pseudo-terminal; `None` (with a message) without it.
fn script() -> Option<PathBuf> {
    let found = Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "SKIPPED: util-linux `script` is not installed, so no pseudo-terminal can be had (apt-get install bsdutils)"
        );
    }
    found.then(|| PathBuf::from("script"))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Runs the kubeforge binary with `args` on a pseudo-terminal (stdout and stderr both on it); returns what the
/// terminal received and the exit status.
fn on_a_terminal(script: &Path, args: &[String]) -> (String, i32) {
    let line: Vec<String> =
        std::iter::once(env!("CARGO_BIN_EXE_kubeforge")).chain(args.iter().map(String::as_str)).map(quote).collect();
    let mut cmd = Command::new(script);
    cmd.args(["-qfec", &line.join(" "), "/dev/null"]).env("SHELL", "/bin/sh");
    let out = support::output(&mut cmd);
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code().unwrap_or(-1))
}

/// What indicatif writes before each new frame of the bar, and once more to clear it: carriage return, then
/// "erase the whole line".
const CLEAR_LINE: &str = "\r\x1b[2K";

/// A terminal's output for a panic message: its start, escaped.
fn shown(tty: &str) -> String {
    let cut: String = tty.chars().take(1500).collect();
    format!("{cut:?}{}", if cut.len() < tty.len() { " ..." } else { "" })
}
const BAR: &str = "issuing certificates [";

#[test]
fn a_long_run_on_a_terminal_shows_progress_and_clears_it() {
    let Some(script) = script() else { return };
    let c = Cluster::new("monitoring-progress", &big_spec());
    let seed = support::SEED.to_string();
    let args = |cmd: &[&str], out: &Path, extra: &[&str]| -> Vec<String> {
        let spec = c.spec.to_str().unwrap();
        let common = ["--spec", spec, "--out", out.to_str().unwrap(), "--seed", &seed, "--now", support::NOW];
        cmd.iter().chain(&common).chain(extra).map(|s| s.to_string()).collect()
    };
    let json = ["--format", "json"];

    // On a terminal: the bar, then the report.
    let (tty, code) = on_a_terminal(&script, &args(&["gen"], &c.out, &json));
    assert_eq!(code, 0, "{}", shown(&tty));
    let report_at =
        tty.rfind(CLEAR_LINE).unwrap_or_else(|| panic!("no bar, or it was never cleared:\n{}", shown(&tty)));
    let (bar, rest) = (&tty[..report_at], &tty[report_at + CLEAR_LINE.len()..]);
    let report: Value = serde_json::from_str(&rest.replace("\r\n", "\n"))
        .unwrap_or_else(|e| panic!("what follows the cleared bar is not exactly the report ({e}):\n{}", shown(rest)));
    assert!(!rest.contains('\x1b'), "{}", shown(rest));
    let created = report["cas"].as_array().unwrap().iter().filter(|c| c["origin"] == "created").count();
    let issued = report["certificates"].as_array().unwrap().iter().filter(|c| c["action"] == "issue").count();
    assert_eq!((created, issued), (3, 38), "3 CAs; 11 leaves of the control plane and 3 of each of the 9 nodes");
    let total = created + issued;
    // Drawn at once with the count, then redrawn in place: every later frame starts by clearing the line, and no
    // frame ends a line, so nothing of the bar scrolls into the terminal's history.
    let frames: Vec<&str> = bar.split(CLEAR_LINE).collect();
    assert!(frames[0].contains(&format!("] 0/{total} (")), "the first frame, before any certificate: {:?}", frames[0]);
    for f in &frames {
        assert!(f.starts_with(BAR) && f.trim_end().ends_with(" left)"), "not a frame of the bar: {f:?}");
        assert!(!f.contains('\n'), "a frame ends a line: {f:?}");
        let inside = &f[BAR.len()..f.find(']').unwrap()];
        assert!(inside.chars().count() == 25 && inside.chars().all(|ch| "=> ".contains(ch)), "the bar: {inside:?}");
        let count = f[BAR.len() + inside.len() + 2..].split(' ').next().unwrap();
        let (done, of) = count.split_once('/').unwrap_or_else(|| panic!("no count: {f:?}"));
        assert!(done.parse::<usize>().unwrap() <= total && of == total.to_string(), "{f:?}");
    }

    // The same command with stderr (and stdout) piped: not a byte of a bar.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubeforge"));
    cmd.args(args(&["gen"], &c.tmp.join("piped"), &json));
    let out = support::run(&mut cmd);
    assert!(out.stderr.is_empty(), "stderr is not a terminal: nothing on it{}", support::show(&out));
    let piped: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}{}", support::show(&out)));
    assert_eq!(piped["certificates"], report["certificates"], "the same run");

    // --quiet on a terminal: no bar either, only the report.
    let (tty, code) = on_a_terminal(&script, &args(&["gen"], &c.tmp.join("quiet"), &["--format", "json", "--quiet"]));
    assert_eq!(code, 0, "{}", shown(&tty));
    assert!(!tty.contains("issuing") && !tty.contains('\x1b'), "--quiet: {}", shown(&tty));
    let quiet: Value =
        serde_json::from_str(&tty.replace("\r\n", "\n")).unwrap_or_else(|e| panic!("{e}: {}", shown(&tty)));
    assert_eq!(quiet["certificates"], report["certificates"]);

    // Only what needs a key or a signature is counted: a rerun issues nothing (no bar at all); a renewal of one
    // profile counts its certificates, one per node.
    let (tty, code) = on_a_terminal(&script, &args(&["gen"], &c.out, &[]));
    assert_eq!(code, 0, "{}", shown(&tty));
    assert!(!tty.contains("issuing") && !tty.contains('\x1b'), "nothing to issue, no bar: {}", shown(&tty));
    assert!(tty.contains("nothing to do"), "{}", shown(&tty));
    let (tty, code) = on_a_terminal(&script, &args(&["renew", "kubelet-serving"], &c.out, &[]));
    assert_eq!(code, 0, "{}", shown(&tty));
    assert!(
        tty.starts_with(BAR) && tty.contains("] 0/9 ("),
        "9 nodes, 9 kubelet-serving certificates: {}",
        shown(&tty)
    );
    assert!(!tty.contains(&format!("/{total} (")), "{}", shown(&tty));
    let after = &tty[tty.rfind(CLEAR_LINE).unwrap() + CLEAR_LINE.len()..];
    assert!(after.starts_with("kubeforge: cluster \"demo\"") && !after.contains('\x1b'), "{after:?}");
}

/// The README's "Monitoring certificate expiry" says what `check` writes: its sample lines are lines of the real
/// output, its alerting rules are YAML that name only the metrics `check` writes, and its cron line is a command
/// line kubeforge accepts.
#[test]
fn the_readme_shows_what_check_writes() {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme.split("### Monitoring certificate expiry").nth(1).expect("the README section");
    let section = section.split("\n## ").next().unwrap();
    let blocks: Vec<&str> = section.split("```").skip(1).step_by(2).collect();
    assert_eq!(blocks.len(), 3, "the sample, the cron line, the rules");

    let c = Cluster::new("monitoring-readme", kubeforge::DEMO_SPEC);
    c.generate_seeded();
    let out = c.out.to_str().unwrap();
    let real = check_text(out, CHECK_AT);
    let real: BTreeSet<&str> = real.lines().collect();
    let sample: Vec<&str> = blocks[0].lines().skip(1).filter(|l| !l.is_empty() && *l != "...").collect();
    assert!(sample.len() >= 8, "{sample:?}");
    for line in sample {
        assert!(real.contains(line), "the README shows a line check does not write: {line}");
    }

    let cron = blocks[1].lines().find(|l| l.contains("cargo xtask check")).expect("the cron line");
    let args: Vec<String> = cron.split("cargo xtask ").nth(1).unwrap().split_whitespace().map(String::from).collect();
    match kubeforge::cli::parse_from("cargo xtask", &args) {
        Ok(kubeforge::cli::Command::Check { format, output: Some(file), .. }) => {
            assert_eq!(format, kubeforge::cli::CheckFormat::Prometheus);
            assert!(
                file.starts_with("/var/lib/node_exporter/textfile") && file.extension().is_some_and(|e| e == "prom")
            );
        }
        other => panic!("{cron}: {other:?}"),
    }

    let rules: serde_yaml::Value = serde_yaml::from_str(blocks[2].strip_prefix("yaml").unwrap()).unwrap();
    let rules = rules["groups"][0]["rules"].as_sequence().expect("groups[0].rules");
    let exprs: Vec<&str> = rules.iter().map(|r| r["expr"].as_str().expect("an expr")).collect();
    assert_eq!(exprs[0], format!("{EXPIRY_METRIC} - time() < 30 * 86400"), "expires within 30 days");
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("kubeforge_"))
        {
            assert!([EXPIRY_METRIC, CHECK_METRIC].contains(&word), "{e}: check writes no {word}");
        }
    }
    assert!(rules.iter().all(|r| r["alert"].as_str().is_some_and(|a| valid_name(a, false))));
}
