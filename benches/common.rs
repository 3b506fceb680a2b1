//! Real inputs for the benches: the 66 ImageNet validation JPEGs of ../shared/data with
//! their boxes, or the demo photos from the venv when ../shared is absent.

use std::path::{Path, PathBuf};

use bgstream::source::shard_writer::{read_imagenet_csv, read_manifest, Entry};

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
