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
    for (name, flags, ip) in addresses() {
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
            let name = addresses()
                .find(|(_, _, a)| *a == ip)
                .map(|(name, ..)| name);
            found.v6.extend(name.and_then(|name| index_of(&name)));
        }
    }
    found
}

/// Every address of every interface, with the interface's name and flags.
#[cfg(unix)]
fn addresses() -> impl Iterator<Item = (String, nix::net::if_::InterfaceFlags, IpAddr)> {
    let all = nix::ifaddrs::getifaddrs().into_iter().flatten();
    all.filter_map(|entry| {
        let address = entry.address?;
        let ip = if let Some(v4) = address.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else {
            IpAddr::V6(address.as_sockaddr_in6()?.ip())
        };
        Some((entry.interface_name, entry.flags, ip))
    })
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

    #[test]
    fn a_specific_ipv4_address_is_its_own_interface() {
        let ip = Ipv4Addr::new(127, 0, 2, 212);
        assert_eq!(Interfaces::for_listener(ip.into()).v4, vec![ip]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn loopback_is_found_by_its_address_but_never_multicast_on_by_default() {
        let lo = index_of("lo").expect("Linux has lo");
        assert_eq!(
            Interfaces::for_listener("::1".parse().unwrap()).v6,
            vec![lo]
        );
        let all = Interfaces::for_listener("::".parse().unwrap());
        assert!(!all.v6.contains(&lo), "{all:?}");
        assert!(!all.v4.contains(&Ipv4Addr::LOCALHOST), "{all:?}");
    }

    #[test]
    fn an_address_nobody_holds_leaves_the_choice_to_the_system() {
        let ip: IpAddr = "2001:db8::77".parse().unwrap();
        assert_eq!(Interfaces::for_listener(ip).v6, vec![0]);
    }
}
