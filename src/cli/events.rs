//! `flotilla events`: the daemon's events, live, or replayed from `--since` (RFC 3339, Unix
//! seconds, or a duration ago such as `10m`, `1h30m`) up to `--until`; `--filter key=value`
//! (type, event, container, image, volume, network, id, name; repeatable: values of one key
//! combine with "or", keys with "and"); `--format json` prints one JSON object per line.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;

use super::system::{Format, HostArgs, engine_client};
use super::{EngineArgs, out};
use crate::api::client::{EventsQuery, block_on};
use crate::api::types::Event;
use crate::engine::events::EventFilter;

#[derive(Args, Debug, Clone, Default)]
pub struct EventsArgs {
    /// Show events from this time: RFC 3339, Unix seconds, or a duration ago (`10m`, `1h30m`)
    #[arg(long)]
    pub since: Option<String>,
    /// Stop at this time (same forms); a past time only replays
    #[arg(long)]
    pub until: Option<String>,
    /// `key=value`: type, event, container, image, volume, network, id, name (repeatable)
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// A duration as `10s`, `5m`, `1h30m`, `2d` (units s, m, h, d; `ms` too).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let secs = match &rest[..unit] {
            "ms" => {
                total += Duration::from_millis(n);
                rest = &rest[unit..];
                continue;
            }
            "s" => n,
            "m" => n.checked_mul(60)?,
            "h" => n.checked_mul(3600)?,
            "d" => n.checked_mul(86_400)?,
            _ => return None,
        };
        total = total.checked_add(Duration::from_secs(secs))?;
        rest = &rest[unit..];
    }
    Some(total)
}

/// `--since`/`--until` as the API takes them: a duration ago becomes Unix seconds.
fn api_time(flag: &str, text: &str, now: SystemTime) -> Result<String, String> {
    if crate::runtime::time::parse(text).is_some() {
        return Ok(text.to_string());
    }
    let ago = parse_duration(text).ok_or_else(|| {
        format!("--{flag} {text:?}: expected RFC 3339, Unix seconds or a duration like 10m")
    })?;
    let t = now.checked_sub(ago).unwrap_or(UNIX_EPOCH);
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Ok(format!("{}.{:03}", d.as_secs(), d.subsec_millis()))
}

fn filters(args: &[String]) -> Result<EventFilter, String> {
    let mut f = EventFilter::default();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("--filter {a:?}: expected key=value"))?;
        f.add(k, v).map_err(|e| format!("--filter {a:?}: {e}"))?;
    }
    Ok(f)
}

/// One event as text: time, kind, action, id, then (attributes, name).
pub fn render(e: &Event) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(e.time);
    let mut attrs: Vec<String> = e
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !e.name.is_empty() {
        attrs.push(format!("name={}", e.name));
    }
    let mut line = format!(
        "{} {} {} {}",
        crate::runtime::time::format(t),
        e.kind,
        e.action,
        e.id
    );
    if !attrs.is_empty() {
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line.push('\n');
    line
}

pub fn run(engine: &EngineArgs, hosts: &HostArgs, args: &EventsArgs) -> Result<(), String> {
    let now = SystemTime::now();
    let query = EventsQuery {
        since: args
            .since
            .as_deref()
            .map(|s| api_time("since", s, now))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|s| api_time("until", s, now))
            .transpose()?,
        filters: filters(&args.filters)?,
    };
    let client = engine_client(engine, hosts)?;
    block_on(async {
        let mut stream = client
            .events_with(&query)
            .await
            .map_err(|e| format!("events: {e}"))?;
        while let Some(event) = stream.next().await {
            let event = event.map_err(|e| format!("events: {e}"))?;
            let text = match args.format {
                Format::Json => {
                    let mut t = serde_json::to_string(&event).map_err(|e| e.to_string())?;
                    t.push('\n');
                    t
                }
                Format::Text => render(&event),
            };
            out(&text).map_err(|e| format!("events: write: {e}"))?;
        }
        Ok(())
    })
    .map_err(|e| format!("start a runtime: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("m"), None);
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(api_time("since", "10s", now).unwrap(), "990.000");
        assert_eq!(
            api_time("since", "2024-05-01T12:34:56Z", now).unwrap(),
            "2024-05-01T12:34:56Z"
        );
        assert!(api_time("since", "soon", now).is_err());
    }

    #[test]
    fn filters_and_rendering() {
        let f = filters(&["type=container".into(), "event=die".into()]).unwrap();
        assert_eq!(f.0.len(), 2);
        assert!(filters(&["bogus".into()]).is_err());
        assert!(filters(&["colour=red".into()]).is_err());
        let mut e = Event::now("container", "die", "abc", "web").with("exitCode", 3);
        e.time = 1_714_566_896_500;
        assert_eq!(
            render(&e),
            "2024-05-01T12:34:56.500000000Z container die abc (exitCode=3, name=web)\n"
        );
    }
}
