//! One integration test binary (ripgrep style): each module is one area. What needs no
//! libtorch (`shard`, `aggregate`) is in the `data` test binary (tests/data).

// A test is one scenario read top to bottom (set up, run the binary, check every
// claim): the 80-line rule (clippy.toml) is for the program's functions, not these.
#![allow(clippy::too_many_lines)]

mod backgrounds;
mod bad_input;
mod batcher;
mod byo;
mod common;
mod conv_flags;
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
