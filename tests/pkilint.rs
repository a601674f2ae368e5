//! Every certificate of every fixture through a standard linter: DigiCert's pkilint (PyPI `pkilint`, installed by
//! `cargo xtask test`), the RFC 5280 validators of its `lint_pkix_cert`, at severity WARNING and above.
//!
//! One finding is expected and allowed, exactly: `pkix.invalid_domain_name_syntax` for a DNS name of one label.
//! Kubernetes needs such names in SANs (`kubernetes`, `localhost`, node names such as `cp-1`), and pkilint takes
//! every dNSName for a fully qualified domain name. Anything else, `pkix.key_usage_value_prohibited_for_ec`
//! (keyEncipherment on an EC key, RFC 8813 §3) included, fails the test.
//!
//! The certificates are linted by pkilint's own validators in one Python process (the same container
//! `lint_pkix_cert lint` builds), since starting the command once per certificate would take minutes.

mod support;

use std::fs;
use std::process::Command;

/// Lints each PEM file given; prints `file<TAB>severity<TAB>code<TAB>message` per finding at WARNING or above and
/// `file<TAB>ok` for a clean one.
const DRIVER: &str = r#"
import sys
from pkilint import loader
from pkilint.pkix import certificate, name, extension
from pkilint.validation import ValidationFindingSeverity

validator = certificate.create_pkix_certificate_validator_container(
    certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
    [
        certificate.create_issuer_validator_container([]),
        certificate.create_validity_validator_container(),
        certificate.create_subject_validator_container([]),
        certificate.create_extensions_validator_container([]),
        certificate.create_spki_validator_container([]),
    ],
)
cert_loader = loader.RFC5280CertificateDocumentLoader()
for path in sys.argv[1:]:
    with open(path) as f:
        cert = cert_loader.load_pem_document(f.read(), path)
    findings = [
        (d.finding.severity.name, d.finding.code, d.message or "")
        for r in validator.validate(cert.root)
        for d in r.finding_descriptions
        if d.finding.severity <= ValidationFindingSeverity.WARNING
    ]
    for s, c, m in findings:
        print(f"{path}\t{s}\t{c}\t{m}")
    if not findings:
        print(f"{path}\tok")
"#;

const FIXTURES: [&str; 9] =
    ["demo", "rsa-v1.33", "ipv6", "ha-3cp", "ha-5cp", "external-etcd", "external-etcd-ca", "dual-stack", "edge-v1.35"];

/// Whether `message` is pkilint's "Invalid domain name syntax" for a name of a single label.
fn single_label(message: &str) -> bool {
    let name = message.rsplit(':').next().unwrap_or("").trim().trim_matches('"');
    !name.is_empty() && !name.contains('.') && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[test]
fn every_certificate_passes_pkilint() {
    let tmp = support::temp_dir("pkilint");
    let mut files = Vec::new();
    for fixture in FIXTURES {
        for (path, e) in support::generate_fixture(fixture).tree.files {
            if path.starts_with("pki/") && path.ends_with(".crt") {
                let f = tmp.join(format!("{fixture}__{}", path.replace('/', "_")));
                fs::write(&f, &e.bytes).unwrap();
                files.push(f);
            }
        }
    }
    assert!(files.len() > 150, "only {} certificates: the test would say little", files.len());
    let mut cmd = Command::new(support::tool("KUBEFORGE_PYTHON"));
    cmd.arg("-c").arg(DRIVER).args(&files);
    let out = support::run(&mut cmd);
    let text = support::stdout(&out);
    let mut problems = Vec::new();
    let mut allowed = 0;
    for f in &files {
        let shown = f.display().to_string();
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&format!("{shown}\t"))).collect();
        assert!(!lines.is_empty(), "{shown} was not linted:\n{text}");
        for l in lines {
            let cols: Vec<&str> = l.split('\t').collect();
            match cols.as_slice() {
                [_, "ok"] => {}
                [_, _, "pkix.invalid_domain_name_syntax", m] if single_label(m) => allowed += 1,
                _ => problems.push(l.to_string()),
            }
        }
    }
    assert!(problems.is_empty(), "pkilint findings:\n{}", problems.join("\n"));
    assert!(allowed > 0, "no single-label SAN was reported: is pkilint still checking dNSNames?");
}

/// The negative control: pkilint does flag keyEncipherment on an EC key (what kubeadm writes), so the test above
/// would see it.
#[test]
fn pkilint_flags_key_encipherment_on_an_ec_key() {
    let tmp = support::temp_dir("pkilint-control");
    let openssl = support::tool("KUBEFORGE_OPENSSL");
    let run = |args: &[&str]| support::run(Command::new(&openssl).current_dir(tmp.path()).args(args));
    run(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k.pem"]);
    fs::write(
        tmp.join("ext"),
        "keyUsage=critical,digitalSignature,keyEncipherment\nsubjectAltName=DNS:a.example.com\n",
    )
    .unwrap();
    run(&["req", "-new", "-key", "k.pem", "-subj", "/CN=x", "-out", "x.csr"]);
    run(&["x509", "-req", "-in", "x.csr", "-key", "k.pem", "-days", "30", "-extfile", "ext", "-out", "x.pem"]);
    let mut cmd = Command::new(support::tool("KUBEFORGE_PYTHON"));
    cmd.arg("-c").arg(DRIVER).arg(tmp.join("x.pem"));
    let text = support::stdout(&support::run(&mut cmd));
    assert!(text.contains("pkix.key_usage_value_prohibited_for_ec"), "{text}");
}
