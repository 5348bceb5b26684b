//! `logs [SERVICE...]` and the log lines of attached `up`: each line prefixed with its
//! container's short name padded to the longest one (`web-1  | `), the prefix coloured per
//! container (Compose's palette) only on a terminal. Without `-f` the lines of every container
//! are read first and printed merged in time order; with `-f` they are printed as they come,
//! until every container has exited. Standard error lines go to standard error.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::SystemTime;

use clap::Args;
use tokio::sync::mpsc;

use super::super::system::{HostArgs, engine_client};
use super::super::{EngineArgs, ProjectArgs};
use super::{Scope, short_name};
use crate::api::client::{Client, LogsQuery, block_on};
use crate::api::types::{Container, LogLine};
use crate::plan::labels;
use crate::runtime::time;

#[derive(Args, Debug, Clone, Default)]
pub struct LogsArgs {
    /// Keep printing new lines until the containers exit (`-f` after `logs`)
    #[arg(long)]
    pub follow: bool,
    /// Only the last N lines of each container (`all`: every line)
    #[arg(long, value_name = "N", default_value = "all")]
    pub tail: String,
    /// Only lines from this time: RFC 3339, Unix seconds, or a duration ago (`10m`)
    #[arg(long)]
    pub since: Option<String>,
    /// Only lines before this time (same forms)
    #[arg(long)]
    pub until: Option<String>,
    /// Show each line's time
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// No colours
    #[arg(long)]
    pub no_color: bool,
    /// No `service-1  | ` prefix
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Only the container with this number (replica) of each service
    #[arg(long, value_name = "N")]
    pub index: Option<u32>,
    /// Only these services (all when none)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// Compose's prefix colours, in the order containers get them (ANSI SGR codes).
const PALETTE: [&str; 10] = [
    "36", "33", "32", "35", "34", "36;1", "33;1", "32;1", "35;1", "34;1",
];

/// Whether standard output gets colours: a terminal, unless refused (`--no-color`, NO_COLOR).
pub(super) fn colours(no_color: bool) -> bool {
    !no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

/// Formats log lines of a set of containers.
#[derive(Debug, Clone)]
pub(super) struct Printer {
    width: usize,
    prefix: bool,
    timestamps: bool,
    colour: HashMap<String, &'static str>,
}

impl Printer {
    /// For these container names (short), in the order their colours are given.
    pub(super) fn new(names: &[String], prefix: bool, colour: bool, timestamps: bool) -> Self {
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0) + 1;
        let colour = if colour {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), PALETTE[i % PALETTE.len()]))
                .collect()
        } else {
            HashMap::new()
        };
        Printer {
            width,
            prefix,
            timestamps,
            colour,
        }
    }

    fn paint(&self, name: &str, text: &str) -> String {
        match self.colour.get(name) {
            Some(code) => format!("\x1b[{code}m{text}\x1b[0m"),
            None => text.to_string(),
        }
    }

    /// One log line as printed, newline included.
    pub(super) fn line(&self, name: &str, l: &LogLine) -> String {
        let text = l.log.strip_suffix('\n').unwrap_or(&l.log);
        let text = text.strip_suffix('\r').unwrap_or(text);
        let mut s = String::with_capacity(text.len() + self.width + 40);
        if self.prefix {
            let p = format!("{name:<w$} | ", w = self.width);
            s.push_str(&self.paint(name, &p));
        }
        if self.timestamps {
            s.push_str(&l.time);
            s.push(' ');
        }
        s.push_str(text);
        s.push('\n');
        s
    }

    /// A line about a container (`web-1 exited with code 0`).
    pub(super) fn status(&self, name: &str, message: &str) -> String {
        format!("{}\n", self.paint(name, &format!("{name} {message}")))
    }

    /// Writes `l` to standard output or standard error, as the container wrote it; a closed
    /// standard output is not an error.
    pub(super) fn print(&self, name: &str, l: &LogLine) -> Result<(), String> {
        let text = self.line(name, l);
        if l.stream == "stderr" {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(text.as_bytes());
            Ok(())
        } else {
            super::out(&text).map_err(|e| format!("write: {e}"))
        }
    }
}

/// `--since`/`--until` as the API takes them: a duration ago becomes an RFC 3339 time.
pub(super) fn api_time(flag: &str, text: &str) -> Result<String, String> {
    if time::parse(text).is_some() {
        return Ok(text.to_string());
    }
    let ago = super::super::events::parse_duration(text).ok_or_else(|| {
        format!("--{flag} {text:?}: expected RFC 3339, Unix seconds or a duration like 10m")
    })?;
    let t = SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(time::format(t))
}

fn tail(text: &str) -> Result<Option<usize>, String> {
    match text {
        "all" | "-1" => Ok(None),
        n => n
            .parse::<usize>()
            .map(Some)
            .map_err(|_| format!("--tail {n:?}: expected a number or all")),
    }
}

/// Reads every line of `c` (no following), for merging.
async fn read_all(client: &Client, c: &Container, q: &LogsQuery) -> Result<Vec<LogLine>, String> {
    let mut stream = client
        .container_logs(&c.id, q)
        .await
        .map_err(|e| format!("{}: {e}", c.name))?;
    let mut lines = Vec::new();
    while let Some(l) = stream.next().await {
        lines.push(l.map_err(|e| format!("{}: {e}", c.name))?);
    }
    Ok(lines)
}

/// What a following task reports.
pub(super) enum Followed {
    Line(String, LogLine),
    /// The container's log ended (it exited); its short name and the error that ended it early.
    End(String, Option<String>),
}

/// Follows `c`'s log into `tx` until the container exits; then says so.
pub(super) fn spawn_follow(
    client: &Client,
    c: &Container,
    q: LogsQuery,
    tx: mpsc::UnboundedSender<Followed>,
) {
    let client = client.clone();
    let id = c.id.clone();
    let name = short_name(c);
    tokio::spawn(async move {
        let error = match client.container_logs(&id, &q).await {
            Ok(mut stream) => loop {
                match stream.next().await {
                    Some(Ok(l)) => {
                        if tx.send(Followed::Line(name.clone(), l)).is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => break Some(e.to_string()),
                    None => break None,
                }
            },
            Err(e) => Some(e.to_string()),
        };
        let _ = tx.send(Followed::End(name, error));
    });
}

pub fn logs(
    engine: &EngineArgs,
    hosts: &HostArgs,
    project: &ProjectArgs,
    args: &LogsArgs,
) -> Result<u8, String> {
    let scope = Scope::of(project)?;
    let q = LogsQuery {
        follow: args.follow,
        tail: tail(&args.tail).map_err(|e| format!("logs: {e}"))?,
        since: args
            .since
            .as_deref()
            .map(|s| api_time("since", s))
            .transpose()
            .map_err(|e| format!("logs: {e}"))?,
    };
    let until = args
        .until
        .as_deref()
        .map(|s| api_time("until", s))
        .transpose()
        .map_err(|e| format!("logs: {e}"))?
        .and_then(|t| time::parse(&t));
    let client = engine_client(engine, hosts)?;
    block_on(async {
        let mut list = scope.select("logs", &client, &args.services).await?;
        if let Some(i) = args.index {
            let want = i.to_string();
            list.retain(|c| c.labels.get(labels::CONTAINER_NUMBER) == Some(&want));
        }
        let names: Vec<String> = list.iter().map(short_name).collect();
        let printer = Printer::new(
            &names,
            !args.no_log_prefix,
            colours(args.no_color),
            args.timestamps,
        );
        let before_until =
            |l: &LogLine| until.is_none_or(|u| time::parse(&l.time).is_none_or(|t| t < u));
        if !args.follow {
            let reads = list.iter().map(|c| read_all(&client, c, &q));
            let results = futures_util::future::join_all(reads).await;
            let mut merged: Vec<(&String, LogLine)> = Vec::new();
            for (name, r) in names.iter().zip(results) {
                merged.extend(
                    r.map_err(|e| format!("logs: {e}"))?
                        .into_iter()
                        .map(|l| (name, l)),
                );
            }
            // Fixed-width UTC times sort as text; the sort is stable within a container.
            merged.sort_by(|a, b| a.1.time.cmp(&b.1.time));
            for (name, l) in merged.iter().filter(|(_, l)| before_until(l)) {
                printer.print(name, l).map_err(|e| format!("logs: {e}"))?;
            }
            return Ok(0);
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        for c in &list {
            spawn_follow(&client, c, q.clone(), tx.clone());
        }
        drop(tx);
        let mut failed = false;
        while let Some(f) = rx.recv().await {
            match f {
                Followed::Line(name, l) if before_until(&l) => {
                    printer.print(&name, &l).map_err(|e| format!("logs: {e}"))?;
                }
                Followed::Line(..) => {}
                Followed::End(name, Some(e)) => {
                    eprintln!("logs: {name}: {e}");
                    failed = true;
                }
                Followed::End(_, None) => {}
            }
        }
        Ok(u8::from(failed))
    })
    .map_err(|e| format!("start a runtime: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(log: &str) -> LogLine {
        LogLine {
            time: "2024-05-01T12:34:56.000000001Z".into(),
            stream: "stdout".into(),
            log: log.into(),
        }
    }

    #[test]
    fn prefixes_are_padded_and_coloured_only_when_asked() {
        let names = vec!["web-1".to_string(), "db-1".to_string()];
        let p = Printer::new(&names, true, false, false);
        assert_eq!(p.line("web-1", &line("hello\n")), "web-1  | hello\n");
        assert_eq!(p.line("db-1", &line("partial")), "db-1   | partial\n");
        assert_eq!(
            p.status("db-1", "exited with code 0"),
            "db-1 exited with code 0\n"
        );
        let p = Printer::new(&names, true, true, true);
        assert_eq!(
            p.line("db-1", &line("x\r\n")),
            "\x1b[33mdb-1   | \x1b[0m2024-05-01T12:34:56.000000001Z x\n"
        );
        let p = Printer::new(&names, false, true, false);
        assert_eq!(p.line("web-1", &line("bare\n")), "bare\n");
    }

    #[test]
    fn tails_and_times() {
        assert_eq!(tail("all"), Ok(None));
        assert_eq!(tail("5"), Ok(Some(5)));
        assert!(tail("five").is_err());
        assert_eq!(api_time("since", "1714566896").unwrap(), "1714566896");
        assert!(time::parse(&api_time("since", "10m").unwrap()).is_some());
        assert!(api_time("since", "later").is_err());
    }
}
