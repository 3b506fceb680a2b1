//! `challenge.parquet` (one row per foreground and model) and `challenge.json` (one entry
//! per model), both written atomically.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, RecordBatch, StringBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use serde::Serialize;

use super::{Backgrounds, ChallengeConfig, Fg};
use crate::classes::Scoring;
use crate::error::FatalError;
use crate::infer::Model;
use crate::item::RowError;

/// One foreground under one model.
#[derive(Debug, Clone)]
pub struct ChallengeRow {
    pub model: String,
    pub shard: Arc<str>,
    pub key: String,
    pub label: Option<i64>,
    pub scoring: Option<Scoring>,
    pub status: Result<(), RowError>,
    /// Whether some background flipped the model's top-1 (`None` for an error row).
    pub vulnerable: Option<bool>,
    /// Backgrounds tried: up to and including the one that flipped it, else all.
    pub tried: Option<u64>,
    /// The first background that flipped it, and the (fine) class the model then gave.
    pub fooled_by: Option<String>,
    pub fooled_class: Option<i64>,
}

impl ChallengeRow {
    pub(super) fn of(model: &Model, fg: &Fg) -> Self {
        ChallengeRow {
            model: model.name().to_string(),
            shard: fg.shard.clone(),
            key: fg.key.clone(),
            label: fg.label,
            scoring: None,
            status: fg.status.clone(),
            vulnerable: None,
            tried: None,
            fooled_by: None,
            fooled_class: None,
        }
    }
}

/// One model's challenge figures (`challenge.json`).
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub model: String,
    /// Foregrounds judged (rows with status ok) and those some background flipped.
    pub foregrounds: u64,
    pub vulnerable: u64,
    /// Percent of `foregrounds` that no background flips.
    pub challenge_accuracy: Option<f64>,
    /// Rows that are errors, by status.
    pub errors: std::collections::BTreeMap<String, u64>,
    pub backgrounds: u64,
    /// `--backgrounds` shards, or `bg_tiled of the foregrounds`.
    pub background_source: String,
    pub backgrounds_failed: Vec<(String, String)>,
    /// Forward passes done, and the most the challenge could take (every background for
    /// every foreground).
    pub forwards: u64,
    pub forwards_worst_case: u64,
    pub seconds: f64,
    pub device: String,
}

impl ModelSummary {
    pub(super) fn new(
        model: &Model,
        rows: &[ChallengeRow],
        bgs: &Backgrounds,
        forwards: u64,
        elapsed: Duration,
        cfg: &ChallengeConfig,
    ) -> Self {
        let judged: Vec<&ChallengeRow> = rows.iter().filter(|r| r.vulnerable.is_some()).collect();
        let vulnerable = judged.iter().filter(|r| r.vulnerable == Some(true)).count() as u64;
        let n = judged.len() as u64;
        let mut errors = std::collections::BTreeMap::new();
        for r in rows {
            if let Err(e) = &r.status {
                *errors.entry(e.code.to_string()).or_default() += 1;
            }
        }
        ModelSummary {
            model: model.name().to_string(),
            foregrounds: n,
            vulnerable,
            challenge_accuracy: (n > 0)
                .then(|| crate::aggregate::percent((n - vulnerable) as f64 / n as f64)),
            errors,
            backgrounds: bgs.keys.len() as u64,
            background_source: match &cfg.backgrounds {
                Some(paths) => format!("{} shard(s) of --backgrounds", paths.len()),
                None => "bg_tiled of the foreground images".into(),
            },
            backgrounds_failed: bgs.failed.clone(),
            forwards,
            forwards_worst_case: n * bgs.keys.len() as u64,
            seconds: elapsed.as_secs_f64(),
            device: format!("{:?}", model.device()),
        }
    }
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("shard", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("label", DataType::Int64, true),
        Field::new("scoring", DataType::Utf8, true),
        Field::new("vulnerable", DataType::Boolean, true),
        Field::new("backgrounds_tried", DataType::UInt64, true),
        Field::new("fooled_by", DataType::Utf8, true),
        Field::new("fooled_class", DataType::Int64, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
    ]))
}

fn to_batch(rows: &[ChallengeRow]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let (mut model, mut shard, mut key) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut label, mut class) = (Int64Builder::new(), Int64Builder::new());
    let (mut scoring, mut by) = (StringBuilder::new(), StringBuilder::new());
    let (mut vulnerable, mut tried) = (BooleanBuilder::new(), UInt64Builder::new());
    let (mut status, mut error) = (StringBuilder::new(), StringBuilder::new());
    for r in rows {
        model.append_value(&r.model);
        shard.append_value(&*r.shard);
        key.append_value(&r.key);
        label.append_option(r.label);
        scoring.append_option(r.scoring.map(Scoring::name));
        vulnerable.append_option(r.vulnerable);
        tried.append_option(r.tried);
        by.append_option(r.fooled_by.as_deref());
        class.append_option(r.fooled_class);
        match &r.status {
            Ok(()) => {
                status.append_value("ok");
                error.append_null();
            }
            Err(e) => {
                status.append_value(e.code);
                error.append_value(&e.message);
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(model.finish()),
        Arc::new(shard.finish()),
        Arc::new(key.finish()),
        Arc::new(label.finish()),
        Arc::new(scoring.finish()),
        Arc::new(vulnerable.finish()),
        Arc::new(tried.finish()),
        Arc::new(by.finish()),
        Arc::new(class.finish()),
        Arc::new(status.finish()),
        Arc::new(error.finish()),
    ];
    RecordBatch::try_new(schema(), columns)
}

/// Writes `dir/challenge.parquet` and `dir/challenge.json`.
pub fn write_outputs(
    dir: &Path,
    rows: &[ChallengeRow],
    summaries: &[ModelSummary],
) -> Result<(), FatalError> {
    let path = dir.join("challenge.parquet");
    let tmp = crate::atomic::tmp_path(&path);
    let batch = to_batch(rows).map_err(FatalError::writing(&tmp))?;
    let file = std::fs::File::create(&tmp).map_err(FatalError::writing(&tmp))?;
    let mut w =
        ArrowWriter::try_new(file, batch.schema(), None).map_err(FatalError::writing(&tmp))?;
    w.write(&batch).map_err(FatalError::writing(&tmp))?;
    w.close().map_err(FatalError::writing(&tmp))?;
    crate::atomic::commit(&tmp, &path)?;
    let json = serde_json::to_vec_pretty(&serde_json::json!({ "models": summaries }))
        .map_err(FatalError::writing(dir))?;
    crate::atomic::write_file(&dir.join("challenge.json"), &json)
}
