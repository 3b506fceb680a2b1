//! The one way bgstream writes a file that must never be seen half-written: into
//! `NAME.tmp` beside it, fsynced, renamed over `NAME`, then the folder fsynced so the rename
//! survives a crash. A failed write removes its temporary.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{BoxError, FatalError};

/// `NAME.tmp` beside `path`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), FatalError> {
    write_via(path, &tmp_path(path), bytes)
}

/// [`write_file`] through a temporary of the caller's choosing (ranks that write the same
/// file at once each use their own).
pub fn write_via(path: &Path, tmp: &Path, bytes: &[u8]) -> Result<(), FatalError> {
    fill_and_commit(path, tmp, |f| f.write_all(bytes))
}

/// Writes `path` atomically with `fill`, which gets the temporary file (for writers such
/// as Arrow's and csv's). The error of `fill` is kept as the source of the output error.
pub fn write_with<E: Into<BoxError>>(
    path: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), E>,
) -> Result<(), FatalError> {
    fill_and_commit(path, &tmp_path(path), fill)
}

fn fill_and_commit<E: Into<BoxError>>(
    path: &Path,
    tmp: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), E>,
) -> Result<(), FatalError> {
    let result = (|| {
        let mut file = File::create(tmp).map_err(|e| FatalError::output(tmp, e))?;
        fill(&mut file).map_err(FatalError::writing(tmp))?;
        file.sync_all().map_err(|e| FatalError::output(tmp, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result?;
    commit(tmp, path)
}

/// Renames a complete, fsynced temporary over `path` and makes the rename durable.
pub fn commit(tmp: &Path, path: &Path) -> Result<(), FatalError> {
    std::fs::rename(tmp, path).map_err(|e| FatalError::output(path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// Makes a folder's entries (renames) durable; best effort (not every file system can).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        assert_eq!(tmp_path(&path), dir.path().join("a.json.tmp"));
        write_file(&path, b"one").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        // A fill that fails leaves the old file and no temporary.
        let e = write_with(&path, |f| {
            f.write_all(b"half").unwrap();
            Err("disk full")
        })
        .unwrap_err();
        assert!(e.to_string().contains("a.json.tmp"), "{e}");
        let source = std::error::Error::source(&e).map(|s| s.to_string());
        assert_eq!(
            source.as_deref(),
            Some("disk full"),
            "the fill's error is the source"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert!(!tmp_path(&path).exists());
        let tmp = dir.path().join("a.rank-1.tmp");
        write_via(&path, &tmp, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!tmp.exists());
    }
}
