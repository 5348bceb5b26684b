//! Unit tests of the build foundation: parser, stage graph and cache keys.

use std::collections::BTreeMap;

use super::cache::{self, Context};
use super::dockerfile::{Command, Form, parse};
use super::ignore::Patterns;
use super::stages::{self, Base, Options, Source};

fn opts() -> Options {
    Options {
        platform: "linux/amd64".into(),
        ..Options::default()
    }
}

fn one(text: &str) -> super::dockerfile::Instruction {
    let df = parse("Dockerfile", text).unwrap();
    df.instructions.into_iter().last().unwrap()
}

fn err(text: &str) -> String {
    parse("Dockerfile", text).unwrap_err().to_string()
}

fn plan_err(text: &str, o: &Options) -> String {
    let df = parse("Dockerfile", text).unwrap();
    stages::plan(&df, o).unwrap_err().to_string()
}

#[test]
fn parse_errors_are_located_with_hints() {
    let table: &[(&str, &str)] = &[
        (
            "FROM a\nRUNN x\n",
            "Dockerfile:2:1: unknown instruction: RUNN (hint: did you mean RUN?)",
        ),
        (
            "FROM a\nBOGUS x\n",
            "Dockerfile:2:1: unknown instruction: BOGUS",
        ),
        (
            "FROM a\nRUN apt-get install \\\n  x\n  y=1\n",
            "Dockerfile:4:3: unknown instruction: y=1 (hint: is the line before missing a \\ at its end?)",
        ),
        (
            "FROM a\nRUN --from=b ls\n",
            "Dockerfile:2:5: RUN does not take the flag --from (hint: --from belongs to COPY)",
        ),
        (
            "FROM a\nENV --chown=1 A=b\n",
            "Dockerfile:2:5: ENV does not take the flag --chown (hint: --chown belongs to ADD, COPY)",
        ),
        (
            "FROM a\nCOPY --form=b x y\n",
            "Dockerfile:2:6: COPY does not take the flag --form (hint: did you mean --from?)",
        ),
        (
            "FROM a\nADD --from=b x y\n",
            "Dockerfile:2:5: ADD does not take the flag --from (hint: --from belongs to COPY)",
        ),
        (
            "FROM --platform=linux/amd64 --platform=x a\n",
            "Dockerfile:1:29: --platform is given twice",
        ),
        (
            "FROM a\nCMD ['sh', '-c']\n",
            "Dockerfile:2:5: exec form is not a JSON array of strings",
        ),
        (
            "FROM a\nENTRYPOINT [\"a\", \"b\",]\n",
            "Dockerfile:2:12: exec form is not a JSON array",
        ),
        (
            "FROM a\nSHELL /bin/bash -c\n",
            "Dockerfile:2:7: SHELL takes the exec (JSON) form",
        ),
        (
            "FROM a\nCOPY x\n",
            "Dockerfile:2:7: COPY needs at least a source and a destination",
        ),
        ("FROM\n", "Dockerfile:1:5: FROM needs an image"),
        ("FROM a AS\n", "Dockerfile:1:10: FROM AS needs a stage name"),
        (
            "FROM a AS 1x\n",
            "Dockerfile:1:11: invalid stage name \"1x\"",
        ),
        (
            "FROM a b\n",
            "Dockerfile:1:8: unexpected \"b\" after the image",
        ),
        (
            "FROM a\nENV A=1 B\n",
            "Dockerfile:2:9: \"B\" is not name=value",
        ),
        ("FROM a\nENV A\n", "Dockerfile:2:6: ENV A needs a value"),
        (
            "FROM a\nARG 9x=1\n",
            "Dockerfile:2:5: invalid ARG name \"9x\"",
        ),
        ("FROM a\nUSER a b\n", "Dockerfile:2:8: USER takes one value"),
        ("FROM a\nRUN\n", "Dockerfile:2:4: RUN needs a command"),
        (
            "FROM a\nRUN --network=bridge ls\n",
            "Dockerfile:2:15: unknown network mode \"bridge\"",
        ),
        (
            "FROM a\nRUN --mount=type=nfs,target=/x ls\n",
            "Dockerfile:2:5: unknown mount type \"nfs\"",
        ),
        (
            "FROM a\nRUN --mount=type=cache ls\n",
            "Dockerfile:2:5: a cache mount needs target=",
        ),
        (
            "FROM a\nRUN --mount=type=cache,target=/c,colour=red ls\n",
            "Dockerfile:2:5: unknown mount option \"colour\"",
        ),
        (
            "FROM a\nHEALTHCHECK --interval=5 CMD true\n",
            "Dockerfile:2:13: --interval: invalid duration",
        ),
        (
            "FROM a\nHEALTHCHECK --retries=0 CMD true\n",
            "Dockerfile:2:13: --retries must be a positive number",
        ),
        (
            "FROM a\nHEALTHCHECK --interval=1s NONE\n",
            "Dockerfile:2:13: HEALTHCHECK NONE takes no options (--interval)",
        ),
        (
            "FROM a\nHEALTHCHECK echo\n",
            "Dockerfile:2:13: HEALTHCHECK needs NONE or CMD",
        ),
        (
            "FROM a\nONBUILD ONBUILD RUN x\n",
            "Dockerfile:2:9: ONBUILD is not allowed in ONBUILD",
        ),
        (
            "FROM a\nONBUILD FROM b\n",
            "Dockerfile:2:9: FROM is not allowed in ONBUILD",
        ),
        (
            "FROM a\nRUN <<EOF\necho\n",
            "Dockerfile:2:5: heredoc <<EOF has no terminator",
        ),
        (
            "# escape=x\nFROM a\n",
            "Dockerfile:1:1: invalid escape character \"x\"",
        ),
        (
            "# escape=\\\n# escape=`\nFROM a\n",
            "Dockerfile:2:1: the escape parser directive is given twice",
        ),
        (
            "FROM a\nCOPY --link=maybe a b\n",
            "Dockerfile:2:6: --link takes true or false",
        ),
        (
            "FROM a\nCOPY --chown a b\n",
            "Dockerfile:2:6: --chown needs a value",
        ),
    ];
    for (text, want) in table {
        let got = err(text);
        assert!(got.starts_with(want), "{text:?}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn directives_comments_continuations() {
    let df = parse(
        "Dockerfile",
        "# syntax=docker/dockerfile:1.7\n# escape=`\n# a comment\nFROM busybox\nRUN echo a `\n# comment inside\n\n    && echo b\n",
    )
    .unwrap();
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1.7"));
    assert_eq!(df.escape, '`');
    assert_eq!(df.instructions.len(), 2);
    let run = &df.instructions[1];
    assert_eq!(run.pos.line, 5);
    assert_eq!(run.text, "echo a     && echo b");
    // A directive after a comment is a comment.
    let df = parse("Dockerfile", "# hello\n# escape=`\nFROM a\nRUN x \\\n y\n").unwrap();
    assert_eq!(df.escape, '\\');
    assert_eq!(df.instructions[1].text, "x  y");
    // CRLF, BOM, lower-case keywords.
    let df = parse("Dockerfile", "\u{feff}from a\r\nrun  echo hi\r\n").unwrap();
    assert_eq!(df.instructions[1].keyword, "RUN");
    assert_eq!(df.instructions[1].text, "echo hi");
}

#[test]
fn forms_and_flags() {
    let i = one("FROM a\nRUN [\"echo\", \"a b\"]\n");
    let Command::Run { form, .. } = i.command else {
        panic!()
    };
    assert_eq!(form, Form::Exec(vec!["echo".into(), "a b".into()]));
    // The shell's test brackets stay the shell form.
    let i = one("FROM a\nRUN [ -f /x ] || touch /x\n");
    let Command::Run { form, .. } = i.command else {
        panic!()
    };
    assert_eq!(form, Form::Shell("[ -f /x ] || touch /x".into()));
    let i = one("FROM a\nRUN [ \"$A\" = \"b\" ] && echo yes\n");
    assert!(matches!(
        i.command,
        Command::Run {
            form: Form::Shell(_),
            ..
        }
    ));

    let i = one(
        "FROM a\nRUN --mount=type=cache,target=/root/.cache,sharing=locked --mount=type=bind,from=build,source=/out,target=/in --network=none make\n",
    );
    let Command::Run {
        mounts, network, ..
    } = i.command
    else {
        panic!()
    };
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[0].kind, "cache");
    assert_eq!(mounts[0].target.as_deref(), Some("/root/.cache"));
    assert_eq!(mounts[1].from.as_deref(), Some("build"));
    assert_eq!(network.as_deref(), Some("none"));

    let i = one("FROM a\nCOPY --from=build --chown=1000:1000 --chmod=0755 --link a b /dst/\n");
    let Command::Copy(c) = i.command else {
        panic!()
    };
    assert_eq!(c.from.unwrap().raw, "build");
    assert_eq!(c.chown.unwrap().raw, "1000:1000");
    assert_eq!(c.chmod.unwrap().raw, "0755");
    assert!(c.link);
    assert_eq!(
        c.sources.iter().map(|w| w.raw.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(c.dest.unwrap().raw, "/dst/");

    let i = one("FROM a\nCOPY [\"with space.txt\", \"/d st/\"]\n");
    let Command::Copy(c) = i.command else {
        panic!()
    };
    assert_eq!(c.sources.len(), 1);

    let i = one(
        "FROM a\nHEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD curl -f http://localhost/ || exit 1\n",
    );
    let Command::Healthcheck(Some(h)) = i.command else {
        panic!()
    };
    assert_eq!(h.interval, Some(std::time::Duration::from_secs(30)));
    assert_eq!(h.retries, Some(3));
    assert_eq!(
        h.test,
        Form::Shell("curl -f http://localhost/ || exit 1".into())
    );
    assert!(matches!(
        one("FROM a\nHEALTHCHECK none\n").command,
        Command::Healthcheck(None)
    ));

    let i = one("FROM a\nONBUILD COPY . /app\n");
    let Command::Onbuild(inner) = i.command else {
        panic!()
    };
    assert_eq!(inner.keyword, "COPY");
    assert_eq!(inner.pos.col, 9);

    assert!(
        matches!(one("FROM a\nMAINTAINER Jo <jo@x>\n").command, Command::Maintainer(m) if m == "Jo <jo@x>")
    );
    assert!(
        matches!(one("FROM a\nSHELL [\"/bin/bash\", \"-euo\", \"pipefail\", \"-c\"]\n").command, Command::Shell(v) if v.len() == 4)
    );
    assert!(matches!(one("FROM a\nCMD []\n").command, Command::Cmd(Form::Exec(v)) if v.is_empty()));
}

#[test]
fn env_label_arg_forms() {
    let Command::Env(p) = one("FROM a\nENV A=1 B=\"two words\" C=a\\ b\n").command else {
        panic!()
    };
    let raw: Vec<(&str, &str)> = p
        .iter()
        .map(|(k, v)| (k.raw.as_str(), v.raw.as_str()))
        .collect();
    assert_eq!(raw, [("A", "1"), ("B", "\"two words\""), ("C", "a\\ b")]);
    let Command::Env(p) = one("FROM a\nENV GREETING hello  big world\n").command else {
        panic!()
    };
    assert_eq!(p[0].0.raw, "GREETING");
    assert_eq!(p[0].1.raw, "hello  big world");
    let Command::Label(p) =
        one("FROM a\nLABEL \"com.example.vendor\"=\"ACME Inc\" version=1.0\n").command
    else {
        panic!()
    };
    assert_eq!(p.len(), 2);
    let Command::Arg(a) = one("ARG A B=2 C=\"x y\"\n").command else {
        panic!()
    };
    assert_eq!(a[0], ("A".to_string(), None));
    assert_eq!(a[1].1.as_ref().unwrap().raw, "2");
}

#[test]
fn heredocs() {
    let df = parse(
        "Dockerfile",
        "FROM a\nRUN <<EOF\necho $HOME\n  indented\nEOF\nRUN <<-\"END\" cat > /x\n\t\tliteral $HOME\n\tEND\nCOPY <<one.txt <<'two' /dst/\nfirst\none.txt\nsecond\ntwo\nRUN echo after\n",
    )
    .unwrap();
    let i = &df.instructions;
    assert_eq!(i.len(), 5);
    assert_eq!(i[1].heredocs[0].content, "echo $HOME\n  indented\n");
    assert!(i[1].heredocs[0].expand);
    assert_eq!(i[2].heredocs[0].content, "literal $HOME\n");
    assert!(!i[2].heredocs[0].expand);
    assert!(i[2].heredocs[0].strip_tabs);
    assert_eq!(i[3].heredocs.len(), 2);
    assert_eq!(i[3].heredocs[0].name, "one.txt");
    assert_eq!(i[3].heredocs[1].content, "second\n");
    assert_eq!(i[4].pos.line, 14);
    // `<<<` is a here-string, exec form has no heredocs.
    let df = parse(
        "Dockerfile",
        "FROM a\nRUN cat <<<x\nRUN [\"cat\", \"<<EOF\"]\n",
    )
    .unwrap();
    assert!(df.instructions.iter().all(|i| i.heredocs.is_empty()));
}

#[test]
fn expansion_happens_where_docker_expands() {
    let df = parse(
        "Dockerfile",
        "ARG BASE=busybox\nARG TAG=1.36\nFROM ${BASE}:${TAG} AS base\nARG TAG\nARG DIR=/srv\nENV APP=$DIR/app HOME_=\"${DIR:-/x} y\"\nWORKDIR $APP\nUSER ${UID:-1000}\nEXPOSE ${PORT:-80}/tcp 443\nLABEL v=$TAG\nCOPY --chown=${UID:-1}:0 src $APP/\nRUN echo $APP\nCMD echo $APP\n",
    )
    .unwrap();
    let p = stages::plan(&df, &opts()).unwrap();
    let s = &p.stages[0];
    assert_eq!(s.base, Base::Image("busybox:1.36".into()));
    let texts: Vec<&str> = s.steps.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "ARG TAG=1.36",
            "ARG DIR=/srv",
            "ENV APP=/srv/app HOME_=\"/srv y\"",
            "WORKDIR /srv/app",
            "USER 1000",
            "EXPOSE 80/tcp 443",
            "LABEL v=1.36",
            "COPY --chown=1:0 src /srv/app/",
            "RUN echo $APP",
            "CMD echo $APP",
        ]
    );
    assert_eq!(s.steps[8].args.get("DIR").map(String::as_str), Some("/srv"));
    assert_eq!(s.env.get("APP").map(String::as_str), Some("/srv/app"));

    // Build args override defaults; a global ARG is not visible in a stage unless redeclared.
    let mut o = opts();
    o.build_args.insert("TAG".into(), "2".into());
    o.build_args.insert("NOPE".into(), "x".into());
    let df = parse(
        "Dockerfile",
        "ARG TAG=1\nFROM img:$TAG\nRUN true\nLABEL t=\"$TAG\"\n",
    )
    .unwrap();
    let p = stages::plan(&df, &o).unwrap();
    assert_eq!(p.stages[0].base, Base::Image("img:2".into()));
    assert_eq!(p.stages[0].steps[1].text, "LABEL t=\"\"");
    assert_eq!(p.unused_build_args, ["NOPE"]);
    // ENV wins over ARG; platform args.
    let df = parse("Dockerfile", "FROM --platform=$BUILDPLATFORM a\nARG TARGETARCH\nARG X=arg\nENV X=env\nWORKDIR /$X/$TARGETARCH\n").unwrap();
    let p = stages::plan(&df, &opts()).unwrap();
    assert_eq!(p.stages[0].steps[3].text, "WORKDIR /env/amd64");
    assert!(
        p.stages[0]
            .platform
            .as_deref()
            .unwrap()
            .starts_with("linux/")
    );
}

#[test]
fn stage_plan_errors() {
    let table: &[(&str, &str)] = &[
        (
            "ARG V\nFROM img:$V\n",
            "Dockerfile:2:6: FROM uses the ARG V, which has no value (hint: give it a default",
        ),
        (
            "FROM $NOTHING\n",
            "Dockerfile:1:6: FROM $NOTHING is empty once expanded",
        ),
        (
            "RUN x\nFROM a\n",
            "Dockerfile:1:1: RUN before the first FROM",
        ),
        ("ARG A=1\n", "no FROM"),
        (
            "FROM a AS x\nFROM b AS x\n",
            "Dockerfile:2:1: stage name \"x\" is already used by stage #0",
        ),
        (
            "FROM a\nCOPY --from=3 x y\n",
            "Dockerfile:2:13: --from=3: there is no stage #3",
        ),
        (
            "FROM a AS me\nCOPY --from=me x y\n",
            "--from=me is the stage itself",
        ),
        (
            "FROM a AS one\nCOPY --from=two x y\nFROM b AS two\nCOPY --from=one x y\n",
            "stages depend on each other in a cycle: two → one → two",
        ),
        ("FROM a\nWORKDIR ${X:?set X}\n", "Dockerfile:2:9: X: set X"),
        (
            "FROM a\nCOPY --chmod=999 a b\n",
            "--chmod=999 is not a mode",
        ),
    ];
    for (text, want) in table {
        let got = plan_err(text, &opts());
        assert!(got.contains(want), "{text:?}\n got: {got}\nwant: {want}");
    }
    let mut o = opts();
    o.target = Some("buidl".into());
    let got = plan_err("FROM a AS build\nFROM b\n", &o);
    assert_eq!(
        got,
        "Dockerfile:1:1: target stage \"buidl\" could not be found (hint: did you mean build?)"
    );
}

#[test]
fn target_needs_only_its_stages() {
    let text = "FROM golang AS deps\nRUN go mod download\nFROM deps AS build\nCOPY . .\nRUN go build -o /out/app\nFROM alpine AS lint\nRUN lint\nFROM node AS assets\nRUN npm run build\nFROM scratch AS final\nCOPY --from=build /out/app /app\nCOPY --from=assets /dist /www\nCOPY --from=nginx:1.27 /etc/nginx /etc/nginx\nRUN --mount=type=bind,from=lint,target=/l true\n";
    let df = parse("Dockerfile", text).unwrap();
    let p = stages::plan(&df, &opts()).unwrap();
    assert_eq!(p.target, 4);
    assert_eq!(p.stages[4].base, Base::Scratch);
    assert_eq!(p.stages[4].needs, [1, 2, 3]);
    assert_eq!(p.stages[4].images, ["nginx:1.27"]);
    assert_eq!(p.stages[1].base, Base::Stage(0));
    assert_eq!(p.order, [0, 1, 2, 3, 4]);
    assert_eq!(
        p.stages[4].steps[2].copy.as_ref().unwrap().from,
        Some(Source::Image("nginx:1.27".into()))
    );
    let mut o = opts();
    o.target = Some("BUILD".into());
    let p = stages::plan(&df, &o).unwrap();
    assert_eq!(p.target, 1);
    assert_eq!(p.order, [0, 1]);
    // COPY --from a later stage by name is fine (no cycle); by index too.
    let df = parse(
        "Dockerfile",
        "FROM a\nCOPY --from=late x y\nFROM b AS late\nCOPY --from=0 x y\n",
    );
    assert!(stages::plan(&df.unwrap(), &opts()).is_err());
    let df = parse(
        "Dockerfile",
        "FROM a AS first\nCOPY --from=late x y\nFROM b AS late\nFROM first\n",
    )
    .unwrap();
    let p = stages::plan(&df, &opts()).unwrap();
    assert_eq!(p.order, [1, 0, 2]);
    // --from expands the global ARGs.
    let df = parse("Dockerfile", "ARG V=1.2\nFROM a\nCOPY --from=img:$V x y\n").unwrap();
    let p = stages::plan(&df, &opts()).unwrap();
    assert_eq!(p.stages[0].images, ["img:1.2"]);
    // One ENV line sees the values from before it (Docker's documented abc/def example).
    let df = parse(
        "Dockerfile",
        "FROM a\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n",
    )
    .unwrap();
    let p = stages::plan(&df, &opts()).unwrap();
    assert_eq!(
        p.stages[0].env.get("def").map(String::as_str),
        Some("hello")
    );
    assert_eq!(p.stages[0].env.get("ghi").map(String::as_str), Some("bye"));
    // A stage FROM an earlier stage inherits its ENV.
    let df = parse(
        "Dockerfile",
        "FROM a AS one\nENV P=/opt\nFROM one\nWORKDIR $P/x\n",
    )
    .unwrap();
    let p = stages::plan(&df, &opts()).unwrap();
    assert_eq!(p.stages[1].steps[0].text, "WORKDIR /opt/x");
}

fn write(dir: &std::path::Path, rel: &str, content: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn keys(dir: &std::path::Path, text: &str, o: &Options) -> Vec<String> {
    let df = parse("Dockerfile", text).unwrap();
    let p = stages::plan(&df, o).unwrap();
    let mut ctx = Context::open(dir).unwrap();
    let all = cache::plan_keys(&p, &mut ctx, &|r: &str| format!("image:{r}")).unwrap();
    all.into_values().flatten().collect()
}

#[test]
fn cache_keys_change_from_the_step_that_reads_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "go.mod", "module x\n");
    write(d, "src/main.go", "package main\n");
    write(d, "src/util.go", "package main // util\n");
    write(d, "README.md", "hello\n");
    write(d, "secret.env", "TOKEN=1\n");
    write(d, ".dockerignore", "secret.env\n*.md\n");
    let text = "FROM busybox\nCOPY go.mod /src/\nRUN echo deps\nCOPY src /src/\nRUN echo build\nCOPY . /all/\n";
    let o = opts();
    let k0 = keys(d, text, &o);
    assert_eq!(k0.len(), 5);
    assert_eq!(keys(d, text, &o), k0, "keys are stable");

    // One late-copied file: that step and later ones change, no earlier one.
    write(d, "src/util.go", "package main // changed\n");
    let k1 = keys(d, text, &o);
    assert_eq!(k1[..2], k0[..2]);
    assert!(k1[2..].iter().zip(&k0[2..]).all(|(a, b)| a != b));

    // The early file: everything changes.
    write(d, "go.mod", "module y\n");
    let k2 = keys(d, text, &o);
    assert!(k2.iter().zip(&k1).all(|(a, b)| a != b));

    // Ignored files change nothing, even for `COPY .`.
    write(d, "secret.env", "TOKEN=2\n");
    write(d, "README.md", "changed\n");
    assert_eq!(keys(d, text, &o), k2);

    // A mode change counts.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        d.join("src/main.go"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let k3 = keys(d, text, &o);
    assert_eq!(k3[..2], k2[..2]);
    assert_ne!(k3[2], k2[2]);

    // A build arg in effect changes the steps after its ARG line, not before.
    let text = "FROM busybox\nRUN one\nARG V=1\nRUN two\n";
    let a = keys(d, text, &o);
    let mut o2 = opts();
    o2.build_args.insert("V".into(), "2".into());
    let b = keys(d, text, &o2);
    assert_eq!(a[0], b[0]);
    assert_ne!(a[1], b[1]);
    assert_ne!(a[2], b[2]);

    // The base image is part of the chain.
    let a = keys(d, "FROM busybox:1\nRUN x\n", &o);
    let b = keys(d, "FROM busybox:2\nRUN x\n", &o);
    assert_ne!(a, b);
}

#[test]
fn cache_keys_across_stages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a.c", "int main(){}\n");
    write(d, "notes.txt", "x\n");
    let text = "FROM gcc AS build\nCOPY a.c /\nRUN cc a.c\nFROM scratch\nCOPY notes.txt /\nCOPY --from=build /a.out /\n";
    let k0 = keys(d, text, &opts());
    write(d, "a.c", "int main(){return 1;}\n");
    let k1 = keys(d, text, &opts());
    // Stage 0's two steps change; in the final stage the notes step stays, the copy changes.
    assert_ne!(k0[0], k1[0]);
    assert_eq!(k0[2], k1[2]);
    assert_ne!(k0[3], k1[3]);
}

#[test]
fn cache_context_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "x", "1");
    let mut ctx = Context::with_ignore(d, Patterns::parse("x\n"));
    let e = ctx.hash_sources(&["../etc/passwd".into()]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "\"../etc/passwd\" is outside the build context"
    );
    let e = ctx.hash_sources(&["x".into()]).unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    let e = ctx.hash_sources(&["missing/*.c".into()]).unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    // `.` and `/` mean the whole (filtered) context, even when it is empty.
    assert!(ctx.hash_sources(&[".".into()]).is_ok());
    let k = cache::step_key("p", "RUN x", &BTreeMap::new(), None);
    assert!(k.starts_with("sha256:") && k.len() == 71);
}

proptest::proptest! {
    /// Any text made of Dockerfile pieces parses or fails with an error; it never panics, nor
    /// does planning what parsed.
    #[test]
    fn parser_and_planner_never_panic(
        pieces in proptest::collection::vec(
            proptest::sample::select(vec![
                "FROM ", "RUN ", "COPY ", "ADD ", "ENV ", "ARG ", "ONBUILD ", "HEALTHCHECK ",
                "SHELL ", "LABEL ", "USER ", "CMD ", "NONE", "a", "b=1", "<<EOF", "<<-'E'", "EOF",
                "E", "\t", "${A:-x}", "$", "${", "}", "--from=", "--from=a", "--mount=type=cache",
                "[\"a\", ", "['a', ", "]", "'", "\"", " ", "\n", "\\", "\\\n", "#", "# escape=`\n",
                "=", " AS b", "`", "é", "--", "0", "\r\n",
            ]),
            0..40,
        )
    ) {
        let text: String = pieces.concat();
        if let Ok(df) = parse("Dockerfile", &text) {
            let _ = stages::plan(&df, &opts());
        }
    }
}
