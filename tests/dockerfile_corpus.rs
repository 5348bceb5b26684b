//! The Dockerfile corpus (tests/fixtures/dockerfiles): realistic files parse and plan as
//! expected; the files under bad/ fail with the located error they are about.

use std::path::PathBuf;

use flotilla::image::build::dockerfile::{self, Command, Form};
use flotilla::image::build::stages::{self, Base, Options};

fn fixture(name: &str) -> (String, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dockerfiles")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    (name.to_string(), text)
}

fn opts() -> Options {
    Options {
        platform: "linux/arm64".into(),
        ..Options::default()
    }
}

#[test]
fn every_good_fixture_parses_and_plans() {
    // file, instructions, stages, the stages the default target builds (in order)
    let table: &[(&str, usize, usize, &[&str])] = &[
        (
            "go-multistage.Dockerfile",
            21,
            4,
            &["final", "deps", "build"],
        ),
        (
            "node-app.Dockerfile",
            20,
            4,
            &["base", "deps", "build", "#3"],
        ),
        ("python-heredocs.Dockerfile", 12, 1, &["#0"]),
        ("windows-escape.Dockerfile", 7, 1, &["#0"]),
        ("legacy.Dockerfile", 12, 1, &["#0"]),
        ("busybox-scratch.Dockerfile", 8, 2, &["gen", "#1"]),
    ];
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dockerfiles");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "Dockerfile") {
            seen += 1;
            let name = p.file_name().unwrap().to_str().unwrap();
            assert!(table.iter().any(|t| t.0 == name), "{name} has no row");
        }
    }
    assert_eq!(seen, table.len());
    for (name, count, nstages, order) in table {
        let (file, text) = fixture(name);
        let df = dockerfile::parse(&file, &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(df.instructions.len(), *count, "{name}");
        let plan = stages::plan(&df, &opts()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.stages.len(), *nstages, "{name}");
        let got: Vec<String> = plan.order.iter().map(|s| plan.stages[*s].label()).collect();
        // Dependencies first; the order of independent stages is by index.
        let mut want: Vec<String> = order.iter().map(|s| s.to_string()).collect();
        want.sort();
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, want, "{name}");
        assert_eq!(
            got.last(),
            Some(&plan.stages[plan.target].label()),
            "{name}"
        );
    }
}

#[test]
fn go_multistage_details() {
    let (file, text) = fixture("go-multistage.Dockerfile");
    let df = dockerfile::parse(&file, &text).unwrap();
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1.7"));
    let plan = stages::plan(&df, &opts()).unwrap();
    assert_eq!(plan.order, [0, 1, 3]);
    assert_eq!(
        plan.stages[0].base,
        Base::Image("golang:1.22-alpine".into())
    );
    assert_eq!(plan.stages[3].base, Base::Image("alpine:3.20".into()));
    assert!(
        plan.stages[0]
            .platform
            .as_deref()
            .unwrap()
            .starts_with("linux/")
    );
    let build = &plan.stages[1];
    assert_eq!(build.base, Base::Stage(0));
    assert_eq!(
        build.steps[3].args.get("TARGETARCH").map(String::as_str),
        Some("arm64")
    );
    let Command::Run { mounts, .. } = &build.steps[3].instruction.command else {
        panic!()
    };
    assert_eq!(mounts.len(), 2);
    let fin = &plan.stages[3];
    assert_eq!(fin.needs, [1]);
    assert_eq!(
        fin.steps[1].text,
        "COPY --from=#1 --chown=app:app /out/server /usr/local/bin/server"
    );
    // Inherits WORKDIR-less env from deps: none set; the test stage is not built.
    let mut o = opts();
    o.target = Some("test".into());
    assert_eq!(stages::plan(&df, &o).unwrap().order, [0, 2]);
    let mut o = opts();
    o.build_args.insert("GO_VERSION".into(), "1.23".into());
    assert_eq!(
        stages::plan(&df, &o).unwrap().stages[0].base,
        Base::Image("golang:1.23-alpine".into())
    );
}

#[test]
fn heredoc_and_escape_details() {
    let (file, text) = fixture("python-heredocs.Dockerfile");
    let df = dockerfile::parse(&file, &text).unwrap();
    let i = &df.instructions;
    assert_eq!(
        i[2].command,
        Command::Shell(vec![
            "/bin/bash".into(),
            "-o".into(),
            "pipefail".into(),
            "-c".into()
        ])
    );
    assert_eq!(i[3].heredocs[0].content.lines().count(), 4);
    assert_eq!(i[4].heredocs[0].content, "[server]\nport = $PORT\n");
    assert!(!i[4].heredocs[0].expand);
    assert_eq!(i[5].heredocs[0].name, "PY");
    assert_eq!(i[6].pos.line, 18);

    let (file, text) = fixture("windows-escape.Dockerfile");
    let df = dockerfile::parse(&file, &text).unwrap();
    assert_eq!(df.escape, '`');
    let plan = stages::plan(&df, &opts()).unwrap();
    let steps = &plan.stages[0].steps;
    assert_eq!(steps[1].text, "WORKDIR C:\\app");
    assert_eq!(
        steps[2].text,
        "ENV APP_HOME=\"C:\\\\app\" LOG_DIR=\"C:\\\\logs\""
    );
    assert_eq!(steps[3].copy.as_ref().unwrap().sources, ["app\\"]);
    assert!(
        matches!(&df.instructions[6].command, Command::Cmd(Form::Exec(v)) if v[1] == "C:\\app\\start.ps1")
    );

    let (file, text) = fixture("legacy.Dockerfile");
    let df = dockerfile::parse(&file, &text).unwrap();
    let plan = stages::plan(&df, &opts()).unwrap();
    let steps = &plan.stages[0].steps;
    assert_eq!(steps[2].text, "ENV APP_DIR=\"/opt/my app\"");
    assert_eq!(steps[9].text, "VOLUME /var/log/nginx /var/cache/nginx");
    assert!(matches!(&df.instructions[7].command, Command::Onbuild(i) if i.keyword == "COPY"));
}

#[test]
fn bad_fixtures_fail_where_they_are_wrong() {
    let table: &[(&str, &str)] = &[
        (
            "unknown-instruction.Dockerfile",
            "unknown-instruction.Dockerfile:3:1: unknown instruction: COPPY (hint: did you mean COPY?)",
        ),
        (
            "missing-continuation.Dockerfile",
            "missing-continuation.Dockerfile:4:7: unknown instruction: jq",
        ),
        (
            "from-arg-without-value.Dockerfile",
            "from-arg-without-value.Dockerfile:2:6: FROM uses the ARG BASE, which has no value (hint: give it a default (ARG BASE=…) or pass --build-arg BASE=…)",
        ),
        (
            "single-quoted-json.Dockerfile",
            "single-quoted-json.Dockerfile:2:5: exec form is not a JSON array of strings",
        ),
        (
            "flag-wrong-instruction.Dockerfile",
            "flag-wrong-instruction.Dockerfile:3:5: RUN does not take the flag --from (hint: --from belongs to COPY)",
        ),
        (
            "unknown-stage-cycle.Dockerfile",
            "unknown-stage-cycle.Dockerfile:3:1: stages depend on each other in a cycle: b → a → b",
        ),
    ];
    for (name, want) in table {
        let (file, text) = fixture(&format!("bad/{name}"));
        let file = file.trim_start_matches("bad/").to_string();
        let got = match dockerfile::parse(&file, &text) {
            Err(e) => e.to_string(),
            Ok(df) => match stages::plan(&df, &opts()) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{name} was accepted"),
            },
        };
        assert!(got.starts_with(want), "{name}\n got: {got}\nwant: {want}");
    }
}
