//! The command line (clap derive types only; [`crate::commands`] turns them into library
//! calls). `bgstream --shards ... --model ... --out ...` runs the main job.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use bgstream::ops::variants::DEFAULT_VARIANTS;
use bgstream::precision::{Autotune, Precision};

#[derive(Debug, Parser)]
#[command(
    name = "bgstream",
    version,
    about = "How much do image classifiers rely on backgrounds? Streams tar shards through \
             foreground/background variants and libtorch models into Parquet.",
    args_conflicts_with_subcommands = true,
    after_help = "Exit status: 0 clean; 3 finished but some items or shards failed (see the \
                  status column); 1 fatal error; 2 usage error; 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify every variant of every image with every model (the default command).
    Run(RunArgs),
    /// Build WebDataset tar shards from a folder of images and their annotations.
    Shard(ShardArgs),
    /// Relative accuracies, Table 1, figures and an HTML report from the Parquet output.
    Aggregate(AggregateArgs),
    /// Per model: pure forward vs end-to-end throughput in one process, and the CPU stage.
    Bench(BenchArgs),
    /// Contact sheets of what the models see: a row per image, a column per variant (PNG),
    /// plus every tile as an exact PNG; with --model, each model's top-1 and p(true).
    Preview(PreviewArgs),
    /// ImageNet-9's challenge accuracy as challenge_eval.py defines it: per foreground,
    /// every background is tried until one flips the model (N x N forwards at most).
    Challenge(ChallengeArgs),
    /// A model of yours as TorchScript plus sidecar: a timm name (with --checkpoint FILE),
    /// torchvision:NAME, open_clip:ARCH (zero-shot), or --factory FILE.py:FN. Runs the
    /// project's Python exporter with the venv's torch, then loads each model as a run would.
    /// `bgstream export --help` lists every option.
    #[command(disable_help_flag = true)]
    Export(ExportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Passed to the exporter as they are (its own --help describes them).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(Debug, Clone, Args)]
pub struct ChallengeArgs {
    /// Foreground shards (paths or globs): ImageNet-9's fg_mask + original sharded by
    /// `bgstream shard --format imagenet9`, or any shards with masks or boxes.
    #[arg(long, num_args = 1.., required = true, value_name = "PATH|GLOB")]
    pub shards: Vec<String>,
    /// Background shards, each image used as it is: ImageNet-9's released only_bg_t/val
    /// sharded without --annotations, as challenge_eval.py uses it. Default: bgstream's own
    /// bg_tiled (Only-BG-T) rendering of every foreground image.
    #[arg(long, num_args = 1.., value_name = "PATH|GLOB")]
    pub backgrounds: Vec<String>,
    /// TorchScript model with its sidecar. Repeatable.
    #[arg(long = "model", required = true, value_name = "PATH.pt")]
    pub models: Vec<PathBuf>,
    /// Where challenge.parquet (one row per foreground and model) and challenge.json go.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,
    /// Let fp32 convolutions and matmuls run as TF32 on GPUs that have it.
    #[arg(long)]
    pub allow_tf32: bool,
    /// Backgrounds per forward pass; default 256 on a GPU, 64 on CPU.
    #[arg(long, value_parser = parse_positive)]
    pub batch_size: Option<usize>,
    /// Foregrounds whose foreground fraction is in [--min-fg, --max-fg]; the default takes
    /// every one, as challenge_eval.py does.
    #[arg(long, default_value_t = 0.0)]
    pub min_fg: f64,
    #[arg(long, default_value_t = 1.0)]
    pub max_fg: f64,
    #[arg(long, default_value_t = 100_000_000)]
    pub max_pixels: u64,
    #[arg(long, default_value_t = 64)]
    pub max_sample_mib: u64,
    /// Write every foreground crop, its mask and every background as raw bytes under DIR
    /// (for checks against challenge_eval.py's arithmetic).
    #[arg(long, value_name = "DIR")]
    pub dump_inputs: Option<PathBuf>,
}

/// What a run and a benchmark share: the input, the models, the device and the images.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// Tar shards: paths or globs (quote globs to let bgstream expand them). Repeatable.
    #[arg(long, num_args = 1.., value_name = "PATH|GLOB")]
    pub shards: Vec<String>,
    /// TorchScript model; its sidecar `NAME.json` sits next to it. Repeatable.
    #[arg(long = "model", value_name = "PATH.pt")]
    pub models: Vec<PathBuf>,
    /// auto, cpu, cuda, cuda:N, a list cuda:0,cuda:1 or cuda:all (one inference worker per
    /// GPU, fed by the shared CPU stages). `auto` uses the first GPU when there is one
    /// (`LOCAL_RANK`'s under torchrun or Slurm).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Forward-pass precision. bf16 is much faster on a GPU but flips top-1 on near-ties
    /// (README, Throughput), so fp32 is the default. A model frozen by
    /// examples/freeze_model.py runs only in the precision it was frozen in.
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,
    /// cuDNN autotuning on a GPU: `auto` is off for fp32, so that fp32 rows are the same in
    /// every run, and on for bf16/fp16; `on` times kernels per shape, and the choice (so the
    /// last bits of some outputs) may differ between runs (README, Reproducibility).
    #[arg(long, value_enum, default_value = "auto")]
    pub cudnn_benchmark: Autotune,
    /// Same as `--cudnn-benchmark off` (older spelling).
    #[arg(long, hide = true)]
    pub no_cudnn_benchmark: bool,
    /// Let `--precision fp32` run convolutions and matrix products as TF32 on GPUs that
    /// have it (A100, H100, H200): faster, with a 10-bit mantissa. Without it fp32 means
    /// fp32: bgstream sets NVIDIA_TF32_OVERRIDE=0 before CUDA starts.
    #[arg(long)]
    pub allow_tf32: bool,
    /// Images per forward pass (per preprocessing group); default 256 on a GPU, 64 on CPU.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Variants, textures, donors, seed and the foreground filter (shared with preview).
    #[command(flatten)]
    pub image: VariantArgs,
    /// Also classify the images the foreground filter drops, on `original` only (their
    /// other variants get `filtered` rows), so that aggregate reports top-1 on original over
    /// all images (comparable with timm's tables) beside the filtered subset (the paper's).
    #[arg(long)]
    pub original_all: bool,
    /// CPU decode/variant workers (default: number of cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: Option<u32>,
    /// Shards read concurrently.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub readers: u32,
    /// Largest sample (all its tar members together) read into memory, in MiB; a larger
    /// one is recorded as too_large without being read.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_sample_mib: u64,
    /// Cap, in MiB, on the raw sample bytes the run holds at once (being read, queued,
    /// being decoded); raised to --readers x --max-sample-mib when lower.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_buffered_mib: u64,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Output directory for the Parquet files.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Start a new Parquet file after this many rows.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows_per_file: usize,
    /// Stop at the first item error instead of recording it.
    #[arg(long)]
    pub fail_fast: bool,
    /// Replace a run already in --out (otherwise refuse to mix runs).
    #[arg(long)]
    pub overwrite: bool,
    /// Finish the run in --out: keep its complete shards, redo the rest.
    #[arg(long)]
    pub resume: bool,
    /// This process's rank in a split run (with --world-size; default: torchrun's RANK,
    /// else Slurm's SLURM_PROCID, else 0). Shard i of the sorted list goes to rank i mod W.
    #[arg(long, value_name = "R")]
    pub rank: Option<usize>,
    /// Number of ranks of a split run (default: WORLD_SIZE, else SLURM_NTASKS, else 1).
    #[arg(long, value_name = "W")]
    pub world_size: Option<usize>,
    /// Also write the run summary as JSON here.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Testing aid: write every frame as it enters a batch to DIR/KEY/SLOT-SIZEpx.rgb (raw
    /// RGB), to compare with `bgstream preview`'s tiles. Slow; not for real runs.
    #[arg(long, hide = true, value_name = "DIR")]
    pub dump_inputs: Option<PathBuf>,
    /// Testing aid: write each batch's raw logits per model to DIR/MODEL/DEVICE-SEQ.f32
    /// (little-endian f32, rows x classes, filled rows only) with DEVICE-SEQ.json naming
    /// each row's key and slot (gpu-check compares them with PyTorch's).
    #[arg(long, hide = true, value_name = "DIR")]
    pub dump_logits: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct PreviewArgs {
    /// Tar shards: paths or globs. Only the images shown are decoded.
    #[arg(long, num_args = 1.., value_name = "PATH|GLOB", required = true)]
    pub shards: Vec<String>,
    /// Models whose preprocessing the tiles follow (a sheet per preprocessing) and whose
    /// top-1 class and p(true) caption each tile. Without one: --input-size and --crop-pct.
    #[arg(long = "model", value_name = "PATH.pt")]
    pub models: Vec<PathBuf>,
    /// Show the first N images that pass the checks and the foreground filter.
    #[arg(long, default_value_t = 8)]
    pub n: usize,
    /// Show these keys instead (comma-separated), in this order, filtered ones included.
    #[arg(long, value_delimiter = ',', value_name = "K1,K2")]
    pub keys: Vec<String>,
    /// Output folder: preview.png (or preview-SIZEpx.png per preprocessing), tiles/,
    /// tiles.csv.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Without --model: the input size ...
    #[arg(long, default_value_t = 224)]
    pub input_size: usize,
    /// ... and the centre-crop fraction (timm's crop_pct) of the tiles.
    #[arg(long, default_value_t = 0.875)]
    pub crop_pct: f64,
    /// Class names for titles and captions: `imagenet` (the default for 1000-class models
    /// and without a model), `none`, or a file with one class per line.
    #[arg(long, value_name = "imagenet|none|FILE")]
    pub class_names: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N: where --model runs.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// As for a run: variants, textures, class map, donors, seed, filter, size limit.
    #[command(flatten)]
    pub image: VariantArgs,
}

/// What each image becomes, the same for a run and a preview.
#[derive(Debug, Clone, Args)]
pub struct VariantArgs {
    /// Comma-separated variants; see README "Variants".
    #[arg(long, default_value = DEFAULT_VARIANTS)]
    pub variants: String,
    /// Folder of texture images for fg_texture and worst_bg:K (default: $BGSTREAM_TEXTURES,
    /// else the built-in brick, grass and gravel photos).
    #[arg(long, value_name = "DIR")]
    pub textures: Option<PathBuf>,
    /// Coarse class map (JSON, schemas/class-map.schema.json): donors for mixed_* are
    /// grouped by its classes (ImageNet-9 style) instead of the fine labels.
    #[arg(long, value_name = "FILE.json")]
    pub class_map: Option<PathBuf>,
    /// Shards the donor bank for mixed_* and worst_bg:K is drawn from (default: all shards
    /// of the run). Paths or globs, repeatable.
    #[arg(long, num_args = 1.., value_name = "PATH|GLOB")]
    pub donor_shards: Vec<String>,
    /// Donor bank size: backgrounds kept for mixed_* and worst_bg:K, split evenly over the
    /// classes (at least 2 per class). Memory: one crop per donor and input size.
    #[arg(long, default_value_t = 2000)]
    pub donors: usize,
    /// Seed of every random choice (noise, texture pick, donor pairing).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep images whose union-of-boxes fraction is at least this.
    #[arg(long, default_value_t = 0.05)]
    pub min_fg: f64,
    /// Keep images whose union-of-boxes fraction is at most this.
    #[arg(long, default_value_t = 0.70)]
    pub max_fg: f64,
    /// Largest image (width x height) decoded; larger ones are recorded as too_large.
    #[arg(long, default_value_t = 100_000_000)]
    pub max_pixels: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ShardArgs {
    /// Images. ImageNet formats: a folder searched recursively (flat, val/<wnid>/ or
    /// Kaggle's CLS-LOC/val/), or ILSVRC2012_img_val.tar read in place; images are matched
    /// by file name up to the first dot. Other formats: the folder paths are relative to
    /// (voc: default DIR/JPEGImages).
    #[arg(long, value_name = "DIR|TAR")]
    pub images: Option<PathBuf>,
    /// ImageNet bounding-box XMLs (a folder, or ILSVRC2012_bbox_val_v3.tgz as downloaded),
    /// Kaggle's LOC_val_solution.csv, the ImageNet table val_index,label,width,height,boxes,
    /// a JSON manifest ({"samples": [{"path","label","boxes"|"polygons"|"mask"}]}), a box CSV
    /// (path,label,x0,y0,x1,y1[,polygons], one row per box; polygons as COCO JSON), a Pascal
    /// VOC folder, Caltech101's Annotations/ folder (with --images 101_ObjectCategories; the
    /// outlines become polygons), or ImageNet-9's fg_mask/<split>/ folder of .npy masks (with
    /// --images original/<split>). Without it, --images is one of ImageNet-9's released
    /// variant folders (bg_challenge/mixed_rand/val, ...), sharded as it is: a run
    /// classifies each image once, as variant released:<name>.
    #[arg(long, value_name = "FILE|DIR")]
    pub annotations: Option<PathBuf>,
    /// The name recorded for a released variant folder read without --annotations
    /// (default: the folder above the split when it is one of ImageNet-9's: original,
    /// only_bg_b, only_bg_t, no_fg, only_fg, mixed_same, mixed_rand, mixed_next).
    #[arg(long, value_name = "NAME")]
    pub released_variant: Option<String>,
    /// Format of --annotations. Default: detected (a folder with Annotations/ is voc, a
    /// folder of class folders of annotation_*.mat caltech101, of .npy files imagenet9, any
    /// other folder or a
    /// .tgz/.tar imagenet-xml, .json manifest, a CSV by its header).
    #[arg(long, value_enum)]
    pub format: Option<bgstream::shard::AnnotationFormat>,
    /// One class per line, first token = wnid or name (synsets.txt, LOC_synset_mapping.txt).
    /// ImageNet formats: replaces the built-in ImageNet-1k order (not needed for ImageNet);
    /// box CSV: lets labels be class names.
    #[arg(long, value_name = "FILE")]
    pub synsets: Option<PathBuf>,
    /// voc: only the ids listed in DIR/ImageSets/Main/NAME.txt (e.g. train, val,
    /// trainval). Default: every XML file in DIR/Annotations. caltech101: train (the first
    /// 30 images of each class) or test (the rest).
    #[arg(long, value_name = "NAME")]
    pub split: Option<String>,
    /// voc: leave out objects marked difficult (before the label is chosen).
    #[arg(long)]
    pub voc_skip_difficult: bool,
    /// Output folder for the shards: new or empty (one shard set per folder, so that
    /// --shards 'DIR/*.tar' reads exactly this set).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace an earlier `bgstream shard` output in --out: removes exactly the files its
    /// _shards.json lists (anything else there still stops it).
    #[arg(long)]
    pub overwrite: bool,
    /// Shard names are PREFIX-000000.tar, ...
    #[arg(long, default_value = "shard")]
    pub prefix: String,
    /// Samples per shard.
    #[arg(long, default_value_t = 1000, value_parser = parse_positive)]
    pub shard_size: usize,
    /// Only the first N annotated images found (for quick tests).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Threads reading images (default: cores, at most 8).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Clone, Args)]
pub struct AggregateArgs {
    /// Folder of prediction Parquet files (searched recursively; any runs or workers).
    #[arg(long = "in", value_name = "DIR")]
    pub input: PathBuf,
    /// Baseline model for relative accuracy and the label-noise control (default: the
    /// least accurate model on original images; the paper uses ResNet-18).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Where summary.parquet / summary.csv / table1.csv and the figures go
    /// (default: DIR-aggregate beside DIR).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Summary formats, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "parquet,csv")]
    pub format: Vec<SummaryFormat>,
    /// Also write one self-contained HTML report with the tables and figures.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Skip the SVG/PNG figures (they are always drawn for --report).
    #[arg(long)]
    pub no_figures: bool,
    /// Score at a coarse level: a prediction is right when its class maps to the label's
    /// coarse class (JSON, schemas/class-map.schema.json); unmapped labels are left out.
    #[arg(long, value_name = "FILE.json")]
    pub class_map: Option<PathBuf>,
    /// Class names for Table 1's examples, worst_backgrounds.csv, per_class.csv and the
    /// report: `imagenet` (built in; the default when the run's models have 1,000
    /// classes), `none`, or a file with one class per line (synsets.txt style
    /// `wnid name, ...`, or a plain name).
    #[arg(long, value_name = "imagenet|none|FILE")]
    pub class_names: Option<PathBuf>,
    /// The run's shards (paths or globs): the report then shows the images — a gallery of
    /// every variant, images the background alone gets right, the worst backgrounds —
    /// re-rendered as the run rendered them. Only the images shown are decoded.
    #[arg(long, num_args = 1.., value_name = "PATH|GLOB")]
    pub shards: Vec<String>,
    /// The run's --textures, when it gave one (for the gallery's texture variants).
    #[arg(long, value_name = "DIR")]
    pub textures: Option<PathBuf>,
    /// Images in the report's gallery.
    #[arg(long, default_value_t = 4)]
    pub gallery: usize,
    /// Draw the pictures from --shards even when they are not the files the run read
    /// (another size or hash than its manifest records, or a shard it never read): each
    /// one is flagged in the report and on stderr instead of refused.
    #[arg(long)]
    pub allow_changed_shards: bool,
    /// Also report models that differ only by a `-seedN` suffix (examples/finetune.py
    /// --seeds) as one: mean ± sd over seeds (text, report, seed_groups.csv).
    #[arg(long)]
    pub group_seeds: bool,
    /// Example keys listed per Table-1 level.
    #[arg(long, default_value_t = 5)]
    pub examples: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SummaryFormat {
    Parquet,
    Csv,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Keep the results here: `bench.json` (one record per model x precision x mode),
    /// `bench.txt` (the table) and each end-to-end run's Parquet output (`e2e-N-MODEL/`).
    /// Default: the runs go to a temporary folder, removed afterwards.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write the JSON records to FILE.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// Batches timed for the pure forward measurement, at least (and at least 10; it runs
    /// on until --min-seconds have passed).
    #[arg(long, default_value_t = 30)]
    pub forward_iters: usize,
    /// Stop each end-to-end run at the first batch boundary after this many seconds (0:
    /// read every shard). Give more shards than the device gets through in that time.
    #[arg(long, default_value_t = 0.0)]
    pub e2e_seconds: f64,
    /// A measurement whose timed window is shorter than this, or holds fewer than 10
    /// batches, is flagged too short (in the table, in the JSON, and by exit code 4).
    #[arg(long, default_value_t = 5.0)]
    pub min_seconds: f64,
    /// Samples timed for the one-core CPU-stage rate.
    #[arg(long, default_value_t = 200)]
    pub cpu_samples: usize,
}

/// A whole number of at least 1.
fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
