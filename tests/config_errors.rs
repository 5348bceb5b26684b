//! `flotilla config` on bad input: every class of problem is reported located, one line each
//! (`<file>:<line>:<col>: <path>: <message>`), with exit code 1 and no panic. Also the behaviour
//! around the stack: profiles, the project name, the environment, warnings, `-q` and the list
//! outputs. Each test writes its stack into its own temporary directory; the directory is written
//! `$DIR` in the expected output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// A stack in a fresh temporary directory.
struct Stack {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Stack {
    /// `files` are `(relative path, content)`; parent directories are created.
    fn new(files: &[(&str, &str)]) -> Stack {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        let s = Stack { _tmp: tmp, dir };
        for (p, text) in files {
            s.write(p, text);
        }
        s
    }

    /// A stack whose only file is `compose.yaml`.
    fn compose(text: &str) -> Stack {
        Stack::new(&[("compose.yaml", text)])
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn cmd(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(cwd)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", "/home/flotilla-test")
            .envs(env.iter().copied())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs `flotilla <args>` in the stack's directory with only `env` (plus PATH and HOME).
    fn run_in(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Res {
        Res::from(&self.dir, self.cmd(cwd, args, env).output().unwrap())
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Res {
        self.run_in(&self.dir, args, env)
    }

    fn config(&self, extra: &[&str]) -> Res {
        let mut args = vec!["config"];
        args.extend_from_slice(extra);
        self.run(&args, &[])
    }

    /// Asserts `config <extra>` fails with exactly these problem lines.
    fn fails(&self, extra: &[&str], env: &[(&str, &str)], lines: &[&str]) {
        let mut args = vec!["config"];
        args.extend_from_slice(extra);
        self.run(&args, env).assert_errors(lines);
    }
}

/// A finished run, with the stack directory written `$DIR`.
#[derive(Debug)]
struct Res {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Res {
    fn from(dir: &Path, out: Output) -> Res {
        let d = dir.display().to_string();
        let res = Res {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).replace(&d, "$DIR"),
            stderr: String::from_utf8_lossy(&out.stderr).replace(&d, "$DIR"),
        };
        assert!(!res.stderr.contains("panicked"), "panic:\n{}", res.stderr);
        res
    }

    /// Exit 0; returns standard output.
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "expected success:\n{}", self.stderr);
        &self.stdout
    }

    fn assert_errors(&self, lines: &[&str]) {
        assert_eq!(
            self.code,
            Some(1),
            "expected exit code 1; stderr:\n{}",
            self.stderr
        );
        assert_eq!(self.stdout, "", "nothing on stdout on failure");
        let n = lines.len();
        let mut expected: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        expected.push(format!(
            "error: the stack is not valid ({n} problem{})",
            if n == 1 { "" } else { "s" }
        ));
        let actual: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(actual, expected, "stderr:\n{}", self.stderr);
    }
}

// ---- Bad input ---------------------------------------------------------------------------------

#[test]
fn malformed_yaml() {
    Stack::compose("services:\n  web:\n    image: [a\n").fails(
        &[],
        &[],
        &["$DIR/compose.yaml:4:1: invalid YAML: while parsing a flow sequence, expected ',' or ']'"],
    );
    Stack::compose("services:\n  web:\n  image: x\n   bad: indentation\n").fails(
        &[],
        &[],
        &["$DIR/compose.yaml:4:7: invalid YAML: mapping values are not allowed in this context"],
    );
}

#[test]
fn wrong_types() {
    Stack::compose(
        "services:\n  web:\n    image: x\n    ports: {a: 1}\n    privileged: \"maybe\"\n    \
         environment: 5\n",
    )
    .fails(
        &[],
        &[],
        &[
            "$DIR/compose.yaml:4:12: services.web.ports: expected a list, found a mapping",
            "$DIR/compose.yaml:5:17: services.web.privileged: expected true or false, found \"maybe\"",
            "$DIR/compose.yaml:6:18: services.web.environment: expected a list or a mapping, found an integer",
        ],
    );
}

#[test]
fn unknown_key_with_did_you_mean() {
    Stack::compose("services:\n  web:\n    image: x\n    enviroment:\n      A: 1\n").fails(
        &[],
        &[],
        &[
            "$DIR/compose.yaml:4:5: services.web: unknown key `enviroment` (hint: did you mean `environment`?)",
        ],
    );
    Stack::compose("servces:\n  web:\n    image: x\n").fails(
        &[],
        &[],
        &["$DIR/compose.yaml:1:1: unknown key `servces` (hint: did you mean `services`?)"],
    );
}

#[test]
fn several_errors_are_reported_at_once() {
    Stack::compose(
        "services:\n  web:\n    image: x\n    enviroment: {}\n    ports: [\"99999:80\"]\n    \
         restart: sometimes\n",
    )
    .fails(
        &[],
        &[],
        &[
            "$DIR/compose.yaml:4:5: services.web: unknown key `enviroment` (hint: did you mean `environment`?)",
            "$DIR/compose.yaml:5:13: services.web.ports[0]: invalid port \"99999:80\": port 99999 is out of range (0-65535)",
            "$DIR/compose.yaml:6:14: services.web.restart: invalid restart policy \"sometimes\" (use no, always, unless-stopped, on-failure or on-failure:N)",
        ],
    );
}

#[test]
fn errors_in_several_files_are_reported_together() {
    let s = Stack::new(&[
        (
            "a.yaml",
            "services:\n  web:\n    image: x\n    tty: sometimes\n",
        ),
        ("b.yaml", "services:\n  web:\n    imgae: y\n"),
    ]);
    s.fails(
        &["-f", "a.yaml", "-f", "b.yaml"],
        &[],
        &[
            "$DIR/a.yaml:4:10: services.web.tty: expected true or false, found \"sometimes\"",
            "$DIR/b.yaml:3:5: services.web: unknown key `imgae` (hint: did you mean `image`?)",
        ],
    );
}

#[test]
fn unresolvable_required_variable_names_it_where_used() {
    let s = Stack::compose(
        "services:\n  web:\n    image: x\n    environment:\n      DB: ${DB_PASSWORD:?must be set}\n",
    );
    s.fails(
        &[],
        &[],
        &[
            "$DIR/compose.yaml:5:11: services.web.environment.DB: required variable DB_PASSWORD is missing a value: must be set",
        ],
    );
    // Set but empty is also an error for `:?`…
    s.fails(
        &[],
        &[("DB_PASSWORD", "")],
        &[
            "$DIR/compose.yaml:5:11: services.web.environment.DB: required variable DB_PASSWORD is missing a value: must be set",
        ],
    );
    // …and a value makes it fine.
    let out = s.run(&["config"], &[("DB_PASSWORD", "hunter2")]);
    assert!(out.ok().contains("DB: hunter2"), "{}", out.stdout);
}

#[test]
fn missing_env_file() {
    Stack::compose("services:\n  web:\n    image: x\n    env_file: missing.env\n").fails(
        &[],
        &[],
        &[
            "$DIR/compose.yaml:4:15: services.web.env_file[0]: cannot read env file $DIR/missing.env: No such file or directory (os error 2) (hint: create it, or mark it `required: false`)",
        ],
    );
    let s = Stack::compose(
        "services:\n  web:\n    image: x\n    env_file:\n      - path: missing.env\n        required: false\n",
    );
    s.config(&[]).ok();
}

#[test]
fn missing_env_file_flag() {
    Stack::compose("services:\n  web:\n    image: x\n").fails(
        &["--env-file", "nope.env"],
        &[],
        &["$DIR/nope.env: cannot read env file: No such file or directory (os error 2)"],
    );
}

#[test]
fn missing_extends_target_service() {
    Stack::compose("services:\n  web:\n    extends: base\n").fails(
        &[],
        &[],
        &["$DIR/compose.yaml:3:14: services.web.extends: cannot extend service `base`: no such service"],
    );
    let s = Stack::new(&[
        (
            "compose.yaml",
            "services:\n  web:\n    extends:\n      file: common.yaml\n      service: bsae\n",
        ),
        ("common.yaml", "services:\n  base:\n    image: x\n"),
    ]);
    let r = s.config(&[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("$DIR/compose.yaml:4:7: services.web.extends: ")
            && first.contains("bsae"),
        "{}",
        r.stderr
    );
}

#[test]
fn missing_extends_file() {
    let r = Stack::compose(
        "services:\n  web:\n    extends:\n      file: other.yaml\n      service: base\n",
    )
    .config(&[]);
    assert_eq!(r.code, Some(1));
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stderr);
    assert!(
        lines[0].starts_with(
            "$DIR/compose.yaml:4:7: services.web.extends: cannot load $DIR/other.yaml"
        ) && lines[0].ends_with("No such file or directory (os error 2)"),
        "{}",
        r.stderr
    );
}

#[test]
fn extends_cycle() {
    Stack::compose("services:\n  a:\n    image: x\n    extends: b\n  b:\n    extends: a\n").fails(
        &[],
        &[],
        &[
            "$DIR/compose.yaml:4:14: services.a.extends: extends cycle: b → a → b",
            "$DIR/compose.yaml:6:14: services.b.extends: extends cycle: a → b → a",
        ],
    );
}

#[test]
fn include_cycle() {
    let s = Stack::new(&[
        (
            "compose.yaml",
            "include:\n  - sub/compose.yaml\nservices:\n  a:\n    image: x\n",
        ),
        (
            "sub/compose.yaml",
            "include:\n  - ../compose.yaml\nservices:\n  b:\n    image: y\n",
        ),
    ]);
    s.fails(
        &[],
        &[],
        &[
            "$DIR/sub/compose.yaml:2:5: include[0]: include cycle: $DIR/compose.yaml → $DIR/sub/compose.yaml → $DIR/compose.yaml",
        ],
    );
}

#[test]
fn include_conflict() {
    let s = Stack::new(&[
        (
            "compose.yaml",
            "include:\n  - sub/compose.yaml\nservices:\n  a:\n    image: x\n",
        ),
        ("sub/compose.yaml", "services:\n  a:\n    image: y\n"),
    ]);
    s.fails(
        &[],
        &[],
        &[
            "$DIR/compose.yaml:4:3: services.a: conflicts with the service `a` imported by include from $DIR/sub/compose.yaml (hint: rename one of them; included resources cannot be overridden)",
        ],
    );
}

#[test]
fn include_of_an_identical_resource_is_fine() {
    let s = Stack::new(&[
        (
            "compose.yaml",
            "include:\n  - sub/compose.yaml\nservices:\n  a:\n    image: x\n    networks: [back]\n\
             networks:\n  back:\n    driver: bridge\n",
        ),
        (
            "sub/compose.yaml",
            "services:\n  b:\n    image: y\n    networks: [back]\nnetworks:\n  back:\n    driver: bridge\n",
        ),
    ]);
    let out = s.run(&["config", "--services"], &[]);
    assert_eq!(out.ok(), "a\nb\n");
}

#[test]
fn dependency_cycle() {
    Stack::compose(
        "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [c]\n  \
         c:\n    image: x\n    depends_on: [a]\n",
    )
    .fails(
        &[],
        &[],
        &["$DIR/compose.yaml:2:3: services.a: dependency cycle: a → b → c → a"],
    );
}

#[test]
fn undefined_references_with_hints() {
    Stack::compose(
        "services:\n  a:\n    image: x\n    networks: [backend]\n    volumes: [data:/data]\n    \
         secrets: [token]\n    depends_on: [dbb]\n  db:\n    image: x\nnetworks:\n  backnd: {}\n\
         volumes:\n  dta: {}\n",
    )
    .fails(
        &[],
        &[],
        &[
            "$DIR/compose.yaml:4:16: services.a.networks: refers to undefined network `backend` (hint: did you mean `backnd`?)",
            "$DIR/compose.yaml:5:15: services.a.volumes[0]: refers to undefined volume `data` (hint: did you mean `dta`?)",
            "$DIR/compose.yaml:6:15: services.a.secrets[0]: refers to undefined secret `token` (hint: define it under the top-level `secrets:`)",
            "$DIR/compose.yaml:7:18: services.a.depends_on: depends on undefined service `dbb` (hint: did you mean `db`?)",
        ],
    );
}

#[test]
fn duplicate_container_names() {
    Stack::compose(
        "services:\n  a:\n    image: x\n    container_name: same\n  b:\n    image: x\n    container_name: same\n",
    )
    .fails(
        &[],
        &[],
        &["$DIR/compose.yaml:7:21: services.b.container_name: container name \"same\" is already used by service `a`"],
    );
}

#[test]
fn container_name_with_scale() {
    Stack::compose("services:\n  a:\n    image: x\n    container_name: one\n    scale: 2\n").fails(
        &[],
        &[],
        &[
            "$DIR/compose.yaml:4:21: services.a.container_name: `container_name` \"one\" cannot be shared by 2 replicas of service `a` (hint: remove `container_name` or run a single replica)",
        ],
    );
}

#[test]
fn invalid_project_names() {
    let s = Stack::compose("services:\n  a:\n    image: x\n");
    s.fails(
        &["-p", "Bad Name"],
        &[],
        &[
            "-p: invalid project name \"Bad Name\": it must contain only lower-case letters, digits, dashes and underscores, and start with a letter or digit (hint: a project name is lower-case letters, digits, `-` and `_`)",
        ],
    );
    s.fails(
        &[],
        &[("COMPOSE_PROJECT_NAME", "UPPER")],
        &[
            "COMPOSE_PROJECT_NAME: invalid project name \"UPPER\": it must contain only lower-case letters, digits, dashes and underscores, and start with a letter or digit",
        ],
    );
    Stack::compose("name: -x\nservices:\n  a:\n    image: x\n").fails(
        &[],
        &[],
        &[
            "$DIR/compose.yaml:1:7: name: invalid project name \"-x\": it must contain only lower-case letters, digits, dashes and underscores, and start with a letter or digit",
        ],
    );
}

#[test]
fn invalid_ports() {
    Stack::compose("services:\n  a:\n    image: x\n    ports: [\"99999\", \"abc\"]\n").fails(
        &[],
        &[],
        &[
            "$DIR/compose.yaml:4:13: services.a.ports[0]: invalid port \"99999\": port 99999 is out of range (1-65535)",
            "$DIR/compose.yaml:4:22: services.a.ports[1]: invalid port \"abc\": \"abc\" is not a port number or range",
        ],
    );
}

#[test]
fn empty_file() {
    Stack::compose("").fails(&[], &[], &["$DIR/compose.yaml:1:1: stack file is empty"]);
}

#[test]
fn top_level_list() {
    Stack::compose("- a\n- b\n").fails(
        &[],
        &[],
        &["$DIR/compose.yaml:1:1: a stack file must be a mapping, found a list"],
    );
}

#[test]
fn arbitrary_bytes_fail_cleanly() {
    let s = Stack::new(&[]);
    std::fs::write(s.dir.join("compose.yaml"), b"\xff\xfe\x00services: {\x01").unwrap();
    let r = s.config(&[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.starts_with("$DIR/compose.yaml"), "{}", r.stderr);
}

#[test]
fn no_stack_file_found() {
    let s = Stack::new(&[("empty/.keep", "")]);
    let r = s.run_in(&s.dir.join("empty"), &["config"], &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("no stack file found here or in any parent directory"),
        "{}",
        r.stderr
    );
}

// ---- Profiles ----------------------------------------------------------------------------------

const PROFILED: &str = "services:\n  web:\n    image: x\n  debug:\n    image: x\n    profiles: [debug]\n    \
                        depends_on: [tracer]\n  tracer:\n    image: x\n    profiles: [tracing]\n  \
                        extra:\n    image: x\n    profiles: [full]\n";

#[test]
fn a_profile_pulls_in_dependencies_from_other_profiles() {
    let s = Stack::compose(PROFILED);
    assert_eq!(s.config(&["--services"]).ok(), "web\n");
    assert_eq!(
        s.config(&["--profile", "debug", "--services"]).ok(),
        "tracer\nweb\ndebug\n"
    );
    assert_eq!(
        s.config(&["--profile", "debug", "--profile", "full", "--services"])
            .ok(),
        "extra\ntracer\nweb\ndebug\n"
    );
    assert_eq!(s.config(&["--profiles"]).ok(), "debug\nfull\ntracing\n");
}

#[test]
fn compose_profiles_env_enables_profiles() {
    let s = Stack::compose(PROFILED);
    let r = s.run(
        &["config", "--services"],
        &[("COMPOSE_PROFILES", "full, debug")],
    );
    assert_eq!(r.ok(), "extra\ntracer\nweb\ndebug\n");
    // `--profile` wins over the variable.
    let r = s.run(
        &["--profile", "full", "config", "--services"],
        &[("COMPOSE_PROFILES", "debug")],
    );
    assert_eq!(r.ok(), "extra\nweb\n");
}

// ---- Project name ------------------------------------------------------------------------------

fn project_name(s: &Stack, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut a = args.to_vec();
    a.push("config");
    let r = s.run_in(cwd, &a, env);
    let out = r.ok();
    out.lines()
        .next()
        .and_then(|l| l.strip_prefix("name: "))
        .unwrap_or_else(|| panic!("no name in {out}"))
        .to_string()
}

#[test]
fn project_name_precedence() {
    let s = Stack::new(&[
        ("My_App.v2/compose.yaml", "services:\n  a:\n    image: x\n"),
        (
            "named/compose.yaml",
            "name: from-file\nservices:\n  a:\n    image: x\n",
        ),
    ]);
    let plain = s.dir.join("My_App.v2");
    let named = s.dir.join("named");
    // The directory name, normalized like Compose.
    assert_eq!(project_name(&s, &plain, &[], &[]), "my_appv2");
    // `name:` beats the directory.
    assert_eq!(project_name(&s, &named, &[], &[]), "from-file");
    // COMPOSE_PROJECT_NAME beats `name:`.
    let env = [("COMPOSE_PROJECT_NAME", "from-env")];
    assert_eq!(project_name(&s, &named, &[], &env), "from-env");
    // `-p` beats everything.
    assert_eq!(
        project_name(&s, &named, &["-p", "from-flag"], &env),
        "from-flag"
    );
    // Resource names follow the project name.
    let out = s.run_in(&named, &["-p", "from-flag", "config"], &[]);
    assert!(
        out.ok().contains("name: from-flag_default"),
        "{}",
        out.stdout
    );
}

// ---- Environment -------------------------------------------------------------------------------

#[test]
fn process_env_beats_dot_env_and_env_file_replaces_it() {
    let s = Stack::new(&[
        (
            "compose.yaml",
            "services:\n  a:\n    image: ${IMG:-fallback}:${TAG}\n",
        ),
        (".env", "IMG=from-dotenv\nTAG=1\n"),
        ("other.env", "IMG=from-other\n"),
    ]);
    assert_eq!(s.config(&["--images"]).ok(), "from-dotenv:1\n");
    assert_eq!(
        s.run(&["config", "--images"], &[("IMG", "from-process")])
            .ok(),
        "from-process:1\n"
    );
    // `--env-file` replaces `.env` entirely: TAG is no longer set.
    let r = s.run(&["--env-file", "other.env", "config", "--images"], &[]);
    assert_eq!(r.ok(), "from-other:\n");
    assert_eq!(
        r.stderr,
        "warning: the TAG variable is not set. Defaulting to a blank string.\n"
    );
    assert_eq!(
        s.run(
            &["--env-file", "other.env", "config", "--images"],
            &[("IMG", "from-process"), ("TAG", "2")]
        )
        .ok(),
        "from-process:2\n"
    );
}

#[test]
fn no_interpolate_keeps_variables() {
    let s = Stack::compose("services:\n  a:\n    image: ${IMG:?must be set}\n");
    let r = s.config(&["--no-interpolate"]);
    assert!(
        r.ok().contains("image: ${IMG:?must be set}"),
        "{}",
        r.stdout
    );
}

// ---- Warnings, -q and list outputs ------------------------------------------------------------

#[test]
fn obsolete_version_warns_and_succeeds() {
    let s = Stack::compose("version: \"3.8\"\nservices:\n  a:\n    image: x\n");
    let r = s.config(&[]);
    r.ok();
    assert_eq!(
        r.stderr,
        "warning: the top-level `version` is obsolete and ignored; remove it to avoid confusion\n"
    );
    assert!(!r.stdout.contains("version"), "{}", r.stdout);
}

#[test]
fn quiet_prints_nothing_and_the_exit_code_tells() {
    let good = Stack::compose("services:\n  a:\n    image: x\n");
    let r = good.config(&["-q"]);
    assert_eq!(r.ok(), "");
    assert_eq!(r.stderr, "");
    let bad = Stack::compose("services:\n  a:\n    image: x\n    enviroment: {}\n");
    let r = bad.config(&["-q"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stdout, "");
}

const LISTED: &str = "services:\n  web:\n    image: ${IMG:-busybox}\n    depends_on: [db]\n    \
                      volumes: [data:/d]\n    networks: [front, back]\n  db:\n    image: postgres\n    \
                      networks: [back]\n  app:\n    build: .\n    depends_on:\n      db:\n        \
                      condition: service_healthy\n  tool:\n    image: tool\n    profiles: [dev]\n\
                      volumes:\n  data: {}\n  logs: {}\nnetworks:\n  front: {}\n  back: {}\n";

#[test]
fn list_outputs() {
    let s = Stack::new(&[("proj/compose.yaml", LISTED)]);
    let cwd = s.dir.join("proj");
    let list = |flag: &str| s.run_in(&cwd, &["config", flag], &[]).ok().to_string();
    // Start order: dependencies first.
    assert_eq!(list("--services"), "db\napp\nweb\n");
    assert_eq!(list("--volumes"), "data\nlogs\n");
    assert_eq!(list("--networks"), "back\ndefault\nfront\n");
    assert_eq!(list("--profiles"), "dev\n");
    // A service without `image` is built as `<project>-<service>`.
    assert_eq!(list("--images"), "proj-app\npostgres\nbusybox\n");
}

#[test]
fn graph_output_is_dot() {
    let s = Stack::new(&[("proj/compose.yaml", LISTED)]);
    let r = s.run_in(&s.dir.join("proj"), &["config", "--graph"], &[]);
    let dot = r.ok();
    assert!(dot.starts_with("digraph stack {\n"), "{dot}");
    assert!(dot.trim_end().ends_with('}'), "{dot}");
    for line in [
        "  \"service:web\" [label=\"web\", shape=box];",
        "  \"volume:data\" [label=\"data\", shape=cylinder];",
        "  \"service:web\" -> \"service:db\" [label=\"service_started\"];",
        "  \"service:app\" -> \"service:db\" [label=\"service_healthy\"];",
        "  \"service:web\" -> \"network:front\";",
        "  \"service:web\" -> \"volume:data\";",
    ] {
        assert!(dot.lines().any(|l| l == line), "missing {line:?} in\n{dot}");
    }
    assert!(
        !dot.contains("tool"),
        "profiled-out services stay out:\n{dot}"
    );
}

#[test]
fn stdin_stack() {
    let s = Stack::new(&[]);
    let mut c = s.cmd(
        &s.dir,
        &["-p", "piped", "-f", "-", "config", "--services"],
        &[],
    );
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"services:\n  a:\n    image: x\n")
        .unwrap();
    let r = Res::from(&s.dir, child.wait_with_output().unwrap());
    assert_eq!(r.ok(), "a\n");
}

/// Like Compose, `config` prints `$` as `$$`, so its output loads again to the same stack.
#[test]
fn dollar_escapes_survive_a_round_trip() {
    let s = Stack::compose("services:\n  a:\n    image: x\n    command: sh -c 'echo $$HOME'\n");
    let first = s.config(&[]).ok().to_string();
    let mut c = s.cmd(&s.dir, &["-f", "-", "config"], &[]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(first.as_bytes())
        .unwrap();
    let r = Res::from(&s.dir, child.wait_with_output().unwrap());
    assert_eq!(r.ok(), first);
}
