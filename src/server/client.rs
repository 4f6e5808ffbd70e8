//! Who is on the other end of a request: the connection's peer and whether it is TLS (recorded
//! by the listener), and what a trusted reverse proxy says about the real client. Forwarded
//! headers are believed only from peers in `trusted_proxies`; from anyone else they are ignored.
use super::config::Settings;
use axum::http::{header, request::Parts, Extensions, HeaderMap};
use std::net::{IpAddr, SocketAddr};

/// Facts about a request's connection, put in its extensions by the listener.
#[derive(Clone, Copy, Debug)]
pub struct Transport {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// The most `X-Forwarded-For` hops that are read, from the right.
const MAX_FORWARDED_HOPS: usize = 32;

/// The client's address: the peer, or — when the peer is a trusted proxy — the nearest address
/// in `X-Forwarded-For` that is not itself a trusted proxy. Only the last header is read (the
/// one the proxy appends to), from the right; a hop that cannot be read ends the walk.
pub fn client_ip(headers: &HeaderMap, extensions: &Extensions, settings: &Settings) -> IpAddr {
    let peer = peer_ip(extensions);
    if !is_trusted(peer, settings) {
        return peer;
    }
    let Some(forwarded) = headers.get_all("x-forwarded-for").iter().next_back() else {
        return peer;
    };
    let mut nearest = peer;
    let hops = forwarded.as_bytes().rsplit(|byte| *byte == b',');
    for hop in hops.take(MAX_FORWARDED_HOPS) {
        let Some(address) = parse_hop(hop) else {
            break;
        };
        nearest = address;
        if !is_trusted(address, settings) {
            break;
        }
    }
    nearest
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (some proxies add it).
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(hop).ok()?.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

/// What limits count a client by: its address, or for IPv6 its /64 (one subscriber's network),
/// so rotating through the addresses of one network gains nothing.
pub fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(network.into())
            }
        },
        v4 => v4,
    }
}

/// Whether the browser reached us over https: a TLS connection, a trusted proxy that says so,
/// or a configured https public URL.
pub fn is_https(headers: &HeaderMap, extensions: &Extensions, settings: &Settings) -> bool {
    if extensions.get::<Transport>().is_some_and(|t| t.tls) {
        return true;
    }
    if settings
        .public_url
        .as_ref()
        .is_some_and(|url| url.origin.starts_with("https://"))
    {
        return true;
    }
    // The proxy nearest us speaks last: the last header, its rightmost entry.
    is_trusted(peer_ip(extensions), settings)
        && headers
            .get_all("x-forwarded-proto")
            .iter()
            .next_back()
            .and_then(|value| value.to_str().ok())
            .and_then(|protos| protos.rsplit(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// `scheme://host[:port]` as the client sees this server: the public URL when configured,
/// else the request's Host (only if it looks like one). `None` when there is no usable Host.
pub fn own_origin(
    headers: &HeaderMap,
    extensions: &Extensions,
    settings: &Settings,
) -> Option<String> {
    if let Some(url) = &settings.public_url {
        return Some(url.origin.clone());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| is_host(host))?;
    let scheme = if is_https(headers, extensions, settings) {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// Absolute bases for links in answers: `(http base, ws base)`, empty (relative links) when
/// the server does not know its own origin.
pub fn base_urls(parts: &Parts, settings: &Settings) -> (String, String) {
    if let Some(url) = &settings.public_url {
        return (url.origin.clone(), url.ws_base.clone());
    }
    match own_origin(&parts.headers, &parts.extensions, settings) {
        Some(origin) => {
            let ws = origin
                .replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1);
            (origin, ws)
        }
        None => (String::new(), String::new()),
    }
}

/// A host name or address with an optional port: nothing that could bend a URL.
fn is_host(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

fn peer_ip(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<Transport>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |transport| transport.peer.ip())
}

fn is_trusted(address: IpAddr, settings: &Settings) -> bool {
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    };
    settings
        .trusted_proxies
        .iter()
        .any(|network| network.contains(&address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::token::ApiToken;

    fn settings(proxies: &[&str]) -> Settings {
        let mut settings = Settings::with_defaults(
            "data".into(),
            ApiToken::parse("a-perfectly-fine-token").unwrap(),
        );
        settings.trusted_proxies = proxies.iter().map(|p| p.parse().unwrap()).collect();
        settings
    }

    fn request(peer: &str, forwarded_for: Option<&str>) -> (HeaderMap, Extensions) {
        let mut headers = HeaderMap::new();
        if let Some(value) = forwarded_for {
            headers.insert("x-forwarded-for", value.parse().unwrap());
        }
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        let mut extensions = Extensions::new();
        extensions.insert(Transport {
            peer: peer.parse().unwrap(),
            tls: false,
        });
        (headers, extensions)
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let untrusted = settings(&[]);
        let (headers, extensions) = request("203.0.113.9:5000", Some("198.51.100.1"));
        assert_eq!(
            client_ip(&headers, &extensions, &untrusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert!(!is_https(&headers, &extensions, &untrusted));

        let trusted = settings(&["10.0.0.0/8"]);
        let (headers, extensions) = request(
            "10.1.2.3:5000",
            Some("198.51.100.66, 198.51.100.1, 10.9.9.9"),
        );
        // The client a spoofer cannot choose: the first untrusted hop from the right.
        assert_eq!(
            client_ip(&headers, &extensions, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert!(is_https(&headers, &extensions, &trusted));
        let (headers, extensions) = request("10.1.2.3:5000", Some("198.51.100.3:4711"));
        assert_eq!(
            client_ip(&headers, &extensions, &trusted),
            "198.51.100.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            address_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        let (headers, extensions) = request("10.1.2.3:5000", Some("garbage"));
        let (mut parts, _) = axum::http::Request::new(()).into_parts();
        parts
            .headers
            .insert(header::HOST, "localhost:8000".parse().unwrap());
        assert_eq!(base_urls(&parts, &trusted).1, "ws://localhost:8000");
        parts
            .headers
            .insert(header::HOST, "evil/x".parse().unwrap());
        assert_eq!(base_urls(&parts, &trusted).0, "");
        assert_eq!(
            client_ip(&headers, &extensions, &trusted),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }
}
