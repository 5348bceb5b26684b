//! The image commands through the real `flotilla` binary as clients of a real daemon
//! (tests/common/image_daemon.rs: its own data root, socket and config, `--host unix://…`), each
//! test with its own Docker config dir and its own loopback registry (Debian's
//! `docker-registry`, killed on drop): pull output (non-terminal mode), ls, tag, inspect,
//! history, rm and prune with the daemon's store directories checked, push (and to an
//! unreachable registry), login/logout against a registry with htpasswd auth (the CLI's
//! credentials travel as `X-Registry-Auth`), credential helpers, the daemon config file
//! (unknown keys, insecure registries), and Ctrl-C of a push stuck on a silent registry (exit
//! 130, the daemon cancels its push).

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use common::image_daemon::{ImageDaemon, QUIET_DNS};
use common::registry::{Registry, TestImage, busybox_image, files_layer, image_from_layers};
use flotilla::image::push::{PushOptions, push};
use flotilla::image::reference::Reference;
use flotilla::image::registry::RegistryOptions;
use flotilla::image::store::{Digest, Store};

type Env = ImageDaemon;

fn has_blob(env: &Env, digest: &Digest) -> bool {
    env.store_dir("blobs/sha256").join(digest.hex()).is_file()
}

/// Pushes `image` to `name` with flotilla's push library (through a scratch store).
fn push_image(image: &TestImage, name: &str, auth: Option<(&str, &str)>) {
    let reference = Reference::parse(name).expect("reference");
    let scratch = tempfile::tempdir().expect("scratch");
    let store = Store::open(scratch.path()).expect("store");
    image.import(&store, &reference.to_string());
    let options = PushOptions {
        registry: RegistryOptions {
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            ..RegistryOptions::default()
        },
        ..PushOptions::default()
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(push(&store, &reference, &reference, &options))
        .expect("push");
}

fn short(digest: &Digest) -> String {
    digest.hex()[..12].to_string()
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn pull_ls_tag_inspect_rm() {
    let registry = Registry::start();
    let env = Env::start();
    let image = busybox_image("amd64");
    let name = format!("{}/test/busybox:1", registry.host());
    push_image(&image, &name, None);
    let layer = image.layer_digests()[0].clone();
    let config = Digest::sha256_of(&image.config);

    // Pull: the docker-pull-like lines, one per event (stdout is not a terminal).
    let pulled = env.ok(&["image", "pull", &name]);
    assert!(
        pulled.contains(&format!("1: Pulling from {}/test/busybox", registry.host())),
        "{pulled}"
    );
    assert!(
        pulled.contains(&format!("{}: pull complete", short(&layer))),
        "{pulled}"
    );
    assert!(
        pulled.contains(&format!("Digest: {}", image.manifest_digest())),
        "{pulled}"
    );
    assert!(
        pulled.contains(&format!("Status: Downloaded newer image for {name}")),
        "{pulled}"
    );
    assert!(
        !pulled.contains('\r') && !pulled.contains('\x1b'),
        "{pulled}"
    );

    // Again: nothing to do, and it says so.
    let again = env.ok(&["pull", &name]);
    assert!(
        again.contains(&format!("{}: already exists", short(&layer))),
        "{again}"
    );
    assert!(
        again.contains(&format!("Status: Image is up to date for {name}")),
        "{again}"
    );
    let quiet = env.ok(&["pull", "-q", &name]);
    assert_eq!(quiet.trim(), name);

    // ls: repository, tag, 12-hex id, created, size.
    let listed = env.ok(&["image", "ls"]);
    let header = listed.lines().next().expect("header");
    for column in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(column), "{listed}");
    }
    let rows = lines_with(&listed, &format!("{}/test/busybox", registry.host()));
    assert_eq!(rows.len(), 1, "{listed}");
    let cells: Vec<&str> = rows[0]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells[1], "1", "{listed}");
    assert_eq!(cells[2], short(&config), "{listed}");
    assert!(cells[3].ends_with("ago"), "{listed}");
    assert!(
        cells[4].ends_with("MB") || cells[4].ends_with("kB"),
        "{listed}"
    );

    // tag: both names, one id.
    let other = format!("{}/test/other:2", registry.host());
    env.ok(&["image", "tag", &name, &other]);
    let listed = env.ok(&["images"]);
    assert_eq!(lines_with(&listed, &short(&config)).len(), 2, "{listed}");
    assert!(listed.contains("test/other"), "{listed}");
    assert_eq!(env.ok(&["images", "-q"]).trim(), short(&config));
    let json = env.ok(&["image", "ls", "--format", "json"]);
    let first: serde_json::Value =
        serde_json::from_str(json.lines().next().expect("a line")).expect("json line");
    assert_eq!(first["ID"], short(&config));

    // inspect: Docker's fields.
    let inspected = env.ok(&["image", "inspect", &other]);
    let value: serde_json::Value = serde_json::from_str(&inspected).expect("inspect json");
    let entry = &value[0];
    assert_eq!(entry["Id"], config.to_string());
    let tags: Vec<&str> = entry["RepoTags"]
        .as_array()
        .expect("RepoTags")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(
        tags.contains(&name.as_str()) && tags.contains(&other.as_str()),
        "{tags:?}"
    );
    assert!(
        entry["RepoDigests"]
            .to_string()
            .contains(&image.manifest_digest().to_string())
    );
    assert_eq!(entry["Architecture"], "amd64");
    assert_eq!(entry["Os"], "linux");
    assert_eq!(entry["Created"], "2026-01-01T00:00:00Z");
    assert_eq!(entry["Config"]["Cmd"][0], "sh");
    assert!(
        entry["Config"]["Env"]
            .to_string()
            .contains("FLOTILLA_TEST=1")
    );
    assert_eq!(entry["RootFS"]["Type"], "layers");
    assert_eq!(entry["RootFS"]["Layers"][0], image.diff_ids[0].to_string());
    assert!(
        entry["Size"].as_u64().is_some_and(|s| s > 100_000),
        "{entry}"
    );
    // By id too; a missing image is an error after the others are printed.
    let output = env.run(&["image", "inspect", &short(&config), "nope:1"]);
    assert_eq!(output.status.code(), Some(1));
    let both: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(both.as_array().map(Vec::len), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nope:1"));

    // history: newest step first, the image id on it.
    let history = env.ok(&["image", "history", &name]);
    let header = history.lines().next().expect("header");
    for column in ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"] {
        assert!(header.contains(column), "{history}");
    }
    assert!(
        history
            .lines()
            .nth(1)
            .expect("a step")
            .starts_with(&short(&config)),
        "{history}"
    );
    assert_eq!(
        history.lines().count(),
        1 + image.layer_digests().len(),
        "{history}"
    );
    let quiet = env.ok(&["image", "history", "-q", &short(&config)]);
    assert_eq!(
        quiet.lines().next(),
        Some(short(&config).as_str()),
        "{quiet}"
    );

    // push: the manifest goes unchanged (same digest); to a closed port it is a clear error.
    let pushed = env.ok(&["push", &other]);
    assert!(
        pushed.contains(&format!(
            "The push refers to repository [{}/test/other]",
            registry.host()
        )),
        "{pushed}"
    );
    assert!(
        pushed.contains(&format!("2: digest: {}", image.manifest_digest())),
        "{pushed}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let nowhere = format!("127.0.0.1:{closed}/test/nowhere:1");
    env.ok(&["tag", &name, &nowhere]);
    let error = env.fails(&["push", &nowhere]);
    assert!(
        error.contains(&format!("error: push {nowhere}:")),
        "{error}"
    );
    assert_eq!(error.trim().lines().count(), 1, "{error}");
    env.ok(&["rmi", &nowhere]);

    // rm of an id with two names needs force.
    let error = env.fails(&["image", "rm", &short(&config)]);
    assert!(error.contains("several names"), "{error}");

    // rm of one name: the other keeps the blobs and the snapshot.
    let removed = env.ok(&["image", "rm", &other]);
    assert!(removed.contains(&format!("Untagged: {other}")), "{removed}");
    assert!(!removed.contains("Deleted:"), "{removed}");
    assert!(has_blob(&env, &layer) && has_blob(&env, &config));
    assert_eq!(env.entries("layers").len(), 1);
    assert_eq!(env.entries("images").len(), 1);

    // rm of the last name: blobs, snapshots and record gone.
    let removed = env.ok(&["rmi", &name]);
    assert!(removed.contains(&format!("Deleted: {config}")), "{removed}");
    assert!(!has_blob(&env, &layer) && !has_blob(&env, &config));
    assert_eq!(env.entries("blobs/sha256"), Vec::<String>::new());
    assert_eq!(env.entries("layers"), Vec::<String>::new());
    assert_eq!(env.entries("images"), Vec::<String>::new());
    let error = env.fails(&["image", "rm", &name]);
    assert!(
        error.contains(&name) && error.contains("no such image"),
        "{error}"
    );
    assert_eq!(env.ok(&["images", "-q"]), "");
}

#[test]
fn prune_dangling_then_all() {
    let registry = Registry::start();
    let env = Env::start();
    let base = busybox_image("amd64");
    let small = image_from_layers("amd64", vec![files_layer(&[("hello", "world")])]);
    let tagged = format!("{}/test/busybox:1", registry.host());
    let by_digest = format!("{}/test/small:1", registry.host());
    push_image(&base, &tagged, None);
    push_image(&small, &by_digest, None);
    env.ok(&["pull", &tagged]);
    let digest_ref = format!("{}/test/small@{}", registry.host(), small.manifest_digest());
    env.ok(&["pull", &digest_ref]);
    let listed = env.ok(&["images"]);
    assert!(listed.contains("<none>"), "{listed}");

    // Dangling (untagged) images go; tagged ones stay.
    let pruned = env.ok(&["image", "prune"]);
    assert!(
        pruned.contains(&format!("Untagged: {digest_ref}")),
        "{pruned}"
    );
    assert!(pruned.contains("Total reclaimed space:"), "{pruned}");
    assert!(!has_blob(&env, &small.layer_digests()[0]));
    assert!(has_blob(&env, &base.layer_digests()[0]));
    assert_eq!(env.entries("layers").len(), 1);

    // -a: everything unused.
    let pruned = env.ok(&["image", "prune", "-a", "-f"]);
    assert!(pruned.contains(&format!("Untagged: {tagged}")), "{pruned}");
    assert_eq!(env.entries("blobs/sha256"), Vec::<String>::new());
    assert_eq!(env.entries("layers"), Vec::<String>::new());
    assert_eq!(env.entries("images"), Vec::<String>::new());
    let pruned = env.ok(&["image", "prune"]);
    assert_eq!(pruned.trim(), "Total reclaimed space: 0B");
}

#[test]
fn login_pull_logout_with_auth_registry() {
    let registry = Registry::start_with_auth("alice", "s3cret");
    let env = Env::start();
    let image = busybox_image("amd64");
    let name = format!("{}/test/private:1", registry.host());
    push_image(&image, &name, Some(("alice", "s3cret")));

    // Not logged in: refused, and the message says what to do.
    let error = env.fails(&["pull", &name]);
    assert!(
        error.contains("unauthorized") && error.contains(&name),
        "{error}"
    );

    let login = |password: &str| {
        let mut child = env
            .command(&["login", &registry.host(), "-u", "alice", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn login");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{password}\n").as_bytes())
            .expect("write password");
        child.wait_with_output().expect("login")
    };
    let docker_config = env.docker.as_path().join("config.json");

    // A wrong password is checked against the registry and not saved.
    let wrong = login("nope");
    assert_eq!(wrong.status.code(), Some(1));
    let error = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        error.contains("rejected") && error.contains(&registry.host()),
        "{error}"
    );
    assert!(!docker_config.exists());

    let right = login("s3cret");
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    assert!(String::from_utf8_lossy(&right.stdout).contains("Login Succeeded"));
    let mode = fs::metadata(&docker_config)
        .expect("config.json")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let saved: serde_json::Value =
        serde_json::from_slice(&fs::read(&docker_config).expect("read")).expect("json");
    use base64::Engine as _;
    let auth = saved["auths"][registry.host()]["auth"]
        .as_str()
        .expect("auth entry");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .expect("base64");
    assert_eq!(decoded, b"alice:s3cret");

    // Logged in: the pull works, push too.
    let pulled = env.ok(&["pull", &name]);
    assert!(
        pulled.contains("Status: Downloaded newer image"),
        "{pulled}"
    );
    let other = format!("{}/test/private:2", registry.host());
    env.ok(&["tag", &name, &other]);
    let pushed = env.ok(&["push", &other]);
    assert!(
        pushed.contains(&format!("2: digest: {}", image.manifest_digest())),
        "{pushed}"
    );

    // Logout removes the entry; the registry refuses again.
    let out = env.ok(&["logout", &registry.host()]);
    assert!(out.contains("Removing login credentials"), "{out}");
    let saved: serde_json::Value =
        serde_json::from_slice(&fs::read(&docker_config).expect("read")).expect("json");
    assert!(saved["auths"].get(registry.host()).is_none(), "{saved}");
    let out = env.ok(&["logout", &registry.host()]);
    assert!(out.contains("Not logged in"), "{out}");
    let error = env.fails(&["pull", &name]);
    assert!(error.contains("unauthorized"), "{error}");
}

#[test]
fn daemon_config_unknown_key_and_insecure_registry() {
    let registry = Registry::start();
    let image = busybox_image("amd64");
    push_image(&image, &format!("{}/test/busybox:1", registry.host()), None);

    // The registry settings are the daemon's: a typo keeps it from starting, naming the file
    // and the key.
    let typo = format!("{QUIET_DNS}[registries]\ninsecure = []\nmirorrs = []\n");
    let log = match ImageDaemon::try_start(&typo) {
        Ok(_) => panic!("a daemon started with an unknown key"),
        Err(log) => log,
    };
    assert!(log.contains("mirorrs"), "{log}");
    assert!(log.contains("daemon.toml:5:"), "{log}");

    // The CLI reads no daemon config to talk to a daemon on a unix socket: a missing one named
    // explicitly does not matter to it.
    let env = Env::start();
    let missing = env.path().join("missing.toml");
    let output = env
        .command(&["images"])
        .env("FLOTILLA_CONFIG", &missing)
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");

    // `0.0.0.0:<port>` reaches the loopback registry (Linux routes 0.0.0.0 to the local host)
    // but is not a loopback name: without configuration the daemon speaks HTTPS to it and
    // fails.
    let port = registry
        .host()
        .rsplit_once(':')
        .expect("port")
        .1
        .to_string();
    let unlisted = format!("0.0.0.0:{port}/test/busybox:1");
    let error = env.fails(&["pull", &unlisted]);
    assert!(error.contains(&unlisted), "{error}");
    assert_eq!(error.trim().lines().count(), 1, "{error}");
    // Listed as insecure in the daemon's config: plain HTTP, and the pull works.
    let mut env = env;
    env.restart_with(&format!(
        "{QUIET_DNS}[registries]\ninsecure = [\"0.0.0.0:{port}\"]\n"
    ))
    .expect("restart with insecure");
    let pulled = env.ok(&["pull", &unlisted]);
    assert!(
        pulled.contains("Status: Downloaded newer image"),
        "{pulled}"
    );
    assert!(
        env.ok(&["images"])
            .contains(&format!("0.0.0.0:{port}/test/busybox"))
    );
}

#[test]
fn bad_references_and_usage() {
    let env = Env::start();
    let error = env.fails(&["pull", "Bad:Ref:x"]);
    assert!(error.contains("invalid image reference"), "{error}");
    let error = env.fails(&["image", "tag", "nothing:1", "other:1"]);
    assert!(
        error.contains("nothing:1") && error.contains("no such image"),
        "{error}"
    );
    let error = env.fails(&["pull", "--platform", "linux", "busybox"]);
    assert!(error.contains("invalid platform"), "{error}");
    // Unknown images: the daemon's 404, one clear line each.
    for (args, needle) in [
        (
            vec!["image", "history", "nothing:1"],
            "history nothing:1: no such image",
        ),
        (
            vec!["image", "inspect", "nothing:1"],
            "no such image: nothing:1",
        ),
        (vec!["rmi", "nothing:1"], "remove nothing:1: no such image"),
        (vec!["push", "127.0.0.1:5/nothing:1"], "no such image"),
    ] {
        let error = env.fails(&args);
        assert!(error.contains(needle), "{args:?}: {error}");
        assert_eq!(error.trim().lines().count(), 1, "{args:?}: {error}");
    }
    let error = env.fails(&["image", "tag", "nothing:1", "Bad:Ref:x"]);
    assert!(error.contains("invalid image reference"), "{error}");
    // Usage errors exit 2.
    let output = env.run(&["image", "rm"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(Path::new(env!("CARGO_BIN_EXE_flotilla")).exists());
}

/// Writes an executable `docker-credential-<name>` shell script into `dir`: it records the
/// server it was asked about in `dir/asked`, answers `alice`/`s3cret` while `dir/known` exists
/// and "credentials not found" (exit 1, as Docker's helpers do) otherwise.
fn fake_credential_helper(dir: &Path, name: &str) {
    let script = format!(
        "#!/bin/sh\n\
         [ \"$1\" = get ] || exit 3\n\
         read -r server || true\n\
         printf '%s\\n' \"$server\" >> '{asked}'\n\
         if [ -e '{known}' ]; then\n\
         printf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"s3cret\"}}\\n' \"$server\"\n\
         else echo 'credentials not found in native keychain'; exit 1; fi\n",
        asked = dir.join("asked").display(),
        known = dir.join("known").display()
    );
    let path = dir.join(format!("docker-credential-{name}"));
    fs::write(&path, script).expect("write helper");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod helper");
}

#[test]
fn credential_helpers_are_asked_for_credentials() {
    let registry = Registry::start_with_auth("alice", "s3cret");
    let env = Env::start();
    let image = busybox_image("amd64");
    let name = format!("{}/test/helped:1", registry.host());
    push_image(&image, &name, Some(("alice", "s3cret")));
    let bin = tempfile::tempdir().expect("helper dir");
    fake_credential_helper(bin.path(), "flttest");
    fs::write(bin.path().join("known"), "").expect("known");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let docker_config = env.docker.as_path().join("config.json");
    let pull = |args: &[&str]| {
        env.command(args)
            .env("PATH", &path)
            .output()
            .expect("run flotilla")
    };

    // credHelpers names the helper for this registry: it is asked, and the pull succeeds.
    let helpers = serde_json::json!({ "credHelpers": { registry.host(): "flttest" } });
    fs::write(&docker_config, helpers.to_string()).expect("config.json");
    let output = pull(&["pull", "-q", &name]);
    assert!(output.status.success(), "{output:?}");
    let asked = fs::read_to_string(bin.path().join("asked")).expect("helper asked");
    assert_eq!(asked.trim(), registry.host());

    // credsStore is the default helper; one that has nothing for the registry is not an error,
    // the registry's 401 is.
    fs::write(
        &docker_config,
        serde_json::json!({ "credsStore": "flttest" }).to_string(),
    )
    .expect("config.json");
    env.ok(&["image", "rm", &name]);
    let output = pull(&["pull", "-q", &name]);
    assert!(output.status.success(), "{output:?}");
    env.ok(&["image", "rm", &name]);
    fs::remove_file(bin.path().join("known")).expect("forget the credentials");
    let output = pull(&["pull", &name]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unauthorized"), "{stderr}");
    let asked = fs::read_to_string(bin.path().join("asked")).expect("asked");
    assert_eq!(asked.lines().count(), 3, "{asked}");

    // A helper that is not installed is a clear error naming it.
    fs::write(
        &docker_config,
        serde_json::json!({ "credsStore": "flt-missing-helper" }).to_string(),
    )
    .expect("config.json");
    let output = pull(&["pull", &name]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("docker-credential-flt-missing-helper not found in PATH"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_of_push_exits_130_and_the_daemon_cancels_it() {
    let env = Env::start();
    common::daemon::import_busybox(&env.root, "flotilla.test/busybox:1");
    // A "registry" on 127.0.0.1 that accepts connections and never answers: the daemon's push
    // waits on it until the client goes away.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept() {
            held.push(stream);
            if accepted_tx.send(()).is_err() {
                return;
            }
        }
    });
    let target = format!("127.0.0.1:{port}/test/silent:1");
    env.ok(&["tag", "flotilla.test/busybox:1", &target]);
    let mut child = env
        .command(&["push", &target])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn push");
    accepted
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the daemon never reached the registry");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the push did not stop after SIGINT");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("push output");
    assert_eq!(output.status.code(), Some(130), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        format!("push {target}: cancelled")
    );
    // The daemon saw the client go and stopped its push (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !env.log().contains("push cancelled") {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon's push was not cancelled:\n{}",
            env.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
