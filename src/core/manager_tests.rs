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
    manager_failing(broken, false, retries)
}

fn manager_failing(broken: Vec<i64>, transient: bool, retries: u32) -> (AspiredVersionsManager, Arc<AtomicUsize>) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let manager = AspiredVersionsManager::spawn(ManagerOptions {
        num_load_threads: 1,
        max_num_load_retries: retries,
        load_retry_interval: Duration::from_millis(1),
    });
    manager.register_model("m", Arc::new(FakeAdapter { broken, transient, attempts: Arc::clone(&attempts) }));
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

async fn settled_within(manager: &AspiredVersionsManager, since: &AspiredSnapshot) -> Settlement {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    manager.wait_until_settled(&["m".to_string()], since, Some(deadline)).await
}

#[tokio::test]
async fn broken_version_ends_with_error_and_old_keeps_serving() {
    for (transient, expected_attempts) in [(true, 4), (false, 2)] {
        let (manager, attempts) = manager_failing(vec![2], transient, 2);
        manager.set_aspired_versions("m", aspired(&[1]));
        wait_for(&manager, "m", 1, ServableState::Available).await;
        manager.set_aspired_versions("m", aspired(&[2]));
        let status = wait_for(&manager, "m", 2, ServableState::End).await;
        let message = if transient { "model store unreachable" } else { "corrupt model" };
        assert_eq!(status.error.expect("error").message, message);
        // A transient error: one attempt plus two retries for v2. A permanent one: no retry.
        // Plus one for v1.
        assert_eq!(attempts.load(Ordering::SeqCst), expected_attempts, "transient: {transient}");
        assert_eq!(manager.handle("m", &VersionRequest::Latest).expect("v1 serves").id.version, 1);
        // Re-announcing the same broken version does not reload it.
        let marks = manager.aspired_marks().await;
        manager.set_aspired_versions("m", aspired(&[2]));
        manager.set_aspired_versions("m", aspired(&[2]));
        let settled = settled_within(&manager, &marks).await;
        assert_eq!(settled.failures.len(), 1, "{settled:?}");
        assert_eq!(attempts.load(Ordering::SeqCst), expected_attempts);
    }
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
    let settled = settled_within(&manager, &AspiredSnapshot::new()).await;
    assert_eq!(settled.failures.len(), 1);
    assert_eq!(settled.failures[0].0.version, 7);
}

#[tokio::test]
async fn settling_waits_for_news_reports_models_without_versions_and_stops_at_the_deadline() {
    let (manager, _) = manager_with(vec![], 0);
    // Nothing heard from the source: not settled, and the deadline ends the wait with why.
    let deadline = std::time::Instant::now() + Duration::from_millis(50);
    let settled = manager.wait_until_settled(&["m".to_string()], &AspiredSnapshot::new(), Some(deadline)).await;
    assert_eq!(settled.unsettled.len(), 1, "{settled:?}");
    assert!(settled.unsettled[0].1.contains("has not reported its versions"), "{settled:?}");
    // An empty set: settled at once, as a model without versions.
    manager.set_aspired_versions("m", aspired(&[]));
    let settled = settled_within(&manager, &AspiredSnapshot::new()).await;
    assert_eq!(settled.without_versions, vec!["m".to_string()]);
    // An old set is no news: a set taken before the marks does not count.
    let marks = manager.aspired_marks().await;
    let deadline = std::time::Instant::now() + Duration::from_millis(50);
    let settled = manager.wait_until_settled(&["m".to_string()], &marks, Some(deadline)).await;
    assert_eq!(settled.unsettled.len(), 1, "{settled:?}");
    manager.set_aspired_versions("m", aspired(&[1]));
    assert_eq!(settled_within(&manager, &marks).await, Settlement::default());
}

#[tokio::test]
async fn a_version_aspired_again_while_it_unloads_serves_again() {
    // The model is removed from the config while a request holds its version, and added back
    // before that request ends: once the old copy has drained, the version loads again.
    let (manager, attempts) = manager_with(vec![], 0);
    manager.set_aspired_versions("m", aspired(&[1]));
    wait_for(&manager, "m", 1, ServableState::Available).await;
    let in_flight = manager.handle("m", &VersionRequest::Latest).expect("v1");
    manager.set_aspired_versions("m", aspired(&[]));
    wait_for(&manager, "m", 1, ServableState::Unloading).await;
    let marks = manager.aspired_marks().await;
    manager.set_aspired_versions("m", aspired(&[1]));
    drop(in_flight);
    assert_eq!(settled_within(&manager, &marks).await, Settlement::default());
    assert_eq!(manager.handle("m", &VersionRequest::Latest).expect("v1 again").id.version, 1);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn labels_resolve_to_versions() {
    let (manager, _) = manager_with(vec![], 0);
    manager.set_aspired_versions("m", aspired(&[1, 2]));
    wait_for(&manager, "m", 2, ServableState::Available).await;
    wait_for(&manager, "m", 1, ServableState::Available).await;
    manager.set_labels("m", [("stable".to_string(), 1)].into());
    manager.set_aspired_versions("m", aspired(&[1, 2]));
    let _ = settled_within(&manager, &AspiredSnapshot::new()).await;
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

/// Loads that block until the test lets them finish, counting how many run at once.
#[derive(Default)]
struct Gate {
    running: std::sync::Mutex<(usize, usize)>,
    changed: std::sync::Condvar,
    released: std::sync::Mutex<usize>,
    release: std::sync::Condvar,
}

impl Gate {
    fn wait_running(&self, count: usize) {
        let mut running = self.running.lock().expect("gate");
        while running.0 != count {
            running = self.changed.wait(running).expect("gate");
        }
    }

    fn release_one(&self) {
        *self.released.lock().expect("gate") += 1;
        self.release.notify_all();
    }
}

struct GatedAdapter(Arc<Gate>);

struct GatedLoader(Arc<Gate>);

impl crate::core::Loader for GatedLoader {
    fn load(&self) -> crate::core::ServingResult<Arc<dyn crate::core::Servable>> {
        let gate = &self.0;
        {
            let mut running = gate.running.lock().expect("gate");
            running.0 += 1;
            running.1 = running.1.max(running.0);
            gate.changed.notify_all();
        }
        let mut released = gate.released.lock().expect("gate");
        while *released == 0 {
            released = gate.release.wait(released).expect("gate");
        }
        *released -= 1;
        drop(released);
        gate.running.lock().expect("gate").0 -= 1;
        gate.changed.notify_all();
        Ok(Arc::new(crate::core::testing::HalfPlusTwo))
    }
}

impl crate::core::SourceAdapter for GatedAdapter {
    fn platform(&self) -> &str {
        "gated"
    }

    fn adapt(
        &self,
        _id: &crate::core::ServableId,
        _path: std::path::PathBuf,
    ) -> crate::core::ServingResult<Box<dyn crate::core::Loader>> {
        Ok(Box::new(GatedLoader(Arc::clone(&self.0))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_run_at_most_num_load_threads_at_once() {
    let gate = Arc::new(Gate::default());
    let manager = AspiredVersionsManager::spawn(ManagerOptions { num_load_threads: 0, ..Default::default() });
    manager.register_model("m", Arc::new(GatedAdapter(Arc::clone(&gate))));
    let model = |name: &str| name.to_string();
    manager.register_model("n", Arc::new(GatedAdapter(Arc::clone(&gate))));
    manager.set_aspired_versions("m", aspired(&[1]));
    manager.set_aspired_versions("n", aspired(&[1]));
    let waiting = Arc::clone(&gate);
    let one = tokio::task::spawn_blocking(move || waiting.wait_running(1));
    tokio::time::timeout(Duration::from_secs(10), one).await.expect("in time").expect("one load runs");
    // NOTE: a window in which a second load would start if nothing held it back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gate.running.lock().expect("gate").1, 1, "0 threads load one version at a time");
    gate.release_one();
    gate.release_one();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let settled = manager.wait_until_settled(&[model("m"), model("n")], &AspiredSnapshot::new(), Some(deadline)).await;
    assert_eq!(settled, Settlement::default());

    // Raised to two: two new versions load side by side.
    manager.set_load_threads(2);
    manager.set_aspired_versions("m", aspired(&[2]));
    manager.set_aspired_versions("n", aspired(&[2]));
    let waiting = Arc::clone(&gate);
    let two = tokio::task::spawn_blocking(move || waiting.wait_running(2));
    tokio::time::timeout(Duration::from_secs(10), two).await.expect("in time").expect("two loads run");
    gate.release_one();
    gate.release_one();
    wait_for(&manager, "m", 2, ServableState::Available).await;
    wait_for(&manager, "n", 2, ServableState::Available).await;
}
