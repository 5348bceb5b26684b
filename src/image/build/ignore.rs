//! `.dockerignore` patterns: the one matcher of build contexts and of `develop.watch` (`ignore`,
//! `include`, the root's `.dockerignore`). Docker's rules: paths are slash-separated and relative
//! to the context root; each line is trimmed, `#` lines and blank lines are skipped; a pattern is
//! cleaned like Go's `filepath.Clean` (`.` dropped, `..` climbs, a leading `/` and a trailing `/`
//! mean nothing); `*` and `?` match within one component, `[a-z]` / `[^a-z]` are classes, `\`
//! escapes, `**` matches any number of components (zero included); a pattern that matches a
//! directory matches everything under it; `!` re-includes; the last pattern that matches decides.

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
            let segments = clean(text);
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

    /// Whether any pattern re-includes (`!`): then an ignored directory may still hold
    /// something that is not ignored, and a walk must look inside it.
    pub fn has_exceptions(&self) -> bool {
        self.0.iter().any(|p| p.negated)
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

/// The components of a cleaned pattern: empty and `.` components dropped, `..` removes the one
/// before it (and, at the root, is dropped: nothing is above the context).
fn clean(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in text.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    out
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
    fn last_match_wins_and_negation_reincludes() {
        let p = Patterns::new(&["*.md", "!README.md", "README.md"]);
        assert!(p.matches("README.md"));
        let p = Patterns::new(&["docs", "!docs/keep.txt"]);
        assert!(p.matches("docs/x"));
        assert!(!p.matches("docs/keep.txt"));
    }

    /// The examples of Docker's documentation of `.dockerignore`.
    #[test]
    fn docker_documented_examples() {
        let p = Patterns::parse("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        for ignored in [
            "somedir/temporary.txt",
            "somedir/temp",
            "somedir/subdir/temporary.txt",
            "tempa",
            "tempb",
            "somedir/temp/inner.txt",
        ] {
            assert!(p.matches(ignored), "{ignored}");
        }
        for kept in [
            "temporary.txt",
            "temp",
            "a/b/c/temp.txt",
            "tempab",
            "# comment",
        ] {
            assert!(!p.matches(kept), "{kept}");
        }

        let p = Patterns::parse("**/*.go\n");
        assert!(p.matches("main.go"));
        assert!(p.matches("cmd/x/main.go"));
        assert!(!p.matches("main.gox"));

        let p = Patterns::parse("*.md\n!README.md\n");
        assert!(p.matches("CHANGES.md"));
        assert!(!p.matches("README.md"));

        let p = Patterns::parse("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(p.matches("CHANGES.md"));
        assert!(!p.matches("README.md"));
        assert!(!p.matches("README-public.md"));
        assert!(p.matches("README-secret.md"));

        let p = Patterns::parse("*.md\nREADME-secret.md\n!README*.md\n");
        assert!(p.matches("CHANGES.md"));
        assert!(!p.matches("README-secret.md"));
        assert!(!p.matches("README.md"));
    }

    #[test]
    fn leading_and_trailing_slashes_and_cleaning() {
        let table: &[(&str, &str, bool)] = &[
            ("/build", "build", true),
            ("/build", "build/x.o", true),
            ("/build", "src/build", false),
            ("build/", "build", true),
            ("build/", "build/a/b", true),
            ("./a/./b", "a/b", true),
            ("a/../b", "b", true),
            ("a/../b", "a/b", false),
            ("../secret", "secret", true),
            ("  spaced.txt  ", "spaced.txt", true),
            ("**", "anything/at/all", true),
            ("**/", "x", true),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/x/y/c", false),
            ("a/**", "a/x", true),
            ("a/**", "b/x", false),
            ("*", "top", true),
            ("*", "dir/file", true),
            ("*.txt", "dir/file.txt", false),
            ("dir/*", "dir/file", true),
            ("dir/*", "dir", false),
        ];
        for (pattern, path, want) in table {
            assert_eq!(
                Patterns::new(&[*pattern]).matches(path),
                *want,
                "{pattern:?} against {path:?}"
            );
        }
    }

    #[test]
    fn exceptions_inside_ignored_directories() {
        let p = Patterns::parse("vendor\n!vendor/keep/**\n");
        assert!(p.has_exceptions());
        assert!(p.matches("vendor/a.go"));
        assert!(!p.matches("vendor/keep/b.go"));
        assert!(!Patterns::parse("x\n").has_exceptions());
        // A lone `!` and empty lines are nothing.
        let p = Patterns::parse("!\n\n   \n");
        assert!(p.is_empty());
    }
}
