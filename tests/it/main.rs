//! One integration test binary (ripgrep style): each module is one area.

mod aggregate;
mod backgrounds;
mod bad_input;
mod batcher;
mod common;
mod imagenet_formats;
mod integrity;
mod model_reference;
mod pipeline;
mod ranks;
mod resume;
mod schema;
mod shard_formats;
mod variants_reference;
