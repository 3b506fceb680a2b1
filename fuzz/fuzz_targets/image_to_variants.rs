//! Arbitrary bytes as an image member (with a fixed annotation) -> decode -> variants.
#![no_main]

use std::sync::{Arc, OnceLock};

use bgstream::stage::prepare::{prepare, PrepareConfig, Scratch};
use bgstream::source::Sample;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    static CFG: OnceLock<PrepareConfig> = OnceLock::new();
    let cfg = CFG.get_or_init(common::config);
    let sample = Sample {
        shard: Arc::from("fuzz.tar"),
        key: "k".into(),
        image: Some(data.to_vec()),
        cls: Some(b"3".to_vec()),
        json: Some(br#"{"boxes": [[1, 1, 6, 5], [2, 0, 9, 9]]}"#.to_vec()),
        mask: None,
        problem: None,
        permit: None,
    };
    let _ = prepare(&sample, cfg, &mut Scratch::default());
});
