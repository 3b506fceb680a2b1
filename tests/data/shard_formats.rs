//! `bgstream shard` on a Pascal VOC folder and on a box CSV: generated inputs -> the real
//! binary -> the shards read back with `tar_reader`; and a run of the VOC shards.

use std::path::{Path, PathBuf};

use bgstream::source::tar_reader::read_shard;
use bgstream::source::Annotation;

use crate::common::{self, path_str};

use common::jpeg;

/// (key, annotation, image bytes) of every sample of the `.tar` files in `dir`, in order.
fn read_back(dir: &Path) -> Vec<(String, Annotation, Vec<u8>)> {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    shards.sort();
    let mut out = Vec::new();
    for s in shards {
        let report = read_shard(&s, |sample| {
            let a = sample.annotation().unwrap();
            out.push((sample.key.clone(), a, sample.image.unwrap()));
            true
        });
        assert_eq!(report.error, None, "{}", s.display());
        assert_eq!(report.skipped_members, 0);
    }
    out
}

/// One `<object>`: VOC class, 1-based inclusive `[xmin, ymin, xmax, ymax]`, difficult.
type VocObject = (&'static str, [u32; 4], bool);

fn voc_xml(id: &str, objects: &[VocObject]) -> String {
    let objects: String = objects
        .iter()
        .map(|(name, b, difficult)| {
            format!(
                "  <object>\n    <name>{name}</name>\n    <pose>Unspecified</pose>\n    \
                 <truncated>0</truncated>\n    <difficult>{}</difficult>\n    <bndbox>\n      \
                 <xmin>{}</xmin>\n      <ymin>{}</ymin>\n      <xmax>{}</xmax>\n      \
                 <ymax>{}</ymax>\n    </bndbox>\n  </object>\n",
                u8::from(*difficult),
                b[0],
                b[1],
                b[2],
                b[3]
            )
        })
        .collect();
    format!(
        "<annotation>\n  <folder>VOC2012</folder>\n  <filename>{id}.jpg</filename>\n  \
         <source><database>The VOC2008 Database</database></source>\n  <size>\n    \
         <width>96</width>\n    <height>80</height>\n    <depth>3</depth>\n  </size>\n  \
         <segmented>0</segmented>\n{objects}</annotation>\n"
    )
}

/// A VOC2012-layout folder of 96x80 JPEGs; `val` lists ids 1, 2 and 4 (not in id order).
fn voc_folder(root: &Path, images: &[(&str, Vec<VocObject>)], val: &[&str]) {
    for sub in ["Annotations", "JPEGImages", "ImageSets/Main"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for (seed, (id, objects)) in images.iter().enumerate() {
        std::fs::write(
            root.join(format!("Annotations/{id}.xml")),
            voc_xml(id, objects),
        )
        .unwrap();
        std::fs::write(
            root.join(format!("JPEGImages/{id}.jpg")),
            jpeg(96, 80, seed as u8),
        )
        .unwrap();
    }
    let list: String = val.iter().map(|id| format!("{id}\n")).collect();
    std::fs::write(root.join("ImageSets/Main/val.txt"), list).unwrap();
}

fn standard_voc(root: &Path) {
    voc_folder(
        root,
        &[
            // dog 48x40 beats person 10x10
            (
                "2008_000001",
                vec![
                    ("person", [1, 1, 10, 10], false),
                    ("dog", [11, 11, 58, 50], false),
                ],
            ),
            // two cats (2 x 30x40) beat a chair
            (
                "2008_000002",
                vec![
                    ("cat", [1, 1, 30, 40], false),
                    ("chair", [40, 40, 45, 45], false),
                    ("cat", [51, 31, 80, 70], false),
                ],
            ),
            ("2008_000003", vec![("horse", [1, 1, 50, 50], false)]),
            // a difficult bird 40x40 beats a sheep 30x30 unless difficult ones are skipped
            (
                "2008_000004",
                vec![
                    ("bird", [1, 1, 40, 40], true),
                    ("sheep", [51, 41, 80, 70], false),
                ],
            ),
            // only difficult objects
            ("2008_000005", vec![("boat", [1, 1, 40, 40], true)]),
        ],
        &["2008_000004", "2008_000001", "2008_000002"],
    );
}

/// The annotation of a 96x80 VOC image.
fn voc_annotation(label: i64, boxes: &[[f64; 4]], class: &str) -> Annotation {
    Annotation {
        label,
        boxes: boxes.to_vec(),
        width: Some(96),
        height: Some(80),
        wnid: Some(class.into()),
        ..Default::default()
    }
}

fn shard(args: &[&str]) -> String {
    let mut all = vec!["shard"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = common::bgstream(&all);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    stdout
}

#[test]
fn voc_folder_becomes_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let voc = tmp.path().join("VOC2012");
    standard_voc(&voc);
    let out = tmp.path().join("shards");
    let stdout = shard(&[
        "--annotations",
        path_str(&voc),
        "--split",
        "val",
        "--out",
        path_str(&out),
        "--prefix",
        "voc",
        "--shard-size",
        "2",
    ]);
    assert!(
        stdout.contains("wrote 3 samples into 2 shard(s)"),
        "{stdout}"
    );
    assert!(out.join("voc-000000.tar").is_file() && out.join("voc-000001.tar").is_file());
    let samples = read_back(&out);
    let keys: Vec<&str> = samples.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        keys,
        ["2008_000004", "2008_000001", "2008_000002"],
        "val.txt order"
    );
    let got: Vec<Annotation> = samples.iter().map(|s| s.1.clone()).collect();
    assert_eq!(
        got,
        [
            voc_annotation(2, &[[0.0, 0.0, 40.0, 40.0]], "bird"),
            voc_annotation(11, &[[10.0, 10.0, 58.0, 50.0]], "dog"),
            voc_annotation(
                7,
                &[[0.0, 0.0, 30.0, 40.0], [50.0, 30.0, 80.0, 70.0]],
                "cat"
            ),
        ]
    );
    for (key, _, bytes) in &samples {
        let file = std::fs::read(voc.join(format!("JPEGImages/{key}.jpg"))).unwrap();
        assert!(bytes == &file, "{key}: the JPEG is copied as is");
    }

    // Same inputs, byte-identical shards.
    let again = tmp.path().join("again");
    shard(&[
        "--annotations",
        path_str(&voc),
        "--format",
        "voc",
        "--split",
        "val",
        "--images",
        path_str(&voc.join("JPEGImages")),
        "--out",
        path_str(&again),
        "--prefix",
        "voc",
        "--shard-size",
        "2",
    ]);
    for name in ["voc-000000.tar", "voc-000001.tar"] {
        let (a, b) = (out.join(name), again.join(name));
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{name}"
        );
    }

    // No split: every XML, sorted; difficult objects skipped -> the sheep labels 000004
    // and 000005 has no object left.
    let all = tmp.path().join("all");
    let stdout = shard(&[
        "--annotations",
        path_str(&voc),
        "--voc-skip-difficult",
        "--out",
        path_str(&all),
    ]);
    assert!(
        stdout.contains("wrote 4 samples") && stdout.contains("1 images without objects"),
        "{stdout}"
    );
    let samples = read_back(&all);
    let keys: Vec<&str> = samples.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        keys,
        ["2008_000001", "2008_000002", "2008_000003", "2008_000004"]
    );
    assert_eq!(
        samples[3].1,
        voc_annotation(16, &[[50.0, 40.0, 80.0, 70.0]], "sheep")
    );
}

#[test]
#[cfg(feature = "torch")]
fn voc_shards_run_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let voc = tmp.path().join("VOC2012");
    standard_voc(&voc);
    let shards = tmp.path().join("shards");
    shard(&[
        "--annotations",
        path_str(&voc),
        "--split",
        "val",
        "--out",
        path_str(&shards),
    ]);
    let results = tmp.path().join("results");
    let summary = tmp.path().join("summary.json");
    let (code, stdout, stderr) = common::bgstream(&[
        "--shards",
        &format!("{}/shard-*.tar", shards.display()),
        "--model",
        path_str(&common::model("tiny")),
        "--device",
        "cpu",
        "--workers",
        "2",
        "--out",
        path_str(&results),
        "--summary-json",
        path_str(&summary),
        "--no-progress",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["samples_read"], 3);
    assert_eq!(s["failed"], 0);
    assert_eq!(s["predicted_images"], 3, "{s}");
    assert!(s["rows_written"].as_u64().unwrap() >= 3, "{s}");
}

#[test]
fn box_csv_becomes_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir_all(images.join("a")).unwrap();
    std::fs::create_dir_all(images.join("b")).unwrap();
    std::fs::write(images.join("a/cat_1.jpg"), jpeg(64, 48, 1)).unwrap();
    std::fs::write(images.join("b/dog_2.JPEG"), jpeg(64, 48, 2)).unwrap();
    std::fs::write(images.join("plain.v2.jpg"), jpeg(64, 48, 3)).unwrap();
    let synsets = tmp.path().join("names.txt");
    std::fs::write(&synsets, "n0001 cat\nn0002 dog\nn0003 other thing\n").unwrap();
    let csv = tmp.path().join("boxes.csv");
    std::fs::write(
        &csv,
        "path,label,x0,y0,x1,y1\n\
         a/cat_1.jpg,n0001,0,0,32,24\n\
         b/dog_2.JPEG,1,10,10,40,30\n\
         gone.jpg,2,0,0,5,5\n\
         a/cat_1.jpg,0,32,24,64,48\n\
         plain.v2.jpg,n0003,1.5,2,60,40\n",
    )
    .unwrap();
    let out = tmp.path().join("shards");
    let stdout = shard(&[
        "--images",
        path_str(&images),
        "--annotations",
        path_str(&csv),
        "--synsets",
        path_str(&synsets),
        "--out",
        path_str(&out),
    ]);
    assert!(
        stdout.contains("wrote 3 samples into 1 shard(s)")
            && stdout.contains("1 annotations without an image"),
        "{stdout}"
    );
    let samples = read_back(&out);
    let csv_annotation = |label, boxes: &[[f64; 4]], wnid: &str| Annotation {
        label,
        boxes: boxes.to_vec(),
        // The CSV has no sizes: the writer fills them in from the JPEG headers.
        width: Some(64),
        height: Some(48),
        wnid: Some(wnid.into()),
        ..Default::default()
    };
    let got: Vec<(&str, Annotation)> = samples
        .iter()
        .map(|s| (s.0.as_str(), s.1.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "cat_1",
                csv_annotation(
                    0,
                    &[[0.0, 0.0, 32.0, 24.0], [32.0, 24.0, 64.0, 48.0]],
                    "n0001"
                )
            ),
            (
                "dog_2",
                csv_annotation(1, &[[10.0, 10.0, 40.0, 30.0]], "n0002")
            ),
            (
                "plain",
                csv_annotation(2, &[[1.5, 2.0, 60.0, 40.0]], "n0003")
            ),
        ]
    );
    assert!(samples[0].2 == std::fs::read(images.join("a/cat_1.jpg")).unwrap());
}

fn shard_fails(args: &[&str]) -> String {
    let mut all = vec!["shard"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = common::bgstream(&all);
    assert_eq!(code, 1, "fatal error -> exit 1\n{stdout}\n{stderr}");
    stderr
}

#[test]
fn bad_shard_inputs_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let voc = tmp.path().join("voc");
    standard_voc(&voc);
    let out = tmp.path().join("out");
    let xml = voc.join("Annotations/2008_000002.xml");
    std::fs::write(
        &xml,
        "<annotation><size><width>96</width><height>80</height></size>\
         <object><name>dog</name><difficult>0</difficult></object></annotation>",
    )
    .unwrap();
    let e = shard_fails(&["--annotations", path_str(&voc), "--out", path_str(&out)]);
    assert!(
        e.contains("2008_000002.xml") && e.contains("dog has no <bndbox>"),
        "{e}"
    );
    std::fs::write(
        &xml,
        voc_xml("2008_000002", &[("kangaroo", [1, 1, 5, 5], false)]),
    )
    .unwrap();
    let e = shard_fails(&["--annotations", path_str(&voc), "--out", path_str(&out)]);
    assert!(
        e.contains("2008_000002.xml") && e.contains("unknown VOC class \"kangaroo\""),
        "{e}"
    );
    let e = shard_fails(&[
        "--annotations",
        path_str(&voc),
        "--split",
        "test",
        "--out",
        path_str(&out),
    ]);
    assert!(e.contains("ImageSets/Main/test.txt"), "{e}");

    let csv = tmp.path().join("boxes.csv");
    std::fs::write(
        &csv,
        "path,label,x0,y0,x1,y1\na.jpg,1,0,0,5,5\na.jpg,2,0,0,5,5\n",
    )
    .unwrap();
    let e = shard_fails(&[
        "--images",
        path_str(tmp.path()),
        "--annotations",
        path_str(&csv),
        "--out",
        path_str(&out),
    ]);
    assert!(
        e.contains("boxes.csv") && e.contains("line 3") && e.contains("on line 2"),
        "{e}"
    );
    let e = shard_fails(&[
        "--annotations",
        path_str(&csv),
        "--split",
        "val",
        "--images",
        path_str(tmp.path()),
        "--out",
        path_str(&out),
    ]);
    assert!(e.contains("--split applies to --format voc only"), "{e}");
    let e = shard_fails(&["--annotations", path_str(&csv), "--out", path_str(&out)]);
    assert!(e.contains("--images is required for --format csv"), "{e}");
    assert!(!out.exists(), "nothing is written when the input is bad");
}
