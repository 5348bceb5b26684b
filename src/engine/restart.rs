//! Restart policies (reconciler issue, item 4), enforced by the daemon whenever a container
//! exits, not only during `up`: `no`, `always`, `on-failure[:max]`, `unless-stopped`, and
//! Compose's `deploy.restart_policy` (condition, delay, max_attempts, window).
//!
//! Docker's rules: the delay before a restart starts at 100 ms and doubles with each restart up
//! to a cap (1 minute), and goes back to 100 ms once the container ran 10 s (or the policy's
//! `window`); a container the user stopped (`stop`, `kill`) stays stopped until the user starts
//! it again; `on-failure` restarts only a non-zero exit and at most `max` times; after a daemon
//! restart, containers that exited while no daemon watched are judged by the same rules.
//!
//! The policy and its counters live in `<state dir>/restart.json`, written at create and after
//! each decision, so they survive the daemon.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runtime::state;
use crate::spec::model;
use crate::spec::units::parse_duration;

/// The file holding a container's policy and counters.
pub const FILE: &str = "restart.json";
/// The first delay, doubled with each restart.
pub const INITIAL_DELAY: Duration = Duration::from_millis(100);
/// The longest delay between two restarts.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run this long resets the delay (and, for `window`, the attempts).
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// When a container is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    #[default]
    No,
    Always,
    OnFailure,
    UnlessStopped,
}

/// A restart policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Policy {
    pub condition: Condition,
    /// At most this many restarts (`on-failure:N`, `max_attempts`); none: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// A fixed delay before each restart (`deploy.restart_policy.delay`) instead of the
    /// doubling back-off.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_millis")]
    pub delay: Option<Duration>,
    /// A run at least this long counts as a success: attempts and back-off start over.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_millis")]
    pub window: Option<Duration>,
}

mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

impl Policy {
    /// Docker's `--restart` syntax: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let (name, max) = match text.split_once(':') {
            Some((name, max)) => (name, Some(max)),
            None => (text, None),
        };
        let condition = match name {
            "no" | "" => Condition::No,
            "always" => Condition::Always,
            "on-failure" => Condition::OnFailure,
            "unless-stopped" => Condition::UnlessStopped,
            other => {
                return Err(format!(
                    "unknown restart policy {other:?} (expected no, always, on-failure[:max] \
                     or unless-stopped)"
                ));
            }
        };
        let max_attempts = match max {
            None => None,
            Some(_) if condition != Condition::OnFailure => {
                return Err(format!(
                    "restart policy {text:?}: only on-failure takes a maximum retry count"
                ));
            }
            Some(n) => Some(n.parse::<u32>().map_err(|_| {
                format!("restart policy {text:?}: the maximum retry count must be a number")
            })?),
        };
        Ok(Policy {
            condition,
            max_attempts,
            ..Policy::default()
        })
    }

    /// A service's policy: `restart:` when set, else `deploy.restart_policy`. Errors name the
    /// field.
    pub fn of_service(service: &model::Service) -> Result<Policy, String> {
        if let Some(text) = &service.restart {
            return Policy::parse(text).map_err(|e| format!("restart: {e}"));
        }
        let Some(rp) = service
            .deploy
            .as_ref()
            .and_then(|d| d.restart_policy.as_ref())
        else {
            return Ok(Policy::default());
        };
        let condition = match rp.condition.as_deref() {
            // Compose's default condition is `any`.
            None | Some("any") => Condition::Always,
            Some("on-failure") => Condition::OnFailure,
            Some("none") => Condition::No,
            Some(other) => {
                return Err(format!(
                    "deploy.restart_policy.condition: unknown condition {other:?} (expected \
                     none, on-failure or any)"
                ));
            }
        };
        let duration = |field: &str, text: &Option<String>| match text {
            Some(t) => parse_duration(t)
                .map(Some)
                .map_err(|e| format!("deploy.restart_policy.{field}: {e}")),
            None => Ok(None),
        };
        let max_attempts =
            match rp.max_attempts {
                Some(n) => Some(u32::try_from(n).map_err(|_| {
                    format!("deploy.restart_policy.max_attempts: {n} is out of range")
                })?),
                None => None,
            };
        Ok(Policy {
            condition,
            max_attempts,
            delay: duration("delay", &rp.delay)?,
            window: duration("window", &rp.window)?,
        })
    }
}

/// A container's policy and counters (`restart.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub policy: Policy,
    /// Restarts made by the policy since the user last started it.
    #[serde(default)]
    pub count: u32,
    /// The delay before the next restart.
    #[serde(default, with = "opt_millis", skip_serializing_if = "Option::is_none")]
    pub next_delay: Option<Duration>,
    /// The user stopped or killed it: no restart until the user starts it.
    #[serde(default)]
    pub manually_stopped: bool,
}

/// What to do after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Leave it exited.
    Stay,
    /// Start it again after this delay.
    Restart(Duration),
}

impl Record {
    /// Decides about an exit with `exit_code` after a run of `ran`, and counts the restart.
    pub fn decide(&mut self, exit_code: i32, ran: Duration) -> Decision {
        let p = &self.policy;
        if self.manually_stopped {
            return Decision::Stay;
        }
        let wanted = match p.condition {
            Condition::No => false,
            Condition::Always | Condition::UnlessStopped => true,
            Condition::OnFailure => exit_code != 0,
        };
        if !wanted {
            return Decision::Stay;
        }
        // A long enough run counts as a success: back-off (and attempts, with a window) reset.
        let reset_after = p.window.unwrap_or(RESET_AFTER);
        if ran >= reset_after {
            self.next_delay = None;
            if p.window.is_some() {
                self.count = 0;
            }
        }
        if let Some(max) = p.max_attempts
            && self.count >= max
        {
            return Decision::Stay;
        }
        let delay = match p.delay {
            Some(d) => d,
            None => self.next_delay.unwrap_or(INITIAL_DELAY),
        };
        self.next_delay = Some((delay * 2).min(MAX_DELAY));
        self.count = self.count.saturating_add(1);
        Decision::Restart(delay)
    }

    /// The user started it: counters start over.
    pub fn started_by_user(&mut self) {
        self.count = 0;
        self.next_delay = None;
        self.manually_stopped = false;
    }
}

/// The record of the container of state dir `dir` (none: no policy).
pub fn read(dir: &Path) -> Option<Record> {
    let text = std::fs::read(dir.join(FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Writes the record of the container of state dir `dir`.
pub fn write(dir: &Path, record: &Record) -> std::io::Result<()> {
    let data = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    state::write_atomic(&dir.join(FILE), &data)
}

/// Changes the record of `dir` when there is one. A change that changes nothing writes nothing
/// (every start of a fresh container would otherwise rewrite and sync the same record).
pub fn update(dir: &Path, f: impl FnOnce(&mut Record)) -> std::io::Result<()> {
    let Some(mut record) = read(dir) else {
        return Ok(());
    };
    let before = record.clone();
    f(&mut record);
    if record == before {
        return Ok(());
    }
    write(dir, &record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_that_changes_nothing_writes_nothing() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &Record::default()).unwrap();
        let ino = |d: &Path| std::fs::metadata(d.join(FILE)).unwrap().ino();
        let first = ino(dir.path());
        update(dir.path(), Record::started_by_user).unwrap();
        assert_eq!(ino(dir.path()), first, "rewritten without a change");
        update(dir.path(), |r| r.manually_stopped = true).unwrap();
        assert_ne!(
            ino(dir.path()),
            first,
            "a change is written (atomically: a new file)"
        );
        assert!(read(dir.path()).unwrap().manually_stopped);
        update(dir.path(), Record::started_by_user).unwrap();
        assert!(!read(dir.path()).unwrap().manually_stopped);
    }

    #[test]
    fn dockers_syntax() {
        assert_eq!(Policy::parse("no").unwrap().condition, Condition::No);
        assert_eq!(
            Policy::parse("always").unwrap().condition,
            Condition::Always
        );
        assert_eq!(
            Policy::parse("unless-stopped").unwrap().condition,
            Condition::UnlessStopped
        );
        let p = Policy::parse("on-failure:3").unwrap();
        assert_eq!(
            (p.condition, p.max_attempts),
            (Condition::OnFailure, Some(3))
        );
        assert_eq!(Policy::parse("on-failure").unwrap().max_attempts, None);
        assert!(
            Policy::parse("sometimes")
                .unwrap_err()
                .contains("unknown restart policy")
        );
        assert!(
            Policy::parse("always:3")
                .unwrap_err()
                .contains("only on-failure")
        );
        assert!(
            Policy::parse("on-failure:x")
                .unwrap_err()
                .contains("must be a number")
        );
    }

    #[test]
    fn deploy_restart_policy_when_restart_is_unset() {
        let service =
            |json: serde_json::Value| -> model::Service { serde_json::from_value(json).unwrap() };
        let s = service(serde_json::json!({"deploy": {"restart_policy": {
            "condition": "on-failure", "max_attempts": 2, "delay": "1s", "window": "30s"}}}));
        let p = Policy::of_service(&s).unwrap();
        assert_eq!(p.condition, Condition::OnFailure);
        assert_eq!(p.max_attempts, Some(2));
        assert_eq!(p.delay, Some(Duration::from_secs(1)));
        assert_eq!(p.window, Some(Duration::from_secs(30)));
        let s = service(serde_json::json!({"restart": "always",
            "deploy": {"restart_policy": {"condition": "none"}}}));
        assert_eq!(Policy::of_service(&s).unwrap().condition, Condition::Always);
        let s = service(serde_json::json!({"deploy": {"restart_policy": {}}}));
        assert_eq!(Policy::of_service(&s).unwrap().condition, Condition::Always);
        let s = service(serde_json::json!({"deploy": {"restart_policy": {"condition": "x"}}}));
        assert!(
            Policy::of_service(&s)
                .unwrap_err()
                .starts_with("deploy.restart_policy.condition")
        );
        let s = service(serde_json::json!({"restart": "bogus"}));
        assert!(Policy::of_service(&s).unwrap_err().starts_with("restart: "));
    }

    fn record(text: &str) -> Record {
        Record {
            policy: Policy::parse(text).unwrap(),
            ..Record::default()
        }
    }

    #[test]
    fn on_failure_counts_and_stops_at_its_maximum() {
        let mut r = record("on-failure:3");
        let short = Duration::from_millis(5);
        assert_eq!(r.decide(0, short), Decision::Stay);
        assert_eq!(
            r.decide(1, short),
            Decision::Restart(Duration::from_millis(100))
        );
        assert_eq!(
            r.decide(1, short),
            Decision::Restart(Duration::from_millis(200))
        );
        assert_eq!(
            r.decide(1, short),
            Decision::Restart(Duration::from_millis(400))
        );
        assert_eq!(r.decide(1, short), Decision::Stay);
        assert_eq!(r.count, 3);
    }

    #[test]
    fn back_off_doubles_to_a_cap_and_resets_after_a_long_run() {
        let mut r = record("always");
        let short = Duration::from_millis(5);
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            match r.decide(0, short) {
                Decision::Restart(d) => last = d,
                Decision::Stay => panic!("always stays"),
            }
        }
        assert_eq!(last, MAX_DELAY);
        assert_eq!(r.decide(0, RESET_AFTER), Decision::Restart(INITIAL_DELAY));
    }

    #[test]
    fn a_user_stop_wins_and_a_user_start_starts_over() {
        let mut r = record("always");
        r.decide(0, Duration::ZERO);
        r.manually_stopped = true;
        assert_eq!(r.decide(0, Duration::ZERO), Decision::Stay);
        r.started_by_user();
        assert_eq!((r.count, r.manually_stopped), (0, false));
        assert_eq!(
            r.decide(0, Duration::ZERO),
            Decision::Restart(INITIAL_DELAY)
        );
        let mut r = record("no");
        assert_eq!(r.decide(1, Duration::ZERO), Decision::Stay);
    }

    #[test]
    fn a_fixed_delay_and_a_window() {
        let mut r = Record {
            policy: Policy {
                condition: Condition::OnFailure,
                max_attempts: Some(1),
                delay: Some(Duration::from_millis(700)),
                window: Some(Duration::from_secs(2)),
            },
            ..Record::default()
        };
        let d = Decision::Restart(Duration::from_millis(700));
        assert_eq!(r.decide(1, Duration::ZERO), d);
        assert_eq!(r.decide(1, Duration::ZERO), Decision::Stay);
        // A run as long as the window was a success: attempts start over.
        assert_eq!(r.decide(1, Duration::from_secs(2)), d);
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), r);
    }
}
