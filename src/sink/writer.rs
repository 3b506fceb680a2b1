//! Parquet files that appear atomically (write `NAME.tmp`, fsync, rename) and roll over
//! every `rows_per_file` rows. Run metadata goes into each file's key-value metadata.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::schema::{predictions_schema, rows_to_batch};
use crate::error::FatalError;
use crate::item::Row;

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub dir: PathBuf,
    /// File names are `{prefix}-{seq:05}.parquet`.
    pub prefix: String,
    pub rows_per_file: usize,
    /// Rows per record batch / row group chunk.
    pub batch_rows: usize,
    /// Key-value metadata written into every file.
    pub metadata: Vec<(String, String)>,
}

struct Open {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    rows: usize,
}

/// The Parquet writer stage state.
pub struct ParquetSink {
    cfg: SinkConfig,
    pending: Vec<Row>,
    open: Option<Open>,
    seq: usize,
    pub files: Vec<PathBuf>,
    pub rows_written: u64,
}

impl ParquetSink {
    pub fn new(cfg: SinkConfig) -> Result<Self, FatalError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| FatalError::output(&cfg.dir, e))?;
        Ok(ParquetSink {
            cfg,
            pending: Vec::new(),
            open: None,
            seq: 0,
            files: Vec::new(),
            rows_written: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    pub fn write(&mut self, rows: Vec<Row>) -> Result<(), FatalError> {
        self.pending.extend(rows);
        while self.pending.len() >= self.cfg.batch_rows {
            self.flush_pending(self.cfg.batch_rows)?;
        }
        Ok(())
    }

    fn open_file(&mut self) -> Result<&mut Open, FatalError> {
        if self.open.is_none() {
            let path = self
                .cfg
                .dir
                .join(format!("{}-{:05}.parquet", self.cfg.prefix, self.seq));
            self.seq += 1;
            let tmp = path.with_extension("parquet.tmp");
            let file = File::create(&tmp).map_err(|e| FatalError::output(&tmp, e))?;
            let kv = self
                .cfg
                .metadata
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                .collect();
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_key_value_metadata(Some(kv))
                .build();
            let writer = ArrowWriter::try_new(file, predictions_schema(), Some(props))
                .map_err(|e| FatalError::output(&tmp, e))?;
            self.open = Some(Open {
                writer,
                tmp,
                path,
                rows: 0,
            });
        }
        Ok(self.open.as_mut().expect("just opened"))
    }

    /// Writes up to `max` pending rows, never crossing a file boundary.
    fn flush_pending(&mut self, max: usize) -> Result<(), FatalError> {
        while !self.pending.is_empty() {
            let per_file = self.cfg.rows_per_file;
            let open = self.open_file()?;
            let room = per_file - open.rows;
            let take = room.min(max).min(self.pending.len());
            let batch = rows_to_batch(&self.pending[..take]);
            let open = self.open.as_mut().expect("open");
            open.writer
                .write(&batch)
                .map_err(|e| FatalError::output(&open.tmp, e))?;
            open.rows += take;
            self.pending.drain(..take);
            self.rows_written += take as u64;
            if open.rows >= per_file {
                self.close_file()?;
            }
            if take == max {
                break;
            }
        }
        Ok(())
    }

    fn close_file(&mut self) -> Result<(), FatalError> {
        if let Some(open) = self.open.take() {
            let file = open
                .writer
                .into_inner()
                .map_err(|e| FatalError::output(&open.tmp, e))?;
            file.sync_all()
                .map_err(|e| FatalError::output(&open.tmp, e))?;
            drop(file);
            std::fs::rename(&open.tmp, &open.path)
                .map_err(|e| FatalError::output(&open.path, e))?;
            self.files.push(open.path);
        }
        Ok(())
    }

    /// Writes what is pending and closes the current file.
    pub fn finish(mut self) -> Result<(Vec<PathBuf>, u64), FatalError> {
        self.flush_pending(usize::MAX)?;
        self.close_file()?;
        Ok((self.files, self.rows_written))
    }
}
