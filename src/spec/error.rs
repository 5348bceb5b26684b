//! Located stack-file problems. Every stage of the loader reports [`Diagnostic`]s that carry the
//! file, line and column, the path inside the stack (`services.web.ports[1]`), what is wrong and,
//! where we can guess, a hint. A load gathers all of them and fails with [`SpecErrors`], rendered
//! one per line as `compose.yaml:12:7: services.web.ports[0]: …`.

use std::fmt;

use super::node::{Loc, Path};

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub loc: Loc,
    /// The path inside the stack, rendered (`services.web.ports[1]`); empty for file-level problems.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(loc: &Loc, path: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            loc: loc.clone(),
            path: if path.depth() == 0 {
                String::new()
            } else {
                path.to_string()
            },
            message: message.into(),
            hint: None,
        }
    }

    /// A problem with a whole file (it cannot be read, it is not YAML).
    pub fn at(loc: &Loc, message: impl Into<String>) -> Self {
        Diagnostic {
            loc: loc.clone(),
            path: String::new(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.loc)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// All the problems found in a stack, in file order.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub struct SpecErrors(pub Vec<Diagnostic>);

impl SpecErrors {
    pub fn one(d: Diagnostic) -> Self {
        SpecErrors(vec![d])
    }

    /// Sorted by location and without repeats, as the user reads them.
    pub fn sorted(mut self) -> Self {
        self.0.sort_by(|a, b| {
            (&a.loc.file, a.loc.line, a.loc.col, &a.path, &a.message).cmp(&(
                &b.loc.file,
                b.loc.line,
                b.loc.col,
                &b.path,
                &b.message,
            ))
        });
        self.0.dedup();
        self
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl From<Diagnostic> for SpecErrors {
    fn from(d: Diagnostic) -> Self {
        SpecErrors(vec![d])
    }
}

/// Suggests the candidate closest to a misspelt word, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(&str, f64)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(word, c);
        if score >= 0.8 && best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        let keys = ["environment", "entrypoint", "env_file", "image"];
        assert_eq!(did_you_mean("enviroment", keys), Some("environment"));
        assert_eq!(did_you_mean("imgae", keys), Some("image"));
        assert_eq!(did_you_mean("zzz", keys), None);
    }
}
