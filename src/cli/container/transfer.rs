//! `container cp` and `container commit` through the daemon. cp sends or receives tar
//! streams (`PUT`/`GET /v1/containers/{id}/archive`): into the container, the host path is
//! packed under its own name and the daemon copies it with cp's rules (resolved inside the
//! container's root); out of it, the daemon's tar is unpacked with the same rules on the host
//! side (an existing directory receives the entry under its own name, anything else is the new
//! name of the copy). commit asks the daemon for a new image from the container's changes
//! (a running container is paused meanwhile, as Docker does).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use clap::Args;

use super::{Failure, fail};
use crate::api::client::Client;
use crate::api::types::ContainerCommit;
use crate::cli::out;

#[derive(Args, Debug, Clone)]
pub struct CpArgs {
    /// CONTAINER:PATH or a host path
    #[arg(value_name = "SRC")]
    pub src: String,
    /// CONTAINER:PATH or a host path
    #[arg(value_name = "DEST")]
    pub dest: String,
}

#[derive(Args, Debug, Clone)]
pub struct CommitArgs {
    /// Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER,
    /// WORKDIR)
    #[arg(short, long, value_name = "INSTRUCTION")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author
    #[arg(short, long)]
    pub author: Option<String>,
    /// The container
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// The new image's name
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: String,
}

/// `CONTAINER:PATH` → (container, path); a host path with a colon needs `./` or `/` first.
fn container_path(text: &str) -> Option<(&str, &str)> {
    let (c, p) = text.split_once(':')?;
    (!c.is_empty() && !c.contains('/') && !c.starts_with('.')).then_some((c, p))
}

/// Sends what is written as chunks of the upload.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    const CHUNK: usize = 64 * 1024;

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload ended"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Writes a tar holding the host's `src` (a file, symlink or directory tree) under its own
/// name to `out`.
fn pack(src: &Path, out: &mut ChunkWriter) -> Result<(), Failure> {
    let err = |e: std::io::Error| fail(format!("cp: {}: {e}", src.display()));
    let meta = fs::symlink_metadata(src).map_err(err)?;
    let name = src
        .file_name()
        .ok_or_else(|| fail(format!("cp: {}: no file name", src.display())))?;
    let mut tar = tar::Builder::new(&mut *out);
    tar.follow_symlinks(false);
    if meta.is_dir() {
        tar.append_dir_all(name, src).map_err(err)?;
    } else {
        tar.append_path_with_name(src, name).map_err(err)?;
    }
    tar.finish().map_err(err)?;
    drop(tar);
    std::io::Write::flush(out).map_err(err)
}

/// Reads the chunks sent on a channel (the archive as it arrives); a failed download arrives
/// as an error, so that nothing is made from a cut archive.
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Result<Bytes, String>>,
    chunk: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.recv() {
                Ok(Ok(c)) => self.chunk = c,
                Ok(Err(e)) => return Err(std::io::Error::other(e)),
                // The whole archive was sent.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Unpacks the daemon's tar of the container's `path` to the host's `dest` with cp's rules.
fn unpack(tar: impl Read, path: &str, dest: &Path) -> Result<(), Failure> {
    let err = |e: std::io::Error| fail(format!("cp: {}: {e}", dest.display()));
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    if dest.is_dir() {
        return archive.unpack(dest).map_err(err);
    }
    // Staged beside the destination, then renamed: nothing half-made is left under its name.
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = parent.join(format!(".flotilla-cp-{}", std::process::id()));
    fs::create_dir(&staging).map_err(|e| fail(format!("cp: {}: {e}", staging.display())))?;
    let result = (|| {
        archive.unpack(&staging)?;
        let whole = path.trim_end_matches('/').is_empty();
        let mut entries: Vec<_> = fs::read_dir(&staging)?.flatten().collect();
        match entries.pop() {
            Some(entry) if entries.is_empty() && !whole => fs::rename(entry.path(), dest),
            _ => fs::rename(&staging, dest),
        }
    })();
    let _ = fs::remove_dir_all(&staging);
    result.map_err(err)
}

pub async fn cp(client: &Client, args: &CpArgs) -> Result<u8, Failure> {
    match (container_path(&args.src), container_path(&args.dest)) {
        (Some((c, p)), None) => {
            let path = if p.is_empty() { "/" } else { p };
            let mut stream = client.archive_get_stream(c, path).await.map_err(fail)?;
            // Unpacked on a thread as the chunks arrive: no archive is held in memory.
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Bytes, String>>(16);
            let (path_owned, dest) = (path.to_string(), PathBuf::from(&args.dest));
            let unpacker = tokio::task::spawn_blocking(move || {
                let reader = ChunkReader {
                    rx,
                    chunk: Bytes::new(),
                };
                unpack(reader, &path_owned, &dest)
            });
            while let Some(chunk) = stream.next().await {
                let failed = chunk.is_err();
                let chunk = chunk.map_err(|e| format!("the download failed: {e}"));
                let tx = tx.clone();
                // The unpacker gone (it failed) ends the download; it says why.
                let sent = tokio::task::spawn_blocking(move || tx.send(chunk).is_ok()).await;
                if failed || !matches!(sent, Ok(true)) {
                    break;
                }
            }
            drop(tx);
            unpacker.await.map_err(|e| fail(format!("cp: {e}")))??;
        }
        (None, Some((c, p))) => {
            let path = if p.is_empty() { "/" } else { p };
            let src = PathBuf::from(&args.src);
            // Checked before the upload starts, so a typo is one clear line.
            fs::symlink_metadata(&src).map_err(|e| fail(format!("cp: {}: {e}", src.display())))?;
            // Packed on a thread as it is sent: no archive is held in memory.
            let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(16);
            let packer = tokio::task::spawn_blocking(move || {
                let mut out = ChunkWriter {
                    tx: tx.clone(),
                    buf: Vec::new(),
                };
                let packed = pack(&src, &mut out);
                if let Err(f) = &packed {
                    // The daemon sees a failed upload and makes nothing.
                    let _ = tx.blocking_send(Err(std::io::Error::other(f.message.clone())));
                }
                packed
            });
            let sent = client.archive_put_stream(c, path, rx).await;
            let packed = packer.await.map_err(|e| fail(format!("cp: {e}")))?;
            // The daemon's refusal (no such container, bad path) says more than the packer's
            // cut upload.
            sent.map_err(fail)?;
            packed?;
        }
        (Some(_), Some(_)) => {
            return Err(fail("cp: copying between containers is not supported"));
        }
        (None, None) => {
            return Err(fail(
                "cp: one of SRC and DEST must be CONTAINER:PATH (a host path with ':' needs ./)",
            ));
        }
    }
    Ok(0)
}

pub async fn commit(client: &Client, args: &CommitArgs) -> Result<u8, Failure> {
    let req = ContainerCommit {
        reference: args.reference.clone(),
        changes: args.change.clone(),
        comment: args.message.clone(),
        author: args.author.clone(),
        pause: true,
    };
    let made = client
        .commit_container(&args.container, &req)
        .await
        .map_err(fail)?;
    out(&format!("{}\n", made.id)).map_err(fail)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths() {
        assert_eq!(container_path("web:/etc"), Some(("web", "/etc")));
        assert_eq!(container_path("/tmp/a:b"), None);
        assert_eq!(container_path("./a:b"), None);
        assert_eq!(container_path("file"), None);
    }
}
