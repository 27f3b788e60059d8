//! Writing a new `.torrent` from a file list and its piece hashes.
//!
//! The info dictionary holds exactly the keys mktorrent and libtorrent (`v1_only`) write
//! for the same content (`length` or `files`, `name`, `piece length`, `pieces`, and
//! `private` and `source` only when set), so the same files and piece size give the same
//! info-hash in all three.

use shoal_bencode::Value;

use super::tiers_value;

/// Chooses a piece length for `total` bytes: the smallest power of two from 16 KiB to
/// 16 MiB that keeps the torrent at no more than 2000 pieces (so between 1000 and 2000
/// whenever the bounds allow), as libtorrent and mktorrent aim to.
pub fn auto_piece_length(total: u64) -> u32 {
    let mut length: u32 = 16 * 1024;
    while length < 16 * 1024 * 1024 && total.div_ceil(u64::from(length)) > 2000 {
        length *= 2;
    }
    length
}

/// The contents and options of a torrent to write.
#[derive(Debug, Clone, Default)]
pub struct TorrentBuilder {
    /// The file's name (single-file) or the folder's name (multi-file), as raw bytes so
    /// that names which are not UTF-8 on disk round-trip.
    pub name: Vec<u8>,
    /// `None` for a single-file torrent; otherwise each file's path below the folder and
    /// its length, in the order the pieces cover them.
    pub files: Option<Vec<(Vec<Vec<u8>>, u64)>>,
    /// Length of the single file (ignored for multi-file torrents).
    pub length: u64,
    pub piece_length: u32,
    /// Concatenated 20-byte piece hashes.
    pub pieces: Vec<u8>,
    pub private: bool,
    /// The info dictionary's `source` (see [`super::Info::source`]).
    pub source: Option<String>,
    pub trackers: Vec<Vec<String>>,
    /// Web seeds (BEP 19 `url-list`).
    pub web_seeds: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
}

impl TorrentBuilder {
    /// The bencoded info dictionary (its SHA-1 is the info-hash).
    pub fn info_bytes(&self) -> Vec<u8> {
        let mut info = Value::dict();
        info.insert("name", self.name.clone());
        info.insert("piece length", i64::from(self.piece_length));
        info.insert("pieces", self.pieces.clone());
        if self.private {
            info.insert("private", 1i64);
        }
        if let Some(source) = &self.source {
            info.insert("source", source.as_str());
        }
        match &self.files {
            None => info.insert("length", self.length as i64),
            Some(files) => {
                let list = files
                    .iter()
                    .map(|(path, length)| {
                        let mut file = Value::dict();
                        file.insert("length", *length as i64);
                        file.insert(
                            "path",
                            Value::List(path.iter().map(|c| Value::Bytes(c.clone())).collect()),
                        );
                        file
                    })
                    .collect();
                info.insert("files", Value::List(list));
            }
        }
        info.to_bytes()
    }

    /// The whole `.torrent` file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut top = Value::dict();
        top.insert("info", Value::Raw(self.info_bytes()));
        if let Some(first) = self.trackers.iter().flatten().next() {
            top.insert("announce", first.as_str());
        }
        if self.trackers.iter().map(Vec::len).sum::<usize>() > 1 {
            top.insert("announce-list", tiers_value(&self.trackers));
        }
        if !self.web_seeds.is_empty() {
            let urls = self.web_seeds.iter().map(|u| u.as_str().into()).collect();
            top.insert("url-list", Value::List(urls));
        }
        if let Some(comment) = &self.comment {
            top.insert("comment", comment.as_str());
        }
        if let Some(by) = &self.created_by {
            top.insert("created by", by.as_str());
        }
        if let Some(date) = self.creation_date {
            top.insert("creation date", date);
        }
        top.to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_length_targets_1000_to_2000_pieces() {
        assert_eq!(auto_piece_length(1), 16 * 1024);
        assert_eq!(auto_piece_length(1 << 30), 1 << 20);
        for shift in 25..35 {
            let total = (1u64 << shift) + 12345;
            let pieces = total.div_ceil(u64::from(auto_piece_length(total)));
            assert!((1000..=2000).contains(&pieces), "{total}: {pieces}");
        }
        assert_eq!(auto_piece_length(u64::MAX / 2), 16 * 1024 * 1024);
    }
}
