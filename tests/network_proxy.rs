//! The userland proxy of published ports over real sockets on 127.0.0.1 (ephemeral ports,
//! parallel-safe, no root needed). The "container" is an echo server the test runs on
//! 127.0.0.1: bytes both ways, half-close in both directions, UDP flows and their idle
//! timeout, port conflicts (with another process's socket and with another container), stop
//! releasing the port and closing live connections, 200 concurrent connections.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla::network::proxy::{
    PortBinding, Protocol, Proxies, ProxyConfig, ProxyError, PublishRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(10);

/// A server task aborted when the value is dropped.
struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// TCP: echoes everything, and shuts down its write side when the client has (half-close).
async fn tcp_echo() -> Server {
    let listener = TcpListener::bind((LO, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            conns.spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    Server { addr, task }
}

/// UDP: echoes each datagram; remembers the source addresses it saw.
async fn udp_echo() -> (Server, Arc<Mutex<Vec<SocketAddr>>>) {
    let sock = UdpSocket::bind((LO, 0)).await.unwrap();
    let addr = sock.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            log.lock().unwrap().push(peer);
            let _ = sock.send_to(&buf[..n], peer).await;
        }
    });
    (Server { addr, task }, seen)
}

fn request(host_ports: (u16, u16), target: SocketAddr, protocol: Protocol) -> PublishRequest {
    PublishRequest {
        host_ip: LO,
        host_ports,
        container_ip: target.ip(),
        container_port: target.port(),
        protocol,
    }
}

fn published(b: &PortBinding) -> SocketAddr {
    SocketAddr::new(b.host_ip, b.host_port)
}

/// A port free right now (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind((LO, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn tcp_bytes_both_ways_with_half_close() {
    bytes_both_ways(ProxyConfig::default()).await;
}

#[tokio::test]
async fn tcp_bytes_both_ways_with_half_close_without_splice() {
    let config = ProxyConfig {
        splice: false,
        ..ProxyConfig::default()
    };
    bytes_both_ways(config).await;
}

async fn bytes_both_ways(config: ProxyConfig) {
    let echo = tcp_echo().await;
    let proxies = Proxies::new(config);
    let b = proxies
        .start("c1", &[request((0, 0), echo.addr, Protocol::Tcp)])
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_ne!(b[0].host_port, 0);
    assert_eq!(proxies.port("c1"), b);
    assert_eq!(proxies.lookup("c1", echo.addr.port(), Protocol::Tcp), b);
    assert!(
        proxies
            .lookup("c1", echo.addr.port(), Protocol::Udp)
            .is_empty()
    );

    // 1 MiB up, then the client shuts down its write side; the echo only ends after that EOF
    // reached it through the proxy, and the way back stays open meanwhile.
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let stream = TcpStream::connect(published(&b[0])).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let upload = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&upload).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut back = Vec::new();
    tokio::time::timeout(WAIT, r.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data);
    drop(writer.await.unwrap());
    proxies.stop("c1").await;
}

#[tokio::test]
async fn tcp_half_close_from_the_container_side() {
    // The container sends a banner and closes its write side, then still reads the client.
    let listener = TcpListener::bind((LO, 0)).await.unwrap();
    let target = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"banner").await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        let _ = tx.send(got);
    });
    let proxies = Proxies::new(ProxyConfig::default());
    let b = proxies
        .start("c1", &[request((0, 0), target, Protocol::Tcp)])
        .unwrap();
    let mut s = TcpStream::connect(published(&b[0])).await.unwrap();
    let mut banner = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut banner))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(banner, b"banner");
    s.write_all(b"after your eof").await.unwrap();
    s.shutdown().await.unwrap();
    let got = tokio::time::timeout(WAIT, rx).await.unwrap().unwrap();
    assert_eq!(got, b"after your eof");
    server.await.unwrap();
    proxies.stop_all().await;
}

#[tokio::test]
async fn udp_datagrams_per_client_flow_and_idle_timeout() {
    let (echo, seen) = udp_echo().await;
    let config = ProxyConfig {
        udp_idle_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    };
    let proxies = Proxies::new(config);
    let b = proxies
        .start("c1", &[request((0, 0), echo.addr, Protocol::Udp)])
        .unwrap();
    assert_eq!(b[0].protocol, Protocol::Udp);
    let at = published(&b[0]);
    let clients = [
        UdpSocket::bind((LO, 0)).await.unwrap(),
        UdpSocket::bind((LO, 0)).await.unwrap(),
    ];
    let mut buf = vec![0u8; 65535];
    for round in 0..5u8 {
        for (i, c) in clients.iter().enumerate() {
            let msg = vec![round, i as u8, 7, 7];
            c.send_to(&msg, at).await.unwrap();
            let (n, from) = tokio::time::timeout(WAIT, c.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(from, at, "replies come from the published port");
            assert_eq!(&buf[..n], &msg[..]);
        }
    }
    // A large datagram.
    let big = vec![0x5a; 60_000];
    clients[0].send_to(&big, at).await.unwrap();
    let (n, _) = tokio::time::timeout(WAIT, clients[0].recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, big.len());
    let flows: BTreeSet<SocketAddr> = seen.lock().unwrap().iter().copied().collect();
    assert_eq!(flows.len(), 2, "one flow per client");

    // After the idle timeout the flow is gone: the next datagram opens a new one.
    tokio::time::sleep(Duration::from_millis(700)).await;
    clients[0].send_to(b"again", at).await.unwrap();
    tokio::time::timeout(WAIT, clients[0].recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let flows: BTreeSet<SocketAddr> = seen.lock().unwrap().iter().copied().collect();
    assert_eq!(flows.len(), 3, "a new flow after the idle timeout");
    proxies.stop("c1").await;
}

#[tokio::test]
async fn a_port_held_by_another_process_fails_clearly_and_nothing_stays_bound() {
    let echo = tcp_echo().await;
    let (uecho, _) = udp_echo().await;
    // "Another process": sockets the test holds.
    let held = std::net::TcpListener::bind((LO, 0)).unwrap();
    let port = held.local_addr().unwrap().port();
    let held_udp = std::net::UdpSocket::bind((LO, 0)).unwrap();
    let uport = held_udp.local_addr().unwrap().port();

    let proxies = Proxies::new(ProxyConfig::default());
    let free = free_port();
    let err = proxies
        .start(
            "c1",
            &[
                request((free, free), echo.addr, Protocol::Tcp),
                request((port, port), echo.addr, Protocol::Tcp),
            ],
        )
        .unwrap_err();
    assert!(matches!(err, ProxyError::InUse { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "port {port} is already in use on 127.0.0.1: tcp: "
        )),
        "{text}"
    );
    // The first port of the failed call was released, and nothing is registered.
    assert!(proxies.port("c1").is_empty());
    assert!(proxies.containers().is_empty());
    drop(std::net::TcpListener::bind((LO, free)).expect("the first port was released"));

    let err = proxies
        .start("c1", &[request((uport, uport), uecho.addr, Protocol::Udp)])
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "port {uport} is already in use on 127.0.0.1: udp: "
        )),
        "{err}"
    );
    // The same port number for the other protocol is fine.
    let b = proxies
        .start("c1", &[request((port, port), uecho.addr, Protocol::Udp)])
        .unwrap();
    assert_eq!(b[0].host_port, port);
    proxies.stop("c1").await;
}

#[tokio::test]
async fn a_port_published_by_another_container_names_it() {
    let echo = tcp_echo().await;
    let proxies = Proxies::new(ProxyConfig::default());
    let b = proxies
        .start("web-1", &[request((0, 0), echo.addr, Protocol::Tcp)])
        .unwrap();
    let port = b[0].host_port;
    let err = proxies
        .start("web-2", &[request((port, port), echo.addr, Protocol::Tcp)])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("port {port} is already in use on 127.0.0.1: tcp: published by container web-1")
    );
    assert_eq!(
        proxies.holder(LO, port, Protocol::Tcp).as_deref(),
        Some("web-1")
    );
    let err = proxies
        .start("web-1", &[request((0, 0), echo.addr, Protocol::Tcp)])
        .unwrap_err();
    assert!(matches!(err, ProxyError::AlreadyStarted { .. }));
    proxies.stop_all().await;
    assert!(proxies.holder(LO, port, Protocol::Tcp).is_none());
}

#[tokio::test]
async fn a_range_takes_its_first_free_port() {
    let echo = tcp_echo().await;
    let proxies = Proxies::new(ProxyConfig::default());
    // Find a held port whose successor is free (retry: other tests run in parallel).
    for _ in 0..50 {
        let held = std::net::TcpListener::bind((LO, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        if port == u16::MAX || std::net::TcpListener::bind((LO, port + 1)).is_err() {
            continue;
        }
        match proxies.start("c1", &[request((port, port + 1), echo.addr, Protocol::Tcp)]) {
            Ok(b) => {
                assert_eq!(b[0].host_port, port + 1);
                proxies.stop("c1").await;
                // A range with no free port at all.
                let other = std::net::TcpListener::bind((LO, port + 1));
                if other.is_ok() {
                    let err = proxies
                        .start("c1", &[request((port, port + 1), echo.addr, Protocol::Tcp)])
                        .unwrap_err();
                    assert_eq!(
                        err.to_string(),
                        format!("no free port in {port}-{} on 127.0.0.1: tcp", port + 1)
                    );
                }
                return;
            }
            Err(_) => continue,
        }
    }
    panic!("no pair of ports found");
}

#[tokio::test]
async fn stop_releases_the_port_and_closes_live_connections() {
    let echo = tcp_echo().await;
    let (uecho, _) = udp_echo().await;
    let proxies = Proxies::new(ProxyConfig::default());
    let b = proxies
        .start(
            "c1",
            &[
                request((0, 0), echo.addr, Protocol::Tcp),
                request((0, 0), uecho.addr, Protocol::Udp),
            ],
        )
        .unwrap();
    let mut live = TcpStream::connect(published(&b[0])).await.unwrap();
    live.write_all(b"ping").await.unwrap();
    let mut four = [0u8; 4];
    live.read_exact(&mut four).await.unwrap();
    assert_eq!(&four, b"ping");

    assert!(proxies.stop("c1").await);
    assert!(!proxies.stop("c1").await);
    assert!(proxies.port("c1").is_empty());
    // The live connection was closed.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(WAIT, live.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    // Both host ports bind again, by the proxy or by anyone.
    let again = proxies
        .start(
            "c2",
            &[
                request((b[0].host_port, b[0].host_port), echo.addr, Protocol::Tcp),
                request((b[1].host_port, b[1].host_port), uecho.addr, Protocol::Udp),
            ],
        )
        .unwrap();
    assert_eq!(again, b);
    proxies.stop("c2").await;
    drop(std::net::TcpListener::bind(published(&b[0])).expect("tcp port free"));
    drop(std::net::UdpSocket::bind(published(&b[1])).expect("udp port free"));
}

#[tokio::test]
async fn an_unreachable_container_closes_the_client() {
    let dead = SocketAddr::new(LO, free_port());
    let proxies = Proxies::new(ProxyConfig::default());
    let b = proxies
        .start("c1", &[request((0, 0), dead, Protocol::Tcp)])
        .unwrap();
    let mut s = TcpStream::connect(published(&b[0])).await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(WAIT, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    proxies.stop("c1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_connections() {
    let echo = tcp_echo().await;
    let proxies = Arc::new(Proxies::new(ProxyConfig::default()));
    let b = proxies
        .start("c1", &[request((0, 0), echo.addr, Protocol::Tcp)])
        .unwrap();
    let at = published(&b[0]);
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        clients.spawn(async move {
            let payload: Vec<u8> = (0..64 * 1024u32).map(|j| ((i + j) % 256) as u8).collect();
            let s = TcpStream::connect(at).await.unwrap();
            let (mut r, mut w) = s.into_split();
            let up = payload.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&up).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.unwrap();
            writer.await.unwrap();
            back == payload
        });
    }
    let mut ok = 0;
    while let Some(r) = tokio::time::timeout(Duration::from_secs(60), clients.join_next())
        .await
        .unwrap()
    {
        assert!(r.unwrap());
        ok += 1;
    }
    assert_eq!(ok, 200);
    proxies.stop("c1").await;
}

/// Throughput and latency through the proxy against a direct connection to the same server
/// (a benchmark, not a check): `cargo test --release --test network_proxy -- --ignored
/// --nocapture throughput`. FLOTILLA_BENCH_MB sets the transfer size (default 1024).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let mb: usize = std::env::var("FLOTILLA_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    // A sink that counts bytes and answers with the count when the client is done.
    let listener = TcpListener::bind((LO, 0)).await.unwrap();
    let sink_addr = listener.local_addr().unwrap();
    let sink = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0u64;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = s.write_all(&total.to_be_bytes()).await;
            });
        }
    });
    let echo = tcp_echo().await;
    let proxies = Proxies::new(ProxyConfig::default());
    let b = proxies
        .start(
            "bench",
            &[
                request((0, 0), sink_addr, Protocol::Tcp),
                request((0, 0), echo.addr, Protocol::Tcp),
            ],
        )
        .unwrap();
    let chunk = vec![0x42u8; 1 << 20];
    for (label, sink_at, echo_at) in [
        ("direct", sink_addr, echo.addr),
        ("proxy ", published(&b[0]), published(&b[1])),
    ] {
        let started = std::time::Instant::now();
        let mut s = TcpStream::connect(sink_at).await.unwrap();
        for _ in 0..mb {
            s.write_all(&chunk).await.unwrap();
        }
        s.shutdown().await.unwrap();
        let total = s.read_u64().await.unwrap();
        assert_eq!(total, (mb as u64) << 20);
        let secs = started.elapsed().as_secs_f64();
        let mut s = TcpStream::connect(echo_at).await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut small = [0u8; 64];
        let lat = std::time::Instant::now();
        for _ in 0..10_000 {
            s.write_all(&small).await.unwrap();
            s.read_exact(&mut small).await.unwrap();
        }
        let per = lat.elapsed() / 10_000;
        println!(
            "{label}: {mb} MiB in {secs:.2}s = {:.0} MiB/s; 10000 x 64-byte round trips: {per:?} each",
            mb as f64 / secs
        );
    }
    proxies.stop_all().await;
    sink.abort();
}
