//! Live counters: the stages bump them, the progress display (and the backpressure test)
//! reads them. The run summary is not computed from these but from what the sink
//! committed ([`crate::sink::Tally`]).

use std::sync::atomic::AtomicU64;

#[derive(Debug, Default)]
pub struct Counters {
    pub samples_read: AtomicU64,
    pub filtered: AtomicU64,
    pub failed: AtomicU64,
    pub predicted_images: AtomicU64,
    /// Rows with a prediction (image x variant x model forward passes read back).
    pub forwards: AtomicU64,
    /// (batches, rows with a prediction) read back, updated together: `bench` times
    /// between batch boundaries.
    pub batches: std::sync::Mutex<(u64, u64)>,
    pub rows_written: AtomicU64,
    /// Samples alive between reader and inference (backpressure check).
    pub in_flight: AtomicU64,
    pub in_flight_max: AtomicU64,
    /// Samples in the shards still to do, once counted from their headers (0: not known).
    pub samples_total: AtomicU64,
}
