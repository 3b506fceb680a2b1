//! `bgstream aggregate` on hand-built predictions with known answers, its bad-input errors,
//! the HTML report in a real headless browser, and the DuckDB / Polars examples.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use bgstream::aggregate::metrics::wilson;
use bgstream::aggregate::{AggregateConfig, SummaryRow};
use bgstream::item::Prediction;
use bgstream::item::{ItemMeta, Row, RowError};
use bgstream::sink::rows_to_batch;
use parquet::arrow::ArrowWriter;

use crate::common::{self, path_str};

/// Three models (A weak, B mid, C strong), ten keys k0..k9, and k10 failed everywhere.
/// top-1 correct sets:
///   original: A k0-k4, B k0-k6, C k0-k8 (top-5: all ten)
///   bg_only:  A {k0}, B {k0,k1}, C {k0,k1,k2} (top-5: A k0-k1, B k0-k3, C k0-k5)
///   fg_white: A k0-k2, B k0-k4, C k0-k6 (top-5 the same)
fn known_rows(bg_only_b: &[usize]) -> Vec<Row> {
    let top1 = |m: &str, v: &str| -> Vec<usize> {
        match (m, v) {
            ("A", "original") => (0..5).collect(),
            ("B", "original") => (0..7).collect(),
            ("C", "original") => (0..9).collect(),
            ("A", "bg_only") => vec![0],
            ("B", "bg_only") => bg_only_b.to_vec(),
            ("C", "bg_only") => vec![0, 1, 2],
            ("A", _) => (0..3).collect(),
            ("B", _) => (0..5).collect(),
            (_, _) => (0..7).collect(),
        }
    };
    let top5 = |m: &str, v: &str| -> Vec<usize> {
        match (m, v) {
            (_, "original") => (0..10).collect(),
            ("A", "bg_only") => vec![0, 1],
            ("B", "bg_only") => (0..4).collect(),
            ("C", "bg_only") => (0..6).collect(),
            _ => top1(m, v),
        }
    };
    let mut rows = Vec::new();
    for k in 0..11 {
        let meta = Arc::new(ItemMeta {
            shard: "s.tar".into(),
            key: format!("k{k}"),
            label: Some(7),
            fg_fraction: Some(0.3),
            width: Some(100),
            height: Some(100),
            ..ItemMeta::new("".into(), String::new())
        });
        for m in ["A", "B", "C"] {
            for v in ["original", "bg_only", "fg_white"] {
                let outcome = if k == 10 {
                    Err(RowError {
                        code: "decode_error",
                        message: "broken".into(),
                    })
                } else {
                    // label 7: top-1 right puts 7 first, top-5 right puts it second.
                    let (t1, t5) = (top1(m, v).contains(&k), top5(m, v).contains(&k));
                    let top = match (t1, t5) {
                        (true, _) => [7, 1, 2, 3, 4],
                        (false, true) => [1, 7, 2, 3, 4],
                        _ => [1, 2, 3, 4, 5],
                    };
                    Ok(Prediction {
                        top5: top,
                        top5_prob: [0.5, 0.2, 0.1, 0.1, 0.1],
                        p_true: 0.1,
                    })
                };
                rows.push(Row {
                    meta: meta.clone(),
                    slot: 0,
                    variant: v.into(),
                    model: m.into(),
                    background: None,
                    scoring: None,
                    outcome,
                });
            }
        }
    }
    rows
}

fn write_parquet(path: &Path, rows: &[Row]) {
    let batch = rows_to_batch(rows);
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn config(input: &Path, out: &Path, baseline: Option<&str>) -> AggregateConfig {
    AggregateConfig {
        input: input.to_path_buf(),
        baseline: baseline.map(String::from),
        out: out.to_path_buf(),
        parquet: true,
        csv: true,
        report: None,
        figures: false,
        examples: 5,
        class_map: None,
        class_names: None,
        shards: Vec::new(),
        textures: None,
        gallery: 4,
        group_seeds: false,
        allow_changed_shards: false,
    }
}

fn row<'a>(rows: &'a [SummaryRow], m: &str, v: &str) -> &'a SummaryRow {
    rows.iter()
        .find(|r| r.model == m && r.variant == v)
        .unwrap()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-12)
}

#[test]
fn known_counts_give_exact_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("pred");
    std::fs::create_dir_all(input.join("rank1")).unwrap();
    let rows = known_rows(&[0, 1]);
    // Split over two files in two folders, as two workers would write them.
    write_parquet(&input.join("part-00000.parquet"), &rows[..50]);
    write_parquet(&input.join("rank1/part-00000.parquet"), &rows[50..]);
    let out =
        bgstream::report::aggregate(&config(&input, &tmp.path().join("agg"), Some("A"))).unwrap();
    let (d, a) = (&out.data, &out.aggregate);
    assert_eq!(d.rows, 11 * 9);
    assert_eq!(d.error_rows.get("decode_error"), Some(&9));
    assert_eq!(d.duplicates, 0);
    assert_eq!(a.models, ["A", "B", "C"], "ordered by accuracy on original");
    assert_eq!(a.variants, ["original", "bg_only", "fg_white"]);
    let r = &a.rows;
    assert_eq!(r.len(), 9);
    let ao = row(r, "A", "original");
    assert_eq!(ao.images, 10);
    assert!(close(ao.top1, 0.5) && close(ao.top5, 1.0));
    let (lo, hi) = wilson(5, 10);
    assert!(close(ao.top1_lo, lo) && close(ao.top1_hi, hi));
    assert!(
        (lo - 0.2366).abs() < 1e-4 && (hi - 0.7634).abs() < 1e-4,
        "Wilson 5/10 = [0.2366, 0.7634]"
    );
    assert!(close(row(r, "B", "original").rel_top1_ratio, 0.7 / 0.5));
    assert!(close(row(r, "B", "original").rel_top1_diff, 0.2));
    assert!(close(row(r, "C", "fg_white").rel_top1_ratio, 0.7 / 0.3));
    assert!(close(row(r, "B", "bg_only").rel_top1_ratio, 2.0));
    assert!(close(row(r, "B", "bg_only").rel_top5_ratio, 2.0));
    // Control: keys the baseline A gets right on original = k0..k4.
    assert_eq!(row(r, "B", "fg_white").controlled_images, 5);
    assert!(close(row(r, "B", "fg_white").controlled_top1, 1.0));
    assert!(close(row(r, "C", "bg_only").controlled_top1, 0.6));
    assert!(close(row(r, "A", "bg_only").controlled_top5, 0.4));
    // Gaps: original - fg_white; none for original and bg_only.
    assert!(close(row(r, "B", "fg_white").gap_top1, 0.2));
    assert!(close(row(r, "B", "fg_white").gap_top5, 0.5));
    assert!(
        row(r, "B", "bg_only").gap_top1.is_none() && row(r, "B", "original").gap_top1.is_none()
    );
    // Table 1: nested sets, one new image per level.
    assert!(a.nested);
    assert_eq!(a.common, 1);
    let levels: Vec<_> = a
        .levels
        .iter()
        .map(|l| (l.model.as_str(), l.correct, l.new, l.examples.clone()))
        .collect();
    assert_eq!(
        levels,
        [
            ("A", 1, 1, vec!["k0".to_string()]),
            ("B", 2, 1, vec!["k1".to_string()]),
            ("C", 3, 1, vec!["k2".to_string()])
        ]
    );
    let files: BTreeSet<_> = std::fs::read_dir(tmp.path().join("agg"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        files,
        BTreeSet::from([
            "per_class.csv".into(),
            "results.csv".into(),
            "summary.csv".into(),
            "summary.parquet".into(),
            "table1.csv".into()
        ])
    );
    // Every accuracy file is in percent; results.csv in timm's validate.py form.
    let results = std::fs::read_to_string(tmp.path().join("agg/results.csv")).unwrap();
    let header = results.lines().next().unwrap();
    assert!(
        header.starts_with("model,variant,images,top1,top1_err,top5,top5_err,"),
        "{results}"
    );
    assert!(
        results.contains("\nA,original,10,50.0,50.0,100.0,0.0,")
            && results.contains("\nB,original,10,70.0,30.0,"),
        "{results}"
    );
    let summary = std::fs::read_to_string(tmp.path().join("agg/summary.csv")).unwrap();
    assert!(
        summary.contains("\nA,original,10,50.0,23.6593090513,"),
        "{summary}"
    );
    let report = common::reference(&[
        "aggregate-clients",
        path_str(&input),
        path_str(&tmp.path().join("agg/summary.parquet")),
        "A",
    ]);
    assert_eq!(report["rows"], 9);
}

#[test]
fn table1_notices_sets_that_do_not_nest() {
    let tmp = tempfile::tempdir().unwrap();
    write_parquet(&tmp.path().join("p.parquet"), &known_rows(&[1]));
    let out =
        bgstream::report::aggregate(&config(tmp.path(), &tmp.path().join("agg"), None)).unwrap();
    let a = out.aggregate;
    assert_eq!(
        a.baseline, "A",
        "default baseline: least accurate on original"
    );
    assert!(!a.nested);
    let b = &a.levels[1];
    assert_eq!(
        (b.correct, b.new, b.lost_from_previous),
        (1, 1, 1),
        "B drops k0 and adds k1"
    );
    assert_eq!(a.common, 0);
}

#[test]
fn bad_input_is_a_clear_error_naming_the_culprit() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _, err) = common::bgstream(&["aggregate", "--in", path_str(&empty)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no .parquet files") && err.contains("empty"),
        "{err}"
    );

    let mixed = tmp.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    write_parquet(&mixed.join("good.parquet"), &known_rows(&[0, 1]));
    let other = arrow::array::RecordBatch::try_from_iter([(
        "a",
        Arc::new(arrow::array::Int32Array::from(vec![1, 2])) as arrow::array::ArrayRef,
    )])
    .unwrap();
    let mut w = ArrowWriter::try_new(
        File::create(mixed.join("other.parquet")).unwrap(),
        other.schema(),
        None,
    )
    .unwrap();
    w.write(&other).unwrap();
    w.close().unwrap();
    let (code, _, err) = common::bgstream(&["aggregate", "--in", path_str(&mixed)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("other.parquet") && err.contains("key"),
        "{err}"
    );

    std::fs::remove_file(mixed.join("other.parquet")).unwrap();
    let (code, _, err) = common::bgstream(&[
        "aggregate",
        "--in",
        path_str(&mixed),
        "--baseline",
        "resnet18",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("resnet18") && err.contains("A, B, C"), "{err}");
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        eprintln!("SKIP: no Chromium on PATH (scripts/test installs Debian's chromium)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let pred = tmp.path().join("pred");
    std::fs::create_dir_all(&pred).unwrap();
    write_parquet(&pred.join("p.parquet"), &known_rows(&[0, 1]));
    let html = tmp.path().join("report.html");
    let (code, stdout, err) = common::bgstream(&[
        "aggregate",
        "--in",
        path_str(&pred),
        "--out",
        path_str(&tmp.path().join("agg")),
        "--report",
        path_str(&html),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("Table 1"), "{stdout}");
    for f in ["fig2_bg_only", "fig4_switched_top1", "fig5_switched_top5"] {
        for ext in ["svg", "png"] {
            let p = tmp.path().join(format!("agg/{f}.{ext}"));
            assert!(
                std::fs::metadata(&p).is_ok_and(|m| m.len() > 1000),
                "{} missing or empty",
                p.display()
            );
        }
    }
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(
        !text.contains("src=\"http") && !text.contains("href=\"http"),
        "report must be self-contained"
    );

    let profile = tmp.path().join("profile");
    let shot = tmp.path().join("shot.png");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,2400",
    ];
    let run = |extra: &[String]| {
        std::process::Command::new(chromium)
            .args(flags)
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(format!("file://{}", html.display()))
            .output()
            .unwrap()
    };
    let dom = run(&["--dump-dom".into()]);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    // The browser parsed the tables and the three figures (SVGs shown as images).
    for id in ["id=\"top1\"", "id=\"summary\"", "id=\"table1\""] {
        assert!(dom.contains(id), "{id} missing from the rendered DOM");
    }
    assert_eq!(
        dom.matches("src=\"data:image/svg+xml;base64,").count(),
        3,
        "three figures"
    );
    let out = run(&[format!("--screenshot={}", shot.display())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    let mut d = zune_png::PngDecoder::new(zune_core::bytestream::ZCursor::new(&png));
    let px = d.decode_raw().unwrap();
    let distinct: BTreeSet<_> = px.chunks(4).take(200_000).map(|p| p.to_vec()).collect();
    assert!(
        distinct.len() > 20,
        "the screenshot looks blank ({} colours)",
        distinct.len()
    );
}

#[test]
fn classes_are_named_and_scored_per_class() {
    // Odd keys become label 1 (goldfish) with classes 1 and 7 swapped in every prediction,
    // so each row stays right or wrong as before; even keys keep label 7 (cock).
    let rows: Vec<Row> = known_rows(&[0, 1])
        .into_iter()
        .map(|mut r| {
            let k: usize = r.meta.key[1..].parse().unwrap();
            if k % 2 == 1 {
                let mut meta = (*r.meta).clone();
                meta.label = Some(1);
                r.meta = Arc::new(meta);
                if let Ok(p) = &mut r.outcome {
                    for c in &mut p.top5 {
                        *c = match *c {
                            7 => 1,
                            1 => 7,
                            other => other,
                        };
                    }
                }
            }
            r
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pred");
    std::fs::create_dir_all(&input).unwrap();
    write_parquet(&input.join("p.parquet"), &rows);
    let out = dir.path().join("agg");
    let report = dir.path().join("report.html");
    let cfg = AggregateConfig {
        class_names: Some("imagenet".into()),
        report: Some(report.clone()),
        ..config(&input, &out, Some("A"))
    };
    let result = bgstream::report::aggregate(&cfg).unwrap();

    // per_class.csv against DuckDB over the same Parquet.
    let csv = std::fs::read_to_string(out.join("per_class.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("model,variant,label,class,images,top1,top5")
    );
    let got: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    let want = common::reference_sql(
        &input,
        "select model, variant, label, count(*), avg(top1_correct::int), \
         avg(top5_correct::int) from rows where status = 'ok' group by all order by all",
    );
    let want = want.as_array().unwrap();
    assert_eq!(got.len(), want.len());
    assert_eq!(got.len(), 3 * 3 * 2);
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            (&g[0], &g[1]),
            (
                &w[0].as_str().unwrap().to_string(),
                &w[1].as_str().unwrap().to_string()
            )
        );
        assert_eq!(g[2], w[2].to_string());
        assert_eq!(g[3], if g[2] == "1" { "goldfish" } else { "cock" });
        assert_eq!(g[4], w[3].to_string());
        for (gi, wi) in [(5, 4), (6, 5)] {
            // Percent, as every accuracy bgstream writes.
            assert!(
                close(
                    Some(g[gi].parse().unwrap()),
                    100.0 * w[wi].as_f64().unwrap()
                ),
                "{g:?} {w:?}"
            );
        }
    }
    // C gets k0, k1, k2 from the background: label 7 (k0, k2) 2 of 5, label 1 (k1) 1 of 5.
    assert!(got.contains(
        &["C", "bg_only", "7", "cock", "5", "40", "60"]
            .map(String::from)
            .to_vec()
    ));

    // Table 1 names the classes of its examples; the report ranks classes by bg_only.
    let c = result
        .aggregate
        .levels
        .iter()
        .find(|l| l.model == "C")
        .unwrap();
    assert_eq!(c.examples, ["k2 (cock)"]);
    let html = std::fs::read_to_string(&report).unwrap();
    let table = &html[html
        .find("id=\"best-classes\"")
        .expect("best-classes table")..];
    let first = table[table.find("<tbody>").unwrap() + 7..].trim_start();
    // label 7: A 1/5, B 1/5, C 2/5 (mean 0.27) beats label 1: 0, 1/5, 1/5.
    assert!(
        first.starts_with(
            "<tr><td class=\"t\">cock (7)</td><td>5</td><td data-v=\"0.200000\">20.0</td>\
             <td data-v=\"0.200000\">20.0</td><td data-v=\"0.400000\">40.0</td>"
        ),
        "{}",
        &first[..200.min(first.len())]
    );
}

#[test]
fn string_and_list_columns_of_other_writers_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pred");
    std::fs::create_dir_all(&input).unwrap();
    let mut rows = known_rows(&[0, 1]);
    for r in rows.iter_mut().filter(|r| &*r.variant == "bg_only") {
        r.background = Some("texture:builtin:brick".into());
    }
    write_parquet(&input.join("p.parquet"), &rows);
    let recast = dir.path().join("recast");
    let types = common::reference(&[
        "recast",
        path_str(&input.join("p.parquet")),
        path_str(&recast),
    ]);
    assert_eq!(
        types["large"],
        serde_json::json!(["large_string", "large_string", "large_list<element: int64>"]),
        "{types}"
    );
    assert_eq!(types["view"][0], "string_view", "{types}");
    // Coarse scoring reads label and the top5_classes list too.
    let map = dir.path().join("map.json");
    std::fs::write(
        &map,
        r#"{"classes": [{"name": "a", "labels": [7]}, {"name": "b", "labels": ["1-5"]}]}"#,
    )
    .unwrap();
    let summarise = |input: &Path, name: &str| -> Vec<String> {
        let out = dir.path().join(name);
        let cfg = AggregateConfig {
            class_map: Some(map.clone()),
            ..config(input, &out, Some("A"))
        };
        bgstream::report::aggregate(&cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
        ["summary.csv", "table1.csv", "per_class.csv"]
            .map(|f| std::fs::read_to_string(out.join(f)).unwrap())
            .to_vec()
    };
    let want = summarise(&input, "agg-utf8");
    for kind in ["large", "view", "polars"] {
        assert_eq!(summarise(&recast.join(kind), kind), want, "{kind}");
    }
}
