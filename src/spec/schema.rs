//! The stack-file schema, written once in Rust and used three ways: [`check`] validates a located
//! tree and reports every unknown key and wrong type with its file, line, column, path and a
//! did-you-mean hint; [`to_json`] turns a checked tree into typed JSON (the canonical model that
//! `flotilla config` prints and the typed model is read from); [`json_schema`] renders the JSON
//! Schema kept in `schemas/` for editors. Field order here is the order `config` prints.

use serde_json::{Map as JMap, Value as J, json};

use super::error::{Diagnostic, did_you_mean};
use super::node::{Node, Path, PlainKind, Tag, Value, parse_float, parse_int, plain_kind};
use super::units;

/// The shape a value must have.
pub enum Ty {
    /// Anything at all (kept as written).
    Any,
    /// A scalar, read as a string.
    Str,
    Int,
    Num,
    Bool,
    /// A Go-style duration (`1m30s`), printed canonically.
    Duration,
    /// A byte size (`512m`, `1g`, or a number), printed as a byte count.
    Bytes,
    /// A string that must pass a check; the name says what it is in messages.
    Check(&'static str, fn(&str) -> Result<(), String>),
    Enum(&'static [&'static str]),
    List(&'static Ty),
    /// A mapping with a fixed set of keys (`x-` extensions allowed).
    Obj(&'static [F]),
    /// A mapping with free keys, each value of one shape.
    Dict(&'static Ty),
    /// Several accepted shapes, chosen by the kind of node (scalar, list, mapping, null).
    OneOf(&'static [Ty]),
    /// Only null.
    Null,
}

/// A field of an [`Ty::Obj`].
pub struct F(pub &'static str, pub Ty);

fn ok_port(s: &str) -> Result<(), String> {
    units::parse_port(s).map(|_| ())
}
fn ok_volume(s: &str) -> Result<(), String> {
    units::parse_volume(s).map(|_| ())
}

const STR_LIST: Ty = Ty::List(&Ty::Str);
const STR_OR_LIST: Ty = Ty::OneOf(&[Ty::Str, STR_LIST]);
const STR_OR_NULL: Ty = Ty::OneOf(&[Ty::Null, Ty::Str]);
/// `environment`, `labels`, `args`: a list of `K=V` or a mapping.
const LIST_OR_DICT: Ty = Ty::OneOf(&[STR_LIST, Ty::Dict(&STR_OR_NULL)]);
const DICT_STR: Ty = Ty::Dict(&Ty::Str);
const COMMAND: Ty = Ty::OneOf(&[Ty::Null, Ty::Str, STR_LIST]);
const EXTERNAL: Ty = Ty::OneOf(&[Ty::Bool, Ty::Obj(&[F("name", Ty::Str)])]);

const CONDITIONS: &[&str] = &[
    "service_started",
    "service_healthy",
    "service_completed_successfully",
];

const DEPENDS_ON: Ty = Ty::OneOf(&[
    STR_LIST,
    Ty::Dict(&Ty::Obj(&[
        F("condition", Ty::Enum(CONDITIONS)),
        F("restart", Ty::Bool),
        F("required", Ty::Bool),
    ])),
]);

const PORT_LONG: Ty = Ty::Obj(&[
    F("name", Ty::Str),
    F("mode", Ty::Enum(&["ingress", "host"])),
    F("host_ip", Ty::Str),
    F("target", Ty::Int),
    F("published", Ty::Str),
    F("protocol", Ty::Enum(&["tcp", "udp", "sctp"])),
    F("app_protocol", Ty::Str),
]);

const VOLUME_LONG: Ty = Ty::Obj(&[
    F(
        "type",
        Ty::Enum(&["bind", "volume", "tmpfs", "npipe", "cluster", "image"]),
    ),
    F("source", Ty::Str),
    F("target", Ty::Str),
    F("read_only", Ty::Bool),
    F("consistency", Ty::Str),
    F(
        "bind",
        Ty::Obj(&[
            F(
                "propagation",
                Ty::Enum(&[
                    "shared", "slave", "private", "rshared", "rslave", "rprivate",
                ]),
            ),
            F("create_host_path", Ty::Bool),
            F(
                "recursive",
                Ty::Enum(&["enabled", "disabled", "writable", "readonly"]),
            ),
            F("selinux", Ty::Enum(&["z", "Z"])),
        ]),
    ),
    F(
        "volume",
        Ty::Obj(&[
            F("labels", LIST_OR_DICT),
            F("nocopy", Ty::Bool),
            F("subpath", Ty::Str),
        ]),
    ),
    F(
        "tmpfs",
        Ty::Obj(&[F("size", Ty::Bytes), F("mode", Ty::Int)]),
    ),
    F("image", Ty::Obj(&[F("subpath", Ty::Str)])),
]);

const FILE_REF: Ty = Ty::OneOf(&[
    Ty::Str,
    Ty::Obj(&[
        F("source", Ty::Str),
        F("target", Ty::Str),
        F("uid", Ty::Str),
        F("gid", Ty::Str),
        F("mode", Ty::Int),
    ]),
]);

const HEALTHCHECK: Ty = Ty::Obj(&[
    F("disable", Ty::Bool),
    F("interval", Ty::Duration),
    F("retries", Ty::Int),
    F("test", COMMAND),
    F("timeout", Ty::Duration),
    F("start_period", Ty::Duration),
    F("start_interval", Ty::Duration),
]);

const RESOURCES: Ty = Ty::Obj(&[
    F("cpus", Ty::Num),
    F("memory", Ty::Bytes),
    F("pids", Ty::Int),
    F(
        "devices",
        Ty::List(&Ty::Obj(&[
            F("capabilities", STR_LIST),
            F("count", Ty::OneOf(&[Ty::Int, Ty::Str])),
            F("device_ids", STR_LIST),
            F("driver", Ty::Str),
            F("options", DICT_STR),
        ])),
    ),
    F("generic_resources", Ty::List(&Ty::Any)),
]);

const UPDATE_CONFIG: Ty = Ty::Obj(&[
    F("parallelism", Ty::Int),
    F("delay", Ty::Duration),
    F("failure_action", Ty::Str),
    F("monitor", Ty::Duration),
    F("max_failure_ratio", Ty::Num),
    F("order", Ty::Enum(&["start-first", "stop-first"])),
]);

const DEPLOY: Ty = Ty::Obj(&[
    F("mode", Ty::Str),
    F("replicas", Ty::Int),
    F("labels", LIST_OR_DICT),
    F("update_config", UPDATE_CONFIG),
    F("rollback_config", UPDATE_CONFIG),
    F(
        "resources",
        Ty::Obj(&[F("limits", RESOURCES), F("reservations", RESOURCES)]),
    ),
    F(
        "restart_policy",
        Ty::Obj(&[
            F("condition", Ty::Enum(&["none", "on-failure", "any"])),
            F("delay", Ty::Duration),
            F("max_attempts", Ty::Int),
            F("window", Ty::Duration),
        ]),
    ),
    F(
        "placement",
        Ty::Obj(&[
            F("constraints", STR_LIST),
            F("preferences", Ty::List(&Ty::Obj(&[F("spread", Ty::Str)]))),
            F("max_replicas_per_node", Ty::Int),
        ]),
    ),
    F("endpoint_mode", Ty::Str),
]);

const ULIMITS: Ty = Ty::Dict(&Ty::OneOf(&[
    Ty::Int,
    Ty::Obj(&[F("soft", Ty::Int), F("hard", Ty::Int)]),
]));

const BUILD: Ty = Ty::OneOf(&[
    Ty::Str,
    Ty::Obj(&[
        F("context", Ty::Str),
        F("dockerfile", Ty::Str),
        F("dockerfile_inline", Ty::Str),
        F("entitlements", STR_LIST),
        F("args", LIST_OR_DICT),
        F("ssh", LIST_OR_DICT),
        F("labels", LIST_OR_DICT),
        F("cache_from", STR_LIST),
        F("cache_to", STR_LIST),
        F("no_cache", Ty::Bool),
        F("additional_contexts", LIST_OR_DICT),
        F("network", Ty::Str),
        F("pull", Ty::Bool),
        F("target", Ty::Str),
        F("shm_size", Ty::Bytes),
        F("extra_hosts", LIST_OR_DICT),
        F("isolation", Ty::Str),
        F("privileged", Ty::Bool),
        F("secrets", Ty::List(&FILE_REF)),
        F("tags", STR_LIST),
        F("ulimits", ULIMITS),
        F("platforms", STR_LIST),
    ]),
]);

const WATCH_ACTIONS: &[&str] = &["rebuild", "sync", "restart", "sync+restart", "sync+exec"];

const DEVELOP: Ty = Ty::Obj(&[F(
    "watch",
    Ty::List(&Ty::Obj(&[
        F("path", Ty::Str),
        F("action", Ty::Enum(WATCH_ACTIONS)),
        F("target", Ty::Str),
        F("ignore", STR_OR_LIST),
        F("include", STR_OR_LIST),
        F("initial_sync", Ty::Bool),
        F(
            "exec",
            Ty::Obj(&[
                F("command", COMMAND),
                F("user", Ty::Str),
                F("privileged", Ty::Bool),
                F("working_dir", Ty::Str),
                F("environment", LIST_OR_DICT),
            ]),
        ),
    ])),
)]);

const HOOK: Ty = Ty::List(&Ty::Obj(&[
    F("command", COMMAND),
    F("user", Ty::Str),
    F("privileged", Ty::Bool),
    F("working_dir", Ty::Str),
    F("environment", LIST_OR_DICT),
]));

const NETWORK_ATTACH: Ty = Ty::OneOf(&[
    STR_LIST,
    Ty::Dict(&Ty::OneOf(&[
        Ty::Null,
        Ty::Obj(&[
            F("aliases", STR_LIST),
            F("driver_opts", DICT_STR),
            F("gw_priority", Ty::Int),
            F("interface_name", Ty::Str),
            F("ipv4_address", Ty::Str),
            F("ipv6_address", Ty::Str),
            F("link_local_ips", STR_LIST),
            F("mac_address", Ty::Str),
            F("priority", Ty::Int),
        ]),
    ])),
]);

const ENV_FILE: Ty = Ty::OneOf(&[
    Ty::Str,
    Ty::List(&Ty::OneOf(&[
        Ty::Str,
        Ty::Obj(&[
            F("path", Ty::Str),
            F("required", Ty::Bool),
            F("format", Ty::Str),
        ]),
    ])),
]);

const LOGGING: Ty = Ty::Obj(&[F("driver", Ty::Str), F("options", Ty::Dict(&STR_OR_NULL))]);

/// Every key a service may have, in the order `config` prints them.
pub const SERVICE_FIELDS: &[F] = &[
    F("annotations", LIST_OR_DICT),
    F("attach", Ty::Bool),
    F("blkio_config", Ty::Any),
    F("build", BUILD),
    F("cap_add", STR_LIST),
    F("cap_drop", STR_LIST),
    F("cgroup", Ty::Enum(&["host", "private"])),
    F("cgroup_parent", Ty::Str),
    F("command", COMMAND),
    F("configs", Ty::List(&FILE_REF)),
    F("container_name", Ty::Str),
    F("cpu_count", Ty::Int),
    F("cpu_percent", Ty::Int),
    F("cpu_period", Ty::Int),
    F("cpu_quota", Ty::Int),
    F("cpu_rt_period", Ty::Int),
    F("cpu_rt_runtime", Ty::Int),
    F("cpu_shares", Ty::Int),
    F("cpus", Ty::Num),
    F("cpuset", Ty::Str),
    F("depends_on", DEPENDS_ON),
    F("deploy", DEPLOY),
    F("develop", DEVELOP),
    F("device_cgroup_rules", STR_LIST),
    F(
        "devices",
        Ty::List(&Ty::OneOf(&[
            Ty::Str,
            Ty::Obj(&[
                F("source", Ty::Str),
                F("target", Ty::Str),
                F("permissions", Ty::Str),
            ]),
        ])),
    ),
    F("dns", STR_OR_LIST),
    F("dns_opt", STR_LIST),
    F("dns_search", STR_OR_LIST),
    F("domainname", Ty::Str),
    F("entrypoint", COMMAND),
    F("env_file", ENV_FILE),
    F("environment", LIST_OR_DICT),
    F("expose", Ty::List(&Ty::Str)),
    F(
        "extends",
        Ty::OneOf(&[
            Ty::Str,
            Ty::Obj(&[F("service", Ty::Str), F("file", Ty::Str)]),
        ]),
    ),
    F("external_links", STR_LIST),
    F("extra_hosts", LIST_OR_DICT),
    F("group_add", STR_LIST),
    F("healthcheck", HEALTHCHECK),
    F("hostname", Ty::Str),
    F("image", Ty::Str),
    F("init", Ty::Bool),
    F("ipc", Ty::Str),
    F("isolation", Ty::Str),
    F("label_file", STR_OR_LIST),
    F("labels", LIST_OR_DICT),
    F("links", STR_LIST),
    F("logging", LOGGING),
    F("mac_address", Ty::Str),
    F("mem_limit", Ty::Bytes),
    F("mem_reservation", Ty::Bytes),
    F("mem_swappiness", Ty::Int),
    F("memswap_limit", Ty::Bytes),
    F("network_mode", Ty::Str),
    F("networks", NETWORK_ATTACH),
    F("oom_kill_disable", Ty::Bool),
    F("oom_score_adj", Ty::Int),
    F("pid", Ty::Str),
    F("pids_limit", Ty::Int),
    F("platform", Ty::Str),
    F(
        "ports",
        Ty::List(&Ty::OneOf(&[Ty::Check("port", ok_port), PORT_LONG])),
    ),
    F("post_start", HOOK),
    F("pre_stop", HOOK),
    F("privileged", Ty::Bool),
    F("profiles", STR_LIST),
    F(
        "pull_policy",
        Ty::Enum(&[
            "always",
            "never",
            "missing",
            "if_not_present",
            "build",
            "daily",
            "weekly",
        ]),
    ),
    F("read_only", Ty::Bool),
    F(
        "restart",
        Ty::Check("restart policy", |s| {
            let ok = matches!(s, "no" | "always" | "unless-stopped" | "on-failure")
                || s.strip_prefix("on-failure:")
                    .is_some_and(|n| n.parse::<u32>().is_ok());
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "invalid restart policy \"{s}\" (use no, always, unless-stopped, on-failure or on-failure:N)"
                ))
            }
        }),
    ),
    F("runtime", Ty::Str),
    F("scale", Ty::Int),
    F("secrets", Ty::List(&FILE_REF)),
    F("security_opt", STR_LIST),
    F("shm_size", Ty::Bytes),
    F("stdin_open", Ty::Bool),
    F("stop_grace_period", Ty::Duration),
    F("stop_signal", Ty::Str),
    F("storage_opt", Ty::Dict(&Ty::Any)),
    F("sysctls", LIST_OR_DICT),
    F("tmpfs", STR_OR_LIST),
    F("tty", Ty::Bool),
    F("ulimits", ULIMITS),
    F("user", Ty::Str),
    F("userns_mode", Ty::Str),
    F("uts", Ty::Str),
    F(
        "volumes",
        Ty::List(&Ty::OneOf(&[Ty::Check("volume", ok_volume), VOLUME_LONG])),
    ),
    F("volumes_from", STR_LIST),
    F("working_dir", Ty::Str),
];

const NETWORK: Ty = Ty::OneOf(&[
    Ty::Null,
    Ty::Obj(&[
        F("name", Ty::Str),
        F("driver", Ty::Str),
        F("driver_opts", DICT_STR),
        F(
            "ipam",
            Ty::Obj(&[
                F("driver", Ty::Str),
                F(
                    "config",
                    Ty::List(&Ty::Obj(&[
                        F("subnet", Ty::Str),
                        F("ip_range", Ty::Str),
                        F("gateway", Ty::Str),
                        F("aux_addresses", DICT_STR),
                    ])),
                ),
                F("options", DICT_STR),
            ]),
        ),
        F("external", EXTERNAL),
        F("internal", Ty::Bool),
        F("enable_ipv4", Ty::Bool),
        F("enable_ipv6", Ty::Bool),
        F("attachable", Ty::Bool),
        F("labels", LIST_OR_DICT),
    ]),
]);

const VOLUME: Ty = Ty::OneOf(&[
    Ty::Null,
    Ty::Obj(&[
        F("name", Ty::Str),
        F("driver", Ty::Str),
        F("driver_opts", DICT_STR),
        F("external", EXTERNAL),
        F("labels", LIST_OR_DICT),
    ]),
]);

const SECRET_OR_CONFIG: Ty = Ty::Obj(&[
    F("name", Ty::Str),
    F("file", Ty::Str),
    F("environment", Ty::Str),
    F("content", Ty::Str),
    F("external", EXTERNAL),
    F("labels", LIST_OR_DICT),
    F("driver", Ty::Str),
    F("driver_opts", DICT_STR),
    F("template_driver", Ty::Str),
]);

const INCLUDE: Ty = Ty::List(&Ty::OneOf(&[
    Ty::Str,
    Ty::Obj(&[
        F("path", STR_OR_LIST),
        F("project_directory", Ty::Str),
        F("env_file", STR_OR_LIST),
    ]),
]));

/// The whole stack file.
pub const TOP: Ty = Ty::Obj(&[
    F("version", Ty::Str),
    F("name", Ty::Str),
    F("include", INCLUDE),
    F(
        "services",
        Ty::Dict(&Ty::OneOf(&[Ty::Null, Ty::Obj(SERVICE_FIELDS)])),
    ),
    F("networks", Ty::Dict(&NETWORK)),
    F("volumes", Ty::Dict(&VOLUME)),
    F("secrets", Ty::Dict(&SECRET_OR_CONFIG)),
    F("configs", Ty::Dict(&SECRET_OR_CONFIG)),
]);

fn describe(ty: &Ty) -> String {
    match ty {
        Ty::Any => "any value".into(),
        Ty::Str => "a string".into(),
        Ty::Int => "an integer".into(),
        Ty::Num => "a number".into(),
        Ty::Bool => "a boolean".into(),
        Ty::Duration => "a duration like 1m30s".into(),
        Ty::Bytes => "a byte size like 512m".into(),
        Ty::Check(what, _) => format!("a {what} string"),
        Ty::Enum(vals) => format!("one of {}", vals.join(", ")),
        Ty::List(_) => "a list".into(),
        Ty::Obj(_) | Ty::Dict(_) => "a mapping".into(),
        Ty::Null => "null".into(),
        Ty::OneOf(alts) => {
            let mut names: Vec<String> = Vec::new();
            for a in alts.iter() {
                let d = describe(a);
                if !names.contains(&d) {
                    names.push(d);
                }
            }
            match names.len() {
                0 => "nothing".into(),
                1 => names.remove(0),
                _ => {
                    let last = names.pop().unwrap_or_default();
                    format!("{} or {}", names.join(", "), last)
                }
            }
        }
    }
}

#[derive(PartialEq, Clone, Copy)]
enum Kind {
    Null,
    Scalar,
    Seq,
    Map,
}

fn kind(n: &Node) -> Kind {
    match n.value {
        Value::Null => Kind::Null,
        Value::Scalar(_) => Kind::Scalar,
        Value::Seq(_) => Kind::Seq,
        Value::Map(_) => Kind::Map,
    }
}

fn accepts(ty: &Ty, k: Kind) -> bool {
    match ty {
        Ty::Any => true,
        Ty::Null => k == Kind::Null,
        Ty::List(_) => k == Kind::Seq || k == Kind::Null,
        Ty::Obj(_) | Ty::Dict(_) => k == Kind::Map || k == Kind::Null,
        Ty::OneOf(alts) => alts.iter().any(|a| accepts(a, k)),
        _ => k == Kind::Scalar,
    }
}

/// Picks the alternative of a [`Ty::OneOf`] that takes this kind of node; an explicit `Null`
/// alternative wins for null nodes.
fn pick<'a>(alts: &'a [Ty], n: &Node) -> Option<&'a Ty> {
    let k = kind(n);
    if k == Kind::Null
        && let Some(t) = alts.iter().find(|a| matches!(a, Ty::Null))
    {
        return Some(t);
    }
    alts.iter().find(|a| accepts(a, k))
}

/// Checks `node` against `ty`, appending every problem found to `out`.
pub fn check(node: &Node, ty: &Ty, path: &Path, out: &mut Vec<Diagnostic>) {
    // A `!reset` value is dropped by the merge, whatever it holds; but a whole document tagged
    // `!reset` has no parent to drop it from and is kept, so it is checked like any other.
    if node.tag == Some(Tag::Reset) && path.depth() > 0 {
        return;
    }
    let mismatch = |out: &mut Vec<Diagnostic>| {
        out.push(Diagnostic::new(
            &node.loc,
            path,
            format!("expected {}, found {}", describe(ty), node.kind()),
        ));
    };
    match ty {
        Ty::Any => {}
        Ty::Null => {
            if !node.is_null() {
                mismatch(out);
            }
        }
        Ty::OneOf(alts) => match pick(alts, node) {
            Some(t) => check(node, t, path, out),
            None => mismatch(out),
        },
        Ty::List(item) => match &node.value {
            Value::Null => {}
            Value::Seq(items) => {
                for (i, it) in items.iter().enumerate() {
                    check(it, item, &path.index(i), out);
                }
            }
            _ => mismatch(out),
        },
        Ty::Dict(item) => match &node.value {
            Value::Null => {}
            Value::Map(m) => {
                for (k, v) in m.iter() {
                    check(v, item, &path.key(&k.name), out);
                }
            }
            _ => mismatch(out),
        },
        Ty::Obj(fields) => match &node.value {
            Value::Null => {}
            Value::Map(m) => {
                for (k, v) in m.iter() {
                    if k.name.starts_with("x-") {
                        continue;
                    }
                    match fields.iter().find(|f| f.0 == k.name) {
                        Some(f) => check(v, &f.1, &path.key(&k.name), out),
                        None => {
                            let mut d =
                                Diagnostic::new(&k.loc, path, format!("unknown key `{}`", k.name));
                            if let Some(s) = did_you_mean(&k.name, fields.iter().map(|f| f.0)) {
                                d = d.with_hint(format!("did you mean `{s}`?"));
                            }
                            out.push(d);
                        }
                    }
                }
            }
            _ => mismatch(out),
        },
        scalar => {
            let Value::Scalar(s) = &node.value else {
                mismatch(out);
                return;
            };
            let text = s.text.as_str();
            let problem = match scalar {
                Ty::Str => None,
                Ty::Int => parse_int(text)
                    .is_none()
                    .then(|| format!("expected an integer, found \"{text}\"")),
                Ty::Num => (parse_int(text).is_none() && parse_float(text).is_none())
                    .then(|| format!("expected a number, found \"{text}\"")),
                Ty::Bool => node
                    .as_bool()
                    .is_none()
                    .then(|| format!("expected true or false, found \"{text}\"")),
                Ty::Duration => units::parse_duration(text).err(),
                Ty::Bytes => {
                    if parse_int(text).is_some() {
                        None
                    } else {
                        units::parse_bytes(text).err()
                    }
                }
                Ty::Check(_, f) => f(text).err(),
                Ty::Enum(vals) => (!vals.contains(&text)).then(|| {
                    let mut m = format!("\"{text}\" is not one of {}", vals.join(", "));
                    if let Some(s) = did_you_mean(text, vals.iter().copied()) {
                        m.push_str(&format!(" (hint: did you mean `{s}`?)"));
                    }
                    m
                }),
                _ => None,
            };
            if let Some(p) = problem {
                out.push(Diagnostic::new(&node.loc, path, p));
            }
        }
    }
}

/// Looks up the shape of the field `name` in an object type (through `OneOf`s).
pub fn field<'a>(ty: &'a Ty, name: &str) -> Option<&'a Ty> {
    match ty {
        Ty::Obj(fields) => fields.iter().find(|f| f.0 == name).map(|f| &f.1),
        Ty::OneOf(alts) => alts.iter().find_map(|a| field(a, name)),
        _ => None,
    }
}

fn scalar_json(text: &str, quoted: bool) -> J {
    if quoted {
        return J::String(text.to_string());
    }
    match plain_kind(text) {
        PlainKind::Bool(b) => J::Bool(b),
        PlainKind::Int(i) => J::from(i),
        PlainKind::Float(f) => serde_json::Number::from_f64(f)
            .map(J::Number)
            .unwrap_or_else(|| J::String(text.to_string())),
        PlainKind::Str => J::String(text.to_string()),
    }
}

/// Converts a checked tree to typed JSON. Dict keys come out sorted (as `docker compose config`
/// prints them), object keys in schema order, `x-` extensions last.
pub fn to_json(node: &Node, ty: &Ty) -> J {
    match (&node.value, ty) {
        (Value::Null, _) => J::Null,
        (_, Ty::OneOf(alts)) => match pick(alts, node) {
            Some(t) => to_json(node, t),
            None => any_json(node),
        },
        (Value::Seq(items), Ty::List(item)) => {
            J::Array(items.iter().map(|i| to_json(i, item)).collect())
        }
        (Value::Map(m), Ty::Dict(item)) => {
            let mut entries: Vec<(&str, J)> = m
                .iter()
                .map(|(k, v)| (k.name.as_str(), to_json(v, item)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            J::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            )
        }
        (Value::Map(m), Ty::Obj(fields)) => {
            let mut out = JMap::new();
            for f in fields.iter() {
                if let Some(v) = m.get(f.0) {
                    out.insert(f.0.to_string(), to_json(v, &f.1));
                }
            }
            for (k, v) in m.iter() {
                if k.name.starts_with("x-") || !fields.iter().any(|f| f.0 == k.name) {
                    out.insert(k.name.clone(), any_json(v));
                }
            }
            J::Object(out)
        }
        (Value::Scalar(s), t) => {
            let text = s.text.as_str();
            match t {
                Ty::Int => parse_int(text)
                    .map(J::from)
                    .unwrap_or_else(|| J::from(text)),
                Ty::Num => parse_int(text)
                    .map(J::from)
                    .or_else(|| {
                        parse_float(text)
                            .and_then(serde_json::Number::from_f64)
                            .map(J::Number)
                    })
                    .unwrap_or_else(|| J::from(text)),
                Ty::Bool => node.as_bool().map(J::Bool).unwrap_or_else(|| J::from(text)),
                Ty::Duration => units::parse_duration(text)
                    .map(|d| J::from(units::format_duration(d)))
                    .unwrap_or_else(|_| J::from(text)),
                Ty::Bytes => parse_int(text)
                    .map(J::from)
                    .or_else(|| units::parse_bytes(text).ok().map(J::from))
                    .unwrap_or_else(|| J::from(text)),
                Ty::Any => scalar_json(text, s.quoted),
                _ => J::String(text.to_string()),
            }
        }
        _ => any_json(node),
    }
}

/// A tree as JSON with types guessed from the YAML core schema (for `x-` extensions and `Any`).
pub fn any_json(node: &Node) -> J {
    match &node.value {
        Value::Null => J::Null,
        Value::Scalar(s) => scalar_json(&s.text, s.quoted),
        Value::Seq(items) => J::Array(items.iter().map(any_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| (k.name.clone(), any_json(v)))
                .collect(),
        ),
    }
}

/// The JSON Schema (draft 2020-12) of what [`check`] accepts.
pub fn json_schema() -> J {
    let mut root = schema_of(&TOP);
    if let J::Object(o) = &mut root {
        o.insert(
            "$schema".into(),
            J::from("https://json-schema.org/draft/2020-12/schema"),
        );
        o.insert("$id".into(), J::from("flotilla-compose.schema.json"));
        o.insert(
            "title".into(),
            J::from("flotilla stack file (Compose Specification)"),
        );
    }
    root
}

fn schema_of(ty: &Ty) -> J {
    let scalar = json!({"type": ["string", "number", "boolean"]});
    match ty {
        Ty::Any => json!({}),
        Ty::Null => json!({"type": "null"}),
        Ty::Str => scalar,
        Ty::Int => json!({"type": ["integer", "string"]}),
        Ty::Num => json!({"type": ["number", "string"]}),
        Ty::Bool => json!({"type": ["boolean", "string"]}),
        Ty::Duration => json!({"type": "string", "description": "a duration like 1m30s"}),
        Ty::Bytes => json!({"type": ["integer", "string"], "description": "a byte size like 512m"}),
        Ty::Check(what, _) => {
            json!({"type": ["string", "integer"], "description": format!("a {what}")})
        }
        Ty::Enum(vals) => json!({"enum": vals}),
        Ty::List(item) => json!({"type": ["array", "null"], "items": schema_of(item)}),
        Ty::Dict(item) => {
            json!({"type": ["object", "null"], "additionalProperties": schema_of(item)})
        }
        Ty::Obj(fields) => {
            let mut props = JMap::new();
            for f in fields.iter() {
                props.insert(f.0.to_string(), schema_of(&f.1));
            }
            json!({
                "type": ["object", "null"],
                "properties": props,
                "patternProperties": {"^x-": {}},
                "additionalProperties": false
            })
        }
        Ty::OneOf(alts) => json!({"anyOf": alts.iter().map(schema_of).collect::<Vec<_>>()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse;

    fn errors(text: &str) -> Vec<String> {
        let docs = parse(text, "c.yaml").expect("yaml");
        let mut out = Vec::new();
        check(&docs[0], &TOP, &Path::root(), &mut out);
        out.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn unknown_key_with_hint() {
        let e = errors("services:\n  web:\n    image: nginx\n    enviroment:\n      A: b\n");
        assert_eq!(
            e,
            vec![
                "c.yaml:4:5: services.web: unknown key `enviroment` (hint: did you mean `environment`?)"
            ]
        );
    }

    #[test]
    fn wrong_types_all_reported() {
        let e = errors(
            "services:\n  web:\n    image: [a]\n    ports:\n      - 80\n      - 99999\n    scale: many\n    healthcheck:\n      interval: 5x\n",
        );
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(
            e[0].starts_with("c.yaml:3:12: services.web.image: expected a string, found a list")
        );
        assert!(
            e[1].starts_with("c.yaml:6:9: services.web.ports[1]: "),
            "{}",
            e[1]
        );
        assert!(e[2].starts_with("c.yaml:7:12: services.web.scale: expected an integer"));
        assert!(e[3].starts_with("c.yaml:9:17: services.web.healthcheck.interval: "));
    }

    #[test]
    fn extensions_and_reset_are_accepted() {
        assert!(
            errors("x-foo: 1\nservices:\n  a:\n    x-bar: {}\n    ports: !reset null\n").is_empty()
        );
    }

    #[test]
    fn enum_hint() {
        let e = errors(
            "services:\n  a:\n    depends_on:\n      b:\n        condition: service_healty\n",
        );
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("did you mean `service_healthy`"), "{}", e[0]);
    }

    #[test]
    fn json_types_follow_schema() {
        let docs = parse(
            "services:\n  a:\n    image: \"1\"\n    scale: \"3\"\n    mem_limit: 1k\n    environment:\n      B: true\n      A: 1\n",
            "c.yaml",
        )
        .expect("yaml");
        let j = to_json(&docs[0], &TOP);
        assert_eq!(
            j,
            json!({"services": {"a": {"environment": {"A": "1", "B": "true"}, "image": "1", "mem_limit": 1024, "scale": 3}}})
        );
    }
}
