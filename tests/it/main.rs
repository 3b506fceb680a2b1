//! One integration test binary (ripgrep style): each module is one area. What needs no
//! libtorch (`shard`, `aggregate`) is in the `data` test binary (tests/data).

mod backgrounds;
mod bad_input;
mod batcher;
mod common;
mod finetune;
mod hostile;
mod hostile3;
#[path = "../html/check.rs"]
#[allow(dead_code)] // shared with the `data` binary and the fuzz target
mod html_check;
mod in9;
mod integrity;
mod launcher;
mod masks;
mod model_reference;
mod original_all;
mod paper;
mod pipeline;
mod preview;
mod ranks;
mod report;
mod resume;
mod schema;
mod timm_preprocess;
mod variants_reference;
