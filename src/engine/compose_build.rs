//! Compose's `build:` sections as build requests for the executor ([`super::build`]): the
//! reconciler builds a service's image during `up` when the plan says so (missing image with a
//! `build:` section, `pull_policy: build`, `up --build`), and before a one-off `run` that needs
//! it. The context is read on the daemon's machine (the stack's paths are absolute): a daemon
//! reached over TCP from another machine cannot build a stack's images this way.

use std::path::{Path, PathBuf};

use crate::api::types::BuildOptions;
use crate::engine::build::BuildRequest;
use crate::plan::up::image_ref;
use crate::spec::model::Service;

/// The image a one-off `run` of `service` must build first, if any: `pull_policy: build`, or a
/// `build:` section and no such image in the store.
pub fn needs_build(root: &Path, project: &str, name: &str, service: &Service) -> Option<String> {
    service.build.as_ref()?;
    let image = image_ref(project, name, service)?;
    if service.pull_policy.as_deref() == Some("build") {
        return Some(image);
    }
    let store = crate::image::store::Store::open(root).ok()?;
    let reference = crate::image::reference::Reference::parse(&image).ok()?;
    match crate::image::record::load(&store, &reference.to_string()) {
        Ok(_) => None,
        Err(_) => Some(image),
    }
}

/// The `build:` keys a build honours besides the modelled ones.
const HONOURED: &[&str] = &["network", "no_cache", "pull", "shm_size", "extra_hosts"];

/// `build.shm_size` and `build.extra_hosts` of a canonical `build:` section (a byte count or a
/// size like `256m`; a list of `name=ip` / `name:ip`) into `options`.
pub fn run_options(
    service: &str,
    shm_size: Option<&serde_json::Value>,
    extra_hosts: Option<&serde_json::Value>,
    options: &mut BuildOptions,
) -> Result<(), String> {
    options.shm_size = match shm_size {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(match (v.as_u64(), v.as_str()) {
            (Some(n), _) => n,
            (None, Some(t)) => crate::spec::units::parse_bytes(t)
                .map_err(|e| format!("service {service}: build.shm_size: {e}"))?,
            _ => {
                return Err(format!(
                    "service {service}: build.shm_size: not a size: {v}"
                ));
            }
        }),
    };
    options.extra_hosts = match extra_hosts {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| {
                    format!("service {service}: build.extra_hosts: not a string: {i}")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(ip) => Ok(format!("{k}={ip}")),
                None => Err(format!(
                    "service {service}: build.extra_hosts.{k}: not a string"
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(v) => {
            return Err(format!(
                "service {service}: build.extra_hosts: a list or a mapping, not {v}"
            ));
        }
    };
    if options.shm_size == Some(0) {
        return Err(format!(
            "service {service}: build.shm_size: must be more than 0"
        ));
    }
    check_extra_hosts(&options.extra_hosts).map_err(|e| format!("service {service}: build.{e}"))
}

/// Each entry must be `name:ip` or `name=ip` (the error names the bad one).
pub fn check_extra_hosts(entries: &[String]) -> Result<(), String> {
    for e in entries {
        crate::runtime::etcfiles::parse_extra_host(e).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The build request of service `name`'s `build:` section, tagged `image` and its `tags`, and
/// warnings for the keys it cannot honour (`secrets`, `ssh`, `cache_from`, …).
pub fn request(
    name: &str,
    service: &Service,
    image: &str,
) -> Result<(BuildRequest, Vec<String>), String> {
    let Some(b) = &service.build else {
        return Err(format!("service {name}: no build section"));
    };
    let context = PathBuf::from(b.context.clone().unwrap_or_else(|| ".".to_string()));
    let mut options = BuildOptions {
        target: b.target.clone(),
        ..BuildOptions::default()
    };
    match (&b.dockerfile_inline, &b.dockerfile) {
        (Some(text), _) => {
            options.dockerfile = Some("dockerfile_inline".to_string());
            options.dockerfile_inline = Some(text.clone());
        }
        (None, file) => {
            let path = match file {
                Some(f) if Path::new(f).is_absolute() => PathBuf::from(f),
                Some(f) => context.join(f),
                None => context.join("Dockerfile"),
            };
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "service {name}: cannot read the Dockerfile {}: {e}",
                    path.display()
                )
            })?;
            options.dockerfile = Some(path.display().to_string());
            options.dockerfile_inline = Some(text);
        }
    }
    for (k, v) in &b.args {
        if let Some(v) = v {
            options.build_args.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &b.labels {
        options
            .labels
            .insert(k.clone(), v.clone().unwrap_or_default());
    }
    options.tags = std::iter::once(image.to_string())
        .chain(b.tags.iter().cloned())
        .collect();
    if let Some(n) = b.extra.get("network").and_then(|v| v.as_str())
        && n != "default"
    {
        options.network = Some(n.to_string());
    }
    options.no_cache = b.extra.get("no_cache").and_then(|v| v.as_bool()) == Some(true);
    options.pull = b.extra.get("pull").and_then(|v| v.as_bool()) == Some(true);
    run_options(
        name,
        b.extra.get("shm_size"),
        b.extra.get("extra_hosts"),
        &mut options,
    )?;
    let warnings = b
        .extra
        .keys()
        .filter(|k| !HONOURED.contains(&k.as_str()))
        .map(|k| {
            format!("service {name}: build.{k} is not supported by flotilla's builder: ignored")
        })
        .collect();
    Ok((
        BuildRequest {
            context,
            options,
            cancel: Default::default(),
        },
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(
        shm: Option<serde_json::Value>,
        hosts: Option<serde_json::Value>,
    ) -> Result<BuildOptions, String> {
        let mut o = BuildOptions::default();
        run_options("web", shm.as_ref(), hosts.as_ref(), &mut o)?;
        Ok(o)
    }

    #[test]
    fn shm_size_and_extra_hosts_of_a_build_section() {
        let o = opts(
            Some(json!(1048576)),
            Some(json!(["a=10.0.0.1", "b:10.0.0.2"])),
        )
        .unwrap();
        assert_eq!(o.shm_size, Some(1 << 20));
        assert_eq!(o.extra_hosts, ["a=10.0.0.1", "b:10.0.0.2"]);
        let o = opts(Some(json!("2m")), Some(json!({"c": "::1"}))).unwrap();
        assert_eq!(o.shm_size, Some(2 << 20));
        assert_eq!(o.extra_hosts, ["c=::1"]);
        assert_eq!(opts(None, None).unwrap(), BuildOptions::default());
        for (shm, hosts, want) in [
            (Some(json!(0)), None, "build.shm_size: must be more than 0"),
            (Some(json!("lots")), None, "build.shm_size"),
            (
                None,
                Some(json!(["nocolon"])),
                "expected host:ip or host=ip",
            ),
            (None, Some(json!(["h:not-an-ip"])), "not an IP address"),
            (None, Some(json!(7)), "a list or a mapping"),
        ] {
            let e = opts(shm.clone(), hosts.clone()).unwrap_err();
            assert!(
                e.starts_with("service web: ") && e.contains(want),
                "{shm:?} {hosts:?}: {e}"
            );
        }
    }
}
