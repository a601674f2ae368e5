//! Faults lose nothing: a kill -9 at any point of a run, two runs at once on one OUT, a full disk. Every case runs
//! the real `kubeforge` binary as a separate process (built with the `fault-injection` feature: `KUBEFORGE_FAULT`
//! kills it, or fails like a full disk, at its Nth file operation; see src/fault.rs), then checks that OUT is
//! consistent and that it is the old tree or the new one, file by file, and that the next plain run repairs it.
//!
//! "Consistent" is checked here without kubeforge's own reasoning about it: every store key belongs to its
//! certificate, every leaf in the store is signed by its CA (the signature verified), index.json lists exactly the
//! files in OUT with their SHA-256, no staged or temporary file is left, and every secret is 0600.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use support::Tree;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubeforge"))
}

/// Runs `kubeforge ARGS` with `KUBEFORGE_FAULT=fault` (or none).
fn run(args: &[String], fault: Option<&str>) -> Output {
    let mut c = bin();
    c.args(args).env_remove("KUBEFORGE_FAULT");
    if let Some(f) = fault {
        c.env("KUBEFORGE_FAULT", f);
    }
    support::output(&mut c)
}

/// The fault points a run passes, in order: (number, name).
fn points(args: &[String]) -> Vec<(usize, String)> {
    let o = run(args, Some("count"));
    assert!(o.status.success(), "{args:?}{}", support::show(&o));
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("kubeforge-fault-point "))
        .map(|l| {
            let (n, name) = l.split_once(' ').unwrap();
            (n.parse().unwrap(), name.to_string())
        })
        .collect()
}

/// Which points to kill at: the first and last of each kind (stage, mkdir, sync, journal, commit, rename, remove,
/// finish, ...), and others spread evenly, so that every phase of a transaction is hit at its edges and inside.
fn chosen(points: &[(usize, String)]) -> Vec<usize> {
    let mut by_kind: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (n, k) in points {
        by_kind.entry(k.as_str()).or_default().push(*n);
    }
    let mut out: Vec<usize> = by_kind.values().flat_map(|v| [v[0], v[v.len() / 2], v[v.len() - 1]]).collect();
    let step = (points.len() / 12).max(1);
    out.extend((1..=points.len()).step_by(step));
    out.sort();
    out.dedup();
    out
}

/// OUT without kubeforge's own `.kubeforge/` (locks, transactions): what a consumer sees.
fn state(out: &Path) -> Tree {
    Tree::output(out)
}

fn copy(from: &Path, to: &Path) {
    if from.exists() {
        support::run(Command::new("cp").arg("-a").arg(from).arg(to));
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every way OUT is not a consistent kubeforge tree.
fn problems(out: &Path) -> Vec<String> {
    use kubeforge::pki::inspect::{CertInfo, signed_by};
    use kubeforge::pki::keys::Key;
    let mut p = Vec::new();
    let txn = out.join(".kubeforge/txn");
    if txn.exists() {
        p.push(format!("{} is left behind", txn.display()));
    }
    let files = state(out).files_and_modes();
    if files.is_empty() {
        return p;
    }
    for (path, (bytes, mode)) in &files {
        if path.ends_with(".tmp") || path.contains(".kubeforge-") {
            p.push(format!("{path}: a temporary file"));
        }
        let text = String::from_utf8_lossy(bytes);
        if (text.contains("PRIVATE KEY") || path.ends_with(".conf")) && mode & 0o077 != 0 {
            p.push(format!("{path}: a secret with mode {mode:o}"));
        }
    }
    // Store pairs and chains.
    let cert = |id: &str| {
        files.get(&format!("pki/{id}.crt")).and_then(|(b, _)| CertInfo::from_pem(&String::from_utf8_lossy(b)).ok())
    };
    for (path, (bytes, _)) in files.iter().filter(|(p, _)| p.starts_with("pki/") && p.ends_with(".crt")) {
        let id = &path["pki/".len()..path.len() - 4];
        let Ok(info) = CertInfo::from_pem(&String::from_utf8_lossy(bytes)) else {
            p.push(format!("{path}: not a certificate"));
            continue;
        };
        match files.get(&format!("pki/{id}.key")) {
            Some((k, _)) => match Key::from_pem(&String::from_utf8_lossy(k)) {
                Ok(k) if k.spki_der() == info.spki_der => {}
                Ok(_) => p.push(format!("pki/{id}.key does not belong to {path}")),
                Err(e) => p.push(format!("pki/{id}.key: {e}")),
            },
            None => p.push(format!("{path} has no key")),
        }
        let signer = if info.is_ca {
            Some(info.clone())
        } else {
            ["ca", "etcd-ca", "front-proxy-ca"].iter().filter_map(|c| cert(c)).find(|c| c.subject == info.issuer)
        };
        match signer {
            Some(ca) if signed_by(&info.der, &ca.spki_der) => {}
            Some(_) => p.push(format!("{path} is not signed by the CA in the store")),
            None => p.push(format!("{path}: its CA {} is not in the store", info.issuer)),
        }
    }
    for (path, _) in files.iter().filter(|(p, _)| p.starts_with("pki/") && p.ends_with(".key")) {
        let base = &path[..path.len() - 4];
        let paired =
            files.contains_key(&format!("{base}.crt")) || path == "pki/sa.key" || path.starts_with("pki/encryption/");
        if !paired {
            p.push(format!("{path}: a key without its certificate"));
        }
    }
    // The verification record vouches only for what is true of the bytes it names: wherever a line authentic under
    // a CA of the store names the certificate, key and CA certificate the store holds, its facts are that
    // certificate's and the CA signed it (what a rerun would skip checking).
    let record = kubeforge::pki::verified::Record::load(out);
    for (path, (bytes, _)) in files.iter().filter(|(p, _)| p.starts_with("pki/") && p.ends_with(".crt")) {
        let id = &path["pki/".len()..path.len() - 4];
        let Some((key, _)) = files.get(&format!("pki/{id}.key")) else { continue };
        for ca in ["ca", "etcd-ca", "front-proxy-ca"] {
            let (Some((ca_crt, _)), Some((ca_key, _))) =
                (files.get(&format!("pki/{ca}.crt")), files.get(&format!("pki/{ca}.key")))
            else {
                continue;
            };
            let mac = kubeforge::pki::verified::MacKey::from_ca_key(&String::from_utf8_lossy(ca_key));
            let Some((proof, _)) = record.proof(id, &mac) else { continue };
            let sha = |b: &[u8]| kubeforge::pki::verified::sha256(b);
            if (proof.cert, proof.key, proof.ca) != (sha(bytes), sha(key), sha(ca_crt)) {
                continue; // about other bytes: never used for these
            }
            let (Ok(info), Ok(ca_info)) = (
                CertInfo::from_pem(&String::from_utf8_lossy(bytes)),
                CertInfo::from_pem(&String::from_utf8_lossy(ca_crt)),
            ) else {
                p.push(format!("{path}: the record vouches for a file that does not parse"));
                continue;
            };
            let mut facts = info.clone();
            // What the record leaves for the certificate file to say.
            facts.der.clear();
            facts.spki_der.clear();
            if proof.facts != facts || !signed_by(&info.der, &ca_info.spki_der) {
                p.push(format!("{path}: the record vouches for something untrue of it"));
            }
        }
    }
    // The index lists exactly the files, with their checksums.
    match files.get("index.json").map(|(b, _)| serde_json::from_slice::<serde_json::Value>(b)) {
        Some(Ok(index)) => {
            let mut listed = BTreeMap::new();
            for f in index["files"].as_array().unwrap() {
                listed.insert(f["path"].as_str().unwrap().to_string(), f["sha256"].as_str().unwrap().to_string());
            }
            for (path, (bytes, _)) in files.iter().filter(|(p, _)| *p != "index.json") {
                match listed.get(path) {
                    Some(sum) if *sum == hex(&Sha256::digest(bytes)) => {}
                    Some(_) => p.push(format!("{path}: its bytes are not what index.json says")),
                    None => p.push(format!("{path}: in OUT but not in index.json (an orphan)")),
                }
            }
            for path in listed.keys().filter(|l| !files.contains_key(*l)) {
                p.push(format!("{path}: in index.json but not in OUT"));
            }
        }
        Some(Err(e)) => p.push(format!("index.json: {e}")),
        None => p.push("no index.json beside other files".into()),
    }
    p
}

/// A command to run against OUT from a state A to a state B.
struct Case {
    name: &'static str,
    /// Makes state A in `out` (nothing for a first gen) and returns the command that takes it to B.
    setup: fn(&Path, &Path) -> Vec<String>,
}

fn spec(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

fn gen_args(spec: &Path, out: &Path) -> Vec<String> {
    ["gen", "--spec", spec.to_str().unwrap(), "--out", out.to_str().unwrap(), "--seed", "5", "--now", support::NOW]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn seeded_gen(spec: &Path, out: &Path) {
    let o = run(&gen_args(spec, out), None);
    assert!(o.status.success(), "{}", support::show(&o));
}

const CASES: [Case; 4] = [
    Case { name: "first gen", setup: |dir, out| gen_args(&spec(dir, "a.yaml", kubeforge::DEMO_SPEC), out) },
    Case {
        name: "rerun with a SAN added",
        setup: |dir, out| {
            seeded_gen(&spec(dir, "a.yaml", kubeforge::DEMO_SPEC), out);
            let b = kubeforge::DEMO_SPEC.replace("certSANs: []", "certSANs: [10.0.0.5, api.example.com]");
            gen_args(&spec(dir, "b.yaml", &b), out)
        },
    },
    Case {
        name: "renew all",
        setup: |dir, out| {
            let a = spec(dir, "a.yaml", kubeforge::DEMO_SPEC);
            seeded_gen(&a, out);
            let mut args = gen_args(&a, out);
            args[0] = "renew".into();
            args.insert(1, "all".into());
            args
        },
    },
    Case {
        name: "a node removed",
        setup: |dir, out| {
            seeded_gen(&spec(dir, "a.yaml", kubeforge::DEMO_SPEC), out);
            let removed = "  - name: worker-2\n    role: worker\n    address: 10.0.0.22\n";
            assert!(kubeforge::DEMO_SPEC.contains(removed), "the demo spec changed: update this case");
            gen_args(&spec(dir, "b.yaml", &kubeforge::DEMO_SPEC.replace(removed, "")), out)
        },
    },
];

/// Runs `case` to completion once (B), then once killed at each chosen point: after the kill OUT must be A or B
/// once any command has looked at it, consistent, and the next plain run must reach B.
fn kill_everywhere(case: &Case) {
    let tmp = support::temp_dir(&format!("faults-kill-{}", case.name));
    let a = tmp.join("a");
    fs::create_dir_all(&a).unwrap();
    let args_a = (case.setup)(&a, &a.join("out"));
    let state_a = state(&a.join("out"));
    // The run, to completion, on a copy.
    let rebase = |args: &[String], root: &Path| -> Vec<String> {
        args.iter().map(|s| s.replace(a.to_str().unwrap(), root.to_str().unwrap())).collect()
    };
    let b = tmp.join("b");
    copy(&a, &b);
    let o = run(&rebase(&args_a, &b), None);
    assert!(o.status.success(), "{}: {}", case.name, support::show(&o));
    let state_b = state(&b.join("out"));
    assert!(problems(&b.join("out")).is_empty(), "{}: B: {:?}", case.name, problems(&b.join("out")));
    assert!(!state_a.diff(&state_b).is_empty(), "{}: the run changes nothing; the case tests nothing", case.name);

    let c = tmp.join("count");
    copy(&a, &c);
    let pts = points(&rebase(&args_a, &c));
    assert!(pts.iter().any(|(_, k)| k == "commit") && pts.iter().any(|(_, k)| k == "rename"), "{pts:?}");
    let mut outcomes = BTreeMap::new();
    for n in chosen(&pts) {
        let root = tmp.join(format!("kill-{n}"));
        copy(&a, &root);
        let out = root.join("out");
        let args = rebase(&args_a, &root);
        let o = run(&args, Some(&format!("kill@{n}")));
        assert_eq!(
            o.status.signal(),
            Some(9),
            "{}: kill@{n} ({}) did not kill it{}",
            case.name,
            pts[n - 1].1,
            support::show(&o)
        );
        // Any command that looks at OUT first finishes or rolls back what the killed run left.
        let spec = args[args.iter().position(|a| a == "--spec").unwrap() + 1].clone();
        let plan = run(&["plan".into(), "--out".into(), out.to_str().unwrap().into(), "--spec".into(), spec], None);
        assert!(
            plan.status.code().is_some_and(|c| c <= 2),
            "{}: plan after kill@{n}{}",
            case.name,
            support::show(&plan)
        );
        let now = state(&out);
        let which = if state_a.diff(&now).is_empty() {
            "old"
        } else if state_b.diff(&now).is_empty() {
            "new"
        } else {
            let (da, db) = (state_a.diff(&now), state_b.diff(&now));
            panic!(
                "{}: after kill@{n} ({}) OUT is neither the old tree ({da:?}) nor the new one ({db:?})",
                case.name,
                pts[n - 1].1
            )
        };
        *outcomes.entry(which).or_insert(0) += 1;
        if which == "new" {
            assert_eq!(problems(&out), Vec::<String>::new(), "{}: kill@{n}", case.name);
        }
        // The next plain run reaches B.
        let o = run(&args, None);
        assert!(o.status.success(), "{}: rerun after kill@{n}{}", case.name, support::show(&o));
        assert_eq!(state(&out).diff(&state_b), Vec::<String>::new(), "{}: rerun after kill@{n}", case.name);
        assert_eq!(problems(&out), Vec::<String>::new(), "{}: rerun after kill@{n}", case.name);
    }
    println!("{}: {} points, killed at {:?}: {outcomes:?}", case.name, pts.len(), chosen(&pts));
    assert!(
        outcomes.contains_key("old") && outcomes.contains_key("new"),
        "{}: both sides of the commit point",
        case.name
    );
}

#[test]
fn kill_9_during_a_first_gen() {
    kill_everywhere(&CASES[0]);
}

#[test]
fn kill_9_during_a_rerun() {
    kill_everywhere(&CASES[1]);
}

#[test]
fn kill_9_during_renew_all() {
    kill_everywhere(&CASES[2]);
}

#[test]
fn kill_9_during_a_node_removal() {
    kill_everywhere(&CASES[3]);
}

/// A full disk at any write before the commit point: the run fails, says so, and OUT is exactly the old tree.
#[test]
fn a_full_disk_leaves_the_old_tree() {
    for case in [&CASES[1], &CASES[3]] {
        let tmp = support::temp_dir(&format!("faults-enospc-{}", case.name));
        let a = tmp.join("a");
        fs::create_dir_all(&a).unwrap();
        let args = (case.setup)(&a, &a.join("out"));
        let before = state(&a.join("out"));
        let pts = points(&{
            let c = tmp.join("count");
            copy(&a, &c);
            args.iter().map(|s| s.replace(a.to_str().unwrap(), c.to_str().unwrap())).collect::<Vec<_>>()
        });
        let commit = pts.iter().find(|(_, k)| k == "commit").unwrap().0;
        for n in [1, commit / 3, commit / 2, commit - 1, commit] {
            let root = tmp.join(format!("enospc-{n}"));
            copy(&a, &root);
            let args: Vec<String> =
                args.iter().map(|s| s.replace(a.to_str().unwrap(), root.to_str().unwrap())).collect();
            let o = run(&args, Some(&format!("enospc@{n}")));
            assert_eq!(o.status.code(), Some(1), "{}: enospc@{n}{}", case.name, support::show(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("no space left") && err.contains("previous tree is intact"), "{}: {err}", case.name);
            let out = root.join("out");
            assert_eq!(before.diff(&state(&out)), Vec::<String>::new(), "{}: enospc@{n}", case.name);
            assert!(!out.join(".kubeforge/txn").exists(), "{}: enospc@{n}: staged files left", case.name);
            let o = run(&args, None);
            assert!(o.status.success(), "{}{}", case.name, support::show(&o));
            assert_eq!(problems(&out), Vec::<String>::new());
        }
    }
}

/// A real full file system: a small tmpfs (where the test may mount one in a mount namespace of its own).
#[test]
fn a_real_full_tmpfs() {
    let probe = support::output(Command::new("unshare").args(["-m", "true"]));
    if !probe.status.success() {
        println!("skipped: cannot make a mount namespace here (unshare -m): {}", support::show(&probe));
        return;
    }
    let tmp = support::temp_dir("faults-tmpfs");
    let (small, big) = (tmp.join("small.yaml"), tmp.join("big.yaml"));
    fs::write(&small, kubeforge::DEMO_SPEC).unwrap();
    let workers: String =
        (30..230).map(|i| format!("  - name: w-{i}\n    role: worker\n    address: 10.0.1.{}\n", i)).collect();
    fs::write(&big, format!("{}\n{workers}", kubeforge::DEMO_SPEC.trim_end())).unwrap();
    // Inside one mount namespace: a 600 KiB tmpfs; the demo fits, 200 more workers do not; back to the demo.
    let mnt = tmp.join("mnt");
    let save = tmp.join("saved");
    fs::create_dir_all(&mnt).unwrap();
    fs::create_dir_all(&save).unwrap();
    let bin = env!("CARGO_BIN_EXE_kubeforge");
    let script = format!(
        r#"set -u
mount -t tmpfs -o size=600k tmpfs {mnt} || exit 90
g() {{ {bin} gen --spec "$1" --out {mnt}/out --seed 5 --now {now}; }}
g {small} > {save}/1.out 2>&1 || exit 91
cp -a {mnt}/out {save}/before
g {big} > {save}/2.out 2>&1; echo $? > {save}/2.code
cp -a {mnt}/out {save}/after-full
ls -a {mnt}/out/.kubeforge > {save}/kubeforge-dir
g {small} > {save}/3.out 2>&1; echo $? > {save}/3.code
cp -a {mnt}/out {save}/again
"#,
        mnt = mnt.display(),
        save = save.display(),
        now = support::NOW,
        small = small.display(),
        big = big.display(),
    );
    let o = support::output(Command::new("unshare").args(["-m", "sh", "-c", &script]));
    assert!(o.status.success(), "{}", support::show(&o));
    let read = |f: &str| fs::read_to_string(save.join(f)).unwrap();
    assert_eq!(read("2.code").trim(), "1", "the big spec does not fit: {}", read("2.out"));
    assert!(read("2.out").contains("no space left"), "{}", read("2.out"));
    assert_eq!(state(&save.join("before")).diff(&state(&save.join("after-full"))), Vec::<String>::new());
    assert!(!read("kubeforge-dir").contains("txn"), "nothing staged is left: {}", read("kubeforge-dir"));
    assert_eq!(read("3.code").trim(), "0", "{}", read("3.out"));
    assert!(read("3.out").contains("nothing to do"), "back on the old spec nothing changes: {}", read("3.out"));
    assert_eq!(problems(&save.join("again")), Vec::<String>::new());
}

/// Two writers on one OUT: while one holds the lock, the other is refused with the holder's pid and writes nothing.
#[test]
fn a_second_writer_is_refused_with_the_holders_pid() {
    let tmp = support::temp_dir("faults-lock");
    let out = tmp.join("out");
    let spec = spec(&tmp, "a.yaml", kubeforge::DEMO_SPEC);
    seeded_gen(&spec, &out);
    let before = state(&out);
    // This test process takes the writer lock, as a running gen would.
    let lock = fs::OpenOptions::new().read(true).write(true).open(out.join(".kubeforge/lock")).unwrap();
    lock.try_lock().unwrap();
    for args in [gen_args(&spec, &out), {
        let mut a = gen_args(&spec, &out);
        a[0] = "renew".into();
        a.insert(1, "all".into());
        a
    }] {
        let o = run(&args, None);
        assert_eq!(o.status.code(), Some(1), "{}", support::show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("another kubeforge run") && err.contains(&format!("pid {}", std::process::id())), "{err}");
    }
    // Readers do not wait for a writer that is not switching the tree.
    let o = run(
        &["plan".into(), "--out".into(), out.to_str().unwrap().into(), "--spec".into(), spec.to_str().unwrap().into()],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", support::show(&o));
    drop(lock);
    assert_eq!(before.diff(&state(&out)), Vec::<String>::new());
    seeded_gen(&spec, &out);
}

/// Two runs started together, again and again: one may be refused, but never is a CA key lost or a tree mixed.
#[test]
fn two_runs_at_once_never_mix() {
    let tmp = support::temp_dir("faults-race");
    let (sa, sb) = (
        spec(&tmp, "a.yaml", kubeforge::DEMO_SPEC),
        spec(
            &tmp,
            "b.yaml",
            &kubeforge::DEMO_SPEC.replace("name: demo", "name: other").replace("certSANs: []", "certSANs: [10.9.9.9]"),
        ),
    );
    let mut refused = 0;
    for round in 0..6 {
        let out = tmp.join(format!("out-{round}"));
        // Different specs and different keys: any mix of the two is visible.
        let mut a = gen_args(&sa, &out);
        a[6] = "1".into();
        let mut b = gen_args(&sb, &out);
        b[6] = "2".into();
        if round % 2 == 1 {
            // On an existing tree: two renewals at once.
            seeded_gen(&sa, &out);
            a[0] = "renew".into();
            a.insert(1, "all".into());
            b = a.clone();
            b[7] = "2".into();
        }
        let spawn = |args: &[String]| {
            bin()
                .args(args)
                .env_remove("KUBEFORGE_FAULT")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (ca, cb) = (spawn(&a), spawn(&b));
        let (oa, ob) = (ca.wait_with_output().unwrap(), cb.wait_with_output().unwrap());
        for o in [&oa, &ob] {
            if !o.status.success() {
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(err.contains("another kubeforge run"), "round {round}: {err}");
                refused += 1;
            }
        }
        assert!(oa.status.success() || ob.status.success(), "round {round}: one of the two runs went ahead");
        assert_eq!(problems(&out), Vec::<String>::new(), "round {round}");
        // Not a mix: every kubeconfig names one cluster, the one in the index.
        let index: serde_json::Value = serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
        let cluster = index["cluster"].as_str().unwrap();
        for (path, bytes) in state(&out).files().iter().filter(|(p, _)| p.ends_with(".conf")) {
            let text = String::from_utf8_lossy(bytes);
            assert!(text.contains(&format!("name: {cluster}\n")), "round {round}: {path} is not of cluster {cluster}");
        }
    }
    println!("{refused} of 12 runs were refused while the other wrote");
}

/// What the lock file and the transaction directory look like to git and to others.
#[test]
fn kubeforges_own_directory_is_private_and_ignored() {
    let tmp = support::temp_dir("faults-dir");
    let out = tmp.join("out");
    seeded_gen(&spec(&tmp, "a.yaml", kubeforge::DEMO_SPEC), &out);
    let mode = fs::metadata(out.join(".kubeforge")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(fs::read_to_string(out.join(".kubeforge/.gitignore")).unwrap().lines().last(), Some("*"));
    assert!(!out.join(".kubeforge/txn").exists(), "a finished run leaves no transaction behind");
}
