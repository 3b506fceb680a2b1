//! The bounds of `bgstream shard`'s readers: no input file — a decompression bomb, a header
//! that lies about a size or a shape — makes it allocate more than these limits, and going
//! past one is an error that names the file and the limit.
//!
//! The numbers leave wide headroom over the real datasets (each constant says which); the
//! hostile-input section of the README lists them with the peak memory measured on bombs.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::rc::Rc;

use crate::error::FatalError;

/// A byte (or count) limit, named for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The constant's name, so that a message can be traced to this file.
    pub name: &'static str,
    pub max: u64,
    /// Whether `max` is bytes (or a count of things).
    pub is_bytes: bool,
    /// What it bounds, e.g. "one XML annotation".
    pub what: &'static str,
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// One XML annotation, a file or a member of the tar. ImageNet's 50,000 validation XMLs are
/// at most 4.9 KB, Pascal VOC's a few KB: 1 MiB is 200 times that.
pub const XML_FILE: Limit = Limit {
    name: "XML_FILE_LIMIT",
    max: MIB,
    is_bytes: true,
    what: "one XML annotation",
};

/// An XML tar as it inflates (headers and padding included), or the XML files of a folder
/// summed. ImageNet's validation `.tgz` inflates to 61 MB (50,000 files); the training
/// boxes (544,546 files) to about 0.7 GB: 2 GiB is three times that. (Every member takes
/// at least 1 KiB of tar: 2 million at most, and [`IMAGES`] stops them at 1 million.)
pub const XML_TOTAL: Limit = Limit {
    name: "XML_TOTAL_LIMIT",
    max: 2 * GIB,
    is_bytes: true,
    what: "all XML annotations together",
};

/// A tar's metadata between two members (headers, GNU long names, PAX records), which the
/// tar crate keeps in memory whole. Real ones are under 1 KiB.
pub const TAR_METADATA: Limit = Limit {
    name: "TAR_METADATA_LIMIT",
    max: 64 * KIB,
    is_bytes: true,
    what: "the tar headers, long names and PAX records of one member",
};

/// XML text parsed at once on all cores before it is dropped (not a limit on the input).
pub const XML_BATCH_BYTES: u64 = 32 * MIB;

/// A CSV or JSON annotation file (Kaggle, `imagenet-csv`, box CSV, manifest). Kaggle's
/// `LOC_val_solution.csv` is 3.2 MB for 50,000 images, its training file about 35 MB:
/// 256 MiB is seven times that.
pub const TABLE_FILE: Limit = Limit {
    name: "TABLE_FILE_LIMIT",
    max: 256 * MIB,
    is_bytes: true,
    what: "a CSV or JSON annotation file",
};

/// A list file: `--synsets`, a VOC `ImageSets/Main/*.txt`. ImageNet-1k's synsets are
/// 32 KB, ImageNet-21k's under 1 MB, VOC 2012's `trainval.txt` 0.2 MB.
pub const LIST_FILE: Limit = Limit {
    name: "LIST_FILE_LIMIT",
    max: 16 * MIB,
    is_bytes: true,
    what: "a list file (synsets, VOC split)",
};

/// A model's JSON sidecar. Real ones are under 20 KiB, a class map of all 1,000 ImageNet
/// classes included.
pub const SIDECAR_FILE: Limit = Limit {
    name: "SIDECAR_FILE_LIMIT",
    max: 16 * MIB,
    is_bytes: true,
    what: "a model's JSON sidecar",
};

/// Images (records, samples) per annotation input. ImageNet-1k's box files list 544,546
/// training and 50,000 validation images; each costs about 0.5 KB until the shards are
/// written (measured: 2 million took 0.85-0.95 GB), so 1 million is about 0.5 GB.
pub const IMAGES: Limit = Limit {
    name: "MAX_IMAGES",
    max: 1_000_000,
    is_bytes: false,
    what: "annotated images in one input",
};

/// Boxes kept per annotation input. ImageNet's 50,000 validation images have 80,477 boxes:
/// 4 million is fifty times that and costs 128 MB (as `[f64; 4]`).
pub const BOXES: Limit = Limit {
    name: "MAX_BOXES",
    max: 4_000_000,
    is_bytes: false,
    what: "boxes in one input",
};

/// Polygon coordinates per annotation input (x and y count one each, and each polygon
/// one more). Caltech101's outlines have tens to hundreds of points for 8,677 images, a few
/// million coordinates; 16 million cost 128 MB as f64.
pub const POLYGON_VALUES: Limit = Limit {
    name: "MAX_POLYGON_VALUES",
    max: 16_000_000,
    is_bytes: false,
    what: "polygon coordinates in one input",
};

/// A Caltech101 `.mat` annotation, as stored and as its zlib elements inflate (summed).
/// Caltech101's are a few KB (a box and an outline of tens to hundreds of points): 1 MiB
/// is hundreds of times that.
pub const MAT_FILE: Limit = Limit {
    name: "MAT_FILE_LIMIT",
    max: MIB,
    is_bytes: true,
    what: "a .mat annotation (stored or inflated)",
};

/// A mask file (`.npy` or PNG) as stored. ImageNet-9's `.npy` masks are 224x224 (0.05 MB as
/// bool, 1.2 MB as float64 RGB); 256 MiB holds a uint8 mask of [`MASK_PIXELS`].
pub const MASK_FILE: Limit = Limit {
    name: "MASK_FILE_LIMIT",
    max: 256 * MIB,
    is_bytes: true,
    what: "a mask file",
};

/// Pixels of a mask (`.npy` shape, PNG header), checked before anything of that size is
/// allocated: the run's own limit on images (`ops::decode::Limits::default()`), since a
/// mask must be its image's size.
pub const MASK_PIXELS: Limit = Limit {
    name: "MASK_PIXEL_LIMIT",
    max: 100_000_000,
    is_bytes: false,
    what: "the pixels of a mask",
};

/// Values of an `.npy` mask (height x width x channels). Four channels of a mask of
/// [`MASK_PIXELS`].
pub const NPY_VALUES: Limit = Limit {
    name: "NPY_VALUE_LIMIT",
    max: 400_000_000,
    is_bytes: false,
    what: "the values of an .npy mask",
};

/// An image file, read whole to be written into the shard: no run reads a bigger sample
/// ([`crate::source::budget::MAX_SAMPLE_BYTES`], the top of `--max-sample-mib`; by default
/// a run records samples over 64 MiB as `too_large`).
pub const IMAGE_FILE: Limit = Limit {
    name: "IMAGE_FILE_LIMIT",
    max: crate::source::budget::MAX_SAMPLE_BYTES,
    is_bytes: true,
    what: "an image file (the run's member limit)",
};

/// Image bytes read ahead of the tar writer in one window (which also ends at 64 images):
/// at most three windows are in memory (being read, queued, being written).
pub const WINDOW_BYTES: u64 = 256 * MIB;

/// Counts what one annotation input holds against [`IMAGES`], [`BOXES`] and
/// [`POLYGON_VALUES`], as it is read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    images: u64,
    boxes: u64,
    polygon_values: u64,
}

impl Tally {
    /// Adds one image's (or one row's) worth; the first limit passed is the error.
    pub fn add(
        &mut self,
        images: usize,
        boxes: usize,
        polygon_values: usize,
    ) -> Result<(), OverLimit> {
        let add = |n: &mut u64, k: usize, limit: Limit| {
            *n = n.saturating_add(k as u64);
            limit.check(*n)
        };
        add(&mut self.images, images, IMAGES)?;
        add(&mut self.boxes, boxes, BOXES)?;
        add(&mut self.polygon_values, polygon_values, POLYGON_VALUES)
    }
}

/// Going past a [`Limit`]: the io error a limited read ends with.
#[derive(Debug, thiserror::Error)]
#[error(
    "over {}, the limit for {} ({} = {})",
    human(.0),
    .0.what,
    .0.name,
    .0.max
)]
pub struct OverLimit(pub Limit);

impl Limit {
    /// The error of going past this limit.
    pub fn exceeded(self) -> io::Error {
        io::Error::new(io::ErrorKind::FileTooLarge, OverLimit(self))
    }

    /// A count or a size over the limit, as a message; `None` when within.
    pub fn check(self, n: u64) -> Result<(), OverLimit> {
        if n > self.max {
            Err(OverLimit(self))
        } else {
            Ok(())
        }
    }
}

/// `1 MiB`, `2 GiB`, or the plain number for limits that count things.
fn human(limit: &Limit) -> String {
    let n = limit.max;
    if limit.is_bytes {
        for (unit, size) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if n >= size && n.is_multiple_of(size) {
                return format!("{} {unit}", n.checked_div(size).unwrap_or(0));
            }
        }
        return format!("{n} bytes");
    }
    n.to_string()
}

/// All of `r`, or [`OverLimit`] past `limit` (reading one byte more to tell).
pub fn read_all(r: impl Read, limit: Limit) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(limit.max.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit.max {
        return Err(limit.exceeded());
    }
    Ok(buf)
}

/// [`read_all`] into UTF-8 text.
pub fn read_all_string(r: impl Read, limit: Limit) -> io::Result<String> {
    String::from_utf8(read_all(r, limit)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The file at `path`, at most `limit` bytes; the error names the file.
pub fn read_file(path: &Path, limit: Limit) -> Result<Vec<u8>, FatalError> {
    File::open(path)
        .and_then(|f| read_all(f, limit))
        .map_err(|e| FatalError::io(path, e))
}

/// [`read_file`] as UTF-8 text.
pub fn read_file_string(path: &Path, limit: Limit) -> Result<String, FatalError> {
    File::open(path)
        .and_then(|f| read_all_string(f, limit))
        .map_err(|e| FatalError::io(path, e))
}

/// A reader that fails with [`OverLimit`] once more than `limit` bytes came through (for
/// streaming parsers such as csv's).
pub struct Limited<R> {
    inner: R,
    left: u64,
    limit: Limit,
}

impl<R> Limited<R> {
    pub fn new(inner: R, limit: Limit) -> Self {
        Limited {
            inner,
            left: limit.max,
            limit,
        }
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // At most one byte past the limit is asked for: enough to tell, never more.
        let want = usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX);
        let buf = match buf.split_at_mut_checked(want) {
            Some((head, _)) => head,
            None => buf,
        };
        let n = self.inner.read(buf)?;
        self.left = self
            .left
            .checked_sub(n as u64)
            .ok_or_else(|| self.limit.exceeded())?;
        Ok(n)
    }
}

/// The inflated stream of a tar, metered: at most [`XML_TOTAL`] in all, and before the next
/// member at most what [`Allowance::member`] allows.
pub struct Metered<R> {
    inner: Limited<R>,
    window: Allowance,
}

/// What may still be read before the tar's next member; shared by the [`Metered`] reader
/// (which the tar crate owns) and the loop over the members.
#[derive(Clone)]
pub struct Allowance(Rc<Cell<u64>>);

impl Allowance {
    /// After a member of `size` bytes: its data (which the caller reads or the tar crate
    /// skips), padded to 512 bytes, and then [`TAR_METADATA`] for the next member's headers.
    pub fn member(&self, size: u64) {
        let data = size.checked_next_multiple_of(512).unwrap_or(u64::MAX);
        self.0.set(data.saturating_add(TAR_METADATA.max));
    }
}

impl<R> Metered<R> {
    pub fn new(inner: R) -> (Self, Allowance) {
        let window = Allowance(Rc::new(Cell::new(TAR_METADATA.max)));
        let reader = Metered {
            inner: Limited::new(inner, XML_TOTAL),
            window: window.clone(),
        };
        (reader, window)
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.window.0.get();
        let want = usize::try_from(left.saturating_add(1)).unwrap_or(usize::MAX);
        let buf = match buf.split_at_mut_checked(want) {
            Some((head, _)) => head,
            None => buf,
        };
        let n = self.inner.read(buf)?;
        let left = left
            .checked_sub(n as u64)
            .ok_or_else(|| TAR_METADATA.exceeded())?;
        self.window.0.set(left);
        Ok(n)
    }
}

/// The [`OverLimit`] inside an io error, if that is what it is.
pub fn over_limit(e: &io::Error) -> Option<&OverLimit> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<OverLimit>())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const TEN: Limit = Limit {
        name: "TEN_LIMIT",
        max: 10,
        is_bytes: true,
        what: "a test",
    };

    #[test]
    fn reads_stop_one_byte_past_the_limit() {
        assert_eq!(read_all(&b"0123456789"[..], TEN).unwrap().len(), 10);
        let e = read_all(&b"0123456789A"[..], TEN).unwrap_err();
        assert_eq!(
            e.to_string(),
            "over 10 bytes, the limit for a test (TEN_LIMIT = 10)"
        );
        assert!(over_limit(&e).is_some());
        // An endless reader is read 11 bytes, not to its end.
        let e = read_all(io::repeat(0), TEN).unwrap_err();
        assert!(over_limit(&e).is_some());
        // Exactly the limit streams through; one byte more is the error.
        let mut buf = [0u8; 64];
        let mut limited = Limited::new(&b"0123456789"[..], TEN);
        assert_eq!(limited.read(&mut buf).unwrap(), 10);
        assert_eq!(limited.read(&mut buf).unwrap(), 0);
        let mut limited = Limited::new(io::repeat(1), TEN);
        assert!(over_limit(&limited.read(&mut buf).unwrap_err()).is_some());
        let e = XML_FILE.exceeded().to_string();
        assert!(
            e.contains("over 1 MiB") && e.contains("XML_FILE_LIMIT = 1048576"),
            "{e}"
        );
        assert!(IMAGES.exceeded().to_string().starts_with("over 1000000,"));
    }

    #[test]
    fn a_metered_tar_allows_a_member_and_then_metadata() {
        // Read as the tar crate does, a block at a time.
        let (mut r, allow) = Metered::new(io::repeat(0));
        let mut block = [0u8; 512];
        let mut n = 0;
        while let Ok(k) = r.read(&mut block) {
            n += k;
        }
        assert_eq!(n, 64 * 1024, "the metadata allowance");
        allow.member(1000); // 1024 bytes of data, then 64 KiB of headers
        let mut n = 0;
        while let Ok(k) = r.read(&mut block) {
            n += k;
        }
        assert_eq!(n, 1024 + 64 * 1024);
    }
}
