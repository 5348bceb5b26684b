//! The corpus test: `flotilla config` over every stack in `examples/` and `tests/fixtures/`.
//!
//! A case is a directory holding a `compose.yaml`. It may also hold:
//! - `args`: extra command-line arguments, one per line, given after `config`;
//! - `environ`: the process environment of the run, `KEY=VALUE` per line (the run otherwise gets
//!   an empty environment with only `PATH` and `HOME`, so nothing ambient leaks in);
//! - `expected.yaml`: the snapshot of the output, with the case directory written `$FIXTURE`;
//! - variants: `args.<v>` (and optionally `environ.<v>`, read on top of `environ`) with their
//!   snapshot `expected.<v>.yaml`: the same stack run another way (other `-f` files, profiles).
//!
//! The snapshots of `examples/<name>` live in `tests/snapshots/examples/<name>/` so the examples
//! stay clean. Every run must exit 0, match its snapshot, and round-trip: its output fed back
//! through `flotilla -f - config` (standard input) gives the same output, in YAML and in JSON.
//!
//! `UPDATE_SNAPSHOTS=1 cargo test --test config_corpus` rewrites the snapshots from the real
//! output (check them by eye against `docker compose config` before committing).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PLACEHOLDER: &str = "$FIXTURE";
const SCHEMA_LINE: &str = "# yaml-language-server: $schema=../../schemas/compose.schema.json";

/// One way to run one stack.
#[derive(Debug)]
struct Run {
    /// `fixtures/webapp` or `fixtures/split[prod]`, for messages.
    label: String,
    dir: PathBuf,
    args: Vec<String>,
    environ: Vec<(String, String)>,
    snapshot: PathBuf,
}

fn read_lines(p: &Path) -> Vec<String> {
    match std::fs::read_to_string(p) {
        Ok(t) => t
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn read_environ(p: &Path) -> Vec<(String, String)> {
    read_lines(p)
        .into_iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => panic!("{}: `{l}` is not KEY=VALUE", p.display()),
        })
        .collect()
}

fn case_dirs(parent: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(parent)
        .unwrap_or_else(|e| panic!("{}: {e}", parent.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("compose.yaml").is_file())
        // The binary sees its working directory with symlinks resolved.
        .map(|p| p.canonicalize().unwrap())
        .collect();
    dirs.sort();
    dirs
}

/// The runs of one case directory; `snapshots` is where its `expected*.yaml` live.
fn runs_of(kind: &str, dir: &Path, snapshots: &Path) -> Vec<Run> {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let base_env = read_environ(&dir.join("environ"));
    let mut runs = vec![Run {
        label: format!("{kind}/{name}"),
        dir: dir.to_path_buf(),
        args: read_lines(&dir.join("args")),
        environ: base_env.clone(),
        snapshot: snapshots.join("expected.yaml"),
    }];
    let mut variants: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let f = e.unwrap().file_name().to_string_lossy().to_string();
            f.strip_prefix("args.").map(str::to_string)
        })
        .collect();
    variants.sort();
    for v in variants {
        let mut environ = base_env.clone();
        environ.extend(read_environ(&dir.join(format!("environ.{v}"))));
        runs.push(Run {
            label: format!("{kind}/{name}[{v}]"),
            dir: dir.to_path_buf(),
            args: read_lines(&dir.join(format!("args.{v}"))),
            environ,
            snapshot: snapshots.join(format!("expected.{v}.yaml")),
        });
    }
    runs
}

fn all_runs() -> Vec<Run> {
    let root = Path::new(ROOT);
    let mut runs = Vec::new();
    for dir in case_dirs(&root.join("examples")) {
        let name = dir.file_name().unwrap().to_owned();
        let snaps = root.join("tests/snapshots/examples").join(name);
        runs.extend(runs_of("examples", &dir, &snaps));
    }
    for dir in case_dirs(&root.join("tests/fixtures")) {
        let snaps = dir.clone();
        runs.extend(runs_of("fixtures", &dir, &snaps));
    }
    runs
}

/// The binary in `cwd` with a clean environment: only `PATH`, `HOME` and `environ`.
fn flotilla(cwd: &Path, environ: &[(String, String)]) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/home/flotilla-test")
        .envs(environ.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    c
}

fn run_with_stdin(mut c: Command, input: &str) -> Output {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn flotilla");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("output is UTF-8")
}

fn check_ok(label: &str, what: &str, out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{label}: {what} failed:\n{stderr}"
    );
    text(&out.stdout)
}

/// The `--profile` flags of a run: the round trip needs them to keep profiled services.
fn profile_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--profile" {
            out.push(a.clone());
            if let Some(v) = it.next() {
                out.push(v.clone());
            }
        } else if a.starts_with("--profile=") {
            out.push(a.clone());
        }
    }
    out
}

fn check_run(run: &Run) -> Result<(), String> {
    let out = flotilla(&run.dir, &run.environ)
        .arg("config")
        .args(&run.args)
        .output()
        .unwrap();
    let yaml = check_ok(&run.label, "config", &out);
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "{}: panic on stderr:\n{stderr}",
        run.label
    );

    // The snapshot, with the case directory made portable.
    let portable = yaml.replace(&run.dir.display().to_string(), PLACEHOLDER);
    let mut problems = Vec::new();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(run.snapshot.parent().unwrap()).unwrap();
        std::fs::write(&run.snapshot, &portable).unwrap();
    } else {
        match std::fs::read_to_string(&run.snapshot) {
            Ok(expected) if expected == portable => {}
            Ok(expected) => problems.push(format!(
                "{}: output differs from {}\n{}",
                run.label,
                run.snapshot.display(),
                diff(&expected, &portable)
            )),
            Err(e) => problems.push(format!(
                "{}: no snapshot {} ({e}); run with UPDATE_SNAPSHOTS=1 and check it by eye",
                run.label,
                run.snapshot.display()
            )),
        }
    }

    // `-q` validates only.
    let q = flotilla(&run.dir, &run.environ)
        .arg("config")
        .args(&run.args)
        .arg("-q")
        .output()
        .unwrap();
    assert_eq!(
        check_ok(&run.label, "config -q", &q),
        "",
        "{}: -q",
        run.label
    );

    // Round trip through standard input, from a directory with nothing in it.
    let scratch = tempfile::tempdir().unwrap();
    let profiles = profile_args(&run.args);
    let mut c = flotilla(scratch.path(), &run.environ);
    c.args(["-f", "-", "config"]).args(&profiles);
    let again = check_ok(&run.label, "round trip (yaml)", &run_with_stdin(c, &yaml));
    if again != yaml {
        problems.push(format!(
            "{}: YAML round trip differs\n{}",
            run.label,
            diff(&yaml, &again)
        ));
    }

    let out = flotilla(&run.dir, &run.environ)
        .args(["config", "--format", "json"])
        .args(&run.args)
        .output()
        .unwrap();
    let json = check_ok(&run.label, "config --format json", &out);
    serde_json::from_str::<serde_json::Value>(&json)
        .unwrap_or_else(|e| panic!("{}: --format json is not JSON: {e}", run.label));
    let mut c = flotilla(scratch.path(), &run.environ);
    c.args(["-f", "-", "config", "--format", "json"])
        .args(&profiles);
    let again = check_ok(&run.label, "round trip (json)", &run_with_stdin(c, &json));
    if again != json {
        problems.push(format!(
            "{}: JSON round trip differs\n{}",
            run.label,
            diff(&json, &again)
        ));
    }
    // JSON in, YAML out: the same stack as the YAML run.
    let mut c = flotilla(scratch.path(), &run.environ);
    c.args(["-f", "-", "config"]).args(&profiles);
    let from_json = check_ok(&run.label, "json → yaml", &run_with_stdin(c, &json));
    if from_json != yaml {
        problems.push(format!(
            "{}: JSON fed back as a stack gives other YAML\n{}",
            run.label,
            diff(&yaml, &from_json)
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// The lines that differ, for failure messages.
fn diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    for i in 0..e.len().max(a.len()) {
        let (x, y) = (e.get(i), a.get(i));
        if x != y {
            out.push_str(&format!(
                "  line {}:\n    expected: {}\n    actual:   {}\n",
                i + 1,
                x.unwrap_or(&"<none>"),
                y.unwrap_or(&"<none>")
            ));
            if out.len() > 4000 {
                out.push_str("  …\n");
                break;
            }
        }
    }
    out
}

#[test]
fn every_stack_loads_matches_its_snapshot_and_round_trips() {
    let runs = all_runs();
    let failures: Vec<String> = runs.iter().filter_map(|r| check_run(r).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        runs.len(),
        failures.join("\n")
    );
}

#[test]
fn the_corpus_holds_the_required_stacks() {
    let labels: Vec<String> = all_runs().into_iter().map(|r| r.label).collect();
    for required in [
        "fixtures/webapp",
        "fixtures/microservices",
        "fixtures/microservices[debug]",
        "fixtures/split",
        "fixtures/split[prod]",
        "examples/hello",
    ] {
        assert!(
            labels.iter().any(|l| l == required),
            "missing {required} in {labels:?}"
        );
    }
    assert!(
        labels.iter().filter(|l| l.starts_with("examples/")).count() >= 2,
        "{labels:?}"
    );
}

#[test]
fn examples_name_the_schema_on_their_first_line() {
    for dir in case_dirs(&Path::new(ROOT).join("examples")) {
        let text = std::fs::read_to_string(dir.join("compose.yaml")).unwrap();
        assert_eq!(
            text.lines().next(),
            Some(SCHEMA_LINE),
            "{}/compose.yaml",
            dir.display()
        );
    }
}

#[test]
fn no_snapshot_holds_a_machine_path() {
    let root = Path::new(ROOT).canonicalize().unwrap();
    let mut snaps = Vec::new();
    for r in all_runs() {
        if r.snapshot.is_file() {
            snaps.push(r.snapshot);
        }
    }
    assert!(!snaps.is_empty());
    for s in snaps {
        let t = std::fs::read_to_string(&s).unwrap();
        assert!(
            !t.contains(&root.display().to_string()),
            "{} holds the checkout path; use {PLACEHOLDER}",
            s.display()
        );
    }
}
