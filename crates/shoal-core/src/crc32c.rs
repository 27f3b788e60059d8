//! CRC-32C (Castagnoli), as BEP 42 (DHT node ids) and BEP 40 (peer priority) use it.

/// CRC-32C of `bytes` (reflected polynomial 0x82F63B78), bit by bit: its users hash a
/// few bytes at a time, where a table would buy nothing.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_value() {
        assert_eq!(super::crc32c(b"123456789"), 0xe306_9283);
    }
}
