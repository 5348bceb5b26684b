//! The instructions that change only an image's config (`ENV`, `LABEL`, `WORKDIR`'s path,
//! `USER`, `EXPOSE`, `VOLUME`, `CMD`, `ENTRYPOINT`, `HEALTHCHECK`, `STOPSIGNAL`, `SHELL`,
//! `ONBUILD`, `MAINTAINER`), applied to the config document (JSON, Docker's field names) so
//! fields flotilla does not model are kept. Pure.

use serde_json::{Map, Value, json};

use super::dockerfile::{Command, Form};
use super::stages::Step;

/// The shell in effect: the config's `Shell`, else `/bin/sh -c`.
pub fn shell(config: &Value) -> Vec<String> {
    config["config"]["Shell"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
}

/// A command form as argv: exec form as is, shell form through the shell in effect.
pub fn argv(form: &Form, config: &Value) -> Vec<String> {
    match form {
        Form::Exec(v) => v.clone(),
        Form::Shell(text) => {
            let mut a = shell(config);
            a.push(text.clone());
            a
        }
    }
}

/// The config's `WorkingDir` (`/` when unset).
pub fn workdir(config: &Value) -> String {
    match config["config"]["WorkingDir"].as_str() {
        Some(w) if !w.is_empty() => w.to_string(),
        _ => "/".to_string(),
    }
}

/// `path` made absolute against the working directory, cleaned.
pub fn absolute(path: &str, workdir: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{workdir}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The config's `Env` as pairs.
pub fn env(config: &Value) -> Vec<(String, String)> {
    config["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .map(|e| match e.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (e.to_string(), String::new()),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn obj(config: &mut Value) -> &mut Map<String, Value> {
    if !config.is_object() {
        *config = json!({});
    }
    let slot = &mut config["config"];
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("config was just made an object"),
    }
}

fn set_env(config: &mut Value, key: &str, value: &str) {
    let c = obj(config);
    let list = c.entry("Env").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(a) = list.as_array_mut() {
        let entry = format!("{key}={value}");
        match a.iter().position(|e| {
            e.as_str()
                .is_some_and(|s| s.split_once('=').map_or(s, |(k, _)| k) == key)
        }) {
            Some(i) => a[i] = json!(entry),
            None => a.push(json!(entry)),
        }
    }
}

fn set_key(config: &mut Value, field: &str, key: &str) {
    let c = obj(config);
    let map = c.entry(field).or_insert_with(|| json!({}));
    if !map.is_object() {
        *map = json!({});
    }
    if let Some(m) = map.as_object_mut() {
        m.insert(key.to_string(), json!({}));
    }
}

fn nanos(d: Option<std::time::Duration>) -> Option<i64> {
    d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Applies a config-only step. `cmd_set` tells whether this stage has set `CMD` already (an
/// `ENTRYPOINT` resets an inherited `CMD`, as Docker does); returns whether this step set it.
pub fn apply(config: &mut Value, step: &Step, cmd_set: bool) -> bool {
    match &step.instruction.command {
        Command::Env(_) => {
            for (k, v) in &step.pairs {
                set_env(config, k, v);
            }
        }
        Command::Label(_) => {
            let c = obj(config);
            let labels = c.entry("Labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            if let Some(m) = labels.as_object_mut() {
                for (k, v) in &step.pairs {
                    m.insert(k.clone(), json!(v));
                }
            }
        }
        Command::Workdir(_) => {
            if let Some(w) = step.words.first() {
                let wd = absolute(w, &workdir(config));
                obj(config).insert("WorkingDir".into(), json!(wd));
            }
        }
        Command::User(_) => {
            if let Some(u) = step.words.first() {
                obj(config).insert("User".into(), json!(u));
            }
        }
        Command::StopSignal(_) => {
            if let Some(s) = step.words.first() {
                obj(config).insert("StopSignal".into(), json!(s));
            }
        }
        Command::Expose(_) => {
            for p in &step.words {
                let key = if p.contains('/') {
                    p.to_ascii_lowercase()
                } else {
                    format!("{p}/tcp")
                };
                set_key(config, "ExposedPorts", &key);
            }
        }
        Command::Volume(_) => {
            for v in &step.words {
                set_key(config, "Volumes", v);
            }
        }
        Command::Cmd(form) => {
            let a = argv(form, config);
            obj(config).insert("Cmd".into(), json!(a));
            return true;
        }
        Command::Entrypoint(form) => {
            let a = argv(form, config);
            let c = obj(config);
            c.insert("Entrypoint".into(), json!(a));
            if !cmd_set {
                c.insert("Cmd".into(), Value::Null);
            }
        }
        Command::Healthcheck(None) => {
            obj(config).insert("Healthcheck".into(), json!({"Test": ["NONE"]}));
        }
        Command::Healthcheck(Some(h)) => {
            let test: Vec<String> = match &h.test {
                Form::Exec(v) => std::iter::once("CMD".to_string())
                    .chain(v.iter().cloned())
                    .collect(),
                Form::Shell(t) => vec!["CMD-SHELL".to_string(), t.clone()],
            };
            let mut hc = json!({"Test": test});
            for (k, v) in [
                ("Interval", nanos(h.interval)),
                ("Timeout", nanos(h.timeout)),
                ("StartPeriod", nanos(h.start_period)),
                ("StartInterval", nanos(h.start_interval)),
                ("Retries", h.retries.map(i64::from)),
            ] {
                if let Some(v) = v {
                    hc[k] = json!(v);
                }
            }
            obj(config).insert("Healthcheck".into(), hc);
        }
        Command::Shell(v) => {
            obj(config).insert("Shell".into(), json!(v));
        }
        Command::Onbuild(inner) => {
            let c = obj(config);
            let list = c.entry("OnBuild").or_insert_with(|| json!([]));
            if !list.is_array() {
                *list = json!([]);
            }
            if let Some(a) = list.as_array_mut() {
                a.push(json!(format!("{} {}", inner.keyword, inner.text)));
            }
        }
        Command::Maintainer(m) => {
            config["author"] = json!(m);
        }
        _ => {}
    }
    false
}

/// Adds labels (the build's `--label`s) to the config.
pub fn add_labels(config: &mut Value, labels: &std::collections::BTreeMap<String, String>) {
    let c = obj(config);
    let l = c.entry("Labels").or_insert_with(|| json!({}));
    if !l.is_object() {
        *l = json!({});
    }
    if let Some(m) = l.as_object_mut() {
        for (k, v) in labels {
            m.insert(k.clone(), json!(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::build::{dockerfile, stages};

    fn steps(text: &str) -> Vec<Step> {
        let df = dockerfile::parse("Dockerfile", text).unwrap();
        let plan = stages::plan(&df, &stages::Options::for_host()).unwrap();
        plan.stages[plan.target].steps.clone()
    }

    #[test]
    fn config_steps_change_the_config_like_docker() {
        let mut c = json!({"config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]}});
        let mut cmd_set = false;
        for s in steps(
            "FROM x\nENV A=1 PATH=/usr/bin\nWORKDIR app\nWORKDIR ../srv\nUSER nobody\n\
             EXPOSE 80 53/UDP\nLABEL a=b\nSHELL [\"/bin/ash\", \"-eo\"]\nENTRYPOINT run me\n\
             HEALTHCHECK --interval=5s CMD true\nSTOPSIGNAL SIGINT\nVOLUME /data\n\
             ONBUILD RUN echo hi\n",
        ) {
            cmd_set |= apply(&mut c, &s, cmd_set);
        }
        let cfg = &c["config"];
        assert_eq!(cfg["Env"], json!(["PATH=/usr/bin", "A=1"]));
        assert_eq!(cfg["WorkingDir"], "/srv");
        assert_eq!(cfg["User"], "nobody");
        assert_eq!(cfg["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(cfg["Entrypoint"], json!(["/bin/ash", "-eo", "run me"]));
        assert_eq!(cfg["Cmd"], Value::Null);
        assert_eq!(cfg["Healthcheck"]["Test"], json!(["CMD-SHELL", "true"]));
        assert_eq!(cfg["Healthcheck"]["Interval"], json!(5_000_000_000i64));
        assert_eq!(cfg["StopSignal"], "SIGINT");
        assert_eq!(cfg["Volumes"], json!({"/data": {}}));
        assert_eq!(cfg["OnBuild"], json!(["RUN echo hi"]));
        assert_eq!(absolute("a/../b", "/w"), "/w/b");
    }
}
