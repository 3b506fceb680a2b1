//! Arbitrary bytes as a tar shard -> samples -> annotation, decode, resize, every variant.
#![no_main]

use std::sync::{Arc, OnceLock};

use bgstream::stage::prepare::{prepare, PrepareConfig, Scratch};
use bgstream::source::tar_reader::read_archive;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    static CFG: OnceLock<PrepareConfig> = OnceLock::new();
    let cfg = CFG.get_or_init(common::config);
    let mut scratch = Scratch::default();
    read_archive(data, Arc::from("fuzz.tar"), |sample| {
        let _ = prepare(&sample, cfg, &mut scratch);
        true
    });
});
