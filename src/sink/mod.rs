//! Rows to Arrow record batches to Parquet files.

pub mod manifest;
pub mod schema;
pub mod tally;
pub mod writer;

pub use schema::{predictions_schema, rows_to_batch};
pub use tally::Tally;
pub use writer::{ParquetSink, SinkConfig, SinkReport};
