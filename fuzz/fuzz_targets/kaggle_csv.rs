//! Arbitrary bytes as Kaggle's `LOC_val_solution.csv` and as the `imagenet-csv` table
//! (seeds: excerpts of the real files).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use bgstream::shard::imagenet::{parse_imagenet_csv, parse_kaggle, Classes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static CLASSES: OnceLock<Classes> = OnceLock::new();
    let classes = CLASSES.get_or_init(Classes::imagenet);
    let path = Path::new("fuzz.csv");
    let _ = parse_kaggle(data, path, classes);
    let _ = parse_imagenet_csv(data, path, classes);
});
