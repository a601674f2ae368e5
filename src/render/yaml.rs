//! One way to put a string into YAML: plain where no YAML reader can take it for anything but that string,
//! double-quoted otherwise.
//!
//! Kubernetes reads YAML with a YAML 1.1 resolver (go-yaml v2 via sigs.k8s.io/yaml), where `yes`, `on`, `y` and `N`
//! are booleans and `0x1F` or `1_000` are numbers; serde_yaml-style emitters leave some of these unquoted. Every
//! value that reaches a rendered file from the spec or from computation goes through [`scalar`], so no input can
//! add a key, end a line or change a type. Plain output is kept where it is safe so that our files read like
//! kubeadm's (`- --advertise-address=10.0.0.11`, not `- "--advertise-address=10.0.0.11"`).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// YAML 1.1 / go-yaml v2 words that resolve to something other than a string (compared in lowercase).
const RESERVED: [&str; 19] = [
    "y", "yes", "n", "no", "on", "off", "true", "false", "null", "~", ".inf", "+.inf", "-.inf", ".nan", "<<", "=",
    "infinity", "inf", "nan",
];

pub fn scalar(s: &str) -> String {
    if is_plain_safe(s) { s.to_string() } else { double_quoted(s) }
}

fn is_plain_safe(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(&first) = b.first() else { return false };
    let allowed = |c: u8| c.is_ascii_alphanumeric() || b"._/:=,@+-*[]".contains(&c);
    let first_ok = first.is_ascii_alphanumeric() || first == b'/' || (first == b'-' && b.len() > 1 && b[1] != b' ');
    if !first_ok
        || !b.iter().all(|c| allowed(*c))
        || s.ends_with(':')
        || RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s))
    {
        return false;
    }
    // Anything a resolver might read as a number (ints with 0x/0o/0b prefixes or underscores, floats, YAML 1.1
    // sexagesimals) is quoted, except IPv4 addresses with an optional :port or /prefix, which no resolver takes
    // for a number and which kubeadm's own output leaves plain.
    let number_like = b.iter().any(u8::is_ascii_digit)
        && (first.is_ascii_digit() || first == b'+' || first == b'-' || first == b'.')
        && b.iter().all(|c| c.is_ascii_hexdigit() || b"xXoObB_.:+-".contains(c));
    if number_like {
        let host = s.split([':', '/']).next().unwrap_or("");
        let rest_ok = s[host.len()..].is_empty()
            || s[host.len() + 1..].bytes().all(|c| c.is_ascii_digit()) && !s[host.len() + 1..].is_empty();
        return host.parse::<Ipv4Addr>().is_ok() && rest_ok;
    }
    true
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20
                || ('\u{7f}'..='\u{9f}').contains(&c)
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') =>
            {
                write!(out, "\\u{:04x}", c as u32).unwrap();
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A YAML document in block style, the way kubeadm's files read: mappings one key per line (in the mapping's
/// order), sequences as `- item` at the parent key's indentation, empty ones as `{}` and `[]`, every string through
/// [`scalar`]. Floats are written as Rust prints them; tags are not supported (nothing kubeforge writes has one).
pub fn document(v: &serde_yaml::Value) -> String {
    let mut out = String::new();
    block(v, 0, &mut out);
    out
}

fn inline(v: &serde_yaml::Value) -> Option<String> {
    use serde_yaml::Value;
    Some(match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar(s),
        Value::Sequence(s) if s.is_empty() => "[]".into(),
        Value::Mapping(m) if m.is_empty() => "{}".into(),
        _ => return None,
    })
}

fn key(k: &serde_yaml::Value) -> String {
    match k {
        serde_yaml::Value::String(s) => scalar(s),
        other => inline(other).unwrap_or_else(|| "?".into()),
    }
}

/// Writes `v` (a mapping or a sequence) with its lines indented by `indent` spaces.
fn block(v: &serde_yaml::Value, indent: usize, out: &mut String) {
    use serde_yaml::Value;
    let pad = " ".repeat(indent);
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                match (inline(v), v) {
                    (Some(s), _) => writeln!(out, "{pad}{}: {s}", key(k)).unwrap(),
                    (None, Value::Sequence(_)) => {
                        writeln!(out, "{pad}{}:", key(k)).unwrap();
                        block(v, indent, out);
                    }
                    (None, _) => {
                        writeln!(out, "{pad}{}:", key(k)).unwrap();
                        block(v, indent + 2, out);
                    }
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                match (inline(item), item) {
                    (Some(s), _) => writeln!(out, "{pad}- {s}").unwrap(),
                    (None, Value::Mapping(_)) => {
                        // The first key on the dash's line, the rest aligned under it.
                        let mut inner = String::new();
                        block(item, indent + 2, &mut inner);
                        let body = inner.trim_start_matches(' ');
                        out.push_str(&format!("{pad}- {body}"));
                    }
                    (None, _) => {
                        writeln!(out, "{pad}-").unwrap();
                        block(item, indent + 2, out);
                    }
                }
            }
        }
        other => writeln!(out, "{pad}{}", inline(other).unwrap_or_default()).unwrap(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_read_back_as_what_was_written() {
        let text =
            "a: 1\nb:\n  c: [x, \"yes\", {d: e, f: [1, 2]}]\n  g: {}\nh: []\ni: true\nj: \"5m0s\"\nk:\n- - 1\n  - 2\n";
        let v: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        let doc = document(&v);
        assert_eq!(serde_yaml::from_str::<serde_yaml::Value>(&doc).unwrap(), v, "{doc}");
        assert_eq!(
            doc,
            "a: 1\nb:\n  c:\n  - x\n  - \"yes\"\n  - d: e\n    f:\n    - 1\n    - 2\n  g: {}\nh: []\ni: true\nj: 5m0s\nk:\n-\n  - 1\n  - 2\n"
        );
    }

    #[test]
    fn plain_where_kubeadm_is_plain() {
        for s in [
            "--advertise-address=10.0.0.11",
            "10.0.0.11",
            "172.30.1.2:6443",
            "10.96.0.0/12",
            "system:node:cp-1",
            "https://[fd00::1]:6443",
            "--controllers=*,bootstrapsigner,tokencleaner",
            "/etc/kubernetes/pki",
            "kube-apiserver",
        ] {
            assert_eq!(scalar(s), s);
        }
    }

    #[test]
    fn quoted_where_a_reader_would_see_something_else() {
        for s in [
            "yes",
            "On",
            "N",
            "null",
            "~",
            "0x1F",
            "1_000",
            "1e3",
            "1.5",
            "010",
            "1:20",
            "::1",
            "2001:db8::1",
            "",
            "a: b",
            "- x",
            "#x",
            "a\nb",
            "key:",
            "*alias",
            "&anchor",
            "!tag",
            "'q'",
            "\"q\"",
            "[a]",
            "{a}",
            "%x",
            "@x",
            " x",
            "x ",
            "\u{7f}",
            "\u{85}",
            "10.0.0.1:x",
        ] {
            let q = scalar(s);
            assert!(q.starts_with('"'), "{s:?} must be quoted, got {q}");
            let back: String = serde_yaml::from_str(&q).unwrap();
            assert_eq!(back, s);
        }
    }
}
