//! The loader: from command-line options to a resolved stack. It finds the stack files, reads the
//! environment (`.env`, `--env-file`, the process), and for each file parses, interpolates,
//! checks and canonicalizes; then it merges the files, resolves `include` and `extends`, applies
//! profiles and hands the merged tree to [`super::normalize`]. Every problem of every file is
//! collected and returned at once, located.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use super::canon;
use super::dotenv;
use super::error::{Diagnostic, SpecErrors};
use super::interpolate;
use super::merge;
use super::node::{Key, Loc, Map, Node, Path, Value};
use super::normalize;
use super::schema;
use super::units;
use super::yaml;

/// The names Compose looks for, in order of preference.
pub const STACK_FILE_NAMES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];
pub const OVERRIDE_FILE_NAMES: &[&str] = &[
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
];

/// What the command line says about where the stack is and how to read it.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `-f` files in order; `-` is standard input.
    pub files: Vec<PathBuf>,
    pub project_directory: Option<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--env-file`, replacing the project's `.env` when given.
    pub env_files: Vec<PathBuf>,
    /// `--profile`; when empty, `COMPOSE_PROFILES` is used.
    pub profiles: Vec<String>,
    /// `false` for `--no-interpolate`.
    pub no_interpolate: bool,
    /// Where the command runs (the search for stack files starts here).
    pub working_dir: PathBuf,
    /// The process environment (passed in so tests need not touch the real one).
    pub environ: Vec<(String, String)>,
    /// What `-` reads; the CLI fills it from standard input.
    pub stdin: Option<String>,
}

/// A loaded stack.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub name: String,
    pub project_dir: PathBuf,
    /// The canonical, normalized stack: what `flotilla config --format json` prints.
    pub config: serde_json::Value,
    /// Every file read: stack files, included and extended files, `.env` and env files.
    pub files: Vec<PathBuf>,
    pub warnings: Vec<String>,
    /// Profiles in effect.
    pub profiles: Vec<String>,
    /// Every profile named by any service (for `config --profiles`).
    pub all_profiles: Vec<String>,
    /// Values of the environment variables that top-level `secrets` and `configs` name with
    /// `environment:` (only those, and only the ones set). Kept out of [`Loaded::config`] so
    /// that `flotilla config` never prints a secret; see [`Loaded::config_with_values`].
    pub secret_env: BTreeMap<String, String>,
}

impl Loaded {
    /// The canonical stack with every `environment:`-sourced secret and config turned into its
    /// `content:` (what the daemon needs to mount it, since it cannot see this environment).
    /// Never print this.
    pub fn config_with_values(&self) -> serde_json::Value {
        let mut config = self.config.clone();
        for section in ["secrets", "configs"] {
            let Some(objects) = config.get_mut(section).and_then(|v| v.as_object_mut()) else {
                continue;
            };
            for object in objects.values_mut() {
                let Some(o) = object.as_object_mut() else {
                    continue;
                };
                let value = o
                    .get("environment")
                    .and_then(|v| v.as_str())
                    .and_then(|var| self.secret_env.get(var));
                if let Some(value) = value.cloned() {
                    o.remove("environment");
                    o.insert("content".into(), serde_json::Value::String(value));
                }
            }
        }
        config
    }
}

/// The values of the variables `secrets.*.environment` and `configs.*.environment` name.
fn secret_env(config: &serde_json::Value, env: &Env) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for section in ["secrets", "configs"] {
        let Some(objects) = config.get(section).and_then(|v| v.as_object()) else {
            continue;
        };
        for object in objects.values() {
            if let Some(var) = object.get("environment").and_then(|v| v.as_str())
                && let Some(value) = env.get(var)
            {
                out.insert(var.to_string(), value);
            }
        }
    }
    out
}

/// The environment a stack is interpolated with.
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn get(&self, k: &str) -> Option<String> {
        self.vars.get(k).cloned()
    }

    pub fn set(&mut self, k: &str, v: &str) {
        self.vars.insert(k.to_string(), v.to_string());
    }
}

fn loc_of(path: &FsPath) -> Loc {
    Loc::new(Arc::from(path.display().to_string().as_str()), 0, 0)
}

/// Finds the stack files to use when `-f` is not given: the first directory from `dir` upwards
/// holding one of [`STACK_FILE_NAMES`], plus its override file.
pub fn discover(dir: &FsPath, warnings: &mut Vec<String>) -> Result<Vec<PathBuf>, Diagnostic> {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        let found: Vec<PathBuf> = STACK_FILE_NAMES
            .iter()
            .map(|n| d.join(n))
            .filter(|p| p.is_file())
            .collect();
        if let Some(first) = found.first() {
            if found.len() > 1 {
                warnings.push(format!(
                    "found multiple stack files with supported names: {}; using {}",
                    found
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    first.display()
                ));
            }
            let mut files = vec![first.clone()];
            if let Some(o) = OVERRIDE_FILE_NAMES
                .iter()
                .map(|n| d.join(n))
                .find(|p| p.is_file())
            {
                files.push(o);
            }
            return Ok(files);
        }
        cur = d.parent();
    }
    Err(Diagnostic::at(
        &loc_of(dir),
        format!(
            "no stack file found here or in any parent directory (looked for {})",
            STACK_FILE_NAMES.join(", ")
        ),
    )
    .with_hint("name one with -f, or run from the directory that holds compose.yaml"))
}

fn absolute(base: &FsPath, p: &FsPath) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    lexical_clean(&joined)
}

/// Removes `.` and resolves `..` without touching the filesystem.
pub fn lexical_clean(p: &FsPath) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Reads a dotenv-format file into `env`, without overriding variables already set.
fn read_env_file(
    path: &FsPath,
    env: &mut Env,
    required: bool,
    files: &mut Vec<PathBuf>,
) -> Result<Vec<(String, String)>, Diagnostic> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Vec::new()),
        Err(e) => {
            return Err(Diagnostic::at(
                &loc_of(path),
                format!("cannot read env file: {e}"),
            ));
        }
    };
    files.push(path.to_path_buf());
    let snapshot = env.clone();
    let pairs = dotenv::parse(&text, &|k| snapshot.get(k)).map_err(|e| {
        Diagnostic::at(
            &Loc::new(
                Arc::from(path.display().to_string().as_str()),
                e.line,
                e.col,
            ),
            e.message.clone(),
        )
    })?;
    Ok(pairs)
}

/// Builds the interpolation environment: the process environment wins over env files.
fn build_env(
    opts: &Options,
    project_dir: &FsPath,
    files: &mut Vec<PathBuf>,
) -> Result<Env, Vec<Diagnostic>> {
    let mut env = Env::default();
    for (k, v) in &opts.environ {
        env.set(k, v);
    }
    let process: HashSet<&str> = opts.environ.iter().map(|(k, _)| k.as_str()).collect();
    let (paths, required): (Vec<PathBuf>, bool) = if opts.env_files.is_empty() {
        (vec![project_dir.join(".env")], false)
    } else {
        (
            opts.env_files
                .iter()
                .map(|p| absolute(&opts.working_dir, p))
                .collect(),
            true,
        )
    };
    let mut errs = Vec::new();
    for p in paths {
        if p.is_dir() && !required {
            continue;
        }
        match read_env_file(&p, &mut env, required, files) {
            Ok(pairs) => {
                for (k, v) in pairs {
                    if !process.contains(k.as_str()) {
                        env.set(&k, &v);
                    }
                }
            }
            Err(e) => errs.push(e),
        }
    }
    if errs.is_empty() { Ok(env) } else { Err(errs) }
}

/// One file read, interpolated, checked and canonicalized, with relative paths made absolute
/// against `base`.
pub struct FileCtx<'a> {
    pub env: &'a Env,
    pub no_interpolate: bool,
    pub warnings: &'a mut Vec<String>,
    pub files: &'a mut Vec<PathBuf>,
    pub stdin: Option<&'a str>,
}

fn read_stack_file(path: &FsPath, ctx: &mut FileCtx<'_>) -> Result<(String, String), Diagnostic> {
    if path.as_os_str() == "-" {
        return match ctx.stdin {
            Some(t) => Ok((t.to_string(), "-".to_string())),
            None => Err(Diagnostic::at(
                &Loc::synthetic("-"),
                "standard input is not available",
            )),
        };
    }
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(t) => {
            ctx.files.push(path.to_path_buf());
            Ok((t, name))
        }
        Err(e) => Err(Diagnostic::at(
            &loc_of(path),
            format!("cannot read stack file: {e}"),
        )),
    }
}

/// Parses, interpolates, checks, canonicalizes one stack file and resolves its relative paths.
pub fn load_file(
    path: &FsPath,
    base: &FsPath,
    ctx: &mut FileCtx<'_>,
) -> Result<Node, Vec<Diagnostic>> {
    let (text, name) = read_stack_file(path, ctx).map_err(|d| vec![d])?;
    let docs = yaml::parse(&text, &name).map_err(|d| vec![d])?;
    let mut errs = Vec::new();
    let mut merged: Option<Node> = None;
    if docs.is_empty() {
        return Err(vec![Diagnostic::at(
            &Loc::new(Arc::from(name.as_str()), 1, 1),
            "stack file is empty",
        )]);
    }
    for mut doc in docs {
        if doc.as_map().is_none() {
            errs.push(Diagnostic::at(
                &doc.loc,
                format!("a stack file must be a mapping, found {}", doc.kind()),
            ));
            continue;
        }
        if !ctx.no_interpolate {
            let env = ctx.env;
            let lookup = |k: &str| env.get(k);
            let mut unset = Vec::new();
            errs.extend(interpolate::interpolate_tree(
                &mut doc,
                &Path::root(),
                &lookup,
                &mut unset,
            ));
            for var in unset {
                let w = interpolate::unset_warning(&var);
                if !ctx.warnings.contains(&w) {
                    ctx.warnings.push(w);
                }
            }
        }
        schema::check(&doc, &schema::TOP, &Path::root(), &mut errs);
        if !errs.is_empty() {
            continue;
        }
        errs.extend(canon::canonicalize(&mut doc));
        resolve_paths(&mut doc, base, ctx.env);
        accumulate(&mut merged, doc, &mut errs, false);
    }
    match merged {
        Some(n) if errs.is_empty() => Ok(n),
        _ => Err(errs),
    }
}

/// Merges `doc` onto what was merged so far, collecting merge errors. With `strip_first`, the
/// first document's `!reset`/`!override` tags take their single-file meaning; without, they are
/// kept for a later merge onto earlier files.
pub fn accumulate(
    acc: &mut Option<Node>,
    mut doc: Node,
    errs: &mut Vec<Diagnostic>,
    strip_first: bool,
) {
    *acc = match acc.take() {
        None => {
            if strip_first {
                merge::strip_tags(&mut doc);
            }
            Some(doc)
        }
        Some(prev) => match merge::merge(prev, doc) {
            Ok(n) => Some(n),
            Err(e) => {
                errs.extend(e);
                None
            }
        },
    };
}

fn is_remote(ctx: &str) -> bool {
    ctx.contains("://") || ctx.starts_with("git@") || ctx.starts_with("github.com/")
}

fn expand_home(s: &str, env: &Env) -> Option<String> {
    if s == "~" || s.starts_with("~/") {
        let home = env.get("HOME").unwrap_or_else(|| "/root".to_string());
        Some(format!("{home}{}", &s[1..]))
    } else {
        None
    }
}

fn resolve_str(n: &mut Node, base: &FsPath, env: &Env) {
    if let Value::Scalar(s) = &mut n.value {
        let resolved = match expand_home(&s.text, env) {
            Some(h) => lexical_clean(FsPath::new(&h)),
            None => absolute(base, FsPath::new(&s.text)),
        };
        s.text = resolved.display().to_string();
        s.quoted = true;
    }
}

/// Makes the relative paths of one file absolute against `base` (its project directory).
pub fn resolve_paths(doc: &mut Node, base: &FsPath, env: &Env) {
    let Some(top) = doc.as_map_mut() else { return };
    if let Some(services) = top.get_mut("services").and_then(Node::as_map_mut) {
        for (_, svc) in services.entries.iter_mut() {
            let Some(s) = svc.as_map_mut() else { continue };
            if let Some(b) = s.get_mut("build").and_then(Node::as_map_mut) {
                match b.get_mut("context") {
                    Some(c) => {
                        if !c.as_str().is_some_and(is_remote) {
                            resolve_str(c, base, env);
                        }
                    }
                    None => {
                        let loc = b
                            .iter()
                            .next()
                            .map(|(k, _)| k.loc.clone())
                            .unwrap_or_else(|| Loc::synthetic("build"));
                        b.insert(
                            Key {
                                name: "context".into(),
                                loc: loc.clone(),
                            },
                            Node::string(base.display().to_string(), loc),
                        );
                    }
                }
            }
            if let Some(Value::Seq(items)) = s.get_mut("env_file").map(|n| &mut n.value) {
                for it in items.iter_mut() {
                    if let Some(p) = it.as_map_mut().and_then(|m| m.get_mut("path")) {
                        resolve_str(p, base, env);
                    }
                }
            }
            if let Some(Value::Seq(items)) = s.get_mut("label_file").map(|n| &mut n.value) {
                for it in items.iter_mut() {
                    resolve_str(it, base, env);
                }
            }
            if let Some(Value::Seq(items)) = s.get_mut("volumes").map(|n| &mut n.value) {
                for it in items.iter_mut() {
                    let Some(m) = it.as_map_mut() else { continue };
                    if m.get("type").and_then(Node::as_str) != Some("bind") {
                        continue;
                    }
                    if let Some(src) = m.get_mut("source")
                        && let Some(t) = src.as_str()
                        && (t.starts_with('.') || t.starts_with('~') || !t.starts_with('/'))
                    {
                        resolve_str(src, base, env);
                    }
                }
            }
            if let Some(e) = s.get_mut("extends").and_then(Node::as_map_mut)
                && let Some(f) = e.get_mut("file")
            {
                resolve_str(f, base, env);
            }
            if let Some(d) = s.get_mut("develop").and_then(Node::as_map_mut)
                && let Some(Value::Seq(rules)) = d.get_mut("watch").map(|n| &mut n.value)
            {
                for r in rules.iter_mut() {
                    if let Some(p) = r.as_map_mut().and_then(|m| m.get_mut("path")) {
                        resolve_str(p, base, env);
                    }
                }
            }
        }
    }
    for section in ["secrets", "configs"] {
        if let Some(objs) = top.get_mut(section).and_then(Node::as_map_mut) {
            for (_, o) in objs.entries.iter_mut() {
                if let Some(f) = o.as_map_mut().and_then(|m| m.get_mut("file")) {
                    resolve_str(f, base, env);
                }
            }
        }
    }
    if let Some(Value::Seq(items)) = top.get_mut("include").map(|n| &mut n.value) {
        for it in items.iter_mut() {
            let Some(m) = it.as_map_mut() else { continue };
            for f in ["path", "env_file"] {
                if let Some(Value::Seq(ps)) = m.get_mut(f).map(|n| &mut n.value) {
                    for p in ps.iter_mut() {
                        resolve_str(p, base, env);
                    }
                }
            }
            if let Some(p) = m.get_mut("project_directory") {
                resolve_str(p, base, env);
            }
        }
    }
}

/// Loads the stack the options describe.
pub fn load(opts: &Options) -> Result<Loaded, SpecErrors> {
    let mut warnings = Vec::new();
    let mut files_read = Vec::new();
    let wd = if opts.working_dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        opts.working_dir.clone()
    };
    let files: Vec<PathBuf> = if opts.files.is_empty() {
        discover(&wd, &mut warnings)?
    } else {
        opts.files
            .iter()
            .map(|f| {
                if f.as_os_str() == "-" {
                    f.clone()
                } else {
                    absolute(&wd, f)
                }
            })
            .collect()
    };
    let project_dir = match &opts.project_directory {
        Some(d) => absolute(&wd, d),
        None => files
            .iter()
            .find(|f| f.as_os_str() != "-")
            .and_then(|f| f.parent().map(FsPath::to_path_buf))
            .unwrap_or_else(|| wd.clone()),
    };
    let mut env = build_env(opts, &project_dir, &mut files_read).map_err(SpecErrors)?;

    // Each file on its own, then merged in order; then `extends` on the merged stack.
    let mut errs = Vec::new();
    let mut merged: Option<Node> = None;
    let mut ctx = FileCtx {
        env: &env,
        no_interpolate: opts.no_interpolate,
        warnings: &mut warnings,
        files: &mut files_read,
        stdin: opts.stdin.as_deref(),
    };
    for f in &files {
        match load_file(f, &project_dir, &mut ctx) {
            Ok(mut doc) => match super::include::apply(&mut doc, &mut ctx) {
                Ok(()) => accumulate(&mut merged, doc, &mut errs, true),
                Err(e) => errs.extend(e),
            },
            Err(e) => errs.extend(e),
        }
    }
    let Some(mut root) = merged.filter(|_| errs.is_empty()) else {
        return Err(SpecErrors(errs).sorted());
    };
    if let Err(e) = super::extends::apply(&mut root, &mut ctx) {
        return Err(SpecErrors(e).sorted());
    }

    // The project name.
    let top_name = root
        .as_map()
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str().map(|s| (s.to_string(), n.loc.clone())));
    let name = if let Some(p) = &opts.project_name {
        units::check_project_name(p).map_err(|e| {
            SpecErrors::one(
                Diagnostic::at(&Loc::synthetic("-p"), e)
                    .with_hint("a project name is lower-case letters, digits, `-` and `_`"),
            )
        })?;
        p.clone()
    } else if let Some(p) = env.get("COMPOSE_PROJECT_NAME").filter(|p| !p.is_empty()) {
        units::check_project_name(&p).map_err(|e| {
            SpecErrors::one(Diagnostic::at(&Loc::synthetic("COMPOSE_PROJECT_NAME"), e))
        })?;
        p
    } else if let Some((p, loc)) = top_name {
        units::check_project_name(&p)
            .map_err(|e| SpecErrors::one(Diagnostic::new(&loc, &Path::root().key("name"), e)))?;
        p
    } else {
        let base = project_dir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let n = units::normalize_project_name(&base);
        if n.is_empty() {
            return Err(SpecErrors::one(
                Diagnostic::at(
                    &loc_of(&project_dir),
                    format!("cannot derive a project name from the directory name \"{base}\""),
                )
                .with_hint("give one with -p or a top-level `name:`"),
            ));
        }
        n
    };
    env.set("COMPOSE_PROJECT_NAME", &name);

    // Profiles.
    let profiles: Vec<String> = if !opts.profiles.is_empty() {
        opts.profiles.clone()
    } else {
        env.get("COMPOSE_PROFILES")
            .map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };

    if root.as_map().is_some_and(|m| m.contains("version")) {
        warnings.push(
            "the top-level `version` is obsolete and ignored; remove it to avoid confusion".into(),
        );
    }

    let out = normalize::normalize(
        root,
        &mut normalize::Context {
            name: &name,
            env: &env,
            profiles: &profiles,
            files: &mut files_read,
        },
    )
    .map_err(|e| SpecErrors(e).sorted())?;
    warnings.extend(out.warnings);
    let mut seen = HashSet::new();
    files_read.retain(|f| seen.insert(f.clone()));
    let secret_env = secret_env(&out.config, &env);
    Ok(Loaded {
        name,
        project_dir,
        secret_env,
        config: out.config,
        files: files_read,
        warnings,
        profiles,
        all_profiles: out.all_profiles,
    })
}

/// A fresh empty mapping node.
pub fn empty_map(loc: &Loc) -> Node {
    Node::map(Map::new(), loc.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdin_opts(text: &str) -> Options {
        Options {
            files: vec![PathBuf::from("-")],
            working_dir: PathBuf::from("/nonexistent/flotilla-test"),
            stdin: Some(text.to_string()),
            ..Options::default()
        }
    }

    #[test]
    fn invalid_project_names_are_reported_once_and_located() {
        let mut opts = stdin_opts("services:\n  a:\n    image: x\n");
        opts.project_name = Some("Bad Name".into());
        let errs = load(&opts).unwrap_err().to_string();
        assert!(
            errs.starts_with("-p: invalid project name \"Bad Name\": "),
            "{errs}"
        );
        assert_eq!(errs.matches("invalid project name").count(), 1, "{errs}");

        let opts = stdin_opts("name: -x\nservices:\n  a:\n    image: x\n");
        let errs = load(&opts).unwrap_err().to_string();
        assert!(
            errs.starts_with("-:1:7: name: invalid project name \"-x\": "),
            "{errs}"
        );
        assert_eq!(errs.matches("invalid project name").count(), 1, "{errs}");
    }
}
