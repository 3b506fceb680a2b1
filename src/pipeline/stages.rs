//! One function per stage. Each owns its channel ends, which drop when it returns; it
//! loops until its input closes or its output is gone, and reports a fatal error to the
//! run's [`Control`] rather than returning it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_channel::{Receiver, Sender};

use super::control::Control;
use crate::batch::Inference;
use crate::error::FatalError;
use crate::item::{Prepared, SinkMsg};
use crate::progress::Counters;
use crate::sink::{ParquetSink, SinkReport};
use crate::source::budget::ReadLimits;
use crate::source::tar_reader::read_shard_with;
use crate::source::Sample;
use crate::stage::prepare::{prepare, PrepareConfig, Scratch};

/// What one reader saw beyond the samples it sent.
#[derive(Debug, Default)]
pub struct ReadTotals {
    /// Tar members that are not regular files or have no key.
    pub skipped_members: u64,
    /// (shard, error) for shards that could not be read to their end.
    pub shard_errors: Vec<(String, String)>,
    /// Samples whose key an earlier-read shard of this run also holds.
    pub duplicate_keys: u64,
    /// The first few: (key, shard read first, this shard).
    pub duplicate_examples: Vec<(String, String, String)>,
}

/// Duplicate keys warned about per reader; the rest are counted.
const DUPLICATE_WARNINGS: usize = 3;

/// Every key the run's readers have seen, with the shard it was first seen in: two shards
/// holding one key are two images that queries joining on `key` would confuse.
#[derive(Debug, Default)]
pub struct KeyIndex(Mutex<HashMap<String, Arc<str>>>);

impl KeyIndex {
    /// The other shard `key` was first seen in, if any; records it otherwise.
    fn other_shard(&self, key: &str, shard: &Arc<str>) -> Option<Arc<str>> {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get(key) {
            Some(first) if first != shard => Some(first.clone()),
            Some(_) => None,
            None => {
                seen.insert(key.to_string(), shard.clone());
                None
            }
        }
    }
}

/// The key a duplicate is looked for under: a released variant's images share their keys
/// with the other variants' by design (their rows differ in `variant`), so the variant's
/// name goes with the key.
fn index_key(sample: &Sample) -> std::borrow::Cow<'_, str> {
    #[derive(serde::Deserialize)]
    struct Peek {
        released_variant: Option<String>,
    }
    // Only a JSON that names the field is parsed: this runs for every sample read.
    const FIELD: &[u8] = b"released_variant";
    let released = (sample.json.as_deref())
        .filter(|j| j.windows(FIELD.len()).any(|w| w == FIELD))
        .and_then(|j| serde_json::from_slice::<Peek>(j).ok())
        .and_then(|p| p.released_variant);
    match released {
        Some(v) => format!("{v}\0{}", sample.key).into(),
        None => sample.key.as_str().into(),
    }
}

/// Reads shards from `paths`, sends their samples on, and tells the writer how many
/// samples each shard held (so it knows when a shard is complete). A shard not read to
/// its end because the run stopped is not announced: it stays incomplete.
pub fn read_shards(
    paths: Receiver<PathBuf>,
    samples: Sender<Sample>,
    sink: Sender<SinkMsg>,
    ctl: Control,
    counters: Arc<Counters>,
    keys: Arc<KeyIndex>,
    limits: ReadLimits,
) -> ReadTotals {
    let mut totals = ReadTotals::default();
    while let Ok(path) = paths.recv_blocking() {
        // Tests pace the readers with it (a run still reading when it is signalled).
        fail::fail_point!("reader::before_shard");
        if ctl.stopped() {
            break;
        }
        let report = read_shard_with(&path, &limits, &|| ctl.stopped(), |sample| {
            if ctl.stopped() {
                return false;
            }
            if let Some(first) = keys.other_shard(&index_key(&sample), &sample.shard) {
                totals.duplicate_keys += 1;
                if totals.duplicate_examples.len() < DUPLICATE_WARNINGS {
                    tracing::warn!(
                        key = %sample.key,
                        "key also in shard {first}; now in {} (rows stay apart by `shard`, \
                         but queries by key would mix two images)",
                        sample.shard
                    );
                    let example = (
                        sample.key.clone(),
                        first.to_string(),
                        sample.shard.to_string(),
                    );
                    totals.duplicate_examples.push(example);
                }
            }
            counters.samples_read.fetch_add(1, Ordering::Relaxed);
            let now = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            counters.in_flight_max.fetch_max(now, Ordering::Relaxed);
            samples.send_blocking(sample).is_ok()
        });
        totals.skipped_members += report.skipped_members;
        if report.stopped {
            break;
        }
        if let Some(e) = &report.error {
            tracing::warn!(shard = %path.display(), "{e}");
            totals
                .shard_errors
                .push((path.display().to_string(), e.clone()));
        }
        let msg = SinkMsg::ShardRead {
            shard: path.display().to_string().into(),
            samples: report.samples,
            error: report.error,
            content: report.content,
        };
        if sink.send_blocking(msg).is_err() {
            break;
        }
    }
    totals
}

/// The CPU stage: decode, filter, resize and compose every variant of each sample.
pub fn prepare_samples(
    samples: Receiver<Sample>,
    out: Sender<Prepared>,
    prep: Arc<PrepareConfig>,
    ctl: Control,
) {
    let mut scratch = Scratch::default();
    while let Ok(sample) = samples.recv_blocking() {
        if ctl.abandoned() {
            continue;
        }
        let prepared = prepare(&sample, &prep, &mut scratch);
        // Its raw bytes go back to the readers' budget before a full channel can hold us.
        drop(sample);
        if out.send_blocking(prepared).is_err() {
            break;
        }
    }
}

/// One device's inference worker: batches prepared items through its models and sends
/// the rows on. On a fatal error it keeps draining its input, so the CPU stages never
/// block on a worker that stopped.
pub fn infer(
    input: Receiver<Prepared>,
    sink: Sender<SinkMsg>,
    mut inference: Inference,
    fail_fast: bool,
    ctl: Control,
    counters: Arc<Counters>,
) {
    let _no_grad = tch::no_grad_guard();
    let mut emit = |msg: SinkMsg| sink.send_blocking(msg).is_ok();
    let mut run = || -> Result<(), FatalError> {
        // While the readers and CPU workers start filling the channels.
        inference.warm_up()?;
        while let Ok(item) = input.recv_blocking() {
            counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            if ctl.abandoned() {
                // At a batch boundary: batches are launched inside `push`.
                while input.recv_blocking().is_ok() {}
                return Ok(());
            }
            let counter = match &item {
                Prepared::Filtered(_) => &counters.filtered,
                Prepared::Failed(..) => &counters.failed,
                Prepared::Ready(..) => &counters.predicted_images,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if let (true, Prepared::Failed(meta, source)) = (fail_fast, &item) {
                return Err(FatalError::FailFast {
                    shard: meta.shard.to_string(),
                    key: meta.key.clone(),
                    source: source.clone(),
                });
            }
            inference.push(item, &mut emit)?;
        }
        inference.finish(&mut emit)
    };
    if let Err(e) = run() {
        ctl.fail(e);
        while input.recv_blocking().is_ok() {}
    }
}

/// The writer: hands every message to the Parquet sink, which commits whole shards. On a
/// fatal error it keeps draining (nothing more is written) so upstream never blocks.
pub fn write(
    input: Receiver<SinkMsg>,
    mut sink: ParquetSink,
    ctl: Control,
    counters: Arc<Counters>,
) -> SinkReport {
    while let Ok(msg) = input.recv_blocking() {
        if let Err(e) = sink.handle(msg) {
            ctl.fail(e);
            while input.recv_blocking().is_ok() {}
            break;
        }
        counters
            .rows_written
            .store(sink.rows_written(), Ordering::Relaxed);
    }
    sink.finish()
}
