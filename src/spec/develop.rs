//! `develop.watch` rules checked beyond their types: what each action needs (`path` and
//! `action` always; `target` for the sync actions, an absolute container path; `exec.command`
//! for `sync+exec`; `build` for `rebuild`), each problem located at the rule's key
//! (`services.web.develop.watch[0].action`).

use super::error::Diagnostic;
use super::node::{Map, Node, Path};

/// The actions that copy files into the containers.
const SYNCING: &[&str] = &["sync", "sync+restart", "sync+exec"];

/// Checks the `develop.watch` rules of service map `m` (at `sp`).
pub fn check(m: &Map, sp: &Path, errs: &mut Vec<Diagnostic>) {
    let Some(rules) = m
        .get("develop")
        .and_then(Node::as_map)
        .and_then(|d| d.get("watch"))
        .and_then(Node::as_seq)
    else {
        return;
    };
    for (i, rule) in rules.iter().enumerate() {
        let rp = sp.key("develop").key("watch").index(i);
        let Some(r) = rule.as_map() else { continue };
        let at = |key: &str| r.get(key).map_or(&rule.loc, |n| &n.loc);
        if !r.contains("path") {
            errs.push(
                Diagnostic::new(&rule.loc, &rp, "a watch rule needs `path`")
                    .with_hint("the file or directory on the host to watch"),
            );
        }
        let Some(action) = r.get("action").and_then(Node::as_str) else {
            if !r.contains("action") {
                errs.push(
                    Diagnostic::new(&rule.loc, &rp, "a watch rule needs `action`")
                        .with_hint("one of sync, sync+restart, sync+exec, restart, rebuild"),
                );
            }
            continue;
        };
        if SYNCING.contains(&action) {
            match r.get("target").and_then(Node::as_str) {
                None => errs.push(
                    Diagnostic::new(
                        at("action"),
                        &rp.key("action"),
                        format!("action `{action}` needs `target`"),
                    )
                    .with_hint("the path in the container the files are copied to"),
                ),
                Some(t) if !t.starts_with('/') => errs.push(Diagnostic::new(
                    at("target"),
                    &rp.key("target"),
                    format!("`{t}` is not an absolute path in the container"),
                )),
                Some(_) => {}
            }
        } else if r.contains("target") && action != "rebuild" {
            errs.push(Diagnostic::new(
                at("target"),
                &rp.key("target"),
                format!("action `{action}` copies nothing: `target` is only for sync actions"),
            ));
        }
        let command = r
            .get("exec")
            .and_then(Node::as_map)
            .and_then(|e| e.get("command"));
        let has_command = command.is_some_and(|c| c.as_seq().is_some_and(|s| !s.is_empty()));
        if action == "sync+exec" && !has_command {
            errs.push(
                Diagnostic::new(
                    at("exec"),
                    &rp.key("exec").key("command"),
                    "action `sync+exec` needs `exec.command`",
                )
                .with_hint("the command run in each container after the sync"),
            );
        }
        if action != "sync+exec" && r.contains("exec") {
            errs.push(Diagnostic::new(
                at("exec"),
                &rp.key("exec"),
                format!("`exec` is only run by action `sync+exec`, not `{action}`"),
            ));
        }
        if action == "rebuild" && !m.contains("build") {
            errs.push(
                Diagnostic::new(
                    at("action"),
                    &rp.key("action"),
                    "action `rebuild` needs the service to have `build`",
                )
                .with_hint("use `restart` or a sync action for a service built elsewhere"),
            );
        }
    }
}
