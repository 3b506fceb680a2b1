//! `bgstream shard`: turn images plus annotations into WebDataset tar shards.
//!
//! Annotation formats ([`AnnotationFormat`], `--format`; by default [`detect_format`]):
//! - `imagenet-xml`: ImageNet's official bounding-box XMLs (one Pascal-VOC-style file per
//!   image, object `<name>` = wnid): a folder of them (searched recursively) or the
//!   `ILSVRC2012_bbox_val_v3.tgz` itself, read without unpacking.
//! - `kaggle`: Kaggle's `LOC_val_solution.csv` (`ImageId,PredictionString`, the string
//!   `wnid x0 y0 x1 y1` per box).
//! - `imagenet-csv`: the table `val_index,label,width,height,boxes` (boxes `x0 y0 x1 y1`
//!   joined by `;`); row `i` is the image with key `ILSVRC2012_val_{i:08}`.
//!
//!   For these three ([`imagenet`]): classes are the 1,000 ImageNet-1k wnids built into
//!   the binary (or `--synsets`), the wnid is recorded in every sample, ImageNet's inclusive
//!   box numbers become `[xmin, ymin, xmax + 1, ymax + 1]`, an image whose objects name
//!   several wnids is labelled by the largest total box area, and `--images` is a folder
//!   (flat, the ImageFolder tree `val/<wnid>/`, Kaggle's `CLS-LOC/val/`; matched by file
//!   name up to its first dot) or `ILSVRC2012_img_val.tar` read in place ([`images`]).
//!   Samples are written in key order whatever the input order, so every form of the same
//!   data gives byte-identical shards.
//! - `manifest`: JSON `{"samples": [{"path", "label", "boxes", "key"?, "wnid"?, "polygons"?,
//!   "mask"?}]}` with paths relative to `--images` (the demo's `examples/demo/boxes.json`).
//!   `polygons` are COCO-style `[[x0, y0, x1, y1, …], …]` in original pixels; `mask` a
//!   grayscale PNG or `.npy` file; either makes the sample's foreground a mask
//!   ([`crate::ops::mask`]), and `boxes` may then be left out.
//! - `voc`: a Pascal VOC 2012-layout folder: `DIR/Annotations/ID.xml` and
//!   `DIR/JPEGImages/ID.jpg` (or `--images`). `--split NAME` takes the ids listed in
//!   `DIR/ImageSets/Main/NAME.txt`; without it, every XML file, sorted by id. The key is the
//!   id. Classes are the 20 VOC classes in their standard alphabetical order
//!   ([`VOC_CLASSES`], aeroplane = 0 … tvmonitor = 19); the class name goes in `wnid`.
//!   VOC boxes are 1-based with inclusive corners, so `xmin, ymin, xmax, ymax` become
//!   `[xmin - 1, ymin - 1, xmax, ymax]`. The image's label is the class with the largest
//!   total box area (ties: the lower class index), and its boxes are all the boxes of that
//!   class ([`voc_label`]): the paper's masks cover the labelled object, so objects of other
//!   classes stay in the background like any other context. `--voc-skip-difficult` drops
//!   objects marked difficult before the label is chosen; an image left without objects is
//!   skipped and counted. `<size>` is recorded as `width`/`height` (the run checks it
//!   against the JPEG).
//! - `csv`: a box CSV with the header `path,label,x0,y0,x1,y1` and one row per box; rows
//!   with the same path are the boxes of one image and must agree on its label. `path` is
//!   relative to `--images`; `label` is a class index, or a class name looked up in
//!   `--synsets` (first token of each line; line `n`, from 0, is class `n`). Boxes are
//!   already in bgstream's convention (0-based, `x1, y1` exclusive; see
//!   [`crate::ops::geometry`]). The key is the file name up to its first dot, as for the
//!   manifest. An optional seventh column `polygons` holds the object's COCO-style
//!   segmentation as JSON, `[[x0, y0, x1, y1, …], …]` (empty: none); an image with polygons
//!   gets the union of its rows' polygons as its mask.
//!
//! - `caltech101`: see [`caltech101`] (boxes and the outlines as polygons).
//! - `imagenet9`: ImageNet-9's `.npy` foreground masks, see [`imagenet9`].
//!
//! Shards are `PREFIX-000000.tar`, ...; each is written to `NAME.tmp` and renamed when
//! complete, so a shard that exists is whole. Members have mtime 0 and mode 0644, so the
//! same inputs give byte-identical shards. Images are read on several threads; each
//! image's header is checked against the annotated size (a disagreement is kept and
//! reported: the run records it as `size_mismatch`), and a size the annotation lacks is
//! filled in from the header.

// Every reader below reads untrusted files: no unchecked arithmetic, indexing, unwrap or
// expect anywhere in this module tree (tests opt out per module).
#![deny(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used
)]

mod box_csv;
pub mod caltech101;
pub mod imagenet;
pub mod imagenet9;
pub mod images;
pub mod limits;
pub mod manifest;
pub mod masks;
mod mat;
pub mod out_dir;
mod voc;
mod writer;
mod xml;

pub use box_csv::{parse_box_csv, read_box_csv, CsvImage};
pub use images::{ImageIndex, ImageRef, ImagesLayout};
pub use manifest::read_manifest;
pub use voc::{largest_area_label, parse_voc, read_voc, voc_label, VocImage, VocRead, VOC_CLASSES};
pub use writer::{write_shards, ShardReport};

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::FatalError;
use crate::source::Annotation;

/// One sample to write.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub image: ImageRef,
    pub annotation: Annotation,
    /// A foreground mask file: a grayscale PNG (written as it is) or a NumPy `.npy` array
    /// (converted to PNG). Written as the `<key>.mask.png` member.
    pub mask: Option<PathBuf>,
}

/// An input that cannot be read as its format says.
fn bad(path: &Path, reason: impl Into<String>) -> FatalError {
    FatalError::Input {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The annotation formats of `bgstream shard` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AnnotationFormat {
    /// ImageNet bounding-box XMLs: a folder, or ILSVRC2012_bbox_val_v3.tgz as downloaded.
    ImagenetXml,
    /// Kaggle's LOC_val_solution.csv: ImageId,PredictionString.
    Kaggle,
    /// ImageNet validation table: val_index,label,width,height,boxes.
    ImagenetCsv,
    /// JSON manifest `{"samples": [{"path", "label", "boxes"}]}`.
    Manifest,
    /// Pascal VOC 2012-layout folder (Annotations/, JPEGImages/, ImageSets/Main/).
    Voc,
    /// Box CSV `path,label,x0,y0,x1,y1`, one row per box.
    Csv,
    /// Caltech101: `--images 101_ObjectCategories --annotations Annotations` (.mat files).
    Caltech101,
    /// ImageNet-9: `--images original/val --annotations fg_mask/val` (.npy masks).
    Imagenet9,
}

impl AnnotationFormat {
    pub fn name(self) -> &'static str {
        match self {
            AnnotationFormat::ImagenetXml => "imagenet-xml",
            AnnotationFormat::Kaggle => "kaggle",
            AnnotationFormat::ImagenetCsv => "imagenet-csv",
            AnnotationFormat::Manifest => "manifest",
            AnnotationFormat::Voc => "voc",
            AnnotationFormat::Csv => "csv",
            AnnotationFormat::Caltech101 => "caltech101",
            AnnotationFormat::Imagenet9 => "imagenet9",
        }
    }

    /// ImageNet's own forms: built-in classes, inclusive boxes, images found by key.
    pub fn is_imagenet(self) -> bool {
        matches!(
            self,
            AnnotationFormat::ImagenetXml
                | AnnotationFormat::Kaggle
                | AnnotationFormat::ImagenetCsv
        )
    }
}

/// The format of `annotations` when none is given: a folder with `Annotations/` is `voc`,
/// class folders of `annotation_*.mat` are `caltech101`, class folders of `.npy` files
/// `imagenet9`, any other folder and a `.tgz`/`.tar.gz`/`.tar` are `imagenet-xml`, `.json`
/// is `manifest`;
/// a CSV is told by its header (`path,...`: `csv`; `ImageId,PredictionString`: `kaggle`;
/// `val_index,...`: `imagenet-csv`).
pub fn detect_format(annotations: &Path) -> Result<AnnotationFormat, FatalError> {
    if annotations.is_dir() {
        return Ok(if annotations.join("Annotations").is_dir() {
            AnnotationFormat::Voc
        } else if caltech101::looks_like(annotations) {
            AnnotationFormat::Caltech101
        } else if imagenet9::looks_like(annotations) {
            AnnotationFormat::Imagenet9
        } else {
            AnnotationFormat::ImagenetXml
        });
    }
    let name = annotations
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if [".tgz", ".tar.gz", ".tar"]
        .iter()
        .any(|x| name.ends_with(x))
    {
        return Ok(AnnotationFormat::ImagenetXml);
    }
    if name.ends_with(".json") {
        return Ok(AnnotationFormat::Manifest);
    }
    let io = |e| FatalError::io(annotations, e);
    let mut first = Vec::new();
    // A header line is short; a file without line breaks is not read whole to find one.
    BufReader::new(File::open(annotations).map_err(io)?.take(64 << 10))
        .read_until(b'\n', &mut first)
        .map_err(io)?;
    let first = String::from_utf8_lossy(&first);
    header_format(&first).ok_or_else(|| {
        bad(
            annotations,
            format!(
                "cannot tell the format from the header {:?}: expected path,label,x0,y0,x1,y1 \
                 (csv), ImageId,PredictionString (kaggle) or val_index,label,width,height,boxes \
                 (imagenet-csv); or give --format",
                first.trim_end()
            ),
        )
    })
}

fn header_format(first_line: &str) -> Option<AnnotationFormat> {
    let first = first_line
        .trim_start_matches('\u{feff}')
        .split(',')
        .next()?;
    match first.trim().to_ascii_lowercase().as_str() {
        "path" => Some(AnnotationFormat::Csv),
        "val_index" => Some(AnnotationFormat::ImagenetCsv),
        _ if imagenet::is_kaggle_header(first_line.trim_end()) => Some(AnnotationFormat::Kaggle),
        _ => None,
    }
}

/// What `bgstream shard` reads; [`collect`] checks that the options fit the format.
#[derive(Debug, Clone)]
pub struct ShardInputs {
    /// `None`: [`detect_format`].
    pub format: Option<AnnotationFormat>,
    /// `None`: `images` is one of ImageNet-9's released variant folders, read as it is
    /// ([`imagenet9::read_released`]).
    pub annotations: Option<PathBuf>,
    /// The released variant's name when the folder's own is not one of
    /// [`imagenet9::RELEASED`].
    pub released_variant: Option<String>,
    /// Required except for `voc`, where it defaults to `DIR/JPEGImages`. For the ImageNet
    /// formats a folder (searched recursively) or an uncompressed tar of images.
    pub images: Option<PathBuf>,
    pub synsets: Option<PathBuf>,
    /// `voc` only: the `ImageSets/Main/NAME.txt` list to take.
    pub split: Option<String>,
    /// `voc` only: leave out objects marked difficult.
    pub skip_difficult: bool,
}

/// The samples found, and what was left out.
#[derive(Debug, Default)]
pub struct Collected {
    pub format: Option<AnnotationFormat>,
    /// The folder (or tar) the images were looked up in.
    pub images: PathBuf,
    /// One line: what was detected and read (formats, layouts, counts).
    pub detected: String,
    pub entries: Vec<Entry>,
    /// Keys of annotated images that are not among the images.
    pub missing: Vec<String>,
    /// Images without annotation (ImageNet formats, where images are found by key).
    pub unannotated: Vec<String>,
    /// Images left without objects (none annotated, or all difficult and
    /// `--voc-skip-difficult`).
    pub without_objects: Vec<String>,
    /// ImageNet formats: images whose objects name several wnids (labelled by area).
    pub several_classes: Vec<String>,
    /// ImageFolder images filed under another wnid than their annotation's.
    pub folder_mismatch: Vec<String>,
}

/// Reads the annotations in their format (given or detected) into entries.
pub fn collect(inputs: &ShardInputs) -> Result<Collected, FatalError> {
    let Some(annotations) = &inputs.annotations else {
        return collect_released(inputs);
    };
    if inputs.released_variant.is_some() {
        return Err(FatalError::Config(
            "--released-variant names a released folder read without --annotations".into(),
        ));
    }
    let format = match inputs.format {
        Some(f) => f,
        None => detect_format(annotations)?,
    };
    check_options(inputs, format)?;
    let images = match (&inputs.images, format) {
        (Some(dir), _) => dir.clone(),
        (None, AnnotationFormat::Voc) => annotations.join("JPEGImages"),
        (None, _) => {
            return Err(FatalError::Config(format!(
                "--images is required for --format {}",
                format.name()
            )))
        }
    };
    let (a, synsets) = (annotations, inputs.synsets.as_deref());
    match format {
        f if f.is_imagenet() => collect_imagenet(inputs, annotations, format, images),
        AnnotationFormat::Caltech101 => collect_caltech101(inputs, a, images),
        AnnotationFormat::Imagenet9 => collect_imagenet9(a, images, synsets),
        _ => collect_listed(inputs, format, a, images),
    }
}

/// The options that apply to `format` only, refused for the others.
fn check_options(inputs: &ShardInputs, format: AnnotationFormat) -> Result<(), FatalError> {
    let only_voc = |what: &str| {
        FatalError::Config(format!(
            "{what} applies to --format voc only, not {}",
            format.name()
        ))
    };
    if format == AnnotationFormat::Caltech101 {
        if let Some(s) = inputs
            .split
            .as_deref()
            .filter(|s| !matches!(*s, "train" | "test"))
        {
            return Err(FatalError::Config(format!(
                "--split {s}: caltech101 splits are train (the first {} images of each class) \
                 and test (the rest)",
                caltech101::TRAIN_PER_CLASS
            )));
        }
        if inputs.skip_difficult {
            return Err(only_voc("--voc-skip-difficult"));
        }
    } else if format != AnnotationFormat::Voc {
        if inputs.split.is_some() {
            return Err(only_voc("--split"));
        }
        if inputs.skip_difficult {
            return Err(only_voc("--voc-skip-difficult"));
        }
    } else if inputs.synsets.is_some() {
        return Err(FatalError::Config(
            "--synsets does not apply to --format voc (its 20 classes are fixed)".into(),
        ));
    }
    Ok(())
}

fn collect_caltech101(
    inputs: &ShardInputs,
    a: &Path,
    images: PathBuf,
) -> Result<Collected, FatalError> {
    let (format, synsets) = (AnnotationFormat::Caltech101, inputs.synsets.as_deref());
    let c = caltech101::read_caltech101(a, &images, synsets, inputs.split.as_deref())?;
    check_unique_keys(&c.entries, a)?;
    let mut notes = vec![format!("{} classes", c.classes.len())];
    if !c.mapped.is_empty() {
        notes.push(format!(
            "annotation folders mapped: {}",
            c.mapped.join(", ")
        ));
    }
    if images.join(caltech101::BACKGROUND).is_dir() {
        notes.push(format!("{} skipped (not a class)", caltech101::BACKGROUND));
    }
    if c.clamped > 0 {
        notes.push(format!("{} box(es) clamped to the image", c.clamped));
    }
    if !c.folders_without_images.is_empty() {
        notes.push(format!(
            "annotation folders without an image folder (not sharded): {}",
            c.folders_without_images.join(", ")
        ));
    }
    Ok(Collected {
        format: Some(format),
        detected: format!(
            "annotations: caltech101 ({}; {}; 1-based inclusive boxes -> exclusive; \
             outlines -> polygons, {} of {} samples); images: {}",
            a.display(),
            notes.join("; "),
            c.entries
                .iter()
                .filter(|e| !e.annotation.polygons.is_empty())
                .count(),
            c.entries.len(),
            images.display()
        ),
        images,
        entries: c.entries,
        missing: c.missing,
        unannotated: c.unannotated,
        without_objects: c.unreadable,
        ..Default::default()
    })
}

fn collect_imagenet9(
    a: &Path,
    images: PathBuf,
    synsets: Option<&Path>,
) -> Result<Collected, FatalError> {
    let format = AnnotationFormat::Imagenet9;
    let r = imagenet9::read_imagenet9(a, &images, synsets)?;
    check_unique_keys(&r.entries, a)?;
    let labels = match r.label_space {
        Some(_) => {
            "ImageNet-9 labels (label_space in9: a 1,000-class model is scored \
                    through in_to_in9)"
        }
        None => "labels by class position (not ImageNet-9's folders: no label_space)",
    };
    Ok(Collected {
        format: Some(format),
        detected: format!(
            "annotations: imagenet9 ({}; {} classes: {}; {labels}; .npy masks -> \
             <key>.mask.png, boxes from the masks); images: {}",
            a.display(),
            r.classes.len(),
            r.classes.join(", "),
            images.display()
        ),
        images,
        entries: r.entries,
        missing: r.missing,
        unannotated: r.unannotated,
        ..Default::default()
    })
}

/// The formats whose readers list entries directly: manifest, box CSV, VOC.
fn collect_listed(
    inputs: &ShardInputs,
    format: AnnotationFormat,
    a: &Path,
    images: PathBuf,
) -> Result<Collected, FatalError> {
    let synsets = inputs.synsets.as_deref();
    let ((entries, missing), without_objects) = match format {
        AnnotationFormat::Manifest => (read_manifest(a, &images)?, Vec::new()),
        AnnotationFormat::Csv => (read_box_csv(a, &images, synsets)?, Vec::new()),
        AnnotationFormat::Voc => {
            let voc = read_voc(a, &images, inputs.split.as_deref(), inputs.skip_difficult)?;
            ((voc.entries, voc.missing), voc.without_objects)
        }
        _ => unreachable!("the other formats have their own collect_*"),
    };
    Ok(Collected {
        format: Some(format),
        detected: format!(
            "annotations: {} ({}); images: {}",
            format.name(),
            a.display(),
            images.display()
        ),
        images,
        entries,
        missing,
        without_objects,
        ..Default::default()
    })
}

/// ImageNet-9's released variant folder `--images` as it is (no `--annotations`).
fn collect_released(inputs: &ShardInputs) -> Result<Collected, FatalError> {
    let needs = |what: String| {
        FatalError::Config(format!(
            "{what}: without --annotations only ImageNet-9's released variant folders are read \
         (--format imagenet9 --images bg_challenge/<variant>/val)"
        ))
    };
    if let Some(f) = inputs.format.filter(|f| *f != AnnotationFormat::Imagenet9) {
        return Err(needs(format!(
            "--annotations is required for --format {}",
            f.name()
        )));
    }
    if inputs.split.is_some() || inputs.skip_difficult {
        return Err(needs(
            "--split and --voc-skip-difficult do not apply".into(),
        ));
    }
    let images = inputs
        .images
        .clone()
        .ok_or_else(|| needs("--annotations or --images is required".into()))?;
    let variant = imagenet9::released_name(&images, inputs.released_variant.as_deref())?;
    let r = imagenet9::read_released(&images, inputs.synsets.as_deref(), &variant)?;
    check_unique_keys(&r.entries, &images)?;
    let labels = match r.label_space {
        Some(_) => "ImageNet-9 labels (label_space in9)",
        None => "labels by class position (not ImageNet-9's folders: no label_space)",
    };
    Ok(Collected {
        format: Some(AnnotationFormat::Imagenet9),
        detected: format!(
            "imagenet9 released variant {variant} ({}; {} classes; {labels}; no foreground: \
             a run classifies each image as it is, variant {}{variant})",
            images.display(),
            r.classes.len(),
            crate::source::RELEASED_PREFIX,
        ),
        images,
        entries: r.entries,
        ..Default::default()
    })
}

fn collect_imagenet(
    inputs: &ShardInputs,
    a: &Path,
    format: AnnotationFormat,
    images: PathBuf,
) -> Result<Collected, FatalError> {
    let classes = imagenet::Classes::from_synsets(inputs.synsets.as_deref())?;
    let records = match format {
        AnnotationFormat::ImagenetXml => imagenet::read_xml(a, &classes)?,
        AnnotationFormat::Kaggle => imagenet::read_kaggle(a, &classes)?,
        _ => imagenet::read_imagenet_csv(a, &classes)?,
    };
    let index = ImageIndex::open(&images)?;
    let n_annotated = records.records.len();
    let joined = imagenet::join(records.records, &index, &classes);
    let what = match format {
        AnnotationFormat::ImagenetXml if a.is_dir() => "ImageNet XML folder",
        AnnotationFormat::ImagenetXml => "ImageNet XML tar",
        AnnotationFormat::Kaggle => "Kaggle LOC CSV",
        _ => "ImageNet CSV",
    };
    let class_list = match &inputs.synsets {
        Some(p) if classes.is_imagenet() => {
            format!("--synsets {} (ImageNet-1k order)", p.display())
        }
        Some(p) => format!(
            "--synsets {} ({} classes, NOT the ImageNet-1k order)",
            p.display(),
            classes.wnids.len()
        ),
        None => "built-in ImageNet-1k classes".into(),
    };
    Ok(Collected {
        format: Some(format),
        detected: format!(
            "annotations: {} ({what}, {n_annotated} images, {class_list}, inclusive boxes \
             -> exclusive); images: {} ({})",
            format.name(),
            index.describe(),
            images.display()
        ),
        images,
        entries: joined.entries,
        missing: joined.missing,
        unannotated: joined.unannotated,
        without_objects: records.without_objects,
        several_classes: joined.several_classes,
        folder_mismatch: joined.folder_mismatch,
    })
}

/// The ImageNet table (`val_index,label,...`, [`imagenet::read_imagenet_csv`]) matched to the
/// images in `images`: entries in key order, and the annotated keys without an image.
pub fn read_imagenet_csv(
    csv: &Path,
    images: &Path,
    synsets: Option<&Path>,
) -> Result<(Vec<Entry>, Vec<String>), FatalError> {
    let classes = imagenet::Classes::from_synsets(synsets)?;
    let records = imagenet::read_imagenet_csv(csv, &classes)?;
    let joined = imagenet::join(records.records, &ImageIndex::open(images)?, &classes);
    Ok((joined.entries, joined.missing))
}

/// The key of an image path: its file name up to the first dot (WebDataset keys end there).
pub(crate) fn key_from_path(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .unwrap_or_default()
        .to_string()
}

/// `synsets.txt`: the first whitespace token of line `n` (from 0) names class `n`.
pub(crate) fn read_synsets(path: &Path) -> Result<Vec<String>, FatalError> {
    Ok(limits::read_file_string(path, limits::LIST_FILE)?
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect())
}

/// A config error unless every key is given once (two paths can share a file name).
fn check_unique_keys(entries: &[Entry], source: &Path) -> Result<(), FatalError> {
    let mut seen: HashMap<&str, &Path> = HashMap::new();
    for e in entries {
        if let Some(first) = seen.insert(&e.key, e.image.path()) {
            return Err(bad(
                source,
                format!(
                    "key {:?} is given twice ({} and {}); keys must be unique",
                    e.key,
                    first.display(),
                    e.image.describe()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart() {
        use AnnotationFormat::*;
        for (line, want) in [
            ("path,label,x0,y0,x1,y1\n", Some(Csv)),
            ("\u{feff}Path, label\n", Some(Csv)),
            ("val_index,label,width,height,boxes\n", Some(ImagenetCsv)),
            ("ImageId,PredictionString\r\n", Some(Kaggle)),
            ("id,name\n", None),
        ] {
            assert_eq!(header_format(line), want, "{line:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detect_format(dir.path()).unwrap(), ImagenetXml);
        std::fs::create_dir(dir.path().join("Annotations")).unwrap();
        assert_eq!(detect_format(dir.path()).unwrap(), Voc);
        for (name, want) in [
            ("x/boxes.JSON", Manifest),
            ("ILSVRC2012_bbox_val_v3.tgz", ImagenetXml),
            ("bbox.tar.gz", ImagenetXml),
            ("bbox.tar", ImagenetXml),
        ] {
            assert_eq!(detect_format(Path::new(name)).unwrap(), want, "{name}");
        }
        assert!(detect_format(&dir.path().join("absent.csv")).is_err());
        let odd = dir.path().join("odd.csv");
        std::fs::write(&odd, "id,name\n").unwrap();
        let e = detect_format(&odd).unwrap_err().to_string();
        assert!(
            e.contains("cannot tell the format") && e.contains("--format"),
            "{e}"
        );
        for f in <AnnotationFormat as clap::ValueEnum>::value_variants() {
            let value = clap::ValueEnum::to_possible_value(f).unwrap();
            assert_eq!(value.get_name(), f.name(), "the CLI spells it as errors do");
        }
    }
}
