//! `container run` on bridge networks, with published ports and named volumes, through the real
//! CLI against a real daemon (root): a container on a user network reaches another by its name
//! and by its `--network-alias` (busybox `wget` to an `httpd`); `-p 127.0.0.1:PORT:80` serves
//! that `httpd` to the host; `--network bridge` makes the daemon's default bridge network on
//! first use; a named volume (`-v NAME:/data`) is made on first use and keeps a file across two
//! `run --rm`; `--dns` lands in `/etc/resolv.conf`. Bad inputs (unknown network, bad port spec,
//! a port another container publishes, `-p` or an alias without a bridge network) fail with
//! Docker's 125 and a clear message, and leave no container, network namespace or volume.
//! Each test has its own daemon (data root, socket, network prefix); everything is removed at
//! the end, also when a test fails ([`common::netdaemon::NetDaemon`]'s drop).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::netdaemon::{IMAGE, NetDaemon, random_subnet, unique};

/// A loopback TCP port free right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// `GET /` from the host on 127.0.0.1:`port` (HTTP/1.0), retried until `deadline`.
fn http_get(port: u16, deadline: Instant) -> String {
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match attempt {
            Ok(body) if body.contains("200") => return body,
            other if Instant::now() >= deadline => panic!("GET 127.0.0.1:{port}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn names_aliases_published_ports_and_named_volumes() {
    let d = NetDaemon::start(true);
    let u = unique();
    let (a, b) = random_subnet();
    let net = format!("cn-{u}");
    let subnet = format!("10.{a}.{b}.0/24");
    d.ok(&["network", "create", "--subnet", &subnet, &net]);
    let web = format!("web-{u}");
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    d.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        &web,
        "--network",
        &net,
        "--network-alias",
        "www",
        "-p",
        &publish,
        IMAGE,
        "sh",
        "-c",
        "mkdir -p /srv && echo hello-web > /srv/index.html && exec httpd -f -p 80 -h /srv",
    ]);

    // From the host, through the published port.
    let body = http_get(port, Instant::now() + Duration::from_secs(20));
    assert!(body.contains("hello-web"), "{body}");
    let ps = d.ok(&["container", "ls"]);
    assert!(ps.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ps}");

    // From another container of the network, by name and by alias; its resolver is the
    // network's DNS server (the gateway), or the one given.
    let fetch = format!("wget -qO- http://{web}/ && wget -qO- http://www/ && cat /etc/resolv.conf");
    let out = d.ok(&[
        "container",
        "run",
        "--rm",
        "--network",
        &net,
        IMAGE,
        "sh",
        "-c",
        &fetch,
    ]);
    assert_eq!(out.matches("hello-web").count(), 2, "{out}");
    assert!(out.contains(&format!("nameserver 10.{a}.{b}.1")), "{out}");
    let out = d.ok(&[
        "container",
        "run",
        "--rm",
        "--network",
        &net,
        "--dns",
        "10.9.8.7",
        IMAGE,
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(out.contains("nameserver 10.9.8.7"), "{out}");

    // A named volume: made on first use, its file still there for the next container.
    let vol = format!("data-{u}");
    let mount = format!("{vol}:/data");
    d.ok(&[
        "container",
        "run",
        "--rm",
        "-v",
        &mount,
        IMAGE,
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert!(d.ok(&["volume", "ls", "-q"]).lines().any(|l| l == vol));
    let out = d.ok(&[
        "container",
        "run",
        "--rm",
        "-v",
        &mount,
        IMAGE,
        "cat",
        "/data/f",
    ]);
    assert_eq!(out.trim(), "kept");

    // Docker's default bridge network, made on first use; it is the default, as with Docker,
    // and `--network none` has only `lo`.
    for (network, want) in [
        (Some("bridge"), "eth0\nlo"),
        (None, "eth0\nlo"),
        (Some("none"), "lo"),
    ] {
        let mut args = vec!["container", "run", "--rm"];
        if let Some(n) = network {
            args.extend(["--network", n]);
        }
        args.extend([IMAGE, "ls", "/sys/class/net"]);
        assert_eq!(d.ok(&args).trim(), want, "{network:?}");
    }
    assert!(
        d.ok(&["network", "ls"]).contains("bridge"),
        "the default bridge network is listed"
    );

    // Bad inputs: clear errors, Docker's 125, nothing left of them.
    let before = (d.state_dirs(), d.netns_files().len());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "container",
                "run",
                "--rm",
                "--network",
                "nosuch",
                IMAGE,
                "true",
            ],
            "network \"nosuch\" not found",
        ),
        (
            vec![
                "container",
                "run",
                "--rm",
                "--network",
                &net,
                "-p",
                "99999:80",
                IMAGE,
                "true",
            ],
            "invalid port",
        ),
        (
            vec![
                "container",
                "run",
                "--rm",
                "--network",
                &net,
                "-p",
                &publish,
                IMAGE,
                "true",
            ],
            "already in use",
        ),
        (
            vec![
                "container",
                "run",
                "--rm",
                "--network",
                "none",
                "-p",
                "8080:80",
                IMAGE,
                "true",
            ],
            "needs a bridge network",
        ),
        (
            vec![
                "container",
                "run",
                "--rm",
                "--network",
                "host",
                "--network-alias",
                "x",
                IMAGE,
                "true",
            ],
            "needs a bridge network",
        ),
        (
            vec![
                "container",
                "run",
                "--rm",
                "--network",
                &net,
                "--name",
                &web,
                IMAGE,
                "true",
            ],
            "already in use",
        ),
    ];
    for (args, message) in cases {
        let err = d.fails(&args, 125);
        assert!(err.contains(message), "{args:?}: {err}");
    }
    // The refused runs are gone (the port conflict's container was auto-removed).
    let deadline = Instant::now() + Duration::from_secs(10);
    while (d.state_dirs(), d.netns_files().len()) != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!((d.state_dirs(), d.netns_files().len()), before);

    // Removal releases the namespace and the port; then the networks and the volume go.
    d.ok(&["container", "rm", "-f", &web]);
    assert!(d.netns_files().is_empty(), "{:?}", d.netns_files());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    d.ok(&["network", "rm", &net, "bridge"]);
    d.ok(&["volume", "rm", &vol]);
    d.finish();
}

/// The create endpoint's contract for networks, aliases, volumes, ports and DNS servers: 400
/// for bad input, 404 for an unknown network, 409 for a taken name, and nothing made.
#[test]
fn create_contract_of_bridge_options() {
    use flotilla::api::types::{ContainerCreate, ErrorCode, PublishPort, VolumeMount};
    let d = NetDaemon::start(true);
    let u = unique();
    let (a, b) = random_subnet();
    let net = format!("cc-{u}");
    d.ok(&[
        "network",
        "create",
        "--subnet",
        &format!("10.{a}.{b}.0/24"),
        &net,
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = d.client();
    let base = |network: Option<&str>| ContainerCreate {
        image: IMAGE.into(),
        command: Some(vec!["true".into()]),
        network: network.map(str::to_string),
        ..ContainerCreate::default()
    };
    let port = |target: u32, protocol: &str| PublishPort {
        target,
        published: None,
        host_ip: Some("127.0.0.1".into()),
        protocol: Some(protocol.into()),
    };
    let made = rt
        .block_on(c.create_container(&ContainerCreate {
            name: Some(format!("taken-{u}")),
            publish: vec![port(80, "tcp")],
            network_aliases: vec!["alias".into()],
            ..base(Some(&net))
        }))
        .unwrap();
    let before = (d.state_dirs(), d.netns_files().len());
    let cases: Vec<(ContainerCreate, ErrorCode)> = vec![
        (
            ContainerCreate {
                publish: vec![port(80, "tcp")],
                ..base(None)
            },
            ErrorCode::BadRequest,
        ),
        (
            ContainerCreate {
                network_aliases: vec!["a".into()],
                ..base(Some("none"))
            },
            ErrorCode::BadRequest,
        ),
        (
            ContainerCreate {
                publish: vec![port(80, "sctp")],
                ..base(Some(&net))
            },
            ErrorCode::BadRequest,
        ),
        (
            ContainerCreate {
                publish: vec![port(0, "tcp")],
                ..base(Some(&net))
            },
            ErrorCode::BadRequest,
        ),
        (
            ContainerCreate {
                dns: vec!["not-an-ip".into()],
                ..base(None)
            },
            ErrorCode::BadRequest,
        ),
        (
            ContainerCreate {
                volumes: vec![VolumeMount {
                    name: format!("v-{u}"),
                    target: "relative".into(),
                    read_only: false,
                }],
                ..base(None)
            },
            ErrorCode::BadRequest,
        ),
        (
            ContainerCreate {
                volumes: vec![VolumeMount {
                    name: "bad/name".into(),
                    target: "/data".into(),
                    read_only: false,
                }],
                ..base(None)
            },
            ErrorCode::BadRequest,
        ),
        (base(Some(&format!("nosuch-{u}"))), ErrorCode::NotFound),
        (
            ContainerCreate {
                name: Some(format!("taken-{u}")),
                ..base(Some(&net))
            },
            ErrorCode::Conflict,
        ),
    ];
    for (req, code) in cases {
        let e = rt.block_on(c.create_container(&req)).unwrap_err();
        assert_eq!(e.code(), Some(code), "{req:?}: {e}");
    }
    assert_eq!((d.state_dirs(), d.netns_files().len()), before);
    assert!(!d.ok(&["volume", "ls", "-q"]).contains(&format!("v-{u}")));
    d.ok(&["container", "rm", &made.id]);
    assert!(d.netns_files().is_empty());
    d.ok(&["network", "rm", &net]);
    d.finish();
}
