//! Configuration: the command line with TF Serving's flag names.

pub mod cli;

pub use cli::{Cli, Command, ServeArgs};
