//! # bgstream
//!
//! Measures how much image classifiers rely on backgrounds, after "Time for a Background
//! Check!" (Sehwag et al., 2020): every image is classified as is, with the foreground
//! blanked, and with the background replaced, by every model, and each prediction becomes a
//! Parquet row.
//!
//! # Layout
//!
//! - [`source`]: tar shards -> [`source::Sample`]s (WebDataset grouping), and the
//!   `bgstream shard` writer.
//! - [`ops`]: pure synchronous image work — decode, resize + crop, box geometry, variants,
//!   textures. No runtime, no tch; tested without either.
//! - [`prepare`]: the CPU stage for one sample (filter, decode once, resize once per model
//!   preprocessing, all variants).
//! - [`donors`]: the donor bank of other images' backgrounds (`mixed_*`, `worst_bg:K`),
//!   fixed before the run; [`classes`]: coarse class maps and the ImageNet-1k classes.
//! - [`batch`]: fixed-size uint8 NHWC batches, double-buffered (pinned on CUDA), and the
//!   inference loop that owns the models.
//! - [`infer`]: TorchScript models with their sidecars, devices, precision, CUDA loading.
//! - [`sink`]: the Arrow schema and the atomic, rolling Parquet writer.
//! - A run is plan -> claim -> execute: [`plan`] loads and checks everything (models,
//!   textures, donor bank, the typed run identity) without touching `--out`; [`claim`] is the
//!   only step that does (`--overwrite`, `--resume` checks, the rank plan); [`pipeline`]
//!   executes — bounded channels, stage threads, shutdown, summary.
//! - [`aggregate`]: relative accuracies, Table 1, figures and the HTML report from the
//!   Parquet output (`bgstream aggregate`).
//! - [`config`] / [`cli`]: validated configuration from clap arguments; [`ranks`]: which
//!   part of a split run (Slurm, torchrun) this process does.
//! - [`bench`]: `bgstream bench` — forward vs end-to-end throughput per model.
//! - [`challenge`]: `bgstream challenge` — ImageNet-9's challenge accuracy, every
//!   background tried per foreground as `challenge_eval.py` does.
//! - [`error`]: [`error::ItemError`] (recorded per image) vs [`error::FatalError`].

//!
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
