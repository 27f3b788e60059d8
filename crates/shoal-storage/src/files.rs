//! Reading and writing a torrent's bytes in its files, through a small cache of open
//! handles.
//!
//! Files are opened (and created, sparse, at their full length) on first write, inside
//! the download directory only: every path component that already exists is checked not
//! to be a symbolic link, so a link planted in the download folder cannot redirect a
//! write elsewhere. Padding files are never created; they read as zeros.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::{FileLayout, LayoutFile, StorageError};

/// Open handles kept at once (libtorrent's default file pool is 40).
const OPEN_FILES: usize = 64;

/// A torrent's files under its download directory.
#[derive(Debug)]
pub struct TorrentFiles {
    root: PathBuf,
    layout: FileLayout,
    cache: Mutex<HandleCache>,
}

#[derive(Debug, Default)]
struct HandleCache {
    /// (file index, handle, writable, last use tick); a linear scan over 64 entries is
    /// cheaper than any map here. Handles are shared so that I/O runs outside the lock:
    /// the disk thread's writes and the actor's reads for uploads do not wait on each other.
    open: Vec<(usize, Arc<File>, bool, u64)>,
    tick: u64,
    /// Files written since the last [`TorrentFiles::sync`].
    dirty: Vec<usize>,
}

impl TorrentFiles {
    /// `root` is the download directory; `layout` must have been made with paths below it
    /// (see [`FileLayout::for_torrent`]).
    pub fn new(root: &Path, layout: FileLayout) -> Self {
        TorrentFiles {
            root: root.to_path_buf(),
            layout,
            cache: Mutex::new(HandleCache::default()),
        }
    }

    pub fn layout(&self) -> &FileLayout {
        &self.layout
    }

    /// Writes `data` at byte `offset` of the torrent's stream.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let mut done = 0usize;
        for segment in self.layout.segments(offset, data.len() as u64) {
            let n = segment.length as usize;
            if !self.layout.files()[segment.file].padding {
                self.with_file(segment.file, true, |f| {
                    f.write_all_at(&data[done..done + n], segment.file_offset)
                })?;
            }
            done += n;
        }
        Ok(())
    }

    /// Writes `blocks`, which follow each other from byte `offset` of the torrent's
    /// stream, with one vectored write per file they touch (a piece's 64 blocks cost one
    /// system call, not 64).
    pub fn write_vectored(&self, offset: u64, blocks: &[&[u8]]) -> Result<(), StorageError> {
        let total: usize = blocks.iter().map(|b| b.len()).sum();
        let mut rest = blocks.iter().map(|b| &b[..]).filter(|b| !b.is_empty());
        let mut carry: &[u8] = &[];
        let mut slices = Vec::with_capacity(blocks.len() + 1);
        for segment in self.layout.segments(offset, total as u64) {
            // Gather exactly `segment.length` bytes, splitting a block at a file boundary.
            slices.clear();
            let mut want = segment.length as usize;
            while want > 0 {
                if carry.is_empty() {
                    carry = rest.next().expect("blocks cover the segments");
                }
                let n = want.min(carry.len());
                slices.push(IoSlice::new(&carry[..n]));
                carry = &carry[n..];
                want -= n;
            }
            if !self.layout.files()[segment.file].padding {
                self.with_file(segment.file, true, |f| {
                    write_all_vectored_at(f, &mut slices, segment.file_offset)
                })?;
            }
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at byte `offset` of the torrent's stream. Missing files or
    /// bytes past a file's end are errors (the data is not there).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let mut done = 0usize;
        for segment in self.layout.segments(offset, buf.len() as u64) {
            let n = segment.length as usize;
            let target = &mut buf[done..done + n];
            if self.layout.files()[segment.file].padding {
                target.fill(0);
            } else {
                self.with_file(segment.file, false, |f| {
                    f.read_exact_at(target, segment.file_offset)
                })?;
            }
            done += n;
        }
        Ok(())
    }

    /// Makes everything written so far durable (before resume state vouches for it).
    pub fn sync(&self) -> Result<(), StorageError> {
        let dirty = std::mem::take(&mut self.cache.lock().expect("not poisoned").dirty);
        for index in dirty {
            self.with_file(index, true, |f| f.sync_data())?;
        }
        Ok(())
    }

    /// Starts writing `length` bytes from `offset` of the torrent's stream to the device,
    /// without waiting. Left to itself the kernel starts only once a tenth of memory is
    /// dirty, so a fast download would end with a long [`sync`](Self::sync); started
    /// piece by piece, the writing overlaps the download and the final sync is short.
    pub fn start_writeback(&self, offset: u64, length: u64) -> Result<(), StorageError> {
        for segment in self.layout.segments(offset, length) {
            if self.layout.files()[segment.file].padding {
                continue;
            }
            self.with_file(segment.file, true, |f| {
                start_writeback(f, segment.file_offset, segment.length)
            })?;
        }
        Ok(())
    }

    /// Creates every (non-padding) file at its full length, empty files included, so
    /// a finished download has all of its files even where no piece touched them.
    pub fn create_all(&self) -> Result<(), StorageError> {
        let all: Vec<usize> = (0..self.layout.files().len()).collect();
        self.create_files(&all)
    }

    /// Like [`create_all`](Self::create_all), for the files whose indices are in `files`.
    /// A symbolic link (BEP 47) is made a link.
    pub fn create_files(&self, files: &[usize]) -> Result<(), StorageError> {
        for &index in files {
            match self.layout.files().get(index) {
                Some(file) if file.padding => {}
                Some(LayoutFile {
                    path,
                    symlink: Some(target),
                    ..
                }) => self.link(path, target)?,
                Some(_) => self.with_file(index, true, |_| Ok(()))?,
                None => {}
            }
        }
        Ok(())
    }

    /// Makes `path` a symbolic link to `target`, unless it already is one. An empty file
    /// there (a symlink entry from before links were made) is replaced; anything else is
    /// left alone, as nothing of a link is verified.
    fn link(&self, path: &Path, target: &Path) -> Result<(), StorageError> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => return Ok(()),
            Ok(meta) if meta.is_file() && meta.len() == 0 => {
                std::fs::remove_file(path).map_err(|e| StorageError::io(path, e))?
            }
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(path, e)),
        }
        self.check_no_symlinks(path)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StorageError::io(parent, e))?;
        }
        std::os::unix::fs::symlink(target, path).map_err(|e| StorageError::io(path, e))
    }

    fn with_file<T>(
        &self,
        index: usize,
        write: bool,
        op: impl FnOnce(&File) -> io::Result<T>,
    ) -> Result<T, StorageError> {
        let info = &self.layout.files()[index];
        let file = self.handle(index, write)?;
        op(&file).map_err(|e| StorageError::io(&info.path, e))
    }

    /// An open handle of file `index` (writable if `write`), from the cache or opened now.
    fn handle(&self, index: usize, write: bool) -> Result<Arc<File>, StorageError> {
        let mut cache = self.cache.lock().expect("not poisoned");
        cache.tick += 1;
        let tick = cache.tick;
        let slot = match cache
            .open
            .iter()
            .position(|(i, _, w, _)| *i == index && (*w || !write))
        {
            Some(slot) => slot,
            None => {
                cache.open.retain(|(i, _, _, _)| *i != index);
                let file = Arc::new(self.open(index, write)?);
                if cache.open.len() >= OPEN_FILES {
                    let oldest = (0..cache.open.len())
                        .min_by_key(|&s| cache.open[s].3)
                        .expect("cache is full");
                    cache.open.swap_remove(oldest);
                }
                cache.open.push((index, file, write, tick));
                cache.open.len() - 1
            }
        };
        cache.open[slot].3 = tick;
        if write && !cache.dirty.contains(&index) {
            cache.dirty.push(index);
        }
        Ok(cache.open[slot].1.clone())
    }

    fn open(&self, index: usize, write: bool) -> Result<File, StorageError> {
        let info = &self.layout.files()[index];
        let path = &info.path;
        if !write {
            return File::open(path).map_err(|e| StorageError::io(path, e));
        }
        self.check_no_symlinks(path)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StorageError::io(parent, e))?;
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        // A new file's permissions, less the umask: executable where the torrent says.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(
            &mut options,
            if info.executable { 0o777 } else { 0o666 },
        );
        let file = options.open(path).map_err(|e| StorageError::io(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| StorageError::io(path, e))?
            .len();
        if len < info.length {
            allocate(&file, len, info.length).map_err(|e| StorageError::io(path, e))?;
        }
        Ok(file)
    }

    /// Refuses a path below the root whose existing components include a symlink.
    fn check_no_symlinks(&self, path: &Path) -> Result<(), StorageError> {
        let relative = path
            .strip_prefix(&self.root)
            .map_err(|_| StorageError::OutsideRoot(path.into()))?;
        let mut current = self.root.clone();
        for component in relative.components() {
            current.push(component);
            match std::fs::symlink_metadata(&current) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(StorageError::Symlink(current))
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(StorageError::io(&current, e)),
            }
        }
        Ok(())
    }
}

fn start_writeback(file: &File, offset: u64, length: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(length)) = (i64::try_from(offset), i64::try_from(length)) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        // SAFETY: a plain system call on a file descriptor we own, no pointers.
        let rc = unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset,
                length,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, length);
    Ok(())
}

/// `pwritev` until every byte of `slices` is written at `offset`.
fn write_all_vectored_at(
    file: &File,
    mut slices: &mut [IoSlice<'_>],
    mut offset: u64,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // The kernel takes at most IOV_MAX (1024) slices per call.
    const IOV_MAX: usize = 1024;
    while !slices.is_empty() {
        let count = slices.len().min(IOV_MAX);
        let at = i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `IoSlice` is ABI-compatible with `struct iovec` (std guarantees it on
        // Unix), and the slices outlive the call.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                slices.as_ptr().cast::<libc::iovec>(),
                count as libc::c_int,
                at,
            )
        };
        match n {
            -1 => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => {
                offset += n as u64;
                IoSlice::advance_slices(&mut slices, n as usize);
            }
        }
    }
    Ok(())
}

/// Gives a file its final `length`, reserving the blocks from `from` on where the file
/// system can (as aria2 does by default): a full disk then shows up as a clear error
/// before any data is downloaded rather than halfway through, the file is not
/// fragmented, and each write no longer allocates blocks page by page (a third of the
/// kernel's cost of a write on ext4). Elsewhere the file is made sparse.
fn allocate(file: &File, from: u64, length: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(from), i64::try_from(length - from)) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        // SAFETY: a plain system call on a file descriptor we own, no pointers.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) } == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(error);
        }
    }
    file.set_len(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_cross_files_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let layout = FileLayout::new(
            [
                (root.join("t/a"), 10, false),
                (root.join("t/pad"), 6, true),
                (root.join("t/sub/b"), 20, false),
                (root.join("t/empty"), 0, false),
            ],
            16,
        );
        let files = TorrentFiles::new(root, layout);
        let data: Vec<u8> = (0..36).collect();
        files.write(0, &data[..10]).unwrap();
        files.write(10, &[0; 6]).unwrap();
        files.write(16, &data[16..]).unwrap();
        files.create_all().unwrap();
        files.sync().unwrap();
        assert!(
            !root.join("t/pad").exists(),
            "padding files are never created"
        );
        assert_eq!(std::fs::metadata(root.join("t/empty")).unwrap().len(), 0);
        let mut back = vec![0xffu8; 36];
        files.read(0, &mut back).unwrap();
        let mut want = data.clone();
        want[10..16].fill(0);
        assert_eq!(back, want);
        assert_eq!(std::fs::read(root.join("t/sub/b")).unwrap(), &data[16..]);
    }

    #[test]
    fn never_writes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::os::unix::fs::symlink(outside.path(), root.join("t")).unwrap();
        let files = TorrentFiles::new(root, FileLayout::new([(root.join("t/x"), 4, false)], 16));
        let err = files.write(0, b"evil").unwrap_err();
        assert!(matches!(err, StorageError::Symlink(_)), "{err}");
        assert!(!outside.path().join("x").exists());
    }

    /// A BEP 47 link entry becomes a link to its target, relative to its own folder; an
    /// empty file in its place (an older shoal's) is replaced, anything else left alone,
    /// and a second pass changes nothing.
    #[test]
    fn symlink_entries_become_links_and_nothing_else_is_replaced() {
        use shoal_bencode::Value;

        let file = |path: &[&str], length: i64| {
            let mut entry = Value::dict();
            entry.insert("length", length);
            let path = path.iter().map(|&c| Value::from(c)).collect();
            entry.insert("path", Value::List(path));
            entry
        };
        let mut link = file(&["sub", "link"], 0);
        link.insert("attr", "l");
        link.insert("symlink path", Value::List(vec!["data".into()]));
        let mut info = Value::dict();
        info.insert("name", "t");
        info.insert("piece length", 16_384i64);
        info.insert("pieces", vec![0u8; 20]);
        info.insert("files", Value::List(vec![file(&["data"], 4), link]));
        let mut torrent = Value::dict();
        torrent.insert("info", info);
        let metainfo = shoal_core::Metainfo::from_bytes(&torrent.to_bytes()).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let files = TorrentFiles::new(root, FileLayout::for_torrent(&metainfo.info, root));
        let link = root.join("t/sub/link");
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::fs::write(&link, b"").unwrap();
        files.write(0, b"data").unwrap();
        files.create_all().unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("../data"));
        assert_eq!(std::fs::read(&link).unwrap(), b"data");
        files.create_all().unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("../data"));

        std::fs::remove_file(&link).unwrap();
        std::fs::write(&link, b"mine").unwrap();
        files.create_all().unwrap();
        assert_eq!(
            std::fs::read(&link).unwrap(),
            b"mine",
            "not ours to replace"
        );
    }

    #[test]
    fn reading_missing_data_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let files = TorrentFiles::new(
            dir.path(),
            FileLayout::new([(dir.path().join("nope"), 4, false)], 16),
        );
        assert!(files.read(0, &mut [0; 4]).is_err());
    }
}
