//! `GET /v1/system/df`: what images, containers and volumes take on disk and what pruning
//! them could free, measured by [`crate::volume::usage::tree_size`] (no symlink followed, no
//! mount crossed).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;

use super::ServerState;
use super::volumes::with_engine;
use crate::api::error::ApiError;
use crate::api::types::{DiskUsage, ErrorBody, UsageSummary};
use crate::engine::project::ProjectEngine;
use crate::runtime::state::Status;
use crate::volume::usage::tree_size;

/// The disk usage of images, containers and volumes.
#[utoipa::path(get, path = "/v1/system/df", tag = "system",
    responses((status = 200, body = DiskUsage), (status = 500, body = ErrorBody)))]
pub(super) async fn df(
    State(state): State<ServerState>,
) -> Result<axum::Json<DiskUsage>, ApiError> {
    let root = state.data_root.clone();
    let usage = with_engine(&state, move |e| {
        let containers = e
            .runtime()
            .list()
            .map_err(|err| ApiError::internal(format!("list containers: {err}")))?;
        let used_images: BTreeSet<String> = containers
            .iter()
            .filter_map(|c| c.meta.image_id.clone())
            .collect();
        let images = images(&root, &used_images)?;
        let mut cs = UsageSummary::default();
        for c in &containers {
            // The container's writable layer (the runtime's `upper/` in its state dir).
            let size = tree_size(&e.runtime().dir(&c.meta.id).join("upper")).unwrap_or(0);
            let running = matches!(c.state.status, Status::Running | Status::Paused);
            cs.count += 1;
            cs.size = cs.size.saturating_add(size);
            if running {
                cs.active += 1;
            } else {
                cs.reclaimable = cs.reclaimable.saturating_add(size);
            }
        }
        Ok(DiskUsage {
            images,
            containers: cs,
            volumes: volumes(e)?,
        })
    })
    .await?;
    Ok(axum::Json(usage))
}

/// Images: each image id once; each layer snapshot once however many images share it;
/// reclaimable are the layers of no image a container was made from.
fn images(root: &std::path::Path, used: &BTreeSet<String>) -> Result<UsageSummary, ApiError> {
    let store = crate::image::store::Store::open(root)
        .map_err(|e| ApiError::internal(format!("open the image store: {e}")))?;
    let records = crate::image::manage::list(&store)?;
    let mut ids = BTreeSet::new();
    let mut active = BTreeSet::new();
    let mut layers = BTreeMap::new();
    let mut active_layers = BTreeSet::new();
    for r in &records {
        let id = r.config_digest.to_string();
        let is_active = used.contains(&id);
        if is_active {
            active.insert(id.clone());
        }
        ids.insert(id);
        for l in &r.layers {
            let size = store.layer_info(&l.chain_id).map_or(0, |i| i.size);
            layers.insert(l.chain_id.to_string(), size);
            if is_active {
                active_layers.insert(l.chain_id.to_string());
            }
        }
    }
    let size: u64 = layers.values().sum();
    let kept: u64 = layers
        .iter()
        .filter(|(k, _)| active_layers.contains(*k))
        .map(|(_, v)| v)
        .sum();
    Ok(UsageSummary {
        count: ids.len() as u64,
        active: active.len() as u64,
        size,
        reclaimable: size.saturating_sub(kept),
    })
}

/// Volumes: the content of each (a bind volume's device is the user's, not counted);
/// reclaimable are those no container mounts.
fn volumes(e: &ProjectEngine) -> Result<UsageSummary, ApiError> {
    let mut out = UsageSummary::default();
    for v in e
        .volumes()
        .list(None)
        .map_err(super::volumes::volume_error)?
    {
        let size = if v.is_bind() {
            0
        } else {
            tree_size(&v.mountpoint).unwrap_or(0)
        };
        out.count += 1;
        out.size = out.size.saturating_add(size);
        if e.containers_using(&v.name).is_empty() {
            out.reclaimable = out.reclaimable.saturating_add(size);
        } else {
            out.active += 1;
        }
    }
    Ok(out)
}
