//! Shard-aligned, atomic Parquet output.
//!
//! Rows are held per shard until every sample of the shard is accounted for (predicted,
//! failed or filtered), then sorted by (key, variant, model) and written as
//! `part-{stem}-{hash}-{n}.parquet` files of at most `rows_per_file` rows: each written to
//! `*.tmp`, fsynced, renamed, and only then recorded (with its size) in the manifest: one
//! fsync per file and one for the manifest line. So a file under its
//! final name is always whole, a shard is either complete and recorded or redone by
//! `--resume`, and the bytes written do not depend on threads or the order in which
//! shards finish. Memory: the rows of the shards in flight (about 100 bytes a row).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use xxhash_rust::xxh3::xxh3_64;

use super::manifest::{Manifest, ShardEntry};
use super::schema::{predictions_schema, rows_to_batch};
use super::tally::Tally;
use crate::error::FatalError;
use crate::item::{Row, SinkMsg};

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub dir: PathBuf,
    pub rows_per_file: usize,
    /// Rows per record batch.
    pub batch_rows: usize,
    /// [`RunIdentity::sha256`](crate::run::identity::RunIdentity::sha256): each file
    /// names its run by this hash, never by the run's own (growing) lists.
    pub run_sha256: String,
    /// Output order of variants and models (their position in the run's lists).
    pub variants: Vec<Arc<str>>,
    pub models: Vec<Arc<str>>,
    /// The manifest's file name in `dir` (one per rank when a run is split).
    pub manifest: String,
}

#[derive(Default)]
struct ShardState {
    /// Samples the reader produced, once it finished the shard.
    total: Option<u64>,
    error: Option<String>,
    content: Option<crate::source::tar_reader::ShardContent>,
    done: u64,
    /// Filtered and failed images, predictions: what the summary reports once committed.
    tally: Tally,
    rows: Vec<Row>,
    /// key -> (rows seen, the item error of its rows) for items not yet complete.
    open_items: HashMap<String, (usize, Option<&'static str>)>,
}

/// What the sink did, for the run summary.
#[derive(Debug, Default)]
pub struct SinkReport {
    pub completed: Vec<ShardEntry>,
    /// Counts over the committed shards only.
    pub tally: Tally,
    pub files: Vec<PathBuf>,
    pub rows_written: u64,
    /// Shards left incomplete (interrupted): nothing of theirs was written.
    pub incomplete: Vec<String>,
}

/// The Parquet writer stage state.
pub struct ParquetSink {
    cfg: SinkConfig,
    rows_per_item: usize,
    model_pos: HashMap<Arc<str>, usize>,
    shards: HashMap<Arc<str>, ShardState>,
    manifest: Manifest,
    report: SinkReport,
}

/// Longest part of a shard's own name kept in its part files' names: with the hash and
/// suffixes a part file name stays far below the usual 255-byte limit.
const STEM_CHARS: usize = 80;

/// File-name stem for a shard: its file stem (sanitised, at most [`STEM_CHARS`]) plus a
/// hash of its full path, so that `a/x.tar` and `b/x.tar` (or two long names that share
/// their first 80 characters) never collide and reruns use the same names.
pub fn shard_file_stem(shard: &str) -> String {
    let stem: String = Path::new(shard)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("shard")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(STEM_CHARS)
        .collect();
    format!("part-{stem}-{:08x}", xxh3_64(shard.as_bytes()) as u32)
}

impl ParquetSink {
    pub fn new(cfg: SinkConfig) -> Result<Self, FatalError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| FatalError::output(&cfg.dir, e))?;
        let manifest = Manifest::open(&cfg.dir, &cfg.manifest)?;
        let pos = |v: &[Arc<str>]| v.iter().enumerate().map(|(i, s)| (s.clone(), i)).collect();
        Ok(ParquetSink {
            rows_per_item: cfg.variants.len() * cfg.models.len(),
            model_pos: pos(&cfg.models),
            cfg,
            shards: HashMap::new(),
            manifest,
            report: SinkReport::default(),
        })
    }

    pub fn rows_written(&self) -> u64 {
        self.report.rows_written
    }

    pub fn handle(&mut self, msg: SinkMsg) -> Result<(), FatalError> {
        // A message can carry rows of several shards (a batch mixes them).
        let mut touched: Vec<Arc<str>> = Vec::new();
        match msg {
            SinkMsg::Rows(rows) => {
                let per_item = self.rows_per_item;
                for row in rows {
                    if !touched.contains(&row.meta.shard) {
                        touched.push(row.meta.shard.clone());
                    }
                    let st = self.shards.entry(row.meta.shard.clone()).or_default();
                    st.tally.row(&row);
                    let entry = st.open_items.entry(row.meta.key.clone()).or_default();
                    entry.0 += 1;
                    // A slot's own error (no donor) does not fail the image.
                    if let (Err(e), None) = (&row.outcome, row.meta.slot_error(row.slot)) {
                        entry.1 = entry.1.or(Some(e.code));
                    }
                    if entry.0 == per_item {
                        let failed = entry.1;
                        st.open_items.remove(&row.meta.key);
                        st.done += 1;
                        if let Some(code) = failed {
                            st.tally.failed_item(code);
                        } else if row.meta.in_filter == Some(false) {
                            st.tally.outside_item();
                        }
                    }
                    st.rows.push(row);
                }
            }
            SinkMsg::Filtered(shard) => {
                let st = self.shards.entry(shard.clone()).or_default();
                st.done += 1;
                st.tally.filtered += 1;
                touched.push(shard);
            }
            SinkMsg::ShardRead {
                shard,
                samples,
                error,
                content,
            } => {
                let st = self.shards.entry(shard.clone()).or_default();
                st.total = Some(samples);
                st.error = error;
                st.content = content;
                touched.push(shard);
            }
        }
        for shard in touched {
            let complete = self
                .shards
                .get(&shard)
                .is_some_and(|st| st.total == Some(st.done) && st.open_items.is_empty());
            if complete {
                let st = self.shards.remove(&shard).expect("present");
                self.write_shard(&shard, st)?;
            }
        }
        Ok(())
    }

    /// Writer settings for a part file of `shard`. Its key-value metadata `bgstream` is
    /// the same few fields however large the run: the shard, the shard file's size and hash
    /// as read, and the hash of `_run.json` (which holds everything else once).
    fn properties(&self, shard: &str, st: &ShardState) -> WriterProperties {
        let meta = serde_json::json!({
            "shard": shard,
            "shard_content": st.content,
            "run_sha256": self.cfg.run_sha256,
        });
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_size(64 * 1024)
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "bgstream".into(),
                meta.to_string(),
            )]))
            .build()
    }

    fn write_shard(&mut self, shard: &str, mut st: ShardState) -> Result<(), FatalError> {
        let mp = &self.model_pos;
        st.rows.sort_by(|a, b| {
            (a.meta.key.as_str(), a.slot, mp.get(&a.model)).cmp(&(
                b.meta.key.as_str(),
                b.slot,
                mp.get(&b.model),
            ))
        });
        let stem = shard_file_stem(shard);
        let props = self.properties(shard, &st);
        let mut parts = Vec::new();
        for (n, chunk) in st.rows.chunks(self.cfg.rows_per_file).enumerate() {
            let path = self.cfg.dir.join(format!("{stem}-{n:03}.parquet"));
            let tmp = crate::atomic::tmp_path(&path);
            let file = File::create(&tmp).map_err(FatalError::writing(&tmp))?;
            let mut w = ArrowWriter::try_new(file, predictions_schema(), Some(props.clone()))
                .map_err(FatalError::writing(&tmp))?;
            for batch in chunk.chunks(self.cfg.batch_rows) {
                w.write(&rows_to_batch(batch))
                    .map_err(FatalError::writing(&tmp))?;
                fail::fail_point!("sink::mid_write", |_| std::process::abort());
            }
            let file = w.into_inner().map_err(FatalError::writing(&tmp))?;
            // The one fsync of this file. The folder is not synced after the rename: a
            // rename lost to a power cut leaves a manifest entry whose file is missing or
            // not its recorded size, and `--resume` redoes that shard.
            file.sync_all().map_err(FatalError::writing(&tmp))?;
            let bytes = file.metadata().map_err(FatalError::writing(&tmp))?.len();
            parts.push((tmp, path, bytes));
        }
        fail::fail_point!("sink::before_rename", |_| std::process::abort());
        for (tmp, path, _) in &parts {
            std::fs::rename(tmp, path).map_err(|e| FatalError::output(path, e))?;
        }
        fail::fail_point!("sink::after_rename", |_| std::process::abort());
        let entry = ShardEntry {
            shard: shard.to_string(),
            files: parts
                .iter()
                .map(|(_, p, _)| p.file_name().expect("file").to_string_lossy().into_owned())
                .collect(),
            bytes: parts.iter().map(|(_, _, b)| *b).collect(),
            samples: st.total.unwrap_or(0),
            filtered: st.tally.filtered,
            failed: st.tally.failed,
            rows: st.rows.len() as u64,
            error: st.error,
            content: st.content,
        };
        self.manifest.append(&entry)?;
        st.tally.samples = entry.samples;
        self.report.tally.merge(st.tally);
        self.report.rows_written += entry.rows;
        self.report
            .files
            .extend(parts.into_iter().map(|(_, p, _)| p));
        self.report.completed.push(entry);
        Ok(())
    }

    /// Ends the run: shards still open are incomplete (interrupted) and are not written.
    pub fn finish(mut self) -> SinkReport {
        for (k, st) in &self.shards {
            tracing::debug!(shard = %k, total = ?st.total, done = st.done, open = st.open_items.len(), "incomplete shard");
        }
        let mut incomplete: Vec<String> = self.shards.keys().map(|s| s.to_string()).collect();
        incomplete.sort();
        self.report.incomplete = incomplete;
        self.report
    }
}
