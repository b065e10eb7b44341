//! The client's address, also behind a reverse proxy.
//!
//! Per-IP rate limits key on the TCP peer. Behind a TLS-terminating reverse proxy
//! (how the relay is meant to be exposed) every client shares the proxy's address,
//! so one client could spend everyone's budget. With `--trusted-proxy CIDR` the
//! relay takes the client address from the last `X-Forwarded-For` hop — the one
//! the proxy itself appended — but only when the TCP peer is inside a trusted
//! range; anyone else's `X-Forwarded-For` is ignored, so a direct client cannot
//! pick its own key. Hops further left were written by the client and are never
//! used.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;

/// An IP network, `addr/len` (a bare address is a single host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

impl Cidr {
    /// Whether `ip` is inside this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an address or CIDR range (e.g. 10.0.0.0/8, ::1)");
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let net = IpAddr::from_str(addr.trim())
            .map_err(|_| bad())?
            .to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) => l.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if len > max {
            return Err(bad());
        }
        Ok(Cidr { net, len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

/// The client address of a request from TCP peer `peer`: the last
/// `X-Forwarded-For` hop if `peer` is a trusted proxy and that hop is an address,
/// else `peer` itself.
pub(crate) fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.iter().any(|c| c.contains(peer)) {
        return Some(peer);
    }
    let last_hop = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim)
        .and_then(|hop| {
            IpAddr::from_str(hop)
                .ok()
                .or_else(|| SocketAddr::from_str(hop).ok().map(|s| s.ip()))
        });
    // A proxy that sent no usable hop is keyed as itself: stricter, never looser.
    Some(last_hop.map_or(peer, |ip| ip.to_canonical()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_bounds_are_exact() {
        let c = cidr("10.1.0.0/16");
        assert!(c.contains(ip("10.1.255.255")));
        assert!(!c.contains(ip("10.2.0.0")));
        assert!(!c.contains(ip("10.0.255.255")));
        assert!(cidr("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(cidr("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(!cidr("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(!cidr("::1").contains(ip("127.0.0.1")));
        assert!(cidr("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("::/129".parse::<Cidr>().is_err());
        assert!("nope/8".parse::<Cidr>().is_err());
        assert_eq!(cidr("fd00::/8").to_string(), "fd00::/8");
    }

    #[test]
    fn only_a_trusted_peer_is_believed_and_only_its_own_hop() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6, 1.2.3.4".parse().unwrap());
        let proxy = Some(ip("10.0.0.1"));
        let trusted = [cidr("10.0.0.0/8")];
        assert_eq!(client_ip(proxy, &h, &trusted), Some(ip("1.2.3.4")));
        assert_eq!(client_ip(proxy, &h, &[]), proxy);
        let direct = Some(ip("5.5.5.5"));
        assert_eq!(client_ip(direct, &h, &trusted), direct);
        h.append("x-forwarded-for", "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(client_ip(proxy, &h, &trusted), Some(ip("2001:db8::1")));
        h.append("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(proxy, &h, &trusted), proxy);
        assert_eq!(client_ip(None, &h, &trusted), None);
    }
}
