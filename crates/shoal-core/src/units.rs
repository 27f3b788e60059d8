//! Sizes and rates as people write them (`256K`, `64MiB`, `1.5MB`, `2MB/s`, `262144`)
//! and as people read them, one convention for every shoal command:
//!
//! - `K`, `M`, `G`, `T` alone or as `KiB`, `MiB`, `GiB`, `TiB` (any case) are powers of
//!   1024, as in aria2 and libtorrent's settings;
//! - `kB`/`KB`, `MB`, `GB`, `TB` (the SI units, any case) are powers of 1000, so a link
//!   quoted as "2 MB/s" means what it says;
//! - a bare number is bytes, and a rate is a size per second (`/s` optional).

/// A size or rate that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a size (examples: 256K, 64MiB, 1.5MB, 262144)")]
pub struct UnitError(pub String);

/// Bytes in `text`, e.g. `64MiB` → 67108864. Fractions are allowed (`1.5M`) and rounded
/// down to whole bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let error = || UnitError(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let exponent = |prefix: char| "kmgt".find(prefix).map(|i| i as i32 + 1);
    let unit = unit.trim().to_ascii_lowercase();
    let scale = match unit.as_bytes() {
        [] | [b'b'] => 1.0,
        [p] | [p, b'i', b'b'] => 1024f64.powi(exponent(char::from(*p)).ok_or_else(error)?),
        [p, b'b'] => 1000f64.powi(exponent(char::from(*p)).ok_or_else(error)?),
        _ => return Err(error()),
    };
    let value: f64 = number.parse().map_err(|_| error())?;
    let bytes = (value * scale).floor();
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(error());
    }
    Ok(bytes as u64)
}

/// Bytes per second in `text`, e.g. `1MiB`, `1MiB/s`, `2MB/s`.
pub fn parse_rate(text: &str) -> Result<u64, UnitError> {
    let trimmed = text.trim();
    parse_size(trimmed.strip_suffix("/s").unwrap_or(trimmed)).map_err(|_| UnitError(text.into()))
}

/// `1.50 GiB`, `256 KiB`, `17 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_sizes() {
        assert_eq!(parse_size("262144"), Ok(262_144));
        assert_eq!(parse_size("256K"), Ok(262_144));
        assert_eq!(parse_size("256KiB"), Ok(262_144));
        assert_eq!(parse_size("256 kib"), Ok(262_144));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1.5M"), Ok(3 << 19));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("1 mb"), Ok(1_000_000));
        assert_eq!(parse_size("1.5kB"), Ok(1500));
        assert_eq!(parse_size("3GB"), Ok(3_000_000_000));
        assert_eq!(parse_size("17B"), Ok(17));
        for bad in [
            "",
            "K",
            "1.2.3M",
            "12 parsecs",
            "1e400",
            "99999999999T",
            "-1",
            "1XiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1MiB/s"), Ok(1 << 20));
        assert_eq!(parse_rate("2MB/s"), Ok(2_000_000));
        assert_eq!(parse_rate(" 512K "), Ok(512 << 10));
        assert!(parse_rate("/s").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(262_144), "256 KiB");
        assert_eq!(format_size(1_610_612_736), "1.50 GiB");
        assert_eq!(format_size(17), "17 B");
        assert_eq!(format_size(64 << 20), "64 MiB");
    }
}
