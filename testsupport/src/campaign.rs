//! What the fault campaigns share (`keymgmt/tests/campaign.rs`,
//! `tools/tests/faults.rs`): how many rounds to run and the seed that picks
//! the faults. The faults themselves, drawn with `lsim_transport::rng::Rng`
//! from that seed, stay with each campaign.

/// Rounds per campaign: `LSIM_CAMPAIGN_ROUNDS`, else `ci`.
pub fn rounds(ci: usize) -> usize {
    std::env::var("LSIM_CAMPAIGN_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(ci)
}

/// The campaign's seed (`LSIM_CAMPAIGN_SEED`, else the clock), printed so a
/// failing run can be replayed.
pub fn seed(campaign: &str) -> u64 {
    let seed = std::env::var("LSIM_CAMPAIGN_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!("{campaign}: seed {seed} (replay with LSIM_CAMPAIGN_SEED={seed})");
    seed
}
