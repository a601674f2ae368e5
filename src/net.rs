//! Addresses, CIDRs, host names and SANs: parsing, validation and the URL forms kubeadm writes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network, `addr/prefix`, with `addr` the network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    fn bits(&self) -> u8 {
        if self.addr.is_ipv4() { 32 } else { 128 }
    }

    pub fn host_bits(&self) -> u8 {
        self.bits() - self.prefix
    }

    /// The `n`th address of the network (kubeadm: 1 = the apiserver's service VIP, 10 = cluster DNS).
    pub fn nth(&self, n: u32) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(n))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(u128::from(n)))),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').ok_or("is not a CIDR of the form ADDRESS/PREFIX")?;
        let addr: IpAddr = a.parse().map_err(|_| format!("has {a:?}, which is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let digits = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'));
        let prefix: u8 = digits
            .then(|| p.parse::<u8>().ok())
            .flatten()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("has prefix {p:?}; it must be 0 to {max}"))?;
        let masked = match addr {
            IpAddr::V4(v) => {
                let m = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
                IpAddr::V4(Ipv4Addr::from(u32::from(v) & m))
            }
            IpAddr::V6(v) => {
                let m = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
                IpAddr::V6(Ipv6Addr::from(u128::from(v) & m))
            }
        };
        if masked != addr {
            return Err(format!("has host bits set; the network is {masked}/{prefix}"));
        }
        Ok(Cidr { addr, prefix })
    }
}

/// A host: an IP address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Host {
    Ip(IpAddr),
    Dns(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Dns(d) => f.write_str(d),
        }
    }
}

/// A subject alternative name.
pub type San = Host;

impl FromStr for Host {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        let name = s.strip_prefix("*.").unwrap_or(s);
        if !is_dns_subdomain(name) {
            return Err("is neither an IP address nor a valid DNS name (RFC 1123: lowercase letters, digits, '-' \
                        and '.', labels of 1 to 63 characters starting and ending with a letter or digit; \
                        a wildcard only as a leading \"*.\")"
                .into());
        }
        if name.rsplit('.').next().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit())) {
            return Err("looks like an IP address but is not one (a DNS name's last label cannot be all digits)".into());
        }
        if s.starts_with("*.") && !name.contains('.') {
            return Err(
                "is a wildcard over a top-level domain; a wildcard needs at least two labels after \"*.\"".into()
            );
        }
        Ok(Host::Dns(s.to_string()))
    }
}

/// `net.JoinHostPort`: IPv6 addresses in brackets.
pub fn join_host_port(host: &Host, port: u16) -> String {
    match host {
        Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        h => format!("{h}:{port}"),
    }
}

pub fn https_url(host: &Host, port: u16) -> String {
    format!("https://{}", join_host_port(host, port))
}

/// `host[:port]`, with IPv6 hosts bracketed when a port is given (kubeadm's `ParseHostPort`).
pub fn parse_host_port(s: &str) -> Result<(Host, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("has '[' without ']'")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("has text after ']' that is not :PORT")?),
        };
        (h, port)
    } else if s.matches(':').count() > 1 {
        (s, None) // a bare IPv6 address
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("has port {p:?}; a port is 1 to 65535"))?,
        ),
    };
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) if s.starts_with('[') => return Err(format!("has {host:?} in brackets, which is not an IPv6 address")),
        Err(_) => match host.parse::<Host>()? {
            Host::Dns(d) if d.starts_with("*.") => return Err("is a wildcard, not a host".into()),
            h => h,
        },
    };
    Ok((host, port))
}

/// RFC 1123 label as Kubernetes validates it (`IsDNS1123Label`).
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// RFC 1123 subdomain (`IsDNS1123Subdomain`), with every label also at most 63 characters so that it is a valid
/// DNS name in a certificate.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// An absolute path without `.`/`..` components, empty components or characters that need quoting in a shell.
pub fn is_clean_abs_path(s: &str) -> bool {
    s.starts_with('/')
        && s.len() < 4096
        && (s == "/"
            || s[1..].split('/').all(|c| {
                !c.is_empty()
                    && c != "."
                    && c != ".."
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.+@".contains(&b))
            }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_rejects_host_bits_and_bad_prefixes() {
        assert!("10.96.0.0/12".parse::<Cidr>().is_ok());
        assert!("10.96.0.1/12".parse::<Cidr>().unwrap_err().contains("host bits"));
        assert!("10.96.0.0/33".parse::<Cidr>().is_err());
        assert!("10.96.0.0/012".parse::<Cidr>().is_err());
        assert!("fd00::/108".parse::<Cidr>().is_ok());
        assert_eq!("10.96.0.0/12".parse::<Cidr>().unwrap().nth(10).to_string(), "10.96.0.10");
        assert_eq!("fd00:10::/108".parse::<Cidr>().unwrap().nth(1).to_string(), "fd00:10::1");
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(parse_host_port("lb.example.com:443").unwrap(), (Host::Dns("lb.example.com".into()), Some(443)));
        assert_eq!(parse_host_port("[fd00::1]:6443").unwrap().1, Some(6443));
        assert_eq!(parse_host_port("fd00::1").unwrap(), (Host::Ip("fd00::1".parse().unwrap()), None));
        assert!(parse_host_port("lb:0").is_err());
        assert!(parse_host_port("Bad_Host").is_err());
        assert_eq!(join_host_port(&Host::Ip("fd00::1".parse().unwrap()), 6443), "[fd00::1]:6443");
    }

    #[test]
    fn sans_reject_lookalikes() {
        assert!("10.0.0.256".parse::<San>().is_err());
        assert!("*.com".parse::<San>().is_err());
        assert!("*.apps.example.com".parse::<San>().is_ok());
        assert!("a\nb".parse::<San>().is_err());
        assert!("UPPER.example.com".parse::<San>().is_err());
    }
}
