//! Models through libtorch (`tch`): TorchScript + JSON sidecar, device choice, precision.
//!
//! One long-lived thread owns every model and the device for the whole run
//! ([`crate::batch`]); nothing here is shared across threads.

pub mod device;
pub mod graph;
pub mod model;
pub mod streams;

pub use device::{resolve_device, resolve_devices, Precision};
pub use model::{guarded, Model, Sidecar};
