//! Where a request comes from: CIDR ranges for IP allow-lists, and the client address behind
//! trusted reverse proxies.

use std::fmt;
use std::net::IpAddr;

/// An IPv4 or IPv6 network, such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is a /32
/// or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or CIDR range: write it like 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32")]
pub struct CidrError(String);

/// An address as text, as `Display` writes it; IPv4 (nearly every caller) without the
/// formatting machinery, since a usage event records one per request.
pub fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError(text.to_owned());
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| err())?)),
            None => (text.trim(), None),
        };
        let ip = canonical(addr.parse::<IpAddr>().map_err(|_| err())?);
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(err());
        }
        Ok(Cidr {
            network: mask(ip, prefix),
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Whether `ip` is in any of `ranges` (an empty list allows every address).
pub fn allowed(ip: IpAddr, ranges: &[Cidr]) -> bool {
    ranges.is_empty() || ranges.iter().any(|r| r.contains(ip))
}

/// The client's address. Forwarding headers are believed only when the connection comes from a
/// trusted proxy; then the chain is read from the nearest hop backwards, skipping trusted
/// proxies, and the first address that is not one is the client. `Forwarded` (RFC 7239) is
/// preferred to `X-Forwarded-For` when both are present.
pub fn client_ip(
    peer: IpAddr,
    forwarded: Option<&str>,
    x_forwarded_for: Option<&str>,
    trusted: &[Cidr],
) -> IpAddr {
    let peer = canonical(peer);
    if trusted.is_empty() || !trusted.iter().any(|t| t.contains(peer)) {
        return peer;
    }
    let chain: Vec<IpAddr> = match (forwarded, x_forwarded_for) {
        (Some(header), _) => header
            .split(',')
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    pair.trim()
                        .strip_prefix("for=")
                        .or_else(|| pair.trim().strip_prefix("For="))
                })
            })
            .filter_map(parse_node)
            .collect(),
        (None, Some(header)) => header.split(',').filter_map(parse_node).collect(),
        (None, None) => Vec::new(),
    };
    for hop in chain.iter().rev() {
        if !trusted.iter().any(|t| t.contains(*hop)) {
            return *hop;
        }
    }
    // Every hop is trusted: the furthest one is the best we know.
    chain.first().copied().unwrap_or(peer)
}

/// One address of a forwarding header: `203.0.113.7`, `"[2001:db8::1]:4711"`, `10.0.0.1:80`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let t = text.trim().trim_matches('"');
    let t = if let Some(rest) = t.strip_prefix('[') {
        rest.split(']').next()?
    } else if t.matches(':').count() == 1 {
        t.split(':').next()?
    } else {
        t
    };
    t.parse::<IpAddr>().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::V4(0.into()))
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().filter_map(|c| Cidr::parse(c).ok()).collect()
    }

    #[test]
    fn ranges_match_v4_and_v6() {
        let office = Cidr::parse("203.0.113.0/24").unwrap_or(Cidr {
            network: ip("0.0.0.0"),
            prefix: 32,
        });
        assert!(office.contains(ip("203.0.113.200")));
        assert!(!office.contains(ip("203.0.114.1")));
        assert!(
            office.contains(ip("::ffff:203.0.113.9")),
            "IPv4-mapped IPv6 is the IPv4 address"
        );
        let v6 = cidrs(&["2001:db8::/32"]);
        assert!(allowed(ip("2001:db8:1::5"), &v6));
        assert!(!allowed(ip("2001:db9::5"), &v6));
        assert!(!allowed(ip("203.0.113.9"), &v6), "families never mix");
        assert!(allowed(ip("198.51.100.1"), &[]), "no list, no restriction");
        assert_eq!(
            Cidr::parse("10.1.2.3/8").map(|c| c.to_string()),
            Ok("10.0.0.0/8".into())
        );
        assert!(Cidr::parse("0.0.0.0/0")
            .map(|c| c.contains(ip("8.8.8.8")))
            .unwrap_or(false));
        for bad in ["10.0.0.0/33", "2001:db8::/129", "localhost", "10.0.0/8", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let xff = Some("198.51.100.7, 10.0.0.5");
        assert_eq!(
            client_ip(ip("203.0.113.1"), None, xff, &trusted),
            ip("203.0.113.1"),
            "an untrusted peer cannot claim an address"
        );
        assert_eq!(
            client_ip(ip("10.0.0.9"), None, xff, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(
                ip("10.0.0.9"),
                None,
                Some("6.6.6.6, 198.51.100.7"),
                &trusted
            ),
            ip("198.51.100.7"),
            "spoofed hops left of the client are ignored"
        );
        assert_eq!(
            client_ip(ip("10.0.0.9"), None, xff, &[]),
            ip("10.0.0.9"),
            "no trusted proxies configured"
        );
        let forwarded = Some(r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711""#);
        assert_eq!(
            client_ip(ip("10.0.0.9"), forwarded, xff, &trusted),
            ip("2001:db8:cafe::17"),
            "Forwarded wins"
        );
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.9"), None, Some("10.1.1.1"), &trusted),
            ip("10.1.1.1"),
            "all hops trusted"
        );
        assert_eq!(
            client_ip(ip("10.0.0.9"), None, Some("garbage"), &trusted),
            ip("10.0.0.9")
        );
    }
}

/// The addresses a key or project accepts requests from. Empty: every address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpAllowList {
    ranges: Vec<Cidr>,
    /// A stored list that could not be read allows nothing: never more than intended.
    deny_all: bool,
}

impl IpAllowList {
    pub fn parse(entries: &[String]) -> Result<IpAllowList, CidrError> {
        let ranges = entries
            .iter()
            .map(|e| Cidr::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(IpAllowList {
            ranges,
            deny_all: false,
        })
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        !self.deny_all && allowed(ip, &self.ranges)
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty() && !self.deny_all
    }

    pub fn ranges(&self) -> &[Cidr] {
        &self.ranges
    }

    /// The stored form: a JSON array of CIDR strings.
    pub fn to_json(&self) -> String {
        serde_json::to_string(
            &self
                .ranges
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap_or_else(|_| "[]".into())
    }

    pub fn from_json(text: &str) -> IpAllowList {
        serde_json::from_str::<Vec<String>>(text)
            .ok()
            .and_then(|entries| IpAllowList::parse(&entries).ok())
            .unwrap_or(IpAllowList {
                ranges: Vec::new(),
                deny_all: true,
            })
    }
}

/// Serialised as the list of ranges, as the admin API and `--json` show it.
impl serde::Serialize for IpAllowList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.ranges.iter().map(|r| r.to_string()))
    }
}

impl fmt::Display for IpAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.deny_all {
            return f.write_str("(unreadable: no address allowed)");
        }
        if self.ranges.is_empty() {
            return f.write_str("any");
        }
        let list: Vec<String> = self.ranges.iter().map(|r| r.to_string()).collect();
        f.write_str(&list.join(","))
    }
}

#[cfg(test)]
mod allow_list_tests {
    use super::*;

    #[test]
    fn stored_lists_round_trip_and_unreadable_ones_allow_nothing() {
        let list =
            IpAllowList::parse(&["10.0.0.0/8".into(), "2001:db8::/32".into()]).unwrap_or_default();
        assert_eq!(IpAllowList::from_json(&list.to_json()), list);
        assert!(list.allows("10.1.2.3".parse().unwrap_or(IpAddr::V4(0.into()))));
        assert!(!list.allows("192.0.2.1".parse().unwrap_or(IpAddr::V4(0.into()))));
        assert!(IpAllowList::default().allows("192.0.2.1".parse().unwrap_or(IpAddr::V4(0.into()))));
        let broken = IpAllowList::from_json("[\"not a range\"]");
        assert!(!broken.allows("10.1.2.3".parse().unwrap_or(IpAddr::V4(0.into()))));
        assert!(!broken.is_empty());
        assert_eq!(list.to_string(), "10.0.0.0/8,2001:db8::/32");
        assert!(IpAllowList::parse(&["10.0.0.0/40".into()]).is_err());
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "9.99.109.200",
            "::1",
            "2001:db8::ff00:42:8329",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }
}
