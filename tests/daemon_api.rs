//! The REST API through the real daemon: every test starts `flotilla daemon` with its own data
//! root and socket in a temporary directory (and a free loopback port for TCP), waits for the
//! socket with bounded polling, and stops the daemon by pid when done (SIGTERM, then SIGKILL
//! after a bounded wait). Nothing here needs root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla::api::client::{Client, ClientError};
use flotilla::api::host::Host;
use flotilla::api::types::{ErrorBody, ErrorCode, VolumeCreate};
use http::{Method, StatusCode};

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
const TOKEN: &str = "test-token-0123456789abcdef";
const START: Duration = Duration::from_secs(20);
const STOP: Duration = Duration::from_secs(15);

/// A running daemon, stopped (and its tempdir removed) on drop.
struct Daemon {
    child: Option<Child>,
    dir: tempfile::TempDir,
    root: PathBuf,
    socket: PathBuf,
    port: Option<u16>,
    hosts: Vec<String>,
}

struct Setup {
    tcp: bool,
    token: bool,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn stderr_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
}

fn daemon_command(root: &Path, hosts: &[String], config: Option<&Path>, log: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("daemon").arg("--data-root").arg(root);
    for h in hosts {
        cmd.arg("--host").arg(h);
    }
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    } else {
        // Never the machine's /etc/flotilla/daemon.toml.
        cmd.arg("--config").arg(log.with_file_name("empty.toml"));
    }
    let log = std::fs::File::create(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .env_remove("FLOTILLA_HOST")
        .env_remove("FLOTILLA_ROOT")
        .env_remove("FLOTILLA_CONFIG")
        .env("RUST_LOG", "info");
    cmd
}

impl Daemon {
    fn start() -> Daemon {
        Self::start_with(Setup {
            tcp: false,
            token: false,
        })
    }

    fn start_with(setup: Setup) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let socket = dir.path().join("run/flotilla.sock");
        std::fs::write(dir.path().join("empty.toml"), "").unwrap();
        let config = dir.path().join("daemon.toml");
        if setup.token {
            std::fs::write(&config, format!("[api]\ntoken = \"{TOKEN}\"\n")).unwrap();
        } else {
            std::fs::write(&config, "").unwrap();
        }
        let mut hosts = vec![format!("unix://{}", socket.display())];
        let port = setup.tcp.then(free_port);
        if let Some(p) = port {
            hosts.push(format!("tcp://127.0.0.1:{p}"));
        }
        let child = daemon_command(&root, &hosts, Some(&config), &dir.path().join("daemon.log"))
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child: Some(child),
            dir,
            root,
            socket,
            port,
            hosts,
        };
        d.wait_ready();
        d
    }

    /// Stops the daemon and starts another on the same root, sockets and config.
    fn restart(&mut self) {
        let status = self.stop().expect("the daemon stops on SIGTERM");
        assert!(status.success(), "{status}");
        let log = self.dir.path().join("daemon.log");
        let config = self.dir.path().join("daemon.toml");
        self.child = Some(
            daemon_command(&self.root, &self.hosts, Some(&config), &log)
                .spawn()
                .unwrap(),
        );
        self.wait_ready();
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START;
        loop {
            let tcp_ready = self
                .port
                .is_none_or(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok());
            if tcp_ready && std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "the daemon exited ({status}) before listening:\n{}",
                    stderr_of(self.dir.path())
                );
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not listen within {START:?}:\n{}",
                stderr_of(self.dir.path())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn client(&self) -> Client {
        Client::new(Host::Unix(self.socket.clone()), None)
    }

    fn tcp_client(&self, token: Option<&str>) -> Client {
        let port = self.port.unwrap();
        Client::new(
            Host::Tcp(format!("127.0.0.1:{port}")),
            token.map(String::from),
        )
    }

    /// Sends SIGTERM and waits (bounded) for the exit; SIGKILL if it does not come.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = rustix::process::Pid::from_raw(child.id() as i32)?;
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + STOP;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn error_body(bytes: &[u8]) -> ErrorBody {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not a JSON error ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Runs the daemon expecting it to fail at startup; returns its stderr.
fn failed_start(root: &Path, hosts: &[String], config: Option<&Path>, dir: &Path) -> String {
    let log = dir.join("failed.log");
    std::fs::write(dir.join("empty.toml"), "").unwrap();
    let mut child = daemon_command(root, hosts, config, &log).spawn().unwrap();
    let deadline = Instant::now() + START;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1), "{status}");
    std::fs::read_to_string(&log).unwrap()
}

#[tokio::test]
async fn version_info_and_volumes_through_the_socket() {
    let d = Daemon::start();
    let c = d.client();
    let v = c.version().await.unwrap();
    assert_eq!(v.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(v.api_version, "v1");

    let info = c.info().await.unwrap();
    assert_eq!(info.pid, d.pid());
    assert_eq!(info.data_root, d.root.display().to_string());
    assert_eq!(info.schema_version, flotilla::store::SCHEMA_VERSION);
    assert!(matches!(info.cgroup_version.as_str(), "v1" | "v2"));
    assert!(!info.kernel.is_empty());
    assert_eq!(info.counts.volumes, 0);
    assert!(d.root.join("state.redb").is_file());
    let pid_file = std::fs::read_to_string(d.root.join("daemon.pid")).unwrap();
    assert_eq!(pid_file.trim(), d.pid().to_string());
    let mode = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o660
    );

    let req = VolumeCreate {
        name: Some("data".into()),
        labels: [("app".to_string(), "web".to_string())].into(),
        ..Default::default()
    };
    let vol = c.create_volume(&req).await.unwrap();
    assert_eq!(vol.name, "data");
    assert_eq!(vol.id.len(), 64);
    let anon = c.create_volume(&VolumeCreate::default()).await.unwrap();
    // A volume made without a name gets 64 hex digits, like Docker's anonymous volumes.
    assert_eq!(anon.name.len(), 64);
    assert!(anon.labels.contains_key("com.docker.volume.anonymous"));
    assert_eq!(c.inspect_volume("data").await.unwrap(), vol);
    assert_eq!(c.inspect_volume(&vol.id).await.unwrap(), vol);
    assert_eq!(c.list_volumes(None).await.unwrap().len(), 2);
    assert_eq!(
        c.list_volumes(Some("app=web")).await.unwrap(),
        vec![vol.clone()]
    );
    assert_eq!(
        c.list_volumes(Some("app")).await.unwrap(),
        vec![vol.clone()]
    );
    assert!(c.list_volumes(Some("app=db")).await.unwrap().is_empty());
    assert_eq!(c.info().await.unwrap().counts.volumes, 2);

    let err = c.create_volume(&req).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Conflict), "{err}");
    assert!(err.to_string().contains("\"data\""), "{err}");

    c.remove_volume("data").await.unwrap();
    let err = c.inspect_volume("data").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    assert_eq!(err.to_string(), "volume \"data\" not found");
    let err = c.remove_volume("data").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");

    // The OpenAPI document served is the one in schemas/.
    let (status, body) = c.raw(Method::GET, "/openapi.json", None).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let served: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let generated = serde_json::to_value(flotilla::api::server::openapi()).unwrap();
    assert_eq!(served, generated);

    // Unknown endpoints and methods are JSON errors too.
    let (status, body) = c.raw(Method::GET, "/v1/nothing", None).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_body(&body).code, ErrorCode::NotFound);
    let (status, body) = c.raw(Method::PUT, "/v1/version", None).await.unwrap();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_body(&body).code, ErrorCode::MethodNotAllowed);

    // Records survive a restart of the daemon.
    let mut d = d;
    d.restart();
    let c = d.client();
    assert_eq!(c.inspect_volume(&anon.id).await.unwrap(), anon);
    assert_eq!(c.info().await.unwrap().pid, d.pid());
}

#[test]
fn version_and_info_commands() {
    let d = Daemon::start();
    let host = format!("unix://{}", d.socket.display());
    let run = |args: &[&str]| {
        let o = Command::new(BIN)
            .args(args)
            .env_remove("FLOTILLA_HOST")
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["version", "--host", &host]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Client:"), "{out}");
    assert!(out.contains(&format!("Server: {host}")), "{out}");
    assert_eq!(out.matches(env!("CARGO_PKG_VERSION")).count(), 2, "{out}");

    let (code, out, err) = run(&["info", "--host", &host, "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["pid"], d.pid());

    let (code, out, err) = run(&["info", "--host", &host]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Cgroup version:"), "{out}");

    // Nothing listening: version says so and succeeds, info fails with a hint.
    let gone = format!("unix://{}", d.dir.path().join("none.sock").display());
    let (code, out, _) = run(&["version", "--host", &gone]);
    assert_eq!(code, Some(0));
    assert!(out.contains("not running"), "{out}");
    let (code, _, err) = run(&["info", "--host", &gone]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no daemon answers at"), "{err}");
    assert!(err.contains("flotilla daemon"), "{err}");
}

async fn next(events: &mut flotilla::api::client::EventStream) -> flotilla::api::types::Event {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10s")
        .expect("the stream is open")
        .unwrap()
}

#[tokio::test]
async fn events_stream_and_a_client_that_goes_away() {
    let d = Daemon::start();
    let c = d.client();
    let mut events = c.events().await.unwrap();
    c.create_volume(&VolumeCreate {
        name: Some("ev".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    c.remove_volume("ev").await.unwrap();
    let created = next(&mut events).await;
    assert_eq!(
        (
            created.kind.as_str(),
            created.action.as_str(),
            created.name.as_str()
        ),
        ("volume", "create", "ev")
    );
    let removed = next(&mut events).await;
    assert_eq!(removed.action, "remove");
    assert_eq!(removed.id, created.id);

    // Clients that disconnect mid-stream, with and without pending events, leave it up.
    drop(events);
    for _ in 0..5 {
        let s = c.events().await.unwrap();
        drop(s);
    }
    c.create_volume(&VolumeCreate::default()).await.unwrap();
    assert!(c.version().await.is_ok());
}

#[tokio::test]
async fn tcp_needs_the_bearer_token() {
    let d = Daemon::start_with(Setup {
        tcp: true,
        token: true,
    });
    let (status, body) = d
        .tcp_client(None)
        .raw(Method::GET, "/v1/version", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_body(&body).code, ErrorCode::Unauthorized);
    let err = d.tcp_client(Some("wrong")).info().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");
    // A body is refused before it is read.
    let (status, _) = d
        .tcp_client(None)
        .raw(Method::POST, "/v1/volumes", Some(Bytes::from_static(b"{}")))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(d.client().info().await.unwrap().counts.volumes, 0);

    let v = d.tcp_client(Some(TOKEN)).version().await.unwrap();
    assert_eq!(v.api_version, "v1");
    // The unix socket needs no token.
    d.client().version().await.unwrap();
}

#[test]
fn tcp_without_a_token_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let hosts = [
        format!("unix://{}", dir.path().join("s.sock").display()),
        format!("tcp://127.0.0.1:{}", free_port()),
    ];
    let err = failed_start(&root, &hosts, None, dir.path());
    assert!(err.contains("a TCP listener needs a bearer token"), "{err}");
    assert!(!dir.path().join("s.sock").exists());
}

#[tokio::test]
async fn two_daemons_side_by_side() {
    let a = Daemon::start();
    let b = Daemon::start();
    a.client()
        .create_volume(&VolumeCreate {
            name: Some("only-in-a".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(a.client().info().await.unwrap().counts.volumes, 1);
    assert_eq!(b.client().info().await.unwrap().counts.volumes, 0);
    assert_eq!(b.client().info().await.unwrap().pid, b.pid());
    let err = b.client().inspect_volume("only-in-a").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
}

#[test]
fn a_second_daemon_on_the_same_root_is_refused() {
    let d = Daemon::start();
    let other = d.dir.path().join("other.sock");
    let err = failed_start(
        &d.root,
        &[format!("unix://{}", other.display())],
        None,
        d.dir.path(),
    );
    assert!(
        err.contains(&format!("is in use by another daemon (pid {},", d.pid())),
        "{err}"
    );
    assert!(!other.exists());
    // The first one is unharmed.
    assert!(std::os::unix::net::UnixStream::connect(&d.socket).is_ok());
    let pid_file = std::fs::read_to_string(d.root.join("daemon.pid")).unwrap();
    assert_eq!(pid_file.trim(), d.pid().to_string());
}

#[test]
fn a_socket_path_that_is_not_a_socket_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let path = dir.path().join("important.txt");
    std::fs::write(&path, "precious").unwrap();
    let err = failed_start(
        &root,
        &[format!("unix://{}", path.display())],
        None,
        dir.path(),
    );
    assert!(err.contains("exists and is not a socket"), "{err}");
    assert!(err.contains("important.txt"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    assert!(!root.join("daemon.pid").exists());
}

#[tokio::test]
async fn bad_input_gets_json_errors_and_the_daemon_stays_up() {
    let d = Daemon::start();
    let c = d.client();
    let post = |body: Vec<u8>| {
        let c = c.clone();
        async move {
            c.raw(Method::POST, "/v1/volumes", Some(Bytes::from(body)))
                .await
                .unwrap()
        }
    };

    let (status, body) = post(b"{\"name\": ".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let e = error_body(&body);
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(
        e.message.starts_with("invalid request body"),
        "{}",
        e.message
    );

    let (status, body) = post(br#"{"name": "x", "lables": {}}"#.to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let e = error_body(&body);
    assert!(
        e.message.contains("unknown field `lables`"),
        "{}",
        e.message
    );

    let (status, body) = post(br#"{"labels": {"a": 1}}"#.to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let e = error_body(&body);
    assert!(e.message.contains("labels.a"), "{}", e.message);

    let (status, body) = post(br#"{"name": "no/slash"}"#.to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_body(&body).message.contains("no/slash"));

    let (status, body) = c
        .raw(Method::GET, "/v1/volumes?labl=x", None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_body(&body).code, ErrorCode::BadRequest);

    let mut huge = br#"{"name": "big", "labels": {"k": ""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 2 << 20));
    huge.extend(br#""}}"#);
    let (status, body) = post(huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_body(&body).code, ErrorCode::PayloadTooLarge);

    // Still up, and none of it was stored.
    assert_eq!(c.info().await.unwrap().counts.volumes, 0);
    let err = c.inspect_volume("big").await.unwrap_err();
    assert!(matches!(err, ClientError::Api { status: 404, .. }), "{err}");
}

#[test]
fn sigterm_removes_the_socket_and_the_pid_file() {
    let mut d = Daemon::start();
    assert!(d.root.join("daemon.pid").exists());
    let status = d.stop().expect("the daemon stops on SIGTERM");
    assert!(status.success(), "{status}: {}", stderr_of(d.dir.path()));
    assert!(!d.socket.exists(), "the socket is left behind");
    assert!(!d.root.join("daemon.pid").exists(), "the pid file is left");
    let log = stderr_of(d.dir.path());
    assert!(log.contains("daemon stopped"), "{log}");

    // A stale socket (a daemon killed with SIGKILL) does not stop the next start.
    let mut again = Daemon::start();
    let pid = rustix::process::Pid::from_raw(again.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let mut child = again.child.take().unwrap();
    child.wait().unwrap();
    assert!(again.socket.exists());
    let hosts = [format!("unix://{}", again.socket.display())];
    let log = again.dir.path().join("restart.log");
    again.child = Some(
        daemon_command(&again.root, &hosts, None, &log)
            .spawn()
            .unwrap(),
    );
    again.wait_ready();
}

#[tokio::test]
async fn sigterm_ends_open_event_streams_and_exits_promptly() {
    let mut d = Daemon::start();
    let mut events = d.client().events().await.unwrap();
    let started = Instant::now();
    let status = d
        .stop()
        .expect("the daemon stops on SIGTERM with a stream open");
    assert!(status.success(), "{status}: {}", stderr_of(d.dir.path()));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let end = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("the stream ends");
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
    assert!(!d.socket.exists());
}
