//! Arbitrary bytes as a sample's mask -> every variant: the first byte chooses whether the
//! rest is the `<key>.mask.png` member or polygons (little-endian f32 coordinates, any value
//! NaN and infinities included, split into polygons at each NaN-free run of 16 numbers).
#![no_main]

use std::sync::{Arc, OnceLock};

use bgstream::stage::prepare::{prepare, PrepareConfig, Scratch};
use bgstream::shard::masks::encode_png;
use bgstream::source::Sample;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    static CFG: OnceLock<PrepareConfig> = OnceLock::new();
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    let cfg = CFG.get_or_init(common::config);
    // A 40x32 grayscale PNG (the image itself; its size is what the mask must match).
    let image = IMAGE.get_or_init(|| {
        let flags: Vec<bool> = (0..40 * 32).map(|i| (i * 7) % 5 < 2).collect();
        encode_png(40, 32, &flags)
    });
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut json = serde_json::json!({"boxes": [[1, 1, 30, 20]]});
    let mut mask = None;
    if mode % 2 == 0 {
        mask = Some(rest.to_vec());
    } else {
        let coords: Vec<f64> = rest
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect();
        // serde_json writes non-finite numbers as null: a bad annotation, also fine.
        let polygons: Vec<Vec<f64>> = coords.chunks(16).map(<[f64]>::to_vec).collect();
        json["polygons"] = serde_json::json!(polygons);
    }
    let sample = Sample {
        shard: Arc::from("fuzz.tar"),
        key: "k".into(),
        image: Some(image.clone()),
        cls: Some(b"3".to_vec()),
        json: Some(serde_json::to_vec(&json).unwrap()),
        mask,
        problem: None,
        permit: None,
    };
    let _ = prepare(&sample, cfg, &mut Scratch::default());
});
