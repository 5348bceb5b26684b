//! `network connect` / `network disconnect` (CLI and `/v1/networks/{name}/connect|disconnect`)
//! and Compose's `ipam.config[0].gateway`/`ip_range`, against a real daemon (root): a running
//! busybox container gets a second interface at once, reaches a container of the other network
//! by name (busybox `wget` to an `httpd`) and its names are in that network's DNS; a daemon
//! restart keeps all of it; disconnect takes it away; removal leaves no veth. Each test has its
//! own data root, socket, network prefix and project names, subnets picked at random in
//! 10.200–249.x; everything is removed at the end, also when a test fails
//! ([`common::netdaemon::NetDaemon`]'s drop).

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::netdaemon::{IMAGE, NetDaemon, random_subnet, unique};
use flotilla::api::types::{ErrorBody, ErrorCode, NetworkConnect};
use http::{Method, StatusCode};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Two different random /24s.
fn two_subnets() -> ((u8, u8), (u8, u8)) {
    let one = random_subnet();
    loop {
        let two = random_subnet();
        if two != one {
            return (one, two);
        }
    }
}

/// The A records the DNS server at `server` (a gateway of the test's own network, asked from
/// the host, whose address on the bridge is that gateway) answers for `name`.
fn dns_a(server: Ipv4Addr, name: &str) -> Vec<Ipv4Addr> {
    let socket = std::net::UdpSocket::bind(("0.0.0.0", 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.send_to(&q, (server, 53)).unwrap();
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf).unwrap();
    let r = &buf[..n];
    assert_eq!(&r[..2], &[0xab, 0xcd]);
    let count = u16::from_be_bytes([r[6], r[7]]);
    // The answer repeats the question: the records follow it.
    let mut i = q.len();
    let mut out = Vec::new();
    for _ in 0..count {
        // Our answers name the question by a pointer (2 bytes).
        if r[i] & 0xc0 == 0xc0 {
            i += 2;
        } else {
            while r[i] != 0 {
                i += 1 + r[i] as usize;
            }
            i += 1;
        }
        let kind = u16::from_be_bytes([r[i], r[i + 1]]);
        let len = u16::from_be_bytes([r[i + 8], r[i + 9]]) as usize;
        i += 10;
        if kind == 1 && len == 4 {
            out.push(Ipv4Addr::new(r[i], r[i + 1], r[i + 2], r[i + 3]));
        }
        i += len;
    }
    out
}

/// The network interfaces inside a container (`/proc/net/dev` of its namespace).
fn interfaces(d: &NetDaemon, container: &str) -> Vec<String> {
    let mut names: Vec<String> = d
        .ok(&["container", "exec", container, "cat", "/proc/net/dev"])
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .collect();
    names.sort();
    names
}

/// `wget` from `from` to `url`: its output, or none when it fails (an unknown name fails at
/// once; busybox's `-T` crashes, so no timeout is given).
fn fetch(d: &NetDaemon, from: &str, url: &str) -> Option<String> {
    let o = d.cli(&["container", "exec", from, "wget", "-q", "-O", "-", url]);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Waits (bounded) until `from` fetches `url`.
fn fetch_soon(d: &NetDaemon, from: &str, url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(body) = fetch(d, from, url) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{from} never fetched {url}\ndaemon log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn inspect(d: &NetDaemon, network: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&d.ok(&["network", "inspect", network])).unwrap();
    v[0].clone()
}

/// The address (without prefix) of `container` on the inspected network, if attached.
fn address_on(net: &serde_json::Value, container: &str) -> Option<Ipv4Addr> {
    net["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == container)
        .map(|c| {
            let cidr = c["ipv4_address"].as_str().unwrap();
            cidr.split('/').next().unwrap().parse().unwrap()
        })
}

/// A request with a raw JSON body: the status and the decoded error.
fn api(d: &NetDaemon, path: &str, body: &str) -> (StatusCode, Option<ErrorBody>) {
    let c = d.client();
    rt().block_on(async {
        let (status, bytes) = c
            .raw(Method::POST, path, Some(Bytes::from(body.to_string())))
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).ok())
    })
}

fn refused(d: &NetDaemon, path: &str, body: &str, status: StatusCode, text: &str) {
    let (got, err) = api(d, path, body);
    let err = err.unwrap_or_else(|| panic!("{path} {body}: no JSON error ({got})"));
    assert_eq!(got, status, "{path} {body}: {}", err.message);
    let code = match status {
        StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        _ => ErrorCode::Conflict,
    };
    assert_eq!(err.code, code, "{}", err.message);
    assert!(
        err.message.contains(text),
        "{path} {body}: {:?} does not contain {text:?}",
        err.message
    );
}

/// The logged `network` events as (action, network name, container id).
fn network_events(d: &NetDaemon) -> Vec<(String, String, String)> {
    let c = d.client();
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let body = rt().block_on(async {
        let (status, body) = c
            .raw(
                Method::GET,
                &format!("/v1/events?since=0&until={until}"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        body
    });
    String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "network" || e["kind"] == "network")
        .map(|e| {
            let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
            (
                s(&e["action"]),
                s(&e["name"]),
                s(&e["attributes"]["container"]),
            )
        })
        .collect()
}

#[test]
fn connect_disconnect_dns_restart_and_removal() {
    let mut d = NetDaemon::start(true);
    let tag = unique();
    let ((a1, b1), (a2, b2)) = two_subnets();
    let project = format!("nc{tag}");
    let back = format!("back{tag}");
    let back_gw: Ipv4Addr = format!("10.{a2}.{b2}.1").parse().unwrap();
    d.ok(&[
        "network",
        "create",
        "--subnet",
        &format!("10.{a2}.{b2}.0/24"),
        &back,
    ]);
    let yaml = format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: [sleep, '300']\n    \
         networks: [front]\n  web:\n    image: {IMAGE}\n    command: [sh, -c, 'mkdir -p /www \
         && echo hello-{tag} > /www/index.html && exec httpd -f -p 8080 -h /www']\n    \
         networks: [back]\n  onhost:\n    image: {IMAGE}\n    command: [sleep, '300']\n    \
         network_mode: host\n  idle:\n    image: {IMAGE}\n    command: [sleep, '300']\n    \
         networks: [front]\nnetworks:\n  front:\n    ipam:\n      config:\n        - subnet: \
         10.{a1}.{b1}.0/24\n          gateway: 10.{a1}.{b1}.254\n          ip_range: \
         10.{a1}.{b1}.128/25\n  back:\n    external: true\n    name: {back}\n"
    );
    let dir = d.stack(&project, &yaml);
    d.ok_in(&dir, &["up", "-d"]);
    let app = format!("{project}-app-1");
    let web = format!("{project}-web-1");
    let idle = format!("{project}-idle-1");

    // Compose's gateway and ip_range: the bridge has the gateway, addresses come from the range.
    let front = inspect(&d, &format!("{project}_front"));
    assert_eq!(front["gateway"], format!("10.{a1}.{b1}.254"));
    assert_eq!(front["ip_range"], format!("10.{a1}.{b1}.128/25"));
    let bridge = front["bridge"].as_str().unwrap().to_string();
    assert!(
        d.addresses(&bridge)
            .contains(&format!("10.{a1}.{b1}.254/24")),
        "{}",
        d.addresses(&bridge)
    );
    let app_front = address_on(&front, &app).unwrap();
    assert!(app_front.octets()[3] >= 128, "{app_front}");

    // Not connected yet: one interface besides lo, the web server is out of reach.
    assert_eq!(interfaces(&d, &app), ["eth0", "lo"]);
    assert_eq!(fetch(&d, &app, &format!("http://{web}:8080/")), None);
    let links_before = d.links();

    // Bad input: clear errors, nothing made.
    let path = format!("/v1/networks/{back}/connect");
    let body = |container: &str, extra: &str| format!(r#"{{"container":"{container}"{extra}}}"#);
    refused(
        &d,
        &format!("/v1/networks/nope{tag}/connect"),
        &body(&app, ""),
        StatusCode::NOT_FOUND,
        "not found",
    );
    refused(
        &d,
        &path,
        &body(&format!("nope{tag}"), ""),
        StatusCode::NOT_FOUND,
        &format!("nope{tag}"),
    );
    refused(
        &d,
        &path,
        &body(&app, r#","ipv4_address":"10.9.9.9""#),
        StatusCode::BAD_REQUEST,
        "outside the subnet",
    );
    refused(
        &d,
        &path,
        &body(&app, r#","ipv4_address":"banana""#),
        StatusCode::BAD_REQUEST,
        "not an IPv4 address",
    );
    refused(
        &d,
        &path,
        &body(&app, r#","aliases":["a b"]"#),
        StatusCode::BAD_REQUEST,
        "alias",
    );
    refused(
        &d,
        &path,
        &body(&app, r#","mode":1"#),
        StatusCode::BAD_REQUEST,
        "mode",
    );
    let web_ip = address_on(&inspect(&d, &back), &web).unwrap();
    refused(
        &d,
        &path,
        &body(&app, &format!(r#","ipv4_address":"{web_ip}""#)),
        StatusCode::CONFLICT,
        "already in use",
    );
    refused(
        &d,
        &path,
        &body(&format!("{project}-onhost-1"), ""),
        StatusCode::CONFLICT,
        "network_mode host",
    );
    refused(
        &d,
        &format!("/v1/networks/{back}/disconnect"),
        &body(&app, ""),
        StatusCode::CONFLICT,
        "is not connected",
    );
    // The CLI: one clear line, exit code 1.
    let err = d.fails(&["network", "connect", "--ip", "10.9.9.9", &back, &app], 1);
    assert!(err.contains("outside the subnet"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let err = d.fails(
        &["network", "connect", &back, &format!("{project}-onhost-1")],
        1,
    );
    assert!(err.contains("network_mode host"), "{err}");
    d.fails(&["network", "connect", &back], 2);
    assert_eq!(
        d.links_until(|l| l == links_before.as_slice()),
        links_before,
        "a refused connect left a link"
    );
    assert_eq!(interfaces(&d, &app), ["eth0", "lo"]);

    // Connect: a second interface at once, the web server reachable by name, the names in
    // the network's DNS.
    d.ok(&[
        "network",
        "connect",
        "--alias",
        &format!("extra{tag}"),
        &back,
        &app,
    ]);
    assert_eq!(interfaces(&d, &app), ["eth0", "eth1", "lo"]);
    let app_veth: Vec<String> = d
        .links()
        .into_iter()
        .filter(|l| !links_before.contains(l))
        .collect();
    assert_eq!(app_veth.len(), 1, "{app_veth:?}");
    let app_back = address_on(&inspect(&d, &back), &app).unwrap();
    // The address is the container's own (a local route of its namespace).
    let trie = d.ok(&["container", "exec", &app, "cat", "/proc/net/fib_trie"]);
    assert!(trie.contains(&format!("|-- {app_back}\n")), "{trie}");
    let url = format!("http://{web}:8080/");
    assert_eq!(fetch_soon(&d, &app, &url), format!("hello-{tag}\n"));
    assert_eq!(dns_a(back_gw, &format!("extra{tag}")), [app_back]);
    assert_eq!(dns_a(back_gw, &app), [app_back]);
    let err = d.fails(&["network", "connect", &back, &app], 1);
    assert!(err.contains("already connected"), "{err}");
    let err = d.fails(&["network", "rm", &back], 1);
    assert!(err.contains(&app), "{err}");

    // A stopped container connects too, with the address asked for; its names
    // join the DNS when it starts.
    d.ok_in(&dir, &["stop", "-t", "1", "idle"]);
    let asked: Ipv4Addr = format!("10.{a2}.{b2}.77").parse().unwrap();
    d.ok(&[
        "network",
        "connect",
        "--ip",
        &asked.to_string(),
        &back,
        &idle,
    ]);
    assert_eq!(address_on(&inspect(&d, &back), &idle), Some(asked));
    assert_eq!(dns_a(back_gw, &idle), Vec::<Ipv4Addr>::new());
    d.ok_in(&dir, &["start", "idle"]);
    assert_eq!(interfaces(&d, &idle), ["eth0", "eth1", "lo"]);
    assert_eq!(dns_a(back_gw, &idle), [asked]);

    // A daemon restart keeps it: inspect, DNS, the interface and the route to the server.
    d.restart();
    assert_eq!(address_on(&inspect(&d, &back), &app), Some(app_back));
    assert_eq!(dns_a(back_gw, &format!("extra{tag}")), [app_back]);
    assert_eq!(interfaces(&d, &app), ["eth0", "eth1", "lo"]);
    assert_eq!(fetch_soon(&d, &app, &url), format!("hello-{tag}\n"));

    // Disconnect: the interface, the names and the address go.
    d.ok(&["network", "disconnect", &back, &app]);
    assert_eq!(interfaces(&d, &app), ["eth0", "lo"]);
    assert_eq!(address_on(&inspect(&d, &back), &app), None);
    assert!(
        !d.links().contains(&app_veth[0]),
        "the veth of the endpoint is gone"
    );
    assert_eq!(
        dns_a(back_gw, &format!("extra{tag}")),
        Vec::<Ipv4Addr>::new()
    );
    assert_eq!(fetch(&d, &app, &url), None);
    let err = d.fails(&["network", "disconnect", &back, &app], 1);
    assert!(err.contains("is not connected"), "{err}");
    d.ok(&["network", "disconnect", "-f", &back, &app]);
    // Its address is free again: asked for explicitly, through the typed client.
    let c = d.client();
    let ep = rt()
        .block_on(c.connect_network(
            &back,
            &NetworkConnect {
                container: app.clone(),
                aliases: vec![],
                ipv4_address: Some(app_back.to_string()),
            },
        ))
        .unwrap();
    assert_eq!(ep.ipv4_address, format!("{app_back}/24"));
    assert_eq!(ep.aliases, vec![app.clone()]);
    assert_eq!(fetch_soon(&d, &app, &url), format!("hello-{tag}\n"));

    // Events: Docker's actions, naming the network and the container.
    let app_id = rt().block_on(c.inspect_container(&app)).unwrap().id;
    let events = network_events(&d);
    let mine: Vec<&str> = events
        .iter()
        .filter(|(_, n, c)| *n == back && *c == app_id)
        .map(|(a, _, _)| a.as_str())
        .collect();
    assert_eq!(mine, ["connect", "disconnect", "connect"], "{events:?}");

    // Removing the containers releases their endpoints on the other network: no address, no
    // veth left, and the network can be removed.
    d.ok_in(&dir, &["down", "-t", "1"]);
    assert_eq!(inspect(&d, &back)["containers"], serde_json::json!([]));
    d.ok(&["network", "rm", &back]);
    d.finish();
}

#[test]
fn compose_ipam_gateway_and_ip_range_are_checked_naming_the_field() {
    let mut d = NetDaemon::start(true);
    let tag = unique();
    let (a, b) = random_subnet();
    for (i, (config, want)) in [
        (
            format!("subnet: 10.{a}.{b}.0/24\n          gateway: 10.{a}.{b}.255"),
            "networks.front.ipam.config[0].gateway: address",
        ),
        (
            format!("subnet: 10.{a}.{b}.0/24\n          gateway: 10.1.2.3"),
            "networks.front.ipam.config[0].gateway: address 10.1.2.3 is outside",
        ),
        (
            format!("gateway: 10.{a}.{b}.1"),
            "networks.front.ipam.config[0].gateway: needs ipam.config[0].subnet",
        ),
        (
            format!("subnet: 10.{a}.{b}.0/24\n          ip_range: 10.9.0.0/25"),
            "networks.front.ipam.config[0].ip_range: ip range 10.9.0.0/25 is not inside",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let yaml = format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: [sleep, '300']\n    \
             networks: [front]\nnetworks:\n  front:\n    ipam:\n      config:\n        - {config}\n"
        );
        let dir = d.stack(&format!("ip{i}{tag}"), &yaml);
        let o = d.cli_in(&dir, &["up", "-d"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{config}: {err}");
        assert!(
            err.contains(want),
            "{config}: {err:?} does not contain {want:?}"
        );
        assert_eq!(
            d.links_until(|l| l.is_empty()),
            Vec::<String>::new(),
            "{config}: nothing is made"
        );
    }
    d.finish();
}
