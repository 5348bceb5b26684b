//! The embedded DNS server over real sockets on 127.0.0.1 (ephemeral ports, parallel-safe, no
//! root needed): local answers for container, service and alias names, round robin over
//! replicas, updates seen by the next query, forwarding to an upstream resolver the test itself
//! runs on 127.0.0.1 (its answer relayed byte for byte), upstream failures, TCP, EDNS and
//! truncation, malformed packets. No traffic goes to any address but loopback.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla::network::dns::{Directory, DnsConfig, DnsServer, Records};
use flotilla::network::ipam::Ipv4Net;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;

const LOOPBACK: &str = "127.0.0.1:0";
const A: u16 = 1;
const AAAA: u16 = 28;
const PTR: u16 = 12;
const MX: u16 = 15;

// --- a tiny client, written independently of the server's message code ---------------------

fn query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend(id.to_be_bytes());
    p.extend([0x01, 0x00]); // RD
    p.extend([0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        p.push(label.len() as u8);
        p.extend(label.as_bytes());
    }
    p.push(0);
    p.extend(qtype.to_be_bytes());
    p.extend(1u16.to_be_bytes());
    if let Some(size) = edns {
        p.push(0);
        p.extend(41u16.to_be_bytes());
        p.extend(size.to_be_bytes());
        p.extend([0, 0, 0, 0, 0, 0]);
    }
    p
}

#[derive(Debug)]
struct Reply {
    id: u16,
    flags: u16,
    rcode: u8,
    a: Vec<Ipv4Addr>,
    other: Vec<(u16, Vec<u8>)>,
}

fn be16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

fn skip_name(p: &[u8], mut at: usize) -> usize {
    loop {
        let len = p[at];
        if len == 0 {
            return at + 1;
        }
        if len & 0xc0 == 0xc0 {
            return at + 2;
        }
        at += 1 + len as usize;
    }
}

fn parse_reply(p: &[u8]) -> Reply {
    assert!(p.len() >= 12, "short reply {p:?}");
    let flags = be16(p, 2);
    assert!(flags & 0x8000 != 0, "not a response");
    let (qd, an) = (be16(p, 4), be16(p, 6));
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(p, at) + 4;
    }
    let (mut a, mut other) = (Vec::new(), Vec::new());
    for _ in 0..an {
        at = skip_name(p, at);
        let (rtype, rdlen) = (be16(p, at), be16(p, at + 8) as usize);
        let rdata = p[at + 10..at + 10 + rdlen].to_vec();
        if rtype == A {
            a.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        } else {
            other.push((rtype, rdata));
        }
        at += 10 + rdlen;
    }
    Reply {
        id: be16(p, 0),
        flags,
        rcode: (flags & 0xf) as u8,
        a,
        other,
    }
}

async fn udp_exchange(server: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    udp_exchange_within(server, packet, Duration::from_secs(3)).await
}

async fn udp_exchange_within(server: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind(LOOPBACK).await.unwrap();
    sock.connect(server).await.unwrap();
    sock.send(packet).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

async fn ask(server: SocketAddr, name: &str, qtype: u16) -> Reply {
    let reply = udp_exchange(server, &query(0x4242, name, qtype, None))
        .await
        .unwrap_or_else(|| panic!("no answer for {name}"));
    let r = parse_reply(&reply);
    assert_eq!(r.id, 0x4242);
    r
}

async fn tcp_ask(stream: &mut TcpStream, packet: &[u8]) -> Vec<u8> {
    stream
        .write_all(&(packet.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(packet).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await.unwrap();
    buf
}

// --- a fake upstream resolver on 127.0.0.1 ---------------------------------------------------

/// Answers every query with one A record 192.0.2.<last byte of its id> and TTL 4242; keeps the
/// bytes it sent last so the test can compare them with what the client received.
struct Upstream {
    addr: SocketAddr,
    sent: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_upstream() -> Upstream {
    let sock = UdpSocket::bind(LOOPBACK).await.unwrap();
    let addr = sock.local_addr().unwrap();
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = sent.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            let q = &buf[..n];
            let qend = skip_name(q, 12) + 4;
            let mut r = q[..qend].to_vec();
            r[2] = 0x81; // QR, RD
            r[3] = 0x80; // RA
            r[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
            r.extend([0xc0, 0x0c, 0, 1, 0, 1]);
            r.extend(4242u32.to_be_bytes());
            r.extend([0, 4, 192, 0, 2, q[1]]);
            log.lock().unwrap().push(r.clone());
            let _ = sock.send_to(&r, peer).await;
        }
    });
    Upstream { addr, sent, task }
}

fn config(upstreams: Vec<SocketAddr>) -> DnsConfig {
    DnsConfig {
        upstreams,
        upstream_timeout: Duration::from_millis(300),
        ..DnsConfig::default()
    }
}

async fn server(records: &Arc<Records>, config: DnsConfig) -> DnsServer {
    DnsServer::start(LOOPBACK.parse().unwrap(), records.clone(), config)
        .await
        .unwrap()
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 89, 0, last)
}

fn stack_records() -> Arc<Records> {
    let records = Arc::new(Records::new());
    for n in 1..=3u8 {
        records
            .set_endpoint(
                &format!("id{n}"),
                ip(n + 1),
                &[
                    "web".to_string(),
                    format!("shop-web-{n}"),
                    format!("web-{n}.internal"),
                ],
            )
            .unwrap();
    }
    records
        .set_endpoint("id9", ip(9), &["db", "shop-db-1", "Database"])
        .unwrap();
    records
}

#[tokio::test]
async fn answers_container_service_and_alias_names() {
    let records = stack_records();
    let srv = server(&records, config(vec![])).await;
    let at = srv.local_addr();
    for name in ["shop-db-1", "db", "database", "DataBase.", "DB."] {
        let r = ask(at, name, A).await;
        assert_eq!(r.rcode, 0, "{name}");
        assert!(r.flags & 0x0400 != 0, "authoritative");
        assert_eq!(r.a, vec![ip(9)], "{name}");
    }
    assert_eq!(ask(at, "web-2.internal", A).await.a, vec![ip(3)]);
    let web = ask(at, "web", A).await;
    assert_eq!(
        web.a.iter().copied().collect::<BTreeSet<_>>(),
        [ip(2), ip(3), ip(4)].into_iter().collect()
    );
    // AAAA and other types of a known name: NOERROR, no records (clients fall back to A).
    for qtype in [AAAA, MX] {
        let r = ask(at, "web", qtype).await;
        assert_eq!((r.rcode, r.a.len(), r.other.len()), (0, 0, 0));
    }
    // PTR of a container's address.
    let r = ask(at, "9.0.89.10.in-addr.arpa", PTR).await;
    assert_eq!(r.other.len(), 1);
    assert_eq!(r.other[0].1, b"\x02db\x00".to_vec());
    // No upstream configured (an internal network): NXDOMAIN.
    assert_eq!(ask(at, "example.com", A).await.rcode, 3);
    srv.stop().await;
}

#[tokio::test]
async fn round_robin_over_replicas() {
    let records = stack_records();
    let srv = server(&records, config(vec![])).await;
    let mut firsts = BTreeSet::new();
    for _ in 0..6 {
        let r = ask(srv.local_addr(), "web", A).await;
        assert_eq!(r.a.len(), 3);
        firsts.insert(r.a[0]);
    }
    assert_eq!(firsts.len(), 3, "every replica comes first in turn");
}

#[tokio::test]
async fn updates_are_seen_by_the_next_query() {
    let records = Arc::new(Records::new());
    let srv = server(&records, config(vec![])).await;
    let at = srv.local_addr();
    assert_eq!(ask(at, "api", A).await.rcode, 3);
    records.set_endpoint("c1", ip(5), &["api"]).unwrap();
    assert_eq!(ask(at, "api", A).await.a, vec![ip(5)]);
    records.set_endpoint("c2", ip(6), &["api"]).unwrap();
    assert_eq!(ask(at, "api", A).await.a.len(), 2);
    records.remove_endpoint("c1");
    assert_eq!(ask(at, "api", A).await.a, vec![ip(6)]);
    records.remove_endpoint("c2");
    assert_eq!(ask(at, "api", A).await.rcode, 3);
}

#[tokio::test]
async fn forwards_unknown_names_and_relays_the_answer_unchanged() {
    let upstream = fake_upstream().await;
    let records = stack_records();
    let srv = server(&records, config(vec![upstream.addr])).await;
    for id in [0x0107u16, 0xbeef] {
        let reply = udp_exchange(srv.local_addr(), &query(id, "example.test", A, None))
            .await
            .unwrap();
        let sent = upstream.sent.lock().unwrap().last().cloned().unwrap();
        assert_eq!(reply, sent, "relayed byte for byte");
        let r = parse_reply(&reply);
        assert_eq!(r.id, id);
        assert_eq!(r.a, vec![Ipv4Addr::new(192, 0, 2, id as u8)]);
    }
    // Known names are not forwarded.
    let before = upstream.sent.lock().unwrap().len();
    assert_eq!(ask(srv.local_addr(), "db", A).await.a, vec![ip(9)]);
    assert_eq!(upstream.sent.lock().unwrap().len(), before);
}

#[tokio::test]
async fn a_dead_upstream_is_skipped_and_no_answer_is_servfail() {
    // A port nobody listens on: the kernel refuses at once.
    let dead = UdpSocket::bind(LOOPBACK)
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    // A socket that never answers: the timeout.
    let silent = UdpSocket::bind(LOOPBACK).await.unwrap();
    let upstream = fake_upstream().await;

    let records = Arc::new(Records::new());
    let srv = server(&records, config(vec![dead, upstream.addr])).await;
    let r = ask(srv.local_addr(), "example.test", A).await;
    assert_eq!(r.a.len(), 1, "the second upstream answered");

    let srv = server(&records, config(vec![dead])).await;
    let started = Instant::now();
    let r = ask(srv.local_addr(), "example.test", A).await;
    assert_eq!(r.rcode, 2, "SERVFAIL");
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "refused is quick"
    );

    let srv = server(&records, config(vec![silent.local_addr().unwrap()])).await;
    let started = Instant::now();
    let r = ask(srv.local_addr(), "example.test", A).await;
    assert_eq!(r.rcode, 2, "SERVFAIL");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn tcp_queries() {
    let upstream = fake_upstream().await;
    let records = stack_records();
    let srv = server(&records, config(vec![upstream.addr])).await;
    let mut stream = TcpStream::connect(srv.local_addr()).await.unwrap();
    // Several queries on one connection: local, forwarded, local again.
    let r = parse_reply(&tcp_ask(&mut stream, &query(1, "db", A, None)).await);
    assert_eq!((r.id, r.a.clone()), (1, vec![ip(9)]));
    let reply = tcp_ask(&mut stream, &query(0x0203, "example.test", A, None)).await;
    assert_eq!(parse_reply(&reply).a, vec![Ipv4Addr::new(192, 0, 2, 3)]);
    let r = parse_reply(&tcp_ask(&mut stream, &query(2, "web", A, None)).await);
    assert_eq!(r.a.len(), 3);
}

#[tokio::test]
async fn many_replicas_truncate_over_udp_and_fit_over_tcp_and_edns() {
    let records = Arc::new(Records::new());
    for n in 0..200u8 {
        records
            .set_endpoint(&format!("c{n}"), Ipv4Addr::new(10, 90, 0, n), &["big"])
            .unwrap();
    }
    let srv = server(&records, config(vec![])).await;
    let udp = udp_exchange(srv.local_addr(), &query(7, "big", A, None))
        .await
        .unwrap();
    assert!(udp.len() <= 512);
    let r = parse_reply(&udp);
    assert!(r.flags & 0x0200 != 0, "TC set");
    assert!(!r.a.is_empty() && r.a.len() < 200);

    let edns = udp_exchange(srv.local_addr(), &query(8, "big", A, Some(4096)))
        .await
        .unwrap();
    let r = parse_reply(&edns);
    assert_eq!(r.a.len(), 200);
    assert!(r.flags & 0x0200 == 0);

    let mut stream = TcpStream::connect(srv.local_addr()).await.unwrap();
    let r = parse_reply(&tcp_ask(&mut stream, &query(9, "big", A, None)).await);
    assert_eq!(r.a.len(), 200);
}

#[tokio::test]
async fn malformed_packets_get_formerr_or_nothing() {
    let records = stack_records();
    let srv = server(&records, config(vec![])).await;
    let at = srv.local_addr();
    let sock = UdpSocket::bind(LOOPBACK).await.unwrap();
    sock.connect(at).await.unwrap();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..3000 {
        let len = (next() % 100) as usize;
        let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len >= 12 && i % 2 == 0 {
            p[2] &= 0x07; // a query, opcode 0
            p[4] = 0;
            p[5] = 1;
        }
        sock.send(&p).await.unwrap();
    }
    // Drain whatever came back: only FORMERR/NOTIMP/NXDOMAIN-class answers, never a crash.
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(300), sock.recv(&mut buf)).await
    {
        assert!(n >= 12);
        assert!(buf[2] & 0x80 != 0, "a response");
    }
    // A few specific ones.
    let quiet = Duration::from_millis(300);
    assert_eq!(
        udp_exchange_within(at, &[1, 2, 3], quiet).await,
        None,
        "too short: no answer"
    );
    let mut two = query(5, "db", A, None);
    two[5] = 2;
    let r = parse_reply(&udp_exchange(at, &two).await.unwrap());
    assert_eq!((r.id, r.rcode), (5, 1));
    let mut response = query(6, "db", A, None);
    response[2] |= 0x80;
    assert_eq!(
        udp_exchange_within(at, &response, quiet).await,
        None,
        "responses are not answered"
    );
    // Garbage over TCP closes that connection only.
    let mut stream = TcpStream::connect(at).await.unwrap();
    stream.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
    // The server still answers.
    assert_eq!(ask(at, "db", A).await.a, vec![ip(9)]);
}

#[tokio::test]
async fn directory_spans_the_client_containers_networks() {
    let dir = Arc::new(Directory::new());
    let front = dir.network("front");
    let back = dir.network("back");
    // The test's client is 127.0.0.1: register it as the proxy container on "front".
    front
        .set_endpoint("proxy", Ipv4Addr::LOCALHOST, &["proxy"])
        .unwrap();
    back.set_endpoint("proxy", ip(2), &["proxy"]).unwrap();
    back.set_endpoint("app", ip(3), &["app"]).unwrap();
    let mut cfg = config(vec![]);
    cfg.directory = Some(dir.clone());
    let srv = server(&front, cfg).await;
    // "app" lives only on "back", which the client's container is also attached to.
    assert_eq!(ask(srv.local_addr(), "app", A).await.a, vec![ip(3)]);
    back.remove_endpoint("proxy");
    assert_eq!(ask(srv.local_addr(), "app", A).await.rcode, 3);
}

#[tokio::test]
async fn clients_outside_the_network_are_refused() {
    let records = stack_records();
    let mut cfg = config(vec![]);
    cfg.clients = Some(Ipv4Net::new(Ipv4Addr::LOCALHOST, 32).unwrap());
    let srv = server(&records, cfg).await;
    assert_eq!(ask(srv.local_addr(), "db", A).await.a, vec![ip(9)]);
    let outsider = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    outsider.connect(srv.local_addr()).await.unwrap();
    outsider.send(&query(3, "db", A, None)).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(3), outsider.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let r = parse_reply(&buf[..n]);
    assert_eq!((r.rcode, r.a.len()), (5, 0), "REFUSED");
}

#[tokio::test]
async fn stop_releases_the_port() {
    let records = stack_records();
    let srv = server(&records, config(vec![])).await;
    let at = srv.local_addr();
    srv.stop().await;
    // Both sockets are closed: the same address binds again.
    let again = DnsServer::start(at, records.clone(), config(vec![]))
        .await
        .unwrap();
    assert_eq!(ask(again.local_addr(), "db", A).await.a, vec![ip(9)]);
    drop(again);
}

/// Query latency (a benchmark, not a check): `cargo test --release --test network_dns --
/// --ignored --nocapture latency`.
#[tokio::test]
#[ignore]
async fn latency() {
    let upstream = fake_upstream().await;
    let records = stack_records();
    let srv = server(&records, config(vec![upstream.addr])).await;
    let sock = UdpSocket::bind(LOOPBACK).await.unwrap();
    sock.connect(srv.local_addr()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    for (label, name) in [("local", "web"), ("forwarded", "example.test")] {
        let mut times = Vec::with_capacity(10_000);
        for i in 0..10_000u16 {
            let q = query(i, name, A, None);
            let started = Instant::now();
            sock.send(&q).await.unwrap();
            let n = sock.recv(&mut buf).await.unwrap();
            times.push(started.elapsed());
            assert_eq!(parse_reply(&buf[..n]).id, i);
        }
        times.sort();
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        println!(
            "{label}: 10000 queries, mean {mean:?}, p50 {:?}, p99 {:?}",
            times[5000], times[9900]
        );
    }
}
