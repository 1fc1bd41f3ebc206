//! Inference over a servable: signature resolution, input mapping, output filters.

pub mod classify;
pub mod images;
pub mod predict;

pub use classify::{classify, regress};
pub use predict::{predict, run_model, PredictOutcome};
