//! Top-level `include`: other stack files loaded as their own projects (their own project
//! directory and env files) whose services, networks, volumes, secrets and configs join the
//! including stack. A resource defined both by the including file and by an included one is an
//! error, as in Compose; so is an include cycle.

use std::path::PathBuf;

use super::error::Diagnostic;
use super::load::{self, Env, FileCtx};
use super::node::{Node, Path, Value};

const SECTIONS: &[&str] = &["services", "networks", "volumes", "secrets", "configs"];

/// Resolves the `include` entries of `doc` (already canonicalized: each entry has `path` as a
/// list of absolute paths) and removes the `include` key.
pub fn apply(doc: &mut Node, ctx: &mut FileCtx<'_>) -> Result<(), Vec<Diagnostic>> {
    // The including file itself is the first link of any cycle.
    let mut stack: Vec<PathBuf> = match &*doc.loc.file {
        "-" | "" => Vec::new(),
        f => vec![PathBuf::from(f)],
    };
    apply_inner(doc, ctx, &mut stack)
}

fn apply_inner(
    doc: &mut Node,
    ctx: &mut FileCtx<'_>,
    stack: &mut Vec<PathBuf>,
) -> Result<(), Vec<Diagnostic>> {
    let Some(top) = doc.as_map_mut() else {
        return Ok(());
    };
    let Some(inc) = top.remove("include") else {
        return Ok(());
    };
    let Value::Seq(entries) = inc.value else {
        return Ok(());
    };
    let mut errs = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let path = Path::root().key("include").index(i);
        let Some(m) = entry.as_map() else { continue };
        let paths: Vec<(PathBuf, Node)> = m
            .get("path")
            .and_then(Node::as_seq)
            .unwrap_or(&[])
            .iter()
            .filter_map(|p| p.as_str().map(|s| (PathBuf::from(s), p.clone())))
            .collect();
        let Some((first, _)) = paths.first() else {
            errs.push(Diagnostic::new(
                &entry.loc,
                &path,
                "include entry has no `path`",
            ));
            continue;
        };
        let project_dir = m
            .get("project_directory")
            .and_then(Node::as_str)
            .map(PathBuf::from)
            .or_else(|| first.parent().map(|p| p.to_path_buf()))
            .unwrap_or_default();
        // The included project's environment: the including one, then its env files.
        let mut env: Env = ctx.env.clone();
        let env_files: Vec<(PathBuf, bool)> = match m.get("env_file").and_then(Node::as_seq) {
            Some(list) => list
                .iter()
                .filter_map(|p| p.as_str().map(|s| (PathBuf::from(s), true)))
                .collect(),
            None => vec![(project_dir.join(".env"), false)],
        };
        for (f, required) in env_files {
            match std::fs::read_to_string(&f) {
                Ok(text) => {
                    ctx.files.push(f.clone());
                    let snapshot = env.clone();
                    match super::dotenv::parse(&text, &|k| snapshot.get(k)) {
                        Ok(pairs) => {
                            for (k, v) in pairs {
                                if ctx.env.get(&k).is_none() {
                                    env.set(&k, &v);
                                }
                            }
                        }
                        Err(e) => errs.push(Diagnostic::at(
                            &super::node::Loc::new(
                                std::sync::Arc::from(f.display().to_string().as_str()),
                                e.line,
                                e.col,
                            ),
                            e.message.clone(),
                        )),
                    }
                }
                Err(_) if !required => {}
                Err(e) => errs.push(Diagnostic::new(
                    &entry.loc,
                    &path.key("env_file"),
                    format!("cannot read env file {}: {e}", f.display()),
                )),
            }
        }
        let mut merged: Option<Node> = None;
        for (p, pnode) in &paths {
            if stack.contains(p) {
                let mut chain: Vec<String> =
                    stack.iter().map(|s| s.display().to_string()).collect();
                chain.push(p.display().to_string());
                errs.push(Diagnostic::new(
                    &pnode.loc,
                    &path,
                    format!("include cycle: {}", chain.join(" → ")),
                ));
                continue;
            }
            let mut sub = FileCtx {
                env: &env,
                no_interpolate: ctx.no_interpolate,
                warnings: ctx.warnings,
                files: ctx.files,
                stdin: None,
            };
            match load::load_file(p, &project_dir, &mut sub) {
                Ok(mut d) => {
                    stack.push(p.clone());
                    let r = apply_inner(&mut d, &mut sub, stack);
                    stack.pop();
                    if let Err(e) = r {
                        errs.extend(e);
                        continue;
                    }
                    load::accumulate(&mut merged, d, &mut errs, true);
                }
                Err(e) => errs.extend(e),
            }
        }
        let Some(included) = merged else { continue };
        let Value::Map(inc_top) = included.value else {
            continue;
        };
        for (k, v) in inc_top.entries {
            if !SECTIONS.contains(&k.name.as_str()) {
                continue;
            }
            let Value::Map(objs) = v.value else { continue };
            let section = match top.get_mut(&k.name) {
                Some(s) => s,
                None => {
                    top.insert(k.clone(), Node::map(Default::default(), k.loc.clone()));
                    match top.get_mut(&k.name) {
                        Some(s) => s,
                        None => continue,
                    }
                }
            };
            if section.is_null() {
                section.value = Value::Map(Default::default());
            }
            let Some(sm) = section.as_map_mut() else {
                continue;
            };
            for (ok, ov) in objs.entries {
                if let Some(existing) = sm.key(&ok.name) {
                    // Compose accepts a resource defined identically on both sides.
                    if sm.get(&ok.name).is_some_and(|e| same_definition(e, &ov)) {
                        continue;
                    }
                    errs.push(
                        Diagnostic::new(
                            &existing.loc,
                            &Path::root().key(&k.name).key(&ok.name),
                            format!(
                                "conflicts with the {} `{}` imported by include from {}",
                                k.name.trim_end_matches('s'),
                                ok.name,
                                ok.loc.file
                            ),
                        )
                        .with_hint("rename one of them; included resources cannot be overridden"),
                    );
                    continue;
                }
                sm.entries.push((ok, ov));
            }
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Whether two definitions are the same, ignoring where they were written and key order.
fn same_definition(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Null, Value::Null) => true,
        (Value::Scalar(x), Value::Scalar(y)) => x.text == y.text,
        (Value::Seq(x), Value::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_definition(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(&k.name).is_some_and(|w| same_definition(v, w)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml;

    fn doc(text: &str, file: &str) -> Node {
        yaml::parse(text, file).unwrap().remove(0)
    }

    #[test]
    fn include_cycle_starts_at_the_including_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("compose.yaml");
        let sub = dir.path().join("sub.yaml");
        std::fs::write(
            &root,
            "include:\n  - sub.yaml\nservices:\n  a:\n    image: x\n",
        )
        .unwrap();
        std::fs::write(
            &sub,
            "include:\n  - compose.yaml\nservices:\n  b:\n    image: x\n",
        )
        .unwrap();
        let opts = load::Options {
            files: vec![root.clone()],
            working_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let errs = load::load(&opts).unwrap_err().to_string();
        let (r, s) = (root.display(), sub.display());
        assert_eq!(
            errs,
            format!("{s}:2:5: include[0]: include cycle: {r} → {s} → {r}")
        );
    }

    #[test]
    fn identical_definitions_are_the_same_wherever_written() {
        let a = doc("driver: bridge\nlabels: {a: \"1\", b: x}\n", "a.yaml");
        let b = doc("\n\nlabels: {b: x, a: \"1\"}\ndriver: bridge\n", "b.yaml");
        assert!(same_definition(&a, &b));
        let c = doc("driver: overlay\nlabels: {a: \"1\", b: x}\n", "c.yaml");
        assert!(!same_definition(&a, &c));
        let d = doc("driver: bridge\n", "d.yaml");
        assert!(!same_definition(&a, &d));
    }
}
