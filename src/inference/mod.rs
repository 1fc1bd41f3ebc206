//! Inference over a servable: signature resolution, input mapping, output filters, and
//! tf.Example parsing for classify and regress.

pub mod blocking;
pub mod classify;
pub mod example_parse;
pub mod images;
pub mod predict;

pub use blocking::inline_or_blocking;
pub use classify::run_example_method;
pub use predict::{predict, run_model, PredictOutcome};
