use super::*;
use crate::plan::testutil::{apply, assert_dag, digests, project};
use crate::plan::up::{UpOptions, plan_up};

const STACK: &str = r#"
services:
  web:
    image: web
    depends_on: [api]
  api:
    image: api
    depends_on: [db]
  db:
    image: db
    volumes: ["data:/data", "shared:/shared"]
    networks: [default, outside]
volumes:
  data: {}
  shared:
    external: true
networks:
  outside:
    external: true
"#;

fn running() -> (Project, Actual) {
    let p = project(STACK);
    let d = digests(&p);
    let mut start = Actual::default();
    start.networks.push(ActualResource {
        name: "outside".into(),
        ..ActualResource::default()
    });
    start.volumes.push(ActualResource {
        name: "shared".into(),
        ..ActualResource::default()
    });
    let plan = plan_up(&p, &start, &d, &UpOptions::default()).unwrap();
    let actual = apply(&p, &d, &start, &plan);
    (p, actual)
}

fn down(p: &Project, actual: &Actual, o: &DownOptions) -> Plan {
    let plan = plan_down(p, actual, o).unwrap();
    assert_dag(&plan);
    plan
}

#[test]
fn down_stops_dependents_first_and_keeps_volumes() {
    let (p, actual) = running();
    let plan = down(&p, &actual, &DownOptions::default());
    assert_eq!(
        plan.render(),
        "web: stop demo-web-1
web: remove demo-web-1
api: stop demo-api-1
api: remove demo-api-1
db: stop demo-db-1
db: remove demo-db-1
network demo_default: remove
"
    );
    assert_eq!(plan.steps[2].after, vec![0]);
    assert_eq!(plan.steps[4].after, vec![2]);
    assert_eq!(plan.steps[6].after, vec![1, 3, 5]);
    let gone = apply(&p, &digests(&p), &actual, &plan);
    assert!(gone.containers.is_empty());
    let names: Vec<&str> = gone.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, vec!["shared", "demo_data"]);
    assert_eq!(gone.networks.len(), 1);
    assert!(down(&p, &gone, &DownOptions::default()).is_empty());
}

#[test]
fn down_v_removes_named_volumes_but_never_external_ones() {
    let (p, actual) = running();
    let o = DownOptions {
        volumes: true,
        ..DownOptions::default()
    };
    let plan = down(&p, &actual, &o);
    let text = plan.render();
    assert!(text.ends_with("network demo_default: remove\nvolume demo_data: remove\n"));
    assert!(!text.contains("shared") && !text.contains("outside"));
    assert!(
        plan.actions()
            .any(|a| matches!(a, Action::RemoveContainer { volumes: true, .. }))
    );
}

#[test]
fn stop_order_skips_through_stopped_services() {
    let (p, mut actual) = running();
    for c in &mut actual.containers {
        if c.service == "api" {
            c.status = crate::plan::actual::ContainerStatus::Exited;
        }
    }
    let plan = down(&p, &actual, &DownOptions::default());
    assert_eq!(
        plan.render().lines().take(5).collect::<Vec<_>>(),
        vec![
            "web: stop demo-web-1",
            "web: remove demo-web-1",
            "api: remove demo-api-1",
            "db: stop demo-db-1",
            "db: remove demo-db-1",
        ]
    );
    // db still waits for web's stop, through api which had nothing to stop.
    assert_eq!(plan.steps[3].after, vec![0]);
}

#[test]
fn orphans_and_headless_down() {
    let (_, actual) = running();
    let p = project(&STACK.replace("  web:\n    image: web\n    depends_on: [api]\n", ""));
    let plan = down(&p, &actual, &DownOptions::default());
    assert_eq!(
        plan.warnings,
        vec![
            "orphan container demo-web-1 (service \"web\") is not in the stack; --remove-orphans removes it"
        ]
    );
    assert!(!plan.render().contains("web: "));
    let o = DownOptions {
        remove_orphans: true,
        ..DownOptions::default()
    };
    let plan = down(&p, &actual, &o);
    assert!(
        plan.render()
            .starts_with("web: stop demo-web-1\nweb: remove demo-web-1\n")
    );

    // No stack file: everything labelled with the project goes, external objects stay.
    let headless = Project {
        name: "demo".into(),
        ..Project::default()
    };
    let o = DownOptions {
        volumes: true,
        ..DownOptions::default()
    };
    let plan = down(&headless, &actual, &o);
    // The order comes from the containers' depends_on labels.
    assert_eq!(
        plan.render(),
        "web: stop demo-web-1
web: remove demo-web-1
api: stop demo-api-1
api: remove demo-api-1
db: stop demo-db-1
db: remove demo-db-1
network demo_default: remove
volume demo_data: remove
"
    );
    assert_eq!(plan.steps[4].after, vec![2]);
    assert!(plan.actions().any(|a| matches!(
        a,
        Action::RemoveNetwork { key, .. } if key == "default"
    )));
}

#[test]
fn one_off_containers_go_too() {
    let (p, mut actual) = running();
    let mut run = actual.containers[0].clone();
    run.id = "run".into();
    run.name = "demo-db-run-abc".into();
    run.oneoff = true;
    actual.containers.push(run);
    let plan = down(&p, &actual, &DownOptions::default());
    assert!(plan.render().contains("db: remove demo-db-run-abc\n"));
}
