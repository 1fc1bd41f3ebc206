//! The manager's transitions driven one event at a time, without tasks or timers: every
//! interleaving of aspire, un-aspire, re-aspire, load success and failure, retry and unload
//! that matters is a row of the table below, with the states it must reach.

use std::sync::Arc;
use std::time::Duration;

use super::manager_state::{Effect, ManagerOptions, ManagerState, MAX_ENDED_VERSIONS};
use super::servable::{ServableId, ServableState};
use super::testing::{aspired, FakeAdapter, HalfPlusTwo};
use super::ServingError;

use ServableState::{Available, End, Loading, Unloading};

/// One event, as the manager's task would deliver it.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// The source's new aspired set.
    Aspire(&'static [i64]),
    /// A pending load of this version finished.
    Loaded(i64),
    /// A pending load of this version failed, transiently or not.
    Failed(i64, bool),
    /// The retry timer with this ticket (they are numbered from 1 in scheduling order) fired.
    Retry(i64, u64),
    /// This version's unload (drain and drop) finished.
    Unloaded(i64),
    /// The states each listed version must be in, and the versions requests see.
    Expect(&'static [(i64, ServableState)], &'static [i64]),
    /// The versions whose loads are pending, exactly.
    Loading(&'static [i64]),
}

use Step::*;

/// A manager state and the effects it asked for that have not been answered yet.
struct Harness {
    state: ManagerState,
    loads: Vec<i64>,
    retries: Vec<(i64, u64)>,
    unloads: Vec<i64>,
}

impl Harness {
    fn new(max_num_load_retries: u32) -> Self {
        let options =
            ManagerOptions { max_num_load_retries, load_retry_interval: Duration::from_secs(60), num_load_threads: 1 };
        let mut state = ManagerState::new(options);
        state.register_model("m".into(), Arc::new(FakeAdapter::healthy()));
        Self { state, loads: Vec::new(), retries: Vec::new(), unloads: Vec::new() }
    }

    fn absorb(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Load { id, .. } => self.loads.push(id.version),
                Effect::ScheduleRetry { id, ticket, .. } => self.retries.push((id.version, ticket)),
                Effect::Unload { id, .. } => self.unloads.push(id.version),
            }
        }
    }

    fn take(list: &mut Vec<i64>, version: i64, what: &str, case: &str) {
        let at = list.iter().position(|&v| v == version);
        let at = at.unwrap_or_else(|| panic!("{case}: no pending {what} of version {version} (pending: {list:?})"));
        list.remove(at);
    }

    fn step(&mut self, step: Step, case: &str) {
        let id = |version| ServableId { name: "m".into(), version };
        let effects = match step {
            Aspire(versions) => self.state.set_aspired("m", aspired(versions)),
            Loaded(version) => {
                Self::take(&mut self.loads, version, "load", case);
                self.state.load_done(id(version), Ok(Arc::new(HalfPlusTwo)))
            }
            Failed(version, transient) => {
                Self::take(&mut self.loads, version, "load", case);
                let error = if transient {
                    ServingError::unavailable("model store unreachable")
                } else {
                    ServingError::invalid_argument("corrupt model")
                };
                self.state.load_done(id(version), Err(error))
            }
            Retry(version, attempt) => {
                // NOTE: a timer may fire after its entry was replaced; it must then do nothing.
                self.retries.retain(|&pending| pending != (version, attempt));
                self.state.retry_load(id(version), attempt)
            }
            Unloaded(version) => {
                Self::take(&mut self.unloads, version, "unload", case);
                self.state.unload_done(id(version))
            }
            Expect(states, serving) => {
                self.check(states, serving, case);
                Vec::new()
            }
            Step::Loading(versions) => {
                assert_eq!(self.loads, versions, "{case}: pending loads");
                Vec::new()
            }
        };
        self.absorb(effects);
    }

    fn check(&self, states: &[(i64, ServableState)], serving: &[i64], case: &str) {
        let statuses = self.state.status.get("m").cloned().unwrap_or_default();
        for (version, state) in states {
            let found = statuses.get(version).map(|s| s.state);
            assert_eq!(found, Some(*state), "{case}: version {version} (all: {statuses:?})");
        }
        let map = self.state.serving_map();
        let seen: Vec<i64> = map.get("m").map(|m| m.versions.keys().copied().collect()).unwrap_or_default();
        assert_eq!(seen, serving, "{case}: versions that serve");
    }
}

/// (case, retries allowed, steps). Every case ends with nothing pending.
const CASES: &[(&str, u32, &[Step])] = &[
    (
        "a new version serves before the old one retires",
        0,
        &[
            Aspire(&[1]),
            Loaded(1),
            Aspire(&[2]),
            Expect(&[(1, Available), (2, Loading)], &[1]),
            Loaded(2),
            Expect(&[(1, Unloading), (2, Available)], &[2]),
            Unloaded(1),
            Expect(&[(1, End), (2, Available)], &[2]),
        ],
    ),
    (
        "a broken new version leaves the old one serving, and is not retried",
        3,
        &[
            Aspire(&[1]),
            Loaded(1),
            Aspire(&[2]),
            Failed(2, false),
            Expect(&[(1, Available), (2, End)], &[1]),
            // Announced again: no reload of a version that failed for good.
            Aspire(&[2]),
            Expect(&[(1, Available), (2, End)], &[1]),
        ],
    ),
    (
        "a transient failure is retried until the retries run out",
        2,
        &[
            Aspire(&[1]),
            Failed(1, true),
            Retry(1, 1),
            Failed(1, true),
            Retry(1, 2),
            Expect(&[(1, Loading)], &[]),
            Failed(1, true),
            Expect(&[(1, End)], &[]),
        ],
    ),
    (
        "a transient failure then a success serves",
        2,
        &[Aspire(&[1]), Failed(1, true), Retry(1, 1), Loaded(1), Expect(&[(1, Available)], &[1])],
    ),
    (
        "re-aspired while unloading: loads again once unloaded",
        0,
        &[
            Aspire(&[1]),
            Loaded(1),
            Aspire(&[]),
            Expect(&[(1, Unloading)], &[]),
            Aspire(&[1]),
            Expect(&[(1, Unloading)], &[]),
            Unloaded(1),
            Expect(&[(1, Loading)], &[]),
            Loaded(1),
            Expect(&[(1, Available)], &[1]),
        ],
    ),
    (
        "re-aspired while unloading, then dropped again before the unload ends: stays gone",
        0,
        &[Aspire(&[1]), Loaded(1), Aspire(&[]), Aspire(&[1]), Aspire(&[]), Unloaded(1), Expect(&[(1, End)], &[])],
    ),
    (
        "un-aspired while loading: unloads as soon as it is loaded",
        0,
        &[
            Aspire(&[1]),
            Aspire(&[]),
            Expect(&[(1, Loading)], &[]),
            Loaded(1),
            Expect(&[(1, Unloading)], &[]),
            Unloaded(1),
            Expect(&[(1, End)], &[]),
        ],
    ),
    (
        "un-aspired while loading, failing: ends without a retry",
        3,
        &[Aspire(&[1]), Aspire(&[]), Failed(1, true), Expect(&[(1, End)], &[])],
    ),
    (
        "un-aspired while waiting to retry, then aspired again: a fresh load, and the old timer is stale",
        3,
        &[
            Aspire(&[1]),
            Failed(1, true),
            Aspire(&[]),
            Expect(&[(1, End)], &[]),
            Aspire(&[1]),
            Expect(&[(1, Loading)], &[]),
            // The dropped entry's timer fires while the fresh one loads: nothing happens.
            Retry(1, 1),
            Step::Loading(&[1]),
            Loaded(1),
            Expect(&[(1, Available)], &[1]),
        ],
    ),
    (
        "a stale retry timer does nothing",
        3,
        &[
            Aspire(&[1]),
            Failed(1, true),
            Retry(1, 1),
            Failed(1, true),
            // Timer 1 again (a duplicate): timer 2 is the one the entry waits for.
            Retry(1, 1),
            Step::Loading(&[]),
            Retry(1, 2),
            Loaded(1),
            Expect(&[(1, Available)], &[1]),
        ],
    ),
    (
        "un-aspired while loading, failing, then aspired again: loads afresh",
        0,
        &[
            Aspire(&[1]),
            Aspire(&[]),
            Failed(1, false),
            Expect(&[(1, End)], &[]),
            Aspire(&[1]),
            Expect(&[(1, Loading)], &[]),
            Loaded(1),
            Expect(&[(1, Available)], &[1]),
        ],
    ),
    (
        "a dropped entry's timer does not fire the fresh entry's retry early",
        3,
        &[
            Aspire(&[1]),
            Failed(1, true),
            Aspire(&[]),
            Aspire(&[1]),
            Failed(1, true),
            // Timer 1 belonged to the dropped entry; the fresh one waits for timer 2.
            Retry(1, 1),
            Step::Loading(&[]),
            Retry(1, 2),
            Step::Loading(&[1]),
            Loaded(1),
            Expect(&[(1, Available)], &[1]),
        ],
    ),
    (
        "a failed version is reloaded once dropped and aspired again",
        0,
        &[Aspire(&[1]), Failed(1, false), Aspire(&[]), Aspire(&[1]), Loaded(1), Expect(&[(1, Available)], &[1])],
    ),
    (
        "several aspired versions all serve, and all leave on an empty set",
        0,
        &[
            Aspire(&[1, 2]),
            Loaded(1),
            Loaded(2),
            Expect(&[(1, Available), (2, Available)], &[1, 2]),
            Aspire(&[]),
            Unloaded(1),
            Unloaded(2),
            Expect(&[(1, End), (2, End)], &[]),
        ],
    ),
    (
        "swapped back to an older version while the newer one loads",
        0,
        &[
            Aspire(&[1]),
            Loaded(1),
            Aspire(&[2]),
            Aspire(&[1]),
            Expect(&[(1, Available), (2, Loading)], &[1]),
            Loaded(2),
            Expect(&[(1, Available), (2, Unloading)], &[1]),
            Unloaded(2),
            Expect(&[(1, Available), (2, End)], &[1]),
        ],
    ),
];

#[test]
fn every_interleaving_in_the_table_reaches_its_states() {
    for (case, retries, steps) in CASES {
        let mut harness = Harness::new(*retries);
        for step in *steps {
            harness.step(*step, case);
        }
        assert!(harness.loads.is_empty(), "{case}: loads left pending: {:?}", harness.loads);
        assert!(harness.unloads.is_empty(), "{case}: unloads left pending: {:?}", harness.unloads);
    }
}

#[test]
fn ended_versions_are_kept_up_to_a_bound() {
    let mut harness = Harness::new(0);
    let total = MAX_ENDED_VERSIONS as i64 + 5;
    for version in 1..=total {
        let effects = harness.state.set_aspired("m", aspired(&[version]));
        harness.absorb(effects);
        harness.step(Loaded(version), "history");
        if version > 1 {
            harness.step(Unloaded(version - 1), "history");
        }
    }
    let statuses = &harness.state.status["m"];
    let ended: Vec<i64> = statuses.iter().filter(|(_, s)| s.state == End).map(|(&v, _)| v).collect();
    assert_eq!(ended.len(), MAX_ENDED_VERSIONS);
    // The oldest went first; the newest ended ones and the serving one stay.
    assert_eq!(ended.first(), Some(&(total - MAX_ENDED_VERSIONS as i64)));
    assert_eq!(statuses[&total].state, Available);
}

#[test]
fn aspired_sets_count_up_and_list_the_aspired_versions() {
    let mut harness = Harness::new(0);
    assert!(harness.state.aspired_snapshot().is_empty(), "nothing heard yet");
    harness.step(Aspire(&[1, 2]), "aspired");
    harness.step(Aspire(&[2]), "aspired");
    let snapshot = harness.state.aspired_snapshot();
    assert_eq!(snapshot["m"].generation, 2);
    assert_eq!(snapshot["m"].versions.iter().copied().collect::<Vec<_>>(), vec![2]);
}
