//! An IP filter (a blocklist): address ranges no connection is made to or taken from, as
//! libtorrent's `ip_filter`, Transmission's blocklists and qBittorrent's IP filter have.
//!
//! Reads the lists those clients read: PeerGuardian's text format
//! (`name:1.2.3.0-1.2.3.255`), eMule's `ipfilter.dat` (`001.002.003.000 - 001.002.003.255 ,
//! 000 , name`, where an access level above 127 allows), and plain lines of an address, a
//! CIDR block or a range, IPv6 too. `#` and `//` start comments.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IpFilterError {
    #[error("no address range in it ({ignored} lines not understood)")]
    Empty { ignored: usize },
}

/// Blocked ranges, merged and sorted, IPv4 as IPv4-mapped IPv6 so one search serves both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpFilter {
    ranges: Vec<(u128, u128)>,
    /// Lines that were neither a range, a comment nor blank.
    ignored: usize,
}

impl IpFilter {
    /// Parses a blocklist. Lines it cannot read are counted ([`IpFilter::ignored`]), not
    /// fatal, as every client treats the lists found on the web; a list with no range at
    /// all is an error (probably not a blocklist).
    pub fn parse(text: &str) -> Result<IpFilter, IpFilterError> {
        let mut ranges = Vec::new();
        let mut ignored = 0;
        for line in text.lines() {
            match parse_line(line) {
                Line::Blank => {}
                Line::Allowed => {}
                Line::Blocked(from, to) => ranges.push((key(from), key(to))),
                Line::Bad => ignored += 1,
            }
        }
        if ranges.is_empty() {
            return Err(IpFilterError::Empty { ignored });
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (from, to) in ranges {
            match merged.last_mut() {
                Some(last) if from <= last.1.saturating_add(1) => last.1 = last.1.max(to),
                _ => merged.push((from, to)),
            }
        }
        Ok(IpFilter {
            ranges: merged,
            ignored,
        })
    }

    pub fn blocks(&self, ip: IpAddr) -> bool {
        let ip = key(ip);
        let after = self.ranges.partition_point(|&(from, _)| from <= ip);
        after > 0 && self.ranges[after - 1].1 >= ip
    }

    /// Disjoint ranges blocked.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Lines that were not understood.
    pub fn ignored(&self) -> usize {
        self.ignored
    }
}

fn key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(ip) => u128::from(ip.to_ipv6_mapped()),
        IpAddr::V6(ip) => u128::from(ip),
    }
}

enum Line {
    Blank,
    Blocked(IpAddr, IpAddr),
    /// An eMule line whose access level lets it through.
    Allowed,
    Bad,
}

fn parse_line(line: &str) -> Line {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
        return Line::Blank;
    }
    // eMule: "from - to , level , description".
    let mut fields = line.split(',');
    let first = fields.next().unwrap_or_default().trim();
    if let Some(level) = fields.next() {
        if let (Ok(level), Some((from, to))) = (level.trim().parse::<u32>(), range(first)) {
            return if level <= 127 {
                Line::Blocked(from, to)
            } else {
                Line::Allowed
            };
        }
    }
    // A bare address, block or range.
    if let Some((from, to)) = range(line) {
        return Line::Blocked(from, to);
    }
    // PeerGuardian: "description:from-to"; the description may hold colons.
    if let Some((_, tail)) = line.rsplit_once(':') {
        if let Some((from, to)) = range(tail) {
            if from.is_ipv4() {
                return Line::Blocked(from, to);
            }
        }
    }
    Line::Bad
}

/// `from - to`, `address/prefix` or one address; `from` ≤ `to`, one family.
fn range(text: &str) -> Option<(IpAddr, IpAddr)> {
    let text = text.trim();
    if let Some((from, to)) = text.split_once('-') {
        let (from, to) = (address(from)?, address(to)?);
        return (from.is_ipv4() == to.is_ipv4() && key(from) <= key(to)).then_some((from, to));
    }
    if let Some((base, prefix)) = text.split_once('/') {
        let base = address(base)?;
        let prefix: u32 = prefix.trim().parse().ok()?;
        return match base {
            IpAddr::V4(ip) => {
                let host_bits = 32u32.checked_sub(prefix)?;
                let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
                let from = u32::from(ip) & mask;
                Some((
                    Ipv4Addr::from(from).into(),
                    Ipv4Addr::from(from | !mask).into(),
                ))
            }
            IpAddr::V6(ip) => {
                let host_bits = 128u32.checked_sub(prefix)?;
                let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
                let from = u128::from(ip) & mask;
                Some((
                    Ipv6Addr::from(from).into(),
                    Ipv6Addr::from(from | !mask).into(),
                ))
            }
        };
    }
    let ip = address(text)?;
    Some((ip, ip))
}

/// An address; IPv4 octets may carry leading zeros, as eMule lists write them.
fn address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if text.contains(':') {
        return text.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts.next().is_none().then_some(IpAddr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_formats_clients_read() {
        let filter = IpFilter::parse(
            "# a comment\n\
             \n\
             Some ISP: range:10.1.2.0-10.1.2.255\n\
             001.002.003.000 - 001.002.003.255 , 000 , eMule blocked\n\
             001.002.004.000 - 001.002.004.255 , 200 , eMule allowed\n\
             192.168.7.0/24\n\
             203.0.113.9\n\
             2001:db8::/32\n\
             not an address\n",
        )
        .unwrap();
        for blocked in [
            "10.1.2.0",
            "10.1.2.255",
            "1.2.3.77",
            "192.168.7.200",
            "203.0.113.9",
            "2001:db8:ffff::1",
            "::ffff:10.1.2.9",
        ] {
            assert!(filter.blocks(ip(blocked)), "{blocked}");
        }
        for allowed in [
            "10.1.3.0",
            "1.2.4.1",
            "192.168.8.0",
            "203.0.113.10",
            "2001:db9::1",
        ] {
            assert!(!filter.blocks(ip(allowed)), "{allowed}");
        }
        assert_eq!(filter.ignored(), 1);
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        let filter =
            IpFilter::parse("10.0.0.0-10.0.0.9\n10.0.0.5-10.0.0.20\n10.0.0.21\n10.0.1.0/24\n")
                .unwrap();
        assert_eq!(filter.len(), 2);
        assert!(filter.blocks(ip("10.0.0.21")));
        assert!(!filter.blocks(ip("10.0.0.22")));
        assert!(filter.blocks(ip("10.0.1.255")));
    }

    #[test]
    fn nonsense_is_refused_not_guessed() {
        assert_eq!(
            IpFilter::parse("hello\nworld\n"),
            Err(IpFilterError::Empty { ignored: 2 })
        );
        // A range backwards, mixed families, a bad prefix, a fifth octet, a 4-digit octet.
        for bad in [
            "10.0.0.9-10.0.0.1",
            "10.0.0.1-::1",
            "10.0.0.0/33",
            "1.2.3.4.5",
            "1.2.3.1000",
        ] {
            assert_eq!(
                IpFilter::parse(bad),
                Err(IpFilterError::Empty { ignored: 1 }),
                "{bad}"
            );
        }
        // The whole IPv4 space and the whole IPv6 space, by prefix 0.
        let all = IpFilter::parse("0.0.0.0/0\n::/0\n").unwrap();
        assert!(all.blocks(ip("255.255.255.255")) && all.blocks(ip("::1")));
    }
}
