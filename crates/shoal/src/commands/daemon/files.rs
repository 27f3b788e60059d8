//! Which of a daemon torrent's files are fetched, in what order, and how far each one
//! is: what Transmission's `files-wanted` and `sequentialDownload` and a libtorrent
//! session's file priorities give their users.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shoal_core::{Bitfield, Metainfo};
use shoal_storage::FileLayout;

use super::session::SessionError;
use crate::commands::select::FileSelection;

/// What of a torrent to fetch, and in what order; kept with it across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    /// The files to download, numbered from 1 as `shoal info` lists them, written as
    /// `get --select-file` takes them (`1,3-5`); every file if `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<String>,
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
                list.parse::<FileSelection>()
                    .map_err(SessionError::Invalid)?;
                Some(list.to_owned())
            }
        };
        Ok(Fetch { files, sequential })
    }

    /// The selected files as indices into the torrent's file list (padding files
    /// included there), as the engine takes them; `None` for all.
    pub fn selected(&self, metainfo: &Metainfo) -> Result<Option<Vec<usize>>, SessionError> {
        let Some(list) = &self.files else {
            return Ok(None);
        };
        let selection: FileSelection = list.parse().map_err(SessionError::Invalid)?;
        selection
            .resolve(&metainfo.info.files)
            .map(Some)
            .map_err(|e| SessionError::Invalid(format!("{e:#}")))
    }
}

/// A torrent's files, numbered as `shoal info` lists them: path, size, bytes verified
/// on disk (by the pieces in `have`), and whether each is selected. Also the bytes
/// selected and the selected bytes verified, for the torrent's progress.
pub fn describe_files(
    metainfo: &Metainfo,
    selected: Option<&[usize]>,
    have: &Bitfield,
) -> (Vec<Value>, u64, u64) {
    let info = &metainfo.info;
    let layout = FileLayout::for_torrent(info, std::path::Path::new(""));
    let mut verified = vec![0u64; info.files.len()];
    if have.len() == layout.piece_count() {
        for piece in have.iter_ones() {
            for segment in layout.piece_segments(piece) {
                verified[segment.file] += segment.length;
            }
        }
    }
    let (mut wanted_size, mut wanted_have) = (0, 0);
    let files = info
        .files
        .iter()
        .enumerate()
        .filter(|(_, file)| !file.attr.padding)
        .enumerate()
        .map(|(number, (index, file))| {
            let wanted = selected.is_none_or(|selected| selected.contains(&index));
            if wanted {
                wanted_size += file.length;
                wanted_have += verified[index];
            }
            json!({
                "number": number + 1,
                "path": file.path.join("/"),
                "size": file.length,
                "have": verified[index],
                "wanted": wanted,
            })
        })
        .collect();
    (files, wanted_size, wanted_have)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let fetch = Fetch::new(Some(" 1,3 "), true).unwrap();
        assert_eq!(fetch.files.as_deref(), Some("1,3"));
    }
}
