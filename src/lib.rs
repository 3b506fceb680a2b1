//! # bgstream
//!
//! Measures how much image classifiers rely on backgrounds, after "Time for a Background
//! Check!" (Sehwag et al., 2020): every image is classified as is, with the foreground
//! blanked, and with the background replaced, by every model, and each prediction becomes a
//! Parquet row.
//!
//! # Layout
//!
//! The modules follow the data; imports flow one way (`tests/data/layering.rs` checks it).
//!
//! - [`source`]: tar shards -> [`source::Sample`]s (WebDataset grouping, memory budget);
//!   [`shard`]: the `bgstream shard` writer and one reader per dataset.
//! - [`ops`]: pure synchronous image work — decode, resize + crop, box geometry, masks,
//!   variants, textures. No runtime, no tch; tested without either. [`variant`]: the
//!   variants' names, shared with [`aggregate`].
//! - [`stage`]: the CPU stage for one sample ([`stage::prepare`]: filter, decode once,
//!   resize once per model preprocessing, all variants) and the donor bank of other
//!   images' backgrounds ([`stage::donors`]); [`classes`]: class maps and class lists.
//! - [`batch`]: fixed-size uint8 NHWC batches, double-buffered (pinned on CUDA), and the
//!   inference loop that owns the models.
//! - [`infer`]: TorchScript models with their sidecars; [`infer::device::open`] opens a
//!   device with its precision policy, the one place process settings change.
//! - [`sink`]: the Arrow schema and the atomic, rolling Parquet writer.
//! - [`run`]: a run is settings -> plan -> claim -> execute: [`run::plan`] loads and checks
//!   everything (models, textures, donor bank, the typed run identity) without touching
//!   `--out`; [`run::claim`] is the only step that does; [`pipeline`] executes — bounded
//!   channels, stage threads, shutdown — into a [`run::summary::RunSummary`].
//! - [`aggregate`]: the paper's numbers from the Parquet output alone; [`report`]: the HTML
//!   report, its figures and pictures; [`preview`]: contact sheets of what models see.
//! - [`bench`]: forward vs end-to-end throughput; [`challenge`]: ImageNet-9's challenge
//!   accuracy, every background tried per foreground as `challenge_eval.py` does.
//! - [`error`]: [`error::ItemError`] (recorded per image) vs [`error::FatalError`].
//!
//! The command line (`src/cli/`, `src/commands/`) belongs to the binary: the library takes
//! validated settings, never clap's types.

//! Without the default `torch` feature the crate and the binary build without libtorch:
//! sources and `bgstream shard`, ops, the CPU stage, the Parquet sink and `bgstream
//! aggregate` (`cargo test --no-default-features` tests those; the fuzz target uses it).

pub mod aggregate;
pub mod atomic;
#[cfg(feature = "torch")]
pub mod batch;
#[cfg(feature = "torch")]
pub mod bench;
#[cfg(feature = "torch")]
pub mod challenge;
pub mod classes;
pub mod error;
#[cfg(feature = "torch")]
pub mod infer;
pub mod item;
pub mod ops;
#[cfg(feature = "torch")]
pub mod pipeline;
pub mod precision;
pub mod preview;
pub mod progress;
pub mod report;
pub mod run;
pub mod shard;
pub mod sidecar;
pub mod sink;
pub mod source;
pub mod stage;
pub mod variant;
