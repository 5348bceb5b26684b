//! The small value syntaxes inside a stack file that are not YAML: durations (Go's
//! `time.ParseDuration` and `Duration.String()`), byte sizes (Docker's `RAMInBytes`), shell-like
//! word splitting of string commands, the short syntax of `ports` and `volumes`, and project
//! names. Every function is pure; errors are lower-case messages meant to follow a location.

use std::net::IpAddr;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------

const DURATION_UNITS: &str = "use ns, us, ms, s, m, h";

/// Nanoseconds per duration unit, as Go's `time.ParseDuration` spells them.
fn duration_unit(u: &str) -> Option<u128> {
    Some(match u {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parses a duration in Go syntax: a sequence of decimal numbers, each with an optional
/// fraction and a required unit (`1m30s`, `1.5s`, `300us`, `2h`). A bare `0` is zero; any other
/// number without a unit, and negative durations, are refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = |why: &str| format!("invalid duration {s:?}: {why}");
    let mut rest = s;
    if rest.starts_with('-') {
        return Err(err("negative durations are not allowed"));
    }
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err("expected a number with a unit (e.g. 1m30s)"));
    }
    // Go keeps durations in a signed 64-bit count of nanoseconds.
    let max = i64::MAX as u128;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let bytes = rest.as_bytes();
        let mut i = 0;
        let mut whole: u128 = 0;
        let mut digits = 0;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            whole = whole * 10 + u128::from(bytes[i] - b'0');
            if whole > max {
                return Err(err("value out of range"));
            }
            i += 1;
            digits += 1;
        }
        let mut frac: u128 = 0;
        let mut scale: u128 = 1;
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                // Digits beyond this precision cannot change the nanosecond count.
                if scale < 100_000_000_000_000_000_000 {
                    frac = frac * 10 + u128::from(bytes[i] - b'0');
                    scale *= 10;
                }
                i += 1;
                digits += 1;
            }
        }
        if digits == 0 {
            return Err(err("expected a number with a unit (e.g. 1m30s)"));
        }
        let unit_end = rest[i..]
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |p| p + i);
        let unit = &rest[i..unit_end];
        if unit.is_empty() {
            return Err(err(&format!("missing unit ({DURATION_UNITS})")));
        }
        let Some(mult) = duration_unit(unit) else {
            return Err(err(&format!("unknown unit {unit:?} ({DURATION_UNITS})")));
        };
        total += whole * mult + frac * mult / scale;
        if total > max {
            return Err(err("value out of range"));
        }
        rest = &rest[unit_end..];
    }
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Writes `v / 10^prec` with the fraction's trailing zeros (and a bare dot) removed.
fn push_fixed(out: &mut String, v: u128, prec: u32) {
    let div = 10u128.pow(prec);
    out.push_str(&(v / div).to_string());
    let frac = v % div;
    if frac != 0 {
        let digits = format!("{frac:0width$}", width = prec as usize);
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// Formats a duration exactly like Go's `time.Duration.String()`: `0s`, `500ns`, `1.5µs`,
/// `10ms`, `1.5s`, `1m30s`, `1h0m0s`.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let mut out = String::new();
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < 1_000_000_000 {
        if ns < 1_000 {
            out.push_str(&ns.to_string());
            out.push_str("ns");
        } else if ns < 1_000_000 {
            push_fixed(&mut out, ns, 3);
            out.push_str("\u{b5}s");
        } else {
            push_fixed(&mut out, ns, 6);
            out.push_str("ms");
        }
        return out;
    }
    let secs = ns / 1_000_000_000;
    let sub = ns % 1_000_000_000;
    let h = secs / 3600;
    let m = (secs / 60) % 60;
    let s = secs % 60;
    if h > 0 {
        out.push_str(&format!("{h}h{m}m"));
    } else if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    push_fixed(&mut out, s * 1_000_000_000 + sub, 9);
    out.push('s');
    out
}

// ---------------------------------------------------------------------------------------------
// Byte sizes
// ---------------------------------------------------------------------------------------------

const SIZE_UNITS: &str = "use b, k, m, g, t, p";

/// Parses a size like Docker's `units.RAMInBytes`: a decimal number (fraction allowed), an
/// optional space, then an optional case-insensitive unit `k`, `m`, `g`, `t`, `p` (binary
/// multiples of 1024) optionally followed by `i` and/or `b` (`512m`, `1.5g`, `1gb`, `1GiB`,
/// `2048`, `100 KB`). The result is truncated to whole bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let err = |why: String| format!("invalid size {s:?}: {why}");
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == 0 {
        return Err(err(format!(
            "expected a number with an optional unit ({SIZE_UNITS})"
        )));
    }
    if i < b.len() && b[i] == b'.' {
        let start = i + 1;
        let mut j = start;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j == start {
            return Err(err(format!(
                "expected a number with an optional unit ({SIZE_UNITS})"
            )));
        }
        i = j;
    }
    let number = &s[..i];
    let mut suffix = &s[i..];
    if let Some(r) = suffix.strip_prefix(' ') {
        suffix = r;
    }
    let lower = suffix.to_ascii_lowercase();
    let mut rest = lower.as_str();
    let mut mult: f64 = 1.0;
    if let Some(c) = rest.chars().next() {
        let power = match c {
            'k' => Some(1),
            'm' => Some(2),
            'g' => Some(3),
            't' => Some(4),
            'p' => Some(5),
            _ => None,
        };
        if let Some(p) = power {
            mult = 1024f64.powi(p);
            rest = &rest[1..];
        }
    }
    if let Some(r) = rest.strip_prefix('i') {
        rest = r;
    }
    if let Some(r) = rest.strip_prefix('b') {
        rest = r;
    }
    if !rest.is_empty() {
        return Err(err(format!("unknown unit {suffix:?} ({SIZE_UNITS})")));
    }
    let value: f64 = number.parse().map_err(|_| {
        err(format!(
            "expected a number with an optional unit ({SIZE_UNITS})"
        ))
    })?;
    let bytes = value * mult;
    if !bytes.is_finite() || bytes >= 9_223_372_036_854_775_808.0 {
        return Err(err("value out of range".to_string()));
    }
    Ok(bytes as u64)
}

// ---------------------------------------------------------------------------------------------
// Shell-like word splitting
// ---------------------------------------------------------------------------------------------

/// Splits a string command into words the way a POSIX shell would, without any expansion:
/// unquoted whitespace separates words; single quotes keep everything literally; inside double
/// quotes a backslash escapes only `"`, `\`, `$`, `` ` `` and a newline; outside quotes a
/// backslash escapes any character (backslash-newline joins lines). `""` makes an empty word.
/// Operators such as `;` or `|` are ordinary characters.
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let err = |why: &str| format!("invalid command {s:?}: {why}");
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word has started (so `""` yields an empty word).
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(n) => {
                    word.push(n);
                    in_word = true;
                }
                None => return Err(err("trailing backslash")),
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => word.push(n),
                        None => return Err(err("unterminated single quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => word.push(n),
                            Some('\n') => {}
                            Some(n) => {
                                word.push('\\');
                                word.push(n);
                            }
                            None => return Err(err("unterminated double quote")),
                        },
                        Some(n) => word.push(n),
                        None => return Err(err("unterminated double quote")),
                    }
                }
            }
            _ => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// One entry of the long `ports` syntax, produced from the short syntax.
#[derive(Debug, Clone, PartialEq)]
pub struct PortSpec {
    /// The container port.
    pub target: u32,
    /// The host port or host port range (`"8080"`, `"9090-9091"`); `None` lets the engine pick.
    pub published: Option<String>,
    /// The host address to bind, without brackets for IPv6.
    pub host_ip: Option<String>,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Always `ingress` for the short syntax.
    pub mode: String,
}

/// A port or an inclusive port range.
fn parse_port_range(text: &str, min: u32, whole: &str) -> Result<(u32, u32), String> {
    let err = |why: String| format!("invalid port {whole:?}: {why}");
    let one = |p: &str| -> Result<u32, String> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(format!("{text:?} is not a port number or range")));
        }
        match p.parse::<u32>() {
            Ok(n) if (min..=65535).contains(&n) => Ok(n),
            _ => Err(err(format!("port {p} is out of range ({min}-65535)"))),
        }
    };
    match text.split_once('-') {
        None => {
            let p = one(text)?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                return Err(err(format!("range {text} ends before it starts")));
            }
            Ok((a, b))
        }
    }
}

/// Parses the short `ports` syntax (`[[host_ip:]published:]target[/protocol]`, ports or
/// ranges) into long-syntax entries, one per container port: `"8080-8081:80-81"` gives two
/// entries, `"9090-9091:8080"` one entry publishing the range, `"3000-3005"` six entries.
pub fn parse_port(s: &str) -> Result<Vec<PortSpec>, String> {
    let err = |why: String| format!("invalid port {s:?}: {why}");
    if s.trim().is_empty() {
        return Err("invalid port \"\": empty port specification".to_string());
    }
    let (addr, protocol) = match s.split_once('/') {
        None => (s, "tcp".to_string()),
        Some((a, p)) => {
            let p = p.to_ascii_lowercase();
            if !matches!(p.as_str(), "tcp" | "udp" | "sctp") {
                return Err(err(format!("unknown protocol {p:?} (use tcp, udp, sctp)")));
            }
            (a, p)
        }
    };
    let parts: Vec<&str> = addr.split(':').collect();
    let n = parts.len();
    let target_text = parts[n - 1];
    let (ip, published) = match n {
        1 => ("".to_string(), ""),
        2 => ("".to_string(), parts[0]),
        _ => (parts[..n - 2].join(":"), parts[n - 2]),
    };
    let host_ip = if ip.is_empty() {
        None
    } else {
        let bare = match ip.strip_prefix('[') {
            Some(r) => match r.strip_suffix(']') {
                Some(b) => b,
                None => return Err(err(format!("invalid host address {ip:?}"))),
            },
            None => ip.as_str(),
        };
        if bare.parse::<IpAddr>().is_err() {
            return Err(err(format!("invalid host address {ip:?}")));
        }
        Some(bare.to_string())
    };
    if target_text.is_empty() {
        return Err(err("missing container port".to_string()));
    }
    let (t0, t1) = parse_port_range(target_text, 1, s)?;
    let host = if published.is_empty() {
        None
    } else {
        Some(parse_port_range(published, 0, s)?)
    };
    if let Some((h0, h1)) = host
        && t1 != t0
        && h1 - h0 != t1 - t0
    {
        return Err(err(format!(
            "host range {published} and container range {target_text} differ in size"
        )));
    }
    let mut out = Vec::new();
    for (i, target) in (t0..=t1).enumerate() {
        let published = host.map(|(h0, h1)| {
            if t0 == t1 && h0 != h1 {
                format!("{h0}-{h1}")
            } else {
                (h0 + i as u32).to_string()
            }
        });
        out.push(PortSpec {
            target,
            published,
            host_ip: host_ip.clone(),
            protocol: protocol.clone(),
            mode: "ingress".to_string(),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Volumes
// ---------------------------------------------------------------------------------------------

/// One entry of the long `volumes` syntax of a service, produced from the short syntax.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeSpec {
    /// `bind` or `volume`.
    pub kind: String,
    /// The host path or volume name; `None` for an anonymous volume.
    pub source: Option<String>,
    /// The absolute path inside the container.
    pub target: String,
    pub read_only: bool,
    /// Bind mounts of the short syntax create a missing host path, as Compose does.
    pub create_host_path: bool,
    /// `z` or `Z`.
    pub selinux: Option<String>,
    /// `shared`, `slave`, `private`, `rshared`, `rslave` or `rprivate`.
    pub propagation: Option<String>,
    pub nocopy: bool,
}

const VOLUME_MODES: &str =
    "use ro, rw, z, Z, nocopy, shared, slave, private, rshared, rslave, rprivate";

/// Whether a short-syntax volume source names a host path rather than a named volume.
fn is_host_path(source: &str) -> bool {
    source.starts_with(['.', '/', '~'])
}

/// Parses the short `volumes` syntax of a service: `target`, `source:target` or
/// `source:target:mode[,mode…]`. A source starting with `.`, `/` or `~` is a bind mount,
/// anything else a named volume. The macOS consistency modes (`consistent`, `cached`,
/// `delegated`) are accepted and ignored.
pub fn parse_volume(s: &str) -> Result<VolumeSpec, String> {
    let err = |why: String| format!("invalid volume {s:?}: {why}");
    if s.is_empty() {
        return Err("invalid volume \"\": empty volume specification".to_string());
    }
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() > 3 {
        return Err(err("too many colons".to_string()));
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err("empty section between colons".to_string()));
    }
    let (source, target, modes) = match parts.as_slice() {
        [t] => (None, *t, None),
        [src, t] => (Some(*src), *t, None),
        [src, t, m] => (Some(*src), *t, Some(*m)),
        _ => return Err(err("too many colons".to_string())),
    };
    if !target.starts_with('/') {
        return Err(err(format!("target {target:?} must be an absolute path")));
    }
    let bind = source.is_some_and(is_host_path);
    let mut v = VolumeSpec {
        kind: if bind { "bind" } else { "volume" }.to_string(),
        source: source.map(str::to_string),
        target: target.to_string(),
        read_only: false,
        create_host_path: bind,
        selinux: None,
        propagation: None,
        nocopy: false,
    };
    if let Some(modes) = modes {
        for m in modes.split(',') {
            match m {
                "ro" => v.read_only = true,
                "rw" => v.read_only = false,
                "z" | "Z" => v.selinux = Some(m.to_string()),
                "nocopy" => v.nocopy = true,
                "shared" | "slave" | "private" | "rshared" | "rslave" | "rprivate" => {
                    v.propagation = Some(m.to_string());
                }
                "consistent" | "cached" | "delegated" => {}
                _ => return Err(err(format!("unknown mode {m:?} ({VOLUME_MODES})"))),
            }
        }
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Project names
// ---------------------------------------------------------------------------------------------

/// Turns any text (typically a directory name) into a valid project name the way Compose does:
/// lower-case it, drop every character outside `[a-z0-9_-]`, then drop leading `_` and `-`.
/// The result may be empty.
pub fn normalize_project_name(s: &str) -> String {
    let kept: String = s
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

/// Checks an explicitly given project name (`-p`, `name:`) against `^[a-z0-9][a-z0-9_-]*$`.
pub fn check_project_name(s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "invalid project name {s:?}: it must contain only lower-case letters, digits, dashes \
             and underscores, and start with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(d("1m30s"), Duration::from_secs(90));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("10ms"), Duration::from_millis(10));
        assert_eq!(d("300us"), Duration::from_micros(300));
        assert_eq!(d("300µs"), Duration::from_micros(300));
        assert_eq!(d("300μs"), Duration::from_micros(300));
        assert_eq!(d("7ns"), Duration::from_nanos(7));
        assert_eq!(d("2h"), Duration::from_secs(7200));
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(d("+0"), Duration::ZERO);
        assert_eq!(d("0s"), Duration::ZERO);
        assert_eq!(d("1h2m3.5s"), Duration::from_millis(3_723_500));
        assert_eq!(d(".5s"), Duration::from_millis(500));
        assert_eq!(d("5.s"), Duration::from_secs(5));
        assert_eq!(d("1.000000001s"), Duration::new(1, 1));
        assert_eq!(d("1.0000000019s"), Duration::new(1, 1));
        assert_eq!(d("2562047h"), Duration::from_secs(2_562_047 * 3600));
    }

    #[test]
    fn bad_durations() {
        assert_eq!(
            parse_duration("1x").unwrap_err(),
            r#"invalid duration "1x": unknown unit "x" (use ns, us, ms, s, m, h)"#
        );
        assert_eq!(
            parse_duration("10").unwrap_err(),
            r#"invalid duration "10": missing unit (use ns, us, ms, s, m, h)"#
        );
        assert_eq!(
            parse_duration("-1s").unwrap_err(),
            r#"invalid duration "-1s": negative durations are not allowed"#
        );
        for bad in [
            "", "s", ".s", "1s2", "1.5", "1 s", "1S", "3000000h", "1.2.3s", "+",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn durations_format_like_go() {
        let f = format_duration;
        assert_eq!(f(Duration::ZERO), "0s");
        assert_eq!(f(Duration::from_nanos(1)), "1ns");
        assert_eq!(f(Duration::from_nanos(999)), "999ns");
        assert_eq!(f(Duration::from_micros(2)), "2µs");
        assert_eq!(f(Duration::from_nanos(1500)), "1.5µs");
        assert_eq!(f(Duration::from_millis(500)), "500ms");
        assert_eq!(f(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(f(Duration::from_secs(1)), "1s");
        assert_eq!(f(Duration::from_millis(1500)), "1.5s");
        assert_eq!(f(Duration::from_secs(90)), "1m30s");
        assert_eq!(f(Duration::from_secs(60)), "1m0s");
        assert_eq!(f(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(f(Duration::from_millis(3_723_500)), "1h2m3.5s");
        assert_eq!(f(Duration::new(1, 1)), "1.000000001s");
        assert_eq!(f(Duration::from_secs(100 * 3600)), "100h0m0s");
    }

    #[test]
    fn durations_round_trip() {
        for s in [
            "1m30s",
            "1.5s",
            "500ms",
            "1h0m0s",
            "2µs",
            "1.000000001s",
            "0s",
            "3ns",
        ] {
            assert_eq!(format_duration(d(s)), s);
        }
    }

    #[test]
    fn sizes_parse_like_ram_in_bytes() {
        let b = |s: &str| parse_bytes(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(b("2048"), 2048);
        assert_eq!(b("0"), 0);
        assert_eq!(b("100k"), 100 * 1024);
        assert_eq!(b("512m"), 512 * 1024 * 1024);
        assert_eq!(b("512M"), 512 * 1024 * 1024);
        assert_eq!(b("1g"), 1 << 30);
        assert_eq!(b("1gb"), 1 << 30);
        assert_eq!(b("1GB"), 1 << 30);
        assert_eq!(b("1GiB"), 1 << 30);
        assert_eq!(b("1gi"), 1 << 30);
        assert_eq!(b("1.5g"), 1_610_612_736);
        assert_eq!(b("2t"), 2 << 40);
        assert_eq!(b("1p"), 1 << 50);
        assert_eq!(b("10b"), 10);
        assert_eq!(b("100 KB"), 102_400);
        assert_eq!(b("0.5k"), 512);
        assert_eq!(b("1.7"), 1);
    }

    #[test]
    fn bad_sizes() {
        assert_eq!(
            parse_bytes("abc").unwrap_err(),
            r#"invalid size "abc": expected a number with an optional unit (use b, k, m, g, t, p)"#
        );
        assert_eq!(
            parse_bytes("1x").unwrap_err(),
            r#"invalid size "1x": unknown unit "x" (use b, k, m, g, t, p)"#
        );
        for bad in [
            "", "-1m", "1x", "1kk", "1.m", "m", "1bb", "1  m", " 1m", "99999p",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} should fail");
        }
    }

    fn words(s: &str) -> Vec<String> {
        shell_split(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn shell_words() {
        assert_eq!(words("echo hello world"), ["echo", "hello", "world"]);
        assert_eq!(words("  a \t b\n c  "), ["a", "b", "c"]);
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(words("   "), Vec::<String>::new());
        assert_eq!(
            words(r#"sh -c 'echo $HOME && ls'"#),
            ["sh", "-c", "echo $HOME && ls"]
        );
        assert_eq!(
            words(r#"echo "a \"b\" \\ \$x \n""#),
            ["echo", r#"a "b" \ $x \n"#]
        );
        assert_eq!(words(r#"a\ b c\"d \'e"#), ["a b", "c\"d", "'e"]);
        assert_eq!(words(r#"x"y z"'w'"#), ["xy zw"]);
        assert_eq!(words(r#"a "" '' b"#), ["a", "", "", "b"]);
        assert_eq!(words(r#"'a\b'"#), [r"a\b"]);
        assert_eq!(words("a \\\nb"), ["a", "b"]);
        assert_eq!(
            words("echo a; echo b | c"),
            ["echo", "a;", "echo", "b", "|", "c"]
        );
        assert_eq!(words("echo $HOME ${X}"), ["echo", "$HOME", "${X}"]);
    }

    #[test]
    fn bad_shell_words() {
        assert_eq!(
            shell_split("echo 'oops").unwrap_err(),
            r#"invalid command "echo 'oops": unterminated single quote"#
        );
        assert_eq!(
            shell_split("echo \"oops").unwrap_err(),
            r#"invalid command "echo \"oops": unterminated double quote"#
        );
        assert!(shell_split("echo \\").is_err());
    }

    fn port(target: u32, published: Option<&str>, ip: Option<&str>, proto: &str) -> PortSpec {
        PortSpec {
            target,
            published: published.map(str::to_string),
            host_ip: ip.map(str::to_string),
            protocol: proto.to_string(),
            mode: "ingress".to_string(),
        }
    }

    fn ports(s: &str) -> Vec<PortSpec> {
        parse_port(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn short_ports() {
        assert_eq!(ports("80"), [port(80, None, None, "tcp")]);
        assert_eq!(ports("8080:80"), [port(80, Some("8080"), None, "tcp")]);
        assert_eq!(
            ports("127.0.0.1:8080:80"),
            [port(80, Some("8080"), Some("127.0.0.1"), "tcp")]
        );
        assert_eq!(
            ports("127.0.0.1::80"),
            [port(80, None, Some("127.0.0.1"), "tcp")]
        );
        assert_eq!(
            ports("[::1]:8080:80"),
            [port(80, Some("8080"), Some("::1"), "tcp")]
        );
        assert_eq!(
            ports("::1:8080:80"),
            [port(80, Some("8080"), Some("::1"), "tcp")]
        );
        assert_eq!(
            ports("8080-8081:80-81"),
            [
                port(80, Some("8080"), None, "tcp"),
                port(81, Some("8081"), None, "tcp")
            ]
        );
        assert_eq!(
            ports("9090-9091:8080"),
            [port(8080, Some("9090-9091"), None, "tcp")]
        );
        assert_eq!(ports("80/udp"), [port(80, None, None, "udp")]);
        assert_eq!(ports("80/UDP"), [port(80, None, None, "udp")]);
        assert_eq!(
            ports("6060:6060/udp"),
            [port(6060, Some("6060"), None, "udp")]
        );
        assert_eq!(ports("5000/sctp"), [port(5000, None, None, "sctp")]);
        let r = ports("3000-3005");
        assert_eq!(r.len(), 6);
        assert_eq!(r[0], port(3000, None, None, "tcp"));
        assert_eq!(r[5], port(3005, None, None, "tcp"));
        assert!(r.iter().all(|p| p.published.is_none()));
        assert_eq!(ports("0:80"), [port(80, Some("0"), None, "tcp")]);
        assert_eq!(ports("65535"), [port(65535, None, None, "tcp")]);
    }

    #[test]
    fn bad_ports() {
        assert_eq!(
            parse_port("99999").unwrap_err(),
            r#"invalid port "99999": port 99999 is out of range (1-65535)"#
        );
        assert_eq!(
            parse_port("abc").unwrap_err(),
            r#"invalid port "abc": "abc" is not a port number or range"#
        );
        assert_eq!(
            parse_port("8080-8082:80-81").unwrap_err(),
            r#"invalid port "8080-8082:80-81": host range 8080-8082 and container range 80-81 differ in size"#
        );
        assert_eq!(
            parse_port("80/icmp").unwrap_err(),
            r#"invalid port "80/icmp": unknown protocol "icmp" (use tcp, udp, sctp)"#
        );
        assert_eq!(
            parse_port("").unwrap_err(),
            r#"invalid port "": empty port specification"#
        );
        for bad in [
            "0",
            "8080:",
            "8080:99999",
            "81-80",
            "x:80",
            "1.2.3.4.5:80:80",
            "[::1:80:80",
            "80/",
            "80/tcp/udp",
            "-80",
            "80-",
            "localhost:80:80",
            " 80",
        ] {
            assert!(parse_port(bad).is_err(), "{bad:?} should fail");
        }
    }

    fn vol(s: &str) -> VolumeSpec {
        parse_volume(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn short_volumes() {
        let v = vol("/data");
        assert_eq!(
            v,
            VolumeSpec {
                kind: "volume".into(),
                source: None,
                target: "/data".into(),
                read_only: false,
                create_host_path: false,
                selinux: None,
                propagation: None,
                nocopy: false,
            }
        );
        let v = vol("name:/data");
        assert_eq!(
            (v.kind.as_str(), v.source.as_deref()),
            ("volume", Some("name"))
        );
        assert!(!v.create_host_path && !v.read_only);
        let v = vol("name:/data:ro");
        assert!(v.read_only);
        let v = vol("./src:/app");
        assert_eq!(
            (v.kind.as_str(), v.source.as_deref()),
            ("bind", Some("./src"))
        );
        assert!(v.create_host_path);
        let v = vol("../x:/y:rw");
        assert_eq!(v.kind, "bind");
        assert!(!v.read_only);
        let v = vol("/host:/c:ro,z");
        assert_eq!(v.kind, "bind");
        assert!(v.read_only);
        assert_eq!(v.selinux.as_deref(), Some("z"));
        let v = vol("~/x:/y");
        assert_eq!(
            (v.kind.as_str(), v.source.as_deref()),
            ("bind", Some("~/x"))
        );
        assert_eq!(vol(".:/app").kind, "bind");
        assert_eq!(vol("..:/app").kind, "bind");
        let v = vol("/h:/c:Z,rshared");
        assert_eq!(v.selinux.as_deref(), Some("Z"));
        assert_eq!(v.propagation.as_deref(), Some("rshared"));
        let v = vol("data:/c:nocopy");
        assert!(v.nocopy);
        for p in [
            "shared", "slave", "private", "rshared", "rslave", "rprivate",
        ] {
            assert_eq!(vol(&format!("/h:/c:{p}")).propagation.as_deref(), Some(p));
        }
        assert!(!vol("/h:/c:ro,rw").read_only);
        assert_eq!(vol("/h:/c:cached").kind, "bind");
    }

    #[test]
    fn bad_volumes() {
        assert_eq!(
            parse_volume("name:data").unwrap_err(),
            r#"invalid volume "name:data": target "data" must be an absolute path"#
        );
        assert_eq!(
            parse_volume("/a:/b:xyz").unwrap_err(),
            r#"invalid volume "/a:/b:xyz": unknown mode "xyz" (use ro, rw, z, Z, nocopy, shared, slave, private, rshared, rslave, rprivate)"#
        );
        assert_eq!(
            parse_volume("/a:/b:ro:z").unwrap_err(),
            r#"invalid volume "/a:/b:ro:z": too many colons"#
        );
        assert_eq!(
            parse_volume("").unwrap_err(),
            r#"invalid volume "": empty volume specification"#
        );
        for bad in [
            "data",
            "a::/b",
            ":/b",
            "/a:",
            "/a:/b:",
            "/a:/b:ro,",
            "/a:/b:RO",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn project_names() {
        assert_eq!(normalize_project_name("My App"), "myapp");
        assert_eq!(normalize_project_name("__my.app-2"), "myapp-2");
        assert_eq!(normalize_project_name("-_-x_y"), "x_y");
        assert_eq!(normalize_project_name("Ünïcode"), "ncode");
        assert_eq!(normalize_project_name("..."), "");
        assert_eq!(normalize_project_name("web_1"), "web_1");
        assert!(check_project_name("web").is_ok());
        assert!(check_project_name("0a_b-c").is_ok());
        for bad in ["", "Web", "_web", "-web", "my app", "a.b"] {
            assert!(check_project_name(bad).is_err(), "{bad:?} should fail");
        }
        assert_eq!(
            check_project_name("My").unwrap_err(),
            "invalid project name \"My\": it must contain only lower-case letters, digits, \
             dashes and underscores, and start with a letter or digit"
        );
    }
}
