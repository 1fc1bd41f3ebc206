//! Configuration: the command line with TF Serving's flag names, and TF Serving's config
//! messages turned into core model configs.

pub mod cli;
pub mod model_server_config;
pub mod monitoring;
pub mod ssl;

pub use cli::{Cli, Command, ServeArgs};
