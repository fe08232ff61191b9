//! Writing a file so that a crash, a full disk or a killed process mid-write
//! leaves either the old file or the new one, never a torn one.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` through a temporary file in the same directory:
/// written, flushed to disk, then renamed over `path` (a rename within one
/// file system replaces the target atomically on POSIX and Windows).
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(path, bytes, |file, bytes| file.write_all(bytes))
}

/// [`write_atomically`] with the write itself given, so tests can make it fail.
fn write_with(
    path: &Path,
    bytes: &[u8],
    write: impl FnOnce(&mut File, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let temporary = temporary_beside(path)?;
    let result = (|| {
        let mut file = File::create(&temporary)?;
        write(&mut file, bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, path)?;
        // The rename is durable once the directory is; not every platform
        // can open a directory, and the file is complete either way.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// `.<name>.<pid>-<n>.tmp` in `path`'s directory: hidden, and distinct for
/// each process and each save within it.
fn temporary_beside(path: &Path) -> io::Result<PathBuf> {
    static SAVES: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let unique = SAVES.fetch_add(1, Ordering::Relaxed);
    let temporary = format!(
        ".{}.{}-{unique}.tmp",
        name.to_string_lossy(),
        std::process::id()
    );
    Ok(path.with_file_name(temporary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ndlayers-file-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = scratch("fail");
        let path = dir.join("model.safetensors");
        write_atomically(&path, b"old checkpoint").unwrap();
        // Half the bytes reach the disk, then the disk is full.
        let err = write_with(&path, b"new checkpoint", |file, bytes| {
            file.write_all(&bytes[..4])?;
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(std::fs::read(&path).unwrap(), b"old checkpoint");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "only the checkpoint remains: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_write_replaces_the_file() {
        let dir = scratch("ok");
        let path = dir.join("model.safetensors");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(temporary_beside(Path::new("/")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
