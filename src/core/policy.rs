//! Version policies: which discovered versions are aspired, and the order of loads and unloads.

use std::collections::BTreeSet;

/// TF Serving's `ServableVersionPolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The N highest versions (0 is treated as 1).
    Latest(u32),
    All,
    Specific(BTreeSet<i64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// Returns the versions this policy aspires, among those found on disk.
    pub fn select(&self, found: &BTreeSet<i64>) -> BTreeSet<i64> {
        match self {
            VersionPolicy::Latest(n) => {
                let keep = (*n).max(1) as usize;
                found.iter().rev().take(keep).copied().collect()
            }
            VersionPolicy::All => found.clone(),
            VersionPolicy::Specific(wanted) => found.intersection(wanted).copied().collect(),
        }
    }
}

/// What the availability-preserving policy wants done next for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAction {
    Load(i64),
    Unload(i64),
}

/// A version as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyVersion {
    pub version: i64,
    pub aspired: bool,
    /// Serving requests now.
    pub available: bool,
    /// Never loaded yet and not loading.
    pub new: bool,
}

/// TF Serving's AvailabilityPreservingPolicy: never leave a model with no available
/// version while a replacement is still loading.
///
/// Returns the next action: unload the lowest un-aspired available version when some
/// aspired version is available, when nothing is aspired, or when several un-aspired
/// versions are available; otherwise load the highest new aspired version.
pub fn availability_preserving_action(versions: &[PolicyVersion]) -> Option<PolicyAction> {
    let any_aspired = versions.iter().any(|v| v.aspired);
    let aspired_available = versions.iter().any(|v| v.aspired && v.available);
    let unaspired_available: Vec<i64> =
        versions.iter().filter(|v| !v.aspired && v.available).map(|v| v.version).collect();
    if (!any_aspired || aspired_available || unaspired_available.len() > 1) && !unaspired_available.is_empty() {
        return unaspired_available.iter().min().map(|&v| PolicyAction::Unload(v));
    }
    versions.iter().filter(|v| v.aspired && v.new).map(|v| v.version).max().map(PolicyAction::Load)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(version: i64, aspired: bool, available: bool, new: bool) -> PolicyVersion {
        PolicyVersion { version, aspired, available, new }
    }

    #[test]
    fn latest_keeps_the_highest() {
        let found: BTreeSet<i64> = [1, 5, 3].into();
        assert_eq!(VersionPolicy::Latest(1).select(&found), [5].into());
        assert_eq!(VersionPolicy::Latest(2).select(&found), [3, 5].into());
        assert_eq!(VersionPolicy::Latest(0).select(&found), [5].into());
        assert_eq!(VersionPolicy::All.select(&found), found);
        let specific = VersionPolicy::Specific([3, 4].into());
        assert_eq!(specific.select(&found), [3].into());
    }

    #[test]
    fn loads_new_before_unloading_old() {
        // v1 serving, v2 aspired and new: load v2 first.
        let state = [v(1, false, true, false), v(2, true, false, true)];
        assert_eq!(availability_preserving_action(&state), Some(PolicyAction::Load(2)));
        // v2 still loading: keep v1.
        let state = [v(1, false, true, false), v(2, true, false, false)];
        assert_eq!(availability_preserving_action(&state), None);
        // v2 available: unload v1.
        let state = [v(1, false, true, false), v(2, true, true, false)];
        assert_eq!(availability_preserving_action(&state), Some(PolicyAction::Unload(1)));
    }

    #[test]
    fn failed_replacement_keeps_old_version() {
        // v2 failed (not new, not available): v1 keeps serving.
        let state = [v(1, false, true, false), v(2, true, false, false)];
        assert_eq!(availability_preserving_action(&state), None);
    }

    #[test]
    fn nothing_aspired_unloads_lowest_first() {
        let state = [v(2, false, true, false), v(1, false, true, false)];
        assert_eq!(availability_preserving_action(&state), Some(PolicyAction::Unload(1)));
    }

    #[test]
    fn several_unaspired_unload_even_while_loading() {
        let state = [v(1, false, true, false), v(2, false, true, false), v(3, true, false, true)];
        assert_eq!(availability_preserving_action(&state), Some(PolicyAction::Unload(1)));
    }
}
