//! `flotilla image build` and `flotilla build` as a user runs them, without a daemon: the
//! Dockerfile and context are checked client-side (located errors, exit 1) before anything is
//! sent; a build that checks out goes to the daemon (here a socket that does not exist). The
//! builds themselves are tested with a real daemon in tests/build_exec.rs.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

fn flotilla(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        // Never the machine's daemon or data: a socket that does not exist.
        .env("FLOTILLA_HOST", format!("unix://{}/no.sock", dir.display()))
        .env("FLOTILLA_ROOT", dir.join("root"))
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROFILES")
        .output()
        .unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_checked_build_goes_to_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "ctx/Dockerfile",
        "FROM busybox:1.36 AS gen\nCOPY greeting.txt /in/\nFROM scratch\nCOPY --from=gen /in /\n",
    );
    write(d, "ctx/greeting.txt", "hello\n");
    // Everything checks out, so the next step is the daemon, which is not there.
    let o = flotilla(d, &["image", "build", "-t", "demo:1", "ctx"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("no.sock"), "{err}");
    assert!(!d.join("root").exists(), "no data root was made");
}

#[test]
fn image_build_bad_input_is_one_located_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "ctx/greeting.txt", "hello\n");
    write(d, "ctx/.dockerignore", "secret\n");
    write(d, "ctx/secret", "x\n");
    let cases: &[(&str, &str)] = &[
        (
            "FROM busybox\nRUNN true\n",
            "Dockerfile:2:1: unknown instruction: RUNN (hint: did you mean RUN?)",
        ),
        (
            "ARG B\nFROM $B\n",
            "Dockerfile:2:6: FROM uses the ARG B, which has no value",
        ),
        (
            "FROM busybox\nCOPY missing.txt /\n",
            "Dockerfile:2:1: COPY \"missing.txt\" was not found in the build context",
        ),
        (
            "FROM busybox\nCOPY secret /\n",
            "Dockerfile:2:1: COPY \"secret\" was not found in the build context (or .dockerignore excludes it)",
        ),
        (
            "FROM busybox\nCOPY ../x /\n",
            "Dockerfile:2:1: COPY \"../x\" is outside the build context",
        ),
    ];
    for (dockerfile, want) in cases {
        write(d, "ctx/Dockerfile", dockerfile);
        let o = flotilla(d, &["image", "build", "-t", "x", "ctx"]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{dockerfile}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(want),
            "{dockerfile}\n got: {err}\nwant: {want}"
        );
        assert!(err.starts_with("error: ctx/Dockerfile:"), "{err}");
    }
    let o = flotilla(d, &["image", "build", "nowhere"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("build context nowhere: not found"));
    let o = flotilla(d, &["image", "build", "-t", "UPPER:case", "ctx"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("invalid tag"), "{:?}", text(&o));
    let o = flotilla(d, &["image", "build", "-f", "Nope", "ctx"]);
    assert!(
        text(&o).1.contains("cannot read the Dockerfile"),
        "{:?}",
        text(&o)
    );
    let o = flotilla(d, &["image", "build", "--progress", "fancy", "ctx"]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn stack_build_checks_each_service_with_a_build_section() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "app/Dockerfile",
        "ARG BASE=busybox\nFROM $BASE AS build\nFROM build AS final\nARG MODE\nLABEL mode=$MODE\n",
    );
    write(d, "web/Containerfile", "FROM busybox\nCOPY . /www\n");
    write(d, "web/index.html", "<p>hi</p>\n");
    write(
        d,
        "compose.yaml",
        "name: demo\nservices:\n  app:\n    build:\n      context: app\n      target: final\n      args:\n        MODE: fast\n  web:\n    image: example/web:2\n    build:\n      context: web\n      dockerfile: Containerfile\n  db:\n    image: busybox\n",
    );
    // Checked, then sent to the daemon (not there).
    let o = flotilla(d, &["build"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("no.sock"), "{err}");

    let o = flotilla(d, &["build", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("no such service: nope"));

    let o = flotilla(d, &["build", "db"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(err.contains("db: no build section"), "{err}");
    assert!(out.contains("nothing to build"), "{out}");

    write(d, "web/Containerfile", "FROM busybox\nCOPY --chown a b\n");
    let o = flotilla(d, &["build", "web"]);
    let (_, err) = text(&o);
    assert!(
        err.contains("Containerfile:2:6: --chown needs a value"),
        "{err}"
    );
}
