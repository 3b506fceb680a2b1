//! `--original-all` (issue 25) on the 66 real ImageNet images: every image is classified on
//! `original`, the filter still decides the other variants, and the run summary, the Parquet
//! rows and `aggregate` agree on "original" (the filtered subset) and "original_all" (every
//! image), each with its image count.

use std::path::Path;

use crate::common::{self, path_str};

fn run(glob: &str, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let model = common::model("tiny");
    let mut args = vec![
        "--shards",
        glob,
        "--model",
        path_str(&model),
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
    // Every image has an original prediction; the filtered ones only that.
    assert_eq!(
        count(
            &all,
            "select count(*) from rows where variant = 'original' and status = 'ok'"
        ),
        66
    );
    assert_eq!(
        count(
            &all,
            "select count(*) from rows where status = 'filtered' and not in_filter"
        ),
        outside
    );
    assert_eq!(
        count(&all, "select count(*) from rows where in_filter"),
        2 * kept
    );
    // The kept images' rows are the plain run's, prediction for prediction.
    let same = "select key, variant, top5_classes, p_true from rows where in_filter \
                order by key, variant";
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
    // aggregate: the same two rows, with their counts, in its table and summary.csv.
    let (code, text, err) = common::aggregate(&all, &tmp.path().join("agg"), &[]);
    assert_eq!(code, 0, "{err}");
    let csv = std::fs::read_to_string(tmp.path().join("agg/summary.csv")).unwrap();
    let row = |variant: &str| -> Vec<String> {
        let line = csv
            .lines()
            .find(|l| l.split(',').nth(1) == Some(variant))
            .unwrap_or_else(|| panic!("no {variant} in {csv}"));
        line.split(',').map(String::from).collect()
    };
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let images = header.iter().position(|h| *h == "images").unwrap();
    assert_eq!(row("original")[images], kept.to_string(), "{csv}");
    assert_eq!(row("original_all")[images], "66", "{csv}");
    assert!(text.contains("original_all"), "{text}");
}
