//! Runs of membership: when a member's membership began, for what it may
//! read of the past (the history policy `joined`). A run begins at a join
//! and outlives an eviction for absence within `ABSENCE_KEEPS_RUN`; a
//! leave, an administrator's eviction or a revocation ends it (the server
//! stores it, `store::Run`). It decides nothing about keys or trees.

use std::time::Duration;

use crate::store::{Run, Store};
use crate::tree::MemberId;

/// How long a member evicted for absence may stay away and, back, go on
/// with the same run of membership (`store::Run`): the archive's default age.
pub const ABSENCE_KEEPS_RUN: Duration = Duration::from_secs(24 * 3600);

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The epoch a current member's run of membership began at: its kept run,
/// else its leaf's version (the epoch it joined in: a leaf is made by the
/// join's commit and never rekeyed; a member that left and came back has a
/// new leaf).
pub(super) fn run_since(store: &Store, name: &str, member: MemberId, leaf_version: u32) -> u32 {
    match store.run(name, member.0) {
        Ok(Some(Run { since, absent_since: None })) if since <= leaf_version => since,
        _ => leaf_version,
    }
}

/// The epoch a member joining at `epoch` is a member since: that of its
/// run before an eviction for absence within `ABSENCE_KEEPS_RUN`, else `epoch`.
pub(super) fn joiner_since(store: &Store, name: &str, member: MemberId, epoch: u32) -> u32 {
    match store.run(name, member.0) {
        Ok(Some(Run { since, absent_since: Some(at) }))
            if since <= epoch && unix_now().saturating_sub(at) <= ABSENCE_KEEPS_RUN.as_secs() =>
        {
            since
        }
        _ => epoch,
    }
}
