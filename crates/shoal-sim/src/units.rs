//! Sizes and rates in the units people write: `64MiB`, `256KiB`, `1.5MB`, `1MiB/s`, `4096`.
//!
//! Binary prefixes (`KiB`, `MiB`, `GiB`) are powers of 1024, decimal ones (`kB`/`KB`,
//! `MB`, `GB`) powers of 1000, a bare number is bytes. A rate is a size per second; the
//! `/s` suffix is optional.

/// A size or rate that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a size (examples: 64MiB, 256KiB, 1.5MB, 4096)")]
pub struct UnitError(pub String);

/// Bytes in `text`, e.g. `64MiB` → 67108864. Fractions are allowed (`1.5MiB`) and rounded
/// down to whole bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let error = || UnitError(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number.parse().map_err(|_| error())?;
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" | "K" | "k" => 1024.0,
        "MiB" | "M" => 1024.0 * 1024.0,
        "GiB" | "G" => 1024.0 * 1024.0 * 1024.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return Err(error()),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(error());
    }
    Ok(bytes as u64)
}

/// Bytes per second in `text`, e.g. `1MiB`, `1MiB/s`, `2MB/s`.
pub fn parse_rate(text: &str) -> Result<u64, UnitError> {
    parse_size(text.trim().strip_suffix("/s").unwrap_or(text))
}

/// A size for people: the largest binary unit that divides it, else bytes with a unit
/// and two decimals (`64MiB`, `1.50MiB`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (scale, unit) in UNITS {
        if bytes >= scale {
            return if bytes.is_multiple_of(scale) {
                format!("{}{unit}", bytes / scale)
            } else {
                format!("{:.2}{unit}", bytes as f64 / scale as f64)
            };
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("256KiB"), Ok(256 << 10));
        assert_eq!(parse_size("1.5MiB"), Ok(3 << 19));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_rate("1MiB/s"), Ok(1 << 20));
        assert_eq!(parse_rate("2MB/s"), Ok(2_000_000));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("1e400").is_err());
        assert_eq!(format_size(64 << 20), "64MiB");
        assert_eq!(format_size(3 << 19), "1.50MiB");
        assert_eq!(format_size(100), "100B");
    }
}
