//! The tests that need no libtorch: `bgstream shard` (every input form) and `bgstream
//! aggregate`. They run in the default build and under `cargo test --no-default-features`,
//! where the parts that run a model are left out.

// A test is one scenario read top to bottom (set up, run the binary, check every
// claim): the 80-line rule (clippy.toml) is for the program's functions, not these.
#![allow(clippy::too_many_lines)]

#[path = "../it/common.rs"]
#[allow(dead_code)] // shared with the `it` binary, which uses all of it
mod common;

// The report's HTML checks and hostile input, shared with tests/it and fuzz/report_writer.
#[path = "../html/fixture.rs"]
mod fixture;
#[path = "../html/check.rs"]
#[allow(dead_code)] // shared with the `it` binary and the fuzz target
mod html_check;

mod aggregate;
mod bombs;
mod caltech;
mod gallery_pixels;
mod imagenet_formats;
mod layering;
mod report_injection;
mod report_size;
mod shard_formats;
mod truncated_jpegs;
