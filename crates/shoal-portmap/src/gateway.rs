//! The default gateway, where a NAT-PMP server would be: the router of the default
//! IPv4 route, read from Linux's `/proc/net/route`.

use std::net::Ipv4Addr;

/// The gateway of the default route in a `/proc/net/route` table, if there is one.
/// Columns are whitespace-separated; destination and gateway are hex in the host's byte
/// order (little-endian on the machines Linux runs this on), flags 0x2 mark a gateway.
pub fn from_route_table(table: &str) -> Option<Ipv4Addr> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (destination, gateway, flags) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
        let flags = u32::from_str_radix(flags, 16).ok()?;
        if *destination != "00000000" || flags & 0x2 == 0 {
            return None;
        }
        let gateway = u32::from_str_radix(gateway, 16).ok()?;
        Some(Ipv4Addr::from(gateway.to_le_bytes())).filter(|ip| !ip.is_unspecified())
    })
}

/// This host's default gateway, if it has one (and runs Linux).
pub fn default() -> Option<Ipv4Addr> {
    from_route_table(&std::fs::read_to_string("/proc/net/route").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_default_route() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(from_route_table(table), Some(Ipv4Addr::new(192, 168, 1, 1)));
        let no_default = "Iface\tDestination\tGateway\tFlags\n eth0\t0001A8C0\t00000000\t0001\n";
        assert_eq!(from_route_table(no_default), None);
        assert_eq!(from_route_table(""), None);
        assert_eq!(from_route_table("header\n eth0 00000000 zz 0003\n"), None);
    }
}
