//! The verification record (`OUT/.kubeforge/verified`, src/pki/verified.rs): a rerun skips parsing and verifying a
//! leaf whose certificate, key and CA certificate hash to what an earlier run proved. Each input the record stands
//! for is tampered with here, with the record in place, and the rerun must notice exactly as a run without any
//! record does; tampering with the record itself must change nothing; an authentic record must be what the rerun
//! believes (so the shortcut is really taken); and files edited while runs go on must never be vouched for.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kubeforge::ops::Options;
use kubeforge::pki::verified::{self, Line, MacKey, Proven, Record};
use support::{Cluster, reissued};

const RECORD: &str = ".kubeforge/verified";

/// The demo cluster, generated seeded, with its record written.
fn demo(name: &str) -> Cluster {
    let c = Cluster::new(name, kubeforge::DEMO_SPEC);
    let r = c.generate_seeded();
    assert!(r.has_changes(), "{r}");
    let record = fs::read_to_string(c.out.join(RECORD)).expect("a run writes the record");
    assert_eq!(record.lines().count(), 1 + 20, "a header and one line per leaf:\n{record}");
    c
}

/// Another cluster of the same shape (same names, same CA subjects) with other keys, for material that looks right
/// but is not this cluster's.
fn impostor(name: &str) -> Cluster {
    let c = Cluster::new(name, kubeforge::DEMO_SPEC);
    support::apply(&Options { seed: Some(7), now: Some(support::now()), ..c.options() });
    c
}

fn rerun(c: &Cluster) -> Result<kubeforge::ops::report::RunReport, String> {
    support::try_apply(&c.seeded())
}

/// `damage`, then a rerun with the record in place must fail naming every one of `expect`, and change nothing.
fn refused(c: &Cluster, damage: impl FnOnce(&Path), expect: &[&str]) {
    damage(&c.out);
    assert!(c.out.join(RECORD).exists());
    let before = c.tree();
    let err = rerun(c).expect_err("tampered material must stop the run");
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    assert_eq!(before.diff(&c.tree()), Vec::<String>::new(), "a refused run changed OUT");
}

#[test]
fn a_certificate_replaced_by_one_another_ca_signed_is_refused() {
    let (c, other) = (demo("verified-other-ca"), impostor("verified-other-ca-src"));
    refused(
        &c,
        |out| {
            for f in ["pki/nodes/worker-1/kubelet-client.crt", "pki/nodes/worker-1/kubelet-client.key"] {
                fs::copy(other.out.join(f), out.join(f)).unwrap();
            }
        },
        &["nodes/worker-1/kubelet-client", "did not sign it"],
    );
}

#[test]
fn an_edited_certificate_is_refused() {
    let c = demo("verified-edited-crt");
    refused(
        &c,
        |out| {
            // The last byte of the signature flipped: still a certificate, no longer the CA's signature.
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD;
            let p = out.join("pki/admin.crt");
            let pem = fs::read_to_string(&p).unwrap();
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let mut der = b64.decode(body).unwrap();
            *der.last_mut().unwrap() ^= 1;
            let lines: Vec<String> =
                b64.encode(&der).as_bytes().chunks(64).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
            let edited = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"));
            assert_ne!(edited, pem);
            fs::write(&p, edited).unwrap();
        },
        &["admin", "did not sign it"],
    );
}

#[test]
fn a_key_that_no_longer_matches_is_refused() {
    let c = demo("verified-key");
    refused(
        &c,
        |out| {
            let from = out.join("pki/nodes/worker-2/kube-proxy.key");
            fs::copy(from, out.join("pki/nodes/worker-1/kube-proxy.key")).unwrap();
        },
        &["pki/nodes/worker-1/kube-proxy.crt does not match its key"],
    );
}

#[test]
fn a_replaced_ca_is_refused() {
    let (c, other) = (demo("verified-ca"), impostor("verified-ca-src"));
    refused(
        &c,
        |out| {
            // A CA of the same name and a matching key, but not the one that signed the leaves.
            for f in ["pki/etcd-ca.crt", "pki/etcd-ca.key"] {
                fs::copy(other.out.join(f), out.join(f)).unwrap();
            }
        },
        &["names CN = etcd-ca as its issuer but that CA did not sign it"],
    );
}

#[test]
fn a_readable_key_is_refused_whatever_the_record_says() {
    let c = demo("verified-mode");
    refused(
        &c,
        |out| {
            let p = out.join("pki/nodes/cp-1/apiserver.key");
            fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
        },
        &["apiserver.key", "0644"],
    );
}

#[test]
fn spec_and_clock_are_compared_again_on_every_run() {
    let c = demo("verified-spec");
    // The renewal window: from the recorded facts, no parsing needed, and the same answer as without a record.
    let at = |now: &str| {
        let o = Options { now: kubeforge::parse_instant(now), ..c.seeded() };
        o.load().and_then(|ctx| ctx.plan()).unwrap()
    };
    assert!(!at("2026-12-01T23:59:59Z").has_changes());
    let due = at("2026-12-02T00:00:00Z");
    assert!(
        reissued(&due)
            .contains(&"nodes/cp-1/apiserver — expires 2027-01-01T00:00:00Z (within pki.renewBefore, 720h)".into()),
        "{due}"
    );
    // A spec change.
    c.edit("certSANs: []", "certSANs: [10.0.0.5]");
    let r = rerun(&c).unwrap();
    assert_eq!(reissued(&r), ["nodes/cp-1/apiserver — SAN added: IP:10.0.0.5"], "{r}");
    // The key algorithm.
    c.edit("keyAlgorithm: ECDSA-P256", "keyAlgorithm: ECDSA-P384");
    let r = rerun(&c).unwrap();
    assert_eq!(reissued(&r).len(), 20, "{r}");
    assert!(reissued(&r).iter().all(|l| l.contains("key algorithm ECDSA-P256 -> ECDSA-P384")), "{r}");
}

#[test]
fn an_edited_file_in_a_node_bundle_is_rewritten() {
    let c = demo("verified-bundle");
    let before = c.tree();
    for f in ["nodes/worker-1/etc/kubernetes/kubelet.conf", "nodes/worker-2/etc/kubernetes/pki/ca.crt"] {
        let p = c.out.join(f);
        let mut text = fs::read_to_string(&p).unwrap();
        text.push_str("# edited\n");
        fs::write(&p, text).unwrap();
    }
    let mut index = fs::read_to_string(c.out.join("index.json")).unwrap();
    index.push('\n');
    fs::write(c.out.join("index.json"), index).unwrap();
    let r = rerun(&c).unwrap();
    let written = &r.files.as_ref().unwrap().write;
    assert_eq!(
        written,
        &["index.json", "nodes/worker-1/etc/kubernetes/kubelet.conf", "nodes/worker-2/etc/kubernetes/pki/ca.crt"],
        "{r}"
    );
    assert_eq!(before.diff(&c.tree()), Vec::<String>::new());
}

/// The record rewritten by someone without the CA key: lines edited, moved to another leaf, from another build,
/// or garbage. None of it is believed, and the rerun is what it would be without a record.
#[test]
fn a_tampered_record_is_not_believed() {
    let c = demo("verified-record");
    let text = fs::read_to_string(c.out.join(RECORD)).unwrap();
    let first = text.lines().nth(1).unwrap().to_string();
    let (id, rest) = first.split_once('\t').unwrap();
    let cases = [
        // A SAN dropped from the recorded facts (the rerun would reissue if it believed it).
        text.replacen("DNS:kubernetes.default.svc.cluster.local", "DNS:x", 1),
        // The admin line claimed for another leaf.
        format!("{text}nodes/worker-1/kubelet-client\t{rest}\n"),
        // A line for a certificate that is not there, and one for an id that does not exist.
        text.replacen(&format!("{id}\t"), &format!("{id}-gone\t"), 1),
        // Another build's record.
        text.replacen("kubeforge-verified v1 ", "kubeforge-verified v1 other-", 1),
        "garbage\n\t\t\t\n".into(),
        String::new(),
    ];
    for (i, forged) in cases.iter().enumerate() {
        assert_ne!(forged, &text, "case {i}");
        fs::write(c.out.join(RECORD), forged).unwrap();
        let before = c.tree();
        let r = rerun(&c).unwrap();
        assert!(!r.has_changes(), "case {i}: {r}");
        assert_eq!(before.diff(&c.tree()), Vec::<String>::new(), "case {i}");
        // The run wrote the record again from what it proved itself.
        assert_eq!(fs::read_to_string(c.out.join(RECORD)).unwrap(), text, "case {i}");
    }
    // A certificate replaced and its line forged to match, under a key that is not the CA's: still refused.
    let other = impostor("verified-record-src");
    let crt = "pki/nodes/cp-1/apiserver.crt";
    let key = "pki/nodes/cp-1/apiserver.key";
    fs::copy(other.out.join(crt), c.out.join(crt)).unwrap();
    fs::copy(other.out.join(key), c.out.join(key)).unwrap();
    forge(&c.out, "nodes/cp-1/apiserver", &MacKey::from_ca_key("not the CA's key"), |p| {
        p.cert = verified::sha256(&fs::read(c.out.join(crt)).unwrap());
        p.key = verified::sha256(&fs::read(c.out.join(key)).unwrap());
    });
    let err = rerun(&c).expect_err("a forged line must not vouch for another CA's certificate");
    assert!(err.contains("nodes/cp-1/apiserver") && err.contains("did not sign it"), "{err}");
}

/// Rewrites the record with `edit` applied to the proof of `id`, authenticated under `key`; the other lines as
/// they are.
fn forge(out: &Path, id: &str, key: &MacKey, edit: impl FnOnce(&mut verified::Proof)) {
    let ca_key = MacKey::from_ca_key(&fs::read_to_string(out.join("pki/ca.key")).unwrap());
    let record = Record::load(out);
    let text = fs::read_to_string(out.join(RECORD)).unwrap();
    let mut proofs = Vec::new();
    let mut edit = Some(edit);
    for line in text.lines().skip(1) {
        let this = line.split('\t').next().unwrap().to_string();
        let (mut proof, line) = record
            .proof(&this, &ca_key)
            .or_else(|| {
                let etcd = fs::read_to_string(out.join("pki/etcd-ca.key")).unwrap();
                let fp = fs::read_to_string(out.join("pki/front-proxy-ca.key")).unwrap();
                record
                    .proof(&this, &MacKey::from_ca_key(&etcd))
                    .or_else(|| record.proof(&this, &MacKey::from_ca_key(&fp)))
            })
            .unwrap_or_else(|| panic!("{this}: not authentic under any CA of the store"));
        if this == id {
            (edit.take().unwrap())(&mut proof);
            let line = verified::line(&this, &proof, key);
            proofs.push(Proven { id: this, line: Line::New(line) });
        } else {
            proofs.push(Proven { id: this, line: Line::New(line) });
        }
    }
    assert!(edit.is_none(), "{id} is not in the record");
    verified::save(out, None, &proofs).unwrap();
}

/// An authentic record is believed: with a line rewritten under the CA's own key (which only the holder of that key
/// can do, who could as well sign a certificate), the rerun takes the recorded facts over the certificate's. This
/// is what shows that a rerun parses nothing it has a proof for; under any other key the line is ignored.
#[test]
fn an_authentic_record_is_what_the_rerun_believes() {
    let c = demo("verified-believed");
    let ca_key = MacKey::from_ca_key(&fs::read_to_string(c.out.join("pki/ca.key")).unwrap());
    let drop_san = |p: &mut verified::Proof| p.facts.sans.retain(|s| s != "IP:10.96.0.1");
    let record = fs::read_to_string(c.out.join(RECORD)).unwrap();
    forge(&c.out, "nodes/cp-1/apiserver", &MacKey::from_ca_key("someone else"), drop_san);
    assert!(!c.plan().has_changes(), "a line under another key is ignored");
    fs::write(c.out.join(RECORD), record).unwrap();
    forge(&c.out, "nodes/cp-1/apiserver", &ca_key, drop_san);
    let plan = c.plan();
    assert_eq!(reissued(&plan), ["nodes/cp-1/apiserver — SAN added: IP:10.96.0.1"], "{plan}");
}

/// Runs and edits at the same time: a store certificate flips between the genuine one and another CA's while runs
/// go on. Some runs see one, some the other; whatever they record, once the flipping stops on the wrong one, the
/// next run refuses it, and once it stops on the right one, the next run accepts it and ends in the tree of a
/// plain run.
#[test]
fn files_edited_while_runs_go_on_are_never_vouched_for() {
    let (c, other) = (demo("verified-concurrent"), impostor("verified-concurrent-src"));
    let expected = c.tree();
    let rel = ["pki/nodes/worker-2/kubelet-serving.crt", "pki/nodes/worker-2/kubelet-serving.key"];
    let good: Vec<Vec<u8>> = rel.iter().map(|r| fs::read(c.out.join(r)).unwrap()).collect();
    let bad: Vec<Vec<u8>> = rel.iter().map(|r| fs::read(other.out.join(r)).unwrap()).collect();
    let put = |which: &[Vec<u8>]| {
        for (r, b) in rel.iter().zip(which) {
            // Written in place, as an editor would (no rename): a run may read either version or a mix.
            fs::write(c.out.join(r), b).unwrap();
        }
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (mut ok, mut refused) = (0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                put(if i.is_multiple_of(2) { &bad } else { &good });
                i += 1;
                std::thread::sleep(std::time::Duration::from_micros(300 + i % 700));
            }
        });
        for _ in 0..12 {
            match rerun(&c) {
                Ok(_) => ok += 1,
                Err(_) => refused += 1,
            }
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    println!("while editing: {ok} runs went ahead, {refused} refused");
    put(&bad);
    let err = rerun(&c).expect_err("another CA's certificate must be refused");
    assert!(err.contains("nodes/worker-2/kubelet-serving") && err.contains("did not sign it"), "{err}");
    put(&good);
    rerun(&c).unwrap();
    rerun(&c).unwrap();
    assert_eq!(expected.diff(&c.tree()), Vec::<String>::new());
}

/// Sanity for everything above: without a record, the same refusals happen (the record only ever saves work).
#[test]
fn without_a_record_the_same_damage_is_refused_the_same_way() {
    let (c, other) = (demo("verified-none"), impostor("verified-none-src"));
    for f in ["pki/etcd-ca.crt", "pki/etcd-ca.key"] {
        fs::copy(other.out.join(f), c.out.join(f)).unwrap();
    }
    let with = rerun(&c).unwrap_err();
    fs::remove_file(c.out.join(RECORD)).unwrap();
    let without = rerun(&c).unwrap_err();
    assert_eq!(with, without);
}
