//! Compose variable interpolation: `$VAR`, `${VAR}`, the `:-` `-` `:?` `?` `:+` `+` modifiers,
//! nesting inside defaults, replacements and error messages, and `$$` for a literal dollar. It
//! follows docker compose v2 (compose-go's `template` package): a `$` that cannot start a
//! variable is kept as written, a malformed `${…}` is an error, and an unset variable without a
//! modifier becomes the empty string and is reported so the CLI can warn. [`interpolate_tree`]
//! applies it to every scalar value of a located stack tree (never to mapping keys), collecting a
//! located [`Diagnostic`] per failing scalar instead of stopping at the first.

use super::error::Diagnostic;
use super::node::{Node, Path, Value};

/// Why a string could not be interpolated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    /// `${VAR:?message}` or `${VAR?message}` with the variable missing.
    #[error("{}", required_message(var, message))]
    Required { var: String, message: String },
    /// A `${` that is not a well-formed substitution.
    #[error("invalid interpolation format for {input:?}: {reason}")]
    Invalid { input: String, reason: String },
}

fn required_message(var: &str, message: &str) -> String {
    if message.is_empty() {
        format!("required variable {var} is missing a value")
    } else {
        format!("required variable {var} is missing a value: {message}")
    }
}

/// The hint attached to diagnostics for malformed substitutions.
pub const INVALID_HINT: &str = "you may need to escape any $ with another $";

/// The warning the CLI prints for a variable that was used but not set.
pub fn unset_warning(var: &str) -> String {
    format!("the {var} variable is not set. Defaulting to a blank string.")
}

/// Interpolates `input`, reading variables through `lookup` (`None` means unset).
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpError> {
    interpolate_with_warnings(input, lookup).map(|(s, _)| s)
}

/// Like [`interpolate`], also returning the names of the variables that were used without a
/// modifier but are not set (each name once, in order of use), which Compose replaces with the
/// empty string and warns about.
pub fn interpolate_with_warnings(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>), InterpError> {
    let mut unset = Vec::new();
    let out = Interp {
        whole: input,
        lookup,
    }
    .run(input, &mut unset)?;
    Ok((out, unset))
}

/// Interpolates every scalar value under `node` in place (mapping keys are left alone), keeping
/// whether each scalar was quoted. `path` is where `node` sits in the stack. Names of unset
/// variables are appended to `warnings` (each once). Returns one diagnostic per scalar that
/// failed, located at that scalar.
pub fn interpolate_tree(
    node: &mut Node,
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    walk(node, path, lookup, warnings, &mut diags);
    diags
}

fn walk(
    node: &mut Node,
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
    diags: &mut Vec<Diagnostic>,
) {
    match &mut node.value {
        Value::Null => {}
        Value::Scalar(s) => {
            if !s.text.contains('$') {
                return;
            }
            match interpolate_with_warnings(&s.text, lookup) {
                Ok((text, unset)) => {
                    s.text = text;
                    for name in unset {
                        if !warnings.contains(&name) {
                            warnings.push(name);
                        }
                    }
                }
                Err(e) => {
                    let d = Diagnostic::new(&node.loc, path, e.to_string());
                    diags.push(match e {
                        InterpError::Invalid { .. } => d.with_hint(INVALID_HINT),
                        InterpError::Required { .. } => d,
                    });
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &path.index(i), lookup, warnings, diags);
            }
        }
        Value::Map(map) => {
            for (key, child) in map.entries.iter_mut() {
                walk(child, &path.key(&key.name), lookup, warnings, diags);
            }
        }
    }
}

/// What follows the variable name inside `${…}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Modifier {
    /// `:-` (empty too) or `-`.
    Default { or_empty: bool },
    /// `:?` (empty too) or `?`.
    Required { or_empty: bool },
    /// `:+` (non-empty only) or `+`.
    Replace { non_empty: bool },
}

struct Interp<'a> {
    /// The top-level input, named in error messages.
    whole: &'a str,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn push_unset(unset: &mut Vec<String>, name: &str) {
    if !unset.iter().any(|n| n == name) {
        unset.push(name.to_string());
    }
}

impl Interp<'_> {
    fn invalid(&self, reason: impl Into<String>) -> InterpError {
        InterpError::Invalid {
            input: self.whole.to_string(),
            reason: reason.into(),
        }
    }

    fn run(&self, s: &str, unset: &mut Vec<String>) -> Result<String, InterpError> {
        let bytes = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        while let Some(off) = s[i..].find('$') {
            let p = i + off;
            out.push_str(&s[i..p]);
            match bytes.get(p + 1).copied() {
                Some(b'$') => {
                    out.push('$');
                    i = p + 2;
                }
                Some(b) if is_name_start(b) => {
                    let end = name_end(bytes, p + 1);
                    let name = &s[p + 1..end];
                    match (self.lookup)(name) {
                        Some(v) => out.push_str(&v),
                        None => push_unset(unset, name),
                    }
                    i = end;
                }
                Some(b'{') => {
                    i = self.braced(s, p + 2, &mut out, unset)?;
                }
                // Compose keeps a `$` that cannot start a substitution (`$ `, `$1`, a final `$`).
                _ => {
                    out.push('$');
                    i = p + 1;
                }
            }
        }
        out.push_str(&s[i..]);
        Ok(out)
    }

    /// Handles `${…}` whose body starts at `start`; returns the index just past the closing `}`.
    fn braced(
        &self,
        s: &str,
        start: usize,
        out: &mut String,
        unset: &mut Vec<String>,
    ) -> Result<usize, InterpError> {
        let bytes = s.as_bytes();
        match bytes.get(start).copied() {
            None => return Err(self.invalid("unterminated `${`")),
            Some(b'}') => return Err(self.invalid("empty variable name in `${}`")),
            Some(b) if !is_name_start(b) => {
                let c = s[start..].chars().next().unwrap_or('?');
                return Err(self.invalid(format!(
                    "`${{` must be followed by a variable name, found {c:?}"
                )));
            }
            Some(_) => {}
        }
        let end = name_end(bytes, start);
        let name = &s[start..end];
        let (modifier, body_start) = match (bytes.get(end).copied(), bytes.get(end + 1).copied()) {
            (None, _) => return Err(self.invalid("unterminated `${`")),
            (Some(b'}'), _) => {
                match (self.lookup)(name) {
                    Some(v) => out.push_str(&v),
                    None => push_unset(unset, name),
                }
                return Ok(end + 1);
            }
            (Some(b':'), Some(b'-')) => (Modifier::Default { or_empty: true }, end + 2),
            (Some(b':'), Some(b'?')) => (Modifier::Required { or_empty: true }, end + 2),
            (Some(b':'), Some(b'+')) => (Modifier::Replace { non_empty: true }, end + 2),
            (Some(b'-'), _) => (Modifier::Default { or_empty: false }, end + 1),
            (Some(b'?'), _) => (Modifier::Required { or_empty: false }, end + 1),
            (Some(b'+'), _) => (Modifier::Replace { non_empty: false }, end + 1),
            (Some(b':'), None) => return Err(self.invalid("unterminated `${`")),
            (Some(_), _) => {
                let c = s[end..].chars().next().unwrap_or('?');
                return Err(self.invalid(format!(
                    "unexpected {c:?} after variable name {name} (expected `}}`, `:-`, `-`, `:?`, `?`, `:+` or `+`)"
                )));
            }
        };
        let close =
            closing_brace(bytes, body_start).ok_or_else(|| self.invalid("unterminated `${`"))?;
        // Compose substitutes the default, replacement or message before looking at the variable,
        // so an error inside it fails even when it is not used; its unset variables are only
        // reported when the text is actually used.
        let mut inner_unset = Vec::new();
        let body = self.run(&s[body_start..close], &mut inner_unset)?;
        let value = (self.lookup)(name);
        let mut use_body = |out: &mut String| {
            out.push_str(&body);
            for n in &inner_unset {
                push_unset(unset, n);
            }
        };
        match modifier {
            Modifier::Default { or_empty } => match value {
                Some(v) if !(or_empty && v.is_empty()) => out.push_str(&v),
                _ => use_body(out),
            },
            Modifier::Required { or_empty } => match value {
                Some(v) if !(or_empty && v.is_empty()) => out.push_str(&v),
                _ => {
                    return Err(InterpError::Required {
                        var: name.to_string(),
                        message: body,
                    });
                }
            },
            Modifier::Replace { non_empty } => match value {
                Some(v) if !(non_empty && v.is_empty()) => use_body(out),
                Some(v) => out.push_str(&v),
                None => {}
            },
        }
        Ok(close + 1)
    }
}

fn name_end(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while end < bytes.len() && is_name_char(bytes[end]) {
        end += 1;
    }
    end
}

/// The `}` closing a `${` whose body starts at `start`, counting nested `${`.
fn closing_brace(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(input: &str, pairs: &[(&str, &str)]) -> Result<String, InterpError> {
        let e = env(pairs);
        interpolate(input, &|k| e.get(k).cloned())
    }

    fn ok(input: &str, pairs: &[(&str, &str)]) -> String {
        run(input, pairs).unwrap()
    }

    fn err(input: &str, pairs: &[(&str, &str)]) -> String {
        run(input, pairs).unwrap_err().to_string()
    }

    const SET: &[(&str, &str)] = &[("FOO", "foo"), ("EMPTY", ""), ("N", "8080")];

    #[test]
    fn plain_and_braced_variables() {
        assert_eq!(ok("$FOO", SET), "foo");
        assert_eq!(ok("${FOO}", SET), "foo");
        assert_eq!(ok("a-$FOO-b", SET), "a-foo-b");
        assert_eq!(ok("${FOO}bar", SET), "foobar");
        assert_eq!(ok("$FOObar", SET), "");
        assert_eq!(ok("${FOO}${N}", SET), "foo8080");
        assert_eq!(ok("$FOO.$N", SET), "foo.8080");
        assert_eq!(ok("no vars here", SET), "no vars here");
        assert_eq!(ok("${_x1}", &[("_x1", "v")]), "v");
        assert_eq!(ok("$lower", &[("lower", "v")]), "v");
        assert_eq!(ok("héllo ${FOO} ü", SET), "héllo foo ü");
    }

    #[test]
    fn default_when_unset_or_empty() {
        assert_eq!(ok("${UNSET:-def}", SET), "def");
        assert_eq!(ok("${EMPTY:-def}", SET), "def");
        assert_eq!(ok("${FOO:-def}", SET), "foo");
        assert_eq!(ok("${UNSET:-}", SET), "");
        assert_eq!(ok("${UNSET:-a b:c-d}", SET), "a b:c-d");
    }

    #[test]
    fn default_when_unset_only() {
        assert_eq!(ok("${UNSET-def}", SET), "def");
        assert_eq!(ok("${EMPTY-def}", SET), "");
        assert_eq!(ok("${FOO-def}", SET), "foo");
    }

    #[test]
    fn required_forms() {
        assert_eq!(ok("${FOO:?boom}", SET), "foo");
        assert_eq!(ok("${FOO?boom}", SET), "foo");
        assert_eq!(ok("${EMPTY?boom}", SET), "");
        assert_eq!(
            err("${UNSET:?please set it}", SET),
            "required variable UNSET is missing a value: please set it"
        );
        assert_eq!(
            err("${EMPTY:?need it}", SET),
            "required variable EMPTY is missing a value: need it"
        );
        assert_eq!(
            err("${UNSET?gone}", SET),
            "required variable UNSET is missing a value: gone"
        );
        assert_eq!(
            err("${UNSET?}", SET),
            "required variable UNSET is missing a value"
        );
        assert_eq!(
            err("x ${UNSET:?}", SET),
            "required variable UNSET is missing a value"
        );
        assert_eq!(
            run("${UNSET:?m}", SET),
            Err(InterpError::Required {
                var: "UNSET".into(),
                message: "m".into()
            })
        );
    }

    #[test]
    fn replacement_forms() {
        assert_eq!(ok("${FOO:+alt}", SET), "alt");
        assert_eq!(ok("${EMPTY:+alt}", SET), "");
        assert_eq!(ok("${UNSET:+alt}", SET), "");
        assert_eq!(ok("${FOO+alt}", SET), "alt");
        assert_eq!(ok("${EMPTY+alt}", SET), "alt");
        assert_eq!(ok("${UNSET+alt}", SET), "");
    }

    #[test]
    fn nesting() {
        assert_eq!(ok("${A:-${B:-x}}", &[]), "x");
        assert_eq!(ok("${A:-${B:-x}}", &[("B", "b")]), "b");
        assert_eq!(ok("${A:-${B:-x}}", &[("A", "a")]), "a");
        assert_eq!(ok("${A:-pre-${B}-post}!", &[("B", "b")]), "pre-b-post!");
        assert_eq!(ok("${A:+[$B]}", &[("A", "1"), ("B", "b")]), "[b]");
        assert_eq!(ok("${A:-${B:-${C:-deep}}}", &[]), "deep");
        assert_eq!(
            err("${A:?missing ${WHAT}}", &[("WHAT", "db url")]),
            "required variable A is missing a value: missing db url"
        );
        // A plain `{` in a default is text; the first unmatched `}` closes.
        assert_eq!(ok("${A:-{x}}", &[]), "{x}");
        assert_eq!(ok("${A:-x}}", &[]), "x}");
        // Several substitutions after a nested one.
        assert_eq!(ok("${A:-1}-${B:-2}-$C", &[("C", "3")]), "1-2-3");
    }

    #[test]
    fn compose_go_template_cases() {
        let d: &[(&str, &str)] = &[("FOO", "first"), ("BAR", "")];
        assert_eq!(ok("$FOO-bar", d), "first-bar");
        assert_eq!(ok("This ${BAR} var", d), "This  var");
        assert_eq!(
            ok("ok ${BAR:-/non:-alphanumeric}", d),
            "ok /non:-alphanumeric"
        );
        assert_eq!(ok("+ok ${UNSET:-${BAR-defaultValue}}", d), "+ok ");
        assert_eq!(ok(":?ok ${BAR:-defaultValue}", d), ":?ok defaultValue");
        assert_eq!(ok("ok ${UNSET_VAR-${FOO} ${FOO}}", d), "ok first first");
        assert_eq!(ok("ok ${BAR+$FOO ${FOO:+second}}", d), "ok first second");
        assert_eq!(ok("${UNSET_VAR-myerror?msg}", d), "myerror?msg");
        assert_eq!(
            err("${UNSET_VAR?bar-baz}", d),
            "required variable UNSET_VAR is missing a value: bar-baz"
        );
        for literal in ["a $ string", "^REGEX$", "$}", "$"] {
            assert_eq!(ok(literal, d), literal);
        }
        for bad in ["${", "${}", "${ }", "${ foo}", "${foo }", "${foo!}"] {
            assert!(
                err(bad, d).starts_with("invalid interpolation format"),
                "{bad}"
            );
        }
    }

    #[test]
    fn nested_errors_surface_even_when_unused() {
        // compose-go substitutes the default before looking at the variable.
        assert_eq!(
            err("${A:-${B:?need b}}", &[("A", "a")]),
            "required variable B is missing a value: need b"
        );
    }

    #[test]
    fn dollar_dollar_is_literal() {
        assert_eq!(ok("$$", SET), "$");
        assert_eq!(ok("$$FOO", SET), "$FOO");
        assert_eq!(ok("$${FOO}", SET), "${FOO}");
        assert_eq!(ok("$$$FOO", SET), "$foo");
        assert_eq!(ok("a$$$$b", SET), "a$$b");
        assert_eq!(ok("${UNSET:-$$}", SET), "$");
    }

    #[test]
    fn lone_dollar_is_kept() {
        assert_eq!(ok("$", SET), "$");
        assert_eq!(ok("a $ b", SET), "a $ b");
        assert_eq!(ok("$-x", SET), "$-x");
        assert_eq!(ok("$1abc", SET), "$1abc");
        assert_eq!(ok("cost: 5$", SET), "cost: 5$");
    }

    #[test]
    fn invalid_formats() {
        assert_eq!(
            err("${", SET),
            "invalid interpolation format for \"${\": unterminated `${`"
        );
        assert_eq!(
            err("a ${FOO", SET),
            "invalid interpolation format for \"a ${FOO\": unterminated `${`"
        );
        assert_eq!(
            err("${FOO:-x", SET),
            "invalid interpolation format for \"${FOO:-x\": unterminated `${`"
        );
        assert_eq!(
            err("${A:-${B}", SET),
            "invalid interpolation format for \"${A:-${B}\": unterminated `${`"
        );
        assert_eq!(
            err("${}", SET),
            "invalid interpolation format for \"${}\": empty variable name in `${}`"
        );
        assert_eq!(
            err("${1abc}", SET),
            "invalid interpolation format for \"${1abc}\": `${` must be followed by a variable name, found '1'"
        );
        assert_eq!(
            err("${FOO BAR}", SET),
            "invalid interpolation format for \"${FOO BAR}\": unexpected ' ' after variable name FOO (expected `}`, `:-`, `-`, `:?`, `?`, `:+` or `+`)"
        );
        assert!(err("${FOO:x}", SET).contains("unexpected ':' after variable name FOO"));
        assert!(err("${FOO:", SET).ends_with("unterminated `${`"));
        // The whole input is named even when the problem is nested.
        assert!(
            err("x ${A:-${}} y", SET)
                .starts_with("invalid interpolation format for \"x ${A:-${}} y\"")
        );
    }

    #[test]
    fn warns_about_unset_variables_once() {
        let e = env(&[("A", "a")]);
        let (s, unset) = interpolate_with_warnings("$X ${Y} $X ${A} ${Z:-d} ${W-} ${V:+r}", &|k| {
            e.get(k).cloned()
        })
        .unwrap();
        assert_eq!(s, "   a d  ");
        assert_eq!(unset, vec!["X", "Y"]);
        // Inside a default, only when the default is used.
        let (_, unset) =
            interpolate_with_warnings("${A:-$B} ${C:-$D}", &|k| e.get(k).cloned()).unwrap();
        assert_eq!(unset, vec!["D"]);
        assert_eq!(
            unset_warning("FOO"),
            "the FOO variable is not set. Defaulting to a blank string."
        );
    }

    fn tree(text: &str) -> Node {
        crate::spec::yaml::parse(text, "f.yaml").unwrap().remove(0)
    }

    fn at<'a>(n: &'a Node, path: &[&str]) -> &'a Node {
        let mut cur = n;
        for p in path {
            cur = match p.parse::<usize>() {
                Ok(i) => &cur.as_seq().unwrap()[i],
                Err(_) => cur.as_map().unwrap().get(p).unwrap(),
            };
        }
        cur
    }

    #[test]
    fn tree_interpolates_values_not_keys() {
        let mut n = tree(
            "services:\n  ${NAME}:\n    image: \"${IMG:-nginx}:${TAG}\"\n    ports:\n      - $PORT\n      - \"$$PORT\"\n    x: ~\n",
        );
        let e = env(&[("PORT", "8080"), ("NAME", "web")]);
        let mut warnings = Vec::new();
        let diags = interpolate_tree(&mut n, &Path::root(), &|k| e.get(k).cloned(), &mut warnings);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(warnings, vec!["TAG"]);
        let svc = at(&n, &["services", "${NAME}"]);
        let img = at(svc, &["image"]).as_scalar().unwrap();
        assert_eq!(img.text, "nginx:");
        assert!(img.quoted);
        let p0 = at(svc, &["ports", "0"]).as_scalar().unwrap();
        assert_eq!(p0.text, "8080");
        assert!(!p0.quoted);
        assert_eq!(at(svc, &["ports", "1"]).as_str(), Some("$PORT"));
        assert!(at(svc, &["x"]).is_null());
    }

    #[test]
    fn tree_collects_every_error_with_location() {
        let mut n = tree(
            "services:\n  web:\n    image: ${IMG:?set the image}\n    command: [\"ok\", \"${\"]\n    environment:\n      A: ${B}\n      C: ${D?}\n",
        );
        let mut warnings = Vec::new();
        let diags = interpolate_tree(&mut n, &Path::root(), &|_| None, &mut warnings);
        assert_eq!(diags.len(), 3, "{diags:?}");
        assert_eq!(
            diags[0].to_string(),
            "f.yaml:3:12: services.web.image: required variable IMG is missing a value: set the image"
        );
        assert_eq!(
            diags[1].to_string(),
            "f.yaml:4:21: services.web.command[1]: invalid interpolation format for \"${\": unterminated `${` (hint: you may need to escape any $ with another $)"
        );
        assert_eq!(
            diags[2].to_string(),
            "f.yaml:7:10: services.web.environment.C: required variable D is missing a value"
        );
        assert_eq!(warnings, vec!["B"]);
        // The good scalar next to the failing one was still interpolated.
        assert_eq!(
            at(&n, &["services", "web", "environment", "A"]).as_str(),
            Some("")
        );
    }

    #[test]
    fn tree_paths_start_from_the_given_path() {
        let mut n = tree("image: ${X:?}\n");
        let base = Path::root().key("services").key("db");
        let diags = interpolate_tree(&mut n, &base, &|_| None, &mut Vec::new());
        assert_eq!(diags[0].path, "services.db.image");
        assert_eq!((diags[0].loc.line, diags[0].loc.col), (1, 8));
    }
}
