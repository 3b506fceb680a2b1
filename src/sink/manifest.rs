//! The run manifest in `--out`: which shards are complete, in which files.
//!
//! `_manifest.jsonl` gets one JSON line per completed shard, appended and fsynced only after
//! all of that shard's Parquet files were renamed into place. A shard that is not in the
//! manifest is not complete, whatever files exist: `--resume` deletes its files and redoes
//! it. A torn last line (a crash mid-append) is ignored the same way. `_run.json` holds the
//! run's identity (models, variants, seed, filter) so that `--resume` refuses to mix runs.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::FatalError;

pub const MANIFEST: &str = "_manifest.jsonl";
pub const RUN: &str = "_run.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub shard: String,
    pub files: Vec<String>,
    /// Each file's size in bytes, as written: `--resume` redoes a shard whose files are
    /// not all there at these sizes (a rename that a crash kept from reaching the disk).
    /// Absent in older manifests: their files are then only checked to exist.
    #[serde(default)]
    pub bytes: Vec<u64>,
    pub samples: u64,
    pub filtered: u64,
    pub failed: u64,
    pub rows: u64,
    /// The shard could not be read to its end (truncated, unreadable); its readable
    /// samples are in `files`.
    #[serde(default)]
    pub error: Option<String>,
    /// The shard file's size and hash as this run read it: `--resume` counts the shard
    /// as done only while the file still has them, and `aggregate --shards` draws only
    /// from files that do.
    #[serde(default)]
    pub content: Option<crate::source::tar_reader::ShardContent>,
}

/// Appends shard entries durably.
pub struct Manifest {
    path: PathBuf,
    file: File,
}

impl Manifest {
    /// Opens `dir/name` (`_manifest.jsonl`, or a rank's own manifest) for appending.
    pub fn open(dir: &Path, name: &str) -> Result<Self, FatalError> {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| FatalError::output(&path, e))?;
        // Once per run, so that the manifest's own name survives a crash.
        sync_dir(dir);
        Ok(Manifest { path, file })
    }

    /// Appends `entry` and fsyncs the manifest (the one fsync a shard adds to its files').
    pub fn append(&mut self, entry: &ShardEntry) -> Result<(), FatalError> {
        let mut line = serde_json::to_vec(entry).expect("entry serialises");
        line.push(b'\n');
        fail::fail_point!("manifest::append", |_| {
            // Simulated crash mid-append: half a line reaches the disk.
            let _ = self.file.write_all(&line[..line.len() / 2]);
            let _ = self.file.sync_all();
            std::process::abort();
        });
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| FatalError::output(&self.path, e))
    }
}

/// Complete shards recorded in `dir/name` (a torn or unparsable line is not a completion).
pub fn read(dir: &Path, name: &str) -> Result<Vec<ShardEntry>, FatalError> {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FatalError::io(&path, e)),
    };
    let mut seen = HashSet::new();
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<ShardEntry>(l).ok())
        .filter(|e| seen.insert(e.shard.clone()))
        .collect())
}

/// Rewrites the manifest without torn lines (before appending to it again).
pub fn compact(dir: &Path, name: &str, entries: &[ShardEntry]) -> Result<(), FatalError> {
    let mut text = String::new();
    for e in entries {
        text.push_str(&serde_json::to_string(e).expect("entry serialises"));
        text.push('\n');
    }
    crate::atomic::write_file(&dir.join(name), text.as_bytes())
}

pub use crate::atomic::sync_dir;
