//! The image routes of the REST API through a real daemon (tests/common/image_daemon.rs) and the
//! typed client: tag, history, prune, push (to the harness's loopback registry, with the
//! client's credentials in `X-Registry-Auth`, and to a closed port), save, load and import; and
//! bad input: unknown images are 404 `not_found`, invalid references and unknown parameters 400
//! `bad_request`, a cut or garbage archive 400 with nothing stored.

mod common;

use std::io::{Read, Write};

use bytes::Bytes;
use flotilla::api::client::{Client, ClientError};
use flotilla::api::host::Host;
use flotilla::api::types::{ErrorBody, ErrorCode, RegistryAuth};
use http::{Method, StatusCode};

use common::image_daemon::ImageDaemon;
use common::registry::Registry;

const IMAGE: &str = "flotilla.test/busybox:1";

fn client(d: &ImageDaemon) -> Client {
    Client::new(Host::Unix(d.socket.clone()), None)
}

async fn status(
    c: &Client,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, ErrorCode) {
    let (status, bytes) = c
        .raw(method, path, body.map(|b| Bytes::from(b.to_string())))
        .await
        .expect("request");
    let code = serde_json::from_slice::<ErrorBody>(&bytes)
        .map(|b| b.code)
        .unwrap_or(ErrorCode::Unknown);
    (status, code)
}

fn code(e: &ClientError) -> Option<ErrorCode> {
    e.code()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_answered_with_stable_codes() {
    let d = ImageDaemon::start();
    common::daemon::import_busybox(&d.root, IMAGE);
    let c = client(&d);
    let busybox = "flotilla.test%2Fbusybox%3A1";
    for (method, path, body, want, want_code) in [
        (
            Method::POST,
            "/v1/images/nothing%3A1/tag".to_string(),
            Some(r#"{"target":"x:1"}"#),
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        ),
        (
            Method::POST,
            format!("/v1/images/{busybox}/tag"),
            Some(r#"{"target":"Bad:Ref:x"}"#),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            Method::POST,
            format!("/v1/images/{busybox}/tag"),
            Some(
                r#"{"target":"x@sha256:0000000000000000000000000000000000000000000000000000000000000000"}"#,
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            Method::POST,
            format!("/v1/images/{busybox}/tag"),
            Some(r#"{"target":"x:1","extra":1}"#),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            Method::GET,
            "/v1/images/nothing%3A1/history".to_string(),
            None,
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        ),
        (
            Method::POST,
            "/v1/images/prune?bogus=1".to_string(),
            None,
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            Method::POST,
            "/v1/images/127.0.0.1%3A5%2Fnothing%3A1/push".to_string(),
            None,
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        ),
        (
            Method::POST,
            "/v1/images/Bad%3ARef%3Ax/push".to_string(),
            None,
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            Method::GET,
            "/v1/images/save?names=nothing%3A1".to_string(),
            None,
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        ),
        (
            Method::GET,
            "/v1/images/save".to_string(),
            None,
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            Method::GET,
            "/v1/images/save?names=Bad%3ARef%3Ax".to_string(),
            None,
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            Method::POST,
            "/v1/images/load".to_string(),
            Some("not an archive"),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            Method::POST,
            "/v1/images/load?x=1".to_string(),
            Some(""),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            Method::POST,
            "/v1/images/import".to_string(),
            Some(""),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            Method::POST,
            "/v1/images/import?reference=Bad%3ARef%3Ax".to_string(),
            Some(""),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
        (
            Method::POST,
            "/v1/images/import?reference=x%3A1&change=BOGUS%20x".to_string(),
            Some(""),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
    ] {
        let got = status(&c, method.clone(), &path, body).await;
        assert_eq!(got, (want, want_code), "{method} {path}");
    }
    // A malformed credentials header is a 400 too (before any registry is asked).
    let body = r#"{"reference":"127.0.0.1:5/x:1"}"#;
    let mut stream = std::os::unix::net::UnixStream::connect(&d.socket).expect("connect");
    write!(
        stream,
        "POST /v1/images/pull HTTP/1.1\r\nHost: flotilla\r\nX-Registry-Auth: !!!\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("x-registry-auth"), "{answer}");
    // Nothing of the bad loads and imports stayed.
    d.wait_tmp_empty();
    let names: Vec<String> = c
        .list_images()
        .await
        .expect("list")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, [IMAGE.to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_history_push_prune_and_archives() {
    let registry = Registry::start_with_auth("alice", "s3cret");
    let d = ImageDaemon::start();
    common::daemon::import_busybox(&d.root, IMAGE);
    let c = client(&d);

    // tag: a second name, same id.
    let target = format!("{}/test/api:1", registry.host());
    let tagged = c.tag_image(IMAGE, &target).await.expect("tag");
    let original = c.inspect_image(IMAGE).await.expect("inspect");
    assert_eq!(tagged.id, original.id);
    assert_eq!(tagged.name, target);
    let inspected = c
        .inspect_image(&target)
        .await
        .expect("inspect the new name");
    assert_eq!(inspected.diff_ids.len(), inspected.layers);
    assert!(inspected.manifest_size.is_some_and(|s| s > 0));

    // history: one step per layer, newest first with the id.
    let steps = c.image_history(&target).await.expect("history");
    assert_eq!(steps.len(), original.layers);
    assert_eq!(steps[0].id.as_deref(), Some(original.id.as_str()));
    assert!(steps.iter().map(|s| s.size).sum::<u64>() > 0);

    // push: refused without credentials, done with them in the header.
    let last = |mut s: flotilla::api::client::JsonStream<flotilla::api::types::PushProgress>| async move {
        let mut last = None;
        while let Some(line) = s.next().await {
            last = Some(line.expect("progress line"));
        }
        last.expect("a last line")
    };
    let refused = last(c.push_image(&target, None).await.expect("push")).await;
    assert_eq!(refused.status, "error", "{refused:?}");
    assert_eq!(refused.code, Some(ErrorCode::Unauthorized), "{refused:?}");
    let auth = RegistryAuth {
        username: "alice".into(),
        password: "s3cret".into(),
    };
    let done = last(c.push_image(&target, Some(&auth)).await.expect("push")).await;
    assert_eq!(done.status, "done", "{done:?}");
    let pushed = done.pushed.expect("what was pushed");
    assert_eq!(pushed.manifest_digest, original.manifest_digest);
    assert!(pushed.manifest_size > 0);
    // To a closed port: an error line naming the target.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let nowhere = format!("127.0.0.1:{port}/test/api:1");
    c.tag_image(IMAGE, &nowhere).await.expect("tag");
    let failed = last(c.push_image(&nowhere, None).await.expect("push")).await;
    assert_eq!(failed.status, "error", "{failed:?}");
    assert!(
        failed.message.as_deref().unwrap_or("").contains(&nowhere),
        "{failed:?}"
    );
    c.remove_image(&nowhere, false).await.expect("rm");

    // save streams an archive; load of it after the images are gone records it again.
    let mut archive = Vec::new();
    let mut stream = c.save_images(&[IMAGE.to_string()]).await.expect("save");
    while let Some(chunk) = stream.next().await {
        archive.extend_from_slice(&chunk.expect("chunk"));
    }
    assert!(archive.len() > 1 << 20);
    let removed = c.prune_images(false).await.expect("prune dangling");
    assert!(removed.untagged.is_empty(), "{removed:?}");
    c.remove_image(&target, false).await.expect("rm");
    let removed = c.prune_images(true).await.expect("prune all");
    assert_eq!(removed.untagged, [IMAGE.to_string()]);
    assert!(c.list_images().await.expect("list").is_empty());
    d.wait_tmp_empty();
    assert_eq!(d.entries("blobs/sha256"), Vec::<String>::new());

    let (tx, answer) = c.load_images();
    let data = archive.clone();
    let feeder = tokio::spawn(async move {
        for chunk in data.chunks(100_000) {
            tx.send(Ok(Bytes::copy_from_slice(chunk)))
                .await
                .expect("send");
        }
    });
    let loaded = answer.await.expect("load");
    feeder.await.expect("feeder");
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].name.as_deref(), Some(IMAGE));
    assert_eq!(loaded[0].id, original.id);

    // An upload that fails half way (the client's error) stores nothing.
    c.remove_image(IMAGE, false).await.expect("rm");
    let (tx, answer) = c.load_images();
    let data = archive.clone();
    let feeder = tokio::spawn(async move {
        let _ = tx
            .send(Ok(Bytes::copy_from_slice(&data[..data.len() / 2])))
            .await;
        let _ = tx
            .send(Err(std::io::Error::other("the reader failed")))
            .await;
    });
    let e = answer.await.expect_err("a cut upload fails");
    feeder.await.expect("feeder");
    assert!(
        code(&e).is_none() || code(&e) == Some(ErrorCode::BadRequest),
        "{e}"
    );
    d.wait_tmp_empty();
    assert!(c.list_images().await.expect("list").is_empty());
    assert_eq!(d.entries("blobs/sha256"), Vec::<String>::new());
}
