//! Image build does not exist yet (another issue): every path of `up` and `run` that would
//! need one is refused before anything is created or pulled, with one line naming the
//! services: a `build:`-only service whose image is missing, a service whose image must be
//! built (`pull_policy: build`, or a missing image with a `build:` section), and
//! `pull_policy: build` on a service without `build:`.

use crate::plan::action::{Action, Plan};
use crate::spec::model::{Project, Service};

/// The tail of every refusal.
pub const NOT_YET: &str = "image build is not available yet";

/// Why `service` itself asks for a build whatever exists (`pull_policy: build`), if it does.
pub fn service_needs_build(name: &str, service: &Service) -> Option<String> {
    (service.pull_policy.as_deref() == Some("build"))
        .then(|| format!("service {name}: pull_policy: build needs an image build"))
}

/// Refuses `plan` of `project` when it builds an image or a planned service has
/// `pull_policy: build`; one line naming each service, ending with [`NOT_YET`].
pub fn refuse(project: &Project, plan: &Plan) -> Result<(), String> {
    let mut why: Vec<String> = Vec::new();
    let mut named: Vec<&str> = Vec::new();
    for step in &plan.steps {
        if let Action::BuildImage { image, services } = &step.action {
            for s in services {
                let what = match project.services.get(s) {
                    Some(svc) if svc.pull_policy.as_deref() == Some("build") => {
                        format!("service {s}: pull_policy: build needs an image build")
                    }
                    Some(svc) if svc.image.is_none() => {
                        format!("service {s}: has only build: (its image {image} is missing)")
                    }
                    _ => format!("service {s}: image {image} is missing and must be built"),
                };
                named.push(s);
                why.push(what);
            }
        }
    }
    for step in &plan.steps {
        let Some(s) = step.action.service() else {
            continue;
        };
        if named.contains(&s) {
            continue;
        }
        if let Some(w) = project
            .services
            .get(s)
            .and_then(|svc| service_needs_build(s, svc))
        {
            named.push(s);
            why.push(w);
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {NOT_YET}", why.join("; ")))
    }
}

/// Refuses a one-off `run` of `service` when its image would need a build: `pull_policy:
/// build`, or `build:` with no `image`.
pub fn refuse_run(name: &str, service: &Service) -> Result<(), String> {
    if let Some(w) = service_needs_build(name, service) {
        return Err(format!("{w}: {NOT_YET}"));
    }
    if service.build.is_some() && service.image.is_none() {
        return Err(format!(
            "service {name}: has only build: (no image): {NOT_YET}"
        ));
    }
    Ok(())
}
