//! Turning the names a torrent claims into relative paths that are safe to create.
//!
//! A torrent is untrusted input that names files we will write. Each name element is
//! reduced to one plain path component: separators, control characters, bidirectional
//! overrides and invalid UTF-8 become `_`; `.`, `..` and empty elements are dropped; names
//! Windows reserves get a trailing `_`. What comes out can only ever name something below
//! the download directory, whatever the input was.
//!
//! Whole file lists are then de-duplicated (see [`dedup`]) so that no two files, and no
//! file and directory, share a path.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

/// File systems reject longer components (255 bytes on Linux, fewer in UTF-16 units on
/// Windows); keep well inside both.
const MAX_COMPONENT_BYTES: usize = 240;

/// Characters that may not appear in a component: anything that separates paths, and
/// anything that makes a name display as something it is not.
fn is_forbidden(c: char) -> bool {
    c == '/' || c == '\\' || is_deceptive(c) || c == char::REPLACEMENT_CHARACTER
}

/// Characters that drive a terminal (control codes) or reorder the text around them
/// (bidirectional marks and overrides): text from a peer or a torrent shown with them
/// would display as something it is not.
pub fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Names that Windows treats as devices whatever the extension.
fn is_reserved(name: &str) -> bool {
    let stem = name
        .split('.')
        .next()
        .unwrap_or("")
        .trim_end()
        .to_ascii_uppercase();
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit())
}

/// Sanitises one path element. Returns `None` when nothing usable is left: the element
/// was empty, `.`, `..`, or made only of forbidden characters.
pub fn sanitize_component(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut kept = 0usize;
    for c in text.chars() {
        if is_forbidden(c) {
            out.push('_');
        } else {
            out.push(c);
            kept += 1;
        }
    }
    if kept == 0 || out == "." || out == ".." {
        return None;
    }
    if out.len() > MAX_COMPONENT_BYTES {
        let mut cut = MAX_COMPONENT_BYTES;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    if is_reserved(&out) {
        out.push('_');
    }
    Some(out)
}

/// Sanitises a list of elements, dropping the unusable ones.
pub fn sanitize_path<'a>(elements: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    elements
        .into_iter()
        .filter_map(sanitize_component)
        .collect()
}

fn hash_step(prefix: u64, component: &str) -> u64 {
    let mut h = DefaultHasher::new();
    prefix.hash(&mut h);
    component.hash(&mut h);
    h.finish()
}

fn path_hash(path: &[String]) -> u64 {
    path.iter().fold(0, |h, c| hash_step(h, c))
}

/// Renames files so that every path is unique and no file sits where another file needs
/// a directory. The first file keeps its name; later clashes become `name.1.ext`,
/// `name.2.ext`, ….
///
/// Paths are compared by 64-bit hashes of their components, which keeps this linear in
/// the size of the list (10 000 identical names cost 10 000 renames, not 10^8
/// comparisons). A hash collision can only cause an unnecessary rename, never a clash,
/// because every final path has a distinct hash.
pub fn dedup(paths: &mut [Vec<String>]) {
    let mut dirs = HashSet::new();
    for path in paths.iter() {
        let mut h = 0;
        for component in &path[..path.len().saturating_sub(1)] {
            h = hash_step(h, component);
            dirs.insert(h);
        }
    }
    let mut taken = HashSet::with_capacity(paths.len());
    // Where the search for a free suffix resumes, per clashing path: without it the k-th
    // copy of a name would retry suffixes 1..k, quadratic in the number of copies.
    let mut next_suffix: HashMap<u64, u64> = HashMap::new();
    for path in paths.iter_mut() {
        let h = path_hash(path);
        if !dirs.contains(&h) && taken.insert(h) {
            continue;
        }
        let last = path.pop().expect("sanitised paths are never empty");
        let parent = path_hash(path);
        let (stem, ext) = match last.rfind('.') {
            Some(dot) if dot > 0 => (&last[..dot], &last[dot..]),
            _ => (last.as_str(), ""),
        };
        let counter = next_suffix.entry(h).or_insert(1);
        loop {
            let candidate = format!("{stem}.{counter}{ext}");
            *counter += 1;
            let h = hash_step(parent, &candidate);
            if !dirs.contains(&h) && taken.insert(h) {
                path.push(candidate);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Option<String> {
        sanitize_component(x.as_bytes())
    }

    #[test]
    fn components() {
        assert_eq!(s(".."), None);
        assert_eq!(s("."), None);
        assert_eq!(s(""), None);
        assert_eq!(
            s("x.avi /../../Startup/e.exe").as_deref(),
            Some("x.avi _.._.._Startup_e.exe")
        );
        assert_eq!(s("/etc/cron.d/x").as_deref(), Some("_etc_cron.d_x"));
        assert_eq!(s("C:\\x").as_deref(), Some("C:_x"));
        assert_eq!(s("\\\\srv\\s").as_deref(), Some("__srv_s"));
        assert_eq!(s("a\0b\x07c").as_deref(), Some("a_b_c"));
        assert_eq!(s("evil\u{202E}gpj.exe").as_deref(), Some("evil_gpj.exe"));
        assert_eq!(s("\x01\x02/"), None);
        assert_eq!(sanitize_component(b"caf\xe9").as_deref(), Some("caf_"));
        assert_eq!(s("CON").as_deref(), Some("CON_"));
        assert_eq!(s("com1.txt").as_deref(), Some("com1.txt_"));
        assert_eq!(s("console").as_deref(), Some("console"));
        assert_eq!(s(&"é".repeat(200)).unwrap().len(), 240);
    }

    #[test]
    fn dedup_renames_clashes_linearly() {
        let mut paths: Vec<Vec<String>> = (0..10_000)
            .map(|_| vec!["a".into(), "x.txt".into()])
            .collect();
        dedup(&mut paths);
        let unique: HashSet<_> = paths.iter().collect();
        assert_eq!(unique.len(), 10_000);
        assert_eq!(paths[0], ["a", "x.txt"]);
        assert_eq!(paths[1], ["a", "x.1.txt"]);
    }

    #[test]
    fn dedup_file_versus_directory() {
        let mut paths = vec![
            vec!["a".to_string()],
            vec!["a".to_string(), "b".to_string()],
        ];
        dedup(&mut paths);
        assert_eq!(
            paths,
            [
                vec!["a.1".to_string()],
                vec!["a".to_string(), "b".to_string()]
            ]
        );
    }
}
