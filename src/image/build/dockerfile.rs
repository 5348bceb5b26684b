//! The Dockerfile parser: text → [`Dockerfile`] of typed [`Instruction`]s, every problem a
//! located [`BuildError`] (file:line:col, what is wrong, a hint).
//!
//! What it reads, like Docker's: parser directives at the very top (`# syntax=…` accepted and
//! ignored, `# escape=\` or `` ` ``, `# check=…`), comment lines (also between continued lines),
//! line continuations (the escape character at the end of a line), blank lines, keywords in any
//! case, `--flags` before the arguments (each instruction accepts only its own), exec form (a JSON
//! array of strings) and shell form, heredocs for `RUN`, `COPY` and `ADD` (`<<EOF`, `<<-EOF`
//! stripping leading tabs, `<<"EOF"` / `<<'EOF'` not expanded). Arguments are kept as written
//! ([`Word`]s with their position); variables are expanded later, per stage, where Docker
//! expands them ([`super::stages`]).

use std::fmt;

use crate::spec::error::did_you_mean;
use crate::spec::units::parse_duration;

/// A position in the Dockerfile, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// A located problem with a Dockerfile (or with a build that reads one).
#[derive(Debug, Clone, PartialEq)]
pub struct BuildError {
    pub file: String,
    pub pos: Pos,
    pub message: String,
    pub hint: Option<String>,
}

impl BuildError {
    pub fn new(file: &str, pos: Pos, message: impl Into<String>) -> Self {
        BuildError {
            file: file.to_string(),
            pos,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.pos.line, self.pos.col, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildError {}

/// An argument as written (quotes and `$` untouched) and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub raw: String,
    pub pos: Pos,
}

/// Exec form (JSON array) or shell form (the text as written, continuations joined).
#[derive(Debug, Clone, PartialEq)]
pub enum Form {
    Exec(Vec<String>),
    Shell(String),
}

/// A heredoc's body.
#[derive(Debug, Clone, PartialEq)]
pub struct Heredoc {
    pub name: String,
    /// The lines up to the terminator, each ending in `\n` (leading tabs gone for `<<-`).
    pub content: String,
    /// Unquoted delimiters expand variables in the body (when a shell runs it).
    pub expand: bool,
    pub strip_tabs: bool,
}

/// `RUN --mount=…`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// bind, cache, tmpfs, secret or ssh.
    pub kind: String,
    pub target: Option<String>,
    /// `from=` (a stage or an image the mount reads).
    pub from: Option<String>,
    /// Every `key=value` as written (for the cache key and the executor).
    pub options: Vec<(String, String)>,
}

/// `COPY` / `ADD` arguments.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CopyArgs {
    pub sources: Vec<Word>,
    pub dest: Option<Word>,
    pub from: Option<Word>,
    pub chown: Option<Word>,
    pub chmod: Option<Word>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<Word>,
    /// ADD only.
    pub checksum: Option<Word>,
    pub keep_git_dir: Option<bool>,
}

/// `HEALTHCHECK` other than `NONE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub test: Form,
    pub interval: Option<std::time::Duration>,
    pub timeout: Option<std::time::Duration>,
    pub start_period: Option<std::time::Duration>,
    pub start_interval: Option<std::time::Duration>,
    pub retries: Option<u32>,
}

/// What an instruction says.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    From {
        image: Word,
        name: Option<String>,
        platform: Option<Word>,
    },
    Run {
        form: Form,
        mounts: Vec<Mount>,
        network: Option<String>,
        security: Option<String>,
    },
    Copy(CopyArgs),
    Add(CopyArgs),
    Env(Vec<(Word, Word)>),
    Arg(Vec<(String, Option<Word>)>),
    Workdir(Word),
    User(Word),
    Expose(Vec<Word>),
    Label(Vec<(Word, Word)>),
    Cmd(Form),
    Entrypoint(Form),
    Healthcheck(Option<Health>),
    StopSignal(Word),
    Volume(Vec<Word>),
    Shell(Vec<String>),
    Onbuild(Box<Instruction>),
    Maintainer(String),
}

/// One instruction.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// Where its keyword is.
    pub pos: Pos,
    /// The keyword, upper case (`RUN`).
    pub keyword: String,
    /// The instruction as written after its keyword, continuations joined.
    pub text: String,
    pub heredocs: Vec<Heredoc>,
    pub command: Command,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    pub file: String,
    pub escape: char,
    /// The `# syntax=` directive (accepted, not acted on).
    pub syntax: Option<String>,
    pub instructions: Vec<Instruction>,
}

pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// The flags each instruction accepts (`*` after a name: repeatable).
fn allowed_flags(keyword: &str) -> &'static [&'static str] {
    match keyword {
        "FROM" => &["platform"],
        "RUN" => &["mount*", "network", "security"],
        "COPY" => &["from", "chown", "chmod", "link", "parents", "exclude*"],
        "ADD" => &[
            "chown",
            "chmod",
            "link",
            "checksum",
            "keep-git-dir",
            "exclude*",
        ],
        "HEALTHCHECK" => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    }
}

/// Which instructions take this flag (for the hint of a flag in the wrong place).
fn owners_of(flag: &str) -> Vec<&'static str> {
    KEYWORDS
        .iter()
        .copied()
        .filter(|k| {
            allowed_flags(k)
                .iter()
                .any(|a| a.trim_end_matches('*') == flag)
        })
        .collect()
}

/// Parses a Dockerfile; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, BuildError> {
    Parser::new(file, text).parse()
}

/// A token of an instruction's arguments: as written, with its char offset in the logical line.
#[derive(Debug, Clone)]
struct Tok {
    text: String,
    start: usize,
}

/// One logical line: the chars after continuations are joined, each with its position.
struct Logical {
    chars: Vec<char>,
    pos: Vec<Pos>,
    /// Position just after the last char (for "missing argument" errors).
    end: Pos,
}

impl Logical {
    fn pos_at(&self, i: usize) -> Pos {
        self.pos.get(i).copied().unwrap_or(self.end)
    }

    fn text(&self, from: usize) -> String {
        let s: String = self.chars[from.min(self.chars.len())..].iter().collect();
        s.trim().to_string()
    }
}

struct Parser<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    i: usize,
    escape: char,
}

impl<'a> Parser<'a> {
    fn new(file: &'a str, text: &'a str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Parser {
            file,
            lines: text
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .collect(),
            i: 0,
            escape: '\\',
        }
    }

    fn err(&self, pos: Pos, message: impl Into<String>) -> BuildError {
        BuildError::new(self.file, pos, message)
    }

    fn parse(mut self) -> Result<Dockerfile, BuildError> {
        let syntax = self.directives()?;
        let mut instructions = Vec::new();
        while let Some(line) = self.logical() {
            let ins = self.instruction(&line, false)?;
            instructions.push(ins);
        }
        Ok(Dockerfile {
            file: self.file.to_string(),
            escape: self.escape,
            syntax,
            instructions,
        })
    }

    /// The parser directives at the top: `# key=value` lines before anything else.
    fn directives(&mut self) -> Result<Option<String>, BuildError> {
        let mut syntax = None;
        let mut seen: Vec<String> = Vec::new();
        while let Some(line) = self.lines.get(self.i) {
            let Some(body) = line.trim().strip_prefix('#') else {
                break;
            };
            let Some((key, value)) = body.split_once('=') else {
                break;
            };
            let key = key.trim().to_ascii_lowercase();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
                break;
            }
            let value = value.trim();
            let pos = Pos {
                line: self.i + 1,
                col: line.find('#').unwrap_or(0) + 1,
            };
            if !matches!(key.as_str(), "syntax" | "escape" | "check") {
                // Unknown directives are comments, and end the directives.
                break;
            }
            if seen.contains(&key) {
                return Err(self
                    .err(pos, format!("the {key} parser directive is given twice"))
                    .with_hint("keep one"));
            }
            seen.push(key.clone());
            match key.as_str() {
                "escape" => match value {
                    "\\" => self.escape = '\\',
                    "`" => self.escape = '`',
                    other => {
                        return Err(self
                            .err(pos, format!("invalid escape character {other:?}"))
                            .with_hint("the escape directive takes \\ or `"));
                    }
                },
                "syntax" => syntax = Some(value.to_string()),
                _ => {}
            }
            self.i += 1;
        }
        Ok(syntax)
    }

    fn blank_or_comment(line: &str) -> bool {
        let t = line.trim_start();
        t.is_empty() || t.starts_with('#')
    }

    /// The next logical line (continuations joined, comments inside skipped), or none at the end.
    fn logical(&mut self) -> Option<Logical> {
        while self.i < self.lines.len() && Self::blank_or_comment(self.lines[self.i]) {
            self.i += 1;
        }
        if self.i >= self.lines.len() {
            return None;
        }
        let mut out = Logical {
            chars: Vec::new(),
            pos: Vec::new(),
            end: Pos::default(),
        };
        loop {
            let line = self.lines[self.i];
            let trimmed = line.trim_end();
            let (content, continued) = match trimmed.strip_suffix(self.escape) {
                Some(c) => (c, true),
                None => (line, false),
            };
            for (col, c) in content.chars().enumerate() {
                out.chars.push(c);
                out.pos.push(Pos {
                    line: self.i + 1,
                    col: col + 1,
                });
            }
            out.end = Pos {
                line: self.i + 1,
                col: content.chars().count() + 1,
            };
            self.i += 1;
            if !continued {
                break;
            }
            while self.i < self.lines.len() && Self::blank_or_comment(self.lines[self.i]) {
                self.i += 1;
            }
            if self.i >= self.lines.len() {
                break;
            }
        }
        Some(out)
    }

    /// Splits arguments into tokens as written (quotes and escapes kept), from char `from`.
    fn tokens(&self, line: &Logical, from: usize) -> Vec<Tok> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut start = None;
        let mut quote: Option<char> = None;
        let mut k = from;
        while k < line.chars.len() {
            let c = line.chars[k];
            if quote.is_none() && c.is_whitespace() {
                if let Some(s) = start.take() {
                    out.push(Tok {
                        text: std::mem::take(&mut cur),
                        start: s,
                    });
                }
                k += 1;
                continue;
            }
            start.get_or_insert(k);
            cur.push(c);
            if c == self.escape && quote != Some('\'') {
                if let Some(&n) = line.chars.get(k + 1) {
                    cur.push(n);
                    k += 1;
                }
            } else if Some(c) == quote {
                quote = None;
            } else if quote.is_none() && (c == '"' || c == '\'') {
                quote = Some(c);
            }
            k += 1;
        }
        if let Some(s) = start {
            out.push(Tok {
                text: cur,
                start: s,
            });
        }
        out
    }

    fn word(&self, line: &Logical, t: &Tok) -> Word {
        Word {
            raw: t.text.clone(),
            pos: line.pos_at(t.start),
        }
    }

    fn instruction(&mut self, line: &Logical, in_onbuild: bool) -> Result<Instruction, BuildError> {
        let toks = self.tokens(line, 0);
        let Some(first) = toks.first() else {
            return Err(self.err(line.pos_at(0), "empty instruction"));
        };
        let pos = line.pos_at(first.start);
        let keyword = first.text.to_ascii_uppercase();
        if !KEYWORDS.contains(&keyword.as_str()) {
            let mut e = self.err(pos, format!("unknown instruction: {}", first.text));
            if let Some(s) = did_you_mean(&keyword, KEYWORDS.iter().copied()) {
                e = e.with_hint(format!("did you mean {s}?"));
            } else if first.text.contains('=') || first.text.starts_with('-') {
                e = e.with_hint("is the line before missing a \\ at its end?");
            }
            return Err(e);
        }
        let args_start = first.start + first.text.chars().count();
        let text = line.text(args_start);

        if keyword == "ONBUILD" {
            if in_onbuild {
                return Err(self.err(pos, "ONBUILD ONBUILD is not allowed"));
            }
            let inner_toks = self.tokens(line, args_start);
            let Some(inner_first) = inner_toks.first() else {
                return Err(self.err(line.end, "ONBUILD needs an instruction"));
            };
            let inner_kw = inner_first.text.to_ascii_uppercase();
            if matches!(inner_kw.as_str(), "FROM" | "MAINTAINER" | "ONBUILD") {
                return Err(self.err(
                    line.pos_at(inner_first.start),
                    format!("{inner_kw} is not allowed in ONBUILD"),
                ));
            }
            let inner_line = Logical {
                chars: line.chars[inner_first.start..].to_vec(),
                pos: line.pos[inner_first.start..].to_vec(),
                end: line.end,
            };
            let inner = self.instruction(&inner_line, true)?;
            return Ok(Instruction {
                pos,
                keyword,
                text,
                heredocs: Vec::new(),
                command: Command::Onbuild(Box::new(inner)),
            });
        }

        // Flags: `--name[=value]` tokens first; `--` alone ends them.
        let mut rest: Vec<Tok> = toks[1..].to_vec();
        let mut flags: Vec<(String, Option<String>, Pos)> = Vec::new();
        while rest.first().is_some_and(|t| t.text.starts_with("--")) {
            let t = rest.remove(0);
            let body = &t.text[2..];
            if body.is_empty() {
                break;
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            let fpos = line.pos_at(t.start);
            let allowed = allowed_flags(&keyword);
            let Some(spec) = allowed.iter().find(|a| a.trim_end_matches('*') == name) else {
                let mut e = self.err(fpos, format!("{keyword} does not take the flag --{name}"));
                let owners = owners_of(&name);
                if !owners.is_empty() {
                    e = e.with_hint(format!("--{name} belongs to {}", owners.join(", ")));
                } else if let Some(s) =
                    did_you_mean(&name, allowed.iter().map(|a| a.trim_end_matches('*')))
                {
                    e = e.with_hint(format!("did you mean --{s}?"));
                } else if allowed.is_empty() {
                    e = e.with_hint(format!("{keyword} takes no flags"));
                }
                return Err(e);
            };
            if !spec.ends_with('*') && flags.iter().any(|(n, _, _)| *n == name) {
                return Err(self.err(fpos, format!("--{name} is given twice")));
            }
            flags.push((name, value, fpos));
        }
        let args_from = rest.first().map(|t| t.start).unwrap_or(line.chars.len());
        let rest_text = line.text(args_from);

        // Heredocs (RUN, COPY, ADD; shell form only): read their bodies now.
        let mut heredocs = Vec::new();
        if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") && !rest_text.starts_with('[') {
            for t in &rest {
                if let Some(h) = heredoc_marker(&t.text) {
                    let body = self.heredoc_body(&h, line.pos_at(t.start))?;
                    heredocs.push(body);
                }
            }
        }

        let missing = |what: &str| self.err(line.end, format!("{keyword} {what}"));
        let flag = |name: &str| -> Option<(Option<String>, Pos)> {
            flags
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, v, p)| (v.clone(), *p))
        };
        let valued = |name: &str| -> Result<Option<Word>, BuildError> {
            match flag(name) {
                None => Ok(None),
                Some((Some(v), p)) if !v.is_empty() => Ok(Some(Word {
                    raw: v,
                    pos: Pos {
                        line: p.line,
                        col: p.col + name.len() + 3,
                    },
                })),
                Some((_, p)) => Err(self
                    .err(p, format!("--{name} needs a value"))
                    .with_hint(format!("--{name}=VALUE"))),
            }
        };
        let boolean = |name: &str| -> Result<Option<bool>, BuildError> {
            match flag(name) {
                None => Ok(None),
                Some((None, _)) => Ok(Some(true)),
                Some((Some(v), p)) => match v.as_str() {
                    "true" => Ok(Some(true)),
                    "false" => Ok(Some(false)),
                    _ => Err(self.err(p, format!("--{name} takes true or false, not {v:?}"))),
                },
            }
        };

        let command = match keyword.as_str() {
            "FROM" => {
                let platform = valued("platform")?;
                match rest.as_slice() {
                    [] => return Err(missing("needs an image (or scratch)")),
                    [image] => Command::From {
                        image: self.word(line, image),
                        name: None,
                        platform,
                    },
                    [image, as_, name] if as_.text.eq_ignore_ascii_case("as") => {
                        let lowered = name.text.to_ascii_lowercase();
                        if !valid_stage_name(&lowered) {
                            return Err(self
                                .err(
                                    line.pos_at(name.start),
                                    format!("invalid stage name {:?}", name.text),
                                )
                                .with_hint("a letter, then letters, digits, '-', '_' or '.'"));
                        }
                        Command::From {
                            image: self.word(line, image),
                            name: Some(lowered),
                            platform,
                        }
                    }
                    [_, as_] if as_.text.eq_ignore_ascii_case("as") => {
                        return Err(missing("AS needs a stage name"));
                    }
                    [_, extra, ..] => {
                        return Err(self
                            .err(
                                line.pos_at(extra.start),
                                format!("unexpected {:?} after the image", extra.text),
                            )
                            .with_hint("FROM [--platform=…] IMAGE [AS NAME]"));
                    }
                }
            }
            "RUN" => {
                let mut mounts = Vec::new();
                for (name, value, p) in &flags {
                    if name == "mount" {
                        mounts.push(self.mount(value.as_deref().unwrap_or(""), *p)?);
                    }
                }
                let network = valued("network")?;
                if let Some(n) = &network
                    && !matches!(n.raw.as_str(), "default" | "none" | "host")
                {
                    return Err(self
                        .err(n.pos, format!("unknown network mode {:?}", n.raw))
                        .with_hint("default, none or host"));
                }
                let security = valued("security")?;
                if let Some(s) = &security
                    && !matches!(s.raw.as_str(), "sandbox" | "insecure")
                {
                    return Err(self
                        .err(s.pos, format!("unknown security mode {:?}", s.raw))
                        .with_hint("sandbox or insecure"));
                }
                let form = self.form(line, args_from, &rest_text)?;
                if is_empty_form(&form) {
                    return Err(missing("needs a command"));
                }
                Command::Run {
                    form,
                    mounts,
                    network: network.map(|w| w.raw),
                    security: security.map(|w| w.raw),
                }
            }
            "COPY" | "ADD" => {
                let words = self.path_words(line, &rest, args_from, &rest_text)?;
                if words.len() < 2 {
                    return Err(missing("needs at least a source and a destination")
                        .with_hint(format!("{keyword} SRC… DEST")));
                }
                let mut sources = words;
                let dest = sources.pop();
                let args = CopyArgs {
                    sources,
                    dest,
                    from: valued("from")?,
                    chown: valued("chown")?,
                    chmod: valued("chmod")?,
                    link: boolean("link")?.unwrap_or(false),
                    parents: boolean("parents")?.unwrap_or(false),
                    exclude: flags
                        .iter()
                        .filter(|(n, _, _)| n == "exclude")
                        .map(|(_, v, p)| Word {
                            raw: v.clone().unwrap_or_default(),
                            pos: *p,
                        })
                        .collect(),
                    checksum: valued("checksum")?,
                    keep_git_dir: boolean("keep-git-dir")?,
                };
                if keyword == "COPY" {
                    Command::Copy(args)
                } else {
                    Command::Add(args)
                }
            }
            "ENV" | "LABEL" => {
                let pairs = self.name_values(line, &keyword, &rest)?;
                if keyword == "ENV" {
                    Command::Env(pairs)
                } else {
                    Command::Label(pairs)
                }
            }
            "ARG" => {
                if rest.is_empty() {
                    return Err(missing("needs a name").with_hint("ARG NAME[=DEFAULT]"));
                }
                let mut out = Vec::new();
                for t in &rest {
                    let (name, value) = match t.text.split_once('=') {
                        Some((n, v)) => (
                            n.to_string(),
                            Some(Word {
                                raw: v.to_string(),
                                pos: line.pos_at(t.start + n.chars().count() + 1),
                            }),
                        ),
                        None => (t.text.clone(), None),
                    };
                    if !valid_var_name(&name) {
                        return Err(self
                            .err(line.pos_at(t.start), format!("invalid ARG name {name:?}"))
                            .with_hint("letters, digits and '_', not starting with a digit"));
                    }
                    out.push((name, value));
                }
                Command::Arg(out)
            }
            "WORKDIR" | "USER" | "STOPSIGNAL" | "MAINTAINER" => {
                let Some(first) = rest.first() else {
                    return Err(missing("needs a value"));
                };
                let w = Word {
                    raw: rest_text.clone(),
                    pos: line.pos_at(first.start),
                };
                match keyword.as_str() {
                    "WORKDIR" => Command::Workdir(w),
                    "MAINTAINER" => Command::Maintainer(rest_text.clone()),
                    _ if rest.len() > 1 => {
                        return Err(self
                            .err(
                                line.pos_at(rest[1].start),
                                format!("{keyword} takes one value"),
                            )
                            .with_hint(if keyword == "USER" {
                                "USER NAME[:GROUP]"
                            } else {
                                "STOPSIGNAL SIGTERM"
                            }));
                    }
                    "USER" => Command::User(w),
                    _ => Command::StopSignal(w),
                }
            }
            "EXPOSE" => {
                if rest.is_empty() {
                    return Err(missing("needs a port").with_hint("EXPOSE 80/tcp"));
                }
                Command::Expose(rest.iter().map(|t| self.word(line, t)).collect())
            }
            "VOLUME" => {
                let words = self.path_words(line, &rest, args_from, &rest_text)?;
                if words.is_empty() {
                    return Err(missing("needs a path"));
                }
                Command::Volume(words)
            }
            "CMD" | "ENTRYPOINT" => {
                let form = self.form(line, args_from, &rest_text)?;
                if keyword == "CMD" {
                    Command::Cmd(form)
                } else {
                    Command::Entrypoint(form)
                }
            }
            "SHELL" => match self.form(line, args_from, &rest_text)? {
                Form::Exec(v) if !v.is_empty() => Command::Shell(v),
                Form::Exec(_) => return Err(missing("needs at least the shell's path")),
                Form::Shell(_) => {
                    return Err(self
                        .err(line.pos_at(args_from), "SHELL takes the exec (JSON) form")
                        .with_hint("SHELL [\"/bin/sh\", \"-c\"]"));
                }
            },
            "HEALTHCHECK" => self.healthcheck(line, &flags, &rest, args_from)?,
            _ => return Err(self.err(pos, format!("unknown instruction: {keyword}"))),
        };
        if !matches!(
            keyword.as_str(),
            "FROM" | "RUN" | "COPY" | "ADD" | "HEALTHCHECK"
        ) && let Some((name, _, p)) = flags.first()
        {
            return Err(self.err(*p, format!("{keyword} does not take the flag --{name}")));
        }
        Ok(Instruction {
            pos,
            keyword,
            text,
            heredocs,
            command,
        })
    }

    /// Exec form when the arguments are a JSON array of strings, shell form otherwise; a
    /// bracketed list that is clearly meant as JSON but is not (single quotes, a trailing comma)
    /// is an error rather than a shell command that fails later.
    fn form(&self, line: &Logical, at: usize, text: &str) -> Result<Form, BuildError> {
        if text.starts_with('[') {
            match serde_json::from_str::<Vec<String>>(text) {
                Ok(v) => return Ok(Form::Exec(v)),
                Err(e) if looks_like_json(text) => {
                    return Err(self
                        .err(line.pos_at(at), format!("exec form is not a JSON array of strings: {e}"))
                        .with_hint("[\"executable\", \"arg\"] with double quotes; without brackets it is the shell form"));
                }
                Err(_) => {}
            }
        }
        Ok(Form::Shell(text.to_string()))
    }

    /// COPY/ADD/VOLUME paths: a JSON array or words.
    fn path_words(
        &self,
        line: &Logical,
        rest: &[Tok],
        at: usize,
        text: &str,
    ) -> Result<Vec<Word>, BuildError> {
        match self.form(line, at, text)? {
            Form::Exec(v) => Ok(v
                .into_iter()
                .map(|raw| Word {
                    raw: json_word(&raw, self.escape),
                    pos: line.pos_at(at),
                })
                .collect()),
            Form::Shell(_) => Ok(rest.iter().map(|t| self.word(line, t)).collect()),
        }
    }

    /// `ENV`/`LABEL`: `k=v …` or the old `k value with spaces`.
    fn name_values(
        &self,
        line: &Logical,
        keyword: &str,
        rest: &[Tok],
    ) -> Result<Vec<(Word, Word)>, BuildError> {
        let Some(first) = rest.first() else {
            return Err(self
                .err(line.end, format!("{keyword} needs name=value"))
                .with_hint(format!("{keyword} NAME=VALUE …")));
        };
        if !first.text.contains('=') {
            if rest.len() < 2 {
                return Err(self
                    .err(line.end, format!("{keyword} {} needs a value", first.text))
                    .with_hint(format!("{keyword} {}=VALUE", first.text)));
            }
            let value_start = rest[1].start;
            return Ok(vec![(
                self.word(line, first),
                Word {
                    raw: line.text(value_start),
                    pos: line.pos_at(value_start),
                },
            )]);
        }
        let mut out = Vec::new();
        for t in rest {
            let Some(eq) = unquoted_eq(&t.text, self.escape) else {
                return Err(self
                    .err(
                        line.pos_at(t.start),
                        format!("{:?} is not name=value", t.text),
                    )
                    .with_hint(
                        "mixing `NAME value` with `NAME=value` on one line is not allowed",
                    ));
            };
            let name: String = t.text.chars().take(eq).collect();
            if name.is_empty() {
                return Err(self.err(
                    line.pos_at(t.start),
                    format!("{keyword} with an empty name"),
                ));
            }
            let value: String = t.text.chars().skip(eq + 1).collect();
            out.push((
                Word {
                    raw: name,
                    pos: line.pos_at(t.start),
                },
                Word {
                    raw: value,
                    pos: line.pos_at(t.start + eq + 1),
                },
            ));
        }
        Ok(out)
    }

    fn mount(&self, spec: &str, pos: Pos) -> Result<Mount, BuildError> {
        let mut m = Mount {
            kind: "bind".to_string(),
            target: None,
            from: None,
            options: Vec::new(),
        };
        if spec.is_empty() {
            return Err(self
                .err(pos, "--mount needs a value")
                .with_hint("--mount=type=cache,target=/root/.cache"));
        }
        for part in spec.split(',') {
            let (k, v) = match part.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_string()),
                None => (part.trim().to_ascii_lowercase(), "true".to_string()),
            };
            match k.as_str() {
                "type" => {
                    if !matches!(v.as_str(), "bind" | "cache" | "tmpfs" | "secret" | "ssh") {
                        return Err(self
                            .err(pos, format!("unknown mount type {v:?}"))
                            .with_hint("bind, cache, tmpfs, secret or ssh"));
                    }
                    m.kind = v.clone();
                }
                "target" | "dst" | "destination" => m.target = Some(v.clone()),
                "from" => m.from = Some(v.clone()),
                "source" | "src" | "id" | "sharing" | "mode" | "uid" | "gid" | "readonly"
                | "ro" | "rw" | "readwrite" | "required" | "size" | "env" => {}
                other => {
                    return Err(self
                        .err(pos, format!("unknown mount option {other:?}"))
                        .with_hint("type, target, source, from, id, sharing, mode, uid, gid, readonly, required, size, env"));
                }
            }
            m.options.push((k, v));
        }
        if m.target.is_none() && matches!(m.kind.as_str(), "bind" | "cache" | "tmpfs") {
            return Err(self
                .err(pos, format!("a {} mount needs target=", m.kind))
                .with_hint("--mount=type=cache,target=/root/.cache"));
        }
        if let Some(s) = m.options.iter().find(|(k, _)| k == "sharing")
            && !matches!(s.1.as_str(), "shared" | "private" | "locked")
        {
            return Err(self
                .err(pos, format!("unknown cache sharing {:?}", s.1))
                .with_hint("shared, private or locked"));
        }
        Ok(m)
    }

    fn healthcheck(
        &self,
        line: &Logical,
        flags: &[(String, Option<String>, Pos)],
        rest: &[Tok],
        at: usize,
    ) -> Result<Command, BuildError> {
        let Some(first) = rest.first() else {
            return Err(self
                .err(line.end, "HEALTHCHECK needs NONE or CMD")
                .with_hint("HEALTHCHECK [--interval=30s …] CMD command"));
        };
        let word = first.text.to_ascii_uppercase();
        if word == "NONE" {
            if let Some((name, _, p)) = flags.first() {
                return Err(self.err(*p, format!("HEALTHCHECK NONE takes no options (--{name})")));
            }
            if let Some(t) = rest.get(1) {
                return Err(self.err(line.pos_at(t.start), "HEALTHCHECK NONE takes no arguments"));
            }
            return Ok(Command::Healthcheck(None));
        }
        if word != "CMD" {
            return Err(self
                .err(
                    line.pos_at(first.start),
                    format!("HEALTHCHECK needs NONE or CMD, not {:?}", first.text),
                )
                .with_hint("HEALTHCHECK [--interval=30s …] CMD command"));
        }
        let cmd_at = rest.get(1).map(|t| t.start).unwrap_or(line.chars.len());
        let text = line.text(cmd_at);
        let test = self.form(line, cmd_at, &text)?;
        if is_empty_form(&test) {
            return Err(self.err(line.end, "HEALTHCHECK CMD needs a command"));
        }
        let _ = at;
        let mut h = Health {
            test,
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        };
        for (name, value, p) in flags {
            let Some(v) = value.as_deref().filter(|v| !v.is_empty()) else {
                return Err(self.err(*p, format!("--{name} needs a value")));
            };
            if name == "retries" {
                match v.parse::<u32>() {
                    Ok(n) if n > 0 => h.retries = Some(n),
                    _ => {
                        return Err(self.err(
                            *p,
                            format!("--retries must be a positive number, not {v:?}"),
                        ));
                    }
                }
                continue;
            }
            let d = parse_duration(v).map_err(|e| {
                self.err(*p, format!("--{name}: {e}"))
                    .with_hint("a duration like 30s or 1m30s")
            })?;
            if d.is_zero() {
                // Zero means "the default", as in Docker.
                continue;
            }
            if d < std::time::Duration::from_millis(1) {
                return Err(self.err(*p, format!("--{name} must be at least 1ms")));
            }
            match name.as_str() {
                "interval" => h.interval = Some(d),
                "timeout" => h.timeout = Some(d),
                "start-period" => h.start_period = Some(d),
                _ => h.start_interval = Some(d),
            }
        }
        Ok(Command::Healthcheck(Some(h)))
    }

    /// Reads a heredoc's body after the current logical line, up to its terminator.
    fn heredoc_body(&mut self, h: &Marker, pos: Pos) -> Result<Heredoc, BuildError> {
        let mut content = String::new();
        while let Some(line) = self.lines.get(self.i) {
            self.i += 1;
            let line = if h.strip_tabs {
                line.trim_start_matches('\t')
            } else {
                line
            };
            if line == h.name {
                return Ok(Heredoc {
                    name: h.name.clone(),
                    content,
                    expand: h.expand,
                    strip_tabs: h.strip_tabs,
                });
            }
            content.push_str(line);
            content.push('\n');
        }
        Err(self
            .err(pos, format!("heredoc <<{} has no terminator", h.name))
            .with_hint(format!("end it with a line holding only {}", h.name)))
    }
}

struct Marker {
    name: String,
    expand: bool,
    strip_tabs: bool,
}

/// A `<<NAME`, `<<-NAME`, `<<"NAME"` or `<<'NAME'` token (what follows the name is the shell's).
fn heredoc_marker(tok: &str) -> Option<Marker> {
    let rest = tok.strip_prefix("<<")?;
    if rest.starts_with('<') {
        return None;
    }
    let (strip_tabs, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let (quote, rest) = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => (Some(q), &rest[1..]),
        _ => (None, rest),
    };
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .collect();
    if name.is_empty() {
        return None;
    }
    if let Some(q) = quote
        && !rest[name.len()..].starts_with(q)
    {
        return None;
    }
    Some(Marker {
        name,
        expand: quote.is_none(),
        strip_tabs,
    })
}

fn is_empty_form(f: &Form) -> bool {
    match f {
        Form::Exec(v) => v.is_empty(),
        Form::Shell(s) => s.trim().is_empty(),
    }
}

/// Whether a bracketed text that failed to parse was meant as JSON (rather than the shell's
/// `[ -f x ] && …`): it ends with `]` and its first item is quoted and followed by a comma,
/// or it uses single-quoted items.
fn looks_like_json(text: &str) -> bool {
    let t = text.trim_end();
    if !t.ends_with(']') {
        return false;
    }
    let inner = t[1..t.len() - 1].trim();
    if inner.is_empty() {
        return false;
    }
    let quoted = inner.starts_with('"') || inner.starts_with('\'');
    let listy = inner.contains("\",")
        || inner.contains("',")
        || inner.contains("\" ,")
        || inner.trim_end().ends_with(',');
    quoted && (listy || inner.starts_with('\''))
}

/// A JSON string turned into a word that word processing leaves as it is.
fn json_word(s: &str, escape: char) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if c == escape || c == '"' || c == '\'' || c.is_whitespace() {
            out.push(escape);
        }
        out.push(c);
    }
    out
}

/// The char index of the first `=` outside quotes.
fn unquoted_eq(s: &str, escape: char) -> Option<usize> {
    let mut quote = None;
    let mut skip = false;
    for (i, c) in s.chars().enumerate() {
        if skip {
            skip = false;
            continue;
        }
        if c == escape && quote != Some('\'') {
            skip = true;
        } else if Some(c) == quote {
            quote = None;
        } else if quote.is_none() && (c == '"' || c == '\'') {
            quote = Some(c);
        } else if quote.is_none() && c == '=' {
            return Some(i);
        }
    }
    None
}

pub fn valid_stage_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn valid_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
