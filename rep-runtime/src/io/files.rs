//! Careful file writing: every file is written whole or not at all, and never over an input.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Writes `path` atomically: `write` fills a new temporary file in the same directory, which is
/// flushed, synced to disk and then renamed over `path`. If anything fails (a full disk, a size
/// limit, an error from `write`), the temporary file is removed and an existing `path` is left
/// byte for byte as it was; a process killed midway leaves at most a stray `.*.tmp` file.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> Result<()> {
    let io_error = |source| Error::Io { path: path.to_owned(), source };
    let temp = temporary_path(path);
    let file = File::options().write(true).create_new(true).open(&temp).map_err(io_error)?;
    let mut writer = BufWriter::new(file);
    let written = write(&mut writer)
        .and_then(|()| writer.flush())
        .and_then(|()| writer.get_ref().sync_all())
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(source) = written {
        // Best effort: the write already failed, and that is the error to report.
        let _ = std::fs::remove_file(&temp);
        return Err(io_error(source));
    }
    Ok(())
}

/// A fresh name beside `path`: `.{file name}.{process id}.{counter}.tmp`.
fn temporary_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path.file_name().map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{unique}.tmp", std::process::id()))
}

/// Refuses to write `output` when it is the same file as one of `inputs` (compared after
/// resolving links and relative paths), so that a command never replaces what it reads.
pub fn ensure_distinct(output: &Path, inputs: &[&Path]) -> Result<()> {
    let Ok(target) = output.canonicalize() else {
        return Ok(()); // does not exist yet, so it is none of the inputs
    };
    match inputs.iter().find(|input| input.canonicalize().is_ok_and(|i| i == target)) {
        Some(input) => Err(Error::SameFile { output: output.to_owned(), input: input.to_path_buf() }),
        None => Ok(()),
    }
}
