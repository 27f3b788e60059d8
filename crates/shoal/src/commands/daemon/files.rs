//! Which of a daemon torrent's files are fetched, in what order, and how far each one
//! is: what Transmission's `files-wanted` and `sequentialDownload` and a libtorrent
//! session's file priorities give their users.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shoal_core::{Bitfield, Info, Metainfo};

use super::session::SessionError;
use crate::commands::select::{FileSelection, Selection};

/// What of a torrent to fetch, and in what order; kept with it across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    /// The files to download, numbered from 1 as `shoal info` lists them, written as
    /// `get --select-file` takes them (`1,3-5`); every file if `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<String>,
    /// A magnet link's BEP 53 `so=` (file indices from 0, padding files counted), which
    /// chooses the files when `files` does not (libtorrent's and `get`'s reading).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub so: Option<Vec<RangeInclusive<usize>>>,
    /// Pieces in order, to read a file while it downloads (`get --sequential`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sequential: bool,
}

impl Fetch {
    /// `files` as a request gives it: a list, or `all` (or nothing) for every file. Only
    /// its form is checked here; the numbers are checked against the torrent's files
    /// once those are known ([`Fetch::selected`]).
    pub fn new(files: Option<&str>, sequential: bool) -> Result<Fetch, SessionError> {
        let files = match files.map(str::trim) {
            None | Some("all") => None,
            Some(list) => {
                let selection: FileSelection = list.parse().map_err(SessionError::Invalid)?;
                Some(selection.normalized())
            }
        };
        Ok(Fetch {
            files,
            so: None,
            sequential,
        })
    }

    /// This fetch with `files` (a list, or `all`) chosen instead: a magnet link's `so=`
    /// gives way to it.
    pub fn with_files(&self, files: &str) -> Result<Fetch, SessionError> {
        Fetch::new(Some(files), self.sequential)
    }

    /// The selected files as indices into the torrent's file list (padding files
    /// included there), as the engine takes them; `None` for all.
    pub fn selected(&self, metainfo: &Metainfo) -> Result<Option<Vec<usize>>, SessionError> {
        let selection = match (&self.files, &self.so) {
            (Some(list), _) => Selection::Numbered(list.parse().map_err(SessionError::Invalid)?),
            (None, Some(so)) => Selection::MagnetIndices(so.clone()),
            (None, None) => return Ok(None),
        };
        selection
            .resolve(&metainfo.info.files)
            .map_err(|e| SessionError::Invalid(format!("{e:#}")))
    }
}

/// A torrent's files, numbered as `shoal info` lists them: path, size, bytes verified
/// on disk (by the pieces in `have`), and whether each is selected (`selected` in
/// order, as [`Fetch::selected`] gives it). Also the bytes selected and the selected
/// bytes verified, for the torrent's progress.
pub fn describe_files(
    metainfo: &Metainfo,
    selected: Option<&[usize]>,
    have: &Bitfield,
) -> (Vec<Value>, u64, u64) {
    let info = &metainfo.info;
    let verified = verified_bytes(info, have);
    let (mut wanted_size, mut wanted_have) = (0, 0);
    let files = info
        .numbered_files()
        .map(|(number, index, file)| {
            let wanted = selected.is_none_or(|selected| selected.binary_search(&index).is_ok());
            if wanted {
                wanted_size += file.length;
                wanted_have += verified[index];
            }
            json!({
                "number": number,
                "path": file.path.join("/"),
                "size": file.length,
                "have": verified[index],
                "wanted": wanted,
            })
        })
        .collect();
    (files, wanted_size, wanted_have)
}

/// Bytes of each file (padding files too) inside the pieces of `have`, where the files
/// lie end to end as the pieces cover them. Nothing if `have` is not this torrent's.
fn verified_bytes(info: &Info, have: &Bitfield) -> Vec<u64> {
    let mut verified = vec![0u64; info.files.len()];
    if have.len() != info.piece_count() {
        return verified;
    }
    let ends: Vec<u64> = info
        .files
        .iter()
        .scan(0, |end, file| {
            *end += file.length;
            Some(*end)
        })
        .collect();
    let piece_length = u64::from(info.piece_length);
    let total = ends.last().copied().unwrap_or(0);
    for piece in have.iter_ones() {
        let start = piece as u64 * piece_length;
        let end = (start + piece_length).min(total);
        // The first file that ends after the piece starts, and those after it that
        // start before the piece ends.
        let mut index = ends.partition_point(|&file_end| file_end <= start);
        while index < ends.len() {
            let file_start = ends[index] - info.files[index].length;
            if file_start >= end {
                break;
            }
            verified[index] += ends[index].min(end) - file_start.max(start);
            index += 1;
        }
    }
    verified
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::commands::daemon::testing::torrent_of;

    /// Files of 5, 20 and 0 bytes in 16-byte pieces.
    fn three_files() -> Metainfo {
        torrent_of(&[(5, "a"), (20, "b"), (0, "c")])
    }

    #[test]
    fn each_file_counts_the_bytes_of_its_verified_pieces() {
        let metainfo = three_files();
        let mut have = Bitfield::new(2);
        have.set(1);
        assert_eq!(verified_bytes(&metainfo.info, &have), [0, 9, 0]);
        have.set(0);
        assert_eq!(verified_bytes(&metainfo.info, &have), [5, 20, 0]);
        // Another torrent's bitfield counts nothing.
        assert_eq!(verified_bytes(&metainfo.info, &Bitfield::new(3)), [0, 0, 0]);

        let mut first = Bitfield::new(2);
        first.set(0);
        let (files, size, done) = describe_files(&metainfo, Some(&[1]), &first);
        assert_eq!((size, done), (20, 11));
        assert_eq!(files[0]["wanted"], false);
        assert_eq!(files[1]["have"], 11);
        assert_eq!(files[2]["number"], 3);
    }

    #[test]
    fn a_list_is_checked_for_its_form_then_against_the_files() {
        assert_eq!(Fetch::new(Some("all"), false).unwrap(), Fetch::default());
        assert_eq!(Fetch::new(None, true).unwrap().files, None);
        assert!(matches!(
            Fetch::new(Some("0"), false),
            Err(SessionError::Invalid(_))
        ));
        assert!(matches!(
            Fetch::new(Some("2-1"), false),
            Err(SessionError::Invalid(_))
        ));
        let fetch = Fetch::new(Some(" 3,1 "), true).unwrap();
        assert_eq!(fetch.files.as_deref(), Some("1,3"));
        assert_eq!(fetch.selected(&three_files()).unwrap(), Some(vec![0, 2]));
        // A magnet link's so= counts from 0; a list given later replaces it.
        let linked = Fetch {
            so: Some(vec![1..=2]),
            ..Fetch::default()
        };
        assert_eq!(linked.selected(&three_files()).unwrap(), Some(vec![1, 2]));
        let chosen = linked.with_files("1").unwrap();
        assert_eq!(chosen.selected(&three_files()).unwrap(), Some(vec![0]));
        let all = linked.with_files("all").unwrap();
        assert_eq!(all.selected(&three_files()).unwrap(), None);
        let beyond = Fetch::new(Some("4"), false).unwrap();
        assert!(matches!(
            beyond.selected(&three_files()),
            Err(SessionError::Invalid(_))
        ));
    }
}
