//! The network interfaces local discovery multicasts on. A host on several networks (a
//! laptop on Wi-Fi and Ethernet, a router, a machine with a VPN) reaches each LAN only
//! through that LAN's interface: the system's choice of one covers a single network,
//! which is why libtorrent runs discovery on every interface it listens on.

use std::net::{IpAddr, Ipv4Addr};

/// Where one family's multicast goes: an IPv4 interface is named by an address of it, an
/// IPv6 one by its index. The unspecified address and index 0 leave the choice to the
/// system (its multicast route).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interfaces {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<u32>,
}

impl Interfaces {
    /// The interfaces for a listener on `ip`: the one holding it, or, for an unspecified
    /// address, every interface that is up and can multicast, loopback aside. Where none
    /// is found (or the system cannot be asked), the system's choice.
    pub fn for_listener(ip: IpAddr) -> Interfaces {
        let found = if ip.is_unspecified() {
            up_multicast()
        } else {
            holding(ip)
        };
        Interfaces {
            v4: or_system_choice(found.v4, Ipv4Addr::UNSPECIFIED),
            v6: or_system_choice(found.v6, 0),
        }
    }
}

fn or_system_choice<T>(found: Vec<T>, system: T) -> Vec<T> {
    if found.is_empty() {
        vec![system]
    } else {
        found
    }
}

/// Every interface that is up, can multicast and is not loopback: each IPv4 one once (by
/// its first address, as joining a group twice on one interface fails), and each IPv6
/// one with an address.
#[cfg(unix)]
fn up_multicast() -> Interfaces {
    use nix::net::if_::InterfaceFlags as F;
    let mut found = Interfaces::default();
    let mut v4_names: Vec<String> = Vec::new();
    for (name, flags, ip, _) in entries() {
        if !flags.contains(F::IFF_UP | F::IFF_MULTICAST) || flags.contains(F::IFF_LOOPBACK) {
            continue;
        }
        match ip {
            IpAddr::V4(ip) if !v4_names.contains(&name) => {
                v4_names.push(name);
                found.v4.push(ip);
            }
            IpAddr::V6(_) => {
                if let Some(index) = index_of(&name).filter(|i| !found.v6.contains(i)) {
                    found.v6.push(index);
                }
            }
            IpAddr::V4(_) => {}
        }
    }
    found
}

/// The interface holding `ip`, in its family's field.
#[cfg(unix)]
fn holding(ip: IpAddr) -> Interfaces {
    let ip = ip.to_canonical();
    let mut found = Interfaces::default();
    match ip {
        IpAddr::V4(ip) => found.v4.push(ip),
        IpAddr::V6(_) => {
            let name = entries()
                .find(|(_, _, a, _)| *a == ip)
                .map(|(name, ..)| name);
            found.v6.extend(name.and_then(|name| index_of(&name)));
        }
    }
    found
}

/// Every address of every interface, with the interface's name and flags and the
/// address's netmask.
#[cfg(unix)]
fn entries() -> impl Iterator<
    Item = (
        String,
        nix::net::if_::InterfaceFlags,
        IpAddr,
        Option<IpAddr>,
    ),
> {
    fn ip(address: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
        match address.as_sockaddr_in() {
            Some(v4) => Some(IpAddr::V4(v4.ip())),
            None => Some(IpAddr::V6(address.as_sockaddr_in6()?.ip())),
        }
    }
    let all = nix::ifaddrs::getifaddrs().into_iter().flatten();
    all.filter_map(|entry| {
        let address = ip(entry.address.as_ref()?)?;
        let netmask = entry.netmask.as_ref().and_then(ip);
        Some((entry.interface_name, entry.flags, address, netmask))
    })
}

/// The networks this host is on: each address of an interface that is up, with its
/// prefix length.
#[cfg(unix)]
pub fn local_networks() -> Vec<Network> {
    use nix::net::if_::InterfaceFlags as F;
    entries()
        .filter(|(_, flags, ..)| flags.contains(F::IFF_UP))
        .map(|(_, _, ip, netmask)| Network::of(ip, netmask))
        .collect()
}

/// Where the system cannot be asked: none, and nothing is filtered.
#[cfg(not(unix))]
pub fn local_networks() -> Vec<Network> {
    Vec::new()
}

/// An address and a prefix length: the network of an interface's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    pub ip: IpAddr,
    pub prefix: u32,
}

impl Network {
    /// The network of an interface's address `ip` with `netmask`. An address the system
    /// gives no netmask (a point-to-point link may not have one) is a network of its own:
    /// it holds that one address, where dropping it left announces from it unmatched.
    pub fn of(ip: IpAddr, netmask: Option<IpAddr>) -> Network {
        let prefix = match (netmask, ip) {
            (Some(IpAddr::V4(mask)), IpAddr::V4(_)) => u32::from(mask).leading_ones(),
            (Some(IpAddr::V6(mask)), IpAddr::V6(_)) => u128::from(mask).leading_ones(),
            (_, IpAddr::V4(_)) => 32,
            (_, IpAddr::V6(_)) => 128,
        };
        Network { ip, prefix }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let within = |a: u128, b: u128, bits: u32| {
            let prefix = self.prefix.min(bits);
            prefix == 0 || (a ^ b) >> (bits - prefix) == 0
        };
        match (self.ip, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                within(u32::from(net).into(), u32::from(ip).into(), 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => within(net.into(), ip.into(), 128),
            _ => false,
        }
    }
}

#[cfg(unix)]
fn index_of(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok().filter(|&i| i != 0)
}

#[cfg(not(unix))]
fn up_multicast() -> Interfaces {
    Interfaces::default()
}

#[cfg(not(unix))]
fn holding(ip: IpAddr) -> Interfaces {
    let mut found = Interfaces::default();
    if let IpAddr::V4(ip) = ip.to_canonical() {
        found.v4.push(ip);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host with IPv6 turned off has no ::1.
    #[cfg(target_os = "linux")]
    fn has_ipv6_loopback() -> bool {
        std::net::UdpSocket::bind("[::1]:0").is_ok()
    }

    #[test]
    fn a_specific_ipv4_address_is_its_own_interface() {
        let ip = Ipv4Addr::new(127, 0, 2, 212);
        assert_eq!(Interfaces::for_listener(ip.into()).v4, vec![ip]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn loopback_is_found_by_its_address_but_never_multicast_on_by_default() {
        let lo = index_of("lo").expect("Linux has lo");
        if has_ipv6_loopback() {
            assert_eq!(
                Interfaces::for_listener("::1".parse().unwrap()).v6,
                vec![lo]
            );
        }
        let all = Interfaces::for_listener("::".parse().unwrap());
        assert!(!all.v6.contains(&lo), "{all:?}");
        assert!(!all.v4.contains(&Ipv4Addr::LOCALHOST), "{all:?}");
    }

    #[test]
    fn networks_hold_their_own_addresses_only() {
        let net = |s: &str, prefix| Network {
            ip: s.parse().unwrap(),
            prefix,
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let lan = net("192.168.1.20", 24);
        assert!(lan.contains(ip("192.168.1.77")));
        assert!(lan.contains(ip("::ffff:192.168.1.77")));
        assert!(!lan.contains(ip("192.168.2.77")));
        assert!(!lan.contains(ip("fe80::1")));
        let link = net("fe80::abcd", 64);
        assert!(link.contains(ip("fe80::1:2:3:4")));
        assert!(!link.contains(ip("fe81::1")));
        assert!(net("10.0.0.1", 32).contains(ip("10.0.0.1")));
        assert!(!net("10.0.0.1", 32).contains(ip("10.0.0.2")));
        assert!(net("0.0.0.0", 0).contains(ip("8.8.8.8")));

        // From an address and its netmask; without one (or with one of the other
        // family), the address alone.
        let of = |a: &str, mask: Option<&str>| Network::of(ip(a), mask.map(ip));
        assert_eq!(of("192.168.1.20", Some("255.255.255.0")), lan);
        assert_eq!(of("fe80::abcd", Some("ffff:ffff:ffff:ffff::")), link);
        let alone = of("10.8.0.6", None);
        assert_eq!(alone, net("10.8.0.6", 32));
        assert!(alone.contains(ip("10.8.0.6")) && !alone.contains(ip("10.8.0.7")));
        assert_eq!(of("fd00::6", None), net("fd00::6", 128));
        assert_eq!(of("10.8.0.6", Some("ffff::")), net("10.8.0.6", 32));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_host_is_on_the_loopback_networks() {
        let networks = local_networks();
        for ip in ["127.0.2.210", "::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            if ip.is_ipv6() && !has_ipv6_loopback() {
                continue;
            }
            assert!(
                networks.iter().any(|n| n.contains(ip)),
                "{ip}: {networks:?}"
            );
        }
    }

    #[test]
    fn an_address_nobody_holds_leaves_the_choice_to_the_system() {
        let ip: IpAddr = "2001:db8::77".parse().unwrap();
        assert_eq!(Interfaces::for_listener(ip).v6, vec![0]);
    }
}
