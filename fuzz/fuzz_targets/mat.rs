//! Arbitrary bytes as a Caltech101 `annotation_XXXX.mat` (seeds: scipy-written files like
//! Caltech101's, plain and zlib-compressed, several dtypes).
#![no_main]

use bgstream::shard::caltech101::parse_annotation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(([x0, y0, x1, y1], polygon)) = parse_annotation(data) {
        assert!(x0 <= x1 && y0 <= y1, "a box read from a .mat is ordered");
        if let Some(p) = polygon {
            assert!(p.len() >= 6 && p.len() % 2 == 0);
        }
    }
});
