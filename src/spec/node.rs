//! The located YAML tree every stack file is read into: values that remember the file, line and
//! column they came from, so every later stage (interpolation, merge, validation) can point at the
//! exact place in the user's file. Scalars keep their source text and whether they were quoted;
//! their type is decided only when the schema says what a field expects (Compose reads `0440` as
//! an octal number for `mode` but as a string for `image`).

use std::fmt;
use std::sync::Arc;

/// Where a node came from: file, 1-based line, 1-based column.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl Loc {
    pub fn new(file: Arc<str>, line: u32, col: u32) -> Self {
        Loc { file, line, col }
    }

    /// A location for values that were not read from a file (defaults, command-line flags).
    pub fn synthetic(what: &str) -> Self {
        Loc {
            file: Arc::from(what),
            line: 0,
            col: 0,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.col)
        }
    }
}

/// The YAML tags Compose gives a meaning to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tag {
    /// `!reset`: drop the value inherited from earlier files.
    Reset,
    /// `!override`: replace the inherited value instead of merging with it.
    Override,
    /// Any other explicit tag, kept as written (e.g. `!!str`).
    Other(String),
}

/// A scalar as written: its text and whether it was quoted (a quoted `"true"` is a string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scalar {
    pub text: String,
    pub quoted: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Map),
}

/// A mapping that keeps key order and each key's location.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Map {
    pub entries: Vec<(Key, Node)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
    pub tag: Option<Tag>,
}

impl Map {
    pub fn new() -> Self {
        Map::default()
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    pub fn key(&self, key: &str) -> Option<&Key> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, _)| k)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, replacing an existing entry in place or appending a new one.
    pub fn insert(&mut self, key: Key, value: Node) {
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| k.name == key.name) {
            slot.1 = value;
        } else {
            self.entries.push((key, value));
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let idx = self.entries.iter().position(|(k, _)| k.name == key)?;
        Some(self.entries.remove(idx).1)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.name.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Node)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Node {
    pub fn new(value: Value, loc: Loc) -> Self {
        Node {
            value,
            loc,
            tag: None,
        }
    }

    pub fn null(loc: Loc) -> Self {
        Node::new(Value::Null, loc)
    }

    /// A plain (unquoted) scalar made by flotilla itself, e.g. during canonicalization.
    pub fn plain(text: impl Into<String>, loc: Loc) -> Self {
        Node::new(
            Value::Scalar(Scalar {
                text: text.into(),
                quoted: false,
            }),
            loc,
        )
    }

    /// A scalar that is a string whatever its text looks like.
    pub fn string(text: impl Into<String>, loc: Loc) -> Self {
        Node::new(
            Value::Scalar(Scalar {
                text: text.into(),
                quoted: true,
            }),
            loc,
        )
    }

    pub fn map(map: Map, loc: Loc) -> Self {
        Node::new(Value::Map(map), loc)
    }

    pub fn seq(items: Vec<Node>, loc: Loc) -> Self {
        Node::new(Value::Seq(items), loc)
    }

    pub fn as_map(&self) -> Option<&Map> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_seq_mut(&mut self) -> Option<&mut Vec<Node>> {
        match &mut self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a scalar node.
    pub fn as_str(&self) -> Option<&str> {
        self.as_scalar().map(|s| s.text.as_str())
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// A short word for the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar(s) if s.quoted => "a string",
            Value::Scalar(s) => match plain_kind(&s.text) {
                PlainKind::Bool(_) => "a boolean",
                PlainKind::Int(_) => "an integer",
                PlainKind::Float(_) => "a number",
                PlainKind::Str => "a string",
            },
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The scalar read as a boolean, YAML 1.2 core schema plus the YAML 1.1 words Compose accepts.
    pub fn as_bool(&self) -> Option<bool> {
        let s = self.as_scalar()?;
        parse_bool(&s.text)
    }
}

/// What a plain scalar's text denotes in the YAML core schema.
#[derive(Debug, PartialEq)]
pub enum PlainKind {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str,
}

pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
            Some(true)
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => {
            Some(false)
        }
        _ => None,
    }
}

/// Integers as YAML reads them: decimal, `0x` hex, `0o` octal, and the YAML 1.1 leading-zero
/// octal (`0440`) that Compose keeps for file modes.
pub fn parse_int(text: &str) -> Option<i64> {
    let t = text.replace('_', "");
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(&t)),
    };
    if body.is_empty() {
        return None;
    }
    let v = if let Some(h) = body.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = body.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if body.len() > 1 && body.starts_with('0') && body.bytes().all(|b| b.is_ascii_digit()) {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else if body.bytes().all(|b| b.is_ascii_digit()) {
        body.parse::<i64>().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

pub fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && text.bytes().any(|b| b.is_ascii_digit());
    if !ok {
        return None;
    }
    text.parse::<f64>().ok()
}

pub fn plain_kind(text: &str) -> PlainKind {
    if let Some(b) = parse_bool(text) {
        // Only the YAML 1.2 spellings count as booleans when guessing a type; `yes`/`no`/`on`
        // stay strings unless a field expects a boolean.
        if matches!(text, "true" | "True" | "TRUE" | "false" | "False" | "FALSE") {
            return PlainKind::Bool(b);
        }
    }
    if let Some(i) = parse_int(text) {
        return PlainKind::Int(i);
    }
    if let Some(f) = parse_float(text) {
        return PlainKind::Float(f);
    }
    PlainKind::Str
}

/// A path inside the stack, rendered like `services.web.ports[1]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path(Vec<Seg>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

impl Path {
    pub fn root() -> Self {
        Path(Vec::new())
    }

    pub fn key(&self, k: &str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// The key segments, with indexes shown as `[]`: what path-based rules match on
    /// (`services.*.ports`).
    pub fn segments(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|s| match s {
                Seg::Key(k) => k.clone(),
                Seg::Index(_) => "[]".to_string(),
            })
            .collect()
    }

    pub fn depth(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            match s {
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        if first {
            f.write_str("(top level)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_read_like_compose() {
        assert_eq!(parse_int("0440"), Some(0o440));
        assert_eq!(parse_int("0o17"), Some(15));
        assert_eq!(parse_int("0x1f"), Some(31));
        assert_eq!(parse_int("-12"), Some(-12));
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_int("08"), None);
        assert_eq!(parse_int("1.5"), None);
        assert_eq!(parse_int(""), None);
    }

    #[test]
    fn path_renders_like_compose() {
        let p = Path::root()
            .key("services")
            .key("web")
            .key("ports")
            .index(1);
        assert_eq!(p.to_string(), "services.web.ports[1]");
        assert_eq!(p.segments(), vec!["services", "web", "ports", "[]"]);
    }
}
