//! The serving domain: tensors, signatures, servables, versions, loaders and the manager.
//!
//! Nothing here knows about HTTP, gRPC, ONNX Runtime or file watching.

pub mod budget;
pub mod decorate;
pub mod error;
pub mod example;
pub mod extended;
pub mod extensions;
pub mod handle;
pub mod loader;
pub mod manager;
mod manager_state;
#[cfg(test)]
mod manager_state_tests;
#[cfg(test)]
mod manager_tests;
pub mod model_config;
pub mod policy;
pub mod secret;
pub mod servable;
pub mod signature;
pub mod tensor;
#[cfg(test)]
pub(crate) mod testing;

pub use budget::{BudgetPermit, MemoryBudget};
pub use decorate::{Decorated, LoadDecorator};
pub use error::{Code, ServingError, ServingResult};
pub use extended::ExtendedServable;
pub use extensions::Extensions;
pub use handle::ServableHandle;
pub use loader::{AspiredVersion, AspiredVersionsSink, LoadHints, Loader, SourceAdapter};
pub use manager::{AspiredSnapshot, AspiredVersionsManager, ManagerOptions, Settlement, VersionStatus};
pub use model_config::{ConfigReloader, ModelConfig, ReloadFuture};
pub use policy::VersionPolicy;
pub use secret::Secret;
pub use servable::{
    CancelOnDrop, CancelSignal, RunOutputs, RunRequest, Servable, ServableId, ServableState, VersionRequest,
};
pub use signature::{find_signature, OutputKeys, SignatureDef, SignatureMap, TensorInfo, DEFAULT_SIGNATURE};
pub use tensor::{DType, Element, Tensor, TensorData};
