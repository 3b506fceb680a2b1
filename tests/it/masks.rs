//! Foreground masks end to end, on real ImageNet photos: `tests/mask_reference.py` writes
//! mask PNGs (8-bit, 1-bit), polygon JSON, an ImageNet-9-style `fg_mask/` folder of `.npy`
//! files (bool, uint8 HxWx3, Fortran-order float) and broken masks; `bgstream shard` reads
//! them as a manifest and as `imagenet9`; a run feeds every variant to two models of other
//! input sizes, and the reference rebuilds each fed frame from the original files, pixel
//! for pixel, with the rows' `status`, `fg_source` and `fg_fraction`.

use std::path::Path;

use crate::common::{self, path_str};

const VARIANTS: &str =
    "original,bg_only,fg_white,bg_only_black,bg_tiled,only_fg,no_fg,fg_color:green,mixed_rand";

fn mask_reference(args: &[&str]) -> serde_json::Value {
    common::python_report("tests/mask_reference.py", args)
}

fn shard(args: &[&str], out: &Path) -> String {
    let mut all = vec!["shard", "--out", path_str(out), "--shard-size", "5"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = common::bgstream(&all);
    assert_eq!(code, 0, "{stdout}{stderr}");
    stdout
}

#[test]
fn variants_from_masks_match_the_numpy_reference() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("masks");
    let made = mask_reference(&[
        "make",
        path_str(&work),
        path_str(&data.join("imagenet-val/images")),
        path_str(&data.join("imagenet-val/annotations.csv")),
    ]);

    let manifest_shards = tmp.path().join("shards-manifest");
    let stdout = shard(
        &[
            "--annotations",
            path_str(&work.join("manifest.json")),
            "--images",
            path_str(&work.join("images")),
            "--prefix",
            "m",
        ],
        &manifest_shards,
    );
    assert!(stdout.contains("wrote 12 samples"), "{stdout}");
    // The grayscale PNG masks are written, even the one of the wrong size; the colour one
    // cannot be read as a mask and becomes `mask_error`. The run records both as bad_mask.
    assert!(
        stdout.contains("5 sample(s) with a foreground mask"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 masks unreadable or of another size"),
        "{stdout}"
    );

    // A polygon without boxes gets the polygon's bounding box, clipped to the image.
    let cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("cases.json")).unwrap()).unwrap();
    let (key, case) = cases
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, c)| c["polygons"][0].as_array().is_some_and(|p| p.len() == 8))
        .expect("the 4-point polygon past the right edge");
    let mut boxes = None;
    for shard in std::fs::read_dir(&manifest_shards).unwrap() {
        let shard = shard.unwrap().path();
        if shard.extension().is_some_and(|x| x == "tar") {
            bgstream::source::tar_reader::read_shard(&shard, |s| {
                if &s.key == key {
                    boxes = Some(s.annotation().unwrap().boxes);
                }
                true
            });
        }
    }
    let p: Vec<f64> = serde_json::from_value(case["polygons"][0].clone()).unwrap();
    let jpeg = std::fs::read(case["image"].as_str().unwrap()).unwrap();
    let width = bgstream::ops::decode::dimensions(&jpeg, &Default::default())
        .unwrap()
        .0 as f64;
    let xs = p.iter().step_by(2);
    let ys = p.iter().skip(1).step_by(2);
    let want = [
        xs.clone().copied().fold(f64::INFINITY, f64::min),
        ys.clone().copied().fold(f64::INFINITY, f64::min),
        xs.copied().fold(0.0, f64::max).min(width),
        ys.copied().fold(0.0, f64::max),
    ];
    assert_eq!(boxes, Some(vec![want]), "{key}");

    let in9_shards = tmp.path().join("shards-in9");
    let stdout = shard(
        &[
            "--annotations",
            path_str(&work.join("in9/fg_mask/val")),
            "--images",
            path_str(&work.join("in9/original/val")),
            "--prefix",
            "in9",
        ],
        &in9_shards,
    );
    for note in [
        "annotations: imagenet9",
        // ImageNet-9's folders (two of the nine): labelled by their IN-9 index.
        "9 classes: 00_dog, 01_bird, 02_wheeled vehicle,",
        "ImageNet-9 labels (label_space in9",
        "wrote 4 samples",
        "3 sample(s) with a foreground mask",
        made["unannotated"].as_str().unwrap(),
        made["missing"].as_str().unwrap(),
        "1 masks unreadable",
    ] {
        assert!(stdout.contains(note), "{note:?} missing:\n{stdout}");
    }

    let results = tmp.path().join("results");
    let dump = tmp.path().join("dump");
    let (tiny, lite0) = (common::model("tiny"), common::model("efficientnet-lite0"));
    let (code, stdout, stderr) = common::bgstream(&[
        "--shards",
        &format!("{}/m-*.tar", manifest_shards.display()),
        "--shards",
        &format!("{}/in9-*.tar", in9_shards.display()),
        "--model",
        path_str(&tiny),
        "--model",
        path_str(&lite0),
        "--variants",
        VARIANTS,
        "--min-fg",
        "0",
        "--max-fg",
        "1",
        "--out",
        path_str(&results),
        "--dump-inputs",
        path_str(&dump),
        "--no-progress",
    ]);
    // Exit 3: some images failed (the broken masks), every one recorded.
    assert_eq!(code, 3, "{stdout}{stderr}");
    for note in [
        "failed: 3 x bad_mask",
        "failed: 1 x bad_polygon",
        "only_fg: 4 row(s) of samples without a mask",
        "no_fg: 4 row(s) of samples without a mask",
    ] {
        assert!(stdout.contains(note), "{note:?} missing:\n{stdout}");
    }

    for model in [&tiny, &lite0] {
        let report = mask_reference(&[
            "check",
            path_str(&work),
            path_str(&dump),
            path_str(&results),
            path_str(&model.with_extension("json")),
            VARIANTS,
        ]);
        // 11 images with a foreground (7 masks + 2 boxes-only + 3 .npy, less the 2
        // boxes-only ones' only_fg / no_fg): every non-original frame compared.
        assert_eq!(report["frames_equal"], 12 * 8 - 4, "{report}");
        assert_eq!(report["no_mask_rows"], 4, "{report}");
        eprintln!(
            "{}: {} frames equal the reference; foreground pixels per image {}",
            model.display(),
            report["frames_equal"],
            report["fg_pixels"]
        );
    }

    // aggregate's Only-FG / No-FG columns are the top-1 of the ok rows (the 10 samples
    // with a mask), as DuckDB computes it from the same files.
    let agg = tmp.path().join("agg");
    let (code, stdout, stderr) =
        common::aggregate(&results, &agg, &["--no-figures", "--baseline", "tiny"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let table = std::fs::read_to_string(agg.join("backgrounds.csv")).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let want = common::reference_sql(
        &results,
        "select model, variant, avg(top1_correct::int), count(*) from rows \
         where variant in ('only_fg', 'no_fg') and status = 'ok' group by all order by all",
    );
    let rows = want.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{want}");
    for r in rows {
        let (model, variant) = (r[0].as_str().unwrap(), r[1].as_str().unwrap());
        assert_eq!(r[3], 10, "{want}");
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{model},")))
            .unwrap();
        let got: f64 = line
            .split(',')
            .nth(col(&format!("{variant}_top1")))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (got - 100.0 * r[2].as_f64().unwrap()).abs() < 1e-9, // percent
            "{model} {variant}: {got} vs {want}\n{table}"
        );
    }
}
