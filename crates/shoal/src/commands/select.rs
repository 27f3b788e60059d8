//! Which of a torrent's files to download: `shoal get --select-file`, numbered from 1 as
//! `shoal info` lists them (padding files are neither listed nor numbered), written as
//! aria2 takes them: `2`, `1,3-5`; or a magnet link's BEP 53 `so=` indices.

use std::ops::RangeInclusive;
use std::str::FromStr;

use anyhow::{bail, Result};
use shoal_core::metainfo::FileEntry;

/// A parsed `--select-file` list, not yet checked against a torrent (a magnet's file list
/// is known only once its metadata is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSelection(Vec<RangeInclusive<usize>>);

impl FromStr for FileSelection {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, String> {
        let number = |s: &str| -> Result<usize, String> {
            match s.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!(
                    "'{s}' is not a file number (files are numbered from 1, as `shoal info` lists them)"
                )),
            }
        };
        let mut ranges = Vec::new();
        for item in list.split(',') {
            let range = match item.split_once('-') {
                Some((first, last)) => number(first)?..=number(last)?,
                None => {
                    let n = number(item)?;
                    n..=n
                }
            };
            if range.is_empty() {
                return Err(format!("'{item}' is an empty range"));
            }
            ranges.push(range);
        }
        Ok(FileSelection(ranges))
    }
}

impl FileSelection {
    /// The same files, written one way only (ranges in order, merged): `3,1-2,2` and
    /// `1-3` name the same choice.
    pub fn normalized(&self) -> String {
        let mut ranges: Vec<(usize, usize)> =
            self.0.iter().map(|r| (*r.start(), *r.end())).collect();
        ranges.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        let written: Vec<String> = merged
            .iter()
            .map(|&(start, end)| match start == end {
                true => start.to_string(),
                false => format!("{start}-{end}"),
            })
            .collect();
        written.join(",")
    }

    /// The selected files as indices into the torrent's `files` (padding files included
    /// there), in order, without repeats. Fails if a number is beyond the torrent's files.
    pub fn resolve(&self, files: &[FileEntry]) -> Result<Vec<usize>> {
        let numbered: Vec<usize> = (0..files.len())
            .filter(|&i| !files[i].attr.padding)
            .collect();
        let mut selected = Vec::new();
        for range in &self.0 {
            if *range.end() > numbered.len() {
                bail!(
                    "--select-file {}: the torrent has {} file{} (see `shoal info`)",
                    range.end(),
                    numbered.len(),
                    if numbered.len() == 1 { "" } else { "s" }
                );
            }
            selected.extend(range.clone().map(|n| numbered[n - 1]));
        }
        selected.sort_unstable();
        selected.dedup();
        Ok(selected)
    }
}

/// What a download fetches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    #[default]
    All,
    /// `--select-file`.
    Numbered(FileSelection),
    /// A magnet's `so=` (used only without `--select-file`).
    MagnetIndices(Vec<RangeInclusive<usize>>),
}

impl Selection {
    /// The selected files as indices into `files`; `None` for all of them.
    pub fn resolve(&self, files: &[FileEntry]) -> Result<Option<Vec<usize>>> {
        match self {
            Selection::All => Ok(None),
            Selection::Numbered(numbered) => numbered.resolve(files).map(Some),
            Selection::MagnetIndices(ranges) => select_only(ranges, files).map(Some),
        }
    }
}

/// BEP 53: `so=` counts files from 0 in the torrent's own list, padding files included
/// (libtorrent's file indices). Padding files and indices past the list are left out, as
/// libtorrent leaves them; a link that then selects nothing is refused rather than taken
/// to mean everything.
fn select_only(ranges: &[RangeInclusive<usize>], files: &[FileEntry]) -> Result<Vec<usize>> {
    let mut selected: Vec<usize> = ranges
        .iter()
        .flat_map(|r| *r.start()..=(*r.end()).min(files.len().saturating_sub(1)))
        .filter(|&i| i < files.len() && !files[i].attr.padding)
        .collect();
    selected.sort_unstable();
    selected.dedup();
    if selected.is_empty() {
        bail!(
            "the magnet link's so= selects none of the torrent's {} files (so= counts from 0)",
            files.len()
        );
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::metainfo::FileAttr;

    fn files(padding: &[bool]) -> Vec<FileEntry> {
        padding
            .iter()
            .enumerate()
            .map(|(i, &padding)| FileEntry {
                path: vec!["t".into(), format!("f{i}")],
                length: 5,
                offset: 5 * i as u64,
                attr: FileAttr {
                    padding,
                    ..FileAttr::default()
                },
                symlink_target: None,
                url_path: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn a_list_is_written_one_way() {
        let normal = |list: &str| list.parse::<FileSelection>().unwrap().normalized();
        assert_eq!(normal("3,1-2,2"), "1-3");
        assert_eq!(normal("5, 1,7-9,8"), "1,5,7-9");
        assert_eq!(normal("4-6,1-5"), "1-6");
    }

    #[test]
    fn lists_and_ranges_parse() {
        let sel: FileSelection = "2,4-5, 1".parse().unwrap();
        assert_eq!(sel, FileSelection(vec![2..=2, 4..=5, 1..=1]));
        for bad in ["", "0", "x", "3-1", "1,,2", "-2", "2-", "1.5"] {
            assert!(
                bad.parse::<FileSelection>().is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn numbers_skip_padding_files_and_are_checked() {
        // Files: 0 real, 1 padding, 2 real, 3 padding, 4 real: numbered 1, 2, 3.
        let files = files(&[false, true, false, true, false]);
        let sel: FileSelection = "3,2,2-3".parse().unwrap();
        assert_eq!(sel.resolve(&files).unwrap(), [2, 4]);
        let err = "4".parse::<FileSelection>().unwrap().resolve(&files);
        let msg = format!("{:#}", err.unwrap_err());
        assert!(msg.contains("has 3 files"), "{msg}");
    }

    #[test]
    fn magnet_indices_count_padding_and_skip_it() {
        let files = files(&[false, true, false, true, false]);
        let so = Selection::MagnetIndices(vec![1..=2, 4..=9000]);
        assert_eq!(so.resolve(&files).unwrap(), Some(vec![2, 4]));
        let none = Selection::MagnetIndices(vec![1..=1, 7..=8]);
        let msg = format!("{:#}", none.resolve(&files).unwrap_err());
        assert!(msg.contains("selects none"), "{msg}");
        assert_eq!(Selection::All.resolve(&files).unwrap(), None);
    }
}
