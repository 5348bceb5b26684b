//! Layer cache keys (pure: reads the build context, writes nothing). A step's key is the SHA-256
//! of its parent's key (the previous step's, or the base's), its instruction text after
//! expansion ([`Step::text`]), the build args in effect and, for `COPY`/`ADD` from the context,
//! the content hash of the files it reads: their sorted paths, kinds, modes and contents (symlinks
//! by their target), `.dockerignore`d files left out. A `COPY --from=stage` hashes that stage's
//! final key instead. So a change to one copied file changes the key of the step that copies it
//! and of every later step, and of no earlier one.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ignore::Patterns;
use super::stages::{Base, Plan, Source, Stage, Step};

#[derive(Debug, Clone, PartialEq)]
pub enum CacheError {
    /// A source that leaves the context (`../x`, or an absolute path climbing out).
    OutsideContext {
        source: String,
    },
    /// A source that matches nothing in the context (after `.dockerignore`).
    NotFound {
        source: String,
    },
    Io {
        path: PathBuf,
        message: String,
    },
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::OutsideContext { source } => {
                write!(f, "{source:?} is outside the build context")
            }
            CacheError::NotFound { source } => write!(
                f,
                "{source:?} was not found in the build context (or .dockerignore excludes it)"
            ),
            CacheError::Io { path, message } => write!(f, "{}: {message}", path.display()),
        }
    }
}

impl std::error::Error for CacheError {}

/// One file of the context, as hashed.
#[derive(Debug, Clone)]
struct Entry {
    rel: String,
    /// `f`, `d` or `l`.
    kind: char,
    mode: u32,
    /// SHA-256 of the content (files, read when a step first needs it) or of the link target
    /// (symlinks); empty for directories.
    digest: Option<String>,
}

/// The build context: its root, its `.dockerignore`, and its files (listed once, on first use;
/// a file's content is hashed only when a step reads it, and once).
pub struct Context {
    root: PathBuf,
    ignore: Patterns,
    entries: Option<Vec<Entry>>,
}

impl Context {
    /// The context at `root`, with the `.dockerignore` found there (if any).
    pub fn open(root: &Path) -> Result<Context, CacheError> {
        let ignore = match std::fs::read_to_string(root.join(".dockerignore")) {
            Ok(t) => Patterns::parse(&t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Patterns::default(),
            Err(e) => {
                return Err(CacheError::Io {
                    path: root.join(".dockerignore"),
                    message: e.to_string(),
                });
            }
        };
        Ok(Context::with_ignore(root, ignore))
    }

    pub fn with_ignore(root: &Path, ignore: Patterns) -> Context {
        Context {
            root: root.to_path_buf(),
            ignore,
            entries: None,
        }
    }

    fn entries(&mut self) -> Result<&[Entry], CacheError> {
        if self.entries.is_none() {
            let mut out = Vec::new();
            walk(&self.root, "", &self.ignore, &mut out)?;
            out.sort_by(|a, b| a.rel.cmp(&b.rel));
            self.entries = Some(out);
        }
        Ok(self.entries.as_deref().unwrap_or(&[]))
    }

    /// The context's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every file, directory and symlink of the context that `.dockerignore` lets through, as
    /// (path relative to the root, kind `f`/`d`/`l`), sorted by path.
    pub fn listing(&mut self) -> Result<Vec<(String, char)>, CacheError> {
        Ok(self
            .entries()?
            .iter()
            .map(|e| (e.rel.clone(), e.kind))
            .collect())
    }

    /// What a `COPY`/`ADD` source names: the entries it matches (a path or a glob; `""` or `.`
    /// is the whole context), without those under another match; an error when it leaves the
    /// context or matches nothing.
    pub fn matches(&mut self, source: &str) -> Result<Vec<(String, char)>, CacheError> {
        let cleaned = clean_source(source)?;
        if cleaned.is_empty() {
            return Ok(vec![(String::new(), 'd')]);
        }
        let pattern = Patterns::new(&[cleaned.as_str()]);
        let mut out: Vec<(String, char)> = Vec::new();
        for e in self.entries()? {
            if !pattern.matches(&e.rel) {
                continue;
            }
            let under = out.iter().any(|(m, _)| {
                e.rel
                    .strip_prefix(m.as_str())
                    .is_some_and(|r| r.starts_with('/'))
            });
            if !under {
                out.push((e.rel.clone(), e.kind));
            }
        }
        if out.is_empty() {
            return Err(CacheError::NotFound {
                source: source.to_string(),
            });
        }
        Ok(out)
    }

    /// The content hash of what these sources read (paths or globs relative to the context).
    pub fn hash_sources(&mut self, sources: &[String]) -> Result<String, CacheError> {
        let mut h = Sha256::new();
        for source in sources {
            let cleaned = clean_source(source)?;
            let pattern = Patterns::new(&[cleaned.as_str()]);
            let everything = cleaned.is_empty();
            let mut any = false;
            h.update(b"source\0");
            h.update(source.as_bytes());
            h.update(b"\n");
            self.entries()?;
            let root = self.root.clone();
            for e in self.entries.iter_mut().flatten() {
                if everything || pattern.matches(&e.rel) {
                    any = true;
                    let digest = match &e.digest {
                        Some(d) => d.clone(),
                        None => {
                            let d = file_digest(&root.join(&e.rel))?;
                            e.digest = Some(d.clone());
                            d
                        }
                    };
                    h.update(format!("{}\0{}\0{:o}\0{digest}\n", e.rel, e.kind, e.mode).as_bytes());
                }
            }
            if !any && !everything {
                return Err(CacheError::NotFound {
                    source: source.clone(),
                });
            }
        }
        Ok(hex::encode(h.finalize()))
    }
}

/// SHA-256 of a file's content, streamed.
fn file_digest(path: &Path) -> Result<String, CacheError> {
    let io = |e: std::io::Error| CacheError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A source relative to the context root, cleaned; `..` above the root is an error.
pub fn clean_source(source: &str) -> Result<String, CacheError> {
    let mut parts: Vec<&str> = Vec::new();
    for p in source.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(CacheError::OutsideContext {
                        source: source.to_string(),
                    });
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn walk(root: &Path, rel: &str, ignore: &Patterns, out: &mut Vec<Entry>) -> Result<(), CacheError> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let io = |path: &Path, e: std::io::Error| CacheError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let read = std::fs::read_dir(&dir).map_err(|e| io(&dir, e))?;
    for item in read {
        let item = item.map_err(|e| io(&dir, e))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ignored = ignore.matches(&child);
        let path = item.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        if ft.is_dir() {
            if ignored && !ignore.has_exceptions() {
                continue;
            }
            if !ignored {
                out.push(Entry {
                    rel: child.clone(),
                    kind: 'd',
                    mode,
                    digest: Some(String::new()),
                });
            }
            walk(root, &child, ignore, out)?;
            continue;
        }
        if ignored {
            continue;
        }
        let (kind, digest) = if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| io(&path, e))?;
            (
                'l',
                Some(hex::encode(Sha256::digest(
                    target.as_os_str().as_encoded_bytes(),
                ))),
            )
        } else if ft.is_file() {
            ('f', None)
        } else {
            // Sockets, fifos, devices: not copied by a build; leave them out.
            continue;
        };
        out.push(Entry {
            rel: child,
            kind,
            mode,
            digest,
        });
    }
    Ok(())
}

/// The key of a step whose parent has key `parent`; `content` is the hash of what it reads.
pub fn step_key(
    parent: &str,
    text: &str,
    args: &BTreeMap<String, String>,
    content: Option<&str>,
) -> String {
    let mut h = Sha256::new();
    h.update(b"flotilla-build-step-v1\0");
    h.update(parent.as_bytes());
    h.update(b"\0");
    h.update(text.as_bytes());
    h.update(b"\0");
    for (k, v) in args {
        h.update(format!("{}={}\0", k.len(), k).as_bytes());
        h.update(format!("{}:{}\0", v.len(), v).as_bytes());
    }
    h.update(b"\0");
    if let Some(c) = content {
        h.update(c.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// A cache error at a step: which stage (index into the plan's stages) and which of its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyError {
    pub stage: usize,
    pub step: usize,
    pub error: CacheError,
}

/// The keys of every step of the stages the plan builds: stage index → one key per step.
/// `base_key` gives the key of a base image (its digest once pulled; the reference until then).
pub fn plan_keys(
    plan: &Plan,
    ctx: &mut Context,
    base_key: &dyn Fn(&str) -> String,
) -> Result<BTreeMap<usize, Vec<String>>, KeyError> {
    let mut out: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut last: BTreeMap<usize, String> = BTreeMap::new();
    for &s in &plan.order {
        let stage = &plan.stages[s];
        let parent = match &stage.base {
            Base::Scratch => "scratch".to_string(),
            Base::Image(r) => base_key(r),
            Base::Stage(i) => last.get(i).cloned().unwrap_or_default(),
        };
        let keys =
            stage_keys(stage, &parent, &last, ctx, base_key).map_err(|(step, error)| KeyError {
                stage: s,
                step,
                error,
            })?;
        last.insert(s, keys.last().cloned().unwrap_or(parent));
        out.insert(s, keys);
    }
    Ok(out)
}

/// The keys of one stage's steps, from the key of its base; an error names the step (its index).
pub fn stage_keys(
    stage: &Stage,
    base: &str,
    stage_keys_done: &BTreeMap<usize, String>,
    ctx: &mut Context,
    base_key: &dyn Fn(&str) -> String,
) -> Result<Vec<String>, (usize, CacheError)> {
    let mut parent = base.to_string();
    let mut out = Vec::with_capacity(stage.steps.len());
    for (n, step) in stage.steps.iter().enumerate() {
        let content = content_of(step, stage_keys_done, ctx, base_key).map_err(|e| (n, e))?;
        let key = step_key(&parent, &step.text, &step.args, content.as_deref());
        out.push(key.clone());
        parent = key;
    }
    Ok(out)
}

fn content_of(
    step: &Step,
    done: &BTreeMap<usize, String>,
    ctx: &mut Context,
    base_key: &dyn Fn(&str) -> String,
) -> Result<Option<String>, CacheError> {
    let Some(c) = &step.copy else {
        return Ok(None);
    };
    match &c.from {
        Some(Source::Stage(i)) => Ok(done.get(i).cloned()),
        Some(Source::Image(r)) => Ok(Some(base_key(r))),
        None => {
            let heredocs: Vec<&str> = step
                .instruction
                .heredocs
                .iter()
                .map(|h| h.name.as_str())
                .collect();
            let files: Vec<String> = c
                .sources
                .iter()
                .filter(|s| {
                    let heredoc = s.starts_with("<<") && heredocs.iter().any(|h| s.contains(h));
                    !heredoc && !is_url(s)
                })
                .cloned()
                .collect();
            if files.is_empty() {
                return Ok(None);
            }
            ctx.hash_sources(&files).map(Some)
        }
    }
}

/// `ADD https://…` and git sources are fetched, not read from the context.
fn is_url(s: &str) -> bool {
    super::copy::is_http(s) || s.starts_with("git@") || s.starts_with("git://")
}
