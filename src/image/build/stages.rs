//! The stage graph of a parsed Dockerfile: stages by index and name, what each one needs (its
//! `FROM` stage, `COPY --from` and `RUN --mount=from=` stages, or images), which stages a
//! target needs (only those get built, in an order where dependencies come first), and every
//! instruction expanded the way Docker expands it, with the build args in effect at each step.
//!
//! Scopes, as in Docker: `ARG`s before the first `FROM` are global and usable only in `FROM`
//! lines, unless a stage declares them again (`ARG NAME` then takes the global value); a stage's
//! `ARG`s and `ENV`s are in effect from their line to the end of the stage, `ENV` winning over an
//! `ARG` of the same name; a stage built `FROM` another stage inherits its `ENV`s, not its
//! `ARG`s. Variables are expanded in `FROM`, `ENV`, `LABEL`, `WORKDIR`, `USER`, `EXPOSE`,
//! `VOLUME`, `STOPSIGNAL`, `COPY`/`ADD` (paths, `--chown`, `--chmod`; `--from` with the global
//! ARGs only) and `ARG` defaults; `RUN`, `CMD`, `ENTRYPOINT`, `SHELL` and `HEALTHCHECK` are left
//! to the shell. The `ENV`s of a non-stage base image are not known here (they come with its
//! config).

use std::collections::BTreeMap;

use super::dockerfile::{BuildError, Command, Dockerfile, Instruction, Pos, Word};
use super::words::{self, WordError};
use crate::spec::error::did_you_mean;

/// The build's inputs that are not in the Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--build-arg NAME=VALUE` (a `NAME` alone takes the value from the environment before it
    /// gets here).
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (the last one when none).
    pub target: Option<String>,
    /// The platform built for, `os/arch[/variant]` (TARGETPLATFORM and friends).
    pub platform: String,
}

impl Options {
    pub fn for_host() -> Self {
        Options {
            platform: host_platform(),
            ..Options::default()
        }
    }
}

/// `linux/amd64`, `linux/arm64`, … for the machine this runs on.
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("linux/{arch}")
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq)]
pub enum Base {
    Scratch,
    Image(String),
    Stage(usize),
}

/// Where `COPY --from` / `RUN --mount=from=` read.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Stage(usize),
    Image(String),
}

/// A `COPY`/`ADD` with its words expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyStep {
    pub sources: Vec<String>,
    pub dest: String,
    /// `None`: the build context.
    pub from: Option<Source>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
}

/// One instruction of a stage, expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub pos: Pos,
    pub keyword: String,
    /// The instruction as it will run: expanded where Docker expands, as written elsewhere
    /// (flags included; heredoc bodies appended). Part of the cache key.
    pub text: String,
    /// Build args in effect at this step (declared in the stage, with their values).
    pub args: BTreeMap<String, String>,
    pub copy: Option<CopyStep>,
    /// `ENV` / `LABEL` pairs, expanded.
    pub pairs: Vec<(String, String)>,
    /// `WORKDIR`, `USER`, `STOPSIGNAL` (one word) or `EXPOSE`, `VOLUME` (each), expanded.
    pub words: Vec<String>,
    pub instruction: Instruction,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub index: usize,
    pub name: Option<String>,
    pub pos: Pos,
    pub base: Base,
    pub platform: Option<String>,
    pub steps: Vec<Step>,
    /// Stages this one needs (its base and the stages it copies or mounts from), sorted.
    pub needs: Vec<usize>,
    /// Images it reads with `--from` (besides its base).
    pub images: Vec<String>,
    /// `ENV`s at the end of the stage (as far as the Dockerfile tells).
    pub env: BTreeMap<String, String>,
}

impl Stage {
    /// `name` or `#index` for messages.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("#{}", self.index),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub stages: Vec<Stage>,
    /// The stage built (index into `stages`).
    pub target: usize,
    /// The stages the target needs, itself included, dependencies first.
    pub order: Vec<usize>,
    /// Global args (before the first FROM) and their values.
    pub global_args: BTreeMap<String, Option<String>>,
    /// `--build-arg`s no `ARG` declares (Docker warns about them).
    pub unused_build_args: Vec<String>,
}

/// Resolves a parsed Dockerfile into its stage plan.
pub fn plan(df: &Dockerfile, opts: &Options) -> Result<Plan, BuildError> {
    Resolver::new(df, opts).run()
}

struct Resolver<'a> {
    df: &'a Dockerfile,
    opts: &'a Options,
    used_args: Vec<String>,
}

/// The automatic platform args, in the global scope.
fn platform_args(platform: &str) -> BTreeMap<String, String> {
    let mut parts = platform.split('/');
    let os = parts.next().unwrap_or("linux").to_string();
    let arch = parts.next().unwrap_or("").to_string();
    let variant = parts.next().unwrap_or("").to_string();
    let host = host_platform();
    let mut hp = host.split('/');
    let hos = hp.next().unwrap_or("linux").to_string();
    let harch = hp.next().unwrap_or("").to_string();
    BTreeMap::from([
        ("TARGETPLATFORM".to_string(), platform.to_string()),
        ("TARGETOS".to_string(), os),
        ("TARGETARCH".to_string(), arch),
        ("TARGETVARIANT".to_string(), variant),
        ("BUILDPLATFORM".to_string(), host.clone()),
        ("BUILDOS".to_string(), hos),
        ("BUILDARCH".to_string(), harch),
        ("BUILDVARIANT".to_string(), String::new()),
    ])
}

/// Args Docker lets through without an `ARG` line.
const PREDEFINED: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

impl<'a> Resolver<'a> {
    fn new(df: &'a Dockerfile, opts: &'a Options) -> Self {
        Resolver {
            df,
            opts,
            used_args: Vec::new(),
        }
    }

    fn err(&self, pos: Pos, message: impl Into<String>) -> BuildError {
        BuildError::new(&self.df.file, pos, message)
    }

    fn located(&self, w: &Word, e: WordError) -> BuildError {
        // Offsets count chars of the raw word; a word lives on one line except for the rest of
        // an old-style ENV, where this stays close enough.
        self.err(
            Pos {
                line: w.pos.line,
                col: w.pos.col + e.offset,
            },
            e.message,
        )
    }

    fn expand(
        &self,
        w: &Word,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, BuildError> {
        words::word(&w.raw, self.df.escape, lookup).map_err(|e| self.located(w, e))
    }

    fn expand_split(
        &self,
        w: &Word,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, BuildError> {
        words::words(&w.raw, self.df.escape, lookup).map_err(|e| self.located(w, e))
    }

    fn run(mut self) -> Result<Plan, BuildError> {
        let ins = &self.df.instructions;
        let Some(first_from) = ins
            .iter()
            .position(|i| matches!(i.command, Command::From { .. }))
        else {
            let pos = ins
                .first()
                .map(|i| i.pos)
                .unwrap_or(Pos { line: 1, col: 1 });
            return Err(self
                .err(
                    pos,
                    "no FROM: a Dockerfile starts its first stage with FROM",
                )
                .with_hint("FROM IMAGE (or FROM scratch)"));
        };

        // Global scope: ARGs before the first FROM.
        let mut global: BTreeMap<String, Option<String>> = BTreeMap::new();
        let auto = platform_args(&self.opts.platform);
        for i in &ins[..first_from] {
            let Command::Arg(decls) = &i.command else {
                return Err(self
                    .err(i.pos, format!("{} before the first FROM", i.keyword))
                    .with_hint("only ARG may come before FROM"));
            };
            for (name, default) in decls {
                let value = match self.opts.build_args.get(name) {
                    Some(v) => Some(v.clone()),
                    None => match default {
                        Some(d) => {
                            let lookup = |n: &str| lookup_global(&global, &auto, n);
                            Some(self.expand(d, &lookup)?)
                        }
                        None => None,
                    },
                };
                self.used_args.push(name.clone());
                global.insert(name.clone(), value);
            }
        }

        // Stage names first: COPY --from may name a later stage.
        let mut names: Vec<(String, usize)> = Vec::new();
        let mut count = 0;
        for i in &ins[first_from..] {
            if let Command::From { name, .. } = &i.command {
                if let Some(n) = name {
                    if let Some((_, other)) = names.iter().find(|(m, _)| m == n) {
                        return Err(self
                            .err(
                                i.pos,
                                format!("stage name {n:?} is already used by stage #{other}"),
                            )
                            .with_hint("stage names must be unique"));
                    }
                    names.push((n.clone(), count));
                }
                count += 1;
            }
        }

        let mut stages: Vec<Stage> = Vec::new();
        let mut cur: Option<(Stage, StageScope)> = None;
        for i in &ins[first_from..] {
            if let Command::From {
                image,
                name,
                platform,
            } = &i.command
            {
                if let Some((s, _)) = cur.take() {
                    stages.push(s);
                }
                let index = stages.len();
                let base_name = self.expand_from(image, &global, &auto)?;
                let platform = match platform {
                    Some(p) => Some(self.expand_from(p, &global, &auto)?),
                    None => None,
                };
                let lowered = base_name.to_ascii_lowercase();
                let earlier = names
                    .iter()
                    .find(|(n, idx)| *n == lowered && *idx < index)
                    .map(|(_, idx)| *idx);
                let (base, env) = match earlier {
                    Some(idx) => (Base::Stage(idx), stages[idx].env.clone()),
                    None if lowered == "scratch" => (Base::Scratch, BTreeMap::new()),
                    None => (Base::Image(base_name), BTreeMap::new()),
                };
                let needs = match base {
                    Base::Stage(idx) => vec![idx],
                    _ => Vec::new(),
                };
                cur = Some((
                    Stage {
                        index,
                        name: name.clone(),
                        pos: i.pos,
                        base,
                        platform,
                        steps: Vec::new(),
                        needs,
                        images: Vec::new(),
                        env,
                    },
                    StageScope::default(),
                ));
                continue;
            }
            let Some((stage, scope)) = cur.as_mut() else {
                continue;
            };
            let step = self.step(i, stage, scope, &global, &auto, &names, count)?;
            stage.steps.push(step);
        }
        if let Some((s, _)) = cur.take() {
            stages.push(s);
        }

        let target = match &self.opts.target {
            None => stages.len() - 1,
            Some(t) => {
                let lowered = t.to_ascii_lowercase();
                match names.iter().find(|(n, _)| *n == lowered) {
                    Some((_, idx)) => *idx,
                    None => {
                        let mut e = BuildError::new(
                            &self.df.file,
                            Pos { line: 1, col: 1 },
                            format!("target stage {t:?} could not be found"),
                        );
                        if let Some(s) =
                            did_you_mean(&lowered, names.iter().map(|(n, _)| n.as_str()))
                        {
                            e = e.with_hint(format!("did you mean {s}?"));
                        } else if names.is_empty() {
                            e = e.with_hint("no stage has a name (FROM IMAGE AS NAME)");
                        } else {
                            let all: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
                            e = e.with_hint(format!("the stages are {}", all.join(", ")));
                        }
                        return Err(e);
                    }
                }
            }
        };
        let order = self.order(&stages, target)?;
        let mut unused: Vec<String> = self
            .opts
            .build_args
            .keys()
            .filter(|k| !self.used_args.contains(k) && !PREDEFINED.contains(&k.as_str()))
            .cloned()
            .collect();
        unused.sort();
        Ok(Plan {
            stages,
            target,
            order,
            global_args: global,
            unused_build_args: unused,
        })
    }

    /// A FROM word expanded with the global args; an ARG without a value is an error.
    fn expand_from(
        &self,
        w: &Word,
        global: &BTreeMap<String, Option<String>>,
        auto: &BTreeMap<String, String>,
    ) -> Result<String, BuildError> {
        for name in words::referenced(&w.raw, self.df.escape) {
            if let Some(None) = global.get(&name) {
                return Err(self
                    .err(
                        w.pos,
                        format!("FROM uses the ARG {name}, which has no value"),
                    )
                    .with_hint(format!(
                        "give it a default (ARG {name}=…) or pass --build-arg {name}=…"
                    )));
            }
        }
        let lookup = |n: &str| lookup_global(global, auto, n);
        let v = self.expand(w, &lookup)?;
        if v.is_empty() {
            return Err(self
                .err(w.pos, format!("FROM {} is empty once expanded", w.raw))
                .with_hint("declare the ARG with a value before the first FROM"));
        }
        Ok(v)
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        i: &Instruction,
        stage: &mut Stage,
        scope: &mut StageScope,
        global: &BTreeMap<String, Option<String>>,
        auto: &BTreeMap<String, String>,
        names: &[(String, usize)],
        count: usize,
    ) -> Result<Step, BuildError> {
        let env_snapshot = stage.env.clone();
        let args_snapshot = scope.args.clone();
        let lookup = move |n: &str| -> Option<String> {
            env_snapshot
                .get(n)
                .cloned()
                .or_else(|| args_snapshot.get(n).cloned())
        };
        let mut copy = None;
        let mut expanded_pairs = Vec::new();
        let mut expanded_words = Vec::new();
        let text = match &i.command {
            Command::Arg(decls) => {
                let mut parts = Vec::new();
                for (name, default) in decls {
                    self.used_args.push(name.clone());
                    let value = if let Some(v) = self.opts.build_args.get(name) {
                        Some(v.clone())
                    } else if let Some(d) = default {
                        Some(self.expand(d, &lookup)?)
                    } else if let Some(Some(g)) = global.get(name) {
                        Some(g.clone())
                    } else {
                        auto.get(name).cloned()
                    };
                    match &value {
                        Some(v) => parts.push(format!("{name}={v}")),
                        None => parts.push(name.clone()),
                    }
                    if let Some(v) = value {
                        scope.args.insert(name.clone(), v);
                    }
                }
                format!("ARG {}", parts.join(" "))
            }
            Command::Env(pairs) | Command::Label(pairs) => {
                let mut parts = Vec::new();
                for (k, v) in pairs {
                    let key = self.expand(k, &lookup)?;
                    let value = self.expand(v, &lookup)?;
                    parts.push(format!("{key}={}", quote(&value)));
                    if i.keyword == "ENV" {
                        stage.env.insert(key.clone(), value.clone());
                    }
                    expanded_pairs.push((key, value));
                }
                format!("{} {}", i.keyword, parts.join(" "))
            }
            Command::Workdir(w) | Command::User(w) | Command::StopSignal(w) => {
                let v = self.expand(w, &lookup)?;
                let text = format!("{} {v}", i.keyword);
                expanded_words.push(v);
                text
            }
            Command::Expose(ws) | Command::Volume(ws) => {
                let mut all = Vec::new();
                for w in ws {
                    all.extend(self.expand_split(w, &lookup)?);
                }
                let text = format!("{} {}", i.keyword, all.join(" "));
                expanded_words = all;
                text
            }
            Command::Copy(c) | Command::Add(c) => {
                let mut sources = Vec::new();
                for w in &c.sources {
                    if i.heredocs.iter().any(|h| {
                        w.raw.contains(&format!("<<{}", h.name))
                            || w.raw.contains(&format!("<<-{}", h.name))
                            || w.raw.contains(&format!("<<\"{}\"", h.name))
                            || w.raw.contains(&format!("<<'{}'", h.name))
                    }) {
                        sources.push(w.raw.clone());
                        continue;
                    }
                    sources.extend(self.expand_split(w, &lookup)?);
                }
                let dest = match &c.dest {
                    Some(d) => self.expand(d, &lookup)?,
                    None => String::new(),
                };
                let opt = |w: &Option<Word>| -> Result<Option<String>, BuildError> {
                    match w {
                        Some(w) => Ok(Some(self.expand(w, &lookup)?)),
                        None => Ok(None),
                    }
                };
                let chown = opt(&c.chown)?;
                let chmod = opt(&c.chmod)?;
                if let (Some(m), Some(w)) = (&chmod, &c.chmod)
                    && (u32::from_str_radix(m, 8).is_err() || m.len() > 4)
                    && !m.contains(['u', 'g', 'o', 'a', '='])
                {
                    return Err(self
                        .err(w.pos, format!("--chmod={m} is not a mode"))
                        .with_hint("octal (0755) or symbolic (u=rwx,go=rx)"));
                }
                let from = match &c.from {
                    None => None,
                    Some(w) => {
                        // Like FROM: only the global ARGs (stage names are resolved before
                        // any stage runs).
                        for name in words::referenced(&w.raw, self.df.escape) {
                            let global_has = global.contains_key(&name) || auto.contains_key(&name);
                            if !global_has && lookup(&name).is_some() {
                                return Err(self
                                    .err(
                                        w.pos,
                                        format!(
                                            "--from uses {name}, which is declared in the stage"
                                        ),
                                    )
                                    .with_hint(
                                        "only ARGs declared before the first FROM expand in --from",
                                    ));
                            }
                        }
                        let global_lookup = |n: &str| lookup_global(global, auto, n);
                        let v = self.expand(w, &global_lookup)?;
                        Some(self.source(&v, w.pos, stage, names, count)?)
                    }
                };
                let mut flags = String::new();
                if let Some(Source::Stage(idx)) = &from {
                    flags.push_str(&format!("--from=#{idx} "));
                } else if let Some(Source::Image(img)) = &from {
                    flags.push_str(&format!("--from={img} "));
                }
                if let Some(o) = &chown {
                    flags.push_str(&format!("--chown={o} "));
                }
                if let Some(m) = &chmod {
                    flags.push_str(&format!("--chmod={m} "));
                }
                if c.link {
                    flags.push_str("--link ");
                }
                if c.parents {
                    flags.push_str("--parents ");
                }
                for e in &c.exclude {
                    flags.push_str(&format!("--exclude={} ", e.raw));
                }
                if let Some(s) = &c.checksum {
                    flags.push_str(&format!("--checksum={} ", s.raw));
                }
                let text = format!("{} {flags}{} {}", i.keyword, sources.join(" "), dest);
                copy = Some(CopyStep {
                    sources,
                    dest,
                    from,
                    chown,
                    chmod,
                });
                text
            }
            Command::Run { mounts, .. } => {
                for m in mounts {
                    if let Some(f) = &m.from {
                        let src = self.source(f, i.pos, stage, names, count)?;
                        let _ = src;
                    }
                }
                format!("RUN {}", i.text)
            }
            _ => format!("{} {}", i.keyword, i.text),
        };
        let mut text = text;
        for h in &i.heredocs {
            text.push('\n');
            text.push_str(&h.content);
            text.push_str(&h.name);
        }
        Ok(Step {
            pos: i.pos,
            keyword: i.keyword.clone(),
            text,
            args: scope.args.clone(),
            copy,
            pairs: expanded_pairs,
            words: expanded_words,
            instruction: i.clone(),
        })
    }

    /// A `--from` value: a stage by name or index, or else an image. Records the dependency.
    fn source(
        &self,
        v: &str,
        pos: Pos,
        stage: &mut Stage,
        names: &[(String, usize)],
        count: usize,
    ) -> Result<Source, BuildError> {
        let lowered = v.to_ascii_lowercase();
        let idx = if let Some((_, idx)) = names.iter().find(|(n, _)| *n == lowered) {
            Some(*idx)
        } else if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) {
            match v.parse::<usize>() {
                Ok(n) if n < count => Some(n),
                _ => {
                    return Err(self
                        .err(pos, format!("--from={v}: there is no stage #{v}"))
                        .with_hint(format!(
                            "stages are numbered from 0 to {}",
                            count.saturating_sub(1)
                        )));
                }
            }
        } else {
            None
        };
        match idx {
            Some(n) if n == stage.index => Err(self
                .err(pos, format!("--from={v} is the stage itself"))
                .with_hint("copy from another stage")),
            Some(n) => {
                if !stage.needs.contains(&n) {
                    stage.needs.push(n);
                    stage.needs.sort();
                }
                Ok(Source::Stage(n))
            }
            None if v.is_empty() => Err(self.err(pos, "--from needs a stage or an image")),
            None => {
                if !stage.images.iter().any(|i| i == v) {
                    stage.images.push(v.to_string());
                }
                Ok(Source::Image(v.to_string()))
            }
        }
    }

    /// The stages `target` needs, dependencies first; a cycle is an error naming it.
    fn order(&self, stages: &[Stage], target: usize) -> Result<Vec<usize>, BuildError> {
        // 0 = unseen, 1 = on the path, 2 = done.
        let mut mark = vec![0u8; stages.len()];
        let mut out = Vec::new();
        let mut path = Vec::new();
        self.visit(stages, target, &mut mark, &mut path, &mut out)?;
        Ok(out)
    }

    fn visit(
        &self,
        stages: &[Stage],
        s: usize,
        mark: &mut [u8],
        path: &mut Vec<usize>,
        out: &mut Vec<usize>,
    ) -> Result<(), BuildError> {
        match mark[s] {
            2 => return Ok(()),
            1 => {
                let from = path.iter().position(|p| *p == s).unwrap_or(0);
                let mut names: Vec<String> =
                    path[from..].iter().map(|p| stages[*p].label()).collect();
                names.push(stages[s].label());
                return Err(self
                    .err(
                        stages[s].pos,
                        format!(
                            "stages depend on each other in a cycle: {}",
                            names.join(" → ")
                        ),
                    )
                    .with_hint("a stage cannot copy from a stage that needs it"));
            }
            _ => {}
        }
        mark[s] = 1;
        path.push(s);
        for &d in &stages[s].needs {
            self.visit(stages, d, mark, path, out)?;
        }
        path.pop();
        mark[s] = 2;
        out.push(s);
        Ok(())
    }
}

#[derive(Default)]
struct StageScope {
    args: BTreeMap<String, String>,
}

fn lookup_global(
    global: &BTreeMap<String, Option<String>>,
    auto: &BTreeMap<String, String>,
    n: &str,
) -> Option<String> {
    match global.get(n) {
        Some(v) => v.clone(),
        None => auto.get(n).cloned(),
    }
}

/// A value in an instruction's canonical text: quoted when it has spaces or quotes.
fn quote(v: &str) -> String {
    if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
        format!("{v:?}")
    } else {
        v.to_string()
    }
}
