//! Tracker URLs: the only place a tracker address from a torrent or magnet is parsed.
//!
//! Only `http`, `https` and `udp` are accepted (SSRF hygiene: a torrent must not make us
//! speak `file:`, `gopher:` or anything else to an address of its choosing). The host is
//! kept as text; it is resolved by the driver, which also checks where a redirect leads.

use std::fmt;
use std::net::IpAddr;

/// The transport a tracker is spoken to over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
    Udp,
}

/// A parsed tracker URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrackerUrl {
    pub scheme: Scheme,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query as given, starting with `/` (`/` when absent). Unused for UDP.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("unsupported tracker scheme (only http, https and udp): {0}")]
    Scheme(String),
    #[error("tracker URL has no host: {0}")]
    NoHost(String),
    #[error("bad port in tracker URL: {0}")]
    Port(String),
    #[error("tracker URL is too long or contains spaces or control characters")]
    Malformed,
}

/// URLs longer than this are refused (no real tracker needs more).
const MAX_URL_LEN: usize = 2048;

impl TrackerUrl {
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        if text.len() > MAX_URL_LEN || text.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(UrlError::Malformed);
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| UrlError::Scheme(text.to_owned()))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "udp" => Scheme::Udp,
            _ => return Err(UrlError::Scheme(scheme.to_owned())),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        // Credentials in the authority are not ours to send anywhere.
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| UrlError::NoHost(text.to_owned()))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost(text.to_owned()));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| UrlError::Port(text.to_owned()))?,
            None => match scheme {
                Scheme::Http => 80,
                Scheme::Https => 443,
                Scheme::Udp => return Err(UrlError::Port(text.to_owned())),
            },
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(TrackerUrl {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// The host as an IP address, when it is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The scrape URL (BEP 48 convention): the last path segment `announce` becomes
    /// `scrape`; trackers without that segment do not support scrape.
    pub fn scrape_url(&self) -> Option<TrackerUrl> {
        if self.scheme == Scheme::Udp {
            return Some(self.clone());
        }
        let (path, query) = self
            .path
            .split_once('?')
            .map_or((self.path.as_str(), None), |(p, q)| (p, Some(q)));
        let slash = path.rfind('/')?;
        let last = &path[slash + 1..];
        let rest = last.strip_prefix("announce")?;
        let mut new_path = format!("{}scrape{rest}", &path[..=slash]);
        if let Some(q) = query {
            new_path.push('?');
            new_path.push_str(q);
        }
        Some(TrackerUrl {
            path: new_path,
            ..self.clone()
        })
    }

    /// `host:port` as written in a `Host` header or a log line.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for TrackerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Udp => "udp",
        };
        write!(f, "{scheme}://{}", self.authority())?;
        if self.scheme != Scheme::Udp {
            f.write_str(&self.path)?;
        }
        Ok(())
    }
}

/// Whether an address is on this host or a private/link-local network: a tracker on a
/// public address must not redirect us to one of these.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // 100.64/10 CGNAT
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_schemes() {
        let u = TrackerUrl::parse("http://Tracker.example:6969/announce?passkey=x").unwrap();
        assert_eq!(u.scheme, Scheme::Http);
        assert_eq!(u.host, "tracker.example");
        assert_eq!(u.port, 6969);
        assert_eq!(u.path, "/announce?passkey=x");
        let u = TrackerUrl::parse("https://t.example/announce").unwrap();
        assert_eq!((u.scheme, u.port), (Scheme::Https, 443));
        let u = TrackerUrl::parse("udp://[::1]:1337/announce").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Udp, "::1", 1337)
        );
        assert_eq!(u.to_string(), "udp://[::1]:1337");
    }

    #[test]
    fn refuses_other_schemes_and_junk() {
        for bad in [
            "file:///etc/passwd",
            "gopher://x:70/",
            "ftp://x/announce",
            "http:///announce",
            "udp://host",
            "http://host:0/",
            "http://host:99999/",
            "http://a b/",
            "announce",
        ] {
            assert!(TrackerUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(TrackerUrl::parse(&format!("http://x/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn drops_credentials() {
        let u = TrackerUrl::parse("http://user:pw@host:80/announce").unwrap();
        assert_eq!(u.host, "host");
    }

    #[test]
    fn scrape_convention() {
        let s = |u: &str| {
            TrackerUrl::parse(u)
                .unwrap()
                .scrape_url()
                .map(|u| u.to_string())
        };
        assert_eq!(
            s("http://x/announce").as_deref(),
            Some("http://x:80/scrape")
        );
        assert_eq!(
            s("http://x/a/announce.php?k=1").as_deref(),
            Some("http://x:80/a/scrape.php?k=1")
        );
        assert_eq!(s("http://x/ann"), None);
        assert_eq!(s("http://x/announce/x"), None);
    }

    #[test]
    fn local_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "100.64.0.1",
            "0.0.0.0",
        ] {
            assert!(is_local(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2001:db8::1", "100.128.0.1"] {
            assert!(!is_local(ip.parse().unwrap()), "{ip}");
        }
    }
}
