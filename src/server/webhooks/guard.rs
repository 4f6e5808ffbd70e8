//! Where webhooks may go: http(s) URLs of bounded length, and, unless the operator allows
//! private destinations, only hosts whose every address is public. Checked at registration and
//! again at each connection: the sender's client resolves through `GuardedResolver`, so it
//! connects only to addresses that were just checked (a DNS answer can change in between).
use http_client::{
    dns::{Addrs, Name, Resolve, Resolving},
    Url,
};
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

/// The longest endpoint URL accepted.
pub const MAX_URL_LENGTH: usize = 2048;
/// How long a registration waits for DNS.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a destination is refused; the message is safe to show to the caller.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("the url must be an absolute http:// or https:// URL of at most {MAX_URL_LENGTH} bytes, without user name or password")]
    Malformed,
    #[error("the url's host resolves to a loopback, private, link-local or otherwise non-public address, which is refused")]
    Private,
    #[error("the url's host does not resolve")]
    Unresolvable,
}

/// Parses an endpoint URL: http(s), a host, no credentials, bounded length.
pub fn parse_url(text: &str) -> Result<Url, Refused> {
    if text.len() > MAX_URL_LENGTH {
        return Err(Refused::Malformed);
    }
    let url = Url::parse(text).map_err(|_| Refused::Malformed)?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|host| !host.is_empty())
        && url.username().is_empty()
        && url.password().is_none();
    if plain {
        Ok(url)
    } else {
        Err(Refused::Malformed)
    }
}

/// Checks a URL's destination now: an address literal directly, a name by resolving it and
/// checking every address.
pub async fn check_destination(url: &Url, allow_private: bool) -> Result<(), Refused> {
    if allow_private {
        return Ok(());
    }
    match literal_ip(url) {
        Some(ip) => check_ip(ip),
        None => {
            let name = url.host_str().ok_or(Refused::Malformed)?;
            let addrs = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, 0)))
                .await
                .map_err(|_| Refused::Unresolvable)?
                .map_err(|_| Refused::Unresolvable)?;
            public_only(addrs).map(|_| ())
        }
    }
}

/// Checks a URL whose host is an address literal (which a client connects to without asking
/// its resolver); names pass here and are checked by `GuardedResolver` as they resolve.
pub fn check_literal(url: &Url, allow_private: bool) -> Result<(), Refused> {
    match literal_ip(url) {
        Some(ip) if !allow_private => check_ip(ip),
        _ => Ok(()),
    }
}

/// The host as an address, when it is one (`[::1]` without its brackets).
fn literal_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn check_ip(ip: IpAddr) -> Result<(), Refused> {
    if is_public(ip) {
        Ok(())
    } else {
        Err(Refused::Private)
    }
}

/// Every address, if all are public; a name with none is unresolvable.
fn public_only(addrs: impl Iterator<Item = SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
    let addrs: Vec<SocketAddr> = addrs.collect();
    if addrs.is_empty() {
        return Err(Refused::Unresolvable);
    }
    if addrs.iter().all(|addr| is_public(addr.ip())) {
        Ok(addrs)
    } else {
        Err(Refused::Private)
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local (where
/// cloud metadata services answer), shared (CGNAT), unspecified, broadcast, multicast,
/// documentation or reserved; IPv6 forms that embed an IPv4 address are judged by it.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

/// IPv6: forms that carry an IPv4 address (mapped, translated, NAT64, 6to4) are judged by
/// that address; ranges that reach no single public host (Teredo, whose client address is
/// hidden, NAT64's local-use prefix, site-local, discard, benchmarking, ORCHID,
/// documentation) are refused outright.
fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // SIIT-translated ::ffff:0:a.b.c.d and NAT64's well-known 64:ff9b::/96.
    if segments[..6] == [0, 0, 0, 0, 0xffff, 0] || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded(segments[6], segments[7]));
    }
    // 6to4 (2002::/16) routes to the IPv4 address in its next 32 bits.
    if segments[0] == 0x2002 {
        return is_public_v4(embedded(segments[1], segments[2]));
    }
    let refused_range = segments[..2] == [0x2001, 0] // Teredo 2001::/32
        || segments[..3] == [0x64, 0xff9b, 1] // NAT64 local use 64:ff9b:1::/48
        || segments[0] & 0xffc0 == 0xfec0 // site-local fec0::/10
        || segments[..4] == [0x100, 0, 0, 0] // discard-only 100::/64
        || segments[..3] == [0x2001, 2, 0] // benchmarking 2001:2::/48
        || (segments[0] == 0x2001 && segments[1] & 0xfff0 == 0x10) // ORCHID 2001:10::/28
        || (segments[0] == 0x2001 && segments[1] & 0xfff0 == 0x20) // ORCHIDv2 2001:20::/28
        || segments[..2] == [0x2001, 0xdb8]; // documentation 2001:db8::/32
    !(refused_range
        || ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        // IPv4-compatible (deprecated) ::a.b.c.d.
        || segments[..6] == [0; 6])
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (100.64.0.0/10) and reserved (240.0.0.0/4).
        || (a == 100 && (64..128).contains(&b))
        || a >= 240
        // IETF protocol assignments (192.0.0.0/24) and benchmarking (198.18.0.0/15).
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19)))
}

/// The sender's resolver: resolves with the system's resolver and hands the client only
/// addresses that pass the guard, so a name that starts resolving to a private address after
/// registration is refused at connection time.
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(resolve_checked(
            name.as_str().to_owned(),
            self.allow_private,
        ))
    }
}

async fn resolve_checked(
    host: String,
    allow_private: bool,
) -> Result<Addrs, Box<dyn std::error::Error + Send + Sync>> {
    let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
    let addrs: Vec<SocketAddr> = if allow_private {
        addrs.collect()
    } else {
        public_only(addrs)?
    };
    Ok(Box::new(addrs.into_iter()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused() {
        for text in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "64:ff9b:1::a00:1",
            "fec0::1",
            "100::1",
            "2001:2::1",
            "2001:10::1",
            "2001:db8::1",
        ] {
            assert!(!is_public(text.parse().unwrap()), "{text} passed");
        }
        for text in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "2002:5db8:d822::1",
            "64:ff9b::5db8:d822",
        ] {
            assert!(is_public(text.parse().unwrap()), "{text} refused");
        }
    }

    #[test]
    fn only_plain_http_urls_parse() {
        assert!(parse_url("https://example.com/hook").is_ok());
        assert!(parse_url("http://127.0.0.1:8080/").is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "https://user:pw@example.com/",
            "example.com/hook",
            "",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} parsed");
        }
        assert!(parse_url(&format!(
            "https://example.com/{}",
            "a".repeat(MAX_URL_LENGTH)
        ))
        .is_err());
    }
}
