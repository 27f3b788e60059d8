//! The `Range` request header (RFC 9110, section 14), for one range of bytes: what a
//! player asks for when it starts, seeks, or reads a file's index at its end.

use std::ops::RangeInclusive;

/// What to send of a file of a known length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// The whole file (no `Range`, or one this server does not take: several ranges, or
    /// another unit), with status 200.
    Whole,
    /// These bytes, with status 206 and a `Content-Range`.
    Part(RangeInclusive<u64>),
    /// Nothing of the file is in the range: status 416.
    Unsatisfiable,
}

/// Reads a `Range` header's value for a file of `length` bytes. A header this server
/// cannot take is ignored, which RFC 9110 allows: the whole file is sent.
pub fn parse(header: Option<&str>, length: u64) -> Wanted {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Wanted::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        match !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            true => s.parse().ok(),
            false => None,
        }
    };
    if first.is_empty() {
        // `bytes=-N`: the last N bytes.
        return match number(last) {
            None => Wanted::Whole,
            Some(0) => Wanted::Unsatisfiable,
            Some(_) if length == 0 => Wanted::Unsatisfiable,
            Some(suffix) => Wanted::Part(length.saturating_sub(suffix)..=length - 1),
        };
    }
    let Some(start) = number(first) else {
        return Wanted::Whole;
    };
    let end = match last {
        "" => None,
        last => match number(last) {
            Some(end) if end >= start => Some(end),
            // Not a valid range: ignored.
            _ => return Wanted::Whole,
        },
    };
    if start >= length {
        return Wanted::Unsatisfiable;
    }
    Wanted::Part(start..=end.map_or(length - 1, |end| end.min(length - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_forms_players_send() {
        assert_eq!(parse(None, 100), Wanted::Whole);
        assert_eq!(parse(Some("bytes=0-"), 100), Wanted::Part(0..=99));
        assert_eq!(parse(Some("bytes=10-19"), 100), Wanted::Part(10..=19));
        assert_eq!(parse(Some("bytes=90-200"), 100), Wanted::Part(90..=99));
        assert_eq!(parse(Some("bytes=-10"), 100), Wanted::Part(90..=99));
        assert_eq!(parse(Some("bytes=-500"), 100), Wanted::Part(0..=99));
        assert_eq!(parse(Some(" bytes=5 - 6 "), 100), Wanted::Part(5..=6));
    }

    #[test]
    fn out_of_the_file() {
        assert_eq!(parse(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(parse(Some("bytes=100-150"), 100), Wanted::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 100), Wanted::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-5"), 0), Wanted::Unsatisfiable);
    }

    #[test]
    fn what_is_ignored_gets_the_whole_file() {
        for header in [
            "bytes=0-1,5-6",
            "items=0-5",
            "bytes=5",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=7-3",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(parse(Some(header), 100), Wanted::Whole, "{header}");
        }
    }

    proptest! {
        #[test]
        fn a_part_is_always_inside_the_file(header in "bytes=[-0-9 ,]{0,12}", length in 0u64..1000) {
            if let Wanted::Part(range) = parse(Some(&header), length) {
                prop_assert!(range.start() <= range.end());
                prop_assert!(*range.end() < length);
            }
        }
    }
}
