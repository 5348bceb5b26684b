//! `.dockerignore`-style patterns (also `develop.watch[].ignore` and `include`), matched against
//! slash-separated paths relative to a root: `*` and `?` within one component, `[a-z]` classes,
//! `**` for any number of components, `\` escapes; a leading `/` is dropped; a pattern that
//! matches a directory matches everything under it; `!` re-includes; the last pattern that
//! matches decides. Editors' temporary files and `.git/` are ignored by default ([`DEFAULTS`]).

/// What is ignored without being asked: version control and editors' temporary files.
pub const DEFAULTS: &[&str] = &[
    "**/.git",
    "**/*.swp",
    "**/*.swx",
    "**/*.swo",
    "**/*~",
    "**/.#*",
    "**/#*#",
    "**/4913",
    "**/*___jb_tmp___",
    "**/*___jb_old___",
    "**/.goutputstream-*",
    "**/.*.flotilla-sync-*",
];

#[derive(Debug, Clone, PartialEq)]
struct Pattern {
    segments: Vec<String>,
    negated: bool,
}

/// A list of patterns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patterns(Vec<Pattern>);

impl Patterns {
    /// The patterns of these lines (`#` comments and blank lines skipped).
    pub fn new<S: AsRef<str>>(lines: &[S]) -> Self {
        let mut out = Vec::new();
        for line in lines {
            let line = line.as_ref().trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negated, text) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let segments: Vec<String> = text
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .map(str::to_string)
                .collect();
            if segments.is_empty() {
                continue;
            }
            out.push(Pattern { segments, negated });
        }
        Patterns(out)
    }

    /// The lines of a `.dockerignore` file.
    pub fn parse(text: &str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        Patterns::new(&lines)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds the patterns of `other` after these (they win on conflicts).
    pub fn extend(&mut self, other: Patterns) {
        self.0.extend(other.0);
    }

    /// Whether relative path `rel` (slash-separated) is matched: by the last pattern that
    /// matches it or one of its parent directories.
    pub fn matches(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
        let mut matched = false;
        for p in &self.0 {
            if p.negated != matched {
                continue;
            }
            if (1..=parts.len()).any(|n| segments_match(&p.segments, &parts[..n])) {
                matched = !p.negated;
            }
        }
        matched
    }
}

/// Whether the pattern's segments match exactly these path components.
fn segments_match(pat: &[String], parts: &[&str]) -> bool {
    match pat.split_first() {
        None => parts.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=parts.len()).any(|skip| segments_match(rest, &parts[skip..]))
        }
        Some((first, rest)) => match parts.split_first() {
            Some((p, prest)) => glob(first.as_bytes(), p.as_bytes()) && segments_match(rest, prest),
            None => false,
        },
    }
}

/// One component against one glob (`*`, `?`, `[…]`, `\`).
fn glob(pat: &[u8], text: &[u8]) -> bool {
    match pat.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((b'[', rest)) => {
            let Some((&c, trest)) = text.split_first() else {
                return false;
            };
            match class(rest, c) {
                Some((true, after)) => glob(after, trest),
                _ => false,
            }
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            text.first() == Some(&rest[0]) && glob(&rest[1..], &text[1..])
        }
        Some((&p, rest)) => text.first() == Some(&p) && glob(rest, &text[1..]),
    }
}

/// A `[…]` class (after the `[`): whether `c` is in it, and the pattern after the `]`; `None`
/// when unterminated (then nothing matches).
fn class(pat: &[u8], c: u8) -> Option<(bool, &[u8])> {
    let (negated, mut i) = match pat.first() {
        Some(b'^') | Some(b'!') => (true, 1),
        _ => (false, 0),
    };
    let mut found = false;
    let mut first = true;
    while i < pat.len() {
        if pat[i] == b']' && !first {
            return Some((found != negated, &pat[i + 1..]));
        }
        first = false;
        let lo = pat[i];
        if i + 2 < pat.len() && pat[i + 1] == b'-' && pat[i + 2] != b']' {
            if lo <= c && c <= pat[i + 2] {
                found = true;
            }
            i += 3;
        } else {
            if lo == c {
                found = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_rules() {
        let p =
            Patterns::parse("# comment\n\nnode_modules\n*.log\n/build\n!keep.log\ndocs/**/*.md\n");
        assert!(p.matches("node_modules"));
        assert!(p.matches("node_modules/a/b.js"));
        assert!(!p.matches("src/node_modules"));
        assert!(p.matches("x.log"));
        assert!(!p.matches("keep.log"));
        assert!(!p.matches("sub/x.log"));
        assert!(p.matches("build/out.o"));
        assert!(p.matches("docs/a/b/c.md"));
        assert!(p.matches("docs/c.md"));
        assert!(!p.matches("docs/c.txt"));
        assert!(!p.matches("src/main.rs"));
    }

    #[test]
    fn globs_and_classes() {
        let p = Patterns::new(&["file[0-9].txt", "?.c", "a\\*b", "**/tmp"]);
        assert!(p.matches("file3.txt"));
        assert!(!p.matches("filex.txt"));
        assert!(p.matches("x.c"));
        assert!(!p.matches("xy.c"));
        assert!(p.matches("a*b"));
        assert!(!p.matches("axb"));
        assert!(p.matches("tmp/x"));
        assert!(p.matches("deep/down/tmp/x"));
        assert!(Patterns::new(&["[^a]x"]).matches("bx"));
        assert!(!Patterns::new(&["[^a]x"]).matches("ax"));
        assert!(!Patterns::new(&["[ab"]).matches("a"));
    }

    #[test]
    fn defaults_cover_editors_and_git() {
        let p = Patterns::new(DEFAULTS);
        for ignored in [
            ".git/HEAD",
            "src/.index.html.swp",
            "index.html~",
            "sub/.#index.html",
            "#index.html#",
            "4913",
            "a/.goutputstream-XYZ",
            "www/.index.html.flotilla-sync-123",
        ] {
            assert!(p.matches(ignored), "{ignored}");
        }
        for kept in ["index.html", "src/app.js", ".gitignore", "git/x"] {
            assert!(!p.matches(kept), "{kept}");
        }
    }

    #[test]
    fn last_match_wins_and_negation_reincludes() {
        let p = Patterns::new(&["*.md", "!README.md", "README.md"]);
        assert!(p.matches("README.md"));
        let p = Patterns::new(&["docs", "!docs/keep.txt"]);
        assert!(p.matches("docs/x"));
        assert!(!p.matches("docs/keep.txt"));
    }
}
