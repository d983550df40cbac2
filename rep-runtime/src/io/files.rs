//! Careful file writing: every file is written whole or not at all, and never over an input.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
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

/// Reads a whole file into a buffer of `T` (bytes, or words for aligned views), whose memory is
/// reserved fallibly from the file's length first: a file too large for memory is an error, not
/// an aborted process.
pub(crate) fn read_whole<T: Copy + Default>(path: &Path) -> Result<(Vec<T>, usize)> {
    let io_error = |source| Error::Io { path: path.to_owned(), source };
    let mut file = File::open(path).map_err(io_error)?;
    let len = usize::try_from(file.metadata().map_err(io_error)?.len()).unwrap_or(usize::MAX);
    let items = len.div_ceil(size_of::<T>());
    let mut buffer: Vec<T> = Vec::new();
    buffer.try_reserve_exact(items).map_err(|_| {
        io_error(std::io::Error::new(std::io::ErrorKind::OutOfMemory, format!("{len} bytes do not fit in memory")))
    })?;
    buffer.resize(items, T::default());
    // SAFETY: `buffer` owns `items · size_of::<T>() ≥ len` initialized bytes; `T` is plain
    // data (f32, u32 or u8), for which any bytes are a valid value.
    let bytes = unsafe { std::slice::from_raw_parts_mut(buffer.as_mut_ptr().cast::<u8>(), len) };
    file.read_exact(bytes).map_err(io_error)?;
    Ok((buffer, len))
}
