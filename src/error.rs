//! Two tiers of errors.
//!
//! [`ItemError`] belongs to one image: it is written as a row with a stable code, counted,
//! and the run goes on. [`FatalError`] stops the run: the first one wins, the stages drain,
//! and the Parquet writer still closes the files it finished.

use std::fmt;
use std::path::{Path, PathBuf};

/// An underlying error kept as a source whatever its type (libtorch's, a reader's, ...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A per-image failure. Its [`code`](ItemError::code) is stable: it lands in the `status`
/// column of the output and downstream queries may match on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ItemError {
    #[error("image could not be decoded: {0}")]
    Decode(String),
    #[error("image format not supported: {0}")]
    UnsupportedFormat(String),
    #[error("image is {width}x{height}, over the limit of {limit} pixels")]
    TooLarge {
        width: usize,
        height: usize,
        limit: u64,
    },
    #[error("image is too small to crop: {width}x{height}")]
    TooSmall { width: usize, height: usize },
    #[error("sample has no image member")]
    MissingImage,
    #[error("sample has no label (.cls or .json \"label\")")]
    MissingLabel,
    #[error("annotation is invalid: {0}")]
    BadAnnotation(String),
    #[error("sample has no foreground boxes")]
    NoBoxes,
    #[error("box {index} is invalid: {reason}")]
    BadBox { index: usize, reason: String },
    #[error("label {label} is outside the model's {num_classes} classes")]
    LabelOutOfRange { label: i64, num_classes: i64 },
    #[error("key {key:?} appears more than once in the shard (this is occurrence {n})")]
    DuplicateKey { key: String, n: usize },
    #[error("member {member:?}: keys must not contain dots (the key ends at the first dot)")]
    BadKey { member: String },
    #[error("sample is incomplete: {0}")]
    Truncated(String),
    #[error(
        "member {member:?} would bring its sample to {bytes} bytes, over the {limit}-byte \
         limit per sample (--max-sample-mib)"
    )]
    MemberTooLarge {
        member: String,
        bytes: u64,
        limit: u64,
    },
    #[error("foreground mask is invalid: {0}")]
    BadMask(String),
    #[error("polygon {index} is invalid: {reason}")]
    BadPolygon { index: usize, reason: String },
    #[error("image size {found} does not match the annotation's {expected}")]
    SizeMismatch { found: String, expected: String },
}

impl ItemError {
    /// Stable, machine-readable code for the `status` column.
    pub fn code(&self) -> &'static str {
        match self {
            ItemError::Decode(_) => "decode_error",
            ItemError::UnsupportedFormat(_) => "unsupported_format",
            ItemError::TooLarge { .. } | ItemError::MemberTooLarge { .. } => "too_large",
            ItemError::TooSmall { .. } => "too_small",
            ItemError::MissingImage => "missing_image",
            ItemError::MissingLabel => "missing_label",
            ItemError::BadAnnotation(_) => "bad_annotation",
            ItemError::NoBoxes => "no_boxes",
            ItemError::BadBox { .. } => "bad_box",
            ItemError::LabelOutOfRange { .. } => "label_out_of_range",
            ItemError::SizeMismatch { .. } => "size_mismatch",
            ItemError::BadMask(_) => "bad_mask",
            ItemError::BadPolygon { .. } => "bad_polygon",
            ItemError::DuplicateKey { .. } => "duplicate_key",
            ItemError::BadKey { .. } => "bad_key",
            ItemError::Truncated(_) => "truncated",
        }
    }
}

/// An error that ends the run.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    #[error("no shard matches {0:?}")]
    NoShards(String),
    #[error("invalid shard pattern {pattern:?}")]
    BadPattern {
        pattern: String,
        #[source]
        source: glob::PatternError,
    },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    // libtorch errors are boxed so that the library builds without the `torch` feature.
    #[error("model {path} failed to load")]
    ModelLoad {
        path: PathBuf,
        #[source]
        source: BoxError,
    },
    /// The model cannot be used because of an underlying error (its sidecar unreadable).
    #[error("model {path}: {what}")]
    ModelFrom {
        path: PathBuf,
        what: String,
        #[source]
        source: BoxError,
    },
    #[error("inference failed for model {model}")]
    Inference {
        model: String,
        #[source]
        source: BoxError,
    },
    #[error("device {0:?} is not available: {1}")]
    Device(String, String),
    /// A device that needs CUDA, where CUDA cannot be used (the source says why).
    #[error("device {spec:?} is not available")]
    DeviceUnavailable {
        spec: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot write output {path}")]
    Output {
        path: PathBuf,
        #[source]
        source: BoxError,
    },
    #[error("input {path}: {reason}")]
    Input { path: PathBuf, reason: String },
    /// An input that cannot be read because of an underlying error (csv's, an XML parser's,
    /// a limit's). `what` says where or what was read, when the source does not; it is left
    /// out of the message when `None`.
    #[error("input {path}{}", Then(.what))]
    InputFrom {
        path: PathBuf,
        what: Option<String>,
        #[source]
        source: BoxError,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The command line itself is wrong (a required flag missing, flags that contradict,
    /// a value out of range): exit status 2, as for clap's own usage errors.
    #[error("usage: {0}")]
    Usage(String),
    /// The input data cannot serve the request (not a setting that is wrong).
    #[error("{0}")]
    Data(String),
    /// `--out` holds something this run may not touch.
    #[error("output folder {path}: {reason}")]
    OutputInUse { path: PathBuf, reason: String },
    #[error("textures in {path}: {reason}")]
    Textures { path: PathBuf, reason: String },
    /// A texture that cannot be decoded or cropped.
    #[error("textures in {path}")]
    TexturesFrom {
        path: PathBuf,
        #[source]
        source: ItemError,
    },
    #[error("a pipeline stage panicked: {0}")]
    Panic(String),
    #[error("item failed and --fail-fast is set: {shard}/{key}")]
    FailFast {
        shard: String,
        key: String,
        #[source]
        source: ItemError,
    },
    #[error("interrupted")]
    Interrupted,
}

impl FatalError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FatalError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn output(path: impl Into<PathBuf>, source: impl Into<BoxError>) -> Self {
        FatalError::Output {
            path: path.into(),
            source: source.into(),
        }
    }

    /// [`FatalError::output`] for `map_err`: `.map_err(FatalError::writing(&path))`.
    pub fn writing<E: Into<BoxError>>(path: &Path) -> impl FnOnce(E) -> Self + '_ {
        move |e| FatalError::output(path, e)
    }

    /// The input at `path` cannot be read; `source` says why.
    pub fn input(path: impl Into<PathBuf>, source: impl Into<BoxError>) -> Self {
        FatalError::InputFrom {
            path: path.into(),
            what: None,
            source: source.into(),
        }
    }

    /// The input at `path` cannot be read: `what` (where in it, or what of it), because of
    /// `source`.
    pub fn input_from(
        path: impl Into<PathBuf>,
        what: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        FatalError::InputFrom {
            path: path.into(),
            what: Some(what.into()),
            source: source.into(),
        }
    }
}

/// `: what` when there is a `what` (for [`FatalError::InputFrom`]'s message).
struct Then<'a>(&'a Option<String>);

impl fmt::Display for Then<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(what) => write!(f, ": {what}"),
            None => Ok(()),
        }
    }
}

/// An error and its sources joined by `: ` (what anyhow's `{:#}` prints), for the places
/// where an error becomes text: a log line, a recorded message.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The message of a caught panic (`panic!` with a literal or a formatted string).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_keep_their_source_out_of_their_message() {
        let io = || std::io::Error::other("disk on fire");
        let e = FatalError::input_from("a.csv", "line 3", io());
        assert_eq!(e.to_string(), "input a.csv: line 3");
        assert_eq!(chain(&e), "input a.csv: line 3: disk on fire");
        let e = FatalError::input("a.csv", io());
        assert_eq!(e.to_string(), "input a.csv");
        assert_eq!(chain(&e), "input a.csv: disk on fire");
        let e = FatalError::writing(Path::new("out.json"))(io());
        assert_eq!(chain(&e), "cannot write output out.json: disk on fire");
    }
}
