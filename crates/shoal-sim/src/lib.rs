//! A deterministic swarm simulator on shoal's real protocol cores.
//!
//! Thousands of simulated hosts each run the very code the engine runs — a
//! [`PeerSession`](shoal_wire::PeerSession) per connection, fed real bytes, and the
//! picker, choker and smart ban of `shoal-swarm` — over simulated links on a virtual clock.
//! Nothing reads the wall clock or an unseeded random source, and every map that is
//! iterated is ordered, so one seed gives one run, byte for byte.
//!
//! Layers, bottom up:
//! - [`queue`]: virtual time and the event queue.
//! - [`content`]: the torrent's bytes and piece hashes; each host's in-memory piece store.
//! - [`torrent`]: one host's torrent: `shoal_swarm::TorrentCore` over simulated sockets
//!   and an in-memory store, as the engine's torrent actor runs it over real ones.
//! - [`world`]: hosts, links (capacity, latency, loss, TCP windows), tracker and faults.
//! - [`report`]: completion times against the Kumar & Ross bound, waste, fairness, bans.
//! - [`timeline`]: on request, what the swarm did bucket by bucket (uplink use and why
//!   uplinks idled, the seeds' new and repeated pieces, completions).
//! - [`scenario`]: what to run, as the command line spells it (sizes and rates in
//!   `shoal_core::units`, the convention every shoal command shares).

pub mod content;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod timeline;
pub mod torrent;
pub mod world;

pub use report::Report;
pub use scenario::{Arrival, LinkClass, Scenario, ScenarioError};

/// Runs a scenario to its end and returns the report.
pub fn run(scenario: &Scenario) -> Result<Report, ScenarioError> {
    scenario.validate()?;
    let outcome = world::World::new(scenario.clone()).run();
    Ok(Report::new(scenario, &outcome))
}
