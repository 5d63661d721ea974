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

/// The header a trusted reverse proxy reports the client's address in. Exactly one is read:
/// reading both would let a client write the one the proxy does not (a client's own
/// `Forwarded: for=10.9.9.9` would beat the proxy's `X-Forwarded-For`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, AWS and GCP load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
}

impl ClientIpHeader {
    pub fn parse(text: &str) -> Option<ClientIpHeader> {
        match text.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Some(ClientIpHeader::XForwardedFor),
            "forwarded" => Some(ClientIpHeader::Forwarded),
            _ => None,
        }
    }
}

/// The client's address; `None` when it cannot be known, which an IP allow-list refuses: a
/// trusted proxy reported a hop it could not name (`for=unknown`, an obfuscated `for=_hidden`,
/// garbage), or sent only the forwarding header Tollgate was not told to read (`other_sent`: a
/// proxy configured differently from Tollgate, whose clients would otherwise all look like the
/// proxy itself). Forwarding headers are believed only from a trusted proxy: then every line of
/// the configured `header` (`lines`, in order) makes one chain, read from the nearest hop
/// backwards, skipping trusted proxies; the first other hop is the client. A trusted peer that
/// sends neither header made the request itself.
pub fn client_address<'a>(
    peer: IpAddr,
    header: ClientIpHeader,
    lines: impl Iterator<Item = &'a [u8]>,
    other_sent: bool,
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let peer = canonical(peer);
    if !trusted.iter().any(|t| t.contains(peer)) {
        return Some(peer);
    }
    let mut chain: Vec<Option<IpAddr>> = Vec::new();
    for line in lines {
        // Split before decoding: a hop that is not text names nobody, but the hops the proxy
        // appended after it still count.
        for element in line.split(|b| *b == b',') {
            let element = std::str::from_utf8(element).ok();
            chain.push(match header {
                ClientIpHeader::XForwardedFor => element.and_then(parse_node),
                ClientIpHeader::Forwarded => element.and_then(forwarded_for).and_then(parse_node),
            });
        }
    }
    let Some(furthest) = chain.first().copied() else {
        return if other_sent { None } else { Some(peer) };
    };
    for hop in chain.iter().rev() {
        match hop {
            None => return None,
            Some(ip) if trusted.iter().any(|t| t.contains(*ip)) => continue,
            Some(ip) => return Some(*ip),
        }
    }
    // Every hop is trusted: the furthest one is the best we know.
    furthest
}

/// The `for=` parameter of one `Forwarded` element (parameter names are case-insensitive).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then_some(value)
    })
}

/// One address of a forwarding header: `203.0.113.7`, `"[2001:db8::1]:4711"`, `10.0.0.1:80`,
/// `2001:db8::1`. Anything else (`unknown`, `_hidden`, garbage) is `None`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    let t = t
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(t);
    let t = if let Some(rest) = t.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        address
    } else if let Some((address, port)) = t.split_once(':').filter(|_| t.matches(':').count() == 1)
    {
        if !is_port(port) {
            return None;
        }
        address
    } else {
        t
    };
    t.parse::<IpAddr>().ok().map(canonical)
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
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

    fn address(
        peer: &str,
        header: ClientIpHeader,
        lines: &[&str],
        trusted: &[Cidr],
    ) -> Option<IpAddr> {
        client_address(
            ip(peer),
            header,
            lines.iter().map(|l| l.as_bytes()),
            false,
            trusted,
        )
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        use ClientIpHeader::*;
        let trusted = cidrs(&["10.0.0.0/8"]);
        let xff = ["198.51.100.7, 10.0.0.5"];
        assert_eq!(
            address("203.0.113.1", XForwardedFor, &xff, &trusted),
            Some(ip("203.0.113.1")),
            "an untrusted peer cannot claim an address"
        );
        assert_eq!(
            address("10.0.0.9", XForwardedFor, &xff, &trusted),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            address(
                "10.0.0.9",
                XForwardedFor,
                &["6.6.6.6, 198.51.100.7"],
                &trusted
            ),
            Some(ip("198.51.100.7")),
            "spoofed hops left of the client are ignored"
        );
        assert_eq!(
            address("10.0.0.9", XForwardedFor, &xff, &[]),
            Some(ip("10.0.0.9")),
            "no trusted proxies configured"
        );
        assert_eq!(
            address("::ffff:10.0.0.9", XForwardedFor, &["10.1.1.1"], &trusted),
            Some(ip("10.1.1.1")),
            "all hops trusted"
        );
        assert_eq!(
            address("10.0.0.9", XForwardedFor, &[], &trusted),
            Some(ip("10.0.0.9")),
            "the proxy's own request"
        );
        assert_eq!(
            address(
                "10.0.0.9",
                XForwardedFor,
                &["6.6.6.6", "198.51.100.7"],
                &trusted
            ),
            Some(ip("198.51.100.7")),
            "a proxy that adds its own line: the lines make one chain, in order"
        );
        assert_eq!(
            address(
                "10.0.0.9",
                XForwardedFor,
                &["[2001:db8::1]:443, 192.0.2.1:8080"],
                &trusted
            ),
            Some(ip("192.0.2.1"))
        );
    }

    #[test]
    fn an_address_a_trusted_proxy_cannot_name_is_unknown_never_the_proxy() {
        use ClientIpHeader::*;
        let trusted = cidrs(&["10.0.0.0/8"]);
        for (header, line) in [
            (XForwardedFor, "garbage"),
            (XForwardedFor, "unknown"),
            (XForwardedFor, "192.0.2.1, "),
            (XForwardedFor, "192.0.2.1:http"),
            (XForwardedFor, "[2001:db8::1]x"),
            (Forwarded, "for=unknown"),
            (Forwarded, "for=_hidden"),
            (Forwarded, "proto=https"),
            (Forwarded, "for=\"[2001:db8::1\""),
        ] {
            assert_eq!(
                address("10.0.0.9", header, &[line], &trusted),
                None,
                "{line}"
            );
        }
        // Behind a named hop, an unreadable one further away does not matter, text or not.
        assert_eq!(
            address("10.0.0.9", XForwardedFor, &["garbage, 192.0.2.1"], &trusted),
            Some(ip("192.0.2.1"))
        );
        let bytes: &[u8] = b"\xff, 192.0.2.1";
        assert_eq!(
            client_address(
                ip("10.0.0.9"),
                XForwardedFor,
                [bytes].into_iter(),
                false,
                &trusted
            ),
            Some(ip("192.0.2.1")),
            "a client cannot hide behind bytes that are not text"
        );
        assert_eq!(
            client_address(
                ip("10.0.0.9"),
                XForwardedFor,
                std::iter::empty(),
                true,
                &trusted
            ),
            None,
            "a trusted proxy that sends only the other header is not its clients"
        );
        assert_eq!(
            client_address(
                ip("203.0.113.1"),
                XForwardedFor,
                std::iter::empty(),
                true,
                &trusted
            ),
            Some(ip("203.0.113.1")),
            "an untrusted peer is itself, whatever it sends"
        );
    }

    #[test]
    fn only_the_configured_header_is_read() {
        use ClientIpHeader::*;
        let trusted = cidrs(&["10.0.0.0/8"]);
        let forwarded = [r#"for=192.0.2.60;proto=http, For="[2001:db8:cafe::17]:4711""#];
        assert_eq!(
            address("10.0.0.9", Forwarded, &forwarded, &trusted),
            Some(ip("2001:db8:cafe::17")),
            "parameter names are case-insensitive"
        );
        assert_eq!(
            ClientIpHeader::parse("X-Forwarded-For"),
            Some(XForwardedFor)
        );
        assert_eq!(ClientIpHeader::parse("forwarded"), Some(Forwarded));
        assert_eq!(ClientIpHeader::parse("x-real-ip"), None);
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
