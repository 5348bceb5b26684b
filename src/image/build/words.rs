//! Docker's word processing of instruction arguments: quotes (`'…'` literal, `"…"` with
//! expansion), the escape character (`\` or the `escape` directive's `` ` ``), and variable
//! expansion: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`,
//! `${VAR+alt}`, `${VAR:?message}`, `${VAR?message}`. With `:` the empty value counts as unset.
//! [`word`] gives one word (whitespace kept); [`words`] splits on unquoted whitespace, including
//! whitespace that an unquoted expansion brings in, as Docker does for ENV, LABEL, EXPOSE, VOLUME,
//! COPY and ADD.

/// A problem in a word: the char offset in the text where it was found, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct WordError {
    pub offset: usize,
    pub message: String,
}

/// Looks a variable up: `None` when unset.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One word: quotes removed, escapes applied, variables expanded; whitespace kept.
pub fn word(text: &str, escape: char, lookup: Lookup<'_>) -> Result<String, WordError> {
    let mut lx = Lexer::new(text, escape, lookup, false);
    lx.run(None)?;
    Ok(lx.out.finish_one())
}

/// Words split on unquoted whitespace (empty words dropped unless quoted, as `""`).
pub fn words(text: &str, escape: char, lookup: Lookup<'_>) -> Result<Vec<String>, WordError> {
    let mut lx = Lexer::new(text, escape, lookup, true);
    lx.run(None)?;
    Ok(lx.out.finish())
}

/// The names of the variables the text refers to (for "which args does this step use").
pub fn referenced(text: &str, escape: char) -> Vec<String> {
    let seen = std::cell::RefCell::new(Vec::new());
    let lookup = |name: &str| {
        seen.borrow_mut().push(name.to_string());
        None
    };
    // Errors (a `${V?msg}` of an unset V) end the scan; what was seen so far is the answer.
    let _ = word(text, escape, &lookup);
    let mut v = seen.into_inner();
    v.sort();
    v.dedup();
    v
}

#[derive(Default)]
struct Out {
    split: bool,
    words: Vec<String>,
    cur: String,
    /// The current word exists even if empty (it had quotes).
    started: bool,
}

impl Out {
    fn push(&mut self, c: char) {
        self.cur.push(c);
        self.started = true;
    }

    /// Unquoted text that may split (only in words mode).
    fn push_splitting(&mut self, s: &str) {
        if !self.split {
            self.cur.push_str(s);
            self.started |= !s.is_empty();
            return;
        }
        for c in s.chars() {
            if c.is_whitespace() {
                self.end_word();
            } else {
                self.push(c);
            }
        }
    }

    fn end_word(&mut self) {
        if self.started {
            self.words.push(std::mem::take(&mut self.cur));
            self.started = false;
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.end_word();
        self.words
    }

    fn finish_one(self) -> String {
        self.cur
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    lookup: Lookup<'a>,
    out: Out,
}

impl<'a> Lexer<'a> {
    fn new(text: &str, escape: char, lookup: Lookup<'a>, split: bool) -> Self {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
            escape,
            lookup,
            out: Out {
                split,
                ..Out::default()
            },
        }
    }

    fn err<T>(&self, offset: usize, message: impl Into<String>) -> Result<T, WordError> {
        Err(WordError {
            offset,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// Processes until `stop` (consumed) or the end, writing into `self.out`.
    fn run(&mut self, stop: Option<char>) -> Result<(), WordError> {
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok(());
            }
            self.pos += 1;
            if c == self.escape {
                match self.peek() {
                    Some(n) => {
                        self.pos += 1;
                        self.out.push(n);
                    }
                    None => self.out.push(c),
                }
            } else if c == '\'' {
                self.single_quoted()?;
            } else if c == '"' {
                self.double_quoted()?;
            } else if c == '$' {
                let v = self.dollar()?;
                self.out.push_splitting(&v);
            } else if c.is_whitespace() && self.out.split && stop.is_none() {
                self.out.end_word();
            } else {
                self.out.push(c);
            }
        }
        match stop {
            Some(s) => self.err(
                self.chars.len(),
                format!("missing '{s}' before the end of the text"),
            ),
            None => Ok(()),
        }
    }

    fn single_quoted(&mut self) -> Result<(), WordError> {
        let start = self.pos - 1;
        self.out.started = true;
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == '\'' {
                return Ok(());
            }
            self.out.cur.push(c);
        }
        self.err(start, "unterminated single quote")
    }

    fn double_quoted(&mut self) -> Result<(), WordError> {
        let start = self.pos - 1;
        self.out.started = true;
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == '"' {
                return Ok(());
            }
            if c == self.escape {
                match self.peek() {
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        self.out.cur.push(n);
                    }
                    _ => self.out.cur.push(c),
                }
            } else if c == '$' {
                let v = self.dollar()?;
                self.out.cur.push_str(&v);
            } else {
                self.out.cur.push(c);
            }
        }
        self.err(start, "unterminated double quote")
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        name
    }

    /// After a `$`: the expansion (a lone `$` stays itself).
    fn dollar(&mut self) -> Result<String, WordError> {
        let start = self.pos - 1;
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let name = self.name();
                if name.is_empty() {
                    return self.err(start, "bad substitution: no variable name after '${'");
                }
                let value = (self.lookup)(&name);
                let colon = self.peek() == Some(':');
                if colon {
                    self.pos += 1;
                }
                let op = self.peek();
                match op {
                    Some('}') if !colon => {
                        self.pos += 1;
                        Ok(value.unwrap_or_default())
                    }
                    Some(op @ ('-' | '+' | '?')) => {
                        self.pos += 1;
                        let arg = self.nested()?;
                        let set = match &value {
                            Some(v) => !(colon && v.is_empty()),
                            None => false,
                        };
                        Ok(match op {
                            '-' if set => value.unwrap_or_default(),
                            '-' => arg,
                            '+' if set => arg,
                            '+' => String::new(),
                            _ if set => value.unwrap_or_default(),
                            _ => {
                                let msg = if arg.is_empty() {
                                    "is not set".to_string()
                                } else {
                                    arg
                                };
                                return self.err(start, format!("{name}: {msg}"));
                            }
                        })
                    }
                    Some(other) => self.err(
                        self.pos,
                        format!(
                            "unsupported modifier '{}{other}' in substitution of {name}",
                            if colon { ":" } else { "" }
                        ),
                    ),
                    None => self.err(start, format!("missing '}}' after ${{{name}")),
                }
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.name();
                Ok((self.lookup)(&name).unwrap_or_default())
            }
            _ => Ok("$".to_string()),
        }
    }

    /// The word of a `${V:-word}` up to its `}`, processed (quotes, escapes, nested `$`), never
    /// split.
    fn nested(&mut self) -> Result<String, WordError> {
        let saved = std::mem::take(&mut self.out);
        self.run(Some('}'))?;
        let inner = std::mem::replace(&mut self.out, saved);
        Ok(inner.cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "EMPTY" => Some(String::new()),
            "SPACED" => Some("x y".into()),
            "N_1" => Some("n1".into()),
            _ => None,
        }
    }

    #[test]
    fn expansion_table() {
        let table: &[(&str, &str)] = &[
            ("$A", "a"),
            ("${A}", "a"),
            ("x${A}y", "xay"),
            ("$A/b", "a/b"),
            ("$N_1.txt", "n1.txt"),
            ("$UNSET", ""),
            ("${UNSET}", ""),
            ("${UNSET:-d}", "d"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${UNSET-d}", "d"),
            ("${A:-d}", "a"),
            ("${A:+r}", "r"),
            ("${EMPTY:+r}", ""),
            ("${EMPTY+r}", "r"),
            ("${UNSET+r}", ""),
            ("${UNSET:-${A}b}", "ab"),
            ("${UNSET:-'q}'}", "q}"),
            ("${A:?boom}", "a"),
            ("'$A'", "$A"),
            ("\"$A\"", "a"),
            ("\"\\$A\"", "$A"),
            ("\\$A", "$A"),
            ("$", "$"),
            ("a$", "a$"),
            ("$1", "$1"),
            ("100%", "100%"),
            ("\"a b\"", "a b"),
            ("a\\ b", "a b"),
            ("\"say \\\"hi\\\"\"", "say \"hi\""),
            ("\"C:\\path\"", "C:\\path"),
        ];
        for (input, want) in table {
            assert_eq!(word(input, '\\', &env).unwrap(), *want, "{input}");
        }
    }

    #[test]
    fn backtick_escape() {
        assert_eq!(word("C:\\dir`$A", '`', &env).unwrap(), "C:\\dir$A");
        assert_eq!(word("\"`\"x`\"\"", '`', &env).unwrap(), "\"x\"");
    }

    #[test]
    fn splitting() {
        assert_eq!(words("a b  c", '\\', &env).unwrap(), ["a", "b", "c"]);
        assert_eq!(words("$SPACED z", '\\', &env).unwrap(), ["x", "y", "z"]);
        assert_eq!(words("\"$SPACED\" z", '\\', &env).unwrap(), ["x y", "z"]);
        assert_eq!(words("'' x", '\\', &env).unwrap(), ["", "x"]);
        assert_eq!(words("$UNSET x", '\\', &env).unwrap(), ["x"]);
        assert_eq!(
            words("k=\"v 1\" k2=v2", '\\', &env).unwrap(),
            ["k=v 1", "k2=v2"]
        );
        assert_eq!(words("${UNSET:-a b}", '\\', &env).unwrap(), ["a", "b"]);
    }

    #[test]
    fn errors_are_located() {
        let table: &[(&str, usize, &str)] = &[
            ("ab'cd", 2, "unterminated single quote"),
            ("x \"cd", 2, "unterminated double quote"),
            ("${A", 0, "missing '}'"),
            ("a${}", 1, "no variable name"),
            ("${A#x}", 3, "unsupported modifier '#'"),
            ("${UNSET:?need it}", 0, "UNSET: need it"),
            ("${EMPTY:?}", 0, "EMPTY: is not set"),
            ("${A:-x", 6, "missing '}'"),
        ];
        for (input, offset, msg) in table {
            let e = word(input, '\\', &env).unwrap_err();
            assert_eq!(e.offset, *offset, "{input}: {e:?}");
            assert!(e.message.contains(msg), "{input}: {e:?}");
        }
        assert!(word("${EMPTY?}", '\\', &env).is_ok());
    }

    #[test]
    fn references() {
        assert_eq!(
            referenced("$B ${A:-$C} '$D' \"$E\"", '\\'),
            ["A", "B", "C", "E"]
        );
    }
}
