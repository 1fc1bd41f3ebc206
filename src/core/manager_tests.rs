//! Tests of the manager's decisions (without channels) and of draining (with the task).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::manager::*;
use super::testing::{aspired, FakeAdapter};
use crate::core::{AspiredVersionsSink, Code, ServableState, VersionRequest};

async fn wait_for(manager: &AspiredVersionsManager, name: &str, version: i64, state: ServableState) -> VersionStatus {
    let mut status_rx = manager.subscribe();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(status) = status_rx.borrow_and_update().get(name).and_then(|m| m.get(&version)) {
                if status.state == state {
                    return status.clone();
                }
            }
            if status_rx.changed().await.is_err() {
                panic!("manager stopped");
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{name}:{version} never reached {state:?}"))
}

fn manager_with(broken: Vec<i64>, retries: u32) -> (AspiredVersionsManager, Arc<AtomicUsize>) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let manager = AspiredVersionsManager::spawn(ManagerOptions {
        max_num_load_retries: retries,
        load_retry_interval: Duration::from_millis(1),
    });
    manager.register_model("m", Arc::new(FakeAdapter { broken, attempts: Arc::clone(&attempts) }));
    (manager, attempts)
}

#[tokio::test]
async fn new_version_replaces_old_only_after_it_is_available() {
    let (manager, _) = manager_with(vec![], 0);
    manager.set_aspired_versions("m", aspired(&[1]));
    wait_for(&manager, "m", 1, ServableState::Available).await;
    assert_eq!(manager.handle("m", &VersionRequest::Latest).expect("v1").id.version, 1);

    manager.set_aspired_versions("m", aspired(&[2]));
    wait_for(&manager, "m", 1, ServableState::End).await;
    assert_eq!(manager.handle("m", &VersionRequest::Latest).expect("v2").id.version, 2);
    let statuses = manager.version_statuses("m").expect("statuses");
    assert_eq!(statuses.iter().map(|s| s.version).collect::<Vec<_>>(), vec![2, 1]);
    assert_eq!(statuses[1].error, None);
    let missing = manager.handle("m", &VersionRequest::Specific(1)).expect_err("gone");
    assert_eq!(missing.message, "Servable not found for request: Specific(m, 1)");
}

#[tokio::test]
async fn broken_version_ends_with_error_and_old_keeps_serving() {
    let (manager, attempts) = manager_with(vec![2], 2);
    manager.set_aspired_versions("m", aspired(&[1]));
    wait_for(&manager, "m", 1, ServableState::Available).await;
    manager.set_aspired_versions("m", aspired(&[2]));
    let status = wait_for(&manager, "m", 2, ServableState::End).await;
    assert_eq!(status.error.expect("error").message, "corrupt model");
    // One attempt plus two retries for v2, one for v1.
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    assert_eq!(manager.handle("m", &VersionRequest::Latest).expect("v1 serves").id.version, 1);
    // Re-announcing the same broken version does not reload it.
    manager.set_aspired_versions("m", aspired(&[2]));
    manager.set_aspired_versions("m", aspired(&[2]));
    let _ = manager.wait_until_settled(&["m".to_string()]).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn retiring_version_waits_for_in_flight_handles() {
    let (manager, _) = manager_with(vec![], 0);
    manager.set_aspired_versions("m", aspired(&[1]));
    wait_for(&manager, "m", 1, ServableState::Available).await;
    let in_flight = manager.handle("m", &VersionRequest::Latest).expect("v1");
    manager.set_aspired_versions("m", aspired(&[2]));
    wait_for(&manager, "m", 1, ServableState::Unloading).await;
    // New requests already go to v2 while v1 drains.
    assert_eq!(manager.handle("m", &VersionRequest::Latest).expect("v2").id.version, 2);
    let statuses = manager.version_statuses("m").expect("statuses");
    assert_eq!(statuses.iter().find(|s| s.version == 1).expect("v1").state, ServableState::Unloading);
    drop(in_flight);
    wait_for(&manager, "m", 1, ServableState::End).await;
}

#[tokio::test]
async fn empty_aspired_set_unloads_everything() {
    let (manager, _) = manager_with(vec![], 0);
    manager.set_aspired_versions("m", aspired(&[1, 2]));
    wait_for(&manager, "m", 1, ServableState::Available).await;
    wait_for(&manager, "m", 2, ServableState::Available).await;
    manager.set_aspired_versions("m", aspired(&[]));
    wait_for(&manager, "m", 1, ServableState::End).await;
    wait_for(&manager, "m", 2, ServableState::End).await;
    let error = manager.handle("m", &VersionRequest::Latest).expect_err("none");
    assert_eq!(error.message, "Servable not found for request: Latest(m)");
}

#[tokio::test]
async fn settled_reports_initial_failures() {
    let (manager, _) = manager_with(vec![7], 0);
    manager.set_aspired_versions("m", aspired(&[7]));
    let failures = manager.wait_until_settled(&["m".to_string()]).await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0.version, 7);
}

#[tokio::test]
async fn labels_resolve_to_versions() {
    let (manager, _) = manager_with(vec![], 0);
    manager.set_aspired_versions("m", aspired(&[1, 2]));
    wait_for(&manager, "m", 2, ServableState::Available).await;
    wait_for(&manager, "m", 1, ServableState::Available).await;
    manager.set_labels("m", [("stable".to_string(), 1)].into());
    manager.set_aspired_versions("m", aspired(&[1, 2]));
    let _ = manager.wait_until_settled(&["m".to_string()]).await;
    // The label command is ordered before this lookup by the task's queue; poll the map.
    let handle = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(handle) = manager.handle("m", &VersionRequest::Label("stable".into())) {
                return handle;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("label resolves");
    assert_eq!(handle.id.version, 1);
    let error = manager.handle("m", &VersionRequest::Label("canary".into())).expect_err("unknown label");
    assert_eq!(error.message, "Unrecognized servable version label: canary");
}

#[tokio::test]
async fn model_status_lists_versions_or_names_the_missing_one() {
    let manager = crate::core::testing::serve_half_plus_two("m").await;
    let all = manager.model_status("m", None).expect("tracked");
    assert_eq!(all.iter().map(|s| (s.version, s.state)).collect::<Vec<_>>(), vec![(1, ServableState::Available)]);
    assert_eq!(manager.model_status("m", Some(1)).expect("version 1").len(), 1);
    let missing = manager.model_status("m", Some(3)).expect_err("no version 3");
    assert_eq!((missing.code, missing.message.as_str()), (Code::NotFound, "Could not find version 3 of model m"));
    let unknown = manager.model_status("other", None).expect_err("unknown model");
    assert_eq!(
        (unknown.code, unknown.message.as_str()),
        (Code::NotFound, "Could not find any versions of model other")
    );
}
