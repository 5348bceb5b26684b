//! What the watcher last saw of the watched trees: a content hash (sha256 of the bytes and the
//! permission bits) per file, and the directories. A change event is compared with it, so a
//! save that changes nothing (same bytes, same mode) triggers nothing, and a deletion is only
//! propagated for what was there.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq)]
enum Known {
    Dir,
    File([u8; 32]),
}

/// What a path is now, compared with what was seen.
#[derive(Debug, PartialEq)]
pub enum Observed {
    /// A file with new content (or new mode), or a file not seen before.
    File { content: Vec<u8>, mode: u32 },
    /// A directory not seen before: its files are to be observed one by one.
    NewDir,
    /// Gone; it was a directory or a file.
    Gone,
    /// Nothing changed, or something never seen is gone, or not a file or directory.
    Same,
}

/// The files and directories seen, by absolute path.
#[derive(Debug, Default)]
pub struct Tree {
    known: HashMap<PathBuf, Known>,
}

fn digest(content: &[u8], mode: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(mode.to_le_bytes());
    h.update(content);
    h.finalize().into()
}

impl Tree {
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.known.contains_key(path)
    }

    /// Records `root` and everything under it (directories for which `prune` says true are
    /// skipped with their trees); the number of files hashed.
    pub fn scan(&mut self, root: &Path, prune: &dyn Fn(&Path) -> bool) -> usize {
        let mut files = 0;
        let mut stack = vec![root.to_path_buf()];
        while let Some(p) = stack.pop() {
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                if p != root && prune(&p) {
                    continue;
                }
                self.known.insert(p.clone(), Known::Dir);
                if let Ok(rd) = std::fs::read_dir(&p) {
                    stack.extend(rd.flatten().map(|e| e.path()));
                }
            } else if meta.is_file()
                && let Ok(content) = std::fs::read(&p)
            {
                let mode = meta.permissions().mode() & 0o7777;
                self.known.insert(p, Known::File(digest(&content, mode)));
                files += 1;
            }
        }
        files
    }

    /// Compares `path` now with what was seen, and records it.
    pub fn observe(&mut self, path: &Path) -> Observed {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => match self.known.insert(path.to_path_buf(), Known::Dir) {
                Some(Known::Dir) => Observed::Same,
                _ => Observed::NewDir,
            },
            Ok(meta) if meta.is_file() => {
                let Ok(content) = std::fs::read(path) else {
                    // Gone between the stat and the read: its removal event follows.
                    return Observed::Same;
                };
                let mode = meta.permissions().mode() & 0o7777;
                let d = digest(&content, mode);
                match self.known.insert(path.to_path_buf(), Known::File(d)) {
                    Some(Known::File(old)) if old == d => Observed::Same,
                    _ => Observed::File { content, mode },
                }
            }
            Ok(_) => Observed::Same,
            Err(_) => match self.known.remove(path) {
                Some(Known::Dir) => {
                    self.known.retain(|p, _| !p.starts_with(path));
                    Observed::Gone
                }
                Some(Known::File(_)) => Observed::Gone,
                None => Observed::Same,
            },
        }
    }

    /// What was seen under `root` (itself included).
    pub fn paths_under(&self, root: &Path) -> Vec<PathBuf> {
        self.known
            .keys()
            .filter(|p| p.starts_with(root))
            .cloned()
            .collect()
    }

    /// Forgets what is under `root` (a root no longer watched).
    pub fn forget(&mut self, root: &Path) {
        self.known.retain(|p, _| !p.starts_with(root));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_content_is_no_change_and_unknown_deletions_are_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a"), "1").unwrap();
        std::fs::create_dir(root.join("skipped")).unwrap();
        std::fs::write(root.join("skipped/b"), "1").unwrap();
        let mut t = Tree::default();
        assert_eq!(t.scan(root, &|p| p.ends_with("skipped")), 1);
        let a = root.join("sub/a");
        std::fs::write(&a, "1").unwrap();
        assert_eq!(t.observe(&a), Observed::Same);
        std::fs::write(&a, "2").unwrap();
        assert!(matches!(t.observe(&a), Observed::File { .. }));
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(t.observe(&a), Observed::File { mode: 0o600, .. }));
        std::fs::remove_file(&a).unwrap();
        assert_eq!(t.observe(&a), Observed::Gone);
        assert_eq!(t.observe(&a), Observed::Same);
        assert_eq!(t.observe(&root.join("never")), Observed::Same);
        std::fs::create_dir(root.join("new")).unwrap();
        assert_eq!(t.observe(&root.join("new")), Observed::NewDir);
        assert_eq!(t.observe(&root.join("new")), Observed::Same);
        std::fs::remove_dir_all(root.join("sub")).unwrap();
        assert_eq!(t.observe(&root.join("sub")), Observed::Gone);
        assert!(!t.contains(&root.join("sub/a")));
    }
}
