//! The files a torrent offers for streaming, and where their bytes are.

use std::path::{Path, PathBuf};

use shoal_core::metainfo::Info;

/// One file a client may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedFile {
    /// Its number, as `shoal info` lists the files and `--select-file` takes them (from
    /// 1, padding files not counted).
    pub number: usize,
    /// Its path in the torrent, `/`-separated (the torrent's name first when it is a
    /// folder).
    pub name: String,
    /// Where it is on disk.
    pub path: PathBuf,
    /// Where it starts among the torrent's bytes.
    pub offset: u64,
    pub length: u64,
    /// It is being downloaded: the pieces of a file left out by `--select-file` may
    /// never come, so it is not served.
    pub selected: bool,
}

impl ServedFile {
    /// The last part of its path: what a link to it ends with, so that a player sees
    /// the file's name and type.
    pub fn file_name(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }
}

/// A torrent's files as the server offers them.
#[derive(Debug, Clone)]
pub struct Library {
    pub title: String,
    pub piece_length: u64,
    pub files: Vec<ServedFile>,
}

impl Library {
    /// The files of `info` downloaded into `download_dir`; `selected` (indices into
    /// `info.files`, as the engine takes them) are the files being downloaded, `None`
    /// for all. Symbolic links are left out: their bytes are another file's.
    pub fn new(info: &Info, download_dir: &Path, selected: Option<&[usize]>) -> Self {
        let files = info
            .numbered_files()
            .filter(|(_, _, file)| !file.attr.symlink)
            .map(|(number, index, file)| ServedFile {
                number,
                name: file.display_path(),
                path: download_dir.join(file.relative_path()),
                offset: file.offset,
                length: file.length,
                selected: selected.is_none_or(|selected| selected.contains(&index)),
            })
            .collect();
        Library {
            title: info.name.clone(),
            piece_length: u64::from(info.piece_length),
            files,
        }
    }

    pub fn file(&self, number: usize) -> Option<&ServedFile> {
        self.files.iter().find(|file| file.number == number)
    }

    /// The pieces holding bytes `first..=last` of `file`.
    pub fn pieces(&self, file: &ServedFile, first: u64, last: u64) -> (u32, u32) {
        let piece = |at: u64| ((file.offset + at) / self.piece_length) as u32;
        (piece(first), piece(last))
    }
}

/// The media type a player expects for a file, from its extension.
pub fn content_type(name: &str) -> &'static str {
    let extension = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        "avi" => "video/x-msvideo",
        "mov" => "video/quicktime",
        "ts" | "m2ts" => "video/mp2t",
        "ogv" => "video/ogg",
        "mpg" | "mpeg" => "video/mpeg",
        "mp3" => "audio/mpeg",
        "m4a" | "m4b" => "audio/mp4",
        "flac" => "audio/flac",
        "ogg" | "oga" => "audio/ogg",
        "opus" => "audio/opus",
        "wav" => "audio/wav",
        "srt" => "application/x-subrip",
        "vtt" => "text/vtt",
        "txt" | "nfo" | "md" => "text/plain; charset=utf-8",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_of_common_media() {
        assert_eq!(content_type("Film.2024.MKV"), "video/x-matroska");
        assert_eq!(content_type("a.b.mp4"), "video/mp4");
        assert_eq!(content_type("subs.srt"), "application/x-subrip");
        assert_eq!(content_type("README"), "application/octet-stream");
    }
}
