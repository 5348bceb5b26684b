//! The embedded DNS server of a network (service discovery): containers' `/etc/resolv.conf`
//! names it, it answers the names of the network's containers itself and forwards every other
//! query to upstream resolvers.
//!
//! - [`Records`]: one table per network, shared and updated while servers run. Each endpoint
//!   (a container on the network, keyed by the caller, e.g. the container id) has one IPv4
//!   address and its names (container name, service name, aliases, hostname…). A name answers
//!   the addresses of every endpoint that carries it — a service's replicas — rotated round
//!   robin per query. Names are case-insensitive, with or without a trailing dot.
//! - [`Directory`]: the daemon's tables by network. A server given the directory also answers a
//!   client the names of the other networks its container is attached to (Docker's behaviour),
//!   so one nameserver line in resolv.conf is enough for a container on several networks.
//! - [`DnsServer`]: UDP and TCP on one address (the network's gateway, port 53). Known names:
//!   A answers; AAAA and other types NOERROR without records (clients fall back to A); PTR for
//!   the endpoints' addresses. Unknown names: the query is relayed unchanged (same id) to each
//!   upstream over UDP in turn, with a timeout, and the first answer relayed unchanged back; a
//!   truncated answer to a TCP client is asked again over TCP. No upstream answered: SERVFAIL;
//!   no upstream configured (an internal network): NXDOMAIN. Malformed packets get FORMERR or
//!   nothing; responses are never answered.
//!
//! The server runs in the daemon's (host) network namespace, so loopback resolvers of the host
//! (systemd-resolved's 127.0.0.53) are reachable: [`host_upstreams`] keeps them, unlike the
//! resolv.conf written into containers.

pub mod message;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, timeout, timeout_at};

use crate::network::ipam::Ipv4Net;
use message::{Answer, Parsed, Query};

/// The DNS port.
pub const DNS_PORT: u16 = 53;
/// Docker's TTL for the embedded server's answers.
pub const DEFAULT_TTL: u32 = 600;

/// Why the DNS server or a table update failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("dns name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("bind the dns server on {address}/{protocol}: {source}")]
    Bind {
        address: SocketAddr,
        protocol: &'static str,
        source: std::io::Error,
    },
    #[error("read {path}: {source}")]
    ReadResolvConf {
        path: String,
        source: std::io::Error,
    },
}

// --- records ---------------------------------------------------------------------------------

/// One endpoint's registration.
#[derive(Debug, Clone)]
struct Endpoint {
    addr: Ipv4Addr,
    names: Vec<String>,
}

/// The endpoints carrying one name, in registration order, and its round-robin turn.
#[derive(Debug, Default)]
struct NameEntry {
    endpoints: Vec<(String, Ipv4Addr)>,
    turn: AtomicUsize,
}

#[derive(Debug, Default)]
struct Table {
    endpoints: BTreeMap<String, Endpoint>,
    names: HashMap<String, NameEntry>,
}

impl Table {
    fn remove(&mut self, key: &str) -> bool {
        let Some(old) = self.endpoints.remove(key) else {
            return false;
        };
        for name in &old.names {
            if let Some(entry) = self.names.get_mut(name) {
                entry.endpoints.retain(|(k, _)| k != key);
                if entry.endpoints.is_empty() {
                    self.names.remove(name);
                }
            }
        }
        true
    }
}

/// A network's name table: endpoints with their address and names. Cheap to share
/// (`Arc<Records>`); updates are visible to the next query.
#[derive(Debug, Default)]
pub struct Records {
    table: RwLock<Table>,
}

/// A name as looked up: lower-case, without a trailing dot.
pub fn normalize_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// `name` normalized ([`normalize_name`]) when it is a valid DNS name (non-empty labels of at
/// most 63 printable ASCII characters without `\`; at most 253 characters).
pub fn check_name(name: &str) -> Result<String, DnsError> {
    let invalid = |why| DnsError::InvalidName {
        name: name.to_string(),
        why,
    };
    let n = normalize_name(name);
    if n.is_empty() {
        return Err(invalid("empty name"));
    }
    if n.len() > 253 {
        return Err(invalid("longer than 253 characters"));
    }
    for label in n.split('.') {
        if label.is_empty() {
            return Err(invalid("empty label"));
        }
        if label.len() > 63 {
            return Err(invalid("a label longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'\\')
        {
            return Err(invalid("only printable ASCII without spaces or '\\'"));
        }
    }
    Ok(n)
}

impl Records {
    pub fn new() -> Records {
        Records::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or replaces) endpoint `key` with its address and names; duplicate names are
    /// kept once. Every name is checked first: on error nothing changes.
    pub fn set_endpoint<S: AsRef<str>>(
        &self,
        key: &str,
        addr: Ipv4Addr,
        names: &[S],
    ) -> Result<(), DnsError> {
        let mut checked: Vec<String> = Vec::new();
        for name in names {
            let n = check_name(name.as_ref())?;
            if !checked.contains(&n) {
                checked.push(n);
            }
        }
        let mut table = self.write();
        table.remove(key);
        for name in &checked {
            table
                .names
                .entry(name.clone())
                .or_default()
                .endpoints
                .push((key.to_string(), addr));
        }
        table.endpoints.insert(
            key.to_string(),
            Endpoint {
                addr,
                names: checked,
            },
        );
        Ok(())
    }

    /// Removes endpoint `key` and its names; false when it was not registered.
    pub fn remove_endpoint(&self, key: &str) -> bool {
        self.write().remove(key)
    }

    /// Removes every endpoint.
    pub fn clear(&self) {
        *self.write() = Table::default();
    }

    /// Whether endpoint `key` is registered.
    pub fn has_endpoint(&self, key: &str) -> bool {
        self.read().endpoints.contains_key(key)
    }

    /// The addresses of `name` (any case, trailing dot or not), rotated one step further at
    /// each call; `None` for an unknown name.
    pub fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
        let table = self.read();
        let entry = table.names.get(&normalize_name(name))?;
        let mut addrs: Vec<Ipv4Addr> = Vec::with_capacity(entry.endpoints.len());
        for (_, a) in &entry.endpoints {
            if !addrs.contains(a) {
                addrs.push(*a);
            }
        }
        if addrs.len() > 1 {
            let turn = entry.turn.fetch_add(1, Ordering::Relaxed) % addrs.len();
            addrs.rotate_left(turn);
        }
        Some(addrs)
    }

    /// The first name of the endpoint with address `addr` (for PTR queries).
    pub fn reverse(&self, addr: Ipv4Addr) -> Option<String> {
        let table = self.read();
        table
            .endpoints
            .values()
            .find(|e| e.addr == addr)
            .and_then(|e| e.names.first().cloned())
    }

    /// The key of the endpoint with address `addr`.
    pub fn endpoint_at(&self, addr: Ipv4Addr) -> Option<String> {
        let table = self.read();
        table
            .endpoints
            .iter()
            .find(|(_, e)| e.addr == addr)
            .map(|(k, _)| k.clone())
    }

    /// Every name with its addresses (not rotated), sorted by name.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<Ipv4Addr>> {
        let table = self.read();
        table
            .names
            .iter()
            .map(|(n, e)| (n.clone(), e.endpoints.iter().map(|(_, a)| *a).collect()))
            .collect()
    }
}

/// The daemon's tables, one per network (by the caller's network key, e.g. its id).
#[derive(Debug, Default)]
pub struct Directory {
    networks: RwLock<BTreeMap<String, Arc<Records>>>,
}

impl Directory {
    pub fn new() -> Directory {
        Directory::default()
    }

    /// The table of `network`, created empty on first use.
    pub fn network(&self, network: &str) -> Arc<Records> {
        let mut nets = self.networks.write().unwrap_or_else(|e| e.into_inner());
        nets.entry(network.to_string()).or_default().clone()
    }

    /// Forgets `network`'s table.
    pub fn remove_network(&self, network: &str) -> Option<Arc<Records>> {
        let mut nets = self.networks.write().unwrap_or_else(|e| e.into_inner());
        nets.remove(network)
    }

    /// The tables other than `own` that have endpoint `key`.
    fn others_with(&self, own: &Arc<Records>, key: &str) -> Vec<Arc<Records>> {
        let nets = self.networks.read().unwrap_or_else(|e| e.into_inner());
        nets.values()
            .filter(|r| !Arc::ptr_eq(r, own) && r.has_endpoint(key))
            .cloned()
            .collect()
    }
}

// --- configuration ---------------------------------------------------------------------------

/// How a server answers.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Resolvers for names not in the table, tried in order; empty: NXDOMAIN for them.
    pub upstreams: Vec<SocketAddr>,
    /// How long to wait for each upstream.
    pub upstream_timeout: Duration,
    /// TTL of local answers.
    pub ttl: u32,
    /// When set, queries from source addresses outside it are refused (a container of another
    /// network reaching this gateway must not learn this network's names).
    pub clients: Option<Ipv4Net>,
    /// Also answer a client the names of its container's other networks.
    pub directory: Option<Arc<Directory>>,
    /// Queries being forwarded at once (beyond that: SERVFAIL).
    pub max_forwards: usize,
    /// TCP connections served at once (beyond that: closed at once).
    pub max_tcp_connections: usize,
    /// How long an idle TCP connection is kept.
    pub tcp_idle_timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> DnsConfig {
        DnsConfig {
            upstreams: Vec::new(),
            upstream_timeout: Duration::from_secs(2),
            ttl: DEFAULT_TTL,
            clients: None,
            directory: None,
            max_forwards: 1024,
            max_tcp_connections: 128,
            tcp_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// The nameservers of a resolv.conf text as port-53 socket addresses, in order; loopback ones
/// only when `keep_loopback` (they are reachable from the host namespace, not from containers).
pub fn upstreams_from_resolv_conf(text: &str, keep_loopback: bool) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            // Scoped IPv6 addresses (fe80::1%eth0) do not parse and are skipped.
            words.next()?.parse::<IpAddr>().ok()
        })
        .filter(|ip| keep_loopback || !ip.is_loopback())
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .collect()
}

/// The host's upstream resolvers from `/etc/resolv.conf`, loopback stubs included (the server
/// runs in the host's network namespace).
pub fn host_upstreams() -> Result<Vec<SocketAddr>, DnsError> {
    let path = "/etc/resolv.conf";
    let text = std::fs::read_to_string(path).map_err(|source| DnsError::ReadResolvConf {
        path: path.to_string(),
        source,
    })?;
    Ok(upstreams_from_resolv_conf(&text, true))
}

// --- the server ------------------------------------------------------------------------------

struct Shared {
    records: Arc<Records>,
    config: DnsConfig,
}

enum Outcome {
    Reply(Vec<u8>),
    Forward(Query),
    Drop,
}

impl Shared {
    fn allowed(&self, peer: SocketAddr) -> bool {
        match (peer.ip(), &self.config.clients) {
            (_, None) => true,
            (IpAddr::V4(v4), Some(net)) => net.contains(v4),
            (IpAddr::V6(v6), Some(net)) => v6.to_ipv4_mapped().is_some_and(|v4| net.contains(v4)),
        }
    }

    /// The tables to search for `peer`: this network's, then its container's other networks.
    fn tables_for(&self, peer: SocketAddr) -> Vec<Arc<Records>> {
        let mut tables = vec![self.records.clone()];
        if let (Some(dir), IpAddr::V4(ip)) = (&self.config.directory, peer.ip())
            && let Some(key) = self.records.endpoint_at(ip)
        {
            tables.extend(dir.others_with(&self.records, &key));
        }
        tables
    }

    /// Answers from the tables, or says to forward.
    fn handle(&self, packet: &[u8], peer: SocketAddr, max_len: Option<usize>) -> Outcome {
        let query = match message::parse(packet) {
            Parsed::Query(q) => q,
            Parsed::Error { id, flags, rcode } => {
                return Outcome::Reply(message::error_response(id, flags, rcode));
            }
            Parsed::Ignore => return Outcome::Drop,
        };
        let limit = max_len.unwrap_or_else(|| message::udp_limit(&query));
        if !self.allowed(peer) {
            return Outcome::Reply(message::response(
                &query,
                message::RCODE_REFUSED,
                false,
                &[],
                0,
                limit,
            ));
        }
        let class_ok = matches!(query.qclass, message::CLASS_IN | message::CLASS_ANY);
        if class_ok && !query.name.is_empty() {
            let tables = self.tables_for(peer);
            if query.qtype == message::TYPE_PTR
                && let Some(addr) = message::reverse_v4(&query.name)
                && let Some(name) = tables.iter().find_map(|t| t.reverse(addr))
            {
                let answers = [Answer::Ptr(name)];
                let reply = message::response(
                    &query,
                    message::RCODE_NOERROR,
                    true,
                    &answers,
                    self.config.ttl,
                    limit,
                );
                return Outcome::Reply(reply);
            }
            if let Some(addrs) = tables.iter().find_map(|t| t.lookup(&query.name)) {
                let answers: Vec<Answer> = match query.qtype {
                    message::TYPE_A | message::TYPE_ANY => {
                        addrs.into_iter().map(Answer::A).collect()
                    }
                    _ => Vec::new(),
                };
                let reply = message::response(
                    &query,
                    message::RCODE_NOERROR,
                    true,
                    &answers,
                    self.config.ttl,
                    limit,
                );
                return Outcome::Reply(reply);
            }
        }
        if self.config.upstreams.is_empty() {
            return Outcome::Reply(message::response(
                &query,
                message::RCODE_NXDOMAIN,
                false,
                &[],
                0,
                limit,
            ));
        }
        Outcome::Forward(query)
    }

    /// Relays `packet` to the upstreams in turn; the first answer, unchanged, or SERVFAIL.
    async fn forward(&self, packet: &[u8], query: &Query, tcp_client: bool) -> Vec<u8> {
        for upstream in &self.config.upstreams {
            match forward_udp(packet, query.id, *upstream, self.config.upstream_timeout).await {
                Ok(reply) if tcp_client && message::is_truncated(&reply) => {
                    match forward_tcp(packet, query.id, *upstream, self.config.upstream_timeout)
                        .await
                    {
                        Ok(full) => return full,
                        Err(e) => {
                            tracing::debug!(%upstream, error = %e, "dns upstream over tcp");
                            return reply;
                        }
                    }
                }
                Ok(reply) => return reply,
                Err(e) => tracing::debug!(%upstream, error = %e, "dns upstream"),
            }
        }
        let limit = if tcp_client {
            usize::from(u16::MAX)
        } else {
            message::udp_limit(query)
        };
        message::response(query, message::RCODE_SERVFAIL, false, &[], 0, limit)
    }
}

/// One UDP exchange with an upstream: a fresh socket (random source port) connected to it, the
/// query sent as is, the first response with the same id returned.
async fn forward_udp(
    packet: &[u8],
    id: u16,
    upstream: SocketAddr,
    wait: Duration,
) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(upstream).await?;
    sock.send(packet).await?;
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
        if message::is_response_to(&buf[..n], id) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let len = r.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "dns message over 65535 bytes",
        )
    })?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    w.write_all(&framed).await
}

/// One TCP exchange with an upstream (after a truncated UDP answer).
async fn forward_tcp(
    packet: &[u8],
    id: u16,
    upstream: SocketAddr,
    wait: Duration,
) -> std::io::Result<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await?;
        write_frame(&mut stream, packet).await?;
        loop {
            let reply = read_frame(&mut stream).await?;
            if message::is_response_to(&reply, id) {
                return Ok(reply);
            }
        }
    };
    timeout(wait, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

/// A running server; dropping it (or [`DnsServer::stop`]) stops it and closes its sockets.
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` (port 0: one free port for both) and starts serving
    /// `records` in the current tokio runtime.
    pub async fn start(
        addr: SocketAddr,
        records: Arc<Records>,
        config: DnsConfig,
    ) -> Result<DnsServer, DnsError> {
        let (udp, tcp) = bind_pair(addr).await?;
        let local = udp.local_addr().map_err(|source| DnsError::Bind {
            address: addr,
            protocol: "udp",
            source,
        })?;
        let shared = Arc::new(Shared { records, config });
        let tasks = vec![
            tokio::spawn(serve_udp(udp, shared.clone())),
            tokio::spawn(serve_tcp(tcp, shared)),
        ];
        Ok(DnsServer { addr: local, tasks })
    }

    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving; when it returns the sockets are closed and no query is in flight.
    pub async fn stop(mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsError::Bind {
                address: addr,
                protocol: "udp",
                source,
            })?;
        let port = udp
            .local_addr()
            .map_err(|source| DnsError::Bind {
                address: addr,
                protocol: "udp",
                source,
            })?
            .port();
        let tcp_addr = SocketAddr::new(addr.ip(), port);
        match TcpListener::bind(tcp_addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) => {
                last = Some(DnsError::Bind {
                    address: tcp_addr,
                    protocol: "tcp",
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| DnsError::Bind {
        address: addr,
        protocol: "tcp",
        source: std::io::Error::other("no free port"),
    }))
}

async fn serve_udp(sock: UdpSocket, shared: Arc<Shared>) {
    let sock = Arc::new(sock);
    let slots = Arc::new(Semaphore::new(shared.config.max_forwards.max(1)));
    // Forwarding tasks live in this set: stopping the server drops (aborts) them.
    let mut forwards = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    loop {
        let received = tokio::select! {
            r = sock.recv_from(&mut buf) => r,
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
        };
        let (n, peer) = match received {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "dns udp receive");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let packet = &buf[..n];
        match shared.handle(packet, peer, None) {
            Outcome::Drop => {}
            Outcome::Reply(reply) => {
                if let Err(e) = sock.send_to(&reply, peer).await {
                    tracing::debug!(%peer, error = %e, "dns udp send");
                }
            }
            Outcome::Forward(query) => {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    let reply = message::response(
                        &query,
                        message::RCODE_SERVFAIL,
                        false,
                        &[],
                        0,
                        message::udp_limit(&query),
                    );
                    let _ = sock.send_to(&reply, peer).await;
                    continue;
                };
                let packet = packet.to_vec();
                let (sock, shared) = (sock.clone(), shared.clone());
                forwards.spawn(async move {
                    let reply = shared.forward(&packet, &query, false).await;
                    if let Err(e) = sock.send_to(&reply, peer).await {
                        tracing::debug!(%peer, error = %e, "dns udp send");
                    }
                    drop(permit);
                });
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.config.max_tcp_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "dns tcp accept");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let shared = shared.clone();
        connections.spawn(async move {
            if let Err(e) = serve_tcp_connection(stream, peer, &shared).await {
                tracing::debug!(%peer, error = %e, "dns tcp connection");
            }
            drop(permit);
        });
    }
}

async fn serve_tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> std::io::Result<()> {
    loop {
        let packet = match timeout(shared.config.tcp_idle_timeout, read_frame(&mut stream)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        let reply = match shared.handle(&packet, peer, Some(usize::from(u16::MAX))) {
            Outcome::Drop => return Ok(()),
            Outcome::Reply(r) => r,
            Outcome::Forward(query) => shared.forward(&packet, &query, true).await,
        };
        write_frame(&mut stream, &reply).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_robin_and_updates() {
        let r = Records::new();
        r.set_endpoint(
            "c1",
            Ipv4Addr::new(10, 0, 0, 2),
            &["web", "proj-web-1", "Alias."],
        )
        .unwrap();
        r.set_endpoint("c2", Ipv4Addr::new(10, 0, 0, 3), &["web", "proj-web-2"])
            .unwrap();
        let a = r.lookup("WEB.").unwrap();
        let b = r.lookup("web").unwrap();
        assert_eq!(a.len(), 2);
        assert_ne!(a[0], b[0]);
        assert_eq!(r.lookup("alias"), Some(vec![Ipv4Addr::new(10, 0, 0, 2)]));
        assert_eq!(
            r.reverse(Ipv4Addr::new(10, 0, 0, 3)).as_deref(),
            Some("web")
        );
        assert!(r.remove_endpoint("c1"));
        assert!(!r.remove_endpoint("c1"));
        assert_eq!(r.lookup("web"), Some(vec![Ipv4Addr::new(10, 0, 0, 3)]));
        assert_eq!(r.lookup("alias"), None);
        r.set_endpoint("c2", Ipv4Addr::new(10, 0, 0, 9), &["db"])
            .unwrap();
        assert_eq!(r.lookup("web"), None);
        assert_eq!(r.lookup("db"), Some(vec![Ipv4Addr::new(10, 0, 0, 9)]));
        assert!(
            r.set_endpoint("c3", Ipv4Addr::LOCALHOST, &["ok", "a..b"])
                .is_err()
        );
        assert!(r.set_endpoint("c3", Ipv4Addr::LOCALHOST, &["a b"]).is_err());
        assert!(!r.has_endpoint("c3"));
        assert_eq!(r.lookup("ok"), None);
    }

    #[test]
    fn resolv_conf_upstreams() {
        let text = "# c\nnameserver 127.0.0.53\nnameserver 10.1.2.3\nnameserver fe80::1%eth0\n\
                    nameserver 2001:db8::1\nsearch x\n";
        assert_eq!(
            upstreams_from_resolv_conf(text, false),
            vec![
                "10.1.2.3:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(upstreams_from_resolv_conf(text, true).len(), 3);
    }

    #[test]
    fn directory_shares_tables() {
        let dir = Directory::new();
        let a = dir.network("a");
        let b = dir.network("b");
        assert!(Arc::ptr_eq(&a, &dir.network("a")));
        a.set_endpoint("c1", Ipv4Addr::new(10, 0, 1, 2), &["proxy"])
            .unwrap();
        b.set_endpoint("c1", Ipv4Addr::new(10, 0, 2, 2), &["proxy"])
            .unwrap();
        b.set_endpoint("c2", Ipv4Addr::new(10, 0, 2, 3), &["app"])
            .unwrap();
        let others = dir.others_with(&a, "c1");
        assert_eq!(others.len(), 1);
        assert!(Arc::ptr_eq(&others[0], &b));
        assert!(dir.others_with(&a, "c3").is_empty());
        assert!(dir.remove_network("b").is_some());
        assert!(dir.others_with(&a, "c1").is_empty());
    }
}
