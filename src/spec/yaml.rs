//! The one door to the YAML parser. [`parse`] turns stack-file text into located [`Node`]s,
//! resolving anchors, aliases and merge keys (`<<: *x`, `<<: [*a, *b]`) and keeping the
//! `!reset`/`!override` tags. Only this file knows which parser crate is used (saphyr-parser, an
//! event parser that reports spans), so it can be swapped without touching the rest.

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::error::Diagnostic;
use super::node::{Key, Loc, Map, Node, Path, Scalar, Tag, Value};

/// Alias expansion beyond this many nodes is refused (a "billion laughs" document).
const MAX_NODES: usize = 2_000_000;
/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 256;

/// Parses every document of `text`; `file` names it in locations.
pub fn parse(text: &str, file: &str) -> Result<Vec<Node>, Diagnostic> {
    let file: Arc<str> = Arc::from(file);
    let mut b = Builder {
        file: file.clone(),
        anchors: HashMap::new(),
        stack: Vec::new(),
        docs: Vec::new(),
        nodes: 0,
    };
    let parser = Parser::new_from_str(text);
    for item in parser {
        let (ev, span) = match item {
            Ok(x) => x,
            Err(e) => {
                let m = e.marker();
                return Err(Diagnostic::at(
                    &Loc::new(file.clone(), m.line() as u32, m.col() as u32 + 1),
                    format!("invalid YAML: {}", e.info()),
                ));
            }
        };
        b.event(ev, span)?;
    }
    Ok(b.docs)
}

enum Frame {
    Seq {
        node: Node,
        anchor: usize,
    },
    Map {
        node: Node,
        anchor: usize,
        pending_key: Option<Key>,
        merges: Vec<(Loc, Node)>,
        pending_merge: bool,
    },
}

struct Builder {
    file: Arc<str>,
    anchors: HashMap<usize, Node>,
    stack: Vec<Frame>,
    docs: Vec<Node>,
    nodes: usize,
}

fn count(n: &Node) -> usize {
    match &n.value {
        Value::Seq(s) => 1 + s.iter().map(count).sum::<usize>(),
        Value::Map(m) => 1 + m.entries.iter().map(|(_, v)| count(v)).sum::<usize>(),
        _ => 1,
    }
}

fn tag_of(t: Option<&saphyr_parser::Tag>) -> Option<Tag> {
    let t = t?;
    Some(match (t.handle.as_str(), t.suffix.as_str()) {
        ("!", "reset") => Tag::Reset,
        ("!", "override") => Tag::Override,
        (h, s) => Tag::Other(format!("{h}{s}")),
    })
}

impl Builder {
    fn loc(&self, span: &Span) -> Loc {
        Loc::new(
            self.file.clone(),
            span.start.line() as u32,
            span.start.col() as u32 + 1,
        )
    }

    fn event(&mut self, ev: Event<'_>, span: Span) -> Result<(), Diagnostic> {
        let loc = self.loc(&span);
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::DocumentStart(_) => Ok(()),
            Event::Alias(id) => {
                let Some(n) = self.anchors.get(&id) else {
                    return Err(Diagnostic::at(&loc, "alias refers to an unknown anchor"));
                };
                let mut n = n.clone();
                self.nodes += count(&n);
                if self.nodes > MAX_NODES {
                    return Err(Diagnostic::at(
                        &loc,
                        "document too large after expanding aliases",
                    ));
                }
                relocate_top(&mut n, &loc);
                self.finish(n, 0, true)
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.nodes += 1;
                let tag = tag_of(tag.as_deref());
                let quoted = !matches!(style, ScalarStyle::Plain)
                    || matches!(&tag, Some(Tag::Other(t)) if t == "!!str");
                let value = if !quoted
                    && is_null(&text)
                    && (tag.is_none() || matches!(tag, Some(Tag::Reset)))
                {
                    Value::Null
                } else {
                    Value::Scalar(Scalar {
                        text: text.into_owned(),
                        quoted,
                    })
                };
                let node = Node { value, loc, tag };
                self.finish(node, anchor, false)
            }
            Event::SequenceStart(anchor, tag) => {
                self.depth_check(&loc)?;
                self.nodes += 1;
                let mut node = Node::seq(Vec::new(), loc);
                node.tag = tag_of(tag.as_deref());
                self.stack.push(Frame::Seq { node, anchor });
                Ok(())
            }
            Event::MappingStart(anchor, tag) => {
                self.depth_check(&loc)?;
                self.nodes += 1;
                let mut node = Node::map(Map::new(), loc);
                node.tag = tag_of(tag.as_deref());
                self.stack.push(Frame::Map {
                    node,
                    anchor,
                    pending_key: None,
                    merges: Vec::new(),
                    pending_merge: false,
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq { node, anchor }) => self.finish(node, anchor, false),
                _ => Err(Diagnostic::at(&loc, "invalid YAML: unbalanced sequence")),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    mut node,
                    anchor,
                    merges,
                    ..
                }) => {
                    apply_merges(&mut node, merges)?;
                    self.finish(node, anchor, false)
                }
                _ => Err(Diagnostic::at(&loc, "invalid YAML: unbalanced mapping")),
            },
        }
    }

    fn depth_check(&self, loc: &Loc) -> Result<(), Diagnostic> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Diagnostic::at(loc, "document nested too deeply"));
        }
        Ok(())
    }

    /// Places a completed node into its parent (or as a document).
    fn finish(&mut self, node: Node, anchor: usize, from_alias: bool) -> Result<(), Diagnostic> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                self.docs.push(node);
                Ok(())
            }
            Some(Frame::Seq { node: parent, .. }) => {
                if let Value::Seq(items) = &mut parent.value {
                    items.push(node);
                }
                Ok(())
            }
            Some(Frame::Map {
                node: parent,
                pending_key,
                merges,
                pending_merge,
                ..
            }) => {
                if *pending_merge {
                    *pending_merge = false;
                    merges.push((node.loc.clone(), node));
                    return Ok(());
                }
                match pending_key.take() {
                    None => {
                        // This node is a key.
                        let name = match &node.value {
                            Value::Scalar(s) => s.text.clone(),
                            Value::Null => "null".to_string(),
                            _ => {
                                return Err(Diagnostic::at(
                                    &node.loc,
                                    "mapping keys must be plain strings",
                                ));
                            }
                        };
                        if name == "<<"
                            && !from_alias
                            && !node.as_scalar().is_some_and(|s| s.quoted)
                        {
                            *pending_merge = true;
                            return Ok(());
                        }
                        *pending_key = Some(Key {
                            name,
                            loc: node.loc,
                        });
                        Ok(())
                    }
                    Some(key) => {
                        let Value::Map(m) = &mut parent.value else {
                            return Ok(());
                        };
                        if let Some(prev) = m.key(&key.name) {
                            return Err(Diagnostic::at(
                                &key.loc,
                                format!(
                                    "duplicate key `{}` (first defined at line {})",
                                    key.name, prev.loc.line
                                ),
                            ));
                        }
                        m.entries.push((key, node));
                        Ok(())
                    }
                }
            }
        }
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// An alias takes the location of where it is used for its top node, so errors point at the use.
fn relocate_top(n: &mut Node, loc: &Loc) {
    n.loc = loc.clone();
}

/// YAML merge keys: entries of the merged mappings that the mapping does not set itself, the
/// earlier merge source winning over the later.
fn apply_merges(node: &mut Node, merges: Vec<(Loc, Node)>) -> Result<(), Diagnostic> {
    if merges.is_empty() {
        return Ok(());
    }
    let mut sources = Vec::new();
    for (loc, m) in merges {
        match m.value {
            Value::Map(map) => sources.push(map),
            Value::Seq(items) => {
                for it in items {
                    match it.value {
                        Value::Map(map) => sources.push(map),
                        _ => {
                            return Err(Diagnostic::at(
                                &it.loc,
                                "merge key `<<` takes a mapping or a list of mappings",
                            ));
                        }
                    }
                }
            }
            _ => {
                return Err(Diagnostic::at(
                    &loc,
                    "merge key `<<` takes a mapping or a list of mappings",
                ));
            }
        }
    }
    let Value::Map(target) = &mut node.value else {
        return Ok(());
    };
    for src in sources {
        for (k, v) in src.entries {
            if !target.contains(&k.name) {
                target.entries.push((k, v));
            }
        }
    }
    Ok(())
}

/// Renders a node back to a single-line, YAML-like form for messages.
pub fn brief(n: &Node) -> String {
    match &n.value {
        Value::Null => "null".into(),
        Value::Scalar(s) => s.text.clone(),
        Value::Seq(_) => "[…]".into(),
        Value::Map(_) => "{…}".into(),
    }
}

/// The path helper re-exported for the loader's convenience.
pub fn root() -> Path {
    Path::root()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        let mut d = parse(text, "t.yaml").expect("parses");
        assert_eq!(d.len(), 1);
        d.remove(0)
    }

    #[test]
    fn keeps_locations() {
        let n = one("services:\n  web:\n    image: nginx\n");
        let web = n
            .as_map()
            .unwrap()
            .get("services")
            .unwrap()
            .as_map()
            .unwrap();
        let img = web
            .get("web")
            .unwrap()
            .as_map()
            .unwrap()
            .get("image")
            .unwrap();
        assert_eq!((img.loc.line, img.loc.col), (3, 12));
        assert_eq!(img.as_str(), Some("nginx"));
        let k = web
            .get("web")
            .unwrap()
            .as_map()
            .unwrap()
            .key("image")
            .unwrap();
        assert_eq!((k.loc.line, k.loc.col), (3, 5));
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let n = one("a: \"true\"\nb: true\nc: ~\nd: ''\n");
        let m = n.as_map().unwrap();
        assert!(m.get("a").unwrap().as_scalar().unwrap().quoted);
        assert!(!m.get("b").unwrap().as_scalar().unwrap().quoted);
        assert!(m.get("c").unwrap().is_null());
        assert_eq!(m.get("d").unwrap().as_str(), Some(""));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let n = one(
            "x-base: &base\n  image: busybox\n  restart: always\nx-more: &more\n  tty: true\n  restart: no\nservices:\n  a:\n    <<: *base\n    restart: on-failure\n  b:\n    <<: [*more, *base]\n  c: *base\n",
        );
        let s = n
            .as_map()
            .unwrap()
            .get("services")
            .unwrap()
            .as_map()
            .unwrap();
        let a = s.get("a").unwrap().as_map().unwrap();
        assert_eq!(a.get("restart").unwrap().as_str(), Some("on-failure"));
        assert_eq!(a.get("image").unwrap().as_str(), Some("busybox"));
        let b = s.get("b").unwrap().as_map().unwrap();
        assert_eq!(b.get("restart").unwrap().as_str(), Some("no"));
        assert_eq!(b.get("image").unwrap().as_str(), Some("busybox"));
        assert_eq!(b.get("tty").unwrap().as_str(), Some("true"));
        let c = s.get("c").unwrap();
        assert_eq!(c.loc.line, 13);
        assert_eq!(
            c.as_map().unwrap().get("image").unwrap().as_str(),
            Some("busybox")
        );
    }

    #[test]
    fn tags_are_kept() {
        let n = one("a: !reset []\nb: !override\n  x: 1\nc: !reset null\n");
        let m = n.as_map().unwrap();
        assert_eq!(m.get("a").unwrap().tag, Some(Tag::Reset));
        assert_eq!(m.get("b").unwrap().tag, Some(Tag::Override));
        assert!(m.get("c").unwrap().is_null());
        assert_eq!(m.get("c").unwrap().tag, Some(Tag::Reset));
    }

    #[test]
    fn errors_are_located() {
        let e = parse("a: 1\nb: [1, 2\n", "bad.yaml").unwrap_err();
        assert_eq!(e.loc.file.as_ref(), "bad.yaml");
        assert!(e.message.starts_with("invalid YAML"), "{}", e.message);
        let e = parse("a: 1\na: 2\n", "dup.yaml").unwrap_err();
        assert_eq!((e.loc.line, e.loc.col), (2, 1));
        assert!(e.message.contains("duplicate key `a`"));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let e = parse(&text, "bomb.yaml").unwrap_err();
        assert!(e.message.contains("too large"));
    }
}
