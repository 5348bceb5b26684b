//! `COPY` and `ADD` staged as a layer: the files a step names — from the build context (only
//! those it matches, `.dockerignore`d ones never), from heredocs, or from another image or
//! stage's layers (`--from`) — are written into an empty directory at their destination paths,
//! which then becomes the layer ([`crate::image::commit::derive`]). Docker's rules: a directory
//! source copies its contents; several sources need a destination directory ending in `/`; a
//! destination ending in `/` or naming an existing directory receives the file by its name,
//! otherwise it is the file's new name; missing parents are created; `--chown` (names looked up
//! in the image's `/etc/passwd` and `/etc/group`) and `--chmod` (octal) apply to what is
//! copied; `ADD` of a local tar archive (plain or gzip) unpacks it; `ADD` of a URL writes the
//! file the executor downloaded (not unpacked, mode 0600, the server's Last-Modified). Parents that exist in the
//! image keep their owner and mode; symlinks among them are followed inside the image.
//! Blocking.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::cache::Context;
use super::dockerfile::Heredoc;
use super::meta::absolute;
use super::rootfs::Rootfs;
use super::stages::CopyStep;

/// A file `ADD` downloaded (by the executor) before the step: staged at `path`, named `name`
/// (the URL's last path segment), with the server's `Last-Modified` as `mtime` when it sent one.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    pub url: String,
    pub name: String,
    pub path: PathBuf,
    pub mtime: Option<i64>,
}

/// Whether an `ADD` source is a URL fetched over HTTP(S).
pub fn is_http(source: &str) -> bool {
    let lower = source.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Where a step's sources are read.
pub enum Sources<'a> {
    Context(&'a mut Context),
    Image(&'a Rootfs),
}

/// What is copied: owner and mode applied to every entry.
struct Attrs {
    owner: Option<(u32, u32)>,
    mode: Option<u32>,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

/// The owner `--chown` names, resolved in the image `target`.
fn owner(chown: &str, target: &Rootfs) -> Result<(u32, u32), String> {
    let passwd = target.read_text("/etc/passwd");
    let group = target.read_text("/etc/group");
    let (user, grp) = match chown.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (chown, None),
    };
    let r = crate::runtime::user::resolve(chown, &passwd, &group)
        .map_err(|e| format!("--chown={chown}: {e}"))?;
    // Docker: a user without a group uses the same number as the group.
    let gid = match grp {
        None if user.parse::<u32>().is_ok() => r.uid,
        _ => r.gid,
    };
    Ok((r.uid, gid))
}

fn mode(chmod: &str) -> Result<u32, String> {
    u32::from_str_radix(chmod, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("--chmod={chmod}: only octal modes (0755) are supported"))
}

/// `path` inside the image with the symlinks among its existing parents resolved (absolute,
/// cleaned).
fn real(path: &str, target: &Rootfs) -> String {
    let mut cur = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        let cand = format!("{cur}/{part}");
        cur = match target.lookup(&cand, true) {
            Some(f) if f.meta.is_dir() => format!("/{}", f.rel),
            _ => cand,
        };
    }
    if cur.is_empty() { "/".to_string() } else { cur }
}

/// Creates the parents of `rel` (relative to the layer root) in the layer, each with the owner
/// and mode it has in the image, or root's 0755 when it is new.
fn parents(layer: &Path, rel: &str, target: &Rootfs) -> Result<(), String> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let mut dir = layer.to_path_buf();
    let mut inside = String::new();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        dir = dir.join(part);
        inside = format!("{inside}/{part}");
        if dir.exists() {
            continue;
        }
        std::fs::create_dir(&dir).map_err(|e| io_err("create", &dir, e))?;
        let (m, uid, gid) = match target.lookup(&inside, false) {
            Some(f) if f.meta.is_dir() => (f.meta.mode() & 0o7777, f.meta.uid(), f.meta.gid()),
            _ => (0o755, 0, 0),
        };
        set(&dir, m, Some((uid, gid)), false)?;
    }
    Ok(())
}

fn set(path: &Path, mode: u32, owner: Option<(u32, u32)>, link: bool) -> Result<(), String> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(|e| io_err("chown", path, e))?;
    }
    if !link {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_err("chmod", path, e))?;
    }
    Ok(())
}

/// One entry of a source tree: where it is on the host, and what it is.
struct Src {
    host: PathBuf,
    meta: std::fs::Metadata,
}

/// The children of directories of the context listing, by parent path.
fn children_index(listing: &[(String, char)]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (rel, _) in listing {
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p.to_string(), n.to_string()),
            None => (String::new(), rel.clone()),
        };
        out.entry(parent).or_default().push(name);
    }
    out
}

/// Writes `src` (a file, symlink or directory, recursively) at `dst` in the layer.
struct Writer<'a> {
    layer: &'a Path,
    attrs: &'a Attrs,
    /// Context only: the children allowed (not ignored), by directory.
    children: Option<&'a BTreeMap<String, Vec<String>>>,
    image: Option<&'a Rootfs>,
    count: usize,
}

impl Writer<'_> {
    fn lstat(path: &Path) -> Result<std::fs::Metadata, String> {
        std::fs::symlink_metadata(path).map_err(|e| io_err("read", path, e))
    }

    /// `rel` is the source's path in its tree (context-relative, or resolved in the image);
    /// `dst` is relative to the layer root.
    fn entry(&mut self, src: &Src, rel: &str, dst: &str) -> Result<(), String> {
        self.count += 1;
        if self.count > 1_000_000 {
            return Err("more than a million files to copy".into());
        }
        let to = self.layer.join(dst.trim_start_matches('/'));
        let ft = src.meta.file_type();
        if ft.is_dir() {
            if !to.is_dir() {
                std::fs::create_dir(&to).map_err(|e| io_err("create", &to, e))?;
            }
            let m = self.attrs.mode.unwrap_or(src.meta.mode() & 0o7777);
            set(&to, m, Some(self.attrs.owner.unwrap_or((0, 0))), false)?;
            let names: Vec<String> = match (self.children, self.image) {
                (Some(index), _) => index.get(rel).cloned().unwrap_or_default(),
                (None, Some(fs)) => fs.list(rel),
                _ => Vec::new(),
            };
            for name in names {
                let child_rel = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                let child = match self.image {
                    Some(fs) if self.children.is_none() => {
                        let Some(f) = fs.lookup(&child_rel, false) else {
                            continue;
                        };
                        Src {
                            host: f.path,
                            meta: f.meta,
                        }
                    }
                    _ => {
                        let host = src.host.join(&name);
                        let meta = Self::lstat(&host)?;
                        Src { host, meta }
                    }
                };
                self.entry(&child, &child_rel, &format!("{dst}/{name}"))?;
            }
            return Ok(());
        }
        if to.symlink_metadata().is_ok() {
            if to.is_dir() && !to.is_symlink() {
                std::fs::remove_dir_all(&to).map_err(|e| io_err("replace", &to, e))?;
            } else {
                std::fs::remove_file(&to).map_err(|e| io_err("replace", &to, e))?;
            }
        }
        let owner = Some(self.attrs.owner.unwrap_or((0, 0)));
        if ft.is_symlink() {
            let target = std::fs::read_link(&src.host).map_err(|e| io_err("read", &src.host, e))?;
            std::os::unix::fs::symlink(&target, &to).map_err(|e| io_err("create", &to, e))?;
            return set(&to, 0, owner, true);
        }
        if !ft.is_file() {
            // Devices, fifos, sockets are not copied.
            return Ok(());
        }
        std::fs::copy(&src.host, &to).map_err(|e| io_err("copy to", &to, e))?;
        let m = self.attrs.mode.unwrap_or(src.meta.mode() & 0o7777);
        set(&to, m, owner, false)?;
        // The source's modification time, so the same files make the same layer.
        let times = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: src.meta.atime(),
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: src.meta.mtime(),
                tv_nsec: src.meta.mtime_nsec(),
            },
        };
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            &to,
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
        Ok(())
    }
}

/// Whether the file is a tar archive ADD unpacks: gzip, or a tar header (`ustar` at 257).
fn archive_kind(path: &Path) -> Option<bool> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        return Some(true);
    }
    if n >= 262 && &head[257..262] == b"ustar" {
        return Some(false);
    }
    None
}

fn unpack(path: &Path, gzip: bool, into: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| io_err("open", path, e))?;
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    archive
        .unpack(into)
        .map_err(|e| format!("unpack {}: {e}", path.display()))
}

fn is_heredoc<'a>(source: &str, heredocs: &'a [Heredoc]) -> Option<&'a Heredoc> {
    if !source.starts_with("<<") {
        return None;
    }
    let name = source
        .trim_start_matches("<<")
        .trim_start_matches('-')
        .trim_matches(|c| c == '"' || c == '\'');
    heredocs.iter().find(|h| h.name == name)
}

/// Stages `copy` into the empty directory `layer`. `target` is the image the step runs on,
/// `workdir` its working directory. Errors name the source or the path.
#[allow(clippy::too_many_arguments)]
pub fn stage(
    layer: &Path,
    copy: &CopyStep,
    add: bool,
    heredocs: &[Heredoc],
    remote: &[RemoteFile],
    sources: Sources<'_>,
    target: &Rootfs,
    workdir: &str,
) -> Result<(), String> {
    let attrs = Attrs {
        owner: match &copy.chown {
            Some(c) => Some(owner(c, target)?),
            None => None,
        },
        mode: match &copy.chmod {
            Some(m) => Some(mode(m)?),
            None => None,
        },
    };
    let dest_abs = absolute(&copy.dest, workdir);
    let dest_dir =
        copy.dest.ends_with('/') || copy.dest.ends_with("/.") || target.is_dir(&dest_abs);
    let dest = real(&dest_abs, target);

    // What the sources name: (rel in its tree, the entry, whether it came from a glob).
    let mut items: Vec<(String, Src)> = Vec::new();
    let mut index = None;
    let mut heredoc_files: Vec<(String, &Heredoc)> = Vec::new();
    let mut image = None;
    let mut remote_files: Vec<&RemoteFile> = Vec::new();
    match sources {
        Sources::Context(ctx) => {
            for s in &copy.sources {
                if let Some(h) = is_heredoc(s, heredocs) {
                    heredoc_files.push((h.name.clone(), h));
                    continue;
                }
                if add && is_http(s) {
                    let f = remote
                        .iter()
                        .find(|f| f.url == *s)
                        .ok_or_else(|| format!("{s}: internal: the URL was not downloaded"))?;
                    remote_files.push(f);
                    continue;
                }
                if is_http(s) {
                    return Err(format!("{s}: COPY does not fetch URLs (ADD does)"));
                }
                if s.starts_with("git@") || s.starts_with("git://") {
                    return Err(format!(
                        "{s}: git sources are not supported (clone the repository into the \
                         context and COPY it)"
                    ));
                }
                let matched = ctx.matches(s).map_err(|e| e.to_string())?;
                for (rel, _) in matched {
                    let host = if rel.is_empty() {
                        ctx.root().to_path_buf()
                    } else {
                        ctx.root().join(&rel)
                    };
                    let meta = Writer::lstat(&host)?;
                    items.push((rel, Src { host, meta }));
                }
            }
            index = Some(children_index(&ctx.listing().map_err(|e| e.to_string())?));
        }
        Sources::Image(fs) => {
            image = Some(fs);
            for s in &copy.sources {
                let path = absolute(s, "/");
                let found = fs
                    .lookup(&path, true)
                    .ok_or_else(|| format!("{s:?} was not found in the --from image or stage"))?;
                let rel = found.rel.clone();
                items.push((
                    rel,
                    Src {
                        host: found.path,
                        meta: found.meta,
                    },
                ));
            }
        }
    }
    let total = items.len() + heredoc_files.len() + remote_files.len();
    let several = total > 1;
    if several && !dest_dir {
        return Err(format!(
            "{} sources to {:?}: with several sources the destination must be a directory \
             ending in /",
            total, copy.dest
        ));
    }
    let mut w = Writer {
        layer,
        attrs: &attrs,
        children: index.as_ref(),
        image,
        count: 0,
    };
    let base = |name: &str| -> String {
        if dest_dir || several {
            format!("{}/{name}", dest.trim_end_matches('/'))
        } else {
            dest.clone()
        }
    };
    for (name, h) in heredoc_files {
        let to_rel = base(&name);
        parents(layer, &to_rel, target)?;
        let to = layer.join(to_rel.trim_start_matches('/'));
        std::fs::write(&to, h.content.as_bytes()).map_err(|e| io_err("write", &to, e))?;
        set(
            &to,
            attrs.mode.unwrap_or(0o644),
            Some(attrs.owner.unwrap_or((0, 0))),
            false,
        )?;
    }
    // Downloads: never unpacked, 0600 unless --chmod, the server's Last-Modified as mtime.
    for f in remote_files {
        if (dest_dir || several) && f.name.is_empty() {
            return Err(format!(
                "{}: no file name in the URL for the destination directory {:?}",
                f.url, copy.dest
            ));
        }
        let to_rel = base(&f.name);
        parents(layer, &to_rel, target)?;
        let to = layer.join(to_rel.trim_start_matches('/'));
        if to.is_dir() && !to.is_symlink() {
            std::fs::remove_dir_all(&to).map_err(|e| io_err("replace", &to, e))?;
        }
        std::fs::copy(&f.path, &to).map_err(|e| io_err("copy to", &to, e))?;
        set(
            &to,
            attrs.mode.unwrap_or(0o600),
            Some(attrs.owner.unwrap_or((0, 0))),
            false,
        )?;
        if let Some(t) = f.mtime {
            let ts = rustix::fs::Timespec {
                tv_sec: t,
                tv_nsec: 0,
            };
            let _ = rustix::fs::utimensat(
                rustix::fs::CWD,
                &to,
                &rustix::fs::Timestamps {
                    last_access: ts,
                    last_modification: ts,
                },
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            );
        }
    }
    for (rel, src) in items {
        if src.meta.is_dir() {
            // A directory's contents go into the destination.
            parents(layer, &format!("{dest}/x"), target)?;
            w.entry(&src, &rel, &dest)?;
            continue;
        }
        if add
            && src.meta.is_file()
            && w.image.is_none()
            && let Some(gzip) = archive_kind(&src.host)
        {
            parents(layer, &format!("{dest}/x"), target)?;
            let into = layer.join(dest.trim_start_matches('/'));
            std::fs::create_dir_all(&into).map_err(|e| io_err("create", &into, e))?;
            unpack(&src.host, gzip, &into)?;
            continue;
        }
        let name = rel.rsplit('/').next().unwrap_or(&rel).to_string();
        let to_rel = base(&name);
        parents(layer, &to_rel, target)?;
        w.entry(&src, &rel, &to_rel)?;
    }
    Ok(())
}
