//! Where Keel's outgoing requests (webhook deliveries) may go: public addresses only, unless an
//! operator allows a network explicitly. Names are judged by what they resolve to, every time
//! a request is made (DNS may change after a URL was accepted), and a name with any address
//! that is not allowed is refused whole. Without this, a webhook URL pointing at loopback, a
//! private network or a cloud metadata service turns the delivery log into a port scanner.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// How long a name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The destinations policy: public addresses, plus `allowed` networks.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    allowed: Vec<IpNet>,
}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressError {
    /// `host` is, or resolves to, `ip`, an address of `class` that is not allowed.
    Refused { host: String, ip: IpAddr, class: &'static str },
    /// `host` did not resolve (or not in time).
    Unresolved { host: String },
}

impl fmt::Display for EgressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressError::Refused { host, ip, class } if host == &ip.to_string() => {
                write!(f, "refused: {ip} is a {class} address; only public addresses may be called (see webhook_allowed_networks)")
            }
            EgressError::Refused { host, ip, class } => write!(
                f,
                "refused: {host} resolves to {ip}, a {class} address; only public addresses may be called (see webhook_allowed_networks)"
            ),
            EgressError::Unresolved { host } => write!(f, "{host} does not resolve"),
        }
    }
}

impl std::error::Error for EgressError {}

impl Egress {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Refuses `ip` unless it is public or in an allowed network.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), EgressError> {
        let ip = ip.to_canonical();
        match special_use(ip) {
            Some(class) if !self.allowed.iter().any(|net| net.contains(&ip)) => {
                Err(EgressError::Refused { host: host.to_owned(), ip, class })
            }
            _ => Ok(()),
        }
    }

    /// The addresses of `host` (a name or an IP literal, IPv6 in brackets or not), each checked.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.check_ip(host, ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let unresolved = || EgressError::Unresolved { host: host.to_owned() };
        let addrs: Vec<SocketAddr> = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((bare, port)))
            .await
            .map_err(|_| unresolved())?
            .map_err(|_| unresolved())?
            .collect();
        if addrs.is_empty() {
            return Err(unresolved());
        }
        for addr in &addrs {
            self.check_ip(host, addr.ip())?;
        }
        Ok(addrs)
    }

    /// The host of an `http(s)` URL, checked: a literal address as it is, a name by what it
    /// resolves to now. A name that does not resolve passes (it cannot be reached either; each
    /// delivery checks again).
    pub async fn check_url(&self, url: &reqwest::Url) -> Result<(), EgressError> {
        let Some(host) = url.host_str() else { return Ok(()) };
        match self.resolve(host, url.port_or_known_default().unwrap_or(0)).await {
            Err(EgressError::Unresolved { .. }) => Ok(()),
            other => other.map(drop),
        }
    }

    /// A DNS resolver for reqwest that answers only with allowed addresses, so the address
    /// checked is the address connected to.
    pub fn resolver(self: &Arc<Self>) -> Arc<CheckedResolver> {
        Arc::new(CheckedResolver(self.clone()))
    }
}

pub struct CheckedResolver(Arc<Egress>);

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = self.0.clone();
        Box::pin(async move {
            let addrs = egress.resolve(name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The kind of a special-use address (RFC 6890 and its updates), `None` for a public one.
/// IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged by that address.
pub fn special_use(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(ip) => special_v4(ip),
        IpAddr::V6(ip) => special_v6(ip),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    match ip.octets() {
        [0, ..] => Some("this-network"),
        [10, ..] | [192, 168, ..] => Some("private"),
        [172, b, ..] if (16..32).contains(&b) => Some("private"),
        [100, b, ..] if (64..128).contains(&b) => Some("shared (carrier-grade NAT)"),
        [127, ..] => Some("loopback"),
        [169, 254, 169, 254] => Some("cloud metadata"),
        [169, 254, ..] => Some("link-local"),
        [192, 0, 0, _] | [192, 88, 99, _] => Some("reserved"),
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => Some("documentation"),
        [198, 18 | 19, ..] => Some("benchmarking"),
        [224..=239, ..] => Some("multicast"),
        [240..=255, ..] => Some("reserved"),
        _ => None,
    }
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| special_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => Some("unspecified"),
        [0, 0, 0, 0, 0, 0, 0, 1] => Some("loopback"),
        // IPv4-compatible (deprecated), and the IPv4/IPv6 translation prefix.
        [0, 0, 0, 0, 0, 0, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some("reserved"),
        // NAT64 (64:ff9b::/96) reaches the IPv4 address it carries.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => embedded(hi, lo),
        [0x64, 0xff9b, 1, ..] => Some("private"),
        [0x100, 0, 0, 0, ..] => Some("reserved"),
        [0x2001, 0xdb8, ..] => Some("documentation"),
        [0x2001, b, ..] if b < 0x200 => Some("reserved"),
        // 6to4 (2002::/16) reaches the IPv4 address in its next 32 bits.
        [0x2002, hi, lo, ..] => embedded(hi, lo),
        [0x3fff, b, ..] if b < 0x1000 => Some("documentation"),
        [a, ..] if a & 0xfe00 == 0xfc00 => Some("private"),
        [a, ..] if a & 0xffc0 == 0xfe80 => Some("link-local"),
        [a, ..] if a & 0xffc0 == 0xfec0 => Some("private"),
        [a, ..] if a & 0xff00 == 0xff00 => Some("multicast"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> Option<&'static str> {
        special_use(ip.parse().unwrap())
    }

    #[test]
    fn loopback_private_link_local_and_metadata_addresses_are_special_in_every_spelling() {
        for (ip, expected) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("64:ff9b::7f00:1", "loopback"),
            ("2002:7f00:1::", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("fd00:ec2::254", "private"),
            ("fc00::1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("100.100.100.200", "shared (carrier-grade NAT)"),
            ("0.0.0.0", "this-network"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("192.0.2.10", "documentation"),
            ("2001:db8::1", "documentation"),
        ] {
            assert_eq!(class(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn public_addresses_are_not_special() {
        for ip in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "2a00:1450:4001::200e", "64:ff9b::808:808"] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[test]
    fn allowed_networks_let_special_addresses_through() {
        let egress = Egress::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(egress.check_ip("127.0.0.1", "127.0.0.1".parse().unwrap()).is_ok());
        assert!(egress.check_ip("x", "::ffff:127.0.0.1".parse().unwrap()).is_ok(), "a mapped address is its IPv4 address");
        assert!(egress.check_ip("::1", "::1".parse().unwrap()).is_err());
        assert!(egress.check_ip("10.0.0.1", "10.0.0.1".parse().unwrap()).is_err());
    }

    #[tokio::test]
    async fn urls_are_judged_by_their_address_however_it_is_spelled() {
        let egress = Egress::default();
        for url in [
            "http://0x7f000001/",
            "http://2130706433/",
            "http://127.1:8080/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost/",
        ] {
            let err = egress.check_url(&reqwest::Url::parse(url).unwrap()).await.unwrap_err();
            assert!(matches!(err, EgressError::Refused { class: "loopback", .. }), "{url}: {err}");
        }
        assert!(egress.check_url(&reqwest::Url::parse("https://203.0.114.1/").unwrap()).await.is_ok());
    }
}
