//! The SSRF guard for destinations made through the API: their URLs must point
//! at public addresses. Checked when a destination is created or changed (every
//! address its host resolves to must be public), and again at every connection
//! (a resolver that hands the HTTP client only public addresses, so a DNS answer
//! that changes after the check cannot reach an internal host). IP-literal URLs
//! never reach the resolver, so attempts check them directly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{Ipv4Net, Ipv6Net};

/// IPv4 networks that are not publicly routable.
const V4_BLOCKED: &[&str] = &[
    "0.0.0.0/8",          // "this network", unspecified
    "10.0.0.0/8",         // private
    "100.64.0.0/10",      // carrier-grade NAT
    "127.0.0.0/8",        // loopback
    "169.254.0.0/16",     // link-local (cloud metadata lives here)
    "172.16.0.0/12",      // private
    "192.0.0.0/24",       // IETF protocol assignments
    "192.0.2.0/24",       // documentation
    "192.88.99.0/24",     // 6to4 relay anycast
    "192.168.0.0/16",     // private
    "198.18.0.0/15",      // benchmarking
    "198.51.100.0/24",    // documentation
    "203.0.113.0/24",     // documentation
    "224.0.0.0/4",        // multicast
    "240.0.0.0/4",        // reserved
    "255.255.255.255/32", // broadcast
];

/// IPv6 networks that are not publicly routable (embedded IPv4 is checked separately).
const V6_BLOCKED: &[&str] = &[
    "::/128",        // unspecified
    "::1/128",       // loopback
    "::/96",         // IPv4-compatible (deprecated)
    "100::/64",      // discard
    "2001::/23",     // IETF protocol assignments
    "2001:db8::/32", // documentation
    // Local-use NAT64 (RFC 8215): translates to whatever IPv4 network the local
    // operator chose, and its embedded address sits at a place that depends on
    // the prefix length, so the whole range is refused (IANA: not global).
    "64:ff9b:1::/48",
    "fc00::/7",  // unique local
    "fe80::/10", // link-local
    "fec0::/10", // site-local (deprecated)
    "ff00::/8",  // multicast
];

fn v4_public(ip: Ipv4Addr) -> bool {
    !V4_BLOCKED
        .iter()
        .any(|n| n.parse::<Ipv4Net>().expect("valid net").contains(&ip))
}

fn v6_public(ip: Ipv6Addr) -> bool {
    // IPv4-mapped (::ffff:a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d, RFC
    // 2765), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address
    // that decides.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_public(v4);
    }
    let seg = ip.segments();
    if seg[..6] == [0, 0, 0, 0, 0xffff, 0] {
        let o = ip.octets();
        return v4_public(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        let o = ip.octets();
        return v4_public(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if seg[0] == 0x2002 {
        let o = ip.octets();
        return v4_public(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    !V6_BLOCKED
        .iter()
        .any(|n| n.parse::<Ipv6Net>().expect("valid net").contains(&ip))
}

/// Whether an address is publicly routable.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_public(v4),
        IpAddr::V6(v6) => v6_public(v6),
    }
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The host resolves to (or is) a non-public address.
    #[error("the destination URL points at a non-public address ({0}); only public addresses are allowed unless server.allow_private_destinations = true")]
    NonPublic(IpAddr),
    /// The host does not resolve.
    #[error("the destination host does not resolve: {0}")]
    Unresolvable(String),
    /// No host in the URL.
    #[error("the destination URL has no host")]
    NoHost,
}

/// The IP of a URL whose host is an address literal.
pub fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// Checks a URL at creation time: every address it resolves to must be public.
pub async fn check(url: &url::Url) -> Result<(), Refused> {
    if let Some(ip) = literal_ip(url) {
        return if is_public(ip) {
            Ok(())
        } else {
            Err(Refused::NonPublic(ip))
        };
    }
    let host = url.host_str().ok_or(Refused::NoHost)?;
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Refused::Unresolvable(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(Refused::Unresolvable(host.to_string()));
    }
    match addrs.iter().find(|a| !is_public(a.ip())) {
        Some(bad) => Err(Refused::NonPublic(bad.ip())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classifies_addresses() {
        for bad in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.5",
            "198.51.100.1",
            "203.0.113.9",
            "198.18.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001:db8::1",
            "::127.0.0.1",
            "fec0::1",
            // Local-use NAT64 (RFC 8215) and IPv4-translated (RFC 2765) forms.
            "64:ff9b:1::7f00:1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1:7f00:0:100::",
            "64:ff9b:1::808:808",
            "::ffff:0:7f00:1",
            "::ffff:0:a00:1",
            "::ffff:0:a9fe:a9fe",
        ] {
            assert!(!is_public(ip(bad)), "{bad} must be refused");
        }
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "::ffff:0:808:808",
        ] {
            assert!(is_public(ip(good)), "{good} is public");
        }
    }

    #[tokio::test]
    async fn checks_urls() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(matches!(
            check(&u("http://127.0.0.1:9000/x")).await,
            Err(Refused::NonPublic(_))
        ));
        assert!(matches!(
            check(&u("http://[::1]/x")).await,
            Err(Refused::NonPublic(_))
        ));
        assert!(matches!(
            check(&u("http://[::ffff:7f00:1]/")).await,
            Err(Refused::NonPublic(_))
        ));
        // Non-decimal IPv4 forms are normalised by the URL parser, then refused.
        assert!(matches!(
            check(&u("http://0x7f.1/")).await,
            Err(Refused::NonPublic(_))
        ));
        assert!(matches!(
            check(&u("http://2130706433/")).await,
            Err(Refused::NonPublic(_))
        ));
        assert!(matches!(
            check(&u("http://localhost:1/")).await,
            Err(Refused::NonPublic(_))
        ));
        assert!(check(&u("http://93.184.215.14/")).await.is_ok());
    }

    #[tokio::test]
    async fn the_resolver_drops_private_answers() {
        use tower_service::Service as _;
        let name = "localhost".parse().unwrap();
        let mut guarded = crate::dispatch::client::DeliveryClient::resolver(true);
        assert!(
            guarded.call(name).await.is_err(),
            "localhost has only loopback addresses"
        );
        let name = "localhost".parse().unwrap();
        let mut open = crate::dispatch::client::DeliveryClient::resolver(false);
        assert!(open.call(name).await.unwrap().next().is_some());
    }
}
