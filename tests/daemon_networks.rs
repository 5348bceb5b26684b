//! Contract tests of `/v1/networks`, `/v1/volumes` (with prune) and `/v1/system/df` through a
//! real daemon's socket (root: real bridges, nftables rules, namespaces). Each test has its
//! own data root, socket and network prefix (`flt<prefix>-…` bridges, table `inet
//! flt<prefix>`), subnets picked at random in 10.200–249.x, and checks that bad input leaves
//! nothing behind; everything is removed at the end, also when a test fails
//! ([`common::netdaemon::NetDaemon`]'s drop).

mod common;

use bytes::Bytes;
use common::netdaemon::{NetDaemon, random_subnet, unique};
use flotilla::api::client::{Client, NetworkFilter};
use flotilla::api::types::{
    DiskUsage, ErrorBody, ErrorCode, Network, NetworkCreate, NetworkIpam, NetworksPruned,
    VolumeCreate, VolumesPruned,
};
use http::{Method, StatusCode};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A request with a raw body; the status and the decoded error (if it is one).
async fn raw(
    c: &Client,
    method: Method,
    path: &str,
    body: &str,
) -> (StatusCode, Option<ErrorBody>) {
    let body = (!body.is_empty()).then(|| Bytes::from(body.to_string()));
    let (status, bytes) = c.raw(method, path, body).await.unwrap();
    (status, serde_json::from_slice(&bytes).ok())
}

/// Expects `status` with the error code of that status and a message containing `text`.
async fn refused(
    c: &Client,
    method: Method,
    path: &str,
    body: &str,
    status: StatusCode,
    text: &str,
) {
    let (got, err) = raw(c, method.clone(), path, body).await;
    let err = err.unwrap_or_else(|| panic!("{method} {path} {body}: no JSON error ({got})"));
    assert_eq!(got, status, "{method} {path} {body}: {}", err.message);
    let code = match status {
        StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::CONFLICT => ErrorCode::Conflict,
        _ => ErrorCode::Unknown,
    };
    assert_eq!(err.code, code, "{}", err.message);
    assert!(
        err.message.contains(text),
        "{method} {path} {body}: {:?} does not contain {text:?}",
        err.message
    );
}

/// The logged events of `kind` as (action, name), replayed from the daemon's event log.
async fn events(c: &Client, kind: &str) -> Vec<(String, String)> {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let (status, body) = c
        .raw(
            Method::GET,
            &format!("/v1/events?since=0&until={until}"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == kind || e["kind"] == kind)
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_string(),
                e["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn network_endpoints_create_list_inspect_remove_prune_and_refuse_bad_input() {
    let d = NetDaemon::start(false);
    let c = d.client();
    let (a, b) = random_subnet();
    let name = format!("n{}", unique());
    rt().block_on(async {
        let subnet = format!("10.{a}.{b}.0/24");
        let req = NetworkCreate {
            name: name.clone(),
            driver: None,
            internal: false,
            labels: [("team".to_string(), "blue".to_string())].into(),
            ipam: Some(NetworkIpam {
                subnet: Some(subnet.clone()),
                gateway: Some(format!("10.{a}.{b}.254")),
                ip_range: Some(format!("10.{a}.{b}.128/25")),
            }),
        };
        let net = c.create_network(&req).await.unwrap();
        assert_eq!(net.name, name);
        assert_eq!(net.id.len(), 64);
        assert_eq!((net.driver.as_str(), net.scope.as_str()), ("bridge", "local"));
        assert_eq!(net.subnet, subnet);
        assert_eq!(net.gateway, format!("10.{a}.{b}.254"));
        assert_eq!(net.ip_range.as_deref(), Some(format!("10.{a}.{b}.128/25").as_str()));
        assert!(net.containers.is_empty());
        // The bridge is there, with the prefix of this daemon and the gateway's address; the
        // table of this daemon knows it.
        assert_eq!(
            d.links_until(|l| l == [net.bridge.clone()]),
            vec![net.bridge.clone()]
        );
        assert!(net.bridge.starts_with(&format!("flt{}-b", d.net)), "{}", net.bridge);
        assert!(
            d.addresses(&net.bridge)
                .contains(&format!("10.{a}.{b}.254/24")),
            "{}",
            d.addresses(&net.bridge)
        );
        assert!(d.nft_table().contains(&net.bridge), "{}", d.nft_table());

        // Inspect by name, id and id prefix; list with filters.
        assert_eq!(c.inspect_network(&name).await.unwrap(), net);
        assert_eq!(c.inspect_network(&net.id).await.unwrap(), net);
        assert_eq!(c.inspect_network(&net.id[..12]).await.unwrap(), net);
        let all = c.list_networks(&NetworkFilter::default()).await.unwrap();
        assert_eq!(all, vec![net.clone()]);
        let by = |label: Option<&str>, name: Option<&str>| NetworkFilter {
            label: label.map(str::to_string),
            name: name.map(str::to_string),
        };
        assert_eq!(c.list_networks(&by(Some("team=blue"), None)).await.unwrap().len(), 1);
        assert_eq!(c.list_networks(&by(Some("team"), None)).await.unwrap().len(), 1);
        assert!(c.list_networks(&by(Some("team=red"), None)).await.unwrap().is_empty());
        assert_eq!(c.list_networks(&by(None, Some(&name[1..4]))).await.unwrap().len(), 1);
        assert!(c.list_networks(&by(None, Some("zzz"))).await.unwrap().is_empty());

        // Bad input: clear errors with stable codes, nothing made.
        let bad = StatusCode::BAD_REQUEST;
        for (body, text) in [
            ("{".to_string(), "invalid request body"),
            (r#"{"name":"x","colour":"red"}"#.to_string(), "colour"),
            (r#"{"name":"x","ipam":{"subnet":"10.9.9.0/24","mask":1}}"#.to_string(), "mask"),
            (r#"{"name":5}"#.to_string(), "name"),
            (r#"{"name":"x","driver":"overlay"}"#.to_string(), "driver \"overlay\" is not supported"),
            (r#"{"name":"-x"}"#.to_string(), "network name"),
            (r#"{"name":"x","ipam":{"subnet":"10.0.0.0/33"}}"#.to_string(), "invalid cidr"),
            (r#"{"name":"x","ipam":{"subnet":"10.0.0.1/24"}}"#.to_string(), "host bits"),
            (r#"{"name":"x","ipam":{"subnet":"banana"}}"#.to_string(), "invalid cidr"),
            (r#"{"name":"x","ipam":{"gateway":"10.0.0.1"}}"#.to_string(), "needs a subnet"),
            (
                format!(r#"{{"name":"x","ipam":{{"subnet":"10.{a}.{b}.0/24","gateway":"10.1.2.3"}}}}"#),
                "outside the subnet",
            ),
            (
                format!(r#"{{"name":"x","ipam":{{"subnet":"10.{a}.{b}.0/24","gateway":"nope"}}}}"#),
                "not an IPv4 address",
            ),
            (
                format!(r#"{{"name":"x","ipam":{{"subnet":"10.{a}.{b}.0/24","ip_range":"10.1.0.0/28"}}}}"#),
                "not inside the subnet",
            ),
        ] {
            refused(&c, Method::POST, "/v1/networks", &body, bad, text).await;
        }
        // The name is taken; the subnet overlaps this network.
        let dup = format!(r#"{{"name":"{name}"}}"#);
        refused(&c, Method::POST, "/v1/networks", &dup, StatusCode::CONFLICT, "already exists").await;
        let overlap = format!(r#"{{"name":"other","ipam":{{"subnet":"10.{a}.{b}.128/25"}}}}"#);
        refused(
            &c,
            Method::POST,
            "/v1/networks",
            &overlap,
            StatusCode::CONFLICT,
            &format!("network {name}"),
        )
        .await;
        refused(&c, Method::GET, "/v1/networks?colour=red", "", bad, "colour").await;
        refused(&c, Method::POST, "/v1/networks/prune?all=1", "", bad, "all").await;
        refused(&c, Method::GET, "/v1/networks/nope", "", StatusCode::NOT_FOUND, "nope").await;
        refused(&c, Method::DELETE, "/v1/networks/nope", "", StatusCode::NOT_FOUND, "nope").await;
        assert_eq!(c.list_networks(&NetworkFilter::default()).await.unwrap().len(), 1);
        assert_eq!(
            d.links_until(|l| l == [net.bridge.clone()]),
            vec![net.bridge.clone()]
        );

        // Remove: the bridge and its rules go; a second removal is 404.
        c.remove_network(&name).await.unwrap();
        assert_eq!(d.links_until(|l| l.is_empty()), Vec::<String>::new());
        assert!(
            common::eventually(|| !d.nft_table().contains(&net.bridge)),
            "{}",
            d.nft_table()
        );
        let err = c.remove_network(&name).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");

        // Prune: with a label only those carrying it, then every unused one.
        let plain = |n: &str, labels: &[(&str, &str)]| NetworkCreate {
            name: n.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..NetworkCreate::default()
        };
        let p1 = c.create_network(&plain("p1", &[("gc", "yes")])).await.unwrap();
        let p2 = c.create_network(&plain("p2", &[])).await.unwrap();
        assert_ne!(p1.subnet, p2.subnet);
        assert_eq!(d.links_until(|l| l.len() == 2).len(), 2);
        let pruned: NetworksPruned = c.prune_networks(Some("gc=yes")).await.unwrap();
        assert_eq!(pruned.networks, vec!["p1".to_string()]);
        let pruned = c.prune_networks(None).await.unwrap();
        assert_eq!(pruned.networks, vec!["p2".to_string()]);
        assert!(c.list_networks(&NetworkFilter::default()).await.unwrap().is_empty());
        assert_eq!(d.links_until(|l| l.is_empty()), Vec::<String>::new());

        let ev = events(&c, "network").await;
        for want in [
            ("create", name.as_str()),
            ("destroy", name.as_str()),
            ("create", "p1"),
            ("destroy", "p1"),
            ("destroy", "p2"),
        ] {
            assert!(
                ev.iter().any(|(a, n)| a == want.0 && n == want.1),
                "{want:?} not in {ev:?}"
            );
        }
    });
    d.finish();
}

#[test]
fn networks_and_volumes_in_use_are_refused_naming_their_containers() {
    let mut d = NetDaemon::start(true);
    let c = d.client();
    let (a, b) = random_subnet();
    let tag = unique();
    let (net, vol, project) = (format!("n{tag}"), format!("v{tag}"), format!("nu{tag}"));
    let stack = d.stack(
        &project,
        &format!(
            r#"name: {project}
services:
  app:
    image: {image}
    init: true
    command: ["sleep", "300"]
    networks: [ext]
    volumes: ["data:/data"]
networks:
  ext:
    external: true
    name: {net}
volumes:
  data:
    external: true
    name: {vol}
"#,
            image = common::netdaemon::IMAGE
        ),
    );
    let container = format!("{project}-app-1");
    rt().block_on(async {
        c.create_network(&NetworkCreate {
            name: net.clone(),
            ipam: Some(NetworkIpam {
                subnet: Some(format!("10.{a}.{b}.0/24")),
                ..NetworkIpam::default()
            }),
            ..NetworkCreate::default()
        })
        .await
        .unwrap();
        c.create_volume(&VolumeCreate {
            name: Some(vol.clone()),
            ..VolumeCreate::default()
        })
        .await
        .unwrap();
    });
    d.ok_in(&stack, &["up", "-d"]);
    rt().block_on(async {
        // The container is on the network, with an address of its subnet.
        let n: Network = c.inspect_network(&net).await.unwrap();
        assert_eq!(n.containers.len(), 1, "{n:?}");
        assert_eq!(n.containers[0].name, container);
        assert_eq!(n.containers[0].id.len(), 64);
        assert!(
            n.containers[0]
                .ipv4_address
                .starts_with(&format!("10.{a}.{b}.")),
            "{:?}",
            n.containers[0]
        );
        let path = format!("/v1/networks/{net}");
        refused(
            &c,
            Method::DELETE,
            &path,
            "",
            StatusCode::CONFLICT,
            &container,
        )
        .await;
        assert!(
            !c.prune_networks(None)
                .await
                .unwrap()
                .networks
                .contains(&net)
        );
        assert!(c.inspect_network(&net).await.is_ok());

        let path = format!("/v1/volumes/{vol}");
        refused(
            &c,
            Method::DELETE,
            &path,
            "",
            StatusCode::CONFLICT,
            &container,
        )
        .await;
        let pruned: VolumesPruned = c.prune_volumes(true, None).await.unwrap();
        assert!(!pruned.volumes.contains(&vol), "{pruned:?}");
        assert!(c.inspect_volume(&vol).await.is_ok());

        let du: DiskUsage = c.system_df().await.unwrap();
        assert_eq!(
            (du.containers.count, du.containers.active),
            (1, 1),
            "{du:?}"
        );
        assert_eq!((du.images.count, du.images.active), (1, 1), "{du:?}");
        assert!(du.images.size > 0 && du.images.reclaimable == 0, "{du:?}");
        assert_eq!((du.volumes.count, du.volumes.active), (1, 1), "{du:?}");
    });
    d.ok_in(&stack, &["down", "-t", "1"]);
    rt().block_on(async {
        assert!(c.inspect_network(&net).await.unwrap().containers.is_empty());
        c.remove_network(&net).await.unwrap();
        c.remove_volume(&vol).await.unwrap();
    });
    d.finish();
}

#[test]
fn volumes_prune_and_disk_usage() {
    let d = NetDaemon::start(false);
    let c = d.client();
    rt().block_on(async {
        let bad = StatusCode::BAD_REQUEST;
        for (body, text) in [
            ("[", "invalid request body"),
            (r#"{"name":"x","size":1}"#, "size"),
            (r#"{"name":"a/b"}"#, "volume name"),
            (r#"{"name":"x","driver":"nfs"}"#, "driver \"nfs\""),
            (
                r#"{"name":"x","driver_opts":{"type":"tmpfs"}}"#,
                "type=tmpfs",
            ),
        ] {
            refused(&c, Method::POST, "/v1/volumes", body, bad, text).await;
        }
        refused(
            &c,
            Method::POST,
            "/v1/volumes/prune?force=1",
            "",
            bad,
            "force",
        )
        .await;
        assert!(c.list_volumes(None).await.unwrap().is_empty());
        assert!(!d.root.join("volumes/x").exists());

        let named = c
            .create_volume(&VolumeCreate {
                name: Some("keep".into()),
                labels: [("tier".to_string(), "db".to_string())].into(),
                ..VolumeCreate::default()
            })
            .await
            .unwrap();
        assert_eq!(named.driver, "local");
        let mountpoint = std::path::PathBuf::from(&named.mountpoint);
        assert!(mountpoint.is_dir(), "{mountpoint:?}");
        let dup = r#"{"name":"keep"}"#;
        refused(
            &c,
            Method::POST,
            "/v1/volumes",
            dup,
            StatusCode::CONFLICT,
            "keep",
        )
        .await;
        let anon = c.create_volume(&VolumeCreate::default()).await.unwrap();

        // Sizes: the files' bytes, a symlink to something big counted as a link only.
        std::fs::write(mountpoint.join("f"), vec![7u8; 3000]).unwrap();
        std::fs::write(d.path().join("big"), vec![0u8; 1 << 20]).unwrap();
        std::os::unix::fs::symlink(d.path().join("big"), mountpoint.join("link")).unwrap();
        let link = d.path().join("big").as_os_str().len() as u64;
        std::fs::write(std::path::Path::new(&anon.mountpoint).join("g"), b"12345").unwrap();
        let du = c.system_df().await.unwrap();
        assert_eq!(du.volumes.count, 2);
        assert_eq!(du.volumes.active, 0);
        assert_eq!(du.volumes.size, 3000 + link + 5);
        assert_eq!(du.volumes.reclaimable, du.volumes.size);
        assert_eq!(du.images.count, 0);
        assert_eq!(du.containers.count, 0);

        // Prune takes anonymous volumes only, unless all; labels narrow it.
        let pruned = c.prune_volumes(false, None).await.unwrap();
        assert_eq!(pruned.volumes, vec![anon.name.clone()]);
        assert_eq!(pruned.reclaimed, 5);
        assert!(!std::path::Path::new(&anon.mountpoint).exists());
        assert!(
            c.prune_volumes(true, Some("tier=web"))
                .await
                .unwrap()
                .volumes
                .is_empty()
        );
        let pruned = c.prune_volumes(true, Some("tier=db")).await.unwrap();
        assert_eq!(pruned.volumes, vec!["keep".to_string()]);
        assert_eq!(pruned.reclaimed, 3000 + link);
        assert!(!mountpoint.exists());
        assert!(d.path().join("big").exists());
        assert!(c.list_volumes(None).await.unwrap().is_empty());

        // An image imported into the store shows in the numbers.
        common::daemon::import_busybox(&d.root, "flotilla.test/df:1");
        let du = c.system_df().await.unwrap();
        assert_eq!(du.images.count, 1);
        assert_eq!(du.images.active, 0);
        assert!(du.images.size > 0);
        assert_eq!(du.images.reclaimable, du.images.size);
        let ev = events(&c, "volume").await;
        assert!(
            ev.contains(&("create".to_string(), "keep".to_string())),
            "{ev:?}"
        );
        assert!(
            ev.contains(&("remove".to_string(), "keep".to_string())),
            "{ev:?}"
        );
    });
    d.finish();
}
