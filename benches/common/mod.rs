//! Real inputs for the benches: the 66 ImageNet validation JPEGs of ../shared/data with
//! their boxes, or the demo photos from the venv when ../shared is absent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bgstream::ops::decode::Limits;
use bgstream::ops::geometry::Preprocess;
use bgstream::ops::textures::TextureSet;
use bgstream::ops::variants::Variant;
use bgstream::shard::{read_imagenet_csv, read_manifest, Entry};
use bgstream::source::Sample;
use bgstream::stage::prepare::PrepareConfig;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn entries() -> Vec<Entry> {
    let data = root().join("../shared/data/imagenet-val");
    if data.join("annotations.csv").exists() {
        return read_imagenet_csv(&data.join("annotations.csv"), &data.join("images"), None)
            .expect("reference data readable")
            .0;
    }
    eprintln!("../shared/data absent: benchmarking the scikit-image demo photos instead");
    let out = std::process::Command::new(root().join(".venv/bin/python"))
        .args([
            "-c",
            "import os, skimage.data as d; print(os.path.dirname(d.__file__))",
        ])
        .output()
        .expect("run scripts/setup first");
    let photos = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    read_manifest(&root().join("examples/demo/boxes.json"), Path::new(&photos))
        .expect("demo manifest")
        .0
}

/// The CPU stage config for one preprocessing, no filter, built-in textures.
pub fn prepare_config(p: Preprocess, variants: Vec<Variant>) -> PrepareConfig {
    let mut textures = TextureSet::load(None).unwrap();
    textures.prepare(p.input_size, p.interpolation).unwrap();
    PrepareConfig {
        groups: vec![p],
        variants,
        textures,
        seed: 0,
        min_fg: 0.0,
        max_fg: 1.0,
        limits: Limits::default(),
        num_classes: 1000,
        class_map: None,
        donors: None,
        original_all: false,
    }
}

/// Samples as a shard reader would produce them, from the entries and their file bytes.
pub fn samples(entries: &[Entry], files: &[Vec<u8>]) -> Vec<Sample> {
    entries
        .iter()
        .zip(files)
        .map(|(e, f)| Sample {
            shard: Arc::from("bench"),
            key: e.key.clone(),
            image: Some(f.clone()),
            json: Some(serde_json::to_vec(&e.annotation).unwrap()),
            ..Default::default()
        })
        .collect()
}
