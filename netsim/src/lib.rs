//! A deterministic network simulator for lsim's transport.
//!
//! It drives the real sans-IO `Sender` and `Receiver` cores over a simulated
//! shared radio channel, in virtual time, from a seed: a run is reproducible
//! bit for bit, and a 16 MiB file to a hundred receivers takes seconds.
//!
//! ```
//! use lsim_netsim::{Scenario, Sim};
//!
//! let scenario = Scenario::parse(r#"
//!     name = "doc"
//!     receivers = 3
//!     [loss]
//!     model = "bernoulli"
//!     p = 0.1
//!     [workload]
//!     file_bytes = 200000
//!     chats = 20
//! "#).unwrap();
//! let report = Sim::new(scenario).unwrap().run();
//! assert!(report.delivered_all);
//! assert!(report.per_receiver.iter().all(|r| r.verified == 21 && r.corrupt == 0));
//! ```
#![forbid(unsafe_code)]

pub mod clock;
pub mod loss;
pub mod medium;
pub mod node;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod seal;
pub mod sim;
pub mod sweep;
pub mod testbed;
pub mod workload;

pub use report::{RegionReport, RegionSample, Report, Sample};
pub use scenario::{Scenario, ScenarioError};
pub use sim::Sim;
