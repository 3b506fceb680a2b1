//! `--original-all` (issue 25) on the 66 real ImageNet images: every image is classified on
//! `original`, the filter still decides the other variants, and the run summary, the Parquet
//! rows and `aggregate` agree on "original" (the filtered subset) and "original_all" (every
//! image), each with its image count.

use std::path::Path;

use crate::common::{self, path_str};

fn run(glob: &str, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let (tiny, lite0) = (common::model("tiny"), common::model("efficientnet-lite0"));
    let mut args = vec![
        "--shards",
        glob,
        "--model",
        path_str(&tiny),
        "--model",
        path_str(&lite0),
        "--device",
        "cpu",
        "--variants",
        "original,bg_only",
        "--no-progress",
        "--out",
        path_str(out),
    ];
    args.extend_from_slice(extra);
    common::bgstream(&args)
}

#[test]
fn original_all_classifies_every_image_and_reports_both_counts() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("s");
    let (code, out, err) = common::bgstream(&[
        "shard",
        "--images",
        path_str(&data.join("imagenet-val/images")),
        "--annotations",
        path_str(&data.join("imagenet-val/annotations.csv")),
        "--out",
        path_str(&s),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let glob = format!("{}/*.tar", s.display());
    let (plain, all) = (tmp.path().join("plain"), tmp.path().join("all"));
    let (code, out, err) = run(&glob, &plain, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(&glob, &all, &["--original-all"]);
    assert_eq!(code, 0, "{out}{err}");
    let count = |dir: &Path, sql: &str| common::reference_sql(dir, sql)[0][0].as_i64().unwrap();
    let kept = count(&plain, "select count(distinct key) from rows");
    let outside = 66 - kept;
    assert!(kept > 30 && outside > 10, "{kept} kept");
    // Every image has an original prediction (per model); the filtered ones only that.
    assert_eq!(
        count(
            &all,
            "select count(*) from rows where variant = 'original' and status = 'ok'"
        ),
        66 * 2
    );
    assert_eq!(
        count(
            &all,
            "select count(*) from rows where status = 'filtered' and not in_filter"
        ),
        outside * 2
    );
    assert_eq!(
        count(&all, "select count(*) from rows where in_filter"),
        2 * kept * 2
    );
    // The kept images' rows are the plain run's, prediction for prediction.
    let same = "select key, variant, model, top5_classes, p_true from rows where in_filter \
                order by key, variant, model";
    assert_eq!(
        common::reference_sql(&all, same),
        common::reference_sql(&plain, same)
    );
    assert!(
        out.contains(&format!("filtered {outside:>6}"))
            && out.contains(&format!("--original-all: the {outside} filtered image(s)")),
        "{out}"
    );
    // The summary's columns: original over the kept, original_all over all 66.
    let header = out
        .lines()
        .skip_while(|l| !l.starts_with("top-1 accuracy (%)"))
        .take(2)
        .collect::<Vec<_>>();
    let cols: Vec<&str> = header[0].split_whitespace().skip(3).collect();
    let images: Vec<&str> = header[1].split_whitespace().skip(1).collect();
    assert_eq!(cols, ["original", "original_all", "bg_only"], "{out}");
    assert_eq!(
        images,
        [kept.to_string(), "66".into(), kept.to_string()],
        "{out}"
    );
    let lite0_line = (out.lines())
        .skip_while(|l| !l.starts_with("top-1 accuracy (%)"))
        .find(|l| l.starts_with("efficientnet-lite0"))
        .unwrap();
    // aggregate: the same two rows, with their counts, in its table and summary.csv.
    let agg = tmp.path().join("agg");
    let (code, text, err) = common::aggregate(&all, &agg, &["--baseline", "tiny"]);
    assert_eq!(code, 0, "{err}");
    let csv = std::fs::read_to_string(agg.join("summary.csv")).unwrap();
    let results = std::fs::read_to_string(agg.join("results.csv")).unwrap();
    let lite = "efficientnet-lite0";
    let images = column(&csv, "images");
    assert_eq!(
        row(&csv, lite, "original")[images],
        kept.to_string(),
        "{csv}"
    );
    assert_eq!(row(&csv, lite, "original_all")[images], "66", "{csv}");
    assert!(text.contains("original_all"), "{text}");

    // One unit, percent, and the same number to the last digit each output prints: the
    // run's table and aggregate's (1 decimal), summary.csv (in full), results.csv (timm's 4
    // decimals, with timm's columns).
    assert!(
        results.starts_with(
            "model,variant,images,top1,top1_err,top5,top5_err,param_count,img_size,crop_pct,\
             interpolation,rel_top1\n"
        ),
        "{results}"
    );
    let run_cells: Vec<&str> = lite0_line.split_whitespace().skip(1).collect();
    for (i, variant) in ["original", "original_all", "bg_only"]
        .into_iter()
        .enumerate()
    {
        let full: f64 = row(&csv, lite, variant)[column(&csv, "top1")]
            .parse()
            .unwrap();
        assert!(full > 1.0, "Lite0 gets some right on {variant}: {full}%");
        let r = row(&results, lite, variant);
        let four = ((full * 1e4).round() / 1e4).to_string();
        assert!(four.contains('.'), "not a whole percent here: {four}");
        assert_eq!(r[column(&results, "top1")], four, "{results}");
        assert_eq!(
            r[column(&results, "images")],
            row(&csv, lite, variant)[images]
        );
        assert_eq!(r[column(&results, "img_size")], "224");
        let printed = format!("{full:.1}");
        assert_eq!(run_cells[i], printed, "the run's table: {lite0_line}");
        let line = (text.lines())
            .find(|l| l.split_whitespace().take(2).eq([lite, variant]))
            .unwrap();
        assert_eq!(
            line.split_whitespace().nth(3),
            Some(printed.as_str()),
            "{line}"
        );
    }
    // The SQL and Polars examples give exactly aggregate's numbers, original_all included.
    let summary = agg.join("summary.parquet");
    common::reference(&[
        "aggregate-clients",
        path_str(&all),
        path_str(&summary),
        "tiny",
    ]);
}

/// The row of `csv` for (model, variant), split.
fn row(csv: &str, model: &str, variant: &str) -> Vec<String> {
    (csv.lines())
        .find(|l| l.split(',').take(2).eq([model, variant]))
        .unwrap_or_else(|| panic!("no {model}, {variant} in {csv}"))
        .split(',')
        .map(String::from)
        .collect()
}

/// The index of `name` in the header of `csv`.
fn column(csv: &str, name: &str) -> usize {
    let header = csv.lines().next().unwrap();
    header
        .split(',')
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no {name} in {header}"))
}
