//! `flotilla network …`, `flotilla volume …` and `flotilla system df` as subprocesses against a
//! real daemon (root): each test has its own data root, socket and network prefix, subnets
//! picked at random in 10.200–249.x, and checks the host itself (`ip` for the bridge and its
//! address, `nft` for the daemon's rules). Output follows Docker's (tables, `-q`, `--format
//! json`, exit code 1 with one line per failure, 2 for usage errors). Everything is removed at
//! the end, also when a test fails ([`common::netdaemon::NetDaemon`]'s drop).

mod common;

use common::netdaemon::{IMAGE, NetDaemon, random_subnet, unique};

/// The cells of a table row (columns are two or more spaces apart).
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn network_create_ls_inspect_rm_prune() {
    let mut d = NetDaemon::start(true);
    let (a, b) = random_subnet();
    let tag = unique();
    let name = format!("web{tag}");
    let subnet = format!("10.{a}.{b}.0/24");
    let gateway = format!("10.{a}.{b}.1");

    let id = d.ok(&[
        "network",
        "create",
        "--subnet",
        &subnet,
        "--gateway",
        &gateway,
        "-l",
        "team=blue",
        &name,
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");

    // inspect: a JSON array; the bridge really exists with the gateway's address.
    let inspected: serde_json::Value =
        serde_json::from_str(&d.ok(&["network", "inspect", &name])).unwrap();
    let net = &inspected[0];
    assert_eq!(net["id"], id.as_str());
    assert_eq!(net["subnet"], subnet.as_str());
    assert_eq!(net["labels"]["team"], "blue");
    let bridge = net["bridge"].as_str().unwrap().to_string();
    assert!(bridge.starts_with(&format!("flt{}-b", d.net)), "{bridge}");
    assert_eq!(
        d.links_until(|l| l == [bridge.clone()]),
        vec![bridge.clone()]
    );
    assert!(
        d.addresses(&bridge).contains(&format!("{gateway}/24")),
        "{}",
        d.addresses(&bridge)
    );
    assert!(d.nft_table().contains(&bridge), "{}", d.nft_table());

    // ls: Docker's table, -q, --no-trunc, filters (-f after the command), JSON lines.
    let table = d.ok(&["network", "ls"]);
    let mut lines = table.lines();
    let header = cells(lines.next().unwrap());
    assert_eq!(header, ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row, [&id[..12], name.as_str(), "bridge", "local"]);
    assert_eq!(d.ok(&["network", "ls", "-q"]), format!("{}\n", &id[..12]));
    assert_eq!(
        d.ok(&["network", "ls", "-q", "--no-trunc"]),
        format!("{id}\n")
    );
    assert_eq!(
        d.ok(&["network", "ls", "-q", "-f", "label=team=blue"]),
        format!("{}\n", &id[..12])
    );
    assert_eq!(
        d.ok(&["network", "ls", "-q", "--filter", "name=nomatch"]),
        ""
    );
    let rows = json_lines(&d.ok(&["network", "ls", "--format", "json"]));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["Name"], name.as_str());
    assert_eq!(rows[0]["Labels"], "team=blue");
    let err = d.fails(&["network", "ls", "-f", "dangling=true"], 1);
    assert!(err.contains("invalid filter"), "{err}");

    // Bad input: one clear line, exit 1 (2 for usage), nothing made.
    for (args, text) in [
        (
            vec!["network", "create", "--subnet", "10.0.0.0/33", "x1"],
            "invalid cidr",
        ),
        (
            vec!["network", "create", "-d", "overlay", "x1"],
            "only bridge",
        ),
        (
            vec!["network", "create", "--gateway", "10.0.0.1", "x1"],
            "needs a subnet",
        ),
        (vec!["network", "create", &name], "already exists"),
        (
            vec!["network", "create", "--subnet", &subnet, "x1"],
            "overlaps",
        ),
    ] {
        let err = d.fails(&args, 1);
        assert!(err.contains(text), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    d.fails(&["network", "create"], 2);
    assert_eq!(
        d.links_until(|l| l == [bridge.clone()]),
        vec![bridge.clone()]
    );
    let err = d.fails(&["network", "inspect", &name, "nope"], 1);
    assert!(err.contains("no such network: nope"), "{err}");

    // In use by a container: refused, naming it.
    let project = format!("nc{tag}");
    let stack = d.stack(
        &project,
        &format!(
            "name: {project}\nservices:\n  app:\n    image: {IMAGE}\n    init: true\n    \
             command: [\"sleep\", \"300\"]\n    networks: [ext]\nnetworks:\n  ext:\n    \
             external: true\n    name: {name}\n"
        ),
    );
    d.ok_in(&stack, &["up", "-d"]);
    let err = d.fails(&["network", "rm", &name], 1);
    assert!(err.contains(&format!("{project}-app-1")), "{err}");
    assert_eq!(d.links().iter().filter(|l| **l == bridge).count(), 1);
    d.ok_in(&stack, &["down", "-t", "1"]);

    // rm: the bridge and its rules go.
    assert_eq!(d.ok(&["network", "rm", &name]), format!("{name}\n"));
    assert!(!d.links_until(|l| !l.contains(&bridge)).contains(&bridge));
    assert!(
        common::eventually(|| !d.nft_table().contains(&bridge)),
        "{}",
        d.nft_table()
    );
    let err = d.fails(&["network", "rm", &name], 1);
    assert!(err.contains("not found"), "{err}");
    d.ok(&["network", "rm", "-f", &name]);

    // prune asks (no terminal: cancelled, nothing removed); -f removes unused networks.
    d.ok(&["network", "create", "spare"]);
    let err = d.fails(&["network", "prune"], 1);
    assert!(err.contains("cancelled"), "{err}");
    assert_eq!(d.ok(&["network", "ls", "-q"]).lines().count(), 1);
    assert_eq!(
        d.ok(&["network", "prune", "-f"]),
        "Deleted Networks:\nspare\n"
    );
    assert_eq!(d.ok(&["network", "ls", "-q"]), "");
    assert_eq!(d.ok(&["network", "prune", "-f"]), "");
    d.finish();
}

#[test]
fn volume_commands_and_system_df() {
    let d = NetDaemon::start(false);
    assert_eq!(
        d.ok(&["volume", "create", "data", "-l", "app=db"]),
        "data\n"
    );
    let anon = d.ok(&["volume", "create"]).trim().to_string();
    assert_eq!(anon.len(), 64, "{anon}");

    let table = d.ok(&["volume", "ls"]);
    let lines: Vec<Vec<&str>> = table.lines().map(cells).collect();
    assert_eq!(lines[0], ["DRIVER", "VOLUME NAME"]);
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines.contains(&vec!["local", "data"]), "{table}");
    let mut quiet: Vec<String> = d
        .ok(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect();
    quiet.sort();
    let mut want = vec![anon.clone(), "data".to_string()];
    want.sort();
    assert_eq!(quiet, want);
    assert_eq!(
        d.ok(&["volume", "ls", "-q", "-f", "label=app=db"]),
        "data\n"
    );
    let rows = json_lines(&d.ok(&["volume", "ls", "--format", "json", "-f", "name=dat"]));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["Driver"], "local");
    let inspected: serde_json::Value =
        serde_json::from_str(&d.ok(&["volume", "inspect", "data"])).unwrap();
    let mountpoint = std::path::PathBuf::from(inspected[0]["mountpoint"].as_str().unwrap());
    assert!(mountpoint.is_dir());
    assert_eq!(inspected[0]["labels"]["app"], "db");

    for (args, text) in [
        (vec!["volume", "create", "bad/name"], "volume name"),
        (
            vec!["volume", "create", "-o", "type=tmpfs", "x"],
            "type=tmpfs",
        ),
        (vec!["volume", "create", "-o", "novalue", "x"], "key=value"),
        (vec!["volume", "create", "data"], "already exists"),
        (vec!["volume", "rm", "nope"], "not found"),
        (vec!["volume", "inspect", "nope"], "no such volume: nope"),
    ] {
        let err = d.fails(&args, 1);
        assert!(err.contains(text), "{args:?}: {err}");
    }
    d.ok(&["volume", "rm", "-f", "nope"]);
    assert!(!d.root.join("volumes/x").exists());

    // system df: Docker's rows; the numbers follow what is on disk.
    std::fs::write(mountpoint.join("payload"), vec![1u8; 3000]).unwrap();
    let table = d.ok(&["system", "df"]);
    let rows: Vec<Vec<&str>> = table.lines().map(cells).collect();
    assert_eq!(rows[0], ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
    assert_eq!(rows[1], ["Images", "0", "0", "0B", "0B"]);
    assert_eq!(rows[2], ["Containers", "0", "0", "0B", "0B"]);
    assert_eq!(rows[3], ["Local Volumes", "2", "0", "3kB", "3kB (100%)"]);
    let df = |d: &NetDaemon| json_lines(&d.ok(&["system", "df", "--format", "json"]));
    let before = df(&d);
    assert_eq!(before[0]["Type"], "Images");
    assert_eq!(before[0]["TotalCount"], 0);
    common::daemon::import_busybox(&d.root, IMAGE);
    let after = df(&d);
    assert_eq!(after[0]["TotalCount"], 1);
    assert!(after[0]["SizeBytes"].as_u64().unwrap() > 0, "{after:?}");
    assert_eq!(after[2]["SizeBytes"], 3000);

    // prune: anonymous only by default, -a with a label filter for named ones.
    let err = d.fails(&["volume", "prune"], 1);
    assert!(err.contains("cancelled"), "{err}");
    assert_eq!(
        d.ok(&["volume", "prune", "-f"]),
        format!("Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 0B\n")
    );
    assert_eq!(
        d.ok(&["volume", "prune", "-f", "-a", "--filter", "label=app=web"]),
        "Total reclaimed space: 0B\n"
    );
    assert_eq!(
        d.ok(&["volume", "prune", "-f", "-a", "--filter", "label=app=db"]),
        "Deleted Volumes:\ndata\n\nTotal reclaimed space: 3kB\n"
    );
    assert!(!mountpoint.exists());
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    d.finish();
}
