//! Compose's `--progress` for `up`, `down` and `pull`: how the [`ProjectProgress`] events of the
//! daemon are shown. `plain`: one line per event (` Container demo-web-1  Started  0.4s`),
//! errors on standard error; `quiet`: only the errors; `json`: each event as one JSON object
//! per line; `tty` (the default on a terminal): a live view like Compose's, one row per
//! network, volume, image and container with its state and elapsed time, redrawn in place with
//! ANSI escapes (a spinner while it works, ✔ when done, ✘ on error) under a `[+] Running n/m`
//! header; plan and warning lines are printed above it.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::api::types::ProjectProgress;

/// `--progress TYPE`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// tty on a terminal, plain otherwise
    Auto,
    /// A live status view redrawn in place
    Tty,
    /// One line per event
    Plain,
    /// Only errors
    Quiet,
    /// One JSON object per event
    Json,
}

/// How often the tty view redraws its clocks.
pub const TICK: Duration = Duration::from_millis(100);

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// The statuses after which an object does nothing more.
fn finished(status: &str) -> bool {
    matches!(
        status,
        "Created"
            | "Started"
            | "Running"
            | "Healthy"
            | "Pulled"
            | "Removed"
            | "Stopped"
            | "Recreated"
            | "Restarted"
            | "Exited"
            | "Skipped"
            | "Error"
    )
}

/// One row of the tty view.
struct Row {
    kind: String,
    name: String,
    status: String,
    detail: Option<String>,
    /// When its first event came (the operation's clock), and its last one when finished.
    first_ms: u64,
    last_ms: Option<u64>,
}

/// Renders a progress stream in one [`Mode`].
pub struct Renderer {
    mode: Mode,
    verbose: bool,
    rows: Vec<Row>,
    /// Lines of the view currently on screen.
    drawn: usize,
    /// Our clock when the operation's clock was at `clock_ms`.
    since: Instant,
    clock_ms: u64,
    frame: usize,
}

impl Renderer {
    /// `mode` as asked (none or `auto`: tty when standard output is a terminal).
    pub fn new(mode: Option<Mode>, verbose: bool) -> Renderer {
        let mode = match mode.unwrap_or(Mode::Auto) {
            Mode::Auto if std::io::stdout().is_terminal() => Mode::Tty,
            Mode::Auto => Mode::Plain,
            m => m,
        };
        Renderer {
            mode,
            verbose,
            rows: Vec::new(),
            drawn: 0,
            since: Instant::now(),
            clock_ms: 0,
            frame: 0,
        }
    }

    /// Whether this is the live view (which shows in-progress details such as pull bytes).
    pub fn is_tty(&self) -> bool {
        self.mode == Mode::Tty
    }

    /// Shows one event.
    pub fn event(&mut self, p: &ProjectProgress) -> std::io::Result<()> {
        match self.mode {
            Mode::Json => {
                let line = serde_json::to_string(p).map_err(std::io::Error::other)?;
                write_out(&format!("{line}\n"))
            }
            Mode::Quiet => {
                if p.status == "Error"
                    && let Some(text) = super::render(p, false)
                {
                    eprint!("{text}");
                }
                Ok(())
            }
            Mode::Plain | Mode::Auto => match super::render(p, self.verbose) {
                Some(text) if p.status == "Error" => {
                    eprint!("{text}");
                    Ok(())
                }
                Some(text) => write_out(&text),
                None => Ok(()),
            },
            Mode::Tty => self.tty_event(p),
        }
    }

    /// Redraws the tty view's clocks (nothing in the other modes).
    pub fn tick(&mut self) -> std::io::Result<()> {
        if self.mode != Mode::Tty || self.rows.is_empty() {
            return Ok(());
        }
        self.frame += 1;
        self.draw(None)
    }

    fn now_ms(&self) -> u64 {
        self.clock_ms + self.since.elapsed().as_millis() as u64
    }

    fn tty_event(&mut self, p: &ProjectProgress) -> std::io::Result<()> {
        self.clock_ms = p.elapsed_ms;
        self.since = Instant::now();
        match p.kind.as_str() {
            "done" => return self.draw(None),
            "plan" | "warning" => {
                let text = super::render(p, self.verbose).unwrap_or_default();
                return self.draw(Some(text));
            }
            _ => {}
        }
        let row = match self
            .rows
            .iter_mut()
            .position(|r| r.kind == p.kind && r.name == p.name)
        {
            Some(i) => &mut self.rows[i],
            None => {
                self.rows.push(Row {
                    kind: p.kind.clone(),
                    name: p.name.clone(),
                    status: String::new(),
                    detail: None,
                    first_ms: p.elapsed_ms,
                    last_ms: None,
                });
                let last = self.rows.len() - 1;
                &mut self.rows[last]
            }
        };
        // A row that finished and starts again (stopped, then removed) times its new step.
        if row.last_ms.is_some() && !finished(&p.status) {
            row.first_ms = p.elapsed_ms;
        }
        row.status = p.status.clone();
        row.detail = p.detail.clone();
        row.last_ms = finished(&p.status).then_some(p.elapsed_ms);
        self.draw(None)
    }

    /// The view's lines.
    fn lines(&self) -> Vec<String> {
        let now = self.now_ms();
        let done = self
            .rows
            .iter()
            .filter(|r| finished(&r.status) && r.status != "Error")
            .count();
        let mut lines = vec![format!("[+] Running {done}/{}", self.rows.len())];
        let width = self
            .rows
            .iter()
            .map(|r| label(r).chars().count())
            .max()
            .unwrap_or(0);
        for r in &self.rows {
            let mark = match (r.status.as_str(), r.last_ms) {
                ("Error", _) => "✘",
                (_, Some(_)) => "✔",
                _ => SPINNER[self.frame % SPINNER.len()],
            };
            let ms = r.last_ms.unwrap_or(now).saturating_sub(r.first_ms);
            let name = label(r);
            let pad = " ".repeat(width - name.chars().count());
            let mut line = format!(" {mark} {name}{pad}  {}", r.status);
            match (&r.detail, r.status.as_str(), r.last_ms) {
                (Some(d), "Error", _) => line.push_str(&format!(": {d}")),
                // Work under way says how far it is (pull bytes, a wait's condition).
                (Some(d), _, None) => line.push_str(&format!(" {d}")),
                _ => {}
            }
            line.push_str(&format!("  {:.1}s", ms as f64 / 1000.0));
            lines.push(line);
        }
        lines
    }

    /// Redraws the view in place, `above` printed first (above it).
    fn draw(&mut self, above: Option<String>) -> std::io::Result<()> {
        let mut text = String::new();
        if self.drawn > 0 {
            // Back to the view's first line, and everything below it cleared.
            text.push_str(&format!("\x1b[{}A\r\x1b[J", self.drawn));
        }
        if let Some(a) = above {
            text.push_str(&a);
        }
        let lines = if self.rows.is_empty() {
            Vec::new()
        } else {
            self.lines()
        };
        for l in &lines {
            text.push_str(l);
            text.push('\n');
        }
        self.drawn = lines.len();
        write_out(&text)
    }
}

fn label(r: &Row) -> String {
    let kind = match r.kind.as_str() {
        "network" => "Network",
        "volume" => "Volume",
        "image" => "Image",
        "service" => "Service",
        _ => "Container",
    };
    format!("{kind} {}", r.name)
}

fn write_out(text: &str) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|_| o.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, name: &str, status: &str, ms: u64) -> ProjectProgress {
        ProjectProgress {
            kind: kind.into(),
            name: name.into(),
            service: None,
            status: status.into(),
            detail: None,
            elapsed_ms: ms,
        }
    }

    #[test]
    fn the_tty_view_keeps_one_row_per_object() {
        let mut r = Renderer::new(Some(Mode::Tty), false);
        for e in [
            ev("network", "p_default", "Creating", 0),
            ev("network", "p_default", "Created", 100),
            ev("container", "p-web-1", "Creating", 100),
            ev("container", "p-web-1", "Started", 1600),
            ev("container", "p-db-1", "Creating", 200),
        ] {
            r.tty_event(&e).unwrap();
        }
        let lines = r.lines();
        assert_eq!(lines[0], "[+] Running 2/3");
        assert_eq!(lines[1], " ✔ Network p_default  Created  0.1s");
        assert_eq!(lines[2], " ✔ Container p-web-1  Started  1.5s");
        assert!(
            lines[3].contains("Container p-db-1   Creating"),
            "{lines:?}"
        );
        assert_eq!(r.drawn, 4);
    }
}
