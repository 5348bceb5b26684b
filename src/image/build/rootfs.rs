//! A read-only merged view of an image's unpacked layers (the overlay form the store keeps:
//! whiteouts as 0/0 character devices, opaque directories by xattr), without mounting
//! anything: what a build step needs to know about the image it runs on — whether a path
//! exists and what it is (COPY's destination rules, WORKDIR), the text of `/etc/passwd` and
//! `/etc/group` (`--chown` names), and the files `COPY --from` reads. Symlinks among the parents
//! of a path are followed inside the view (never out to the host); lstat semantics otherwise.

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::super::record::ImageRecord;
use super::super::store::Store;

/// The layers of an image, top first.
#[derive(Debug, Clone, Default)]
pub struct Rootfs {
    layers: Vec<PathBuf>,
}

/// A path found in the view: where it is on the host and its metadata (not followed).
#[derive(Debug)]
pub struct Found {
    pub path: PathBuf,
    pub meta: Metadata,
    /// The path inside the image, symlinks among its parents resolved.
    pub rel: String,
}

fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 8];
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| matches!(rustix::fs::lgetxattr(path, *name, &mut buf), Ok(1) if buf[0] == b'y'))
}

/// `a/b/../c` → components, `..` never above the root.
fn components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p.to_string()),
        }
    }
    out
}

impl Rootfs {
    /// The view of `image` (`None`: scratch, empty).
    pub fn of(store: &Store, image: Option<&ImageRecord>) -> Rootfs {
        let layers = image
            .map(|i| {
                i.layers
                    .iter()
                    .rev()
                    .map(|l| store.layer_path(&l.chain_id))
                    .collect()
            })
            .unwrap_or_default();
        Rootfs { layers }
    }

    /// The entry at exactly these components (no symlink following): the topmost layer that has
    /// it, unless a whiteout or an opaque directory above hides it.
    fn exact(&self, parts: &[String]) -> Option<(PathBuf, Metadata)> {
        'layers: for layer in &self.layers {
            // A whiteout of the entry or an opaque parent in this layer hides lower layers.
            let mut dir = layer.clone();
            // An opaque directory among the parents in this layer hides the lower layers.
            let mut opaque = false;
            for (n, part) in parts.iter().enumerate() {
                let p = dir.join(part);
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if is_whiteout(&m) => return None,
                    Ok(m) if n + 1 == parts.len() => return Some((p, m)),
                    Ok(m) if m.is_dir() => {
                        opaque |= is_opaque(&p);
                        dir = p;
                        continue;
                    }
                    // A non-directory parent in this layer: the path cannot exist below it.
                    Ok(_) => return None,
                    Err(_) => {
                        if opaque {
                            return None;
                        }
                        continue 'layers;
                    }
                }
            }
            if parts.is_empty() {
                return std::fs::symlink_metadata(layer)
                    .ok()
                    .map(|m| (layer.clone(), m));
            }
        }
        None
    }

    /// Looks `path` (absolute or relative to `/`) up, following symlinks among its parents
    /// (and the last component too when `follow`), at most 40 of them.
    pub fn lookup(&self, path: &str, follow: bool) -> Option<Found> {
        let mut todo: Vec<String> = components(path);
        todo.reverse();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            if part == ".." {
                done.pop();
                continue;
            }
            done.push(part);
            let last = todo.is_empty();
            let (p, m) = self.exact(&done)?;
            if m.file_type().is_symlink() && (!last || follow) {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                let target = std::fs::read_link(&p).ok()?;
                let target = target.to_string_lossy().into_owned();
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                let mut more = components_keep_dotdot(&target);
                more.reverse();
                todo.extend(more);
                continue;
            }
            if last {
                return Some(Found {
                    path: p,
                    meta: m,
                    rel: done.join("/"),
                });
            }
        }
        // The root itself.
        let root = self.layers.first()?;
        let meta = std::fs::symlink_metadata(root).ok()?;
        Some(Found {
            path: root.clone(),
            meta,
            rel: String::new(),
        })
    }

    /// Whether `path` is a directory in the image (symlinks followed).
    pub fn is_dir(&self, path: &str) -> bool {
        self.lookup(path, true).is_some_and(|f| f.meta.is_dir())
    }

    /// The names in directory `rel` (already resolved, see [`Found::rel`]), merged over the
    /// layers, sorted.
    pub fn list(&self, rel: &str) -> Vec<String> {
        let parts = components(rel);
        let mut seen: std::collections::BTreeMap<String, bool> = Default::default();
        'layers: for layer in &self.layers {
            // Every component a real directory of this layer (never a host symlink followed);
            // a whiteout or a non-directory hides the lower layers.
            let mut dir = layer.clone();
            for part in &parts {
                dir = dir.join(part);
                match std::fs::symlink_metadata(&dir) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => break 'layers,
                    Err(_) => continue 'layers,
                }
            }
            if let Ok(read) = std::fs::read_dir(&dir) {
                for e in read.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let white = e.metadata().is_ok_and(|m| is_whiteout(&m));
                    seen.entry(name).or_insert(white);
                }
            }
            if is_opaque(&dir) {
                break;
            }
        }
        seen.into_iter()
            .filter(|(_, white)| !white)
            .map(|(n, _)| n)
            .collect()
    }

    /// A small text file of the image (`/etc/passwd`), empty when it is not there.
    pub fn read_text(&self, path: &str) -> String {
        match self.lookup(path, true) {
            Some(f) if f.meta.is_file() && f.meta.len() < 4 << 20 => {
                std::fs::read_to_string(&f.path).unwrap_or_default()
            }
            _ => String::new(),
        }
    }
}

/// Like [`components`] but keeping `..` (a symlink target is resolved step by step).
fn components_keep_dotdot(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_view_with_whiteouts_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("lower");
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(lower.join("usr/bin")).unwrap();
        std::fs::write(lower.join("usr/bin/sh"), "sh").unwrap();
        std::fs::write(lower.join("gone"), "x").unwrap();
        std::os::unix::fs::symlink("usr/bin", lower.join("bin")).unwrap();
        std::fs::create_dir_all(upper.join("usr/bin")).unwrap();
        std::fs::write(upper.join("usr/bin/ls"), "ls").unwrap();
        let fs = Rootfs {
            layers: vec![upper, lower],
        };
        assert!(fs.is_dir("/usr/bin"));
        assert!(fs.is_dir("/bin"));
        assert_eq!(fs.lookup("/bin/sh", false).unwrap().rel, "usr/bin/sh");
        assert_eq!(fs.list("usr/bin"), ["ls", "sh"]);
        assert!(fs.lookup("/gone", false).is_some());
        assert!(fs.lookup("/nope", false).is_none());
        assert_eq!(fs.read_text("/bin/ls"), "ls");
    }
}
