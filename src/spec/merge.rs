//! Merging several stack files (`-f a.yaml -f b.yaml`) the way Compose does: mappings merge key
//! by key, sequences append and are then made unique by the key Compose gives each kind of item
//! (ports, volumes, secrets, …), a few paths (`command`, `entrypoint`, `healthcheck.test`) are
//! replaced rather than appended, `logging` merges only when the driver is the same, and the
//! `!reset` / `!override` tags drop or replace inherited values. This file owns those rules, the
//! tag stripping of a single file ([`strip_tags`]) and the uniqueness pass ([`enforce_unique`]);
//! it works on canonical located trees and keeps each value's location from the file it came from.

use std::collections::HashMap;

use super::error::Diagnostic;
use super::node::{Loc, Map, Node, Path, Tag, Value};

/// Merges the override file's tree `over` onto `base`, as `docker compose -f base -f over` does.
///
/// Tags left in `base` get their first-file meaning (see [`strip_tags`]); the result carries no
/// `!reset`/`!override` tags. Fails when the override gives a mapping or a list a value of another
/// kind, with one diagnostic per such place, located at the overriding value.
pub fn merge(base: Node, over: Node) -> Result<Node, Vec<Diagnostic>> {
    merge_at(base, over, &Path::root())
}

/// Merges the files of a stack in order: the first one is the base, each later one overrides.
/// An empty list gives an empty mapping.
pub fn merge_all(files: impl IntoIterator<Item = Node>) -> Result<Node, Vec<Diagnostic>> {
    let mut it = files.into_iter();
    let Some(mut acc) = it.next() else {
        return Ok(Node::map(Map::new(), Loc::synthetic("(no file)")));
    };
    strip_tags(&mut acc);
    let mut m = Merger { errors: Vec::new() };
    for over in it {
        acc = m.merge_root(acc, over, &Path::root());
    }
    m.finish(acc)
}

/// Like [`merge`], for two subtrees found at `path` inside the stack (e.g. a service and the
/// service it `extends`, at `services.web`), so the path-based rules still apply.
pub fn merge_at(mut base: Node, over: Node, path: &Path) -> Result<Node, Vec<Diagnostic>> {
    strip_tags(&mut base);
    let mut m = Merger { errors: Vec::new() };
    let merged = m.merge_root(base, over, path);
    m.finish(merged)
}

/// Gives the tags of a single (first) file their meaning: a key or list item tagged `!reset` is
/// removed, a value tagged `!override` is kept as written; both tags are cleared. Other tags stay.
pub fn strip_tags(node: &mut Node) {
    if matches!(node.tag, Some(Tag::Reset) | Some(Tag::Override)) {
        node.tag = None;
    }
    match &mut node.value {
        Value::Map(m) => {
            m.entries.retain(|(_, v)| v.tag != Some(Tag::Reset));
            for (_, v) in &mut m.entries {
                strip_tags(v);
            }
        }
        Value::Seq(s) => {
            s.retain(|v| v.tag != Some(Tag::Reset));
            for v in s.iter_mut() {
                strip_tags(v);
            }
        }
        Value::Null | Value::Scalar(_) => {}
    }
}

/// Applies Compose's uniqueness rules to every list of a (merged or single-file) stack tree: a
/// later item with the same key as an earlier one replaces it in the earlier one's position
/// (`ports` by `host_ip:published:target/protocol`, `volumes` by target, …).
pub fn enforce_unique(node: &mut Node) -> Result<(), Vec<Diagnostic>> {
    let mut m = Merger { errors: Vec::new() };
    m.unique_walk(node, &Path::root());
    if m.errors.is_empty() {
        Ok(())
    } else {
        Err(m.errors)
    }
}

/// How a path's values merge, beyond the default (maps recursively, lists appended).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    /// The override replaces the base value, never appended or merged.
    Replace,
    /// A `KEY: value` map (environment, labels): entries replace whole, a null included.
    KeyValue,
    /// `logging`: merged only when the drivers agree, replaced otherwise.
    Logging,
    /// `ulimits.*`: mappings merge, any other kind replaces.
    Ulimit,
    Default,
}

const REPLACE: &[&str] = &[
    "services.*.command",
    "services.*.entrypoint",
    "services.*.healthcheck.test",
];

const KEY_VALUE: &[&str] = &[
    "services.*.environment",
    "services.*.labels",
    "services.*.annotations",
    "services.*.sysctls",
    "services.*.build.args",
    "services.*.build.labels",
    "services.*.build.additional_contexts",
    "services.*.deploy.labels",
    "networks.*.labels",
    "volumes.*.labels",
];

/// What makes two items of a list "the same" for Compose.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Indexer {
    /// The scalar itself.
    Value,
    /// The part of a `KEY=value` scalar before `=`.
    KeyValue,
    /// `host_ip:published:target/protocol`, with `0.0.0.0` and `tcp` as defaults.
    Port,
    /// A mount's `target`.
    Target,
    /// `target`, or the given directory joined with `source`.
    Mount(&'static str),
    /// An env file's `path`.
    EnvFile,
    /// A device's container path.
    Device,
    /// An IPAM config's `subnet`; same-subnet entries are merged rather than replaced.
    Subnet,
}

const UNIQUE: &[(&str, Indexer)] = &[
    ("services.*.ports", Indexer::Port),
    ("services.*.expose", Indexer::Value),
    ("services.*.dns", Indexer::Value),
    ("services.*.dns_search", Indexer::Value),
    ("services.*.dns_opt", Indexer::Value),
    ("services.*.cap_add", Indexer::Value),
    ("services.*.cap_drop", Indexer::Value),
    ("services.*.tmpfs", Indexer::Value),
    ("services.*.security_opt", Indexer::Value),
    ("services.*.extra_hosts", Indexer::Value),
    ("services.*.links", Indexer::Value),
    ("services.*.external_links", Indexer::Value),
    ("services.*.profiles", Indexer::Value),
    ("services.*.group_add", Indexer::Value),
    ("services.*.build.extra_hosts", Indexer::Value),
    ("services.*.build.tags", Indexer::Value),
    ("services.*.networks.*.aliases", Indexer::Value),
    ("services.*.networks.*.link_local_ips", Indexer::Value),
    ("services.*.environment", Indexer::KeyValue),
    ("services.*.labels", Indexer::KeyValue),
    ("services.*.annotations", Indexer::KeyValue),
    ("services.*.sysctls", Indexer::KeyValue),
    ("services.*.build.args", Indexer::KeyValue),
    ("services.*.build.labels", Indexer::KeyValue),
    ("services.*.build.additional_contexts", Indexer::KeyValue),
    ("services.*.deploy.labels", Indexer::KeyValue),
    ("networks.*.labels", Indexer::KeyValue),
    ("volumes.*.labels", Indexer::KeyValue),
    ("services.*.volumes", Indexer::Target),
    ("services.*.secrets", Indexer::Mount("/run/secrets")),
    ("services.*.configs", Indexer::Mount("")),
    ("services.*.env_file", Indexer::EnvFile),
    ("services.*.devices", Indexer::Device),
    ("networks.*.ipam.config", Indexer::Subnet),
];

/// Whether the path's segments match a dotted pattern where `*` stands for any one segment.
fn matches(segs: &[String], pattern: &str) -> bool {
    let pat: Vec<&str> = pattern.split('.').collect();
    pat.len() == segs.len() && pat.iter().zip(segs).all(|(p, s)| *p == "*" || p == s)
}

fn rule_for(path: &Path) -> Rule {
    let segs = path.segments();
    if REPLACE.iter().any(|p| matches(&segs, p)) {
        Rule::Replace
    } else if KEY_VALUE.iter().any(|p| matches(&segs, p)) {
        Rule::KeyValue
    } else if matches(&segs, "services.*.logging") {
        Rule::Logging
    } else if matches(&segs, "services.*.ulimits.*") {
        Rule::Ulimit
    } else {
        Rule::Default
    }
}

fn indexer_for(path: &Path) -> Option<Indexer> {
    let segs = path.segments();
    UNIQUE
        .iter()
        .find(|(p, _)| matches(&segs, p))
        .map(|(_, i)| *i)
}

/// The text of a scalar field of a mapping item, if present and not null.
fn field<'a>(item: &'a Node, key: &str) -> Option<&'a str> {
    item.as_map()?.get(key)?.as_str()
}

/// The key an item is made unique by, or `None` when it has none (it is then always kept).
fn item_key(ix: Indexer, item: &Node) -> Option<String> {
    match ix {
        Indexer::Value => item.as_str().map(str::to_string),
        Indexer::KeyValue => item
            .as_str()
            .map(|s| s.split_once('=').map_or(s, |(k, _)| k).to_string()),
        Indexer::Port => match &item.value {
            Value::Map(_) => {
                let target = field(item, "target")?;
                let host = field(item, "host_ip").unwrap_or("0.0.0.0");
                let published = field(item, "published").unwrap_or("");
                let protocol = field(item, "protocol").unwrap_or("tcp");
                Some(format!("{host}:{published}:{target}/{protocol}"))
            }
            _ => item.as_str().map(str::to_string),
        },
        Indexer::Target => match &item.value {
            Value::Map(_) => field(item, "target").map(str::to_string),
            _ => item.as_str().map(|s| {
                let mut parts = s.split(':');
                let first = parts.next().unwrap_or(s);
                parts.next().unwrap_or(first).to_string()
            }),
        },
        Indexer::Mount(dir) => match &item.value {
            Value::Map(_) => match field(item, "target") {
                Some(t) => Some(t.to_string()),
                None => field(item, "source").map(|s| format!("{dir}/{s}")),
            },
            _ => item.as_str().map(|s| format!("{dir}/{s}")),
        },
        Indexer::EnvFile => match &item.value {
            Value::Map(_) => field(item, "path").map(str::to_string),
            _ => item.as_str().map(str::to_string),
        },
        Indexer::Device => match &item.value {
            Value::Map(_) => field(item, "target").map(str::to_string),
            _ => item.as_str().map(|s| {
                let mut parts = s.split(':');
                let first = parts.next().unwrap_or(s);
                parts.next().unwrap_or(first).to_string()
            }),
        },
        Indexer::Subnet => match &item.value {
            Value::Map(_) => Some(field(item, "subnet").unwrap_or("").to_string()),
            _ => None,
        },
    }
}

/// The override value with its own and nested tags given their plain meaning.
fn stripped(mut n: Node) -> Node {
    strip_tags(&mut n);
    n
}

struct Merger {
    errors: Vec<Diagnostic>,
}

impl Merger {
    /// Merges two whole trees; a `!reset` on the override's root empties the result.
    fn merge_root(&mut self, base: Node, over: Node, path: &Path) -> Node {
        if over.tag == Some(Tag::Reset) {
            return Node::map(Map::new(), over.loc);
        }
        self.merge_node(base, over, path)
    }

    fn finish(self, merged: Node) -> Result<Node, Vec<Diagnostic>> {
        if self.errors.is_empty() {
            Ok(merged)
        } else {
            Err(self.errors)
        }
    }

    /// Merges `over` onto `base` (which carries no tags) at `path`.
    fn merge_node(&mut self, base: Node, over: Node, path: &Path) -> Node {
        if matches!(over.tag, Some(Tag::Override) | Some(Tag::Reset)) {
            return stripped(over);
        }
        match rule_for(path) {
            Rule::Replace => return stripped(over),
            Rule::KeyValue => {
                if let (Value::Map(_), Value::Map(_)) = (&base.value, &over.value) {
                    return self.merge_key_value(base, over);
                }
            }
            Rule::Logging => {
                let bd = field(&base, "driver");
                let od = field(&over, "driver");
                if base.as_map().is_some()
                    && over.as_map().is_some()
                    && bd.is_some()
                    && od.is_some()
                    && bd != od
                {
                    return stripped(over);
                }
            }
            Rule::Ulimit => {
                if over.is_null() {
                    return base;
                }
                if base.as_map().is_none() || over.as_map().is_none() {
                    return stripped(over);
                }
            }
            Rule::Default => {}
        }
        self.merge_default(base, over, path)
    }

    fn merge_default(&mut self, base: Node, over: Node, path: &Path) -> Node {
        if over.is_null() {
            return base;
        }
        match (base.value, over.value) {
            (Value::Map(bm), Value::Map(om)) => {
                let merged = self.merge_maps(bm, om, path);
                Node {
                    value: Value::Map(merged),
                    loc: base.loc,
                    tag: None,
                }
            }
            (Value::Seq(mut bs), Value::Seq(os)) => {
                bs.extend(
                    os.into_iter()
                        .filter_map(|item| (item.tag != Some(Tag::Reset)).then(|| stripped(item))),
                );
                let items = match indexer_for(path) {
                    Some(ix) => self.dedup(bs, ix, path),
                    None => bs,
                };
                Node {
                    value: Value::Seq(items),
                    loc: base.loc,
                    tag: None,
                }
            }
            (bv @ (Value::Map(_) | Value::Seq(_)), ov) => {
                let b = Node::new(bv, base.loc);
                let o = Node::new(ov, over.loc);
                self.errors.push(
                    Diagnostic::new(
                        &o.loc,
                        path,
                        format!("cannot override {} with {}", b.kind(), o.kind()),
                    )
                    .with_hint(format!(
                        "an earlier file defines it at {}; tag this value `!override` to replace it",
                        b.loc
                    )),
                );
                b
            }
            (_, ov) => stripped(Node {
                value: ov,
                loc: over.loc,
                tag: over.tag,
            }),
        }
    }

    fn merge_maps(&mut self, base: Map, over: Map, path: &Path) -> Map {
        let mut out = base;
        for (k, v) in over.entries {
            if v.tag == Some(Tag::Reset) {
                out.remove(&k.name);
                continue;
            }
            match out.entries.iter().position(|(bk, _)| bk.name == k.name) {
                Some(pos) => {
                    let slot = &mut out.entries[pos].1;
                    let b = std::mem::replace(slot, Node::null(v.loc.clone()));
                    let merged = self.merge_node(b, v, &path.key(&k.name));
                    out.entries[pos].1 = merged;
                }
                None => out.entries.push((k, stripped(v))),
            }
        }
        out
    }

    /// `KEY: value` maps: an override entry replaces the base entry whole, even with null.
    fn merge_key_value(&mut self, base: Node, over: Node) -> Node {
        let (Value::Map(mut out), Value::Map(om)) = (base.value, over.value) else {
            // Only called with two mappings.
            return Node::null(base.loc);
        };
        for (k, v) in om.entries {
            if v.tag == Some(Tag::Reset) {
                out.remove(&k.name);
                continue;
            }
            match out.entries.iter_mut().find(|(bk, _)| bk.name == k.name) {
                Some(slot) => slot.1 = stripped(v),
                None => out.entries.push((k, stripped(v))),
            }
        }
        Node {
            value: Value::Map(out),
            loc: base.loc,
            tag: None,
        }
    }

    /// Keeps the first item of each key, in place, with the value of the last one (merged with
    /// the earlier ones for IPAM configs).
    fn dedup(&mut self, items: Vec<Node>, ix: Indexer, path: &Path) -> Vec<Node> {
        let mut out: Vec<Node> = Vec::with_capacity(items.len());
        let mut seen: HashMap<String, usize> = HashMap::new();
        for item in items {
            let Some(key) = item_key(ix, &item) else {
                out.push(item);
                continue;
            };
            match seen.get(&key) {
                Some(&j) => {
                    if ix == Indexer::Subnet {
                        let earlier = std::mem::replace(&mut out[j], Node::null(item.loc.clone()));
                        out[j] = self.merge_node(earlier, item, &path.index(j));
                    } else {
                        out[j] = item;
                    }
                }
                None => {
                    seen.insert(key, out.len());
                    out.push(item);
                }
            }
        }
        out
    }

    fn unique_walk(&mut self, node: &mut Node, path: &Path) {
        match &mut node.value {
            Value::Map(m) => {
                for (k, v) in &mut m.entries {
                    self.unique_walk(v, &path.key(&k.name));
                }
            }
            Value::Seq(s) => {
                if let Some(ix) = indexer_for(path) {
                    let items = std::mem::take(s);
                    *s = self.dedup(items, ix, path);
                }
                for (i, v) in s.iter_mut().enumerate() {
                    self.unique_walk(v, &path.index(i));
                }
            }
            Value::Null | Value::Scalar(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse;

    fn doc(text: &str, file: &str) -> Node {
        let mut d = parse(text, file).expect("parses");
        assert_eq!(d.len(), 1, "one document");
        d.remove(0)
    }

    /// A compact, single-line rendering of a tree for comparisons.
    fn render(n: &Node) -> String {
        let mut s = match &n.value {
            Value::Null => "~".to_string(),
            Value::Scalar(sc) if sc.quoted => format!("{:?}", sc.text),
            Value::Scalar(sc) => sc.text.clone(),
            Value::Seq(items) => {
                let parts: Vec<String> = items.iter().map(render).collect();
                format!("[{}]", parts.join(", "))
            }
            Value::Map(m) => {
                let parts: Vec<String> = m
                    .entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", k.name, render(v)))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
        };
        if let Some(t) = &n.tag {
            s = format!("!{t:?} {s}");
        }
        s
    }

    /// The node at a dotted path (`services.web.ports`); numbers index lists.
    fn at<'a>(n: &'a Node, path: &str) -> &'a Node {
        let mut cur = n;
        for seg in path.split('.') {
            cur = match &cur.value {
                Value::Map(m) => m.get(seg).unwrap_or_else(|| panic!("no key {seg}")),
                Value::Seq(s) => &s[seg.parse::<usize>().expect("index")],
                _ => panic!("cannot descend into {seg}"),
            };
        }
        cur
    }

    fn has(n: &Node, path: &str) -> bool {
        let (parent, last) = match path.rsplit_once('.') {
            Some((p, l)) => (at(n, p), l),
            None => (n, path),
        };
        parent.as_map().is_some_and(|m| m.contains(last))
    }

    fn merged(a: &str, b: &str) -> Node {
        merge(doc(a, "a.yaml"), doc(b, "b.yaml")).expect("merges")
    }

    /// Merges two files and renders the value at `path`.
    fn m(a: &str, b: &str, path: &str) -> String {
        render(at(&merged(a, b), path))
    }

    /// Wraps a service body (indented by 4) in `services: web:`.
    fn svc(body: &str) -> String {
        let mut s = String::from("services:\n  web:\n");
        for line in body.lines() {
            s.push_str("    ");
            s.push_str(line);
            s.push('\n');
        }
        s
    }

    fn ms(a: &str, b: &str, field: &str) -> String {
        m(&svc(a), &svc(b), &format!("services.web.{field}"))
    }

    // ---- mappings and scalars

    #[test]
    fn maps_merge_key_by_key_in_base_order() {
        let r = merged(
            "services:\n  web:\n    image: a\n    restart: always\n",
            "services:\n  web:\n    image: b\n    tty: true\n  db:\n    image: pg\n",
        );
        assert_eq!(
            render(&r),
            "{services: {web: {image: b, restart: always, tty: true}, db: {image: pg}}}"
        );
    }

    #[test]
    fn keys_only_in_base_are_kept() {
        let r = merged("a: 1\nb: 2\n", "c: 3\n");
        assert_eq!(render(&r), "{a: 1, b: 2, c: 3}");
    }

    #[test]
    fn null_override_keeps_base() {
        assert_eq!(ms("image: a\n", "image: null\n", "image"), "a");
        assert_eq!(
            ms(
                "networks:\n  front:\n    aliases: [x]\n",
                "networks:\n  front:\n",
                "networks"
            ),
            "{front: {aliases: [x]}}"
        );
    }

    #[test]
    fn null_base_takes_override() {
        assert_eq!(
            ms(
                "networks:\n  front:\n",
                "networks:\n  front:\n    aliases: [x]\n",
                "networks"
            ),
            "{front: {aliases: [x]}}"
        );
    }

    #[test]
    fn scalar_replaced_by_mapping_is_allowed() {
        assert_eq!(ms("x-a: 1\n", "x-a:\n  b: 2\n", "x-a"), "{b: 2}");
    }

    #[test]
    fn quoted_flag_follows_override() {
        assert_eq!(ms("user: 1000\n", "user: \"1000\"\n", "user"), "\"1000\"");
    }

    #[test]
    fn extension_fields_merge_like_any_map() {
        let r = merged("x-common:\n  a: 1\n", "x-common:\n  b: 2\n");
        assert_eq!(render(at(&r, "x-common")), "{a: 1, b: 2}");
    }

    // ---- incompatible kinds

    #[test]
    fn mapping_overridden_by_list_is_an_error() {
        let e = merge(
            doc(&svc("environment:\n  A: 1\n"), "a.yaml"),
            doc(&svc("build: .\nenvironment: [A=1]\n"), "b.yaml"),
        )
        .unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "services.web.environment");
        assert_eq!(e[0].message, "cannot override a mapping with a list");
        assert_eq!(e[0].loc.file.as_ref(), "b.yaml");
        assert_eq!((e[0].loc.line, e[0].loc.col), (4, 18));
        assert!(e[0].hint.as_deref().unwrap_or("").contains("a.yaml:"));
    }

    #[test]
    fn list_overridden_by_scalar_is_an_error() {
        let e = merge(
            doc(&svc("dns: [1.1.1.1]\n"), "a.yaml"),
            doc(&svc("dns: 8.8.8.8\n"), "b.yaml"),
        )
        .unwrap_err();
        assert_eq!(e[0].message, "cannot override a list with a string");
        assert_eq!(e[0].path, "services.web.dns");
    }

    #[test]
    fn all_kind_errors_are_reported() {
        let e = merge(
            doc("a: {x: 1}\nb: [1]\n", "a.yaml"),
            doc("a: [1]\nb: {x: 1}\n", "b.yaml"),
        )
        .unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].path, "a");
        assert_eq!(e[1].message, "cannot override a list with a mapping");
    }

    #[test]
    fn override_tag_allows_kind_change() {
        let r = merged("a: {x: 1}\n", "a: !override [1]\n");
        assert_eq!(render(&r), "{a: [1]}");
    }

    // ---- sequences

    #[test]
    fn unknown_sequences_append() {
        assert_eq!(
            ms("x-list: [a, b]\n", "x-list: [b, c]\n", "x-list"),
            "[a, b, b, c]"
        );
        assert_eq!(
            ms("label_file: [a]\n", "label_file: [a]\n", "label_file"),
            "[a, a]"
        );
    }

    #[test]
    fn scalar_lists_unique_by_value() {
        for f in [
            "expose",
            "dns",
            "dns_search",
            "dns_opt",
            "cap_add",
            "cap_drop",
            "tmpfs",
            "security_opt",
            "extra_hosts",
            "links",
            "external_links",
            "profiles",
            "group_add",
        ] {
            assert_eq!(
                ms(&format!("{f}: [a, b, a]\n"), &format!("{f}: [c, b]\n"), f),
                "[a, b, c]",
                "{f}"
            );
        }
    }

    #[test]
    fn expose_numbers_and_strings_share_a_key() {
        assert_eq!(
            ms("expose: [80]\n", "expose: [\"80\", 81]\n", "expose"),
            "[\"80\", 81]"
        );
    }

    #[test]
    fn dns_appends() {
        assert_eq!(
            ms("dns: [1.1.1.1]\n", "dns: [8.8.8.8]\n", "dns"),
            "[1.1.1.1, 8.8.8.8]"
        );
    }

    #[test]
    fn network_aliases_unique() {
        assert_eq!(
            ms(
                "networks:\n  n1:\n    aliases: [a1, a2]\n",
                "networks:\n  n1:\n    aliases: [a3, a1]\n",
                "networks.n1.aliases"
            ),
            "[a1, a2, a3]"
        );
    }

    // ---- ports

    #[test]
    fn ports_unique_by_host_published_target_protocol() {
        let a = "ports:\n  - {target: 80, published: \"8080\"}\n  - {target: 443, published: \"8443\"}\n";
        let b = "ports:\n  - {target: 80, published: \"8080\", mode: host}\n  - {target: 80, published: \"9090\"}\n";
        assert_eq!(
            ms(a, b, "ports"),
            "[{target: 80, published: \"8080\", mode: host}, {target: 443, published: \"8443\"}, {target: 80, published: \"9090\"}]"
        );
    }

    #[test]
    fn ports_default_host_ip_and_protocol() {
        let a = "ports:\n  - {target: 80, published: \"80\", host_ip: 0.0.0.0, protocol: tcp}\n";
        let b = "ports:\n  - {target: 80, published: \"80\", name: web}\n  - {target: 80, published: \"80\", protocol: udp}\n  - {target: 80, published: \"80\", host_ip: 127.0.0.1}\n";
        assert_eq!(
            ms(a, b, "ports"),
            "[{target: 80, published: \"80\", name: web}, {target: 80, published: \"80\", protocol: udp}, {target: 80, published: \"80\", host_ip: 127.0.0.1}]"
        );
    }

    #[test]
    fn ports_without_published_collapse_by_target() {
        let a = "ports:\n  - {target: 80}\n  - {target: 81}\n";
        let b = "ports:\n  - {target: 80, name: http}\n  - {target: 80, published: \"80\"}\n";
        assert_eq!(
            ms(a, b, "ports"),
            "[{target: 80, name: http}, {target: 81}, {target: 80, published: \"80\"}]"
        );
    }

    #[test]
    fn ports_in_override_replace_in_earlier_position() {
        let a = "ports:\n  - {target: 1, published: \"1\"}\n  - {target: 2, published: \"2\"}\n  - {target: 3, published: \"3\"}\n";
        let b = "ports:\n  - {target: 2, published: \"2\", protocol: tcp, name: two}\n";
        let r = merged(&svc(a), &svc(b));
        let ports = at(&r, "services.web.ports").as_seq().unwrap();
        assert_eq!(ports.len(), 3);
        assert_eq!(
            render(&ports[1]),
            "{target: 2, published: \"2\", protocol: tcp, name: two}"
        );
        assert_eq!(ports[1].loc.file.as_ref(), "b.yaml");
        assert_eq!(ports[0].loc.file.as_ref(), "a.yaml");
    }

    // ---- mounts

    #[test]
    fn volumes_unique_by_target() {
        let a = "volumes:\n  - {type: volume, source: data, target: /data}\n  - {type: bind, source: ./a, target: /a}\n";
        let b = "volumes:\n  - {type: bind, source: ./d, target: /data}\n  - {type: tmpfs, target: /tmp}\n";
        assert_eq!(
            ms(a, b, "volumes"),
            "[{type: bind, source: ./d, target: /data}, {type: bind, source: ./a, target: /a}, {type: tmpfs, target: /tmp}]"
        );
    }

    #[test]
    fn secrets_unique_by_target_with_default() {
        let a = "secrets:\n  - {source: db}\n  - {source: key, target: /k}\n";
        let b = "secrets:\n  - {source: db, target: /run/secrets/db, mode: 0400}\n  - {source: other, target: /k}\n  - {source: db, target: /elsewhere}\n";
        assert_eq!(
            ms(a, b, "secrets"),
            "[{source: db, target: /run/secrets/db, mode: 0400}, {source: other, target: /k}, {source: db, target: /elsewhere}]"
        );
    }

    #[test]
    fn configs_unique_by_target_with_root_default() {
        let a = "configs:\n  - {source: app}\n";
        let b = "configs:\n  - {source: app2, target: /app}\n  - {source: app, target: /run/secrets/app}\n";
        assert_eq!(
            ms(a, b, "configs"),
            "[{source: app2, target: /app}, {source: app, target: /run/secrets/app}]"
        );
    }

    #[test]
    fn env_file_unique_by_path() {
        let a = "env_file:\n  - {path: a.env, required: true}\n  - {path: b.env, required: true}\n";
        let b =
            "env_file:\n  - {path: a.env, required: false}\n  - {path: c.env, required: true}\n";
        assert_eq!(
            ms(a, b, "env_file"),
            "[{path: a.env, required: false}, {path: b.env, required: true}, {path: c.env, required: true}]"
        );
    }

    #[test]
    fn devices_unique_by_container_path() {
        let a = "devices:\n  - /dev/sda:/dev/xvda:rwm\n  - /dev/fuse\n  - {source: /dev/a, target: /dev/b}\n";
        let b = "devices:\n  - /dev/sdb:/dev/xvda:r\n  - /dev/fuse:/dev/fuse\n  - /dev/c:/dev/b\n";
        assert_eq!(
            ms(a, b, "devices"),
            "[/dev/sdb:/dev/xvda:r, /dev/fuse:/dev/fuse, /dev/c:/dev/b]"
        );
    }

    #[test]
    fn ipam_config_unique_by_subnet_and_merged() {
        let a = "networks:\n  n:\n    ipam:\n      config:\n        - subnet: 10.0.0.0/16\n          gateway: 10.0.0.1\n          aux_addresses: {h1: 10.0.0.5}\n        - subnet: 10.1.0.0/16\n";
        let b = "networks:\n  n:\n    ipam:\n      config:\n        - subnet: 10.0.0.0/16\n          gateway: 10.0.0.254\n          aux_addresses: {h2: 10.0.0.6}\n        - subnet: 10.2.0.0/16\n";
        assert_eq!(
            m(a, b, "networks.n.ipam.config"),
            "[{subnet: 10.0.0.0/16, gateway: 10.0.0.254, aux_addresses: {h1: 10.0.0.5, h2: 10.0.0.6}}, {subnet: 10.1.0.0/16}, {subnet: 10.2.0.0/16}]"
        );
    }

    // ---- replaced paths

    #[test]
    fn command_entrypoint_and_healthcheck_test_are_replaced() {
        assert_eq!(
            ms(
                "command: [echo, foo]\n",
                "command: [echo, bar]\n",
                "command"
            ),
            "[echo, bar]"
        );
        assert_eq!(
            ms(
                "entrypoint: [sh, -c]\n",
                "entrypoint: [bash]\n",
                "entrypoint"
            ),
            "[bash]"
        );
        assert_eq!(
            ms(
                "healthcheck:\n  test: [CMD, a]\n  interval: 5s\n",
                "healthcheck:\n  test: [CMD, b]\n",
                "healthcheck"
            ),
            "{test: [CMD, b], interval: 5s}"
        );
    }

    #[test]
    fn replaced_command_takes_override_even_when_empty() {
        assert_eq!(ms("command: [a]\n", "command: []\n", "command"), "[]");
    }

    // ---- key/value maps

    #[test]
    fn environment_merges_by_key() {
        assert_eq!(
            ms(
                "environment:\n  A: 1\n  B: 2\n",
                "environment:\n  B: 3\n  C: 4\n",
                "environment"
            ),
            "{A: 1, B: 3, C: 4}"
        );
    }

    #[test]
    fn environment_null_entry_replaces() {
        assert_eq!(
            ms(
                "environment:\n  A: 1\n",
                "environment:\n  A:\n",
                "environment"
            ),
            "{A: ~}"
        );
    }

    #[test]
    fn labels_and_friends_merge_by_key() {
        for f in ["labels", "annotations", "sysctls"] {
            assert_eq!(
                ms(
                    &format!("{f}:\n  a: 1\n"),
                    &format!("{f}:\n  a: 2\n  b: 3\n"),
                    f
                ),
                "{a: 2, b: 3}"
            );
        }
        assert_eq!(
            ms(
                "build:\n  context: .\n  args: {A: 1}\n  labels: {l: x}\n",
                "build:\n  args: {A: 2, B: 3}\n  labels: {m: y}\n",
                "build"
            ),
            "{context: ., args: {A: 2, B: 3}, labels: {l: x, m: y}}"
        );
        assert_eq!(
            m(
                "networks:\n  n:\n    labels: {a: 1}\nvolumes:\n  v:\n    labels: {a: 1}\n",
                "networks:\n  n:\n    labels: {a: 2}\nvolumes:\n  v:\n    labels: {b: 2}\n",
                "volumes.v.labels"
            ),
            "{a: 1, b: 2}"
        );
    }

    #[test]
    fn environment_list_form_unique_by_key() {
        assert_eq!(
            ms(
                "environment: [A=1, B=2]\n",
                "environment: [A=3, C]\n",
                "environment"
            ),
            "[A=3, B=2, C]"
        );
    }

    // ---- other maps

    #[test]
    fn depends_on_merges_per_dependency() {
        assert_eq!(
            ms(
                "depends_on:\n  db: {condition: service_started, required: true}\n",
                "depends_on:\n  db: {condition: service_healthy}\n  cache: {condition: service_started, required: false}\n",
                "depends_on"
            ),
            "{db: {condition: service_healthy, required: true}, cache: {condition: service_started, required: false}}"
        );
    }

    #[test]
    fn ulimits_merge_mappings_and_replace_otherwise() {
        assert_eq!(
            ms(
                "ulimits:\n  nofile: {soft: 1, hard: 2}\n  nproc: 10\n  locks: {soft: 1, hard: 2}\n",
                "ulimits:\n  nofile: {hard: 3}\n  nproc: {soft: 5}\n  locks: 7\n",
                "ulimits"
            ),
            "{nofile: {soft: 1, hard: 3}, nproc: {soft: 5}, locks: 7}"
        );
    }

    #[test]
    fn logging_same_driver_merges_options() {
        assert_eq!(
            ms(
                "logging:\n  driver: json-file\n  options: {max-size: 1m, max-file: \"3\"}\n",
                "logging:\n  driver: json-file\n  options: {max-size: 2m}\n",
                "logging"
            ),
            "{driver: json-file, options: {max-size: 2m, max-file: \"3\"}}"
        );
    }

    #[test]
    fn logging_without_driver_in_override_merges() {
        assert_eq!(
            ms(
                "logging:\n  driver: syslog\n  options: {a: 1}\n",
                "logging:\n  options: {b: 2}\n",
                "logging"
            ),
            "{driver: syslog, options: {a: 1, b: 2}}"
        );
    }

    #[test]
    fn logging_other_driver_replaces() {
        assert_eq!(
            ms(
                "logging:\n  driver: json-file\n  options: {max-size: 1m}\n",
                "logging:\n  driver: syslog\n  options: {tag: x}\n",
                "logging"
            ),
            "{driver: syslog, options: {tag: x}}"
        );
    }

    // ---- tags

    #[test]
    fn reset_on_a_list_removes_the_key() {
        let r = merged(
            &svc("image: a\nports:\n  - {target: 80}\n"),
            &svc("ports: !reset []\n"),
        );
        assert!(!has(&r, "services.web.ports"));
        assert_eq!(render(at(&r, "services.web")), "{image: a}");
    }

    #[test]
    fn reset_on_a_map_removes_the_key() {
        let r = merged(
            &svc("image: a\nenvironment:\n  A: 1\n"),
            &svc("environment: !reset {}\n"),
        );
        assert!(!has(&r, "services.web.environment"));
    }

    #[test]
    fn reset_on_a_scalar_removes_the_key() {
        let r = merged(&svc("image: a\nuser: root\n"), &svc("user: !reset null\n"));
        assert_eq!(render(at(&r, "services.web")), "{image: a}");
    }

    #[test]
    fn reset_with_a_value_still_removes() {
        let r = merged(
            &svc("image: a\ndns: [1.1.1.1]\n"),
            &svc("dns: !reset [8.8.8.8]\n"),
        );
        assert!(!has(&r, "services.web.dns"));
    }

    #[test]
    fn reset_of_a_key_not_in_base_adds_nothing() {
        let r = merged(&svc("image: a\n"), &svc("cap_add: !reset []\n"));
        assert_eq!(render(at(&r, "services.web")), "{image: a}");
    }

    #[test]
    fn reset_inside_environment_removes_one_variable() {
        assert_eq!(
            ms(
                "environment:\n  A: 1\n  B: 2\n",
                "environment:\n  A: !reset\n",
                "environment"
            ),
            "{B: 2}"
        );
    }

    #[test]
    fn reset_a_whole_service() {
        let r = merged(
            "services:\n  web:\n    image: a\n  db:\n    image: b\n",
            "services:\n  db: !reset\n",
        );
        assert_eq!(render(&r), "{services: {web: {image: a}}}");
    }

    #[test]
    fn override_on_ports_replaces_the_list() {
        let a =
            "ports:\n  - {target: 80, published: \"80\"}\n  - {target: 443, published: \"443\"}\n";
        let b = "ports: !override\n  - {target: 8080, published: \"8080\"}\n";
        let r = merged(&svc(a), &svc(b));
        let p = at(&r, "services.web.ports");
        assert_eq!(render(p), "[{target: 8080, published: \"8080\"}]");
        assert_eq!(p.tag, None);
        assert_eq!(p.loc.file.as_ref(), "b.yaml");
    }

    #[test]
    fn override_on_environment_replaces_the_map() {
        let r = merged(
            &svc("environment:\n  A: 1\n  B: 2\n"),
            &svc("environment: !override\n  C: 3\n"),
        );
        assert_eq!(render(at(&r, "services.web.environment")), "{C: 3}");
    }

    #[test]
    fn override_on_a_nested_map_replaces_it() {
        assert_eq!(
            ms(
                "build:\n  context: .\n  args: {A: 1}\n",
                "build: !override\n  context: ./b\n",
                "build"
            ),
            "{context: ./b}"
        );
    }

    #[test]
    fn tags_nested_in_new_values_are_stripped() {
        let r = merged(
            "services: {}\n",
            "services:\n  web:\n    image: a\n    ports: !override []\n    dns: !reset []\n",
        );
        assert_eq!(render(&r), "{services: {web: {image: a, ports: []}}}");
    }

    #[test]
    fn tags_inside_an_override_value_are_stripped() {
        let r = merged(
            "a: {x: 1}\n",
            "a: !override\n  y: !override [1]\n  z: !reset 2\n",
        );
        assert_eq!(render(&r), "{a: {y: [1]}}");
    }

    #[test]
    fn tags_in_the_first_file_take_their_plain_meaning() {
        let r = merged(
            "services:\n  web:\n    image: a\n    dns: !reset [1.1.1.1]\n    cap_add: !override [NET_ADMIN]\n",
            "services:\n  web:\n    cap_add: [SYS_TIME]\n",
        );
        assert_eq!(
            render(&r),
            "{services: {web: {image: a, cap_add: [NET_ADMIN, SYS_TIME]}}}"
        );
    }

    #[test]
    fn reset_list_items_are_dropped() {
        assert_eq!(ms("dns: [a]\n", "dns: [b, !reset c]\n", "dns"), "[a, b]");
    }

    #[test]
    fn other_tags_are_kept() {
        let r = merged("a: 1\n", "a: !!str 2\n");
        assert!(matches!(at(&r, "a").tag, Some(Tag::Other(_))));
    }

    #[test]
    fn strip_tags_on_a_single_file() {
        let mut n = doc(
            "services:\n  web:\n    image: a\n    user: !reset root\n    ports: !override\n      - {target: 80}\n    dns: [a, !reset b]\n",
            "a.yaml",
        );
        strip_tags(&mut n);
        assert_eq!(
            render(&n),
            "{services: {web: {image: a, ports: [{target: 80}], dns: [a]}}}"
        );
    }

    // ---- chains and locations

    #[test]
    fn three_file_chain() {
        let a = doc(
            &svc("image: a\nenvironment: {A: 1}\nports:\n  - {target: 80, published: \"80\"}\n"),
            "a.yaml",
        );
        let b = doc(
            &svc("image: b\nenvironment: {B: 2}\nports: !reset []\n"),
            "b.yaml",
        );
        let c = doc(
            &svc("environment: {A: 3}\nports:\n  - {target: 81, published: \"81\"}\n"),
            "c.yaml",
        );
        let r = merge_all([a, b, c]).expect("merges");
        assert_eq!(
            render(at(&r, "services.web")),
            "{image: b, environment: {A: 3, B: 2}, ports: [{target: 81, published: \"81\"}]}"
        );
        assert_eq!(at(&r, "services.web.image").loc.file.as_ref(), "b.yaml");
        assert_eq!(
            at(&r, "services.web.environment.A").loc.file.as_ref(),
            "c.yaml"
        );
        assert_eq!(at(&r, "services.web.ports").loc.file.as_ref(), "c.yaml");
    }

    #[test]
    fn three_file_chain_with_pairwise_merge() {
        let a = doc(&svc("dns: [1]\n"), "a.yaml");
        let b = doc(&svc("dns: [2, 1]\n"), "b.yaml");
        let c = doc(&svc("dns: !override [3]\n"), "c.yaml");
        let ab = merge(a, b).expect("merges");
        assert_eq!(render(at(&ab, "services.web.dns")), "[1, 2]");
        let abc = merge(ab, c).expect("merges");
        assert_eq!(render(at(&abc, "services.web.dns")), "[3]");
    }

    #[test]
    fn merge_all_of_one_file_strips_tags() {
        let r = merge_all([doc("a: !reset 1\nb: !override 2\n", "a.yaml")]).expect("merges");
        assert_eq!(render(&r), "{b: 2}");
        let e = merge_all(Vec::new()).expect("merges");
        assert_eq!(render(&e), "{}");
    }

    #[test]
    fn overridden_scalar_keeps_override_location() {
        let r = merged(&svc("image: a\nrestart: no\n"), &svc("\nimage: bbb\n"));
        let img = at(&r, "services.web.image");
        assert_eq!(img.loc.file.as_ref(), "b.yaml");
        assert_eq!((img.loc.line, img.loc.col), (4, 12));
        let restart = at(&r, "services.web.restart");
        assert_eq!(restart.loc.file.as_ref(), "a.yaml");
        assert_eq!((restart.loc.line, restart.loc.col), (4, 14));
    }

    #[test]
    fn merged_map_and_list_keep_base_location() {
        let r = merged(&svc("image: a\ndns: [x]\n"), &svc("dns: [y]\n"));
        assert_eq!(at(&r, "services.web").loc.file.as_ref(), "a.yaml");
        let dns = at(&r, "services.web.dns");
        assert_eq!(dns.loc.file.as_ref(), "a.yaml");
        assert_eq!(at(&r, "services.web.dns.0").loc.file.as_ref(), "a.yaml");
        assert_eq!(at(&r, "services.web.dns.1").loc.file.as_ref(), "b.yaml");
    }

    #[test]
    fn keys_keep_base_location_new_keys_override_location() {
        let r = merged(&svc("image: a\n"), &svc("image: b\ntty: true\n"));
        let m = at(&r, "services.web").as_map().unwrap();
        assert_eq!(m.key("image").unwrap().loc.file.as_ref(), "a.yaml");
        assert_eq!(m.key("tty").unwrap().loc.file.as_ref(), "b.yaml");
    }

    #[test]
    fn environment_value_location_from_override() {
        let r = merged(
            &svc("environment:\n  A: 1\n  B: 2\n"),
            &svc("environment:\n  B: 3\n"),
        );
        assert_eq!(
            at(&r, "services.web.environment.B").loc.file.as_ref(),
            "b.yaml"
        );
        assert_eq!(
            at(&r, "services.web.environment.A").loc.file.as_ref(),
            "a.yaml"
        );
    }

    // ---- merge_at and enforce_unique

    #[test]
    fn merge_at_applies_path_rules() {
        let base = doc(
            "image: a\ncommand: [x]\nports:\n  - {target: 80}\n",
            "a.yaml",
        );
        let over = doc(
            "command: [y]\nports:\n  - {target: 80, name: n}\n",
            "b.yaml",
        );
        let path = Path::root().key("services").key("web");
        let r = merge_at(base, over, &path).expect("merges");
        assert_eq!(
            render(&r),
            "{image: a, command: [y], ports: [{target: 80, name: n}]}"
        );
    }

    #[test]
    fn enforce_unique_on_a_single_file() {
        let mut n = doc(
            &svc(
                "ports:\n  - {target: 80}\n  - {target: 80, name: b}\nvolumes:\n  - {type: volume, target: /d}\n  - {type: bind, source: ., target: /d}\nx-l: [a, a]\n",
            ),
            "a.yaml",
        );
        enforce_unique(&mut n).expect("no errors");
        assert_eq!(
            render(at(&n, "services.web")),
            "{ports: [{target: 80, name: b}], volumes: [{type: bind, source: ., target: /d}], x-l: [a, a]}"
        );
    }

    #[test]
    fn items_without_a_key_are_kept() {
        let a = "volumes:\n  - {type: volume}\n";
        let b = "volumes:\n  - {type: volume}\n";
        assert_eq!(ms(a, b, "volumes"), "[{type: volume}, {type: volume}]");
    }
}
