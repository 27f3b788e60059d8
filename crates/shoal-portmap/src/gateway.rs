//! The default gateway, where a NAT-PMP server would be: the router of the default
//! IPv4 route, read from Linux's `/proc/net/route`.

use std::net::Ipv4Addr;

/// The gateway of the default route (the one of lowest metric) in a `/proc/net/route`
/// table, if there is one. Columns are whitespace-separated; destination and gateway
/// are the address's bytes read as a native-endian number, in hex; flags 0x2 mark a
/// gateway.
pub fn from_route_table(table: &str) -> Option<Ipv4Addr> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (destination, gateway, flags) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            if *destination != "00000000" || flags & 0x2 == 0 {
                return None;
            }
            let metric: u32 = fields
                .get(6)
                .and_then(|m| m.parse().ok())
                .unwrap_or(u32::MAX);
            let gateway = u32::from_str_radix(gateway, 16).ok()?;
            let ip = Ipv4Addr::from(gateway.to_ne_bytes());
            (!ip.is_unspecified()).then_some((metric, ip))
        })
        .min_by_key(|&(metric, _)| metric)
        .map(|(_, ip)| ip)
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
        // Two default routes: the one of lower metric.
        let two = format!(
            "{table}wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
            eth1\t00000000\t01010A0A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        );
        let two = two.replacen(
            "0101A8C0\t0003\t0\t0\t0\t",
            "0101A8C0\t0003\t0\t0\t900\t",
            1,
        );
        assert_eq!(from_route_table(&two), Some(Ipv4Addr::new(10, 10, 1, 1)));
        let no_default = "Iface\tDestination\tGateway\tFlags\n eth0\t0001A8C0\t00000000\t0001\n";
        assert_eq!(from_route_table(no_default), None);
        assert_eq!(from_route_table(""), None);
        assert_eq!(from_route_table("header\n eth0 00000000 zz 0003\n"), None);
    }
}
