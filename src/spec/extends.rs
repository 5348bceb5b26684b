//! `extends`: a service built on another service of the same stack or of another file,
//! recursively, with Compose's merge rules (the extending service wins). Cycles are reported
//! with the chain of services.

use std::collections::HashMap;
use std::path::PathBuf;

use super::error::Diagnostic;
use super::load::{self, FileCtx};
use super::merge;
use super::node::{Key, Map, Node, Path, Value};

/// Where a service is defined: `None` for the stack being loaded, or another file.
type Origin = Option<PathBuf>;

struct Resolver<'c, 'a> {
    ctx: &'c mut FileCtx<'a>,
    /// Services of other files, loaded once each.
    files: HashMap<PathBuf, Map>,
    done: HashMap<(Origin, String), Node>,
}

/// Resolves every `extends` in the stack's services and removes the key.
pub fn apply(root: &mut Node, ctx: &mut FileCtx<'_>) -> Result<(), Vec<Diagnostic>> {
    let uses_extends = root
        .as_map()
        .and_then(|m| m.get("services"))
        .and_then(Node::as_map)
        .is_some_and(|s| {
            s.iter()
                .any(|(_, svc)| svc.as_map().is_some_and(|m| m.contains("extends")))
        });
    if !uses_extends {
        return Ok(());
    }
    let Some(services) = root
        .as_map()
        .and_then(|m| m.get("services"))
        .and_then(Node::as_map)
        .cloned()
    else {
        return Ok(());
    };
    let mut r = Resolver {
        ctx,
        files: HashMap::new(),
        done: HashMap::new(),
    };
    let mut errs = Vec::new();
    let mut resolved = Vec::new();
    for (k, _) in services.iter() {
        let mut chain = Vec::new();
        match r.resolve(&None, &k.name, &services, &mut chain) {
            Ok(n) => resolved.push((k.name.clone(), n)),
            Err(e) => errs.push(e),
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    if let Some(s) = root
        .as_map_mut()
        .and_then(|m| m.get_mut("services"))
        .and_then(Node::as_map_mut)
    {
        for (name, node) in resolved {
            if let Some(slot) = s.get_mut(&name) {
                *slot = node;
            }
        }
    }
    Ok(())
}

fn wrap(name: &str, svc: Node) -> Node {
    let loc = svc.loc.clone();
    let mut inner = Map::new();
    inner.insert(
        Key {
            name: name.to_string(),
            loc: loc.clone(),
        },
        svc,
    );
    let mut top = Map::new();
    top.insert(
        Key {
            name: "services".into(),
            loc: loc.clone(),
        },
        Node::map(inner, loc.clone()),
    );
    Node::map(top, loc)
}

fn unwrap_service(root: Node, name: &str) -> Option<Node> {
    let Value::Map(mut top) = root.value else {
        return None;
    };
    let Value::Map(mut services) = top.remove("services")?.value else {
        return None;
    };
    services.remove(name)
}

impl Resolver<'_, '_> {
    fn other_file(&mut self, file: &PathBuf) -> Result<Map, Diagnostic> {
        if let Some(m) = self.files.get(file) {
            return Ok(m.clone());
        }
        let base = file.parent().map(|p| p.to_path_buf()).unwrap_or_default();
        let doc = load::load_file(file, &base, self.ctx).map_err(|e| {
            e.into_iter().next().unwrap_or_else(|| {
                Diagnostic::at(&super::node::Loc::synthetic("extends"), "cannot load file")
            })
        })?;
        let services = doc
            .as_map()
            .and_then(|m| m.get("services"))
            .and_then(Node::as_map)
            .cloned()
            .unwrap_or_default();
        self.files.insert(file.clone(), services.clone());
        Ok(services)
    }

    fn resolve(
        &mut self,
        origin: &Origin,
        name: &str,
        services: &Map,
        chain: &mut Vec<(Origin, String)>,
    ) -> Result<Node, Diagnostic> {
        let id = (origin.clone(), name.to_string());
        if let Some(n) = self.done.get(&id) {
            return Ok(n.clone());
        }
        let Some(svc) = services.get(name) else {
            return Err(Diagnostic::at(
                &super::node::Loc::synthetic("extends"),
                format!("service `{name}` not found"),
            ));
        };
        let Some(ext) = svc.as_map().and_then(|m| m.get("extends")).cloned() else {
            return Ok(svc.clone());
        };
        let path = Path::root().key("services").key(name).key("extends");
        let Some(target) = ext
            .as_map()
            .and_then(|m| m.get("service"))
            .and_then(Node::as_str)
            .map(str::to_string)
        else {
            return Err(Diagnostic::new(
                &ext.loc,
                &path,
                "`extends` needs a `service`",
            ));
        };
        let file: Origin = ext
            .as_map()
            .and_then(|m| m.get("file"))
            .and_then(Node::as_str)
            .map(PathBuf::from);
        let target_origin = if file.is_some() {
            file.clone()
        } else {
            origin.clone()
        };
        chain.push(id.clone());
        if chain.contains(&(target_origin.clone(), target.clone())) {
            let mut names: Vec<String> = chain.iter().map(|(_, n)| n.clone()).collect();
            names.push(target.clone());
            return Err(Diagnostic::new(
                &ext.loc,
                &path,
                format!("extends cycle: {}", names.join(" → ")),
            ));
        }
        let base = match &file {
            Some(f) => {
                let other = self.other_file(f).map_err(|d| {
                    Diagnostic::new(
                        &ext.loc,
                        &path,
                        format!("cannot load {}: {}", f.display(), d),
                    )
                })?;
                if !other.contains(&target) {
                    return Err(Diagnostic::new(
                        &ext.loc,
                        &path,
                        format!("service `{target}` not found in {}", f.display()),
                    ));
                }
                self.resolve(&target_origin, &target, &other, chain)?
            }
            None => {
                if !services.contains(&target) {
                    let mut d = Diagnostic::new(
                        &ext.loc,
                        &path,
                        format!("cannot extend service `{target}`: no such service"),
                    );
                    if let Some(s) = super::error::did_you_mean(&target, services.keys()) {
                        d = d.with_hint(format!("did you mean `{s}`?"));
                    }
                    return Err(d);
                }
                self.resolve(&target_origin, &target, services, chain)?
            }
        };
        chain.pop();
        let mut child = svc.clone();
        if let Some(m) = child.as_map_mut() {
            m.remove("extends");
        }
        let mut base = base;
        if let Some(m) = base.as_map_mut() {
            m.remove("extends");
        }
        let merged = merge::merge(wrap(name, base), wrap(name, child))
            .map_err(|e| {
                e.into_iter().next().unwrap_or_else(|| {
                    Diagnostic::new(&ext.loc, &path, "cannot merge the extended service")
                })
            })
            .and_then(|root| {
                unwrap_service(root, name)
                    .ok_or_else(|| Diagnostic::new(&ext.loc, &path, "extends produced no service"))
            })?;
        self.done.insert(id, merged.clone());
        Ok(merged)
    }
}
