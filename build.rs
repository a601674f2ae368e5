//! Turns the declarative certificate table (`src/pki/certificates.md`) into typed Rust.
//!
//! The table is the one place where kubeforge says which certificates a cluster has, who signs them and with
//! which identity. This script checks it (unknown signer, usage, SAN rule, scope or duplicate name: the build
//! fails with the line number) and writes `profiles.rs` into `OUT_DIR`: an enum `ProfileId` with one variant per
//! row and a static `PROFILES` table that `src/pki/profile.rs` includes.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

const TABLE: &str = "src/pki/certificates.md";

fn main() {
    println!("cargo::rerun-if-changed={TABLE}");
    let text = std::fs::read_to_string(TABLE).unwrap_or_else(|e| panic!("{TABLE}: {e}"));
    let rows = parse(&text).unwrap_or_else(|e| panic!("{TABLE}: {e}"));
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("profiles.rs");
    std::fs::write(&out, generate(&rows)).unwrap();
    verify_code_id();
}

/// The code whose results `src/pki/verified.rs` records (the certificate parser, the key reader, the record's
/// format, and the crates they use, through Cargo.lock), as one hash: a record from other code is not trusted.
fn verify_code_id() {
    const SOURCES: [&str; 4] = ["src/pki/inspect.rs", "src/pki/keys.rs", "src/pki/verified.rs", "Cargo.lock"];
    // FNV-1a, 64 bits: this tells builds apart, it is not a defence (the record is authenticated separately).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in SOURCES {
        println!("cargo::rerun-if-changed={f}");
        // Cargo.lock may be absent in a packaged crate: that build then has its own id all the same.
        let bytes = std::fs::read(f).unwrap_or_default();
        for b in f.bytes().chain([0]).chain(bytes).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo::rustc-env=KUBEFORGE_VERIFY_CODE_ID={}-{h:016x}", std::env::var("CARGO_PKG_VERSION").unwrap());
}

struct Row {
    line: usize,
    cells: Vec<String>,
}

const HEADER: [&str; 10] = ["name", "signer", "cn", "o", "eku", "sans", "scope", "install", "etcd", "server"];

fn parse(text: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let t = line.trim();
        if !t.starts_with('|') {
            if in_table {
                break;
            }
            continue;
        }
        let cells: Vec<String> = t.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect();
        if !in_table {
            if cells != HEADER {
                return Err(format!("line {line_no}: table header must be {HEADER:?}, found {cells:?}"));
            }
            in_table = true;
            continue;
        }
        if cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
            continue;
        }
        if cells.len() != HEADER.len() {
            return Err(format!("line {line_no}: {} cells, expected {}", cells.len(), HEADER.len()));
        }
        rows.push(Row { line: line_no, cells });
    }
    let names: Vec<&str> = rows.iter().map(|r| r.cells[0].as_str()).collect();
    let mut seen = BTreeSet::new();
    for r in &rows {
        let c = &r.cells;
        let at = |col: &str| format!("line {} column {col}", r.line);
        if !seen.insert(c[0].as_str()) {
            return Err(format!("{}: duplicate profile {:?}", at("name"), c[0]));
        }
        if !c[0].chars().all(|ch| ch.is_ascii_lowercase() || ch == '-') {
            return Err(format!("{}: profile names are lowercase words joined by '-'", at("name")));
        }
        if c[1] != "self" && !names.contains(&c[1].as_str()) {
            return Err(format!("{}: unknown signer {:?} (a profile name or `self`)", at("signer"), c[1]));
        }
        if (c[1] == "self") != (c[4] == "ca") {
            return Err(format!("{}: exactly the self-signed rows are CAs", at("eku")));
        }
        if c[1] != "self" {
            let signer = rows.iter().find(|s| s.cells[0] == c[1]).unwrap();
            if signer.cells[4] != "ca" {
                return Err(format!("{}: signer {:?} is not a CA", at("signer"), c[1]));
            }
        }
        check(&at("eku"), &c[4], &["ca", "server", "client", "server+client"])?;
        check(&at("sans"), &c[5], &["ca", "apiserver", "etcd", "kubelet", "none"])?;
        check(&at("scope"), &c[6], &["cluster", "control-plane", "node"])?;
        check(&at("etcd"), &c[8], &["yes", "no"])?;
        if !(c[7].starts_with('/') || c[7].starts_with("kubeconfig:")) {
            return Err(format!("{}: install is an absolute path or kubeconfig:<file>", at("install")));
        }
        if c[7].starts_with("kubeconfig:") {
            check(&at("server"), &c[9], &["endpoint", "local", "kubelet"])?;
            if !c[4].contains("client") {
                return Err(format!("{}: a kubeconfig embeds a client certificate", at("eku")));
            }
        } else if c[9] != "-" {
            return Err(format!("{}: only a kubeconfig row names a server; use `-`", at("server")));
        }
        if c[2].contains('{') && c[6] == "cluster" {
            return Err(format!("{}: a cluster-scope profile cannot name a node", at("cn")));
        }
    }
    Ok(rows)
}

fn check(at: &str, v: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&v) { Ok(()) } else { Err(format!("{at}: {v:?} is not one of {allowed:?}")) }
}

fn variant(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn generate(rows: &[Row]) -> String {
    let mut s = String::from("// @generated by build.rs from src/pki/certificates.md. Do not edit.\n\n");
    s += "/// One variant per row of `src/pki/certificates.md`, in table order.\n";
    s += "#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]\npub enum ProfileId {\n";
    for r in rows {
        writeln!(s, "    /// `{}`", r.cells[0]).unwrap();
        writeln!(s, "    {},", variant(&r.cells[0])).unwrap();
    }
    s += "}\n\n/// Every certificate profile, in table order (CAs before the leaves they sign).\n";
    s += "pub static PROFILES: &[Profile] = &[\n";
    for r in rows {
        let c = &r.cells;
        let signer = if c[1] == "self" { "None".to_string() } else { format!("Some(ProfileId::{})", variant(&c[1])) };
        let o = if c[3] == "-" { "None".to_string() } else { format!("Some({:?})", c[3]) };
        let usage = match c[4].as_str() {
            "ca" => "Usage::Ca",
            "server" => "Usage::Server",
            "client" => "Usage::Client",
            _ => "Usage::ServerClient",
        };
        let sans = match c[5].as_str() {
            "ca" => "SanRule::Ca",
            "apiserver" => "SanRule::ApiServer",
            "etcd" => "SanRule::Etcd",
            "kubelet" => "SanRule::Kubelet",
            _ => "SanRule::None",
        };
        let scope = match c[6].as_str() {
            "cluster" => "Scope::Cluster",
            "control-plane" => "Scope::ControlPlane",
            _ => "Scope::Node",
        };
        let install = match c[7].strip_prefix("kubeconfig:") {
            Some(k) => {
                let server = match c[9].as_str() {
                    "endpoint" => "Server::ClusterEndpoint",
                    "local" => "Server::Local",
                    _ => "Server::Kubelet",
                };
                format!("Install::Kubeconfig({k:?}, {server})")
            }
            None => format!("Install::Files({:?})", c[7]),
        };
        writeln!(
            s,
            "    Profile {{ id: ProfileId::{}, name: {:?}, signer: {signer}, cn: {:?}, o: {o}, usage: {usage}, \
             sans: {sans}, scope: {scope}, install: {install}, stacked_etcd_only: {} }},",
            variant(&c[0]),
            c[0],
            c[2],
            c[8] == "yes"
        )
        .unwrap();
    }
    s += "];\n";
    s
}
