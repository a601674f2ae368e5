//! The machine-readable side of the command line: every report `--format json` prints validates against
//! `schema/report.schema.json`, says what the text says, and the schema rejects what it must.

mod support;

use serde_json::{Value, json};
use support::Cluster;

/// `kubeforge ARGS... --format json`: the report, checked against the schema, and the exit code.
fn json(args: &[&str]) -> (Value, u8) {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    let o = support::kubeforge(&a);
    assert!(o.code <= 2, "{args:?}: {o:?}");
    let v: Value = serde_json::from_str(&o.text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}):\n{}", o.text));
    let errors = support::schema_errors("report.schema.json", &v);
    assert!(errors.is_empty(), "{args:?}: the report does not validate against schema/report.schema.json: {errors:#?}");
    (v, o.code)
}

fn ids(v: &Value, action: &str) -> Vec<String> {
    v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == action)
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_report_validates_and_says_what_the_run_did() {
    let c = Cluster::new("reports", kubeforge::DEMO_SPEC);
    let (spec, out) = (c.spec.to_str().unwrap(), c.out.to_str().unwrap());
    let base = ["--spec", spec, "--out", out, "--seed", "9", "--now", support::NOW];

    let (first, code) = json(&[&["gen"][..], &base].concat());
    assert_eq!(code, 0);
    assert_eq!(
        (first["kind"].as_str(), first["command"].as_str(), first["applied"].as_bool()),
        (Some("RunReport"), Some("gen"), Some(true))
    );
    assert_eq!(ids(&first, "issue").len(), 20);
    assert_eq!(first["rotations"], json!([]), "no rotation outside pki.rotation");
    assert_eq!(
        first["cas"],
        json!([{"id": "ca", "origin": "created"}, {"id": "etcd-ca", "origin": "created"}, {"id": "front-proxy-ca", "origin": "created"}])
    );
    assert!(
        first["files"]["write"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "nodes/cp-1/etc/kubernetes/manifests/etcd.yaml")
    );

    let (again, code) = json(&[&["plan"][..], &base].concat());
    assert_eq!(code, 0, "plan exits 0 when there is nothing to do");
    assert_eq!(ids(&again, "keep").len(), 20);
    assert_eq!(again["files"]["write"], json!([]));
    assert_eq!(again["applied"], false);

    c.edit("certSANs: []", "certSANs: [10.0.0.5]");
    let (plan, code) = json(&[&["plan"][..], &base].concat());
    assert_eq!(code, 2, "plan exits 2 when gen would change something");
    let line = plan["certificates"].as_array().unwrap().iter().find(|l| l["action"] == "reissue").unwrap();
    assert_eq!(
        line,
        &json!({"id": "nodes/cp-1/apiserver", "profile": "apiserver", "node": "cp-1", "action": "reissue", "reasons": ["SAN added: IP:10.0.0.5"]})
    );
    let (dry, code) = json(&[&["gen", "--dry-run"][..], &base].concat());
    assert_eq!((code, dry["applied"].as_bool()), (2, Some(false)));
    assert_eq!(dry["certificates"], plan["certificates"]);

    let (renewed, _) = json(&[&["renew", "kube-proxy"][..], &base].concat());
    assert_eq!(
        ids(&renewed, "reissue"),
        ["nodes/cp-1/apiserver", "nodes/cp-1/kube-proxy", "nodes/worker-1/kube-proxy", "nodes/worker-2/kube-proxy"]
    );

    let (check, code) = json(&["check", "--out", out, "--now", "2026-12-15T00:00:00Z", "--within", "30d"]);
    assert_eq!(code, 1, "check exits 1 when something expires within the window");
    assert_eq!((check["kind"].as_str(), check["withinSeconds"].as_i64()), (Some("CheckReport"), Some(30 * 86400)));
    assert_eq!(check["expiring"].as_u64(), Some(20), "every leaf, issued or renewed at NOW, expires 2027-01-01");
    let rows = check["certificates"].as_array().unwrap();
    assert_eq!(rows.len(), 23);
    assert!(rows.iter().filter(|r| r["isCa"] == true).all(|r| r["expiresWithinWindow"] == false));

    // A public-only plan: the committed half of OUT, without a single private key.
    let public = c.tmp.path().join("public");
    for (path, bytes) in c.tree().files() {
        let secret = path.ends_with(".key") || path.ends_with(".conf") || path.ends_with("encryption-config.yaml");
        if !secret {
            let p = public.join(&path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
    }
    let (p, code) = json(&["plan", "--spec", spec, "--out", public.to_str().unwrap(), "--now", support::NOW]);
    assert_eq!((code, p["publicOnly"].as_bool(), &p["files"]), (0, Some(true), &Value::Null));
    assert_eq!(ids(&p, "keep").len(), 20);
}

#[test]
fn a_csr_report_validates() {
    let c = Cluster::new("reports-csr", kubeforge::DEMO_SPEC);
    let (r, code) = json(&["csr", "--spec", c.spec.to_str().unwrap(), "--out", c.out.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert_eq!((r["kind"].as_str(), r["requests"].as_array().map(Vec::len)), (Some("CsrReport"), Some(0)), "{r}");
}

#[test]
fn the_report_schema_rejects_what_it_must() {
    let c = Cluster::new("reports-neg", kubeforge::DEMO_SPEC);
    let (r, _) = json(&["gen", "--spec", c.spec.to_str().unwrap(), "--out", c.out.to_str().unwrap()]);
    type Tamper = fn(&mut Value);
    let cases: [(&str, Tamper, &str, &str); 7] = [
        (
            "unknown action",
            |v| v["certificates"][0]["action"] = json!("rotate"),
            "/certificates/0/action",
            "is not one of",
        ),
        ("extra field", |v| v["key"] = json!("-----BEGIN EC PRIVATE KEY-----"), "", "'key' was unexpected"),
        ("bad store id", |v| v["certificates"][0]["id"] = json!("../ca"), "/certificates/0/id", "does not match"),
        ("wrong kind", |v| v["kind"] = json!("Plan"), "/kind", "was expected"),
        (
            "unknown rotation stage",
            |v| v["rotations"] = json!([{"name": "ca", "stage": "rotate", "entering": true}]),
            "/rotations/0/stage",
            "is not one of",
        ),
        ("files not an object", |v| v["files"] = json!([]), "/files", "is not of type"),
        (
            "missing cas",
            |v| {
                v.as_object_mut().unwrap().remove("cas");
            },
            "",
            "\"cas\" is a required property",
        ),
    ];
    for (name, tamper, at, msg) in cases {
        let mut v = r.clone();
        tamper(&mut v);
        let errors = support::schema_errors("report.schema.json", &v);
        assert!(
            errors.iter().any(|(p, m)| p == at && m.contains(msg)),
            "{name}: expected {msg:?} at {at:?}: {errors:#?}"
        );
    }
}
