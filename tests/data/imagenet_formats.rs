//! `bgstream shard` from ImageNet as downloaded: the official XMLs (folder and `.tgz`),
//! Kaggle's CSV and the `annotations.csv` table, with images in a flat folder, an
//! ImageFolder tree or a tar — all must give byte-identical shards; ImageNet's inclusive
//! boxes; and the per-sample checks on generated data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bgstream::classes::imagenet;
use bgstream::ops::geometry::foreground_fraction;
use bgstream::shard::imagenet::{read_imagenet_csv, Classes};
use bgstream::source::tar_reader::read_shard;
use bgstream::source::Annotation;

use crate::common::{self, path_str};

/// `(val index, label, width, height, inclusive boxes)` of `annotations.csv`.
type Row = (u32, usize, usize, usize, Vec<[u32; 4]>);

fn annotations_csv(data: &Path) -> BTreeMap<u32, Row> {
    let mut out = BTreeMap::new();
    let text = std::fs::read_to_string(data.join("imagenet-val/annotations.csv")).unwrap();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.splitn(5, ',').collect();
        let boxes = f[4]
            .split(';')
            .map(|b| {
                let v: Vec<u32> = b.split_whitespace().map(|t| t.parse().unwrap()).collect();
                [v[0], v[1], v[2], v[3]]
            })
            .collect();
        let n = |i: usize| f[i].parse::<usize>().unwrap();
        out.insert(n(0) as u32, (n(0) as u32, n(1), n(2), n(3), boxes));
    }
    out
}

/// The foreground fraction counted pixel by pixel with ImageNet's inclusive corners.
fn inclusive_raster_fraction(w: usize, h: usize, boxes: &[[u32; 4]]) -> f64 {
    let mut m = vec![false; w * h];
    for b in boxes {
        for y in b[1] as usize..=b[3] as usize {
            for x in b[0] as usize..=b[2] as usize {
                m[y * w + x] = true;
            }
        }
    }
    m.iter().filter(|&&v| v).count() as f64 / (w * h) as f64
}

/// `bgstream shard` into `out` (shards of 20); panics unless it exits 0; returns stdout.
fn shard(annotations: &Path, images: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "shard",
        "--annotations",
        path_str(annotations),
        "--images",
        path_str(images),
        "--out",
        path_str(out),
        "--prefix",
        "val",
        "--shard-size",
        "20",
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = common::bgstream(&args);
    assert_eq!(code, 0, "{args:?}\n{stdout}\n{stderr}");
    stdout
}

/// The bytes of every shard in `dir`, by file name.
fn shard_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn read_back(dir: &Path) -> Vec<(String, Annotation)> {
    let mut out = Vec::new();
    for name in shard_bytes(dir).keys() {
        let report = read_shard(&dir.join(name), |s| {
            out.push((s.key.clone(), s.annotation().unwrap()));
            true
        });
        assert_eq!(report.error, None);
    }
    out
}

/// The 66 JPEGs as ILSVRC2012_img_val.tar has them (flat members), in reverse key order
/// so that the shards' key order cannot come from the tar's.
fn images_tar(images: &Path, tar: &Path) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names.reverse();
    let mut b = tar::Builder::new(std::fs::File::create(tar).unwrap());
    for p in names {
        let name = p.file_name().unwrap().to_str().unwrap();
        common::tar_add(&mut b, name, &std::fs::read(&p).unwrap());
    }
    b.finish().unwrap();
}

/// The valprep layout `val/<wnid>/KEY.JPEG`, as symlinks to the real files.
fn image_folder(images: &Path, rows: &BTreeMap<u32, Row>, root: &Path) {
    for e in std::fs::read_dir(images).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap();
        let index: u32 = name[15..23].parse().unwrap();
        let wnid = imagenet::classes()[rows[&index].1].0;
        std::fs::create_dir_all(root.join(wnid)).unwrap();
        std::os::unix::fs::symlink(&p, root.join(wnid).join(name)).unwrap();
    }
}

#[test]
fn every_download_form_gives_byte_identical_shards() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let val = data.join("imagenet-val");
    let formats = val.join("imagenet-formats");
    let images = val.join("images");
    let rows = annotations_csv(&data);
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("ILSVRC2012_img_val.tar");
    images_tar(&images, &tar);
    let tree = tmp.path().join("val");
    image_folder(&images, &rows, &tree);

    let reference = tmp.path().join("csv-flat");
    let stdout = shard(&val.join("annotations.csv"), &images, &reference, &[]);
    assert!(
        stdout.contains("wrote 66 samples into 4 shard(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("imagenet-csv") && stdout.contains("flat folder (66 images)"),
        "{stdout}"
    );
    let want = shard_bytes(&reference);
    assert_eq!(want.len(), 4);

    let tgz = formats.join("ILSVRC2012_bbox_val_v3.tgz");
    let kaggle = formats.join("LOC_val_solution.csv");
    let xml = formats.join("bbox_xml");
    let mapping = formats.join("LOC_synset_mapping.txt");
    let cases: [(&str, &Path, &Path, &[&str], &str); 7] = [
        (
            "xml-flat",
            &xml,
            &images,
            &[],
            "ImageNet XML folder, 66 images",
        ),
        (
            "tgz-flat",
            &tgz,
            &images,
            &[],
            "ImageNet XML tar, 50000 images",
        ),
        (
            "kaggle-flat",
            &kaggle,
            &images,
            &[],
            "Kaggle LOC CSV, 50000 images",
        ),
        (
            "xml-tree",
            &xml,
            &tree,
            &[],
            "ImageFolder tree (66 images in 63 class folders)",
        ),
        ("tgz-tar", &tgz, &tar, &[], "tar, read in place (66 images)"),
        (
            "csv-tar",
            &val.join("annotations.csv"),
            &tar,
            &[],
            "tar, read in place",
        ),
        (
            "kaggle-tree-synsets",
            &kaggle,
            &tree,
            &["--synsets", path_str(&mapping)],
            "(ImageNet-1k order)",
        ),
    ];
    for (name, annotations, imgs, extra, detected) in cases {
        let out = tmp.path().join(name);
        let stdout = shard(annotations, imgs, &out, extra);
        let first = stdout.lines().next().unwrap();
        assert!(
            first.starts_with("detected ") && first.contains(detected),
            "{name}: {first}"
        );
        let got = shard_bytes(&out);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (shard_name, bytes) in &got {
            assert!(bytes == &want[shard_name], "{name}: {shard_name} differs");
        }
        // Every form but the XML folder holds all 50,000 validation images.
        let expect = if annotations == xml { 0 } else { 49_934 };
        if expect > 0 {
            assert!(
                stdout.contains("49934 annotations without an image: "),
                "{name}: {stdout}"
            );
        }
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("val.summary.json")).unwrap()).unwrap();
        let missing = summary["annotations_without_image"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(missing, expect, "{name}");
        assert_eq!(summary["images_without_annotation"], serde_json::json!([]));
        assert_eq!(summary["size_mismatch"], serde_json::json!([]));
    }

    // Every sample: its label's wnid, and the inclusive boxes plus one on the far side.
    let samples = read_back(&reference);
    assert_eq!(samples.len(), 66);
    for (key, a) in &samples {
        let row = &rows[&key[15..].parse::<u32>().unwrap()];
        assert_eq!(a.label as usize, row.1, "{key}");
        assert_eq!(
            a.wnid.as_deref(),
            Some(imagenet::classes()[row.1].0),
            "{key}"
        );
        let boxes: Vec<[f64; 4]> = row
            .4
            .iter()
            .map(|b| {
                [
                    b[0] as f64,
                    b[1] as f64,
                    b[2] as f64 + 1.0,
                    b[3] as f64 + 1.0,
                ]
            })
            .collect();
        assert_eq!(a.boxes, boxes, "{key}");
        assert_eq!((a.width, a.height), (Some(row.2), Some(row.3)), "{key}");
    }
}

#[test]
fn inclusive_boxes_reach_the_last_column_and_set_the_fraction() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let rows = annotations_csv(&data);
    let images = data.join("imagenet-val/images");
    // A real image of the 66 with a box whose xmax is the last column (width - 1).
    let (index, _, w, h, boxes) = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| {
            e.unwrap().file_name().to_str().unwrap()[15..23]
                .parse::<u32>()
                .unwrap()
        })
        .map(|i| rows[&i].clone())
        .filter(|r| r.4.iter().any(|b| b[2] as usize == r.2 - 1))
        .filter(|r| {
            let f = inclusive_raster_fraction(r.2, r.3, &r.4);
            (0.05..=0.70).contains(&f)
        })
        .min_by_key(|r| r.0)
        .expect("one of the 66 has a box on the last column and passes the filter");
    let key = format!("ILSVRC2012_val_{index:08}");
    let tmp = tempfile::tempdir().unwrap();
    let xml_dir = tmp.path().join("xml");
    std::fs::create_dir(&xml_dir).unwrap();
    let xml_name = format!("{key}.xml");
    std::fs::copy(
        data.join("imagenet-val/imagenet-formats/bbox_xml")
            .join(&xml_name),
        xml_dir.join(&xml_name),
    )
    .unwrap();
    let shards = tmp.path().join("shards");
    shard(&xml_dir, &images, &shards, &[]);
    let samples = read_back(&shards);
    assert_eq!(samples.len(), 1);
    let a = &samples[0].1;
    assert!(
        a.boxes.iter().any(|b| b[2] == w as f64),
        "a box on column {} must end at {w}: {:?}",
        w - 1,
        a.boxes
    );
    let want = inclusive_raster_fraction(w, h, &boxes);
    assert!((foreground_fraction(&a.boxes, w, h) - want).abs() < 1e-12);

    // The run records the same fraction (needs libtorch).
    if cfg!(feature = "torch") {
        run_records_fraction(&shards, &tmp.path().join("out"), &key, want);
    }
}

/// The tiny model on `original` over the first shard in `shards`, into `out`.
fn run_original(shards: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let (shard, model) = (shards.join("val-000000.tar"), common::model("tiny"));
    let mut args = vec![
        "--shards",
        path_str(&shard),
        "--model",
        path_str(&model),
        "--device",
        "cpu",
        "--variants",
        "original",
        "--out",
        path_str(out),
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    common::bgstream(&args)
}

fn run_records_fraction(shards: &Path, out: &Path, key: &str, want: f64) {
    let (code, stdout, stderr) = run_original(shards, out, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let got = common::reference_sql(out, "select key, status, fg_fraction from rows");
    assert_eq!(got[0][0], key);
    assert_eq!(got[0][1], "ok");
    let fg = got[0][2].as_f64().unwrap();
    assert!((fg - want as f32 as f64).abs() < 1e-7, "{fg} vs {want}");
}

#[test]
fn the_paper_filter_keeps_34791_of_50000() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let records = read_imagenet_csv(
        &data.join("imagenet-val/annotations.csv"),
        &Classes::imagenet(),
    )
    .unwrap()
    .records;
    assert_eq!(records.len(), 50_000);
    let kept = records
        .iter()
        .filter(|r| {
            let a = &r.annotation;
            let f = foreground_fraction(&a.boxes, a.width.unwrap(), a.height.unwrap());
            (0.05..=0.70).contains(&f)
        })
        .count();
    assert_eq!(kept, 34_791, "union of inclusive boxes, 5-70%");
}

#[test]
fn built_in_classes_match_the_reference_synsets() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let text = std::fs::read_to_string(data.join("imagenet-val/synsets.txt")).unwrap();
    let reference: Vec<(&str, &str)> = text
        .lines()
        .map(|l| l.split_once(' ').unwrap())
        .map(|(w, n)| (w, n.trim()))
        .collect();
    assert_eq!(imagenet::classes(), reference.as_slice());
}

fn xml(size: (u32, u32), objects: &[(&str, [u32; 4])]) -> String {
    let objects: String = objects
        .iter()
        .map(|(n, b)| {
            format!(
                "\t<object>\n\t\t<name>{n}</name>\n\t\t<bndbox>\n\t\t\t<xmin>{}</xmin>\n\t\t\t\
                 <ymin>{}</ymin>\n\t\t\t<xmax>{}</xmax>\n\t\t\t<ymax>{}</ymax>\n\t\t</bndbox>\n\
                 \t</object>\n",
                b[0], b[1], b[2], b[3]
            )
        })
        .collect();
    format!(
        "<annotation>\n\t<folder>val</folder>\n\t<size>\n\t\t<width>{}</width>\n\t\t\
         <height>{}</height>\n\t\t<depth>3</depth>\n\t</size>\n{objects}</annotation>\n",
        size.0, size.1
    )
}

/// (val index, `<size>`, objects as (wnid, inclusive box)).
type XmlImage<'a> = (u32, (u32, u32), Vec<(&'a str, [u32; 4])>);

#[test]
fn checks_are_counted_listed_and_recorded() {
    let (tench, goldfish, shark) = ("n01440764", "n01443537", "n01484850");
    let tmp = tempfile::tempdir().unwrap();
    let (xml_dir, tree) = (tmp.path().join("bbox/val"), tmp.path().join("images"));
    std::fs::create_dir_all(&xml_dir).unwrap();
    let key = |i: u32| format!("ILSVRC2012_val_{i:08}");
    // 1 ok; 2 <size> says 80x64 but the JPEG is 96x80; 3 two wnids (goldfish has more
    // area); 4 annotated, no image; 5 image, no annotation; 6 filed under the wrong wnid.
    let annotations: [XmlImage; 5] = [
        (1, (96, 80), vec![(tench, [10, 10, 49, 39])]),
        (2, (80, 64), vec![(tench, [10, 10, 49, 39])]),
        (
            3,
            (96, 80),
            vec![(tench, [0, 0, 9, 9]), (goldfish, [20, 20, 59, 59])],
        ),
        (4, (96, 80), vec![(tench, [10, 10, 49, 39])]),
        (6, (96, 80), vec![(shark, [10, 10, 49, 39])]),
    ];
    for (i, size, objects) in &annotations {
        std::fs::write(
            xml_dir.join(format!("{}.xml", key(*i))),
            xml(*size, objects),
        )
        .unwrap();
    }
    for (i, folder) in [
        (1, tench),
        (2, tench),
        (3, goldfish),
        (5, tench),
        (6, tench),
    ] {
        std::fs::create_dir_all(tree.join(folder)).unwrap();
        std::fs::write(
            tree.join(folder).join(format!("{}.JPEG", key(i))),
            common::jpeg(96, 80, 0),
        )
        .unwrap();
    }
    let shards = tmp.path().join("shards");
    let stdout = shard(&tmp.path().join("bbox"), &tree, &shards, &[]);
    for want in [
        "wrote 4 samples into 1 shard(s)",
        "ImageFolder tree (5 images in 2 class folders)",
        "1 annotations without an image: ILSVRC2012_val_00000004",
        "1 images without an annotation (not sharded): ILSVRC2012_val_00000005",
        "1 images whose objects name several classes (labelled by the largest total box area): \
         ILSVRC2012_val_00000003",
        "1 images filed under another class folder than their annotation's (labelled by the \
         annotation): ILSVRC2012_val_00000006 (folder n01440764, annotated n01484850)",
        "1 images whose header disagrees with the annotated size (the run records \
         size_mismatch): ILSVRC2012_val_00000002: header 96x80, annotation 80x64",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    let samples: BTreeMap<String, Annotation> = read_back(&shards).into_iter().collect();
    let three = &samples[&key(3)];
    assert_eq!(
        (three.label, three.wnid.as_deref(), three.boxes.clone()),
        (1, Some(goldfish), vec![[20.0, 20.0, 60.0, 60.0]])
    );
    assert_eq!(
        samples[&key(6)].label,
        2,
        "the annotation's label, not the folder's"
    );

    // The run: the mismatched image is a recorded size_mismatch row (needs libtorch).
    if cfg!(feature = "torch") {
        let out = tmp.path().join("out");
        let (code, stdout, stderr) =
            run_original(&shards, &out, &["--min-fg", "0", "--max-fg", "1"]);
        assert_eq!(code, 3, "some items failed\n{stdout}\n{stderr}");
        let got = common::reference_sql(&out, "select key, status from rows order by key");
        assert_eq!(
            got,
            serde_json::json!([
                [key(1), "ok"],
                [key(2), "size_mismatch"],
                [key(3), "ok"],
                [key(6), "ok"]
            ])
        );
    }

    // An unknown wnid is an error naming the file and the wnid, and writes nothing.
    std::fs::write(
        xml_dir.join(format!("{}.xml", key(7))),
        xml((96, 80), &[("n99999999", [1, 1, 5, 5])]),
    )
    .unwrap();
    let bad_out = tmp.path().join("bad");
    let (code, stdout, stderr) = common::bgstream(&[
        "shard",
        "--annotations",
        path_str(&tmp.path().join("bbox")),
        "--images",
        path_str(&tree),
        "--out",
        path_str(&bad_out),
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("ILSVRC2012_val_00000007.xml")
            && stderr.contains("unknown wnid \"n99999999\""),
        "{stderr}"
    );
    assert!(!bad_out.exists());
}
