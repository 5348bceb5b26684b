//! Short syntax to long syntax. After [`canonicalize`], every field that Compose lets users write
//! several ways has one form (ports and volumes as mappings, `environment` and `labels` as
//! mappings, `depends_on` as a mapping with `condition` and `required`, commands as lists …), so
//! merging, `extends` and the typed model each deal with one shape. Runs on a checked tree; a
//! value in an unexpected shape is left alone for the checker to have reported.

use super::error::Diagnostic;
use super::node::{Key, Loc, Map, Node, Path, Value};
use super::units;

fn key(name: &str, loc: &Loc) -> Key {
    Key {
        name: name.to_string(),
        loc: loc.clone(),
    }
}

fn map_of(entries: Vec<(&str, Node)>, loc: &Loc) -> Node {
    let mut m = Map::new();
    for (k, v) in entries {
        m.insert(key(k, loc), v);
    }
    Node::map(m, loc.clone())
}

/// Turns a scalar into a one-item list.
fn str_to_list(n: &mut Node) {
    if n.as_scalar().is_some() {
        let item = n.clone();
        n.value = Value::Seq(vec![item]);
        n.tag = None;
    }
}

/// `["A=1", "B"]` → `{A: "1", B: null}`; a mapping stays (values become strings).
pub fn list_to_dict(n: &mut Node, sep: char) {
    if let Value::Seq(items) = &n.value {
        let mut m = Map::new();
        for it in items {
            let Some(text) = it.as_str() else { continue };
            let (k, v) = match text.split_once(sep) {
                Some((k, v)) => (k.trim(), Some(v)),
                None => (text.trim(), None),
            };
            let value = match v {
                Some(v) => Node::string(v, it.loc.clone()),
                None => Node::null(it.loc.clone()),
            };
            m.insert(key(k, &it.loc), value);
        }
        n.value = Value::Map(m);
    } else if let Value::Map(m) = &mut n.value {
        for (_, v) in m.entries.iter_mut() {
            if let Value::Scalar(s) = &mut v.value {
                s.quoted = true;
            }
        }
    }
}

/// A string command is split like a shell would; `healthcheck.test` strings become `CMD-SHELL`.
fn command(n: &mut Node, path: &Path, shell_form: bool, out: &mut Vec<Diagnostic>) {
    let Some(text) = n.as_str().map(str::to_string) else {
        return;
    };
    let loc = n.loc.clone();
    let items = if shell_form {
        vec![
            Node::string("CMD-SHELL", loc.clone()),
            Node::string(text, loc.clone()),
        ]
    } else {
        match units::shell_split(&text) {
            Ok(words) => words
                .into_iter()
                .map(|w| Node::string(w, loc.clone()))
                .collect(),
            Err(e) => {
                out.push(Diagnostic::new(&loc, path, e));
                return;
            }
        }
    };
    n.value = Value::Seq(items);
}

fn str_node(s: &str, loc: &Loc) -> Node {
    Node::string(s, loc.clone())
}

fn ports(n: &mut Node, path: &Path, out: &mut Vec<Diagnostic>) {
    let Value::Seq(items) = &mut n.value else {
        return;
    };
    let mut new = Vec::with_capacity(items.len());
    for (i, it) in items.drain(..).enumerate() {
        match &it.value {
            Value::Scalar(s) => match units::parse_port(&s.text) {
                Ok(specs) => {
                    for p in specs {
                        let loc = &it.loc;
                        let mut e = vec![
                            ("mode", str_node(&p.mode, loc)),
                            ("target", Node::plain(p.target.to_string(), loc.clone())),
                        ];
                        if let Some(pb) = &p.published {
                            e.push(("published", str_node(pb, loc)));
                        }
                        if let Some(ip) = &p.host_ip {
                            e.push(("host_ip", str_node(ip, loc)));
                        }
                        e.push(("protocol", str_node(&p.protocol, loc)));
                        new.push(map_of(e, loc));
                    }
                }
                Err(e) => {
                    out.push(Diagnostic::new(&it.loc, &path.index(i), e));
                    new.push(it);
                }
            },
            Value::Map(_) => {
                let mut it = it;
                let loc = it.loc.clone();
                if let Some(m) = it.as_map_mut() {
                    if !m.contains("protocol") {
                        m.insert(key("protocol", &loc), str_node("tcp", &loc));
                    }
                    if !m.contains("mode") {
                        m.insert(key("mode", &loc), str_node("ingress", &loc));
                    }
                    if let Some(Value::Scalar(s)) = m.get_mut("published").map(|p| &mut p.value) {
                        s.quoted = true;
                    }
                }
                new.push(it);
            }
            _ => new.push(it),
        }
    }
    *items = new;
}

fn volumes(n: &mut Node, path: &Path, out: &mut Vec<Diagnostic>) {
    let Value::Seq(items) = &mut n.value else {
        return;
    };
    for (i, it) in items.iter_mut().enumerate() {
        let Some(text) = it.as_str().map(str::to_string) else {
            continue;
        };
        let loc = it.loc.clone();
        match units::parse_volume(&text) {
            Ok(v) => {
                let mut e = vec![("type", str_node(&v.kind, &loc))];
                if let Some(s) = &v.source {
                    e.push(("source", str_node(s, &loc)));
                }
                e.push(("target", str_node(&v.target, &loc)));
                if v.read_only {
                    e.push(("read_only", Node::plain("true", loc.clone())));
                }
                if v.kind == "bind" {
                    let mut b = vec![(
                        "create_host_path",
                        Node::plain(v.create_host_path.to_string(), loc.clone()),
                    )];
                    if let Some(p) = &v.propagation {
                        b.push(("propagation", str_node(p, &loc)));
                    }
                    if let Some(z) = &v.selinux {
                        b.push(("selinux", str_node(z, &loc)));
                    }
                    e.push(("bind", map_of(b, &loc)));
                } else if v.nocopy {
                    e.push((
                        "volume",
                        map_of(vec![("nocopy", Node::plain("true", loc.clone()))], &loc),
                    ));
                }
                *it = map_of(e, &loc);
            }
            Err(e) => out.push(Diagnostic::new(&loc, &path.index(i), e)),
        }
    }
}

fn depends_on(n: &mut Node) {
    let loc = n.loc.clone();
    if let Value::Seq(items) = &n.value {
        let mut m = Map::new();
        for it in items {
            if let Some(name) = it.as_str() {
                m.insert(key(name, &it.loc), Node::map(Map::new(), it.loc.clone()));
            }
        }
        n.value = Value::Map(m);
    }
    if let Some(m) = n.as_map_mut() {
        for (_, dep) in m.entries.iter_mut() {
            if dep.is_null() {
                dep.value = Value::Map(Map::new());
            }
            if let Some(d) = dep.as_map_mut() {
                if !d.contains("condition") {
                    d.insert(key("condition", &loc), str_node("service_started", &loc));
                }
                if !d.contains("required") {
                    d.insert(key("required", &loc), Node::plain("true", loc.clone()));
                }
            }
        }
    }
}

fn env_file(n: &mut Node) {
    str_to_list(n);
    if let Value::Seq(items) = &mut n.value {
        for it in items.iter_mut() {
            let loc = it.loc.clone();
            if let Some(p) = it.as_str().map(str::to_string) {
                *it = map_of(
                    vec![
                        ("path", str_node(&p, &loc)),
                        ("required", Node::plain("true", loc.clone())),
                    ],
                    &loc,
                );
            } else if let Some(m) = it.as_map_mut()
                && !m.contains("required")
            {
                m.insert(key("required", &loc), Node::plain("true", loc.clone()));
            }
        }
    }
}

fn file_refs(n: &mut Node) {
    if let Value::Seq(items) = &mut n.value {
        for it in items.iter_mut() {
            let loc = it.loc.clone();
            if let Some(s) = it.as_str().map(str::to_string) {
                *it = map_of(vec![("source", str_node(&s, &loc))], &loc);
            }
        }
    }
}

fn service_networks(n: &mut Node) {
    if let Value::Seq(items) = &n.value {
        let mut m = Map::new();
        for it in items {
            if let Some(name) = it.as_str() {
                m.insert(key(name, &it.loc), Node::null(it.loc.clone()));
            }
        }
        n.value = Value::Map(m);
    }
}

fn ulimits(n: &mut Node) {
    if let Some(m) = n.as_map_mut() {
        for (_, v) in m.entries.iter_mut() {
            if v.as_scalar().is_some() {
                let loc = v.loc.clone();
                let val = v.clone();
                *v = map_of(vec![("soft", val.clone()), ("hard", val)], &loc);
            }
        }
    }
}

fn extra_hosts(n: &mut Node) {
    let loc = n.loc.clone();
    let mut list = Vec::new();
    match &n.value {
        Value::Map(m) => {
            for (k, v) in m.iter() {
                let ips: Vec<String> = match &v.value {
                    Value::Seq(items) => items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect(),
                    _ => v.as_str().map(str::to_string).into_iter().collect(),
                };
                for ip in ips {
                    list.push(str_node(&format!("{}={}", k.name, ip), &k.loc));
                }
            }
        }
        Value::Seq(items) => {
            for it in items {
                if let Some(s) = it.as_str() {
                    let norm = if s.contains('=') {
                        s.to_string()
                    } else if let Some((h, ip)) = s.split_once(':') {
                        format!("{h}={ip}")
                    } else {
                        s.to_string()
                    };
                    list.push(str_node(&norm, &it.loc));
                }
            }
        }
        _ => return,
    }
    *n = Node::seq(list, loc);
}

fn external(n: &mut Node) {
    // Legacy `external: {name: x}` → `external: true` plus `name: x`.
    let Some(m) = n.as_map_mut() else { return };
    let Some(ext) = m.get("external") else { return };
    let Some(name) = ext.as_map().and_then(|e| e.get("name")).cloned() else {
        return;
    };
    let loc = ext.loc.clone();
    m.insert(key("external", &loc), Node::plain("true", loc.clone()));
    if !m.contains("name") {
        m.insert(key("name", &loc), name);
    }
}

fn each_field(m: &mut Map, f: &mut dyn FnMut(&str, &mut Node)) {
    for (k, v) in m.entries.iter_mut() {
        f(&k.name, v);
    }
}

/// Canonicalizes one service definition in place.
pub fn service(svc: &mut Node, path: &Path, out: &mut Vec<Diagnostic>) {
    let Some(m) = svc.as_map_mut() else { return };
    each_field(m, &mut |name, v| {
        if v.tag == Some(super::node::Tag::Reset) {
            return;
        }
        let p = path.key(name);
        match name {
            "build" => {
                if let Some(ctx) = v.as_str().map(str::to_string) {
                    let loc = v.loc.clone();
                    *v = map_of(vec![("context", str_node(&ctx, &loc))], &loc);
                }
                if let Some(b) = v.as_map_mut() {
                    for f in ["args", "labels", "ssh", "additional_contexts"] {
                        if let Some(x) = b.get_mut(f) {
                            list_to_dict(x, '=');
                        }
                    }
                    if let Some(x) = b.get_mut("extra_hosts") {
                        extra_hosts(x);
                    }
                    if let Some(x) = b.get_mut("secrets") {
                        file_refs(x);
                    }
                    if let Some(x) = b.get_mut("ulimits") {
                        ulimits(x);
                    }
                }
            }
            "command" | "entrypoint" => command(v, &p, false, out),
            "healthcheck" => {
                if let Some(h) = v.as_map_mut()
                    && let Some(t) = h.get_mut("test")
                {
                    command(t, &p.key("test"), true, out);
                }
            }
            "environment" | "labels" | "annotations" | "sysctls" => list_to_dict(v, '='),
            "deploy" => {
                if let Some(d) = v.as_map_mut()
                    && let Some(l) = d.get_mut("labels")
                {
                    list_to_dict(l, '=');
                }
            }
            "depends_on" => depends_on(v),
            "ports" => ports(v, &p, out),
            "volumes" => volumes(v, &p, out),
            "env_file" => env_file(v),
            "networks" => service_networks(v),
            "secrets" | "configs" => file_refs(v),
            "dns" | "dns_search" | "tmpfs" | "label_file" => str_to_list(v),
            "ulimits" => ulimits(v),
            "extra_hosts" => extra_hosts(v),
            "expose" => {
                if let Value::Seq(items) = &mut v.value {
                    for it in items.iter_mut() {
                        if let Value::Scalar(s) = &mut it.value {
                            s.quoted = true;
                        }
                    }
                }
            }
            "extends" => {
                if let Some(s) = v.as_str().map(str::to_string) {
                    let loc = v.loc.clone();
                    *v = map_of(vec![("service", str_node(&s, &loc))], &loc);
                }
            }
            "develop" => {
                if let Some(d) = v.as_map_mut()
                    && let Some(Value::Seq(rules)) = d.get_mut("watch").map(|w| &mut w.value)
                {
                    for (i, r) in rules.iter_mut().enumerate() {
                        if let Some(rm) = r.as_map_mut() {
                            for f in ["ignore", "include"] {
                                if let Some(x) = rm.get_mut(f) {
                                    str_to_list(x);
                                }
                            }
                            if let Some(em) = rm.get_mut("exec").and_then(Node::as_map_mut) {
                                if let Some(c) = em.get_mut("command") {
                                    let cp = p.key("watch").index(i).key("exec").key("command");
                                    command(c, &cp, false, out);
                                }
                                if let Some(e) = em.get_mut("environment") {
                                    list_to_dict(e, '=');
                                }
                            }
                        }
                    }
                }
            }
            "post_start" | "pre_stop" => {
                if let Value::Seq(hooks) = &mut v.value {
                    for (i, h) in hooks.iter_mut().enumerate() {
                        if let Some(hm) = h.as_map_mut() {
                            if let Some(c) = hm.get_mut("command") {
                                command(c, &p.index(i).key("command"), false, out);
                            }
                            if let Some(e) = hm.get_mut("environment") {
                                list_to_dict(e, '=');
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    });
}

/// Canonicalizes a whole stack-file tree in place, reporting short-syntax values it cannot read.
pub fn canonicalize(root: &mut Node) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let top = Path::root();
    let Some(m) = root.as_map_mut() else {
        return out;
    };
    for (k, v) in m.entries.iter_mut() {
        let p = top.key(&k.name);
        match k.name.as_str() {
            "services" => {
                if let Some(s) = v.as_map_mut() {
                    for (sk, sv) in s.entries.iter_mut() {
                        if sv.is_null() {
                            sv.value = Value::Map(Map::new());
                        }
                        service(sv, &p.key(&sk.name), &mut out);
                    }
                }
            }
            "networks" | "volumes" | "secrets" | "configs" => {
                if let Some(s) = v.as_map_mut() {
                    for (_, obj) in s.entries.iter_mut() {
                        if obj.is_null() {
                            obj.value = Value::Map(Map::new());
                        }
                        external(obj);
                        if let Some(om) = obj.as_map_mut()
                            && let Some(l) = om.get_mut("labels")
                        {
                            list_to_dict(l, '=');
                        }
                    }
                }
            }
            "include" => {
                if let Value::Seq(items) = &mut v.value {
                    for it in items.iter_mut() {
                        let loc = it.loc.clone();
                        if let Some(s) = it.as_str().map(str::to_string) {
                            *it = map_of(vec![("path", str_node(&s, &loc))], &loc);
                        }
                        if let Some(im) = it.as_map_mut() {
                            for f in ["path", "env_file"] {
                                if let Some(x) = im.get_mut(f) {
                                    str_to_list(x);
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}
