//! Inference over a servable: signature resolution, input mapping, output filters.

pub mod predict;

pub use predict::{predict, PredictOutcome};
