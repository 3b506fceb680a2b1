//! Bring your own model (issue 28): `bgstream export` of checkpoints, torchvision names,
//! factories, class-mapped and zero-shot models and the modern list, each run for real.

use std::path::{Path, PathBuf};

use crate::common::{self, path_str};

/// `bgstream export ARGS`; panics with its output unless it exits 0.
fn export(args: &[&str]) -> String {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = common::bgstream(&all);
    assert_eq!(code, 0, "export {args:?}:\n{stdout}{stderr}");
    stderr
}

/// Real ImageNet shards of the first `limit` images of ../shared.
fn shards(data: &Path, dir: &Path, limit: usize) -> String {
    common::shared_shards(data, dir, 8, limit)
}

/// Runs `models` over `glob` (variant original, CPU) into `out`.
fn run(glob: &str, models: &[PathBuf], out: &Path, extra: &[&str]) {
    let mut args = vec![
        "--shards",
        glob,
        "--variants",
        "original",
        "--device",
        "cpu",
    ];
    for m in models {
        args.extend(["--model", path_str(m)]);
    }
    args.extend(["--out", path_str(out), "--no-progress"]);
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = common::bgstream(&args);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

fn in9_table() -> PathBuf {
    common::root().join("assets/in9/in_to_in9.json")
}

#[test]
fn checkpoints_in_three_layouts_round_trip_and_a_mismatch_lists_its_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = common::python_report(
        "tests/byo_reference.py",
        &[
            "checkpoints",
            path_str(tmp.path()),
            env!("CARGO_BIN_EXE_bgstream"),
        ],
    );
    assert_eq!(rep["ok"], true, "{rep}");
    for layout in ["bare.pth", "nested.pt", "weights.safetensors"] {
        let d = rep["layouts"][layout]["max_abs_diff"].as_f64().unwrap();
        assert!(d <= 1e-5, "{layout}: {rep}");
    }
}

#[test]
fn a_class_mapped_nine_class_model_is_scored_on_imagenet_labels() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let glob = shards(&data, &tmp.path().join("shards"), 40);
    // A real 9-class model: Lite0's probabilities summed per ImageNet-9 class, exported
    // from a factory file with Lite0's own preprocessing and the backgrounds challenge's
    // table as its class map.
    let lite0 = common::model("efficientnet-lite0");
    let factory = tmp.path().join("superclasses.py");
    common::python_report(
        "tests/byo_reference.py",
        &[
            "superclass-factory",
            path_str(&factory),
            path_str(&lite0),
            path_str(&in9_table()),
        ],
    );
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lite0.with_extension("json")).unwrap()).unwrap();
    let triple = |k: &str| {
        let v: Vec<String> = (side[k].as_array().unwrap().iter())
            .map(|x| x.as_f64().unwrap().to_string())
            .collect();
        v.join(",")
    };
    let models = tmp.path().join("models");
    let said = export(&[
        "--out",
        path_str(&models),
        "--factory",
        &format!("{}:build", factory.display()),
        "--input-size",
        &side["input_size"].to_string(),
        "--crop-pct",
        &side["crop_pct"].to_string(),
        "--interpolation",
        side["interpolation"].as_str().unwrap(),
        "--mean",
        &triple("mean"),
        "--std",
        &triple("std"),
        "--class-map",
        path_str(&in9_table()),
        "--name",
        "lite0-in9",
    ]);
    assert!(said.contains("9 classes mapped to ImageNet-1k"), "{said}");
    let mapped = models.join("lite0-in9.pt");
    let results = tmp.path().join("results");
    let dump = tmp.path().join("dump");
    run(
        &glob,
        &[lite0, mapped.clone()],
        &results,
        &["--dump-inputs", path_str(&dump)],
    );
    let rep = common::python_report(
        "tests/byo_reference.py",
        &[
            "classmap",
            path_str(&results),
            path_str(&dump),
            path_str(&mapped),
            path_str(&in9_table()),
        ],
    );
    let n = |k: &str| rep[k].as_u64().unwrap();
    assert_eq!(rep["scoring"], serde_json::json!(["class_map"]), "{rep}");
    // Some images are of the nine classes and some are not: both kinds are exercised.
    assert!(n("covered") > 5 && n("covered") < n("rows"), "{rep}");
    assert_eq!(n("null_rows"), n("rows") - n("covered"), "{rep}");
    assert_eq!(n("verdict_differs") + n("top1_differs"), 0, "{rep}");
    assert_eq!(n("bgstream_top1"), n("expected_top1"), "{rep}");
    assert!(rep["max_p_true_diff"].as_f64().unwrap() < 1e-4, "{rep}");
    eprintln!(
        "lite0-in9: {} rows, {} of the nine classes, top-1 {}/{}",
        n("rows"),
        n("covered"),
        n("expected_top1"),
        n("covered")
    );

    // aggregate counts only the covered rows: accuracy = expected / covered.
    let agg = tmp.path().join("agg");
    let report = tmp.path().join("report.html");
    let (code, _, err) = common::aggregate(
        &results,
        &agg,
        &[
            "--baseline",
            "efficientnet-lite0",
            "--report",
            path_str(&report),
            "--shards",
            &glob,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("outside the class map"), "{err}");
    let csv = std::fs::read_to_string(agg.join("results.csv")).unwrap();
    let line = (csv.lines())
        .find(|l| l.starts_with("lite0-in9,original,"))
        .unwrap_or_else(|| panic!("{csv}"));
    let cells: Vec<&str> = line.split(',').collect();
    assert_eq!(cells[2], n("covered").to_string(), "{line}");
    let want = 100.0 * n("expected_top1") as f64 / n("covered") as f64;
    assert!(
        (cells[3].parse::<f64>().unwrap() - want).abs() < 1e-3,
        "{line} vs {want}"
    );
    // results.csv as pandas reads it, against DuckDB on the Parquet.
    let rep = common::python_report(
        "tests/byo_reference.py",
        &[
            "results",
            path_str(&agg.join("results.csv")),
            path_str(&results),
        ],
    );
    assert_eq!(rep["compared"], 2, "{rep}");
    // The report names the class-mapped model's predictions by its class map.
    let html = std::fs::read_to_string(&report).unwrap();
    let captions: Vec<&str> = (html.split("<li class=").skip(1))
        .filter_map(|li| li.split_once("</li>").map(|(c, _)| c))
        .collect();
    let mapped: Vec<&&str> = captions
        .iter()
        .filter(|c| c.contains("lite0-in9: "))
        .collect();
    assert!(!mapped.is_empty(), "no caption of lite0-in9");
    for c in &mapped {
        let named = c
            .split("lite0-in9: ")
            .nth(1)
            .unwrap()
            .split(" <small>")
            .next()
            .unwrap();
        assert!(
            bgstream::classes::in9::NAMES.contains(&named),
            "{named:?} is not an IN-9 class: {c}"
        );
    }
    // ... while the 1,000-class model's captions keep ImageNet's names.
    assert!(
        !captions
            .iter()
            .any(|c| c.contains("efficientnet-lite0: class ")),
        "{captions:?}"
    );
}

#[test]
fn factory_torchvision_and_zero_shot_models_export_and_run() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let glob = shards(&data, &tmp.path().join("shards"), 4);
    let models = tmp.path().join("models");
    let out = path_str(&models);
    let factory = tmp.path().join("net.py");
    std::fs::write(
        &factory,
        "import torch\n\
         class Net(torch.nn.Module):\n\
         \x20   def __init__(self, num_classes=1000):\n\
         \x20       super().__init__()\n\
         \x20       self.c = torch.nn.Conv2d(3, 8, 3, stride=2)\n\
         \x20       self.fc = torch.nn.Linear(8, num_classes)\n\
         \x20   def forward(self, x):\n\
         \x20       return self.fc(torch.relu(self.c(x)).mean((2, 3)))\n\
         def build(num_classes=1000):\n\
         \x20   torch.manual_seed(1)\n\
         \x20   return Net(num_classes)\n",
    )
    .unwrap();
    // A factory without preprocessing is refused before anything is written.
    let (code, _, err) = common::bgstream(&[
        "export",
        "--out",
        out,
        "--factory",
        &format!("{}:build", factory.display()),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--input-size") && err.contains("--data-config"),
        "{err}"
    );
    export(&[
        "--out",
        out,
        "--factory",
        &format!("{}:build", factory.display()),
        "--data-config",
        "resnet50.a1_in1k",
    ]);
    export(&["--out", out, "torchvision:resnet18", "--random-weights"]);
    export(&[
        "--out",
        out,
        "open_clip:ViT-B-32",
        "--random-weights",
        "--templates",
        "one",
        "--class-map",
        path_str(&in9_table()),
    ]);
    let sidecar = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(models.join(format!("{name}.json"))).unwrap())
            .unwrap()
    };
    let (net, tv, clip) = (
        sidecar("net"),
        sidecar("torchvision-resnet18"),
        sidecar("clip-ViT-B-32-random"),
    );
    // resnet50.a1_in1k is evaluated at 288, crop 1.0; torchvision's resnet18 at 256 -> 224.
    assert_eq!(
        (&net["input_size"], &net["crop_pct"]),
        (&288.into(), &1.0.into())
    );
    assert_eq!(tv["input_size"], 224);
    assert_eq!((224.0 / tv["crop_pct"].as_f64().unwrap()).floor(), 256.0);
    assert_eq!(clip["num_classes"], 9);
    assert_eq!(clip["class_map"]["classes"][0]["name"], "dog");
    let all = ["net", "torchvision-resnet18", "clip-ViT-B-32-random"]
        .map(|n| models.join(format!("{n}.pt")));
    let results = tmp.path().join("results");
    run(&glob, &all, &results, &[]);
    let counts = common::reference_sql(
        &results,
        "select model, status, scoring, count(*) from rows group by all order by all",
    );
    assert_eq!(
        counts,
        serde_json::json!([
            ["clip-ViT-B-32-random", "ok", "class_map", 4],
            ["net", "ok", "direct", 4],
            ["torchvision-resnet18", "ok", "direct", 4]
        ])
    );
}

#[test]
fn the_modern_model_list_exports_and_runs() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let glob = shards(&data, &tmp.path().join("shards"), 2);
    let models = tmp.path().join("models");
    let list = common::root().join("examples/modern-models.txt");
    // Offline: the same architectures untrained; one prompt per class keeps CLIP's head quick.
    export(&[
        "--out",
        path_str(&models),
        "--random-weights",
        "--templates",
        "one",
        "--list",
        path_str(&list),
    ]);
    let mut sizes = Vec::new();
    let mut pts = Vec::new();
    for entry in std::fs::read_dir(&models).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            sizes.push((
                s["name"].as_str().unwrap().to_string(),
                s["input_size"].as_u64().unwrap(),
            ));
            pts.push(p.with_extension("pt"));
        }
    }
    sizes.sort();
    let want: Vec<(String, u64)> = [
        ("clip-ViT-B-32-random", 224),
        ("convnext_tiny.fb_in1k", 288),
        ("deit_small_patch16_224.fb_in1k", 224),
        ("regnety_032.ra_in1k", 288),
        ("swin_tiny_patch4_window7_224.ms_in1k", 224),
        ("tf_efficientnetv2_s.in1k", 384),
        ("vit_base_patch16_224.augreg2_in21k_ft_in1k", 224),
        ("vit_small_patch16_224.augreg_in21k_ft_in1k", 224),
    ]
    .iter()
    .map(|(n, s)| (n.to_string(), *s))
    .collect();
    assert_eq!(sizes, want);
    let results = tmp.path().join("results");
    run(&glob, &pts, &results, &[]);
    let ok = common::reference_sql(
        &results,
        "select count(distinct model), count(*) from rows where status = 'ok'",
    );
    assert_eq!(ok, serde_json::json!([[8, 16]]));
}

#[test]
fn class_maps_are_read_in_every_form_and_bad_ones_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = common::python_report(
        "tests/byo_reference.py",
        &[
            "class-map-forms",
            path_str(tmp.path()),
            path_str(&in9_table()),
        ],
    );
    assert_eq!(rep["ok"], true, "{rep}");
    assert_eq!(rep["forms"]["subset"], 100, "{rep}");
}
