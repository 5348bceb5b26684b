//! The last step of loading: from the merged tree to the resolved stack. Applies profiles
//! (pulling in what enabled services depend on), reads `env_file`s into `environment`, fills in
//! Compose's defaults (the `default` network, resource names `<project>_<name>`), and checks what
//! only the whole stack can tell: undefined services, networks, volumes, secrets and configs,
//! services with neither image nor build, duplicate container names, dependency cycles.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use serde_json::{Map as JMap, Value as J};

use super::dotenv;
use super::error::{Diagnostic, did_you_mean};
use super::load::Env;
use super::node::{Key, Loc, Map, Node, Path, Value};
use super::schema;
use crate::plan::graph;

pub struct Context<'a> {
    pub name: &'a str,
    pub env: &'a Env,
    pub profiles: &'a [String],
    pub files: &'a mut Vec<PathBuf>,
}

pub struct Output {
    pub config: J,
    pub warnings: Vec<String>,
    pub all_profiles: Vec<String>,
}

fn key(name: &str, loc: &Loc) -> Key {
    Key {
        name: name.to_string(),
        loc: loc.clone(),
    }
}

fn str_list(n: Option<&Node>) -> Vec<String> {
    n.and_then(Node::as_seq)
        .unwrap_or(&[])
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// The services a service needs running: `depends_on`, `network_mode: service:x`, `volumes_from`.
fn needs(svc: &Node) -> Vec<String> {
    let Some(m) = svc.as_map() else {
        return Vec::new();
    };
    let mut out: Vec<String> = m
        .get("depends_on")
        .and_then(Node::as_map)
        .map(|d| d.keys().map(str::to_string).collect())
        .unwrap_or_default();
    if let Some(s) = m
        .get("network_mode")
        .and_then(Node::as_str)
        .and_then(|s| s.strip_prefix("service:"))
    {
        out.push(s.to_string());
    }
    for v in str_list(m.get("volumes_from")) {
        if !v.starts_with("container:") {
            out.push(v.split(':').next().unwrap_or_default().to_string());
        }
    }
    out
}

fn replicas(m: &Map) -> Option<(i64, Loc)> {
    if let Some(n) = m.get("scale") {
        return n
            .as_str()
            .and_then(super::node::parse_int)
            .map(|v| (v, n.loc.clone()));
    }
    let d = m.get("deploy")?.as_map()?.get("replicas")?;
    d.as_str()
        .and_then(super::node::parse_int)
        .map(|v| (v, d.loc.clone()))
}

pub fn normalize(mut root: Node, cx: &mut Context<'_>) -> Result<Output, Vec<Diagnostic>> {
    let mut errs = Vec::new();
    let mut warnings = Vec::new();
    let root_loc = root.loc.clone();
    let Some(top) = root.as_map_mut() else {
        return Err(vec![Diagnostic::at(
            &root_loc,
            "a stack file must be a mapping",
        )]);
    };
    top.remove("version");
    top.remove("include");
    top.remove("name");
    for section in ["services", "networks", "volumes", "secrets", "configs"] {
        match top.get_mut(section) {
            Some(n) if n.is_null() => n.value = Value::Map(Map::new()),
            Some(_) => {}
            None => {
                if section == "services" {
                    top.insert(
                        key(section, &root_loc),
                        Node::map(Map::new(), root_loc.clone()),
                    );
                }
            }
        }
    }

    // Profiles.
    let mut all_profiles = BTreeSet::new();
    let services = top
        .get("services")
        .and_then(Node::as_map)
        .cloned()
        .unwrap_or_default();
    let wildcard = cx.profiles.iter().any(|p| p == "*");
    let mut active: Vec<String> = Vec::new();
    for (k, svc) in services.iter() {
        let profs = str_list(svc.as_map().and_then(|m| m.get("profiles")));
        all_profiles.extend(profs.iter().cloned());
        if profs.is_empty() || wildcard || profs.iter().any(|p| cx.profiles.contains(p)) {
            active.push(k.name.clone());
        }
    }
    let mut enabled: HashSet<String> = active.iter().cloned().collect();
    let mut queue = active;
    while let Some(s) = queue.pop() {
        if let Some(svc) = services.get(&s) {
            for d in needs(svc) {
                if services.contains(&d) && enabled.insert(d.clone()) {
                    queue.push(d);
                }
            }
        }
    }
    if !services.is_empty() && enabled.is_empty() {
        warnings.push("no service is enabled by the active profiles".to_string());
    }

    let networks_defined: Map = top
        .get("networks")
        .and_then(Node::as_map)
        .cloned()
        .unwrap_or_default();
    let volumes_defined: Map = top
        .get("volumes")
        .and_then(Node::as_map)
        .cloned()
        .unwrap_or_default();
    let secrets_defined: Map = top
        .get("secrets")
        .and_then(Node::as_map)
        .cloned()
        .unwrap_or_default();
    let configs_defined: Map = top
        .get("configs")
        .and_then(Node::as_map)
        .cloned()
        .unwrap_or_default();
    let mut uses_default = false;
    let mut container_names: Vec<(String, Loc, String)> = Vec::new();

    let Some(svc_map) = top.get_mut("services").and_then(Node::as_map_mut) else {
        return Err(vec![Diagnostic::at(
            &root_loc,
            "`services` must be a mapping",
        )]);
    };
    svc_map.entries.retain(|(k, _)| enabled.contains(&k.name));
    let names: Vec<String> = svc_map.keys().map(str::to_string).collect();
    for (k, svc) in svc_map.entries.iter_mut() {
        let sp = Path::root().key("services").key(&k.name);
        let Some(m) = svc.as_map_mut() else { continue };
        super::develop::check(m, &sp, &mut errs);

        // image or build
        if !m.contains("image") && !m.contains("build") {
            errs.push(
                Diagnostic::new(
                    &k.loc,
                    &sp,
                    "service has neither an image nor a build context",
                )
                .with_hint("add `image:` or `build:`"),
            );
        }

        // env_file → environment
        environment(m, &sp, cx, &mut errs);

        // networks
        if !m.contains("networks") && !m.contains("network_mode") {
            m.insert(key("networks", &k.loc), {
                let mut nm = Map::new();
                nm.insert(key("default", &k.loc), Node::null(k.loc.clone()));
                Node::map(nm, k.loc.clone())
            });
        }
        if m.contains("networks")
            && let Some(mode) = m.get("network_mode").and_then(Node::as_str)
        {
            let loc = m
                .key("network_mode")
                .map(|k| k.loc.clone())
                .unwrap_or(k.loc.clone());
            errs.push(Diagnostic::new(
                &loc,
                &sp.key("network_mode"),
                format!("`network_mode: {mode}` cannot be combined with `networks`"),
            ));
        }
        if let Some(nets) = m.get("networks").and_then(Node::as_map) {
            for (nk, _) in nets.iter() {
                if nk.name == "default" && !networks_defined.contains("default") {
                    uses_default = true;
                    continue;
                }
                if !networks_defined.contains(&nk.name) {
                    errs.push(undefined(
                        &nk.loc,
                        &sp.key("networks"),
                        "network",
                        &nk.name,
                        &networks_defined,
                    ));
                }
            }
        }
        if let Some(mode) = m.get("network_mode")
            && let Some(s) = mode.as_str().and_then(|s| s.strip_prefix("service:"))
            && !names.iter().any(|n| n == s)
        {
            errs.push(Diagnostic::new(
                &mode.loc,
                &sp.key("network_mode"),
                format!("`network_mode` refers to undefined service `{s}`"),
            ));
        }

        // depends_on
        if let Some(deps) = m.get_mut("depends_on").and_then(Node::as_map_mut) {
            let mut keep = Vec::new();
            for (dk, dv) in deps.entries.drain(..) {
                if names.contains(&dk.name) {
                    keep.push((dk, dv));
                    continue;
                }
                let required = dv
                    .as_map()
                    .and_then(|d| d.get("required"))
                    .and_then(Node::as_bool)
                    .unwrap_or(true);
                if required {
                    let mut d = Diagnostic::new(
                        &dk.loc,
                        &sp.key("depends_on"),
                        format!("depends on undefined service `{}`", dk.name),
                    );
                    if services.contains(&dk.name) {
                        d = d.with_hint(format!(
                            "`{}` is disabled by its profiles; enable one with --profile",
                            dk.name
                        ));
                    } else if let Some(s) = did_you_mean(&dk.name, names.iter().map(String::as_str))
                    {
                        d = d.with_hint(format!("did you mean `{s}`?"));
                    }
                    errs.push(d);
                } else {
                    warnings.push(format!(
                        "service `{}` depends on `{}`, which is not in the stack; ignored because `required: false`",
                        k.name, dk.name
                    ));
                }
            }
            deps.entries = keep;
        }

        // volumes_from
        if let Some(vf) = m.get("volumes_from").and_then(Node::as_seq) {
            for (i, v) in vf.iter().enumerate() {
                let Some(s) = v.as_str() else { continue };
                if s.starts_with("container:") {
                    continue;
                }
                let svc = s.split(':').next().unwrap_or_default();
                if !names.iter().any(|n| n == svc) {
                    errs.push(Diagnostic::new(
                        &v.loc,
                        &sp.key("volumes_from").index(i),
                        format!("`volumes_from` refers to undefined service `{svc}`"),
                    ));
                }
            }
        }

        // named volumes
        if let Some(vols) = m.get("volumes").and_then(Node::as_seq) {
            for (i, v) in vols.iter().enumerate() {
                let Some(vm) = v.as_map() else { continue };
                if vm.get("type").and_then(Node::as_str) != Some("volume") {
                    continue;
                }
                if let Some(src) = vm.get("source").and_then(Node::as_str)
                    && !volumes_defined.contains(src)
                {
                    errs.push(undefined(
                        &v.loc,
                        &sp.key("volumes").index(i),
                        "volume",
                        src,
                        &volumes_defined,
                    ));
                }
            }
        }
        for (section, defined) in [("secrets", &secrets_defined), ("configs", &configs_defined)] {
            if let Some(items) = m.get(section).and_then(Node::as_seq) {
                for (i, it) in items.iter().enumerate() {
                    if let Some(src) = it
                        .as_map()
                        .and_then(|x| x.get("source"))
                        .and_then(Node::as_str)
                        && !defined.contains(src)
                    {
                        errs.push(undefined(
                            &it.loc,
                            &sp.key(section).index(i),
                            section.trim_end_matches('s'),
                            src,
                            defined,
                        ));
                    }
                }
            }
        }

        // replicas and container names
        let reps = replicas(m);
        if let (Some(s), Some(d)) = (
            m.get("scale")
                .and_then(Node::as_str)
                .and_then(super::node::parse_int),
            m.get("deploy")
                .and_then(Node::as_map)
                .and_then(|d| d.get("replicas"))
                .and_then(Node::as_str)
                .and_then(super::node::parse_int),
        ) && s != d
        {
            let loc = m
                .get("scale")
                .map(|n| n.loc.clone())
                .unwrap_or(k.loc.clone());
            errs.push(Diagnostic::new(
                &loc,
                &sp.key("scale"),
                format!("`scale: {s}` contradicts `deploy.replicas: {d}`"),
            ));
        }
        if let Some(cn) = m.get("container_name")
            && let Some(name) = cn.as_str()
        {
            if let Some((r, _)) = &reps
                && *r > 1
            {
                errs.push(
                        Diagnostic::new(
                            &cn.loc,
                            &sp.key("container_name"),
                            format!(
                                "`container_name` \"{name}\" cannot be shared by {r} replicas of service `{}`",
                                k.name
                            ),
                        )
                        .with_hint("remove `container_name` or run a single replica"),
                    );
            }
            container_names.push((name.to_string(), cn.loc.clone(), k.name.clone()));
        }
    }
    container_names.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    for w in container_names.windows(2) {
        if w[0].0 == w[1].0 {
            errs.push(Diagnostic::new(
                &w[1].1,
                &Path::root()
                    .key("services")
                    .key(&w[1].2)
                    .key("container_name"),
                format!(
                    "container name \"{}\" is already used by service `{}`",
                    w[1].0, w[0].2
                ),
            ));
        }
    }

    // Top-level resources: names and the default network.
    if uses_default {
        let default = (
            key("default", &root_loc),
            Node::map(Map::new(), root_loc.clone()),
        );
        match top.get_mut("networks").and_then(Node::as_map_mut) {
            Some(nets) => nets.insert(default.0, default.1),
            None => {
                let mut nets = Map::new();
                nets.insert(default.0, default.1);
                top.insert(
                    key("networks", &root_loc),
                    Node::map(nets, root_loc.clone()),
                );
            }
        }
    }
    for section in ["networks", "volumes", "secrets", "configs"] {
        if let Some(objs) = top.get_mut(section).and_then(Node::as_map_mut) {
            for (k, v) in objs.entries.iter_mut() {
                if v.is_null() {
                    v.value = Value::Map(Map::new());
                }
                let Some(o) = v.as_map_mut() else { continue };
                let external = o.get("external").and_then(Node::as_bool).unwrap_or(false);
                if !o.contains("name") {
                    let name = if external {
                        k.name.clone()
                    } else {
                        format!("{}_{}", cx.name, k.name)
                    };
                    o.insert(key("name", &k.loc), Node::string(name, k.loc.clone()));
                }
                if matches!(section, "secrets" | "configs") && !external {
                    let sources = ["file", "environment", "content"]
                        .iter()
                        .filter(|f| o.contains(f))
                        .count();
                    if sources != 1 {
                        errs.push(Diagnostic::new(
                            &k.loc,
                            &Path::root().key(section).key(&k.name),
                            format!(
                                "a {} needs exactly one of `file`, `environment` or `content`",
                                section.trim_end_matches('s')
                            ),
                        ));
                    }
                    if let Some(var) = o.get("environment").and_then(Node::as_str)
                        && cx.env.get(var).is_none()
                    {
                        warnings.push(format!(
                            "{} `{}` reads the environment variable {var}, which is not set",
                            section.trim_end_matches('s'),
                            k.name
                        ));
                    }
                }
            }
        }
    }

    // Dependency cycles.
    if errs.is_empty() {
        let input = graph_input(top);
        if let Err(e) = graph::StackGraph::build(&input) {
            let msgs = match e {
                graph::GraphError::Cycles(m)
                | graph::GraphError::Missing(m)
                | graph::GraphError::DuplicateServices(m) => m,
            };
            for msg in msgs {
                let first = msg
                    .strip_prefix("dependency cycle: ")
                    .and_then(|rest| rest.split(' ').next())
                    .unwrap_or_default()
                    .to_string();
                let loc = top
                    .get("services")
                    .and_then(Node::as_map)
                    .and_then(|s| s.key(&first))
                    .map(|k| k.loc.clone())
                    .unwrap_or(root_loc.clone());
                let path = if first.is_empty() {
                    Path::root().key("services")
                } else {
                    Path::root().key("services").key(&first)
                };
                errs.push(Diagnostic::new(&loc, &path, msg));
            }
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }

    let body = schema::to_json(&root, &schema::TOP);
    let mut config = JMap::new();
    config.insert("name".into(), J::from(cx.name));
    if let J::Object(o) = body {
        for (k, v) in o {
            if (k == "networks" || k == "volumes" || k == "secrets" || k == "configs")
                && v.as_object().is_some_and(|x| x.is_empty())
            {
                continue;
            }
            config.insert(k, v);
        }
    }
    Ok(Output {
        config: J::Object(config),
        warnings,
        all_profiles: all_profiles.into_iter().collect(),
    })
}

fn undefined(loc: &Loc, path: &Path, what: &str, name: &str, defined: &Map) -> Diagnostic {
    let mut d = Diagnostic::new(loc, path, format!("refers to undefined {what} `{name}`"));
    d = match did_you_mean(name, defined.keys()) {
        Some(s) => d.with_hint(format!("did you mean `{s}`?")),
        None => d.with_hint(format!("define it under the top-level `{what}s:`")),
    };
    d
}

/// Reads a service's env files (in order) and its `environment`, which wins, into one
/// `environment` mapping; variables listed without a value take it from the project environment.
fn environment(m: &mut Map, sp: &Path, cx: &mut Context<'_>, errs: &mut Vec<Diagnostic>) {
    let mut env = Map::new();
    if let Some(files) = m.remove("env_file") {
        for (i, f) in files.as_seq().unwrap_or(&[]).iter().enumerate() {
            let Some(fm) = f.as_map() else { continue };
            let Some(path) = fm.get("path").and_then(Node::as_str) else {
                continue;
            };
            let required = fm.get("required").and_then(Node::as_bool).unwrap_or(true);
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    cx.files.push(PathBuf::from(path));
                    let env_ref = cx.env;
                    match dotenv::parse(&text, &|k| env_ref.get(k)) {
                        Ok(pairs) => {
                            for (k, v) in pairs {
                                env.insert(key(&k, &f.loc), Node::string(v, f.loc.clone()));
                            }
                        }
                        Err(e) => errs.push(Diagnostic::at(
                            &Loc::new(std::sync::Arc::from(path), e.line, e.col),
                            e.message.clone(),
                        )),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
                Err(e) => errs.push(
                    Diagnostic::new(
                        &f.loc,
                        &sp.key("env_file").index(i),
                        format!("cannot read env file {path}: {e}"),
                    )
                    .with_hint("create it, or mark it `required: false`"),
                ),
            }
        }
    }
    let explicit = m.remove("environment");
    let loc = explicit
        .as_ref()
        .map(|n| n.loc.clone())
        .unwrap_or_else(|| Loc::synthetic("environment"));
    if let Some(e) = explicit.as_ref().and_then(Node::as_map) {
        for (k, v) in e.iter() {
            let value = if v.is_null() {
                match cx.env.get(&k.name) {
                    Some(val) => Node::string(val, v.loc.clone()),
                    None => v.clone(),
                }
            } else {
                v.clone()
            };
            env.insert(k.clone(), value);
        }
    }
    if !env.is_empty() {
        m.insert(key("environment", &loc), Node::map(env, loc.clone()));
    }
}

/// The graph input of a normalized tree.
pub fn graph_input(top: &Map) -> graph::StackInput {
    let mut services = Vec::new();
    if let Some(s) = top.get("services").and_then(Node::as_map) {
        for (k, svc) in s.iter() {
            let Some(m) = svc.as_map() else { continue };
            let depends_on = m
                .get("depends_on")
                .and_then(Node::as_map)
                .map(|d| {
                    d.iter()
                        .map(|(dk, dv)| {
                            let dm = dv.as_map();
                            graph::DependsOn {
                                service: dk.name.clone(),
                                condition: dm
                                    .and_then(|x| x.get("condition"))
                                    .and_then(Node::as_str)
                                    .unwrap_or("service_started")
                                    .to_string(),
                                required: dm
                                    .and_then(|x| x.get("required"))
                                    .and_then(Node::as_bool)
                                    .unwrap_or(true),
                                restart: dm
                                    .and_then(|x| x.get("restart"))
                                    .and_then(Node::as_bool)
                                    .unwrap_or(false),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let volumes_from = str_list(m.get("volumes_from"))
                .into_iter()
                .filter(|v| !v.starts_with("container:"))
                .map(|v| v.split(':').next().unwrap_or_default().to_string())
                .collect();
            let network_mode_service = m
                .get("network_mode")
                .and_then(Node::as_str)
                .and_then(|s| s.strip_prefix("service:"))
                .map(str::to_string);
            let networks = m
                .get("networks")
                .and_then(Node::as_map)
                .map(|n| n.keys().map(str::to_string).collect())
                .unwrap_or_default();
            let volumes = m
                .get("volumes")
                .and_then(Node::as_seq)
                .unwrap_or(&[])
                .iter()
                .filter_map(|v| {
                    let vm = v.as_map()?;
                    (vm.get("type").and_then(Node::as_str) == Some("volume"))
                        .then(|| vm.get("source").and_then(Node::as_str).map(str::to_string))
                        .flatten()
                })
                .collect();
            services.push(graph::ServiceInput {
                name: k.name.clone(),
                depends_on,
                volumes_from,
                network_mode_service,
                networks,
                volumes,
            });
        }
    }
    let keys = |s: &str| -> Vec<String> {
        top.get(s)
            .and_then(Node::as_map)
            .map(|m| m.keys().map(str::to_string).collect())
            .unwrap_or_default()
    };
    graph::StackInput {
        services,
        networks: keys("networks"),
        volumes: keys("volumes"),
    }
}

/// The graph input of a loaded stack's canonical JSON (what `config --format json` prints).
pub fn graph_input_json(config: &J) -> graph::StackInput {
    let strs = |v: Option<&J>| -> Vec<String> {
        v.and_then(J::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let keys = |v: Option<&J>| -> Vec<String> {
        v.and_then(J::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut services = Vec::new();
    if let Some(s) = config.get("services").and_then(J::as_object) {
        for (name, svc) in s {
            let depends_on = svc
                .get("depends_on")
                .and_then(J::as_object)
                .map(|d| {
                    d.iter()
                        .map(|(dep, v)| graph::DependsOn {
                            service: dep.clone(),
                            condition: v
                                .get("condition")
                                .and_then(J::as_str)
                                .unwrap_or("service_started")
                                .to_string(),
                            required: v.get("required").and_then(J::as_bool).unwrap_or(true),
                            restart: v.get("restart").and_then(J::as_bool).unwrap_or(false),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let volumes_from = strs(svc.get("volumes_from"))
                .into_iter()
                .filter(|v| !v.starts_with("container:"))
                .map(|v| v.split(':').next().unwrap_or_default().to_string())
                .collect();
            let network_mode_service = svc
                .get("network_mode")
                .and_then(J::as_str)
                .and_then(|m| m.strip_prefix("service:"))
                .map(str::to_string);
            let volumes = svc
                .get("volumes")
                .and_then(J::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|v| v.get("type").and_then(J::as_str) == Some("volume"))
                        .filter_map(|v| v.get("source").and_then(J::as_str).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            services.push(graph::ServiceInput {
                name: name.clone(),
                depends_on,
                volumes_from,
                network_mode_service,
                networks: keys(svc.get("networks")),
                volumes,
            });
        }
    }
    graph::StackInput {
        services,
        networks: keys(config.get("networks")),
        volumes: keys(config.get("volumes")),
    }
}
