//! `down --rmi local|all`: after the project's containers are gone, the images its services
//! used are removed through the image API (`DELETE /v1/images/{name}`), one Compose line each.
//! `all`: every service's image (its `image`, or the `<project>-<service>` name a build would
//! give it); `local`: only images without a custom name (services with no `image`). An image
//! that is not there is skipped; one still in use elsewhere is an error line and exit code 1.

use std::collections::BTreeSet;

use crate::api::client::Client;
use crate::api::types::ErrorCode;
use crate::spec::load::Loaded;

/// What `--rmi` removes.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rmi {
    /// Images without a custom name (`image`) only
    Local,
    /// Every image the services use
    All,
}

/// The images `mode` removes for the stack `loaded` of project `name`, sorted, each once.
pub fn images(loaded: Option<&Loaded>, name: &str, mode: Rmi) -> Vec<String> {
    let Some(services) = loaded
        .and_then(|l| l.config.get("services"))
        .and_then(|s| s.as_object())
    else {
        return Vec::new();
    };
    let mut out = BTreeSet::new();
    for (service, svc) in services {
        match (svc.get("image").and_then(|i| i.as_str()), mode) {
            (Some(image), Rmi::All) => {
                out.insert(image.to_string());
            }
            (Some(_), Rmi::Local) => {}
            (None, _) => {
                out.insert(format!("{name}-{service}"));
            }
        }
    }
    out.into_iter().collect()
}

/// Removes `images`: each one's result (images not there are left out).
pub async fn remove(client: &Client, images: &[String]) -> Vec<(String, Result<(), String>)> {
    let mut results = Vec::new();
    for image in images {
        match client.remove_image(image, false).await {
            Ok(_) => results.push((image.clone(), Ok(()))),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {}
            Err(e) => results.push((image.clone(), Err(e.to_string()))),
        }
    }
    results
}
