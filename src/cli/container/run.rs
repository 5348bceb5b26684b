//! `container create` and `container run` through the daemon: the flags become a
//! [`ContainerCreate`] (validated here first, so a typo costs no request), the daemon creates
//! and starts the container. Detached, the id is printed; attached without `-i`/`-t`, the log
//! stream is opened before the start (nothing is missed however fast the container exits), its
//! lines go to stdout and stderr as they come, signals this command receives are sent to the
//! container (Docker's sig-proxy), and the command exits with the container's status. `--rm`
//! is the daemon's `auto_remove`: it removes the container after its exit even when this
//! command is gone. With `-i`/`-t` it is attached through the daemon's attach stream
//! ([`super::attach_api`]).

use std::io::Write;
use std::path::PathBuf;

use super::{Failure, RunArgs, env_entry, fail};
use crate::api::client::{Client, ClientError, EventStream, EventsQuery, LogsQuery};
use crate::api::types::{Bind, ContainerCreate, LogLine, PublishPort, Tmpfs, VolumeMount};
use crate::cli::{ProjectArgs, out};
use crate::engine::events::EventFilter;
use crate::spec::units;

/// The exit status of an engine failure before the container runs.
const ENGINE: u8 = 125;

fn env_files(files: &[PathBuf]) -> Result<Vec<String>, Failure> {
    let mut env = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::new(ENGINE, format!("env file {}: {e}", file.display())))?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            env.extend(env_entry(line));
        }
    }
    Ok(env)
}

/// `DST[:size=64m,mode=1777]`.
pub(super) fn parse_tmpfs(text: &str) -> Result<Tmpfs, String> {
    let (target, options) = text.split_once(':').unwrap_or((text, ""));
    let mut mount = Tmpfs {
        target: target.to_string(),
        ..Default::default()
    };
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("size", v)) => mount.size = Some(units::parse_bytes(v)?),
            Some(("mode", v)) => {
                mount.mode = Some(
                    u32::from_str_radix(v, 8)
                        .map_err(|_| format!("tmpfs {text:?}: mode {v:?} is not octal"))?,
                );
            }
            // Mount flags Docker accepts; the runtime applies its safe defaults.
            None if matches!(
                option,
                "rw" | "ro" | "exec" | "noexec" | "nosuid" | "suid" | "nodev" | "dev"
            ) => {}
            _ => return Err(format!("tmpfs {text:?}: unsupported option {option:?}")),
        }
    }
    Ok(mount)
}

/// A `-v`: a bind mount or a named volume.
#[derive(Debug)]
pub(super) enum VolumeArg {
    Bind(Bind),
    Named(VolumeMount),
}

/// `NAME:DST[:ro]` (a named volume) or `SRC:DST[:ro]` with a host path source ([`parse_bind`]).
pub(super) fn parse_volume_arg(text: &str) -> Result<VolumeArg, String> {
    let v = units::parse_volume(text)?;
    match (v.kind.as_str(), v.source) {
        ("volume", Some(name)) => Ok(VolumeArg::Named(VolumeMount {
            name,
            target: v.target,
            read_only: v.read_only,
        })),
        ("volume", None) => Err(format!(
            "volume {text:?}: anonymous volumes are not supported by container run; name it \
             (NAME:{})",
            v.target
        )),
        _ => parse_bind(text).map(VolumeArg::Bind),
    }
}

/// `-p [IP:][HOST:]CONTAINER[/PROTO]`: one entry per port of a range.
pub(super) fn parse_publish(text: &str) -> Result<Vec<PublishPort>, String> {
    Ok(units::parse_port(text)?
        .into_iter()
        .map(|p| PublishPort {
            target: p.target,
            published: p.published,
            host_ip: p.host_ip,
            protocol: Some(p.protocol),
        })
        .collect())
}

/// `SRC:DST[:ro]` with a host path source; a missing source directory is created (Compose's
/// short syntax). The daemon runs on this host, so the path is made absolute here.
pub(super) fn parse_bind(text: &str) -> Result<Bind, String> {
    let v = units::parse_volume(text)?;
    let Some(source) = v.source.filter(|_| v.kind == "bind") else {
        return Err(format!(
            "volume {text:?}: expected a host path (absolute, or starting with ./ or ~)"
        ));
    };
    let source = match source.strip_prefix('~') {
        Some(rest) => PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(rest.trim_start_matches('/')),
        None => std::path::absolute(&source).unwrap_or_else(|_| PathBuf::from(&source)),
    };
    if !source.exists() {
        std::fs::create_dir_all(&source)
            .map_err(|e| format!("volume {text:?}: create {}: {e}", source.display()))?;
    }
    Ok(Bind {
        source: source.to_string_lossy().into_owned(),
        target: v.target,
        read_only: v.read_only,
    })
}

/// The network of a container run or created without `--network`, as with Docker.
const DEFAULT_NETWORK: &str = "bridge";

/// The create request of `args`, checked.
pub(super) fn request(project: &ProjectArgs, args: &RunArgs) -> Result<ContainerCreate, Failure> {
    let bad = |m: String| Failure::new(ENGINE, m);
    // Docker's default: the daemon's `bridge` network (`default` names it too).
    let network = match args.network.as_deref() {
        None | Some("default") => DEFAULT_NETWORK,
        Some(n) => n,
    };
    let bridge = !matches!(network, "none" | "host");
    let mut publish = Vec::new();
    for p in &args.publish {
        publish.extend(parse_publish(p).map_err(bad)?);
    }
    if !bridge && let Some(p) = args.publish.first() {
        return Err(bad(format!(
            "publish {p:?}: publishing a port needs a bridge network (--network bridge, or \
             one made by `network create`)"
        )));
    }
    if !bridge && let Some(a) = args.network_alias.first() {
        return Err(bad(format!(
            "network alias {a:?}: needs a bridge network (--network bridge, or one made by \
             `network create`)"
        )));
    }
    for d in &args.dns {
        d.parse::<std::net::IpAddr>()
            .map_err(|_| bad(format!("--dns {d:?}: expected an IP address")))?;
    }
    let mut env = env_files(&project.env_files)?;
    env.extend(args.env.iter().filter_map(|e| env_entry(e)));
    let tmpfs = args
        .tmpfs
        .iter()
        .map(|t| parse_tmpfs(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let mut binds = Vec::new();
    let mut volumes = Vec::new();
    for v in &args.volume {
        match parse_volume_arg(v).map_err(bad)? {
            VolumeArg::Bind(b) => binds.push(b),
            VolumeArg::Named(n) => volumes.push(n),
        }
    }
    let memory = match &args.memory {
        Some(m) => {
            let bytes = units::parse_bytes(m).map_err(|e| bad(format!("--memory: {e}")))?;
            Some(i64::try_from(bytes).map_err(|_| bad(format!("--memory {m:?}: too large")))?)
        }
        None => None,
    };
    if let Some(cpus) = args.cpus {
        crate::runtime::sys::cgroup::Limits::default()
            .set_cpus(cpus)
            .map_err(|e| bad(format!("--cpus: {e}")))?;
    }
    let mut labels = std::collections::BTreeMap::new();
    for l in &args.label {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let interactive = args.interactive || args.tty;
    Ok(ContainerCreate {
        name: args.name.clone(),
        image: args.image.clone(),
        command: (!args.command.is_empty()).then(|| args.command.clone()),
        entrypoint: args.entrypoint.as_ref().map(|e| {
            if e.is_empty() {
                Vec::new()
            } else {
                vec![e.clone()]
            }
        }),
        env,
        working_dir: args.workdir.clone(),
        user: args.user.clone(),
        hostname: args.hostname.clone(),
        tty: args.tty,
        open_stdin: args.interactive,
        init: args.init,
        read_only: args.read_only,
        labels,
        stop_signal: args.stop_signal.clone(),
        stop_timeout: args.stop_timeout,
        restart: None,
        memory,
        pids_limit: args.pids_limit,
        cpus: args.cpus,
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        binds,
        tmpfs,
        network: Some(network.to_string()),
        network_aliases: args.network_alias.clone(),
        volumes,
        publish,
        dns: args.dns.clone(),
        // An in-process attach removes the container itself once it has read everything.
        auto_remove: args.rm && (args.detach || !interactive),
    })
}

/// The single-threaded runtime the CLI drives the client with.
fn tokio() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(ENGINE, e))
}

/// Docker's exit status for a start that failed: the status the container recorded (126 not
/// executable, 127 not found), else 125.
async fn start_failure(client: &Client, id: &str, e: &ClientError) -> Failure {
    let wait = client.wait_container(id);
    let code = match tokio::time::timeout(std::time::Duration::from_secs(5), wait).await {
        Ok(Ok(exit)) if exit.error.is_some() && (1..=255).contains(&exit.exit_code) => {
            u8::try_from(exit.exit_code).unwrap_or(ENGINE)
        }
        _ => ENGINE,
    };
    Failure::new(code, e)
}

/// `create` (`start` false) and `run`.
pub(super) fn run(
    client: &Client,
    project: &ProjectArgs,
    args: &RunArgs,
    start: bool,
) -> Result<u8, Failure> {
    let req = request(project, args)?;
    let tokio = tokio()?;
    let c = tokio
        .block_on(client.create_container(&req))
        .map_err(|e| Failure::new(ENGINE, e))?;
    if !start {
        out(&format!("{}\n", c.id)).map_err(fail)?;
        return Ok(0);
    }
    let interactive = args.interactive || args.tty;
    if args.detach {
        if let Err(e) = tokio.block_on(client.start_container(&c.id)) {
            return Err(tokio.block_on(async {
                let f = start_failure(client, &c.id, &e).await;
                if args.rm {
                    let _ = client.remove_container_with(&c.id, true, true).await;
                }
                f
            }));
        }
        out(&format!("{}\n", c.id)).map_err(fail)?;
        return Ok(0);
    }
    if interactive {
        return run_interactive(client, &tokio, &c.id, args);
    }
    tokio.block_on(attached(client, &c.id, args.rm))
}

/// `-i`/`-t`: started through the daemon, attached in-process over the shim's socket.
fn run_interactive(
    client: &Client,
    tokio: &tokio::runtime::Runtime,
    id: &str,
    args: &RunArgs,
) -> Result<u8, Failure> {
    let remove = || {
        if args.rm
            && let Err(e) = tokio.block_on(client.remove_container_with(id, true, true))
        {
            eprintln!("error: {e}");
        }
    };
    if let Err(e) = tokio.block_on(client.start_container(id)) {
        let f = tokio.block_on(start_failure(client, id, &e));
        remove();
        return Err(f);
    }
    // Through the daemon's attach stream, what it printed so far first (nothing is missed);
    // signals are proxied to the container there.
    let code = super::attach_api::attach(client, id, args.interactive, args.tty, true);
    remove();
    let code = code.map_err(|e| Failure::new(ENGINE, e))?;
    Ok((code & 0xff) as u8)
}

fn write_line(line: &LogLine) {
    let result = if line.stream == "stderr" {
        let mut o = std::io::stderr().lock();
        o.write_all(line.log.as_bytes()).and_then(|_| o.flush())
    } else {
        let mut o = std::io::stdout().lock();
        o.write_all(line.log.as_bytes()).and_then(|_| o.flush())
    };
    // A closed stdout (`| head`) does not stop the container; its output is in the log.
    let _ = result;
}

/// Attached without a terminal: the log stream opened before the start, signals forwarded,
/// the container's exit status.
async fn attached(client: &Client, id: &str, rm: bool) -> Result<u8, Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let q = LogsQuery {
        follow: true,
        ..LogsQuery::default()
    };
    // With --rm, the `destroy` event says when the daemon has removed it. Both streams are
    // opened at once, before the start.
    let destroy = async {
        if rm {
            destroy_events(client, id).await
        } else {
            None
        }
    };
    let (stream, destroyed) = tokio::join!(client.container_logs(id, &q), destroy);
    let mut stream = stream.map_err(|e| Failure::new(ENGINE, e))?;
    let mut signals = Vec::new();
    for (kind, name) in [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ] {
        if let Ok(s) = signal(kind) {
            signals.push((s, name));
        }
    }
    if let Err(e) = client.start_container(id).await {
        drop(stream);
        let f = start_failure(client, id, &e).await;
        if rm {
            let _ = client.remove_container_with(id, true, true).await;
        }
        return Err(f);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    for (mut s, name) in signals {
        let tx = tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(name).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    loop {
        tokio::select! {
            line = stream.next() => match line {
                Some(Ok(l)) => write_line(&l),
                Some(Err(e)) => {
                    eprintln!("error: logs: {e}");
                    break;
                }
                None => break,
            },
            Some(sig) = rx.recv() => {
                if let Err(e) = client.kill_container(id, Some(sig)).await {
                    eprintln!("error: forward {sig}: {e}");
                }
            }
        }
    }
    let exit = client
        .wait_container(id)
        .await
        .map_err(|e| Failure::new(ENGINE, e))?;
    if let Some(e) = exit.error {
        eprintln!("error: {e}");
    }
    if let Some(events) = destroyed {
        removed(events, id).await;
    }
    Ok((exit.exit_code & 0xff) as u8)
}

/// The stream of container `id`'s `destroy` event, from now on.
async fn destroy_events(client: &Client, id: &str) -> Option<EventStream> {
    let mut filters = EventFilter::default();
    filters.add("container", id).ok()?;
    filters.add("event", "destroy").ok()?;
    let q = EventsQuery {
        filters,
        ..EventsQuery::default()
    };
    client.events_with(&q).await.ok()
}

/// Waits (bounded) until the daemon has removed the auto-remove container `id` (its `destroy`
/// event), as Docker's `run --rm` returns only once the container is gone.
async fn removed(mut events: EventStream, id: &str) {
    let wait = async {
        while let Some(e) = events.next().await {
            if e.is_ok_and(|e| e.action == "destroy") {
                return true;
            }
        }
        false
    };
    match tokio::time::timeout(std::time::Duration::from_secs(30), wait).await {
        Ok(true) => {}
        _ => eprintln!("warning: container {id}: its removal was not confirmed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> RunArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let mut argv = vec!["run"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().run
    }

    #[test]
    fn flags_become_the_create_request() {
        let project = ProjectArgs::default();
        let req = request(
            &project,
            &args(&[
                "--rm",
                "-m",
                "64m",
                "--cpus",
                "1.5",
                "--pids-limit",
                "20",
                "--cap-add",
                "NET_ADMIN",
                "--cap-drop",
                "ALL",
                "--tmpfs",
                "/run:size=1m",
                "-e",
                "A=1",
                "--read-only",
                "--init",
                "-u",
                "1:2",
                "--network",
                "host",
                "-l",
                "k=v",
                "--entrypoint",
                "",
                "img",
                "sh",
                "-c",
                "true",
            ]),
        )
        .unwrap();
        assert_eq!(req.image, "img");
        assert_eq!(req.memory, Some(64 << 20));
        assert_eq!((req.cpus, req.pids_limit), (Some(1.5), Some(20)));
        assert_eq!((req.cap_add.len(), req.cap_drop.len()), (1, 1));
        assert_eq!(req.tmpfs[0].size, Some(1 << 20));
        assert_eq!(req.env, ["A=1"]);
        assert!(req.read_only && req.init && req.auto_remove);
        assert_eq!(req.user.as_deref(), Some("1:2"));
        assert_eq!(req.network.as_deref(), Some("host"));
        assert_eq!(req.labels["k"], "v");
        assert_eq!(req.entrypoint, Some(vec![]));
        assert_eq!(req.command.unwrap(), ["sh", "-c", "true"]);
        // An in-process attach (-i) removes the container itself; -d --rm leaves it to the
        // daemon.
        assert!(
            !request(&project, &args(&["--rm", "-i", "img"]))
                .unwrap()
                .auto_remove
        );
        assert!(
            request(&project, &args(&["--rm", "-d", "-i", "img"]))
                .unwrap()
                .auto_remove
        );
        for bad in [
            &["-m", "12zb", "img"][..],
            &["--cpus=-1", "img"],
            &["--publish", "80:80", "--network", "none", "img"],
            &["--publish", "80:80:80:80", "--network", "bridge", "img"],
            &["--network-alias", "a", "--network", "host", "img"],
            &["--dns", "nameserver", "img"],
            &["--tmpfs", "/x:bogus=1", "img"],
        ] {
            let e = request(&project, &args(bad)).unwrap_err();
            assert_eq!(e.code, ENGINE, "{bad:?}");
        }
    }

    #[test]
    fn tmpfs_and_bind_syntax() {
        let t = parse_tmpfs("/run:size=64m,mode=1700").unwrap();
        assert_eq!(t.target, "/run");
        assert_eq!(t.size, Some(64 << 20));
        assert_eq!(t.mode, Some(0o1700));
        assert!(parse_tmpfs("/run:bogus=1").is_err());
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("made/by/run");
        let b = parse_bind(&format!("{}:/data:ro", src.display())).unwrap();
        assert!(src.is_dir());
        assert!(b.read_only);
        assert_eq!(b.target, "/data");
        assert!(parse_bind("named:/data").is_err());
        match parse_volume_arg("data:/data:ro").unwrap() {
            VolumeArg::Named(v) => assert_eq!((v.name.as_str(), v.read_only), ("data", true)),
            other => panic!("{other:?}"),
        }
        assert!(parse_volume_arg("/data").is_err());
        let p = parse_publish("127.0.0.1:8080-8081:80-81/udp").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].target, 81);
        assert_eq!(p[1].published.as_deref(), Some("8081"));
        assert_eq!(p[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(p[0].protocol.as_deref(), Some("udp"));
    }
}
