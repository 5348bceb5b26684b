//! A stack's `develop.watch` rules compiled for routing: each rule's host root (absolute), its
//! container target, its action, and its patterns (the rule's `ignore` after the root's
//! `.dockerignore` and the service's build context's, `include`, and [`DEFAULTS`]).
//! [`Rules::route`] says which rule of each service a changed path triggers (a service's
//! first matching rule wins) and where it goes in the container.

use std::path::{Path, PathBuf};

use crate::image::build::ignore::Patterns;
use crate::spec::model::{Hook, Project};

/// What watch ignores without being asked: version control and editors' temporary files.
pub const DEFAULTS: &[&str] = &[
    "**/.git",
    "**/*.swp",
    "**/*.swx",
    "**/*.swo",
    "**/*~",
    "**/.#*",
    "**/#*#",
    "**/4913",
    "**/*___jb_tmp___",
    "**/*___jb_old___",
    "**/.goutputstream-*",
    "**/.*.flotilla-sync-*",
];

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Sync,
    SyncExec,
    SyncRestart,
    Restart,
    Rebuild,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "sync" => Action::Sync,
            "sync+exec" => Action::SyncExec,
            "sync+restart" => Action::SyncRestart,
            "restart" => Action::Restart,
            "rebuild" => Action::Rebuild,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::Sync => "sync",
            Action::SyncExec => "sync+exec",
            Action::SyncRestart => "sync+restart",
            Action::Restart => "restart",
            Action::Rebuild => "rebuild",
        }
    }

    /// Whether the action copies files into the containers.
    pub fn syncs(self) -> bool {
        matches!(self, Action::Sync | Action::SyncExec | Action::SyncRestart)
    }

    /// Whether it restarts the containers.
    pub fn restarts(self) -> bool {
        matches!(self, Action::SyncRestart | Action::Restart)
    }
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub service: String,
    /// Its position in the service's `develop.watch`.
    pub index: usize,
    pub root: PathBuf,
    pub target: Option<String>,
    pub action: Action,
    pub ignore: Patterns,
    pub include: Patterns,
    pub exec: Option<Hook>,
    pub initial_sync: bool,
}

/// Where a changed path goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The rule's position in [`Rules::all`].
    pub rule: usize,
    /// The path in the container (sync actions).
    pub target: Option<String>,
}

/// Every rule of the services watched.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    all: Vec<Rule>,
    defaults: Patterns,
}

/// `root/.dockerignore`'s patterns, if it has one.
fn dockerignore(root: &Path) -> Patterns {
    std::fs::read_to_string(root.join(".dockerignore"))
        .map(|t| Patterns::parse(&t))
        .unwrap_or_default()
}

impl Rules {
    /// The rules of `services` (all when empty) of `project`. Reads `.dockerignore` files.
    pub fn new(project: &Project, services: &[String]) -> Rules {
        let mut all = Vec::new();
        for (name, svc) in &project.services {
            if !services.is_empty() && !services.contains(name) {
                continue;
            }
            let Some(develop) = &svc.develop else {
                continue;
            };
            let context = svc
                .build
                .as_ref()
                .and_then(|b| b.context.as_deref())
                .map(PathBuf::from);
            for (index, r) in develop.watch.iter().enumerate() {
                let Some(action) = Action::parse(&r.action) else {
                    continue;
                };
                let root = PathBuf::from(&r.path);
                let mut ignore = dockerignore(&root);
                if let Some(ctx) = &context
                    && ctx != &root
                {
                    ignore.extend(dockerignore(ctx));
                }
                ignore.extend(Patterns::new(&r.ignore));
                all.push(Rule {
                    service: name.clone(),
                    index,
                    root,
                    target: r.target.clone(),
                    action,
                    ignore,
                    include: Patterns::new(&r.include),
                    exec: r.exec.clone(),
                    initial_sync: r.initial_sync.unwrap_or(false),
                });
            }
        }
        Rules {
            all,
            defaults: Patterns::new(DEFAULTS),
        }
    }

    pub fn all(&self) -> &[Rule] {
        &self.all
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The rules' roots, without duplicates.
    pub fn roots(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for r in &self.all {
            if !out.contains(&r.root) {
                out.push(r.root.clone());
            }
        }
        out
    }

    /// Whether `rel` (relative to rule `i`'s root) is left out by the rule.
    pub fn ignored(&self, i: usize, rel: &str) -> bool {
        let r = &self.all[i];
        if rel.is_empty() {
            // The root itself: only the defaults apply, to its name.
            let name = r
                .root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return !name.is_empty() && self.defaults.matches(&name);
        }
        self.defaults.matches(rel)
            || r.ignore.matches(rel)
            || (!r.include.is_empty() && !r.include.matches(rel))
    }

    /// Whether rule `i` skips directory `rel` and everything under it (for walks).
    pub fn prunes(&self, i: usize, rel: &str) -> bool {
        let r = &self.all[i];
        !rel.is_empty() && (self.defaults.matches(rel) || r.ignore.matches(rel))
    }

    /// The rules `path` triggers: per service, the first rule whose root holds it and that does
    /// not ignore it.
    pub fn route(&self, path: &Path) -> Vec<Hit> {
        let mut hits: Vec<Hit> = Vec::new();
        let mut served: Vec<&str> = Vec::new();
        for (i, r) in self.all.iter().enumerate() {
            if served.contains(&r.service.as_str()) {
                continue;
            }
            let Ok(rest) = path.strip_prefix(&r.root) else {
                continue;
            };
            let rel = rest.to_string_lossy().replace('\\', "/");
            if self.ignored(i, &rel) {
                continue;
            }
            let target = r.target.as_ref().map(|t| {
                if rel.is_empty() {
                    t.clone()
                } else {
                    format!("{}/{rel}", t.trim_end_matches('/'))
                }
            });
            served.push(&r.service);
            hits.push(Hit { rule: i, target });
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(yaml_rules: serde_json::Value) -> Project {
        serde_json::from_value(serde_json::json!({
            "name": "p",
            "services": {
                "web": {"image": "busybox", "develop": {"watch": yaml_rules}},
                "api": {"image": "busybox", "develop": {"watch": [
                    {"path": "/src/app", "action": "restart"}
                ]}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn routes_to_the_first_matching_rule_of_each_service() {
        let p = project(serde_json::json!([
            {"path": "/src/app/static", "action": "sync", "target": "/www",
             "ignore": ["*.tmp", "cache/"]},
            {"path": "/src/app", "action": "sync+restart", "target": "/app"},
        ]));
        let rules = Rules::new(&p, &[]);
        let hits = rules.route(Path::new("/src/app/static/css/a.css"));
        assert_eq!(
            hits,
            [
                Hit {
                    rule: 0,
                    target: Some("/www/css/a.css".into())
                },
                Hit {
                    rule: 2,
                    target: None
                },
            ]
        );
        // Ignored by the first rule: the second one of the service takes it.
        let hits = rules.route(Path::new("/src/app/static/x.tmp"));
        assert_eq!(hits[0].rule, 1);
        assert_eq!(hits[0].target.as_deref(), Some("/app/static/x.tmp"));
        assert!(rules.route(Path::new("/src/app/.git/HEAD")).is_empty());
        assert!(rules.route(Path::new("/src/other/x")).is_empty());
        assert!(rules.route(Path::new("/src/application")).is_empty());
        let only_web = Rules::new(&p, &["web".to_string()]);
        assert_eq!(only_web.all().len(), 2);
    }

    #[test]
    fn include_narrows_and_a_file_rule_maps_to_its_target() {
        let p = project(serde_json::json!([
            {"path": "/src/app/index.html", "action": "sync", "target": "/www/index.html"},
            {"path": "/src/lib", "action": "sync", "target": "/lib", "include": ["*.js"]},
        ]));
        let rules = Rules::new(&p, &["web".to_string()]);
        let hits = rules.route(Path::new("/src/app/index.html"));
        assert_eq!(hits[0].target.as_deref(), Some("/www/index.html"));
        assert_eq!(rules.route(Path::new("/src/lib/a.js")).len(), 1);
        assert!(rules.route(Path::new("/src/lib/a.css")).is_empty());
        assert_eq!(Action::SyncRestart.name(), "sync+restart");
        assert!(Action::SyncRestart.restarts() && Action::SyncRestart.syncs());
        assert!(!Action::Restart.syncs());
    }

    #[test]
    fn defaults_cover_editors_and_git() {
        let p = Patterns::new(DEFAULTS);
        for ignored in [
            ".git/HEAD",
            "src/.index.html.swp",
            "index.html~",
            "sub/.#index.html",
            "#index.html#",
            "4913",
            "a/.goutputstream-XYZ",
            "www/.index.html.flotilla-sync-123",
        ] {
            assert!(p.matches(ignored), "{ignored}");
        }
        for kept in ["index.html", "src/app.js", ".gitignore", "git/x"] {
            assert!(!p.matches(kept), "{kept}");
        }
    }
}
