//! `shoal get --prioritize-piece head[=SIZE],tail[=SIZE]`: which pieces to fetch before
//! the others, as aria2's `--bt-prioritize-piece` (and qBittorrent's "first and last
//! pieces first"): those holding the first and the last SIZE bytes of each file, so that
//! a player can read a video's header and index, or an archive its directory, early.

use std::str::FromStr;

use shoal_core::units::parse_size;
use shoal_core::Info;

/// Bytes at each end of a file when `head` or `tail` gives no size (aria2's default).
const DEFAULT_SIZE: u64 = 1024 * 1024;

/// A parsed `--prioritize-piece`: how many bytes from the start and from the end of each
/// file to fetch first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prioritize {
    pub head: Option<u64>,
    pub tail: Option<u64>,
}

impl FromStr for Prioritize {
    type Err = String;

    fn from_str(arg: &str) -> Result<Self, String> {
        let mut wanted = Prioritize::default();
        for item in arg.split(',').map(str::trim) {
            let (end, size) = match item.split_once('=') {
                Some((end, size)) => (end, parse_size(size).map_err(|e| e.to_string())?),
                None => (item, DEFAULT_SIZE),
            };
            match end {
                "head" => wanted.head = Some(size),
                "tail" => wanted.tail = Some(size),
                _ => {
                    return Err(format!(
                        "'{item}' is not head[=SIZE] or tail[=SIZE] (e.g. head=2M,tail)"
                    ))
                }
            }
        }
        Ok(wanted)
    }
}

impl Prioritize {
    /// The pieces to fetch first, for the files of `info` (indices, padding included, as
    /// `selected`; `None` for all): every file's head pieces in file order, then their
    /// tail pieces.
    pub fn pieces(&self, info: &Info, selected: Option<&[usize]>) -> Vec<u32> {
        let piece = u64::from(info.piece_length);
        let files = info.files.iter().enumerate().filter(|(i, f)| {
            !f.attr.padding && f.length > 0 && selected.is_none_or(|s| s.contains(i))
        });
        let (mut heads, mut tails) = (Vec::new(), Vec::new());
        for (_, file) in files {
            let end = file.offset + file.length;
            let span = |from: u64, to: u64| (from / piece) as u32..=((to - 1) / piece) as u32;
            if let Some(size) = self.head.filter(|&s| s > 0) {
                heads.extend(span(file.offset, file.offset + size.min(file.length)));
            }
            if let Some(size) = self.tail.filter(|&s| s > 0) {
                tails.extend(span(end - size.min(file.length), end));
            }
        }
        heads.extend(tails);
        heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::{Metainfo, TorrentBuilder};

    #[test]
    fn arguments() {
        let p: Prioritize = "head=2M, tail".parse().unwrap();
        assert_eq!(
            p,
            Prioritize {
                head: Some(2 << 20),
                tail: Some(1 << 20)
            }
        );
        let p: Prioritize = "tail=64K".parse().unwrap();
        assert_eq!((p.head, p.tail), (None, Some(64 << 10)));
        assert!("middle".parse::<Prioritize>().is_err());
        assert!("head=lots".parse::<Prioritize>().is_err());
    }

    #[test]
    fn the_pieces_at_each_end_of_each_file() {
        // 16 KiB pieces: a 100 000-byte file (pieces 0-6), a 5-byte one (inside piece 6)
        // and a 40 000-byte one (pieces 6-8).
        let builder = TorrentBuilder {
            name: b"d".to_vec(),
            files: Some(vec![
                (vec![b"a".to_vec()], 100_000),
                (vec![b"b".to_vec()], 5),
                (vec![b"c".to_vec()], 40_000),
            ]),
            piece_length: 16_384,
            pieces: vec![0; 9 * 20],
            ..Default::default()
        };
        let info = Metainfo::from_bytes(&builder.to_bytes()).unwrap().info;
        let both = Prioritize {
            head: Some(20_000),
            tail: Some(1),
        };
        assert_eq!(both.pieces(&info, None), [0, 1, 6, 6, 7, 6, 6, 8]);
        assert_eq!(both.pieces(&info, Some(&[2])), [6, 7, 8]);
        let none = Prioritize::default();
        assert!(none.pieces(&info, None).is_empty());
    }
}
