use std::collections::BTreeMap;

use super::*;
use crate::plan::actual::ActualResource;
use crate::plan::testutil::{apply, assert_dag, digests, project};

const STACK: &str = r#"
services:
  web:
    image: web:1
    ports: ["8080:80"]
    depends_on: [api]
  api:
    image: api:1
    environment:
      DB: db
    depends_on:
      db:
        condition: service_healthy
        restart: true
      migrate:
        condition: service_completed_successfully
  migrate:
    image: api:1
    command: migrate
    depends_on:
      db:
        condition: service_healthy
  db:
    image: db:1
    volumes: ["data:/var/lib/db"]
    healthcheck:
      test: ["CMD", "true"]
volumes:
  data: {}
"#;

fn up(p: &Project, actual: &Actual, d: &ImageDigests, o: &UpOptions) -> Plan {
    let plan = plan_up(p, actual, d, o).unwrap();
    assert_dag(&plan);
    plan
}

fn fresh() -> (Project, ImageDigests, Actual) {
    let p = project(STACK);
    let d = digests(&p);
    let plan = up(&p, &Actual::default(), &d, &UpOptions::default());
    let actual = apply(&p, &d, &Actual::default(), &plan);
    (p, d, actual)
}

fn lines(plan: &Plan) -> Vec<String> {
    plan.render().lines().map(str::to_owned).collect()
}

#[test]
fn first_up_creates_everything_in_dependency_order() {
    let p = project(STACK);
    let plan = up(&p, &Actual::default(), &digests(&p), &UpOptions::default());
    assert_eq!(
        plan.render(),
        "network demo_default: create
volume demo_data: create
db: create demo-db-1
db: start demo-db-1
migrate: create demo-migrate-1
migrate: start demo-migrate-1 (after db healthy)
api: create demo-api-1
api: start demo-api-1 (after db healthy, migrate completed)
web: create demo-web-1
web: start demo-web-1 (after api started)
"
    );
    // db's create waits for its volume and network; api's start for db's and migrate's starts.
    let s = &plan.steps;
    assert_eq!(s[2].after, vec![0, 1]);
    assert_eq!(s[7].after, vec![3, 5, 6]);
    assert_eq!(s[9].after, vec![7, 8]);
}

#[test]
fn second_up_on_an_unchanged_stack_plans_nothing() {
    let (p, d, actual) = fresh();
    assert_eq!(actual.containers.len(), 4);
    let plan = up(&p, &actual, &d, &UpOptions::default());
    assert!(plan.is_empty(), "{}", plan.render());
    assert_eq!(plan.render(), "");
    assert!(plan.warnings.is_empty());
}

#[test]
fn stopped_identical_containers_only_start() {
    let (p, d, mut actual) = fresh();
    for c in &mut actual.containers {
        if c.service == "db" || c.service == "web" {
            c.status = ContainerStatus::Exited;
        }
    }
    let plan = up(&p, &actual, &d, &UpOptions::default());
    assert_eq!(
        lines(&plan),
        vec![
            "db: start demo-db-1",
            "web: start demo-web-1 (after api started)"
        ]
    );
    assert!(matches!(
        &plan.steps[0].action,
        Action::StartContainer { id: Some(_), .. }
    ));
}

#[test]
fn a_finished_one_shot_job_is_not_run_again() {
    let (p, d, mut actual) = fresh();
    for c in &mut actual.containers {
        if c.service == "migrate" {
            c.status = ContainerStatus::Exited;
            c.exit_code = Some(0);
        }
    }
    assert!(up(&p, &actual, &d, &UpOptions::default()).is_empty());
    // A failed job runs again.
    for c in &mut actual.containers {
        if c.service == "migrate" {
            c.exit_code = Some(1);
        }
    }
    assert_eq!(
        lines(&up(&p, &actual, &d, &UpOptions::default())),
        vec!["migrate: start demo-migrate-1 (after db healthy)"]
    );
}

#[test]
fn changed_environment_recreates_only_that_service_and_says_why() {
    let (_, d, actual) = fresh();
    let p = project(&STACK.replace("DB: db", "DB: db2"));
    let plan = up(&p, &actual, &d, &UpOptions::default());
    assert_eq!(
        lines(&plan),
        vec![
            "api: recreate demo-api-1 (environment changed)",
            "api: start demo-api-1 (after db healthy, migrate completed)",
        ]
    );
    let next = apply(&p, &d, &actual, &plan);
    assert!(up(&p, &next, &d, &UpOptions::default()).is_empty());
}

#[test]
fn without_a_previous_config_the_reason_is_generic() {
    let (_, d, mut actual) = fresh();
    for c in &mut actual.containers {
        c.config = None;
    }
    let p = project(&STACK.replace("DB: db", "DB: db2"));
    let plan = up(&p, &actual, &d, &UpOptions::default());
    assert_eq!(
        lines(&plan)[0],
        "api: recreate demo-api-1 (configuration changed)"
    );
}

#[test]
fn a_new_image_digest_recreates_and_restarts_dependents_that_ask() {
    let (p, mut d, actual) = fresh();
    d.insert("db".into(), Some("sha256:newer".into()));
    let plan = up(&p, &actual, &d, &UpOptions::default());
    assert_eq!(
        lines(&plan),
        vec![
            "db: recreate demo-db-1 (image changed)",
            "db: start demo-db-1",
            "api: restart demo-api-1 (db recreated) (after db healthy)",
        ]
    );
    assert_eq!(plan.steps[2].after, vec![1]);
    assert!(matches!(
        &plan.steps[0].action,
        Action::Recreate { old_id, .. } if actual.containers.iter().any(|c| &c.id == old_id && c.service == "db")
    ));
}

#[test]
fn ignored_fields_do_not_recreate() {
    let (_, d, actual) = fresh();
    let p = project(&STACK.replace(
        "image: web:1",
        "image: web:1\n    pull_policy: missing\n    profiles: []",
    ));
    assert!(up(&p, &actual, &d, &UpOptions::default()).is_empty());
}

#[test]
fn scale_up_then_down_removes_highest_numbers_first() {
    let (p, d, actual) = fresh();
    let five = UpOptions {
        scale: BTreeMap::from([("web".into(), 5)]),
        ..UpOptions::default()
    };
    let plan = up(&p, &actual, &d, &five);
    assert_eq!(
        lines(&plan),
        vec![
            "web: create demo-web-2",
            "web: start demo-web-2 (after api started)",
            "web: create demo-web-3",
            "web: start demo-web-3 (after api started)",
            "web: create demo-web-4",
            "web: start demo-web-4 (after api started)",
            "web: create demo-web-5",
            "web: start demo-web-5 (after api started)",
        ]
    );
    let actual = apply(&p, &d, &actual, &plan);
    assert!(up(&p, &actual, &d, &five).is_empty());
    let two = UpOptions {
        scale: BTreeMap::from([("web".into(), 2)]),
        ..UpOptions::default()
    };
    let plan = up(&p, &actual, &d, &two);
    assert_eq!(
        lines(&plan),
        vec![
            "web: stop demo-web-5",
            "web: remove demo-web-5",
            "web: stop demo-web-4",
            "web: remove demo-web-4",
            "web: stop demo-web-3",
            "web: remove demo-web-3",
        ]
    );
    let actual = apply(&p, &d, &actual, &plan);
    let mut names: Vec<&str> = actual
        .containers
        .iter()
        .filter(|c| c.service == "web")
        .map(|c| c.name.as_str())
        .collect();
    names.sort();
    assert_eq!(names, vec!["demo-web-1", "demo-web-2"]);
    assert!(up(&p, &actual, &d, &two).is_empty());
}

#[test]
fn replica_count_precedence_and_gaps() {
    let p = project(
        "services:\n  a:\n    image: x\n    scale: 2\n  b:\n    image: x\n    deploy:\n      replicas: 3\n  c:\n    image: x\n    scale: 0\n",
    );
    let d = digests(&p);
    let plan = up(&p, &Actual::default(), &d, &UpOptions::default());
    let count = |svc: &str| {
        plan.actions()
            .filter(|a| matches!(a, Action::CreateContainer { service, .. } if service == svc))
            .count()
    };
    assert_eq!((count("a"), count("b"), count("c")), (2, 3, 0));
    let o = UpOptions {
        scale: BTreeMap::from([("a".into(), 1)]),
        ..UpOptions::default()
    };
    let plan = up(&p, &Actual::default(), &d, &o);
    assert_eq!(count_of(&plan, "a"), 1);

    // Numbers 1 and 3 exist: scaling to 3 fills the gap with 2.
    let actual = apply(
        &p,
        &d,
        &Actual::default(),
        &up(&p, &Actual::default(), &d, &UpOptions::default()),
    );
    let mut actual = actual;
    actual.containers.retain(|c| c.name != "demo-b-2");
    let plan = up(&p, &actual, &d, &UpOptions::default());
    assert_eq!(
        lines(&plan),
        vec!["b: create demo-b-2", "b: start demo-b-2"]
    );
}

fn count_of(plan: &Plan, svc: &str) -> usize {
    plan.actions()
        .filter(|a| matches!(a, Action::CreateContainer { service, .. } if service == svc))
        .count()
}

#[test]
fn container_name_is_used_and_forbids_replicas() {
    let p = project("services:\n  a:\n    image: x\n    container_name: alpha\n");
    let plan = up(&p, &Actual::default(), &digests(&p), &UpOptions::default());
    assert_eq!(lines(&plan)[1], "a: create alpha");
    let o = UpOptions {
        scale: BTreeMap::from([("a".into(), 2)]),
        ..UpOptions::default()
    };
    let e = plan_up(&p, &Actual::default(), &digests(&p), &o).unwrap_err();
    assert!(
        matches!(e, PlanError::ContainerNameWithReplicas { ref service, replicas: 2, .. } if service == "a")
    );
    assert!(
        e.to_string()
            .starts_with("service \"a\" sets container_name \"alpha\" but asks for 2 replicas")
    );
}

#[test]
fn a_renamed_container_is_recreated_under_its_new_name() {
    let p = project("services:\n  a:\n    image: x\n    container_name: alpha\n");
    let d = digests(&p);
    let plan = up(&p, &Actual::default(), &d, &UpOptions::default());
    let actual = apply(&p, &d, &Actual::default(), &plan);
    let p = project("services:\n  a:\n    image: x\n    container_name: beta\n");
    let plan = up(&p, &actual, &d, &UpOptions::default());
    assert_eq!(
        lines(&plan),
        vec![
            "a: recreate alpha as beta (container_name changed)",
            "a: start beta"
        ]
    );
}

#[test]
fn orphans_warn_or_go() {
    let (_, d, actual) = fresh();
    let p = project(&STACK.replace(
        "  web:\n    image: web:1\n    ports: [\"8080:80\"]\n    depends_on: [api]\n",
        "",
    ));
    let plan = up(&p, &actual, &d, &UpOptions::default());
    assert!(plan.is_empty());
    assert_eq!(
        plan.warnings,
        vec![
            "orphan container demo-web-1 (service \"web\") is not in the stack; --remove-orphans removes it"
        ]
    );
    assert!(
        plan.render()
            .starts_with("warning: orphan container demo-web-1")
    );
    let o = UpOptions {
        remove_orphans: true,
        ..UpOptions::default()
    };
    let plan = up(&p, &actual, &d, &o);
    assert_eq!(
        lines(&plan),
        vec!["web: stop demo-web-1", "web: remove demo-web-1"]
    );
    assert!(plan.warnings.is_empty());
}

#[test]
fn one_off_and_foreign_containers_are_not_replicas() {
    let (p, d, mut actual) = fresh();
    let mut run = actual.containers[0].clone();
    run.id = "oneoff".into();
    run.name = "demo-db-run-1".into();
    run.oneoff = true;
    run.number = 2;
    let mut other = actual.containers[0].clone();
    other.id = "other".into();
    other.project = "elsewhere".into();
    other.number = 2;
    actual.containers.push(run);
    actual.containers.push(other);
    assert!(up(&p, &actual, &d, &UpOptions::default()).is_empty());
}

#[test]
fn duplicate_numbers_keep_the_current_one() {
    let (p, d, mut actual) = fresh();
    let mut stale = actual
        .containers
        .iter()
        .find(|c| c.service == "web")
        .cloned()
        .unwrap();
    stale.id = "stale".into();
    stale.name = "demo-web-1-old".into();
    stale.config_hash = Some("old".into());
    stale.status = ContainerStatus::Exited;
    actual.containers.insert(0, stale);
    let plan = up(&p, &actual, &d, &UpOptions::default());
    assert_eq!(lines(&plan), vec!["web: remove demo-web-1-old"]);
}

#[test]
fn external_resources_must_exist_and_are_never_created() {
    let yaml = "services:\n  a:\n    image: x\n    networks: [outside]\n    volumes: [\"store:/s\"]\nnetworks:\n  outside:\n    external: true\nvolumes:\n  store:\n    external: true\n";
    let p = project(yaml);
    let d = digests(&p);
    let e = plan_up(&p, &Actual::default(), &d, &UpOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "network \"outside\" is external but network \"outside\" does not exist; create it first"
    );
    let mut actual = Actual::default();
    actual.networks.push(ActualResource {
        name: "outside".into(),
        ..ActualResource::default()
    });
    let e = plan_up(&p, &actual, &d, &UpOptions::default()).unwrap_err();
    assert!(matches!(e, PlanError::MissingExternalVolume { ref name, .. } if name == "store"));
    actual.volumes.push(ActualResource {
        name: "store".into(),
        ..ActualResource::default()
    });
    let plan = up(&p, &actual, &d, &UpOptions::default());
    assert_eq!(
        lines(&plan),
        vec!["a: create demo-a-1", "a: start demo-a-1"]
    );
    assert!(plan.warnings.is_empty());
}

#[test]
fn a_network_of_someone_else_is_used_with_a_warning() {
    let p = project("services:\n  a:\n    image: x\n");
    let mut actual = Actual::default();
    actual.networks.push(ActualResource {
        name: "demo_default".into(),
        ..ActualResource::default()
    });
    let plan = up(&p, &actual, &digests(&p), &UpOptions::default());
    assert_eq!(
        plan.warnings,
        vec!["network demo_default exists but was not created by project \"demo\"; using it"]
    );
    assert_eq!(plan.steps.len(), 2);
}

#[test]
fn pull_policies() {
    let yaml = "services:\n  a:\n    image: shared\n  b:\n    image: shared\n  c:\n    image: always\n    pull_policy: always\n  d:\n    image: never\n    pull_policy: never\n  e:\n    build: .\n  f:\n    image: f\n    build: .\n    pull_policy: build\n";
    let p = project(yaml);
    let mut d = ImageDigests::new();
    d.insert("d".into(), Some("sha256:d".into()));
    let plan = up(&p, &Actual::default(), &d, &UpOptions::default());
    let images: Vec<String> = lines(&plan)
        .into_iter()
        .filter(|l| l.starts_with("image "))
        .collect();
    assert_eq!(
        images,
        vec![
            "image shared: pull for a, b (pull policy missing)",
            "image always: pull for c (pull policy always)",
            "image demo-e: build for e",
            "image f: build for f",
        ]
    );
    // Both a's and b's creates wait for the one pull.
    let pull = plan
        .steps
        .iter()
        .find(|s| matches!(&s.action, Action::PullImage { image, .. } if image == "shared"))
        .unwrap()
        .id;
    for svc in ["a", "b"] {
        let create = plan
            .steps
            .iter()
            .find(
                |s| matches!(&s.action, Action::CreateContainer { service, .. } if service == svc),
            )
            .unwrap();
        assert!(create.after.contains(&pull));
    }

    // Present images: only `always` and `build` act.
    let all = digests(&p);
    let plan = up(&p, &Actual::default(), &all, &UpOptions::default());
    let images: Vec<String> = lines(&plan)
        .into_iter()
        .filter(|l| l.starts_with("image "))
        .collect();
    assert_eq!(
        images,
        vec![
            "image always: pull for c (pull policy always)",
            "image f: build for f",
        ]
    );

    // --pull never with a missing image that cannot be built.
    d.clear();
    let o = UpOptions {
        pull: Some(PullPolicy::Never),
        services: vec!["a".into()],
        ..UpOptions::default()
    };
    let e = plan_up(&p, &Actual::default(), &d, &o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "service \"a\": image \"shared\" is not present and the pull policy is never"
    );
    // --pull always overrides a service's never.
    let o = UpOptions {
        pull: Some(PullPolicy::Always),
        services: vec!["d".into()],
        ..UpOptions::default()
    };
    let plan = up(&p, &Actual::default(), &all, &o);
    assert_eq!(
        lines(&plan)[1],
        "image never: pull for d (pull policy always)"
    );
}

#[test]
fn selection_brings_dependencies_unless_no_deps() {
    let p = project(STACK);
    let d = digests(&p);
    let o = UpOptions {
        services: vec!["migrate".into()],
        ..UpOptions::default()
    };
    let plan = up(&p, &Actual::default(), &d, &o);
    assert_eq!(
        lines(&plan),
        vec![
            "network demo_default: create",
            "volume demo_data: create",
            "db: create demo-db-1",
            "db: start demo-db-1",
            "migrate: create demo-migrate-1",
            "migrate: start demo-migrate-1 (after db healthy)",
        ]
    );
    let o = UpOptions {
        services: vec!["migrate".into()],
        no_deps: true,
        ..UpOptions::default()
    };
    let plan = up(&p, &Actual::default(), &d, &o);
    assert_eq!(
        lines(&plan),
        vec![
            "network demo_default: create",
            "migrate: create demo-migrate-1",
            "migrate: start demo-migrate-1",
        ]
    );
    let o = UpOptions {
        services: vec!["nope".into(), "web".into()],
        scale: BTreeMap::from([("zed".into(), 1)]),
        ..UpOptions::default()
    };
    let e = plan_up(&p, &Actual::default(), &d, &o).unwrap_err();
    assert_eq!(e.to_string(), "no such service: nope, zed");
}

#[test]
fn force_recreate_no_recreate_and_no_start() {
    let (p, d, actual) = fresh();
    let force = UpOptions {
        force_recreate: true,
        services: vec!["db".into()],
        ..UpOptions::default()
    };
    let plan = up(&p, &actual, &d, &force);
    assert_eq!(
        lines(&plan),
        vec![
            "db: recreate demo-db-1 (forced)",
            "db: start demo-db-1",
            // api is not selected but asks to restart when db is recreated.
            "api: restart demo-api-1 (db recreated) (after db healthy)",
        ]
    );

    let changed = project(&STACK.replace("DB: db", "DB: db2"));
    let keep = UpOptions {
        no_recreate: true,
        ..UpOptions::default()
    };
    assert!(up(&changed, &actual, &d, &keep).is_empty());

    let create = UpOptions {
        no_start: true,
        ..UpOptions::default()
    };
    let plan = up(&p, &Actual::default(), &d, &create);
    assert!(plan.actions().all(|a| !matches!(
        a,
        Action::StartContainer { .. } | Action::RestartContainer { .. }
    )));
    assert_eq!(plan.steps.len(), 6);
    let created = apply(&p, &d, &Actual::default(), &plan);
    assert!(up(&p, &created, &d, &create).is_empty());
    // A later `up` starts what `create` made, in order.
    let plan = up(&p, &created, &d, &UpOptions::default());
    assert_eq!(
        lines(&plan),
        vec![
            "db: start demo-db-1",
            "migrate: start demo-migrate-1 (after db healthy)",
            "api: start demo-api-1 (after db healthy, migrate completed)",
            "web: start demo-web-1 (after api started)",
        ]
    );
    assert_eq!(plan.steps[3].after, vec![2]);
}

#[test]
fn dead_containers_are_replaced() {
    let (p, d, mut actual) = fresh();
    for c in &mut actual.containers {
        if c.service == "web" {
            c.status = ContainerStatus::Dead;
        }
    }
    let plan = up(
        &p,
        &actual,
        &d,
        &UpOptions {
            no_recreate: true,
            ..UpOptions::default()
        },
    );
    assert_eq!(
        lines(&plan)[0],
        "web: recreate demo-web-1 (container is dead)"
    );
}

#[test]
fn optional_absent_dependency_is_skipped() {
    let p = project(
        "services:\n  a:\n    image: x\n    depends_on:\n      gone:\n        condition: service_started\n        required: false\n      b:\n        condition: service_started\n        required: false\n  b:\n    image: x\n",
    );
    let plan = up(&p, &Actual::default(), &digests(&p), &UpOptions::default());
    assert_eq!(
        lines(&plan)[4],
        "a: start demo-a-1 (after b started if present)"
    );
    assert_eq!(plan.steps[4].conditions.len(), 1);
    assert!(!plan.steps[4].conditions[0].required);
}

#[test]
fn sharing_a_namespace_recreates_with_its_owner() {
    let yaml = "services:\n  vpn:\n    image: vpn\n    environment:\n      V: '1'\n  app:\n    image: app\n    network_mode: service:vpn\n  backup:\n    image: b\n    volumes_from: [app]\n";
    let p = project(yaml);
    let d = digests(&p);
    let plan = up(&p, &Actual::default(), &d, &UpOptions::default());
    // app's create needs vpn started (its network namespace).
    let app_create = plan
        .steps
        .iter()
        .find(|s| matches!(&s.action, Action::CreateContainer { service, .. } if service == "app"))
        .unwrap();
    assert_eq!(app_create.after, vec![1, 2]);
    let actual = apply(&p, &d, &Actual::default(), &plan);
    let changed = project(&yaml.replace("V: '1'", "V: '2'"));
    let plan = up(&changed, &actual, &d, &UpOptions::default());
    assert_eq!(
        lines(&plan),
        vec![
            "vpn: recreate demo-vpn-1 (environment changed)",
            "vpn: start demo-vpn-1",
            "app: recreate demo-app-1 (network_mode service:vpn recreated)",
            "app: start demo-app-1 (after vpn started)",
            "backup: recreate demo-backup-1 (volumes_from app recreated)",
            "backup: start demo-backup-1 (after app started)",
        ]
    );
}

#[test]
fn cycles_are_planning_errors() {
    let p = project("services:\n  a:\n    image: x\n");
    let mut p2 = p.clone();
    let mut b = p.services["a"].clone();
    b.depends_on.insert(
        "a".into(),
        crate::spec::model::Dependency {
            condition: "service_started".into(),
            restart: false,
            required: true,
        },
    );
    let mut a = b.clone();
    a.depends_on.clear();
    a.depends_on.insert("b".into(), b.depends_on["a"].clone());
    p2.services.insert("a".into(), a);
    p2.services.insert("b".into(), b);
    let e = plan_up(
        &p2,
        &Actual::default(),
        &digests(&p2),
        &UpOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "dependency cycle: a → b → a");
}

#[test]
fn many_replicas_plan_quickly() {
    let p = project("services:\n  a:\n    image: x\n");
    let o = UpOptions {
        scale: BTreeMap::from([("a".into(), 500)]),
        ..UpOptions::default()
    };
    let d = digests(&p);
    let plan = up(&p, &Actual::default(), &d, &o);
    assert_eq!(plan.steps.len(), 1001);
    let actual = apply(&p, &d, &Actual::default(), &plan);
    let started = std::time::Instant::now();
    assert!(up(&p, &actual, &d, &o).is_empty());
    assert!(started.elapsed().as_millis() < 500);
}
