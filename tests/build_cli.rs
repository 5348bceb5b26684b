//! `flotilla image build` and `flotilla build` as a user runs them: the Dockerfile and context
//! are checked (located errors, exit 1), the plan is printed, and then the command says that
//! executing builds is not available yet (exit 1). No daemon is involved: nothing reaches one.

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

const DOCKERFILE: &str = "FROM busybox:1.36 AS gen\nARG MSG=hi\nCOPY greeting.txt /in/\nRUN cat /in/greeting.txt > /out\nFROM busybox:1.36 AS unused\nRUN true\nFROM scratch\nCOPY --from=gen /out /greeting\n";

#[test]
fn image_build_prints_the_plan_then_says_it_cannot_execute() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "ctx/Dockerfile", DOCKERFILE);
    write(d, "ctx/greeting.txt", "hello\n");
    let o = flotilla(d, &["image", "build", "-t", "demo:1", "ctx"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("tags: demo:1"), "{out}");
    assert!(
        out.contains("target: #2 — builds 2 of 3 stages: gen, #2"),
        "{out}"
    );
    assert!(
        out.contains("[gen 3/4] COPY greeting.txt /in/  (line 3:1, key "),
        "{out}"
    );
    assert!(
        out.contains("[#2 2/2] COPY --from=#0 /out /greeting  ← stage gen"),
        "{out}"
    );
    assert!(!out.contains("[unused"), "{out}");
    assert!(
        err.contains("executing builds is not available yet"),
        "{err}"
    );
    assert!(!d.join("root").exists(), "no data root was made");

    // The key of the late COPY moves with the file; earlier ones do not.
    let key = |out: &str, step: &str| -> String {
        let line = out.lines().find(|l| l.contains(step)).unwrap().to_string();
        line.rsplit("key ").next().unwrap().to_string()
    };
    let before = key(&out, "[gen 2/4]");
    let copy_before = key(&out, "[gen 3/4]");
    write(d, "ctx/greeting.txt", "changed\n");
    let (out2, _) = text(&flotilla(d, &["image", "build", "ctx"]));
    assert_eq!(key(&out2, "[gen 2/4]"), before);
    assert_ne!(key(&out2, "[gen 3/4]"), copy_before);

    // -f (Docker's, not Compose's stack file), --target, --build-arg.
    write(d, "other.Dockerfile", "FROM busybox\nARG V\nWORKDIR /$V\n");
    let o = flotilla(
        d,
        &[
            "image",
            "build",
            "-f",
            "other.Dockerfile",
            "--build-arg",
            "V=srv",
            "--build-arg",
            "EXTRA=1",
            "ctx",
        ],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(out.contains("WORKDIR /srv"), "{out}");
    assert!(
        out.contains("warning: build args no ARG declares: EXTRA"),
        "{out}"
    );
    let o = flotilla(d, &["image", "build", "--target", "unused", "ctx"]);
    let (out, _) = text(&o);
    assert!(out.contains("builds 1 of 3 stages: unused"), "{out}");
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
fn stack_build_plans_each_service_with_a_build_section() {
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
    let o = flotilla(d, &["build"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("service app: "), "{out}");
    assert!(out.contains("tags: demo-app"), "{out}");
    assert!(out.contains("LABEL mode=fast"), "{out}");
    assert!(out.contains("tags: example/web:2"), "{out}");
    assert!(out.contains("COPY . /www"), "{out}");
    assert!(!out.contains("service db"), "{out}");
    assert!(
        err.contains("executing builds is not available yet"),
        "{err}"
    );

    let o = flotilla(d, &["compose", "build", "web", "--build-arg", "X=1"]);
    let (out, _) = text(&o);
    assert!(
        out.contains("service web") && !out.contains("service app"),
        "{out}"
    );

    let o = flotilla(d, &["build", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("no such service: nope"));

    let o = flotilla(d, &["build", "db"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("db: no build section"), "{out}");

    write(d, "web/Containerfile", "FROM busybox\nCOPY --chown a b\n");
    let o = flotilla(d, &["build", "web"]);
    let (_, err) = text(&o);
    assert!(
        err.contains("Containerfile:2:6: --chown needs a value"),
        "{err}"
    );
}
