//! The dependency graph of a stack. Owns the petgraph model of services, networks and volumes and
//! the edges between them (`depends_on`, `volumes_from`, `network_mode: service:x`, network and
//! volume use), each pointing from the dependent to its dependency. It checks that every reference
//! resolves and that services form no cycle (reporting all problems at once), and answers the
//! ordering questions the planner asks: start and stop waves, direct dependencies and dependents,
//! the transitive closure of a selection, and a Graphviz rendering. Pure: no I/O.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use thiserror::Error;

/// One service as the graph needs to see it: its name and every reference it makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceInput {
    pub name: String,
    pub depends_on: Vec<DependsOn>,
    /// Names of services whose volumes this one mounts.
    pub volumes_from: Vec<String>,
    /// The service named by `network_mode: service:<name>`.
    pub network_mode_service: Option<String>,
    /// Top-level network keys this service joins.
    pub networks: Vec<String>,
    /// Top-level named volume keys this service mounts.
    pub volumes: Vec<String>,
}

/// One `depends_on` entry in its long form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependsOn {
    pub service: String,
    /// `service_started`, `service_healthy` or `service_completed_successfully`.
    pub condition: String,
    pub required: bool,
    pub restart: bool,
}

impl DependsOn {
    /// The short-syntax default: `service_started`, required, no restart.
    pub fn started(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            condition: "service_started".to_owned(),
            required: true,
            restart: false,
        }
    }
}

/// The whole stack as the graph needs to see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackInput {
    pub services: Vec<ServiceInput>,
    /// Top-level network keys.
    pub networks: Vec<String>,
    /// Top-level named volume keys.
    pub volumes: Vec<String>,
}

/// A node of the stack graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    Service(String),
    Network(String),
    Volume(String),
}

impl Node {
    /// The object's name (service, network or volume key).
    pub fn name(&self) -> &str {
        match self {
            Node::Service(n) | Node::Network(n) | Node::Volume(n) => n,
        }
    }

    fn is_service(&self) -> bool {
        matches!(self, Node::Service(_))
    }

    fn dot_id(&self) -> String {
        let kind = match self {
            Node::Service(_) => "service",
            Node::Network(_) => "network",
            Node::Volume(_) => "volume",
        };
        format!("\"{kind}:{}\"", dot_escape(self.name()))
    }
}

/// Why one node depends on another.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EdgeKind {
    DependsOn {
        condition: String,
        required: bool,
        restart: bool,
    },
    VolumesFrom,
    NetworkMode,
    UsesNetwork,
    UsesVolume,
}

/// What can be wrong with a stack's references.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum GraphError {
    /// Service names that appear more than once.
    #[error("duplicate service: {}", .0.join(", "))]
    DuplicateServices(Vec<String>),
    /// One message per unresolved reference, in input order.
    #[error("{}", .0.join("; "))]
    Missing(Vec<String>),
    /// One message per dependency cycle, ordered by the cycle's first service.
    #[error("{}", .0.join("; "))]
    Cycles(Vec<String>),
}

/// The dependency graph of a stack; edges point from the dependent to its dependency.
#[derive(Debug, Clone)]
pub struct StackGraph {
    graph: DiGraph<Node, EdgeKind>,
    services: HashMap<String, NodeIndex>,
}

impl StackGraph {
    /// Builds the graph, checking that every reference resolves and that there is no cycle among
    /// services. Unresolved references are all reported together (`GraphError::Missing`); cycles
    /// are checked only once every reference resolves. A `depends_on` entry with
    /// `required: false` naming an absent service is skipped, as in Compose.
    pub fn build(input: &StackInput) -> Result<StackGraph, GraphError> {
        let mut graph = DiGraph::with_capacity(
            input.services.len() + input.networks.len() + input.volumes.len(),
            input.services.len() * 2,
        );
        let mut services: HashMap<String, NodeIndex> = HashMap::with_capacity(input.services.len());
        let mut duplicates = BTreeSet::new();
        for service in &input.services {
            if services.contains_key(&service.name) {
                duplicates.insert(service.name.clone());
                continue;
            }
            let index = graph.add_node(Node::Service(service.name.clone()));
            services.insert(service.name.clone(), index);
        }
        if !duplicates.is_empty() {
            return Err(GraphError::DuplicateServices(
                duplicates.into_iter().collect(),
            ));
        }

        let mut networks: HashMap<&str, NodeIndex> = HashMap::new();
        for name in &input.networks {
            if !networks.contains_key(name.as_str()) {
                let index = graph.add_node(Node::Network(name.clone()));
                networks.insert(name, index);
            }
        }
        let mut volumes: HashMap<&str, NodeIndex> = HashMap::new();
        for name in &input.volumes {
            if !volumes.contains_key(name.as_str()) {
                let index = graph.add_node(Node::Volume(name.clone()));
                volumes.insert(name, index);
            }
        }

        let mut missing = Vec::new();
        for service in &input.services {
            let Some(&from) = services.get(&service.name) else {
                continue;
            };
            let name = &service.name;
            for dep in &service.depends_on {
                match services.get(&dep.service) {
                    Some(&to) => {
                        graph.add_edge(
                            from,
                            to,
                            EdgeKind::DependsOn {
                                condition: dep.condition.clone(),
                                required: dep.required,
                                restart: dep.restart,
                            },
                        );
                    }
                    None if dep.required => missing.push(format!(
                        "service \"{name}\" depends on undefined service \"{}\"",
                        dep.service
                    )),
                    None => {}
                }
            }
            for source in &service.volumes_from {
                match services.get(source) {
                    Some(&to) => {
                        graph.add_edge(from, to, EdgeKind::VolumesFrom);
                    }
                    None => missing.push(format!(
                        "service \"{name}\" takes volumes from undefined service \"{source}\""
                    )),
                }
            }
            if let Some(owner) = &service.network_mode_service {
                match services.get(owner) {
                    Some(&to) => {
                        graph.add_edge(from, to, EdgeKind::NetworkMode);
                    }
                    None => missing.push(format!(
                        "service \"{name}\" uses the network of undefined service \"{owner}\""
                    )),
                }
            }
            for network in &service.networks {
                match networks.get(network.as_str()) {
                    Some(&to) => {
                        graph.add_edge(from, to, EdgeKind::UsesNetwork);
                    }
                    None => missing.push(format!(
                        "service \"{name}\" uses undefined network \"{network}\""
                    )),
                }
            }
            for volume in &service.volumes {
                match volumes.get(volume.as_str()) {
                    Some(&to) => {
                        graph.add_edge(from, to, EdgeKind::UsesVolume);
                    }
                    None => missing.push(format!(
                        "service \"{name}\" uses undefined volume \"{volume}\""
                    )),
                }
            }
        }
        if !missing.is_empty() {
            return Err(GraphError::Missing(missing));
        }

        let stack = StackGraph { graph, services };
        let cycles = stack.cycles();
        if !cycles.is_empty() {
            return Err(GraphError::Cycles(cycles));
        }
        Ok(stack)
    }

    /// The underlying petgraph graph, for executors that walk it directly.
    pub fn graph(&self) -> &DiGraph<Node, EdgeKind> {
        &self.graph
    }

    /// The node index of a service, if it is in the stack.
    pub fn service_index(&self, service: &str) -> Option<NodeIndex> {
        self.services.get(service).copied()
    }

    /// All service names, sorted.
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = self.services.keys().cloned().collect();
        names.sort();
        names
    }

    /// Services grouped into waves that can start together: wave 0 has no service dependencies,
    /// wave n depends only on services in earlier waves (and on at least one in wave n-1). Each
    /// wave is sorted by name.
    pub fn start_waves(&self) -> Vec<Vec<String>> {
        let mut pending = vec![0usize; self.graph.node_count()];
        let mut current = Vec::new();
        for &index in self.services.values() {
            let count = self
                .graph
                .edges_directed(index, Direction::Outgoing)
                .filter(|e| self.graph[e.target()].is_service())
                .count();
            pending[index.index()] = count;
            if count == 0 {
                current.push(index);
            }
        }

        let mut waves = Vec::new();
        while !current.is_empty() {
            let mut next = Vec::new();
            for &index in &current {
                for edge in self.graph.edges_directed(index, Direction::Incoming) {
                    let source = edge.source();
                    let slot = &mut pending[source.index()];
                    if *slot > 0 {
                        *slot -= 1;
                        if *slot == 0 {
                            next.push(source);
                        }
                    }
                }
            }
            let mut wave: Vec<String> = current
                .iter()
                .map(|&i| self.graph[i].name().to_owned())
                .collect();
            wave.sort();
            waves.push(wave);
            current = next;
        }
        waves
    }

    /// The start waves in reverse: dependents stop before their dependencies.
    pub fn stop_waves(&self) -> Vec<Vec<String>> {
        let mut waves = self.start_waves();
        waves.reverse();
        waves
    }

    /// What a service depends on directly (services, networks and volumes), with the reason,
    /// sorted by name then kind. Empty for an unknown service.
    pub fn dependencies(&self, service: &str) -> Vec<(String, EdgeKind)> {
        self.neighbours(service, Direction::Outgoing)
    }

    /// The services that depend directly on a service, with the reason, sorted by name then kind.
    /// Empty for an unknown service.
    pub fn dependents(&self, service: &str) -> Vec<(String, EdgeKind)> {
        self.neighbours(service, Direction::Incoming)
    }

    /// The selected services plus every service they depend on transitively, sorted. Names that
    /// are not services of the stack are ignored (the caller validates them).
    pub fn with_dependencies(&self, selected: &[String]) -> Vec<String> {
        let mut seen: HashSet<NodeIndex> = HashSet::new();
        let mut stack: Vec<NodeIndex> = selected
            .iter()
            .filter_map(|name| self.services.get(name).copied())
            .collect();
        while let Some(index) = stack.pop() {
            if !seen.insert(index) {
                continue;
            }
            for next in self.graph.neighbors_directed(index, Direction::Outgoing) {
                if self.graph[next].is_service() && !seen.contains(&next) {
                    stack.push(next);
                }
            }
        }
        let mut names: Vec<String> = seen
            .into_iter()
            .map(|i| self.graph[i].name().to_owned())
            .collect();
        names.sort();
        names
    }

    /// Graphviz DOT text: services as boxes, networks as ellipses, volumes as cylinders;
    /// `depends_on` edges labelled with their condition and dashed when not required. Nodes and
    /// edges appear in a deterministic order.
    pub fn to_dot(&self) -> String {
        let mut nodes: Vec<&Node> = self.graph.node_weights().collect();
        nodes.sort();
        let mut edges: Vec<(&Node, &Node, &EdgeKind)> = self
            .graph
            .edge_references()
            .map(|e| (&self.graph[e.source()], &self.graph[e.target()], e.weight()))
            .collect();
        edges.sort();

        let mut out = String::from("digraph stack {\n");
        for node in nodes {
            let shape = match node {
                Node::Service(_) => "box",
                Node::Network(_) => "ellipse",
                Node::Volume(_) => "cylinder",
            };
            let _ = writeln!(
                out,
                "  {} [label=\"{}\", shape={shape}];",
                node.dot_id(),
                dot_escape(node.name())
            );
        }
        for (from, to, kind) in edges {
            let attrs = match kind {
                EdgeKind::DependsOn {
                    condition,
                    required,
                    ..
                } => {
                    let style = if *required { "" } else { ", style=dashed" };
                    format!(" [label=\"{}\"{style}]", dot_escape(condition))
                }
                EdgeKind::VolumesFrom => " [label=\"volumes_from\"]".to_owned(),
                EdgeKind::NetworkMode => " [label=\"network_mode\"]".to_owned(),
                EdgeKind::UsesNetwork | EdgeKind::UsesVolume => String::new(),
            };
            let _ = writeln!(out, "  {} -> {}{attrs};", from.dot_id(), to.dot_id());
        }
        out.push_str("}\n");
        out
    }

    fn neighbours(&self, service: &str, direction: Direction) -> Vec<(String, EdgeKind)> {
        let Some(&index) = self.services.get(service) else {
            return Vec::new();
        };
        let mut out: Vec<(String, EdgeKind)> = self
            .graph
            .edges_directed(index, direction)
            .map(|e| {
                let other = match direction {
                    Direction::Outgoing => e.target(),
                    Direction::Incoming => e.source(),
                };
                (self.graph[other].name().to_owned(), e.weight().clone())
            })
            .collect();
        out.sort();
        out
    }

    /// One message per strongly connected component that contains a cycle, sorted.
    fn cycles(&self) -> Vec<String> {
        let mut found: Vec<(String, String)> = Vec::new();
        for component in tarjan_scc(&self.graph) {
            let Some(&first) = component.first() else {
                continue;
            };
            if component.len() == 1 && !self.graph.contains_edge(first, first) {
                continue;
            }
            let start = component
                .iter()
                .copied()
                .min_by(|a, b| self.graph[*a].name().cmp(self.graph[*b].name()))
                .unwrap_or(first);
            let members: HashSet<NodeIndex> = component.iter().copied().collect();
            let path: Vec<&str> = self
                .shortest_cycle(start, &members)
                .into_iter()
                .map(|i| self.graph[i].name())
                .collect();
            found.push((
                self.graph[start].name().to_owned(),
                format!("dependency cycle: {}", path.join(" → ")),
            ));
        }
        found.sort();
        found.into_iter().map(|(_, message)| message).collect()
    }

    /// The shortest cycle through `start` inside one component, as a path that begins and ends
    /// with `start`. Breadth-first, visiting neighbours by name, so the result is deterministic.
    fn shortest_cycle(&self, start: NodeIndex, members: &HashSet<NodeIndex>) -> Vec<NodeIndex> {
        let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut seen: HashSet<NodeIndex> = HashSet::from([start]);
        let mut queue = VecDeque::from([start]);
        while let Some(index) = queue.pop_front() {
            let mut next: Vec<NodeIndex> = self
                .graph
                .neighbors_directed(index, Direction::Outgoing)
                .filter(|n| members.contains(n))
                .collect();
            next.sort_by(|a, b| self.graph[*a].name().cmp(self.graph[*b].name()));
            next.dedup();
            for to in next {
                if to == start {
                    let mut path = vec![start, index];
                    let mut at = index;
                    while let Some(&p) = parent.get(&at) {
                        path.push(p);
                        at = p;
                    }
                    path.reverse();
                    return path;
                }
                if seen.insert(to) {
                    parent.insert(to, index);
                    queue.push_back(to);
                }
            }
        }
        vec![start, start]
    }
}

fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, deps: &[&str]) -> ServiceInput {
        ServiceInput {
            name: name.to_owned(),
            depends_on: deps.iter().map(|d| DependsOn::started(*d)).collect(),
            ..ServiceInput::default()
        }
    }

    fn stack(services: Vec<ServiceInput>) -> StackInput {
        StackInput {
            services,
            ..StackInput::default()
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn waves(list: &[&[&str]]) -> Vec<Vec<String>> {
        list.iter().map(|w| names(w)).collect()
    }

    fn build(services: Vec<ServiceInput>) -> StackGraph {
        StackGraph::build(&stack(services)).unwrap()
    }

    fn err(services: Vec<ServiceInput>) -> GraphError {
        StackGraph::build(&stack(services)).unwrap_err()
    }

    #[test]
    fn linear_chain() {
        let g = build(vec![
            svc("web", &["api"]),
            svc("api", &["db"]),
            svc("db", &[]),
        ]);
        assert_eq!(g.start_waves(), waves(&[&["db"], &["api"], &["web"]]));
        assert_eq!(g.stop_waves(), waves(&[&["web"], &["api"], &["db"]]));
    }

    #[test]
    fn diamond() {
        let g = build(vec![
            svc("top", &["left", "right"]),
            svc("left", &["base"]),
            svc("right", &["base"]),
            svc("base", &[]),
        ]);
        assert_eq!(
            g.start_waves(),
            waves(&[&["base"], &["left", "right"], &["top"]])
        );
    }

    #[test]
    fn independent_services_share_one_wave() {
        let g = build(vec![svc("c", &[]), svc("a", &[]), svc("b", &[])]);
        assert_eq!(g.start_waves(), waves(&[&["a", "b", "c"]]));
        assert_eq!(g.services(), names(&["a", "b", "c"]));
    }

    #[test]
    fn waves_use_the_longest_path() {
        // e depends on a (wave 0) and d (wave 2), so it lands in wave 3.
        let g = build(vec![
            svc("a", &[]),
            svc("b", &["a"]),
            svc("c", &[]),
            svc("d", &["b", "c"]),
            svc("e", &["a", "d"]),
            svc("f", &["c"]),
        ]);
        assert_eq!(
            g.start_waves(),
            waves(&[&["a", "c"], &["b", "f"], &["d"], &["e"]])
        );
        assert_eq!(
            g.stop_waves(),
            waves(&[&["e"], &["d"], &["b", "f"], &["a", "c"]])
        );
    }

    #[test]
    fn empty_stack_has_no_waves() {
        let g = build(vec![]);
        assert!(g.start_waves().is_empty());
        assert_eq!(g.to_dot(), "digraph stack {\n}\n");
    }

    #[test]
    fn three_cycle_message() {
        let e = err(vec![
            svc("c", &["a"]),
            svc("b", &["c"]),
            svc("a", &["b"]),
            svc("d", &["a"]),
        ]);
        assert_eq!(e.to_string(), "dependency cycle: a → b → c → a");
        assert_eq!(
            e,
            GraphError::Cycles(names(&["dependency cycle: a → b → c → a"]))
        );
    }

    #[test]
    fn cycle_starts_at_smallest_name_and_takes_shortest_way_back() {
        // Component {a, b, c, d}: a → d → a is shorter than a → b → c → a.
        let e = err(vec![
            svc("a", &["b", "d"]),
            svc("b", &["c"]),
            svc("c", &["a"]),
            svc("d", &["a"]),
        ]);
        assert_eq!(e.to_string(), "dependency cycle: a → d → a");
    }

    #[test]
    fn self_loop_message() {
        let e = err(vec![svc("solo", &["solo"]), svc("other", &[])]);
        assert_eq!(e.to_string(), "dependency cycle: solo → solo");
    }

    #[test]
    fn two_cycles_are_both_reported() {
        let e = err(vec![
            svc("z", &["y"]),
            svc("y", &["z"]),
            svc("b", &["a"]),
            svc("a", &["b"]),
            svc("ok", &["a"]),
        ]);
        assert_eq!(
            e,
            GraphError::Cycles(names(&[
                "dependency cycle: a → b → a",
                "dependency cycle: y → z → y",
            ]))
        );
        assert_eq!(
            e.to_string(),
            "dependency cycle: a → b → a; dependency cycle: y → z → y"
        );
    }

    #[test]
    fn volumes_from_and_network_mode_can_close_a_cycle() {
        let mut a = svc("a", &["b"]);
        a.volumes_from = names(&["b"]);
        let mut b = svc("b", &[]);
        b.network_mode_service = Some("a".to_owned());
        assert_eq!(err(vec![a, b]).to_string(), "dependency cycle: a → b → a");
    }

    #[test]
    fn required_missing_dependency_is_an_error() {
        let e = err(vec![svc("web", &["db"])]);
        assert_eq!(
            e,
            GraphError::Missing(names(&[
                "service \"web\" depends on undefined service \"db\""
            ]))
        );
    }

    #[test]
    fn optional_missing_dependency_is_skipped() {
        let mut web = svc("web", &[]);
        web.depends_on.push(DependsOn {
            required: false,
            ..DependsOn::started("db")
        });
        let g = build(vec![web]);
        assert_eq!(g.start_waves(), waves(&[&["web"]]));
        assert!(g.dependencies("web").is_empty());
    }

    #[test]
    fn every_missing_reference_is_reported() {
        let mut web = svc("web", &["db"]);
        web.volumes_from = names(&["store"]);
        web.network_mode_service = Some("vpn".to_owned());
        web.networks = names(&["front", "back"]);
        web.volumes = names(&["data", "cache"]);
        let input = StackInput {
            services: vec![web],
            networks: names(&["front"]),
            volumes: names(&["data"]),
        };
        let e = StackGraph::build(&input).unwrap_err();
        assert_eq!(
            e,
            GraphError::Missing(names(&[
                "service \"web\" depends on undefined service \"db\"",
                "service \"web\" takes volumes from undefined service \"store\"",
                "service \"web\" uses the network of undefined service \"vpn\"",
                "service \"web\" uses undefined network \"back\"",
                "service \"web\" uses undefined volume \"cache\"",
            ]))
        );
        assert!(
            e.to_string()
                .contains("; service \"web\" uses undefined network")
        );
    }

    #[test]
    fn duplicate_services_are_an_error() {
        let e = err(vec![svc("a", &[]), svc("a", &[]), svc("b", &[])]);
        assert_eq!(e.to_string(), "duplicate service: a");
    }

    #[test]
    fn network_mode_and_volumes_from_affect_order() {
        let mut app = svc("app", &[]);
        app.network_mode_service = Some("vpn".to_owned());
        let mut backup = svc("backup", &[]);
        backup.volumes_from = names(&["app"]);
        let g = build(vec![backup, app, svc("vpn", &[])]);
        assert_eq!(g.start_waves(), waves(&[&["vpn"], &["app"], &["backup"]]));
        assert_eq!(
            g.dependencies("app"),
            vec![("vpn".to_owned(), EdgeKind::NetworkMode)]
        );
        assert_eq!(
            g.dependents("app"),
            vec![("backup".to_owned(), EdgeKind::VolumesFrom)]
        );
    }

    #[test]
    fn networks_and_volumes_do_not_affect_waves() {
        let mut web = svc("web", &[]);
        web.networks = names(&["default"]);
        web.volumes = names(&["data"]);
        let input = StackInput {
            services: vec![web, svc("db", &[])],
            networks: names(&["default"]),
            volumes: names(&["data"]),
        };
        let g = StackGraph::build(&input).unwrap();
        assert_eq!(g.start_waves(), waves(&[&["db", "web"]]));
        assert_eq!(
            g.dependencies("web"),
            vec![
                ("data".to_owned(), EdgeKind::UsesVolume),
                ("default".to_owned(), EdgeKind::UsesNetwork),
            ]
        );
        assert_eq!(g.with_dependencies(&names(&["web"])), names(&["web"]));
    }

    #[test]
    fn dependencies_and_dependents() {
        let mut web = svc("web", &["db"]);
        web.depends_on.push(DependsOn {
            condition: "service_healthy".to_owned(),
            restart: true,
            ..DependsOn::started("cache")
        });
        let g = build(vec![
            web,
            svc("db", &[]),
            svc("cache", &[]),
            svc("worker", &["db"]),
        ]);
        assert_eq!(
            g.dependencies("web"),
            vec![
                (
                    "cache".to_owned(),
                    EdgeKind::DependsOn {
                        condition: "service_healthy".to_owned(),
                        required: true,
                        restart: true,
                    }
                ),
                (
                    "db".to_owned(),
                    EdgeKind::DependsOn {
                        condition: "service_started".to_owned(),
                        required: true,
                        restart: false,
                    }
                ),
            ]
        );
        let dependents: Vec<String> = g.dependents("db").into_iter().map(|(n, _)| n).collect();
        assert_eq!(dependents, names(&["web", "worker"]));
        assert!(g.dependencies("nope").is_empty());
        assert!(g.dependents("nope").is_empty());
    }

    #[test]
    fn with_dependencies_is_transitive_and_sorted() {
        let mut web = svc("web", &["api"]);
        web.volumes_from = names(&["assets"]);
        let g = build(vec![
            web,
            svc("api", &["db", "cache"]),
            svc("db", &[]),
            svc("cache", &[]),
            svc("assets", &[]),
            svc("admin", &["db"]),
            svc("lonely", &[]),
        ]);
        assert_eq!(
            g.with_dependencies(&names(&["web"])),
            names(&["api", "assets", "cache", "db", "web"])
        );
        assert_eq!(
            g.with_dependencies(&names(&["admin", "lonely", "unknown"])),
            names(&["admin", "db", "lonely"])
        );
        assert!(g.with_dependencies(&[]).is_empty());
    }

    #[test]
    fn dot_snapshot() {
        let mut web = svc("web", &["db"]);
        web.depends_on.push(DependsOn {
            required: false,
            ..DependsOn::started("cache")
        });
        web.networks = names(&["front"]);
        let mut db = svc("db", &[]);
        db.volumes = names(&["data"]);
        db.networks = names(&["front"]);
        let mut backup = svc("backup", &[]);
        backup.volumes_from = names(&["db"]);
        backup.network_mode_service = Some("db".to_owned());
        let input = StackInput {
            services: vec![web, db, svc("cache", &[]), backup],
            networks: names(&["front"]),
            volumes: names(&["data"]),
        };
        let g = StackGraph::build(&input).unwrap();
        let expected = r#"digraph stack {
  "service:backup" [label="backup", shape=box];
  "service:cache" [label="cache", shape=box];
  "service:db" [label="db", shape=box];
  "service:web" [label="web", shape=box];
  "network:front" [label="front", shape=ellipse];
  "volume:data" [label="data", shape=cylinder];
  "service:backup" -> "service:db" [label="volumes_from"];
  "service:backup" -> "service:db" [label="network_mode"];
  "service:db" -> "network:front";
  "service:db" -> "volume:data";
  "service:web" -> "service:cache" [label="service_started", style=dashed];
  "service:web" -> "service:db" [label="service_started"];
  "service:web" -> "network:front";
}
"#;
        assert_eq!(g.to_dot(), expected);
    }

    #[test]
    fn dot_escapes_quotes() {
        let g = build(vec![svc("we\"ird", &[])]);
        assert!(
            g.to_dot()
                .contains(r#""service:we\"ird" [label="we\"ird", shape=box];"#)
        );
    }

    #[test]
    fn two_hundred_services_build_and_wave_quickly() {
        // Ten layers of twenty; every service depends on every service of the layer below.
        let mut services = Vec::new();
        for layer in 0..10 {
            for i in 0..20 {
                let deps: Vec<String> = if layer == 0 {
                    Vec::new()
                } else {
                    (0..20)
                        .map(|j| format!("s{:02}-{j:02}", layer - 1))
                        .collect()
                };
                let refs: Vec<&str> = deps.iter().map(String::as_str).collect();
                services.push(svc(&format!("s{layer:02}-{i:02}"), &refs));
            }
        }
        let input = stack(services);
        let started = std::time::Instant::now();
        let g = StackGraph::build(&input).unwrap();
        let w = g.start_waves();
        let elapsed = started.elapsed();
        assert_eq!(w.len(), 10);
        assert!(w.iter().all(|wave| wave.len() == 20));
        assert_eq!(w[3][0], "s03-00");
        // Generous bound so debug builds on a busy machine do not flake.
        assert!(elapsed.as_millis() < 500, "took {elapsed:?}");
    }
}
