//! End to end: shards -> bgstream -> Parquet, on generated shards with known answers and on
//! the 66 real ImageNet validation JPEGs; the output read back by Rust, DuckDB and Polars.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use jpeg_encoder::{ColorType, Encoder};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::{self, path_str};

const V: usize = 9; // the default variant list

fn jpeg(w: u16, h: u16, gray: bool, seed: u8) -> Vec<u8> {
    let (channels, color) = if gray {
        (1, ColorType::Luma)
    } else {
        (3, ColorType::Rgb)
    };
    let px: Vec<u8> = (0..w as usize * h as usize * channels)
        .map(|i| ((i * 31 + seed as usize * 17) % 251) as u8)
        .collect();
    let mut out = Vec::new();
    Encoder::new(&mut out, 90).encode(&px, w, h, color).unwrap();
    out
}

/// Writes a shard of (key, image bytes, cls, json) samples.
fn shard(path: &Path, samples: &[(&str, Vec<u8>, Option<&str>, String)]) {
    let mut b = tar::Builder::new(File::create(path).unwrap());
    for (key, img, cls, json) in samples {
        common::tar_add(&mut b, &format!("{key}.jpg"), img);
        if let Some(c) = cls {
            common::tar_add(&mut b, &format!("{key}.cls"), c.as_bytes());
        }
        common::tar_add(&mut b, &format!("{key}.json"), json.as_bytes());
    }
    b.finish().unwrap();
}

fn boxes(b: &[[u32; 4]]) -> String {
    format!(r#"{{"boxes": {b:?}}}"#)
}

fn read_rows(dir: &Path) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        assert!(
            p.extension().is_none_or(|x| x != "tmp"),
            "a temporary file was left behind: {}",
            p.display()
        );
        if p.extension().is_some_and(|x| x == "parquet") {
            let r = ParquetRecordBatchReaderBuilder::try_new(File::open(&p).unwrap())
                .unwrap()
                .build()
                .unwrap();
            batches.extend(r.map(Result::unwrap));
        }
    }
    batches
}

/// (key, variant, model) -> status, from the Parquet files.
fn rows_by_triple(dir: &Path) -> BTreeMap<(String, String, String), Vec<String>> {
    let mut out: BTreeMap<_, Vec<String>> = BTreeMap::new();
    for b in read_rows(dir) {
        let col = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (key, variant, model, status) =
            (col("key"), col("variant"), col("model"), col("status"));
        let label = b
            .column_by_name("label")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        for i in 0..b.num_rows() {
            assert!(
                !label.is_null(i) || status.value(i) != "ok",
                "ok rows carry the label"
            );
            out.entry((
                key.value(i).into(),
                variant.value(i).into(),
                model.value(i).into(),
            ))
            .or_default()
            .push(status.value(i).into());
        }
    }
    out
}

#[test]
fn generated_shards_give_every_row_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let good = |seed| jpeg(96, 80, false, seed);
    // 96x80 = 7680 px; box 48x40 -> 0.25 of the image.
    let ok = boxes(&[[10, 10, 58, 50]]);
    let mut truncated = good(9);
    truncated.truncate(300);
    shard(
        &tmp.path().join("syn-000000.tar"),
        &[
            ("a", good(1), Some("1"), ok.clone()),
            (
                "b",
                good(2),
                Some("2"),
                boxes(&[[0, 0, 48, 40], [40, 30, 90, 70]]),
            ),
            ("tiny_fg", good(3), Some("3"), boxes(&[[0, 0, 10, 10]])), // 100/7680 < 0.05
            ("huge_fg", good(4), Some("4"), boxes(&[[0, 0, 96, 70]])), // 0.875 > 0.70
            ("broken", truncated, Some("5"), ok.clone()),
        ],
    );
    shard(
        &tmp.path().join("syn-000001.tar"),
        &[
            ("gray", jpeg(96, 80, true, 5), Some("6"), ok.clone()),
            // exactly 0.05: 384 px = 24 x 16, kept (bounds are inclusive)
            ("edge", good(6), Some("7"), boxes(&[[0, 0, 24, 16]])),
            ("nolabel", good(7), None, ok.clone()),
            ("outside", good(8), Some("8"), boxes(&[[50, 10, 97, 50]])),
        ],
    );
    let out = tmp.path().join("out");
    let summary = tmp.path().join("summary.json");
    let glob = format!("{}/syn-*.tar", tmp.path().display());
    let (code, stdout, stderr) = common::bgstream(&[
        "--shards",
        &glob,
        "--model",
        path_str(&common::model("tiny")),
        "--model",
        path_str(&common::model("efficientnet-lite0")),
        "--device",
        "cpu",
        "--batch-size",
        "7",
        "--workers",
        "2",
        "--rows-per-file",
        "40",
        "--out",
        path_str(&out),
        "--summary-json",
        path_str(&summary),
        "--no-progress",
    ]);
    assert_eq!(code, 3, "some items failed -> exit 3\n{stdout}\n{stderr}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["samples_read"], 9);
    assert_eq!(s["filtered"], 2, "tiny_fg and huge_fg");
    assert_eq!(s["failed"], 3, "broken, nolabel, outside");
    assert_eq!(s["predicted_images"], 4);
    let codes: BTreeMap<String, u64> = serde_json::from_value(s["failures_by_code"].clone())
        .map(|v: Vec<(String, u64)>| v.into_iter().collect())
        .unwrap();
    assert_eq!(
        codes,
        BTreeMap::from([
            ("bad_box".into(), 1),
            ("decode_error".into(), 1),
            ("missing_label".into(), 1)
        ])
    );

    let rows = rows_by_triple(&out);
    let per_key = |k: &str| rows.keys().filter(|t| t.0 == k).count();
    for k in ["a", "b", "gray", "edge", "broken", "nolabel", "outside"] {
        assert_eq!(per_key(k), V * 2, "{k}: one row per variant x model");
    }
    for k in ["tiny_fg", "huge_fg"] {
        assert_eq!(per_key(k), 0, "{k} is filtered, not predicted");
    }
    assert!(
        rows.values().all(|v| v.len() == 1),
        "a (key, variant, model) repeats"
    );
    assert_eq!(rows.len(), 7 * V * 2);
    assert_eq!(s["rows_written"], rows.len());
    let status = |k: &str| -> BTreeSet<String> {
        rows.iter()
            .filter(|(t, _)| t.0 == k)
            .map(|(_, v)| v[0].clone())
            .collect()
    };
    assert_eq!(status("a"), BTreeSet::from(["ok".to_string()]));
    assert_eq!(
        status("broken"),
        BTreeSet::from(["decode_error".to_string()])
    );
    assert_eq!(status("outside"), BTreeSet::from(["bad_box".to_string()]));
    // Files are per shard: 54 and 72 rows at 40 per file -> 2 + 2 files.
    assert_eq!(s["files"].as_array().unwrap().len(), 4);
    aggregate_matches_sql_and_polars(&out, "tiny");
}

/// `bgstream aggregate` on a pipeline output, then examples/aggregate.sql (DuckDB) and
/// examples/aggregate_polars.py must give exactly its numbers.
fn aggregate_matches_sql_and_polars(pred: &Path, baseline: &str) -> String {
    let agg = pred.with_file_name("agg");
    let report = pred.with_file_name("report.html");
    let (code, stdout, stderr) = common::bgstream(&[
        "aggregate",
        "--in",
        path_str(pred),
        "--baseline",
        baseline,
        "--out",
        path_str(&agg),
        "--report",
        path_str(&report),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(report.exists());
    common::reference(&[
        "aggregate-clients",
        path_str(pred),
        path_str(&agg.join("summary.parquet")),
        baseline,
    ]);
    stdout
}

#[test]
fn refuses_to_mix_runs_and_reports_missing_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = common::bgstream(&[
        "--shards",
        &format!("{}/nothing-*.tar", tmp.path().display()),
        "--model",
        path_str(&common::model("tiny")),
        "--out",
        path_str(tmp.path()),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no shard matches"), "{stderr}");
    std::fs::write(tmp.path().join("part-x-00000000-000.parquet"), b"x").unwrap();
    shard(
        &tmp.path().join("s.tar"),
        &[(
            "a",
            jpeg(64, 64, false, 1),
            Some("1"),
            boxes(&[[0, 0, 32, 32]]),
        )],
    );
    let (code, _, stderr) = common::bgstream(&[
        "--shards",
        path_str(&tmp.path().join("s.tar")),
        "--model",
        path_str(&common::model("tiny")),
        "--out",
        path_str(tmp.path()),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--overwrite") && stderr.contains("--resume"),
        "{stderr}"
    );
}

/// Union-of-boxes fraction by rasterising each box: independent of the library's exact
/// coordinate-compression code.
fn raster_fraction(w: usize, h: usize, boxes: &[[f64; 4]]) -> f64 {
    let mut m = vec![false; w * h];
    for b in boxes {
        for y in b[1] as usize..b[3] as usize {
            for x in b[0] as usize..b[2] as usize {
                m[y * w + x] = true;
            }
        }
    }
    m.iter().filter(|&&v| v).count() as f64 / (w * h) as f64
}

#[test]
fn real_imagenet_shards_end_to_end_with_duckdb_and_polars() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    let (code, stdout, stderr) = common::bgstream(&[
        "shard",
        "--images",
        path_str(&data.join("imagenet-val/images")),
        "--annotations",
        path_str(&data.join("imagenet-val/annotations.csv")),
        "--synsets",
        path_str(&data.join("imagenet-val/synsets.txt")),
        "--out",
        path_str(&shards),
        "--prefix",
        "val",
        "--shard-size",
        "20",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("wrote 66 samples into 4 shard(s)"),
        "{stdout}"
    );

    let (entries, _) = bgstream::shard::read_imagenet_csv(
        &data.join("imagenet-val/annotations.csv"),
        &data.join("imagenet-val/images"),
        None,
    )
    .unwrap();
    let kept = entries
        .iter()
        .filter(|e| {
            let a = &e.annotation;
            let f = raster_fraction(a.width.unwrap(), a.height.unwrap(), &a.boxes);
            (0.05..=0.70).contains(&f)
        })
        .count() as u64;

    let out = tmp.path().join("out");
    let summary = tmp.path().join("summary.json");
    let (code, stdout, stderr) = common::bgstream(&[
        "--shards",
        &format!("{}/val-*.tar", shards.display()),
        "--model",
        path_str(&common::model("efficientnet-lite0")),
        "--model",
        path_str(&common::model("tiny")),
        "--device",
        "cpu",
        "--batch-size",
        "32",
        "--workers",
        "1",
        "--readers",
        "2",
        "--textures",
        path_str(&data.join("textures")),
        "--out",
        path_str(&out),
        "--summary-json",
        path_str(&summary),
        "--no-progress",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["samples_read"], 66);
    assert_eq!(s["failed"], 0);
    assert_eq!(
        s["predicted_images"], kept,
        "filter count must match the raster union"
    );
    assert_eq!(s["filtered"], 66 - kept);
    assert_eq!(s["rows_written"], kept * V as u64 * 2);
    // Backpressure: readers + samples channel + workers + prepared channel + the one item
    // the inference stage holds bound what is alive at once (2 + 2 + 1 + 2 + 1), however
    // many samples the shards hold.
    let bound = 2 + 2 + 1 + 2 + 1;
    assert!(
        s["in_flight_max"].as_u64().unwrap() <= bound,
        "in flight {}",
        s["in_flight_max"]
    );
    // Real weights on real images: EfficientNet-Lite0 is ~75% top-1 on ImageNet.
    let acc = |model: &str, variant: &str| {
        s["accuracy"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["model"] == model && a["variant"] == variant)
            .unwrap()["top1"]
            .as_f64()
            .unwrap()
    };
    assert!(
        acc("efficientnet-lite0", "original") > 60.0, // percent
        "lite0 original {}",
        acc("efficientnet-lite0", "original")
    );
    assert!(acc("efficientnet-lite0", "bg_only") < acc("efficientnet-lite0", "original"));
    eprintln!("{stdout}");

    let report = common::reference(&["clients", path_str(&out), path_str(&summary)]);
    assert_eq!(report["rows"], s["rows_written"]);
    let table = aggregate_matches_sql_and_polars(&out, "tiny");
    eprintln!("{table}");
}

#[test]
fn bench_reports_forward_and_end_to_end_throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("b.tar");
    shard(
        &s,
        &[(
            "a",
            jpeg(96, 80, false, 1),
            Some("1"),
            boxes(&[[10, 10, 58, 50]]),
        )],
    );
    let (out, json) = (tmp.path().join("kept"), tmp.path().join("records.json"));
    let (code, stdout, stderr) = common::bgstream(&[
        "bench",
        "--shards",
        path_str(&s),
        "--model",
        path_str(&common::model("tiny")),
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "--forward-iters",
        "2",
        "--min-seconds",
        "0.2",
        "--e2e-seconds",
        "60",
        "--out",
        path_str(&out),
        "--summary-json",
        path_str(&json),
    ]);
    // One image is one batch: the end-to-end window is empty, and said to be too short.
    assert_eq!(code, 4, "{stdout}\n{stderr}");
    assert!(stdout.contains("CPU stage"), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("tiny"))
        .expect("a row for the model");
    let figures: Vec<f64> = row
        .split_whitespace()
        .skip(1)
        .take(5)
        .map(|v| v.parse().unwrap())
        .collect();
    // forward, end to end, ratio, window, wall; then the note.
    assert!(figures[0] > 0.0, "{row}");
    assert!(
        row.contains("TOO SHORT end-to-end: 0 batches timed"),
        "{row}"
    );
    assert!(!row.contains("TOO SHORT forward"), "{row}");
    // --out keeps the records, the table and the run; --summary-json has the records.
    let records: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("bench.json")).unwrap()).unwrap();
    assert_eq!(
        std::fs::read(&json).unwrap(),
        std::fs::read(out.join("bench.json")).unwrap()
    );
    assert!(std::fs::read_to_string(out.join("bench.txt"))
        .unwrap()
        .contains("tiny"));
    let modes: Vec<(&str, &str, bool)> = (records.as_array().unwrap().iter())
        .map(|r| {
            (
                r["model"].as_str().unwrap(),
                r["mode"].as_str().unwrap(),
                r["too_short"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        modes,
        [("tiny", "forward", false), ("tiny", "end_to_end", true)]
    );
    let r = &records[0];
    assert!(r["batches"].as_u64().unwrap() >= 10, "{r}");
    assert_eq!(r["precision"], "fp32");
    assert_eq!(r["settings"]["batch_size"], 4);
    assert!(r["machine"]["cpus"].as_u64().unwrap() >= 1, "{r}");
    let e2e = glob::glob(&format!("{}/e2e-0-tiny/*.parquet", out.display())).unwrap();
    assert_eq!(e2e.count(), 1, "the end-to-end run's output is kept");
}

#[test]
fn bench_stops_at_its_budget_and_shows_only_its_own_flags() {
    let tmp = tempfile::tempdir().unwrap();
    // 240 images x 2 variants through EfficientNet-Lite0 on CPU: far more than 1 s.
    let glob = crate::resume::shards_n(tmp.path(), 60);
    let json = tmp.path().join("records.json");
    let (code, stdout, stderr) = common::bgstream(&[
        "bench",
        "--shards",
        &glob,
        "--model",
        path_str(&common::model("efficientnet-lite0")),
        "--device",
        "cpu",
        "--batch-size",
        "4",
        "--variants",
        "original,bg_only",
        "--forward-iters",
        "1",
        "--min-seconds",
        "0.1",
        "--e2e-seconds",
        "1",
        "--summary-json",
        path_str(&json),
    ]);
    assert!(code == 0 || code == 4, "{stdout}\n{stderr}");
    let records: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let e2e = &records[1];
    assert_eq!(e2e["mode"], "end_to_end");
    // Stopped by the budget at a batch boundary, not after reading every shard (which
    // takes many seconds here), and without draining what was queued: a bound, not a
    // speed claim.
    assert!(e2e["images"].as_u64().unwrap() < 480, "{e2e}");
    assert_eq!(
        e2e["images"].as_u64().unwrap() % 4,
        0,
        "whole batches: {e2e}"
    );
    assert_eq!(e2e["stopped_by_budget"], true, "{e2e}");
    assert!(e2e["wall_seconds"].as_f64().unwrap() < 15.0, "{e2e}");

    let (code, help, _) = common::bgstream(&["bench", "--help"]);
    assert_eq!(code, 0);
    for own in [
        "--e2e-seconds",
        "--min-seconds",
        "--summary-json",
        "--shards",
        "--precision",
    ] {
        assert!(help.contains(own), "{own} missing from bench --help");
    }
    for run_only in [
        "--resume",
        "--overwrite",
        "--rank",
        "--rows-per-file",
        "--fail-fast",
        "--no-progress",
    ] {
        assert!(!help.contains(run_only), "bench --help lists {run_only}");
    }
    let (code, _, stderr) = common::bgstream(&["bench", "--resume", "--shards", &glob]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn frozen_export_predicts_like_the_traced_model_and_pins_its_precision() {
    let tmp = tempfile::tempdir().unwrap();
    let frozen = tmp.path().join("tiny-frozen.pt");
    let status = std::process::Command::new(common::python())
        .arg(common::root().join("examples/freeze_model.py"))
        .args([path_str(&common::model("tiny")), "--precision", "fp32"])
        .args(["--device", "cpu", "--out", path_str(&frozen)])
        .status()
        .unwrap();
    assert!(status.success());
    let s = tmp.path().join("f.tar");
    let samples: Vec<_> = (0..6u8)
        .map(|i| {
            (
                ["a", "b", "c", "d", "e", "f"][i as usize],
                jpeg(96, 80, i % 2 == 0, i),
                Some("3"),
                boxes(&[[10, 10, 58, 50]]),
            )
        })
        .collect();
    shard(&s, &samples);
    let tiny = common::model("tiny");
    let run = |extra: &[&str], out: &str| {
        let mut args = vec![
            "--shards",
            path_str(&s),
            "--model",
            path_str(&tiny),
            "--model",
            path_str(&frozen),
            "--device",
            "cpu",
            "--no-progress",
            "--out",
        ];
        args.push(out);
        args.extend_from_slice(extra);
        common::bgstream(&args)
    };
    let out = tmp.path().join("out");
    let (code, stdout, stderr) = run(&[], path_str(&out));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let rows = common::reference_sql(
        &out,
        "select a.top5_classes[1] = b.top5_classes[1], abs(a.p_true - b.p_true) < 1e-4 from rows a join rows b \
         using (key, variant) where a.model = 'tiny' and b.model = 'tiny-frozen-fp32'",
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 6 * V);
    assert!(
        rows.iter().all(|r| r[0] == true && r[1] == true),
        "{rows:?}"
    );
    // A model frozen in fp32 refuses another precision before any image is read.
    let (code, _, stderr) = run(&["--precision", "bf16"], path_str(&tmp.path().join("o2")));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("frozen in fp32; run it with --precision fp32"),
        "{stderr}"
    );
}

/// GPU numerics are options a run records: TF32 only with fp32 (and then only on request),
/// autotuning and the GPU batch default only on CUDA; fp32 turns TF32 off before CUDA loads.
#[test]
fn gpu_numerics_are_checked_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s.tar");
    shard(
        &s,
        &[(
            "a",
            jpeg(64, 64, false, 1),
            Some("1"),
            boxes(&[[8, 8, 40, 40]]),
        )],
    );
    let tiny = common::model("tiny");
    let base = [
        "--shards",
        path_str(&s),
        "--model",
        path_str(&tiny),
        "--no-progress",
    ];
    let out = tmp.path().join("bf16");
    let mut args = base.to_vec();
    args.extend([
        "--precision",
        "bf16",
        "--allow-tf32",
        "--out",
        path_str(&out),
    ]);
    let (code, _, stderr) = common::bgstream(&args);
    assert_eq!(code, 2, "a usage error: {stderr}");
    assert!(
        stderr.contains("--allow-tf32 applies to --precision fp32"),
        "{stderr}"
    );
    let out = tmp.path().join("fp32");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_bgstream"))
        .args(base)
        .args([
            "--device",
            "cpu",
            "--cudnn-benchmark",
            "on",
            "--out",
            path_str(&out),
        ])
        .env("BGSTREAM_LOG", "bgstream=info")
        .env_remove("NVIDIA_TF32_OVERRIDE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("NVIDIA_TF32_OVERRIDE=0"), "{stderr}");
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_run.json")).unwrap()).unwrap();
    assert_eq!(identity["tf32"], false);
    assert_eq!(
        identity["cudnn_benchmark"], false,
        "autotuning is a GPU setting"
    );
    assert_eq!(identity["batch_size"], 64, "the CPU default");
}
