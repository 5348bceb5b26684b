//! `flotilla config`: load the stack, report every problem located, or print it resolved in
//! canonical form (YAML like `docker compose config`, or JSON), or parts of it.

use clap::{Args, ValueEnum};

use super::{ProjectArgs, out, warn};
use crate::plan::graph;
use crate::spec::{emit, load, normalize};

#[derive(Clone, Copy, Debug, ValueEnum, Default)]
pub enum Format {
    #[default]
    Yaml,
    Json,
}

#[derive(Args, Debug, Default)]
pub struct ConfigArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,
    /// Print the service names, one per line, in start order
    #[arg(long)]
    pub services: bool,
    /// Print the volume names, one per line
    #[arg(long)]
    pub volumes: bool,
    /// Print the network names, one per line
    #[arg(long)]
    pub networks: bool,
    /// Print the profile names, one per line
    #[arg(long = "profiles", id = "list_profiles")]
    pub list_profiles: bool,
    /// Print the image of each service, one per line
    #[arg(long)]
    pub images: bool,
    /// Only validate; the exit code tells
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not interpolate variables
    #[arg(long)]
    pub no_interpolate: bool,
    /// Print the dependency graph in Graphviz DOT
    #[arg(long)]
    pub graph: bool,
}

fn keys(v: &serde_json::Value, section: &str) -> Vec<String> {
    v.get(section)
        .and_then(|s| s.as_object())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn lines(items: &[String]) -> String {
    let mut s = String::new();
    for i in items {
        s.push_str(i);
        s.push('\n');
    }
    s
}

pub fn run(project: &ProjectArgs, args: &ConfigArgs) -> Result<(), String> {
    let opts = project.options(args.no_interpolate);
    let loaded = match load::load(&opts) {
        Ok(l) => l,
        Err(errs) => {
            let n = errs.0.len();
            return Err(format!(
                "{errs}\nerror: the stack is not valid ({n} problem{})",
                if n == 1 { "" } else { "s" }
            ));
        }
    };
    for w in &loaded.warnings {
        warn(w);
    }
    if args.quiet {
        return Ok(());
    }
    // Like Compose, an interpolated stack is printed with `$` escaped as `$$`, so the output can
    // be loaded again and mean the same.
    let escaped;
    let c = if args.no_interpolate {
        &loaded.config
    } else {
        escaped = escape_dollars(&loaded.config);
        &escaped
    };
    let text = if args.services {
        lines(&start_order(c)?)
    } else if args.volumes {
        lines(&keys(c, "volumes"))
    } else if args.networks {
        lines(&keys(c, "networks"))
    } else if args.list_profiles {
        lines(&loaded.all_profiles)
    } else if args.images {
        let mut imgs = Vec::new();
        if let Some(s) = c.get("services").and_then(|s| s.as_object()) {
            for (name, svc) in s {
                let img = svc
                    .get("image")
                    .and_then(|i| i.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{}-{}", loaded.name, name));
                imgs.push(img);
            }
        }
        lines(&imgs)
    } else if args.graph {
        let mut dot = stack_graph(c)?.to_dot();
        if !dot.ends_with('\n') {
            dot.push('\n');
        }
        dot
    } else {
        match args.format {
            Format::Yaml => emit::to_yaml(c),
            Format::Json => {
                let mut s = serde_json::to_string_pretty(c).map_err(|e| e.to_string())?;
                s.push('\n');
                s
            }
        }
    };
    out(&text).map_err(|e| format!("error: cannot write output: {e}"))
}

/// Every `$` in string values doubled (keys are never interpolated, so they stay).
fn escape_dollars(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::String(s) if s.contains('$') => J::String(s.replace('$', "$$")),
        J::Array(a) => J::Array(a.iter().map(escape_dollars).collect()),
        J::Object(o) => J::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), escape_dollars(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The graph of a loaded stack's canonical JSON.
pub fn stack_graph(config: &serde_json::Value) -> Result<graph::StackGraph, String> {
    let input = normalize::graph_input_json(config);
    graph::StackGraph::build(&input).map_err(|e| format!("error: {e}"))
}

fn start_order(config: &serde_json::Value) -> Result<Vec<String>, String> {
    Ok(stack_graph(config)?
        .start_waves()
        .into_iter()
        .flatten()
        .collect())
}
