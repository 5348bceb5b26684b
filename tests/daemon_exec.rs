//! Exec and attach through the real daemon's upgraded streams (root): each test starts
//! `flotilla daemon` on its own data root (busybox imported), socket, config (`[dns] upstreams
//! = []`) and cgroup prefix (derived from the root), drives `POST /v1/containers/{id}/exec`
//! and `/attach` through the typed client (or the CLI as a subprocess), and on drop kills the
//! daemon by pid, then what its containers left (shims and processes by pid from their state
//! files, cgroups, networks of the prefix, mounts) before removing the root.
//!
//! Covered: stdout and stderr apart; exit codes 0, 3, 126, 127; stdin piped through and its end;
//! env, user and working directory; a detached exec; 400/404/409 before the upgrade (no upgrade
//! asked, bad input, unknown, created, paused); a pseudo-terminal exec (`tty` names /dev/pts/…,
//! `stty size` follows the initial size and a resize); a client that goes away mid-exec leaves
//! no process in the container's cgroup, no fd in the daemon, and the daemon answers; attach
//! sees live output, stays detachable, pipes stdin to an `open_stdin` container, resizes a tty
//! container; exec and attach over TCP need the token; the CLI's `container exec` and `attach`
//! propagate the exit code and stdin, its errors are one line; on a real pseudo-terminal
//! `exec -it` and `run -it` follow the terminal's size and leave its modes as they were.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla::api::client::{AttachOptions, Client, Session};
use flotilla::api::frame::Frame;
use flotilla::api::host::Host;
use flotilla::api::types::{ContainerCreate, ContainerStatus, ErrorCode, ExecCreate};
use flotilla::runtime::lifecycle::{self, Runtime};
use flotilla::runtime::state;
use flotilla::runtime::sys::cgroup::{self, Cgroup};
use http::{Method, StatusCode};

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
const IMAGE: &str = "flotilla.test/busybox:latest";
const TIMEOUT: Duration = Duration::from_secs(60);

struct Daemon {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    socket: PathBuf,
    prefix: String,
    net: String,
}

impl Daemon {
    fn start() -> Daemon {
        Daemon::start_on(None)
    }

    /// With `tcp`, also listening on 127.0.0.1:`tcp` with the bearer token [`TOKEN`].
    fn start_on(tcp: Option<u16>) -> Daemon {
        assert!(
            rustix::process::geteuid().is_root(),
            "the daemon exec tests need root (CI runs them as root)"
        );
        let dir = tempfile::Builder::new()
            .prefix("flt-de-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(&root).unwrap();
        common::daemon::import_busybox(&root, IMAGE);
        let token = match tcp {
            Some(_) => format!("[api]\ntoken = \"{TOKEN}\"\n"),
            None => String::new(),
        };
        fs::write(
            dir.path().join("daemon.toml"),
            format!("{token}[dns]\nupstreams = []\n"),
        )
        .unwrap();
        let prefix = Runtime::new(&root).unwrap().prefix().to_string();
        let net = prefix.chars().take(4).collect();
        let socket = dir.path().join("run/flotilla.sock");
        let child = match tcp {
            None => common::daemon::spawn(
                &root,
                &socket,
                &dir.path().join("daemon.toml"),
                &dir.path().join("daemon.log"),
                TIMEOUT,
            ),
            Some(port) => spawn_tcp(dir.path(), &root, &socket, port),
        };
        Daemon {
            child: Some(child),
            dir: Some(dir),
            root,
            socket,
            prefix,
            net,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.as_ref().unwrap().path().join("daemon.log")).unwrap_or_default()
    }

    fn client(&self) -> Client {
        Client::new(Host::Unix(self.socket.clone()), None)
    }

    fn cgroup(&self, id: &str) -> Cgroup {
        Cgroup::open(&format!("{}/{id}", cgroup::prefix_dir(&self.prefix))).unwrap()
    }

    /// `flotilla -H unix://… ARGS` with `stdin` on its standard input; bounded.
    fn cli(&self, args: &[&str], stdin: &[u8]) -> std::process::Output {
        let mut child = Command::new(BIN)
            .arg("--data-root")
            .arg(&self.root)
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .env_remove("FLOTILLA_HOST")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = stdout.read_to_end(&mut b);
            b
        });
        let err = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = stderr.read_to_end(&mut b);
            b
        });
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{args:?} did not finish");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = writer.join();
        std::process::Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let containers = self.root.join("containers");
        for e in fs::read_dir(&containers).into_iter().flatten().flatten() {
            if let Ok(st) = state::read(&e.path()) {
                for pid in [st.shim_pid, st.pid].into_iter().flatten() {
                    if let Some(p) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    }
                }
            }
            let id = e.file_name().to_string_lossy().into_owned();
            if let Ok(cg) = Cgroup::open(&format!("{}/{id}", cgroup::prefix_dir(&self.prefix))) {
                let _ = cg.destroy(true);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        let _ = cgroup::cleanup_prefix(&self.prefix);
        let _ = flotilla::network::cleanup_prefix(&self.net, &self.root);
        for m in lifecycle::mounts_under(&self.root).iter().rev() {
            let _ = rustix::mount::unmount(m.as_path(), rustix::mount::UnmountFlags::DETACH);
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

const TOKEN: &str = "exec-test-token-0123456789";

/// `flotilla daemon` on the unix socket and on 127.0.0.1:`port`; ready when both answer.
fn spawn_tcp(
    dir: &std::path::Path,
    root: &std::path::Path,
    socket: &std::path::Path,
    port: u16,
) -> Child {
    let log = fs::File::create(dir.join("daemon.log")).unwrap();
    let mut child = Command::new(BIN)
        .arg("daemon")
        .arg("--data-root")
        .arg(root)
        .arg("--config")
        .arg(dir.join("daemon.toml"))
        .arg("--host")
        .arg(format!("unix://{}", socket.display()))
        .arg("--host")
        .arg(format!("tcp://127.0.0.1:{port}"))
        .env_remove("FLOTILLA_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while std::os::unix::net::UnixStream::connect(socket).is_err()
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{}",
                fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn spec(name: &str, args: &[&str]) -> ContainerCreate {
    ContainerCreate {
        name: Some(name.into()),
        image: IMAGE.into(),
        command: Some(args.iter().map(|s| s.to_string()).collect()),
        ..ContainerCreate::default()
    }
}

fn cmd(args: &[&str]) -> ExecCreate {
    ExecCreate {
        cmd: args.iter().map(|s| s.to_string()).collect(),
        ..ExecCreate::default()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Reads stdout frames until `want` shows in what was read (bounded); returns all of it.
async fn read_until(s: &mut Session, want: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains(want) {
        let f = tokio::time::timeout_at(deadline, s.reader().next())
            .await
            .unwrap_or_else(|_| panic!("no {want:?} in {seen:?}"))
            .unwrap();
        match f {
            Some(Frame::Stdout(b)) | Some(Frame::Stderr(b)) => seen.push_str(&text(&b)),
            Some(Frame::Exit(c)) => panic!("exited {c} before {want:?}; read {seen:?}"),
            Some(_) => {}
            None => panic!("stream ended before {want:?}; read {seen:?}"),
        }
    }
    seen
}

/// Starts a container running `args`; its id.
async fn running(c: &Client, name: &str, args: &[&str]) -> String {
    let id = c.create_container(&spec(name, args)).await.unwrap().id;
    c.start_container(&id).await.unwrap();
    id
}

#[test]
fn exec_streams_exit_codes_and_bad_input() {
    let d = Daemon::start();
    let c = d.client();
    rt().block_on(async {
        let id = running(&c, "de-main", &["sleep", "1000"]).await;

        // stdout and stderr stay apart; the exit code is the last frame.
        let o = c
            .exec(&id, &cmd(&["sh", "-c", "echo out; echo err >&2; exit 3"]))
            .await
            .unwrap()
            .output()
            .await
            .unwrap();
        assert_eq!(
            (text(&o.stdout).as_str(), text(&o.stderr).as_str()),
            ("out\n", "err\n")
        );
        assert_eq!(o.exit_code, Some(3));
        let o = c
            .exec(&id, &cmd(&["sh", "-c", "echo data > /tmp/plain"]))
            .await
            .unwrap()
            .output()
            .await;
        assert_eq!(o.unwrap().exit_code, Some(0));
        for (args, code) in [
            (&["true"][..], 0),
            (&["no-such-command"][..], 127),
            (&["/tmp/plain"][..], 126),
        ] {
            let o = c.exec("de-main", &cmd(args)).await.unwrap().output().await;
            assert_eq!(o.unwrap().exit_code, Some(code), "{args:?}");
        }

        // stdin piped through; its end ends `cat`.
        let mut s = c
            .exec(
                &id,
                &ExecCreate {
                    stdin: true,
                    ..cmd(&["cat"])
                },
            )
            .await
            .unwrap();
        s.writer().stdin(b"hello\nworld").await.unwrap();
        s.writer().close_stdin().await.unwrap();
        let o = s.output().await.unwrap();
        assert_eq!(
            (text(&o.stdout).as_str(), o.exit_code),
            ("hello\nworld", Some(0))
        );

        // env, user, working directory.
        let o = c
            .exec(
                &id,
                &ExecCreate {
                    env: vec!["GREETING=hi there".into()],
                    user: Some("123:45".into()),
                    working_dir: Some("/tmp".into()),
                    ..cmd(&["sh", "-c", "echo \"$GREETING\"; id -u; id -g; pwd"])
                },
            )
            .await
            .unwrap()
            .output()
            .await
            .unwrap();
        assert_eq!(text(&o.stdout), "hi there\n123\n45\n/tmp\n", "{o:?}");

        // Detached: started, nothing streamed.
        let started = c
            .exec_detached(&id, &cmd(&["sh", "-c", "echo detached > /tmp/d"]))
            .await
            .unwrap();
        assert!(started.pid > 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let o = c
                .exec(&id, &cmd(&["cat", "/tmp/d"]))
                .await
                .unwrap()
                .output()
                .await;
            if text(&o.unwrap().stdout) == "detached\n" {
                break;
            }
            assert!(Instant::now() < deadline, "the detached exec never wrote");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Errors before the upgrade are the usual JSON errors.
        let e = c.exec("no-such", &cmd(&["true"])).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
        let e = c.exec(&id, &cmd(&[])).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
        let bad_env = ExecCreate {
            env: vec!["=x".into()],
            ..cmd(&["true"])
        };
        let e = c.exec(&id, &bad_env).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
        let relative = ExecCreate {
            working_dir: Some("tmp".into()),
            ..cmd(&["true"])
        };
        let e = c.exec(&id, &relative).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
        // Without asking for the stream.
        let (status, body) = c
            .raw(
                Method::POST,
                &format!("/v1/containers/{id}/exec"),
                Some(br#"{"cmd":["true"]}"#.to_vec().into()),
            )
            .await
            .unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", text(&body));
        assert!(
            text(&body).contains("Upgrade: flotilla-stream"),
            "{}",
            text(&body)
        );
        let (status, body) = c
            .raw(
                Method::POST,
                &format!("/v1/containers/{id}/exec"),
                Some(br#"{"cmd":["true"],"bogus":1}"#.to_vec().into()),
            )
            .await
            .unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", text(&body));

        // A created container, then a paused one: 409.
        let created = c
            .create_container(&spec("de-created", &["true"]))
            .await
            .unwrap();
        let e = c.exec(&created.id, &cmd(&["true"])).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
        assert!(e.to_string().contains("needs a running container"), "{e}");
        c.pause_container(&id).await.unwrap();
        let e = c.exec(&id, &cmd(&["true"])).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
        assert!(e.to_string().contains("paused"), "{e}");
        c.unpause_container(&id).await.unwrap();
        let o = c.exec(&id, &cmd(&["true"])).await.unwrap().output().await;
        assert_eq!(o.unwrap().exit_code, Some(0));
    });
}

#[test]
fn tty_exec_follows_the_size_and_resizes() {
    let d = Daemon::start();
    let c = d.client();
    rt().block_on(async {
        let id = running(&c, "de-tty", &["sleep", "1000"]).await;
        let mut s = c
            .exec(
                &id,
                &ExecCreate {
                    tty: true,
                    stdin: true,
                    console_size: Some([30, 100]),
                    ..cmd(&["sh"])
                },
            )
            .await
            .unwrap();
        s.writer()
            .stdin(b"tty; stty size; echo mark-$((6*7))\n")
            .await
            .unwrap();
        let seen = read_until(&mut s, "mark-42").await;
        assert!(seen.contains("/dev/pts/"), "{seen:?}");
        assert!(seen.contains("30 100"), "{seen:?}");
        s.writer().resize(40, 132).await.unwrap();
        s.writer()
            .stdin(b"stty size; echo mark-$((7*7))\n")
            .await
            .unwrap();
        let seen = read_until(&mut s, "mark-49").await;
        assert!(seen.contains("40 132"), "{seen:?}");
        s.writer().stdin(b"exit 5\n").await.unwrap();
        let o = s.output().await.unwrap();
        assert_eq!(o.exit_code, Some(5), "{o:?}");
    });
}

/// Host pids of processes whose command line is exactly `args`.
fn pids_running(args: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

#[test]
fn a_client_that_goes_away_leaves_nothing_running() {
    let d = Daemon::start();
    let c = d.client();
    let rt = rt();
    let id = rt.block_on(running(&c, "de-gone", &["sleep", "1000"]));
    let base = d.cgroup(&id).pids().unwrap();
    assert_eq!(base.len(), 1, "{base:?}");
    // The daemon's open fds and threads once an exec is done: the mark to come back to.
    let daemon = d.child.as_ref().unwrap().id();
    let count = |what: &str| {
        fs::read_dir(format!("/proc/{daemon}/{what}"))
            .unwrap()
            .count()
    };
    rt.block_on(async {
        let o = c.exec(&id, &cmd(&["true"])).await.unwrap().output().await;
        assert_eq!(o.unwrap().exit_code, Some(0));
    });
    std::thread::sleep(Duration::from_millis(200));
    let (fds, threads) = (count("fd"), count("task"));
    for tty in [false, true] {
        rt.block_on(async {
            // A child in the background and one in the foreground, both in the container.
            let mut s = c
                .exec(
                    &id,
                    &ExecCreate {
                        tty,
                        stdin: true,
                        ..cmd(&["sh", "-c", "sleep 4711 & echo started; sleep 4712"])
                    },
                )
                .await
                .unwrap();
            read_until(&mut s, "started").await;
            let deadline = Instant::now() + Duration::from_secs(10);
            while pids_running(&["sleep", "4712"]).is_empty() {
                assert!(Instant::now() < deadline, "the exec never ran sleep");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(d.cgroup(&id).pids().unwrap().len() > 1);
            drop(s);
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = d.cgroup(&id).pids().unwrap();
            let left = [
                pids_running(&["sleep", "4711"]),
                pids_running(&["sleep", "4712"]),
            ];
            if pids == base && left.iter().all(Vec::is_empty) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "tty {tty}: left in the container: {pids:?} (sleeps {left:?})\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The daemon is fine and serves the next exec.
    rt.block_on(async {
        c.version().await.unwrap();
        let o = c
            .exec(&id, &cmd(&["echo", "still"]))
            .await
            .unwrap()
            .output()
            .await;
        assert_eq!(text(&o.unwrap().stdout), "still\n");
        let inspected = c.inspect_container(&id).await.unwrap();
        assert_eq!(inspected.state.status, ContainerStatus::Running);
    });
    // No fd is left behind; threads (the blocking pool's idle ones time out) do not pile up.
    let deadline = Instant::now() + Duration::from_secs(15);
    while count("fd") > fds {
        assert!(
            Instant::now() < deadline,
            "the daemon holds {} fds, {fds} before",
            count("fd")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        count("task") <= threads + 8,
        "{} threads, {threads} before",
        count("task")
    );
}

#[test]
fn attach_streams_and_detaches() {
    let d = Daemon::start();
    let c = d.client();
    rt().block_on(async {
        // Live output; leaving does not stop the container.
        let ticker = running(
            &c,
            "de-ticker",
            &[
                "sh",
                "-c",
                "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.1; done",
            ],
        )
        .await;
        let mut s = c.attach(&ticker, &AttachOptions::default()).await.unwrap();
        read_until(&mut s, "tick-").await;
        drop(s);
        let mut s = c
            .attach(
                &ticker,
                &AttachOptions {
                    logs: true,
                    ..AttachOptions::default()
                },
            )
            .await
            .unwrap();
        // With logs: from the first line on.
        read_until(&mut s, "tick-0\n").await;
        drop(s);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let st = c.inspect_container(&ticker).await.unwrap().state.status;
        assert_eq!(st, ContainerStatus::Running);

        // stdin of an open_stdin container; its end lets `cat` exit, whose code ends the stream.
        let cat = c
            .create_container(&ContainerCreate {
                open_stdin: true,
                ..spec("de-cat", &["cat"])
            })
            .await
            .unwrap()
            .id;
        c.start_container(&cat).await.unwrap();
        let mut s = c
            .attach(
                &cat,
                &AttachOptions {
                    stdin: true,
                    ..AttachOptions::default()
                },
            )
            .await
            .unwrap();
        s.writer().stdin(b"through attach\n").await.unwrap();
        read_until(&mut s, "through attach\n").await;
        s.writer().close_stdin().await.unwrap();
        let o = s.output().await.unwrap();
        assert_eq!(o.exit_code, Some(0), "{o:?}");

        // Any bytes, and more than one shim request holds.
        let bin = c
            .create_container(&ContainerCreate {
                open_stdin: true,
                ..spec(
                    "de-bin",
                    &[
                        "sh",
                        "-c",
                        "cat > /tmp/in; wc -c < /tmp/in; head -c 4 /tmp/in | od -An -tx1",
                    ],
                )
            })
            .await
            .unwrap()
            .id;
        c.start_container(&bin).await.unwrap();
        let mut s = c
            .attach(
                &bin,
                &AttachOptions {
                    stdin: true,
                    ..AttachOptions::default()
                },
            )
            .await
            .unwrap();
        let mut data = vec![0xffu8, 0xfe, 0x00, 0x41];
        data.extend(std::iter::repeat_n(b'x', 200_000));
        s.writer().stdin(&data).await.unwrap();
        s.writer().close_stdin().await.unwrap();
        let o = s.output().await.unwrap();
        let out = text(&o.stdout);
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(words, ["200004", "ff", "fe", "00", "41"], "{o:?}");
        assert_eq!(o.exit_code, Some(0));

        // A tty container is resized.
        let tty = c
            .create_container(&ContainerCreate {
                tty: true,
                ..spec(
                    "de-ttyc",
                    &["sh", "-c", "while true; do stty size; sleep 0.1; done"],
                )
            })
            .await
            .unwrap()
            .id;
        c.start_container(&tty).await.unwrap();
        let mut s = c.attach(&tty, &AttachOptions::default()).await.unwrap();
        read_until(&mut s, "24 80").await;
        s.writer().resize(33, 77).await.unwrap();
        read_until(&mut s, "33 77").await;
        drop(s);

        // A tty container's output comes as it is written: a prompt without a newline shows
        // (whether printed before the attach or after).
        for (name, delay) in [("de-prompt-a", "0"), ("de-prompt-b", "1")] {
            let script = format!("sleep {delay}; printf 'prompt> '; read x; echo got-$x");
            let id = c
                .create_container(&ContainerCreate {
                    tty: true,
                    open_stdin: true,
                    ..spec(name, &["sh", "-c", &script])
                })
                .await
                .unwrap()
                .id;
            c.start_container(&id).await.unwrap();
            if delay == "0" {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let mut s = c
                .attach(
                    &id,
                    &AttachOptions {
                        stdin: true,
                        ..AttachOptions::default()
                    },
                )
                .await
                .unwrap();
            read_until(&mut s, "prompt> ").await;
            s.writer().stdin(b"yes\n").await.unwrap();
            read_until(&mut s, "got-yes").await;
            let o = s.output().await.unwrap();
            assert_eq!(o.exit_code, Some(0), "{o:?}");
        }

        // Exited, unknown, or without the upgrade.
        let e = c.attach(&cat, &AttachOptions::default()).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
        let e = c
            .attach("no-such", &AttachOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
        let (status, _) = c
            .raw(
                Method::POST,
                &format!("/v1/containers/{ticker}/attach"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
    });
}

#[test]
fn cli_exec_goes_through_the_daemon() {
    let d = Daemon::start();
    let c = d.client();
    rt().block_on(running(&c, "de-cli", &["sleep", "1000"]));
    let o = d.cli(
        &[
            "container",
            "exec",
            "de-cli",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    assert_eq!(
        (text(&o.stdout).as_str(), text(&o.stderr).as_str()),
        ("out\n", "err\n")
    );
    let o = d.cli(&["container", "exec", "-i", "de-cli", "cat"], b"piped in\n");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "piped in\n");
    // Without -i the command's stdin is empty.
    let o = d.cli(&["container", "exec", "de-cli", "cat"], b"ignored\n");
    assert_eq!((o.status.code(), text(&o.stdout).as_str()), (Some(0), ""));
    let o = d.cli(&["container", "exec", "-it", "de-cli", "true"], b"");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o.stderr), "error: the input device is not a TTY\n");
    let o = d.cli(&["container", "exec", "de-cli", "no-such-command"], b"");
    assert_eq!(o.status.code(), Some(127), "{}", text(&o.stderr));
    let o = d.cli(&["container", "exec", "-d", "de-cli", "sleep", "1"], b"");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = d.cli(&["container", "exec", "no-such", "true"], b"");
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no-such"), "{err}");
    // attach: the output of a container that ends, and its exit code.
    let id = rt().block_on(running(
        &c,
        "de-cli-att",
        &["sh", "-c", "sleep 2; echo attached-out; exit 4"],
    ));
    let o = d.cli(&["container", "attach", &id], b"");
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("attached-out"),
        "{}",
        text(&o.stdout)
    );
}

/// Runs the CLI with a fresh pseudo-terminal (`rows` × `cols`) as its stdio, typing `input`;
/// returns its exit code and what the terminal showed, and checks the terminal's modes are
/// as before once it exited.
fn cli_on_a_terminal(
    d: &Daemon,
    args: &[&str],
    input: &[u8],
    rows: u16,
    cols: u16,
) -> (i32, String) {
    use nix::sys::termios::tcgetattr;
    let size = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(&size, None).unwrap();
    let before = tcgetattr(&pty.slave).unwrap();
    let slave = fs::File::from(pty.slave);
    let mut child = Command::new(BIN)
        .arg("--data-root")
        .arg(&d.root)
        .arg("-H")
        .arg(format!("unix://{}", d.socket.display()))
        .args(args)
        .env_remove("FLOTILLA_HOST")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap())
        .spawn()
        .unwrap();
    let master = fs::File::from(pty.master);
    let mut reader = master.try_clone().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    (&master).write_all(input).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} did not finish: {}", text(&seen.lock().unwrap()));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let after = tcgetattr(&slave).unwrap();
    assert_eq!(
        (after.local_flags, after.input_flags, after.output_flags),
        (before.local_flags, before.input_flags, before.output_flags),
        "the terminal was not restored"
    );
    drop(slave);
    drop(master);
    let _ = thread.join();
    let out = text(&seen.lock().unwrap());
    (status.code().unwrap_or(-1), out)
}

#[test]
fn cli_on_a_terminal_is_raw_resized_and_restored() {
    let d = Daemon::start();
    let c = d.client();
    rt().block_on(running(&c, "de-pty", &["sleep", "1000"]));
    let (code, out) = cli_on_a_terminal(
        &d,
        &["container", "exec", "-it", "de-pty", "sh"],
        b"stty size; tty; exit 6\n",
        27,
        91,
    );
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("27 91"), "{out:?}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    // run -it attaches through the daemon: the terminal's size, the command's code.
    let (code, out) = cli_on_a_terminal(
        &d,
        &[
            "container",
            "run",
            "-it",
            "--rm",
            "--name",
            "de-run",
            IMAGE,
            "sh",
        ],
        b"stty size; exit 4\n",
        33,
        101,
    );
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("33 101"), "{out:?}");
}

#[test]
fn exec_over_tcp_needs_the_token() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = Daemon::start_on(Some(port));
    let c = d.client();
    let rt = rt();
    let id = rt.block_on(running(&c, "de-tcp", &["sleep", "1000"]));
    rt.block_on(async {
        let tcp = |token: Option<&str>| {
            Client::new(
                Host::Tcp(format!("127.0.0.1:{port}")),
                token.map(String::from),
            )
        };
        let o = tcp(Some(TOKEN))
            .exec(&id, &cmd(&["sh", "-c", "echo over tcp; exit 2"]))
            .await
            .unwrap()
            .output()
            .await
            .unwrap();
        assert_eq!(
            (text(&o.stdout).as_str(), o.exit_code),
            ("over tcp\n", Some(2))
        );
        for token in [None, Some("wrong")] {
            let e = tcp(token).exec(&id, &cmd(&["true"])).await.unwrap_err();
            assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
            let e = tcp(token)
                .attach(&id, &AttachOptions::default())
                .await
                .unwrap_err();
            assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
        }
    });
}
