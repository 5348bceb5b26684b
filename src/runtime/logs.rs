//! Container logs: JSON lines in `<state dir>/container.log`, one object per line of output
//! (`{"time":"2024-05-01T12:34:56.000000001Z","stream":"stdout","log":"hello\n"}`, Docker's
//! json-file shape), rotated by size into `container.log.1`, `.2`, … (oldest highest).
//!
//! The shim writes them ([`Splitter`] cuts output into lines, [`Writer`] appends and rotates);
//! the lifecycle reads them ([`read_all`], [`Follower`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The current log file's name in the state dir.
pub const LOG_FILE: &str = "container.log";
/// Default size of one log file before it rotates (Docker's json-file default is unlimited;
/// flotilla caps at 10 MiB × 3 files).
pub const DEFAULT_MAX_SIZE: u64 = 10 << 20;
/// Default number of files kept, the current one included.
pub const DEFAULT_MAX_FILES: u32 = 3;
/// A line longer than this is written in pieces (Docker's 16 KiB).
pub const MAX_LINE: usize = 16 << 10;

/// Which standard stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339 UTC with nanoseconds ([`crate::runtime::time`]).
    pub time: String,
    pub stream: Stream,
    /// The line, with its newline (none for a cut or final partial line).
    pub log: String,
}

impl Entry {
    /// The line as `logs` prints it: the text, after the time and a space with `timestamps`.
    pub fn render(&self, timestamps: bool) -> String {
        if timestamps {
            format!("{} {}", self.time, self.log)
        } else {
            self.log.clone()
        }
    }
}

/// Cuts a stream of output into lines (newline included), and lines longer than
/// [`MAX_LINE`] into pieces.
#[derive(Debug, Default)]
pub struct Splitter {
    pending: Vec<u8>,
}

impl Splitter {
    /// Adds `data`; returns the complete lines it ends.
    pub fn push(&mut self, data: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(data);
        let mut lines = Vec::new();
        loop {
            let cut = match self.pending.iter().position(|b| *b == b'\n') {
                Some(i) if i < MAX_LINE => i + 1,
                _ if self.pending.len() >= MAX_LINE => MAX_LINE,
                _ => break,
            };
            let rest = self.pending.split_off(cut);
            let line = std::mem::replace(&mut self.pending, rest);
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        lines
    }

    /// The bytes of the line not ended yet.
    pub fn partial(&self) -> &[u8] {
        &self.pending
    }

    /// The partial line left at the end of the stream, if any.
    pub fn finish(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            return None;
        }
        let line = std::mem::take(&mut self.pending);
        Some(String::from_utf8_lossy(&line).into_owned())
    }
}

/// Appends entries to `container.log`, rotating by size.
#[derive(Debug)]
pub struct Writer {
    dir: PathBuf,
    max_size: u64,
    max_files: u32,
    file: File,
    size: u64,
}

impl Writer {
    /// Opens (appending to) `<dir>/container.log`.
    pub fn open(dir: &Path, max_size: u64, max_files: u32) -> io::Result<Writer> {
        let file = open_append(&dir.join(LOG_FILE))?;
        let size = file.metadata()?.len();
        Ok(Writer {
            dir: dir.to_path_buf(),
            max_size: max_size.max(1),
            max_files: max_files.max(1),
            file,
            size,
        })
    }

    /// Writes one entry (one `write` per line, so a reader sees whole lines or nothing).
    pub fn write(&mut self, entry: &Entry) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let path = |n: u32| rotated_path(&self.dir, n);
        if self.max_files <= 1 {
            self.file.set_len(0)?;
            self.file.seek(SeekFrom::Start(0))?;
            self.size = 0;
            return Ok(());
        }
        let _ = fs::remove_file(path(self.max_files - 1));
        for n in (1..self.max_files - 1).rev() {
            match fs::rename(path(n), path(n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        fs::rename(path(0), path(1))?;
        self.file = open_append(&path(0))?;
        self.size = 0;
        Ok(())
    }

    /// Makes what was written durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
}

/// `container.log` (n = 0) or `container.log.<n>`.
pub fn rotated_path(dir: &Path, n: u32) -> PathBuf {
    if n == 0 {
        dir.join(LOG_FILE)
    } else {
        dir.join(format!("{LOG_FILE}.{n}"))
    }
}

/// The rotated files present, oldest first (without the current `container.log`).
fn rotated_files(dir: &Path) -> Vec<PathBuf> {
    let mut numbered: Vec<(u32, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n: u32 = name
                .strip_prefix(LOG_FILE)?
                .strip_prefix('.')?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    numbered.sort_by_key(|e| std::cmp::Reverse(e.0));
    numbered.into_iter().map(|(_, p)| p).collect()
}

/// Parses the complete lines of `reader`; a malformed line is skipped. Returns the bytes
/// consumed (a final line without a newline is left for later).
fn read_entries(reader: &mut dyn Read, out: &mut Vec<Entry>) -> io::Result<u64> {
    let mut reader = BufReader::new(reader);
    let mut consumed = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(consumed);
        }
        consumed += n as u64;
        if let Ok(entry) = serde_json::from_slice::<Entry>(&line) {
            out.push(entry);
        }
    }
}

/// Every entry of the logs in `dir`, oldest first, across rotations.
pub fn read_all(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let current = match File::open(dir.join(LOG_FILE)) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    for path in rotated_files(dir) {
        match File::open(&path) {
            Ok(mut f) => {
                read_entries(&mut f, &mut out)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(mut f) = current {
        read_entries(&mut f, &mut out)?;
    }
    Ok(out)
}

/// Follows `container.log` from its current end: [`Follower::poll`] returns the entries
/// appended since, and moves to the new file after a rotation (finishing the old one first).
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    offset: u64,
}

impl Follower {
    /// Starts following at the current end of the current file.
    pub fn at_end(dir: &Path) -> io::Result<Follower> {
        let path = dir.join(LOG_FILE);
        let mut f = Follower {
            path,
            file: None,
            inode: 0,
            offset: 0,
        };
        if let Ok(file) = File::open(&f.path) {
            let meta = file.metadata()?;
            f.inode = meta.ino();
            f.offset = meta.len();
            f.file = Some(file);
        }
        Ok(f)
    }

    /// The entries appended since the last call.
    pub fn poll(&mut self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        self.read_more(&mut out)?;
        // Rotated (or created): finish the old file, then start the new one from the top.
        if let Ok(meta) = fs::metadata(&self.path)
            && (self.file.is_none() || meta.ino() != self.inode)
            && let Ok(file) = File::open(&self.path)
        {
            self.inode = file.metadata()?.ino();
            self.offset = 0;
            self.file = Some(file);
            self.read_more(&mut out)?;
        }
        Ok(out)
    }

    fn read_more(&mut self, out: &mut Vec<Entry>) -> io::Result<()> {
        if let Some(file) = &mut self.file {
            file.seek(SeekFrom::Start(self.offset))?;
            self.offset += read_entries(file, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Entry {
        Entry {
            time: format!("2024-01-01T00:00:00.{n:09}Z"),
            stream: if n.is_multiple_of(2) {
                Stream::Stdout
            } else {
                Stream::Stderr
            },
            log: format!("line {n:02}\n"),
        }
    }

    #[test]
    fn splits_lines_and_long_lines() {
        let mut s = Splitter::default();
        assert_eq!(s.push(b"a\nb"), vec!["a\n"]);
        assert_eq!(s.push(b"c\n\n"), vec!["bc\n", "\n"]);
        let long = vec![b'x'; MAX_LINE + 10];
        let lines = s.push(&long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(s.finish().as_deref(), Some("xxxxxxxxxx"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn rotates_by_size_and_reads_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&entry(0)).unwrap().len() as u64 + 1;
        let mut w = Writer::open(dir.path(), one * 4, 3).unwrap();
        for n in 0..20 {
            w.write(&entry(n)).unwrap();
        }
        // Three files of four lines: the last twelve lines are kept.
        let all = read_all(dir.path()).unwrap();
        let got: Vec<_> = all.iter().map(|e| e.log.clone()).collect();
        let want: Vec<_> = (8..20).map(|n| format!("line {n:02}\n")).collect();
        assert_eq!(got, want);
        assert!(rotated_path(dir.path(), 2).exists());
        assert!(!rotated_path(dir.path(), 3).exists());
        // Reopening appends.
        let mut w = Writer::open(dir.path(), one * 4, 3).unwrap();
        w.write(&entry(20)).unwrap();
        assert_eq!(read_all(dir.path()).unwrap().last(), Some(&entry(20)));
    }

    #[test]
    fn follower_sees_appends_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&entry(0)).unwrap().len() as u64 + 1;
        let mut w = Writer::open(dir.path(), one * 2, 2).unwrap();
        w.write(&entry(0)).unwrap();
        let mut f = Follower::at_end(dir.path()).unwrap();
        assert!(f.poll().unwrap().is_empty());
        w.write(&entry(1)).unwrap();
        w.write(&entry(2)).unwrap(); // rotates
        w.write(&entry(3)).unwrap();
        let got = f.poll().unwrap();
        assert_eq!(got, vec![entry(1), entry(2), entry(3)]);
    }

    #[test]
    fn renders_with_timestamps() {
        let e = entry(1);
        assert_eq!(e.render(false), "line 01\n");
        assert_eq!(e.render(true), "2024-01-01T00:00:00.000000001Z line 01\n");
    }
}
