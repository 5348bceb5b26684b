//! Published ports: the userland proxy of the daemon. Each published port of a container is a
//! listener on the host address and port (a TCP listener or a UDP socket) served by one tokio
//! task that forwards to the container's address and port:
//! - TCP: each accepted connection is joined to a new connection to the container and bytes
//!   are copied both ways; an end-of-stream from one side is passed on as a write shutdown
//!   (half-close) while the other direction goes on. At most `max_tcp_connections` at once per
//!   port (beyond that, connections wait in the listen backlog).
//! - UDP: one flow per client address, with its own socket connected to the container (the
//!   container's replies go back to that client); a flow idle for `udp_idle_timeout` is closed.
//!
//! [`Proxies`] is the registry of one daemon: [`Proxies::start`] binds every port of a
//! container first — a port already taken (by flotilla: naming the container; by anything
//! else: naming the port and address) fails the whole call and nothing is left listening —
//! then starts the tasks; [`Proxies::stop`] closes the listeners and every live connection and
//! flow; [`Proxies::port`] lists a container's bindings (for `flotilla port`).

mod splice;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, timeout};

/// Why publishing a port failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("port {port} is already in use on {address}: {protocol}: {source}")]
    InUse {
        port: u16,
        address: IpAddr,
        protocol: Protocol,
        source: std::io::Error,
    },
    #[error(
        "port {port} is already in use on {address}: {protocol}: published by container {container}"
    )]
    PublishedBy {
        port: u16,
        address: IpAddr,
        protocol: Protocol,
        container: String,
    },
    #[error("no free port in {start}-{end} on {address}: {protocol}")]
    NoFreePort {
        start: u16,
        end: u16,
        address: IpAddr,
        protocol: Protocol,
    },
    #[error("listen on {address} port {port}/{protocol}: {source}")]
    Bind {
        port: u16,
        address: IpAddr,
        protocol: Protocol,
        source: std::io::Error,
    },
    #[error("container {container} already has its ports published")]
    AlreadyStarted { container: String },
    #[error("published ports need a running tokio runtime")]
    NoRuntime,
    #[error("invalid port {value:?}: {why}")]
    InvalidPort { value: String, why: String },
    #[error("invalid host address {value:?}")]
    InvalidAddress { value: String },
    #[error("protocol {value:?} cannot be published (use tcp or udp)")]
    UnsupportedProtocol { value: String },
}

/// The transport of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

impl FromStr for Protocol {
    type Err = ProxyError;
    fn from_str(s: &str) -> Result<Protocol, ProxyError> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" | "" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(ProxyError::UnsupportedProtocol {
                value: s.to_string(),
            }),
        }
    }
}

/// One port to publish: a host address, a host port range to pick from, the container end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// Where to listen (`0.0.0.0` when the stack gives no `host_ip`).
    pub host_ip: IpAddr,
    /// Inclusive host port range: one port, a range to take the first free port of, or
    /// `(0, 0)` for a port the kernel picks.
    pub host_ports: (u16, u16),
    pub container_ip: IpAddr,
    pub container_port: u16,
    pub protocol: Protocol,
}

fn parse_port_number(text: &str, whole: &str, min: u16) -> Result<u16, ProxyError> {
    let invalid = |why: String| ProxyError::InvalidPort {
        value: whole.to_string(),
        why,
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("{text:?} is not a port number")));
    }
    match text.parse::<u32>() {
        Ok(n) if n >= u32::from(min) && n <= 65535 => Ok(n as u16),
        _ => Err(invalid(format!("{text} is out of range ({min}-65535)"))),
    }
}

impl PublishRequest {
    /// A request from the long `ports` syntax of a service (`host_ip`, `published` as a port
    /// or `a-b` range, `target`, `protocol`) for a container at `container_ip`.
    pub fn from_long_syntax(
        host_ip: Option<&str>,
        published: Option<&str>,
        target: u32,
        protocol: &str,
        container_ip: IpAddr,
    ) -> Result<PublishRequest, ProxyError> {
        let host_ip = match host_ip.map(str::trim).filter(|s| !s.is_empty()) {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(text) => {
                let bare = text
                    .strip_prefix('[')
                    .and_then(|t| t.strip_suffix(']'))
                    .unwrap_or(text);
                bare.parse().map_err(|_| ProxyError::InvalidAddress {
                    value: text.to_string(),
                })?
            }
        };
        let container_port = match u16::try_from(target) {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(ProxyError::InvalidPort {
                    value: target.to_string(),
                    why: "the container port is out of range (1-65535)".to_string(),
                });
            }
        };
        let host_ports = match published.map(str::trim).filter(|s| !s.is_empty()) {
            None => (0, 0),
            Some(text) => match text.split_once('-') {
                None => {
                    let p = parse_port_number(text, text, 0)?;
                    (p, p)
                }
                Some((a, b)) => {
                    let (a, b) = (
                        parse_port_number(a, text, 1)?,
                        parse_port_number(b, text, 1)?,
                    );
                    if b < a {
                        return Err(ProxyError::InvalidPort {
                            value: text.to_string(),
                            why: "the range ends before it starts".to_string(),
                        });
                    }
                    (a, b)
                }
            },
        };
        Ok(PublishRequest {
            host_ip,
            host_ports,
            container_ip,
            container_port,
            protocol: protocol.parse()?,
        })
    }
}

/// A published port as bound: what `flotilla port` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_ip: IpAddr,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for PortBinding {
    /// Docker's `port` line: `80/tcp -> 0.0.0.0:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} -> {}",
            self.container_port,
            self.protocol,
            SocketAddr::new(self.host_ip, self.host_port)
        )
    }
}

/// Tuning of the proxies.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// How long a connection to the container may take.
    pub connect_timeout: Duration,
    /// A UDP flow without traffic either way for this long is closed (Docker: 90 s).
    pub udp_idle_timeout: Duration,
    /// UDP flows per port at once; datagrams of new clients beyond that are dropped.
    pub max_udp_flows: usize,
    /// TCP connections per port at once.
    pub max_tcp_connections: usize,
    /// Buffer per direction of a TCP connection (a pipe's size with splice).
    pub tcp_buffer: usize,
    /// Relay TCP with splice(2) (no copies through user space); false: read/write copies.
    pub splice: bool,
    /// Listen backlog of TCP listeners.
    pub backlog: u32,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            connect_timeout: Duration::from_secs(10),
            udp_idle_timeout: Duration::from_secs(90),
            max_udp_flows: 1024,
            max_tcp_connections: 4096,
            tcp_buffer: 256 * 1024,
            splice: true,
            backlog: 1024,
        }
    }
}

struct Running {
    binding: PortBinding,
    task: JoinHandle<()>,
}

/// The daemon's published ports, by container.
pub struct Proxies {
    config: Arc<ProxyConfig>,
    containers: Mutex<HashMap<String, Vec<Running>>>,
}

impl fmt::Debug for Proxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxies")
            .field("config", &self.config)
            .field("containers", &self.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Whether two bindings would contend for the same host socket.
fn overlaps(ip: IpAddr, port: u16, protocol: Protocol, b: &PortBinding) -> bool {
    b.protocol == protocol
        && b.host_port == port
        && (b.host_ip == ip || b.host_ip.is_unspecified() || ip.is_unspecified())
}

impl Proxies {
    pub fn new(config: ProxyConfig) -> Proxies {
        Proxies {
            config: Arc::new(config),
            containers: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Running>>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `requests` for `container`: binds them all, and only then starts forwarding.
    /// On any error nothing stays bound. No requests: nothing is registered. Must be called
    /// within a tokio runtime.
    pub fn start(
        &self,
        container: &str,
        requests: &[PublishRequest],
    ) -> Result<Vec<PortBinding>, ProxyError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| ProxyError::NoRuntime)?;
        let _enter = handle.enter();
        let mut registry = self.lock();
        if registry.contains_key(container) {
            return Err(ProxyError::AlreadyStarted {
                container: container.to_string(),
            });
        }
        let mut bound: Vec<(PortBinding, Bound)> = Vec::with_capacity(requests.len());
        for request in requests {
            let taken = |port: u16| -> Option<String> {
                registry
                    .iter()
                    .find(|(_, runs)| {
                        runs.iter()
                            .any(|r| overlaps(request.host_ip, port, request.protocol, &r.binding))
                    })
                    .map(|(c, _)| c.clone())
                    .or_else(|| {
                        bound
                            .iter()
                            .any(|(b, _)| overlaps(request.host_ip, port, request.protocol, b))
                            .then(|| container.to_string())
                    })
            };
            let one = bind_request(request, &self.config, taken)?;
            bound.push(one);
        }
        let mut running = Vec::with_capacity(bound.len());
        for (binding, socket) in bound {
            let target = SocketAddr::new(binding.container_ip, binding.container_port);
            let config = self.config.clone();
            let task = match socket {
                Bound::Tcp(l) => handle.spawn(serve_tcp(l, target, config)),
                Bound::Udp(s) => handle.spawn(serve_udp(s, target, config)),
            };
            running.push(Running { binding, task });
        }
        let bindings = running.iter().map(|r| r.binding.clone()).collect();
        if !running.is_empty() {
            registry.insert(container.to_string(), running);
        }
        Ok(bindings)
    }

    /// Stops every proxy of `container`; when it returns, its host ports are free and its live
    /// connections closed. False when it had none.
    pub async fn stop(&self, container: &str) -> bool {
        let Some(running) = self.lock().remove(container) else {
            return false;
        };
        stop_all(running).await;
        true
    }

    /// Stops every proxy of every container.
    pub async fn stop_all(&self) {
        let all: Vec<Running> = self.lock().drain().flat_map(|(_, r)| r).collect();
        stop_all(all).await;
    }

    /// The bindings of `container`, in the order they were requested.
    pub fn port(&self, container: &str) -> Vec<PortBinding> {
        self.lock()
            .get(container)
            .map(|r| r.iter().map(|r| r.binding.clone()).collect())
            .unwrap_or_default()
    }

    /// The bindings of `container` for one container port (`flotilla port SERVICE 80/udp`).
    pub fn lookup(&self, container: &str, port: u16, protocol: Protocol) -> Vec<PortBinding> {
        self.port(container)
            .into_iter()
            .filter(|b| b.container_port == port && b.protocol == protocol)
            .collect()
    }

    /// The container publishing `host_port`/`protocol` on (or overlapping) `host_ip`.
    pub fn holder(&self, host_ip: IpAddr, host_port: u16, protocol: Protocol) -> Option<String> {
        self.lock()
            .iter()
            .find(|(_, runs)| {
                runs.iter()
                    .any(|r| overlaps(host_ip, host_port, protocol, &r.binding))
            })
            .map(|(c, _)| c.clone())
    }

    /// The containers with published ports.
    pub fn containers(&self) -> Vec<String> {
        let mut c: Vec<String> = self.lock().keys().cloned().collect();
        c.sort();
        c
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for running in self.lock().values() {
            for r in running {
                r.task.abort();
            }
        }
    }
}

async fn stop_all(running: Vec<Running>) {
    for r in &running {
        r.task.abort();
    }
    for r in running {
        // Awaiting an aborted task returns once its future (sockets, connections) is dropped.
        let _ = r.task.await;
    }
}

/// Binds one request: its one port, the first free port of its range, or a kernel-chosen one.
fn bind_request(
    request: &PublishRequest,
    config: &ProxyConfig,
    taken: impl Fn(u16) -> Option<String>,
) -> Result<(PortBinding, Bound), ProxyError> {
    let (start, end) = request.host_ports;
    let (ip, protocol) = (request.host_ip, request.protocol);
    let mut last = None;
    for port in start..=end {
        if port != 0
            && let Some(container) = taken(port)
        {
            last = Some(ProxyError::PublishedBy {
                port,
                address: ip,
                protocol,
                container,
            });
            continue;
        }
        match bind_one(ip, port, protocol, config) {
            Ok((bound, actual)) => {
                let binding = PortBinding {
                    host_ip: ip,
                    host_port: actual,
                    container_ip: request.container_ip,
                    container_port: request.container_port,
                    protocol,
                };
                return Ok((binding, bound));
            }
            Err(source) if source.kind() == std::io::ErrorKind::AddrInUse => {
                last = Some(ProxyError::InUse {
                    port,
                    address: ip,
                    protocol,
                    source,
                });
            }
            Err(source) => {
                return Err(ProxyError::Bind {
                    port,
                    address: ip,
                    protocol,
                    source,
                });
            }
        }
    }
    match last {
        Some(e) if start == end => Err(e),
        _ => Err(ProxyError::NoFreePort {
            start,
            end,
            address: ip,
            protocol,
        }),
    }
}

fn bind_one(
    ip: IpAddr,
    port: u16,
    protocol: Protocol,
    config: &ProxyConfig,
) -> std::io::Result<(Bound, u16)> {
    let addr = SocketAddr::new(ip, port);
    match protocol {
        Protocol::Tcp => {
            let socket = match ip {
                IpAddr::V4(_) => TcpSocket::new_v4()?,
                IpAddr::V6(_) => TcpSocket::new_v6()?,
            };
            // Lets a stopped port be bound again while old connections sit in TIME_WAIT; a
            // listening socket still makes bind fail.
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            let listener = socket.listen(config.backlog)?;
            let actual = listener.local_addr()?.port();
            Ok((Bound::Tcp(listener), actual))
        }
        Protocol::Udp => {
            let std_socket = std::net::UdpSocket::bind(addr)?;
            std_socket.set_nonblocking(true)?;
            let socket = UdpSocket::from_std(std_socket)?;
            let actual = socket.local_addr()?.port();
            Ok((Bound::Udp(socket), actual))
        }
    }
}

// --- TCP -------------------------------------------------------------------------------------

async fn serve_tcp(listener: TcpListener, target: SocketAddr, config: Arc<ProxyConfig>) {
    // Live connections belong to this set: when the task is aborted they are dropped (closed).
    let mut connections = JoinSet::new();
    let max = config.max_tcp_connections.max(1);
    loop {
        tokio::select! {
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept(), if connections.len() < max => match accepted {
                Ok((client, peer)) => {
                    let config = config.clone();
                    connections.spawn(async move {
                        if let Err(e) = relay_tcp(client, target, &config).await {
                            tracing::debug!(%peer, %target, error = %e, "published port connection");
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(%target, error = %e, "published port accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn relay_tcp(
    mut client: TcpStream,
    target: SocketAddr,
    config: &ProxyConfig,
) -> std::io::Result<()> {
    let mut upstream = timeout(config.connect_timeout, TcpStream::connect(target))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "connect to the container")
        })??;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let size = config.tcp_buffer.max(4096);
    // splice(2) when two pipes can be had (they cost four descriptors), else plain copies.
    if config.splice
        && let Ok(pipes) = splice::Pipe::new(size).and_then(|a| Ok((a, splice::Pipe::new(size)?)))
    {
        return splice::relay(client, upstream, pipes).await;
    }
    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, size, size).await?;
    Ok(())
}

// --- UDP -------------------------------------------------------------------------------------

struct Flow {
    upstream: UdpSocket,
    born: Instant,
    /// Milliseconds after `born` of the last datagram either way.
    last: AtomicU64,
}

impl Flow {
    fn touch(&self) {
        let ms = self.born.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Arc<Flow>>>>;

fn lock_flows(flows: &Flows) -> MutexGuard<'_, HashMap<SocketAddr, Arc<Flow>>> {
    flows.lock().unwrap_or_else(|e| e.into_inner())
}

async fn serve_udp(socket: UdpSocket, target: SocketAddr, config: Arc<ProxyConfig>) {
    let socket = Arc::new(socket);
    let flows: Flows = Arc::new(Mutex::new(HashMap::new()));
    // Flow tasks belong to this set: when the task is aborted they are dropped (closed).
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    loop {
        let received = tokio::select! {
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, client) = match received {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(%target, error = %e, "published udp port receive");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let existing = lock_flows(&flows).get(&client).cloned();
        let flow = match existing {
            Some(f) => f,
            None => {
                if lock_flows(&flows).len() >= config.max_udp_flows.max(1) {
                    tracing::debug!(%client, %target, "too many udp flows, datagram dropped");
                    continue;
                }
                let flow = match open_flow(target).await {
                    Ok(f) => Arc::new(f),
                    Err(e) => {
                        tracing::debug!(%target, error = %e, "published udp port flow");
                        continue;
                    }
                };
                lock_flows(&flows).insert(client, flow.clone());
                tasks.spawn(run_flow(
                    flow.clone(),
                    client,
                    socket.clone(),
                    flows.clone(),
                    config.udp_idle_timeout,
                ));
                flow
            }
        };
        flow.touch();
        if let Err(e) = flow.upstream.send(&buf[..n]).await {
            tracing::debug!(%client, %target, error = %e, "published udp port send");
        }
    }
}

async fn open_flow(target: SocketAddr) -> std::io::Result<Flow> {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let upstream = UdpSocket::bind(local).await?;
    upstream.connect(target).await?;
    Ok(Flow {
        upstream,
        born: Instant::now(),
        last: AtomicU64::new(0),
    })
}

async fn run_flow(
    flow: Arc<Flow>,
    client: SocketAddr,
    socket: Arc<UdpSocket>,
    flows: Flows,
    idle: Duration,
) {
    let mut buf = vec![0u8; 65535];
    loop {
        let wait = idle
            .saturating_sub(flow.idle())
            .max(Duration::from_millis(1));
        match timeout(wait, flow.upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                flow.touch();
                if let Err(e) = socket.send_to(&buf[..n], client).await {
                    tracing::debug!(%client, error = %e, "published udp port reply");
                }
            }
            // An ICMP error for an earlier datagram (nothing listening in the container yet).
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Ok(Err(e)) => {
                tracing::debug!(%client, error = %e, "published udp port flow");
                break;
            }
            Err(_) if flow.idle() >= idle => break,
            Err(_) => {}
        }
    }
    let mut map = lock_flows(&flows);
    if map.get(&client).is_some_and(|f| Arc::ptr_eq(f, &flow)) {
        map.remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_syntax_requests() {
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        let r = PublishRequest::from_long_syntax(None, Some("8080"), 80, "tcp", ip).unwrap();
        assert_eq!(r.host_ip, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(r.host_ports, (8080, 8080));
        assert_eq!(r.container_port, 80);
        let r =
            PublishRequest::from_long_syntax(Some("127.0.0.1"), Some("9090-9091"), 53, "UDP", ip)
                .unwrap();
        assert_eq!(r.host_ports, (9090, 9091));
        assert_eq!(r.protocol, Protocol::Udp);
        let r = PublishRequest::from_long_syntax(Some("[::1]"), None, 80, "tcp", ip).unwrap();
        assert_eq!(r.host_ip, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(r.host_ports, (0, 0));
        let err = |h, p, t, proto| {
            PublishRequest::from_long_syntax(h, p, t, proto, ip)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(None, Some("99999"), 80, "tcp"),
            "invalid port \"99999\": 99999 is out of range (0-65535)"
        );
        assert_eq!(
            err(None, Some("abc"), 80, "tcp"),
            "invalid port \"abc\": \"abc\" is not a port number"
        );
        assert!(err(None, Some("9-8"), 80, "tcp").contains("ends before"));
        assert!(err(None, None, 0, "tcp").contains("container port"));
        assert!(err(Some("nope"), None, 80, "tcp").contains("invalid host address"));
        assert!(err(None, None, 80, "sctp").contains("sctp"));
    }

    #[test]
    fn start_needs_a_runtime() {
        let proxies = Proxies::new(ProxyConfig::default());
        assert!(matches!(
            proxies.start("c", &[]),
            Err(ProxyError::NoRuntime)
        ));
    }

    #[test]
    fn binding_display_and_overlap() {
        let b = PortBinding {
            host_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            host_port: 8080,
            container_ip: "10.0.0.2".parse().unwrap(),
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        assert_eq!(b.to_string(), "80/tcp -> 0.0.0.0:8080");
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(overlaps(lo, 8080, Protocol::Tcp, &b));
        assert!(!overlaps(lo, 8080, Protocol::Udp, &b));
        assert!(!overlaps(lo, 8081, Protocol::Tcp, &b));
        let b2 = PortBinding { host_ip: lo, ..b };
        assert!(!overlaps(
            "127.0.0.2".parse().unwrap(),
            8080,
            Protocol::Tcp,
            &b2
        ));
    }
}
