//! `bgstream aggregate`: the Parquet output -> the paper's tables, figures and the report.

use bgstream::aggregate::{self, AggregateConfig};

use crate::cli::{AggregateArgs, SummaryFormat};

pub fn run(a: &AggregateArgs) -> anyhow::Result<u8> {
    let cfg = AggregateConfig {
        input: a.input.clone(),
        baseline: a.baseline.clone(),
        out: a
            .out
            .clone()
            .unwrap_or_else(|| sibling(&a.input, "-aggregate")),
        parquet: a.format.contains(&SummaryFormat::Parquet),
        csv: a.format.contains(&SummaryFormat::Csv),
        report: a.report.clone(),
        figures: !a.no_figures,
        examples: a.examples,
        class_map: a.class_map.clone(),
        class_names: a.class_names.clone(),
        shards: if a.shards.is_empty() {
            Vec::new()
        } else {
            bgstream::source::expand_shards(&a.shards)?
        },
        textures: a.textures.clone(),
        gallery: a.gallery,
        allow_changed_shards: a.allow_changed_shards,
        group_seeds: a.group_seeds,
    };
    let out = bgstream::report::aggregate(&cfg)?;
    for w in &out.warnings {
        eprintln!("bgstream: warning: {w}");
    }
    if out.data.duplicates > 0 {
        eprintln!(
            "bgstream: warning: {} (key, variant, model) rows appear more than once; the first was kept",
            out.data.duplicates
        );
    }
    if out.data.unmapped > 0 {
        eprintln!(
            "bgstream: note: {} rows have a label outside the class map (--class-map, or a model's own) and were left out",
            out.data.unmapped
        );
    }
    print!("{}", aggregate::render_table(&out.aggregate));
    print!("{}", aggregate::render_seed_groups(&out.seed_groups));
    for p in &out.written {
        println!("wrote {}", p.display());
    }
    if let (Some(path), Some(bytes)) = (&a.report, out.report_bytes) {
        println!(
            "report: {} ({:.2} MB{})",
            path.display(),
            bytes as f64 / 1e6,
            if cfg.shards.is_empty() {
                "; without --shards it has no pictures"
            } else {
                ""
            }
        );
    }
    Ok(0)
}

/// `results/` -> `results-aggregate/`: beside the input, never inside it (the input is
/// searched recursively for prediction files).
fn sibling(dir: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "results".into());
    name.push(suffix);
    dir.with_file_name(name)
}
