//! `.env` and `env_file` parsing with Compose's rules (compose-go's `dotenv` package, a fork of
//! godotenv): `KEY=value` or `KEY: value`, an optional `export ` prefix, `#` comments, unquoted
//! values trimmed and cut at ` #`, single-quoted values taken literally, double-quoted values with
//! shell escapes, quoted values spanning several lines, `${…}` interpolation in unquoted and
//! double-quoted values, and a bare `KEY` that takes its value from the caller's environment.
//! Problems are reported with the line and column where they are.

use super::interpolate::interpolate;

/// A malformed `.env` file: where and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DotenvError {
    pub line: u32,
    pub col: u32,
    pub message: String,
}

/// Parses `.env` text into its variables, in the order they are first defined (a later
/// definition of the same key replaces the value in place).
///
/// `lookup` is the caller's environment. A bare `KEY` line takes its value from it and is skipped
/// when it is not there. Interpolation inside values looks a name up in `lookup` first and then
/// among the variables defined earlier in the same file, as compose-go does (so the shell
/// environment, which also wins over the file's own values, is what `${KEY}` sees).
pub fn parse(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, DotenvError> {
    let src = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut p = Parser {
        src,
        pos: 0,
        out: Vec::new(),
        lookup,
    };
    p.run()?;
    Ok(p.out)
}

/// Blanks that separate tokens on one line (Unicode spaces, but never a line break).
fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

fn is_key_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    out: Vec<(String, String)>,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Parser<'a> {
    fn error(&self, at: usize, message: impl Into<String>) -> DotenvError {
        let before = &self.src[..at.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        DotenvError {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
            message: message.into(),
        }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    /// The text from `at` to the end of its line.
    fn line_from(&self, at: usize) -> &'a str {
        let s = &self.src[at..];
        s.split('\n').next().unwrap_or(s)
    }

    fn set(&mut self, key: String, value: String) {
        if let Some(slot) = self.out.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.out.push((key, value));
        }
    }

    /// Skips blank lines and comment lines; false at the end of the text.
    fn statement_start(&mut self) -> bool {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            if trimmed.is_empty() {
                return false;
            }
            if !trimmed.starts_with('#') {
                return true;
            }
            match trimmed.find('\n') {
                Some(nl) => self.pos += nl,
                None => {
                    self.pos = self.src.len();
                    return false;
                }
            }
        }
    }

    fn skip_blanks(&mut self) {
        let rest = self.rest();
        let trimmed = rest.trim_start_matches(is_blank);
        self.pos += rest.len() - trimmed.len();
    }

    fn run(&mut self) -> Result<(), DotenvError> {
        while self.statement_start() {
            self.statement()?;
        }
        Ok(())
    }

    fn statement(&mut self) -> Result<(), DotenvError> {
        if let Some(after) = self.rest().strip_prefix("export")
            && after.starts_with(is_blank)
        {
            self.pos += "export".len();
            self.skip_blanks();
        }
        let key_start = self.pos;
        // Where the key ends and what ended it (`None`: the end of the text).
        let mut sep: Option<(usize, char)> = None;
        for (i, c) in self.rest().char_indices() {
            if is_blank(c) {
                continue;
            }
            match c {
                '=' | ':' | '\n' => {
                    sep = Some((key_start + i, c));
                    break;
                }
                c if is_key_char(c) => {}
                c => {
                    return Err(self.error(
                        key_start + i,
                        format!(
                            "unexpected character {:?} in variable name {:?}",
                            c,
                            self.line_from(key_start)
                        ),
                    ));
                }
            }
        }
        let key_end = sep.map_or(self.src.len(), |(at, _)| at);
        let key = self.src[key_start..key_end].trim_end();
        if let Some(i) = key.find(char::is_whitespace) {
            return Err(self.error(key_start + i, "key cannot contain a space"));
        }
        if key.is_empty() {
            let message = match sep {
                Some((_, c @ ('=' | ':'))) => format!("missing variable name before {c:?}"),
                _ => "missing variable name".to_string(),
            };
            return Err(self.error(key_start, message));
        }
        let key = key.to_string();
        match sep {
            // A bare `KEY`: inherited from the caller's environment, if it is there.
            None | Some((_, '\n')) => {
                if let Some(v) = (self.lookup)(&key) {
                    self.set(key, v);
                }
                self.pos = sep.map_or(self.src.len(), |(at, _)| at + 1);
            }
            Some((at, _)) => {
                self.pos = at + 1;
                self.skip_blanks();
                let value = self.value()?;
                self.set(key, value);
            }
        }
        Ok(())
    }

    /// Reads the value at `pos` and moves past it.
    fn value(&mut self) -> Result<String, DotenvError> {
        let start = self.pos;
        let rest = self.rest();
        let quote = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => {
                let (line, after) = match rest.find('\n') {
                    Some(nl) => (&rest[..nl], start + nl + 1),
                    None => (rest, self.src.len()),
                };
                let line = line.split(" #").next().unwrap_or(line).trim_end();
                let value = self.expand(line, start)?;
                self.pos = after;
                return Ok(value);
            }
        };
        let mut raw = String::new();
        let mut escaped = false;
        let mut close = None;
        for (i, c) in rest.char_indices().skip(1) {
            if c == quote {
                if escaped {
                    escaped = false;
                    raw.push(c);
                    continue;
                }
                close = Some(start + i);
                break;
            }
            if escaped {
                escaped = false;
                raw.push('\\');
                raw.push(c);
            } else if c == '\\' {
                escaped = true;
            } else {
                raw.push(c);
            }
        }
        let Some(close) = close else {
            return Err(self.error(
                start,
                format!("unterminated quoted value {}", self.line_from(start)),
            ));
        };
        self.pos = close + 1;
        self.skip_blanks();
        match self.rest().chars().next() {
            None | Some('\n') | Some('#') => {}
            Some(c) => {
                return Err(self.error(
                    self.pos,
                    format!("unexpected character {c:?} after quoted value"),
                ));
            }
        }
        if quote == '\'' {
            return Ok(raw);
        }
        self.expand(&expand_escapes(&raw), start)
    }

    /// Interpolates a value: the caller's environment first, then this file's earlier variables.
    fn expand(&self, value: &str, at: usize) -> Result<String, DotenvError> {
        if !value.contains('$') {
            return Ok(value.to_string());
        }
        let lookup = |k: &str| {
            (self.lookup)(k).or_else(|| {
                self.out
                    .iter()
                    .find(|(name, _)| name == k)
                    .map(|(_, v)| v.clone())
            })
        };
        interpolate(value, &lookup).map_err(|e| self.error(at, e.to_string()))
    }
}

/// The escapes of a double-quoted value (the XSI `echo` set compose-go accepts): `\a \b \f \n
/// \r \t \v \\`, `\0nnn` octal, and `\$`, which becomes `$$` so interpolation keeps a literal
/// `$`. Any other backslash is kept as written.
fn expand_escapes(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(&next) = chars.peek() else {
            out.push('\\');
            break;
        };
        let simple = match next {
            'a' => Some("\u{7}"),
            'b' => Some("\u{8}"),
            'f' => Some("\u{c}"),
            'n' => Some("\n"),
            'r' => Some("\r"),
            't' => Some("\t"),
            'v' => Some("\u{b}"),
            '\\' => Some("\\"),
            '"' => Some("\""),
            '$' => Some("$$"),
            _ => None,
        };
        if let Some(s) = simple {
            chars.next();
            out.push_str(s);
            continue;
        }
        if next == '0' {
            chars.next();
            let mut digits = String::new();
            while digits.len() < 3 {
                match chars.peek() {
                    Some(&d) if d.is_ascii_digit() => {
                        digits.push(d);
                        chars.next();
                    }
                    _ => break,
                }
            }
            match u8::from_str_radix(&digits, 8) {
                Ok(b) if digits.len() == 3 => out.push(char::from(b)),
                // Like compose-go: a short or invalid octal escape loses its `0` and is kept.
                _ => {
                    out.push('\\');
                    out.push_str(&digits);
                }
            }
            continue;
        }
        out.push('\\');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(text: &str, env: &[(&str, &str)]) -> Result<Vec<(String, String)>, DotenvError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(text, &|k| env.get(k).cloned())
    }

    fn vars(text: &str) -> Vec<(String, String)> {
        with(text, &[]).unwrap()
    }

    fn one(text: &str) -> String {
        let v = vars(text);
        assert_eq!(v.len(), 1, "{v:?}");
        v[0].1.clone()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(text: &str) -> DotenvError {
        with(text, &[]).unwrap_err()
    }

    #[test]
    fn simple_assignments_in_order() {
        assert_eq!(
            vars("A=1\nB=two\nC=3"),
            pairs(&[("A", "1"), ("B", "two"), ("C", "3")])
        );
        assert_eq!(vars("A=1\nB=2\nA=3\n"), pairs(&[("A", "3"), ("B", "2")]));
        assert_eq!(vars(""), pairs(&[]));
        assert_eq!(
            one("URL=postgres://h:5432/db?ssl=off"),
            "postgres://h:5432/db?ssl=off"
        );
        assert_eq!(one("FOO=foobar="), "foobar=");
        assert_eq!(one("FOO.BAR-baz[1]=x"), "x");
        assert_eq!(vars("árvíz_TÜK=ü"), pairs(&[("árvíz_TÜK", "ü")]));
    }

    #[test]
    fn yaml_style_colon() {
        assert_eq!(vars("OPTION_A: 1"), pairs(&[("OPTION_A", "1")]));
        assert_eq!(one("OPTION_A: Foo=bar"), "Foo=bar");
        assert_eq!(one("OPTION_A=1:B"), "1:B");
    }

    #[test]
    fn export_prefix() {
        assert_eq!(vars("export A=2"), pairs(&[("A", "2")]));
        assert_eq!(vars("  export\tA=2"), pairs(&[("A", "2")]));
        assert_eq!(vars("exportFOO=2"), pairs(&[("exportFOO", "2")]));
        assert_eq!(vars("export_FOO =2"), pairs(&[("export_FOO", "2")]));
        assert_eq!(vars("export=2"), pairs(&[("export", "2")]));
        assert_eq!(one("export A=\"export B\""), "export B");
    }

    #[test]
    fn comments_and_blank_lines() {
        let text = "# full line\n\n   \n\t# indented comment\nA=1 # inline\nB=2 #\nC=3#not-a-comment\r\n\nD=\"x#y\" # after quotes\nE='p#q'#tight\n";
        assert_eq!(
            vars(text),
            pairs(&[
                ("A", "1"),
                ("B", "2"),
                ("C", "3#not-a-comment"),
                ("D", "x#y"),
                ("E", "p#q")
            ])
        );
        // As in compose-go, a value that starts with `#` is a value, not a comment.
        assert_eq!(one("A= # not a comment"), "# not a comment");
    }

    #[test]
    fn whitespace_is_trimmed_around_unquoted_values() {
        assert_eq!(vars(" KEY =value"), pairs(&[("KEY", "value")]));
        assert_eq!(one("FOO= bar "), "bar");
        assert_eq!(one("FOO = a b  c \t"), "a b  c");
        assert_eq!(one("FOO=bar\r\n"), "bar");
        assert_eq!(one("FOO=a\\tb"), "a\\tb");
    }

    #[test]
    fn empty_values() {
        assert_eq!(
            vars("A=\nB=\nC=   \nD=''\nE=\"\""),
            pairs(&[("A", ""), ("B", ""), ("C", ""), ("D", ""), ("E", "")])
        );
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(one("A='quote $FOO ${BAR:?x}'"), "quote $FOO ${BAR:?x}");
        assert_eq!(one("A='\\n'"), "\\n");
        assert_eq!(one("A='  padded  '"), "  padded  ");
        assert_eq!(one("A='it\\'s'"), "it's");
        assert_eq!(one("A='say \"hi\"'"), "say \"hi\"");
    }

    #[test]
    fn double_quotes_have_escapes() {
        assert_eq!(one("A=\"bar\\nbaz\""), "bar\nbaz");
        assert_eq!(one("A=\"escaped\\\"bar\""), "escaped\"bar");
        assert_eq!(one("A=\"\\\"quoted\\\"\""), "\"quoted\"");
        assert_eq!(one("A=\"'d'\""), "'d'");
        assert_eq!(one("A=\"a\\tb\""), "a\tb");
        assert_eq!(
            one("KEY=\"Z\\aZ\\bZ\\fZ\\nZ\\rZ\\tZ\\vZ\\\\Z\\0123Z\""),
            "Z\u{7}Z\u{8}Z\u{c}Z\nZ\rZ\tZ\u{b}Z\\ZSZ"
        );
        assert_eq!(one("A=\"bar\\n\\ b\\az\""), "bar\n\\ b\u{7}z");
        assert_eq!(one("A=\"bar\\\\\\n\\ b\\az\""), "bar\\\n\\ b\u{7}z");
        assert_eq!(one("A=\"bar\\nbaz\\\\\""), "bar\nbaz\\");
        // Escapes outside the XSI set are kept as written.
        assert_eq!(one("A=\"\\x07\""), "\\x07");
        assert_eq!(one("A=\"\\u12e4\""), "\\u12e4");
        assert_eq!(one("A=\"\\c\""), "\\c");
        assert_eq!(one("A=\"\\01\""), "\\1");
    }

    #[test]
    fn multi_line_quoted_values() {
        assert_eq!(
            vars("A=\"first\nsecond\"\nB='x\n  y\n'\nC=3"),
            pairs(&[("A", "first\nsecond"), ("B", "x\n  y\n"), ("C", "3")])
        );
        let e = with("A=\"one\ntwo\"\nB=${X:?no x}", &[]).unwrap_err();
        assert_eq!(e.line, 3);
    }

    #[test]
    fn interpolation_in_unquoted_and_double_quoted_values() {
        assert_eq!(
            vars("FOO=test\nBAR=$FOO\nBAZ=${FOO}bar\nQ=\"quote $FOO\"\nS='$FOO'"),
            pairs(&[
                ("FOO", "test"),
                ("BAR", "test"),
                ("BAZ", "testbar"),
                ("Q", "quote test"),
                ("S", "$FOO")
            ])
        );
        assert_eq!(one("BAR=$UNDEFINED"), "");
        assert_eq!(one("A=${UNSET:-Default Value}"), "Default Value");
        assert_eq!(one("A=\"foo\\$BAR\""), "foo$BAR");
        assert_eq!(one("A=\"foo\\${BAR}\""), "foo${BAR}");
        assert_eq!(one("A=$$BAR"), "$BAR");
        assert_eq!(
            vars("FOO=test\nBAR=\"foo\\${FOO} ${FOO}\""),
            pairs(&[("FOO", "test"), ("BAR", "foo${FOO} test")])
        );
        // The caller's environment is consulted first, then earlier variables of the file.
        assert_eq!(
            with("A=1\nB=${A}\nC=${C_ENV}", &[("A", "5"), ("C_ENV", "c")]).unwrap(),
            pairs(&[("A", "1"), ("B", "5"), ("C", "c")])
        );
        assert_eq!(
            with("OPT=${OPT:-1}\nD=${OPT}_${OPT}", &[]).unwrap(),
            pairs(&[("OPT", "1"), ("D", "1_1")])
        );
        // A later definition is not visible before it is made.
        assert_eq!(
            vars("B=${A:-none}\nA=1"),
            pairs(&[("B", "none"), ("A", "1")])
        );
    }

    #[test]
    fn bare_key_is_inherited_when_set() {
        let env = [("FROM_ENV", "v"), ("LAST", "l")];
        assert_eq!(
            with("FROM_ENV\nfoo=bar\nMISSING\nbar=baz\nLAST", &env).unwrap(),
            pairs(&[
                ("FROM_ENV", "v"),
                ("foo", "bar"),
                ("bar", "baz"),
                ("LAST", "l")
            ])
        );
        assert_eq!(
            with("  KEY  \r\n", &[("KEY", "k")]).unwrap(),
            pairs(&[("KEY", "k")])
        );
        assert_eq!(with("MISSING", &[]).unwrap(), pairs(&[]));
    }

    #[test]
    fn utf8_bom_is_ignored() {
        assert_eq!(vars("\u{feff}A=1\nB=2"), pairs(&[("A", "1"), ("B", "2")]));
    }

    #[test]
    fn keys_with_leading_digits_are_accepted_like_compose() {
        assert_eq!(vars("1ABC=x"), pairs(&[("1ABC", "x")]));
    }

    #[test]
    fn space_in_key_is_an_error() {
        let e = err("A=1\nFOO BAR=1\n");
        assert_eq!((e.line, e.col), (2, 4));
        assert_eq!(e.to_string(), "line 2: key cannot contain a space");
        assert_eq!(err("FOO BAR\n").message, "key cannot contain a space");
    }

    #[test]
    fn bad_character_in_key_is_an_error() {
        let e = err("A=1\n  lol$wut\n");
        assert_eq!((e.line, e.col), (2, 6));
        assert_eq!(
            e.to_string(),
            "line 2: unexpected character '$' in variable name \"lol$wut\""
        );
        assert_eq!(
            err("%!(EXTRA string)=foo").to_string(),
            "line 1: unexpected character '%' in variable name \"%!(EXTRA string)=foo\""
        );
        assert_eq!(err("\"A\"=1").col, 1);
    }

    #[test]
    fn missing_key_is_an_error() {
        let e = err("=value");
        assert_eq!((e.line, e.col), (1, 1));
        assert_eq!(e.message, "missing variable name before '='");
        assert_eq!(
            err("A=1\n  : x").message,
            "missing variable name before ':'"
        );
        assert_eq!(err("export \nA=1").message, "missing variable name");
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        for text in [
            "KEY=\"",
            "KEY=\"value",
            "KEY=\"value\\\"",
            "KEY=\"value'",
            "KEY='",
            "KEY='value",
            "KEY='value\\'",
            "KEY='value\"",
        ] {
            let e = err(text);
            assert!(
                e.message.starts_with("unterminated quoted value"),
                "{text}: {e}"
            );
            assert_eq!((e.line, e.col), (1, 5), "{text}");
        }
        let e = err("A=1\nB=  \"open\nC=2\n");
        assert_eq!((e.line, e.col), (2, 5));
        assert_eq!(e.to_string(), "line 2: unterminated quoted value \"open");
    }

    #[test]
    fn text_after_closing_quote_is_an_error() {
        let e = err("A=\"x\"y\n");
        assert_eq!((e.line, e.col), (1, 6));
        assert_eq!(e.message, "unexpected character 'y' after quoted value");
        assert_eq!(err("A='x' B=1").col, 7);
    }

    #[test]
    fn interpolation_errors_are_located() {
        let e = err("A=1\nB=  ${NEEDED:?set NEEDED}\n");
        assert_eq!((e.line, e.col), (2, 5));
        assert_eq!(
            e.to_string(),
            "line 2: required variable NEEDED is missing a value: set NEEDED"
        );
        let e = err("A=\"${\"");
        assert_eq!((e.line, e.col), (1, 3));
        assert_eq!(
            e.message,
            "invalid interpolation format for \"${\": unterminated `${`"
        );
    }
}
