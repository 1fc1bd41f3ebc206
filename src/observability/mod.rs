//! Observability: the Prometheus exporter (`exporter`), request accounting shared by the
//! transports (`requests`), and the load decorator and gauges of model versions (`versions`).
//! Each metric's name lives beside the code that records it.

pub mod exporter;
pub mod requests;
pub mod versions;

pub use exporter::{install_prometheus, upkeep_task};
pub use requests::account;
pub use versions::{version_state_task, VersionMetrics};
