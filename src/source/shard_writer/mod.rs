//! `bgstream shard`: turn a folder of images plus annotations into WebDataset tar shards.
//!
//! Four annotation formats ([`AnnotationFormat`], `--format`; by default [`detect_format`]
//! tells them apart: a folder is `voc`, `.json` is `manifest`, a file whose header starts
//! with `path` is `csv`, anything else `imagenet-csv`):
//! - `imagenet-csv`: ImageNet validation CSV (`val_index,label,width,height,boxes`, boxes
//!   `x0 y0 x1 y1` joined by `;`), as `../shared/data/imagenet-val/annotations.csv`; the
//!   image of row `i` is the file with stem `ILSVRC2012_val_{i:08}` in `--images`.
//! - `manifest`: JSON `{"samples": [{"path", "label", "boxes", "key"?, "wnid"?}]}` with paths
//!   relative to `--images` (the demo's `examples/demo/boxes.json`).
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
//!   manifest.
//!
//! Shards are `PREFIX-000000.tar`, ...; each is written to `NAME.tmp` and renamed when
//! complete, so a shard that exists is whole. Members have mtime 0 and mode 0644, so the
//! same inputs give byte-identical shards.

mod box_csv;
mod voc;

pub use box_csv::{parse_box_csv, read_box_csv, CsvImage};
pub use voc::{parse_voc, read_voc, voc_label, VocImage, VocRead, VOC_CLASSES};

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Annotation;
use crate::error::FatalError;
use crate::ops::decode::{dimensions, Limits};
use crate::ops::geometry::BBox;

/// One sample to write.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub image: PathBuf,
    pub annotation: Annotation,
}

fn bad(path: &Path, reason: impl Into<String>) -> FatalError {
    FatalError::Config(format!("{}: {}", path.display(), reason.into()))
}

/// The annotation formats of `bgstream shard` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AnnotationFormat {
    /// ImageNet validation CSV: `val_index,label,width,height,boxes`.
    ImagenetCsv,
    /// JSON manifest `{"samples": [{"path", "label", "boxes"}]}`.
    Manifest,
    /// Pascal VOC 2012-layout folder (Annotations/, JPEGImages/, ImageSets/Main/).
    Voc,
    /// Box CSV `path,label,x0,y0,x1,y1`, one row per box.
    Csv,
}

impl AnnotationFormat {
    pub fn name(self) -> &'static str {
        match self {
            AnnotationFormat::ImagenetCsv => "imagenet-csv",
            AnnotationFormat::Manifest => "manifest",
            AnnotationFormat::Voc => "voc",
            AnnotationFormat::Csv => "csv",
        }
    }
}

/// The format of `annotations` when none is given: a folder is `voc`, `.json` is
/// `manifest`, a file whose header starts with `path` is `csv`, anything else is
/// `imagenet-csv`.
pub fn detect_format(annotations: &Path) -> Result<AnnotationFormat, FatalError> {
    if annotations.is_dir() {
        return Ok(AnnotationFormat::Voc);
    }
    if annotations
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        return Ok(AnnotationFormat::Manifest);
    }
    let io = |e| FatalError::io(annotations, e);
    let mut first = Vec::new();
    BufReader::new(File::open(annotations).map_err(io)?)
        .read_until(b'\n', &mut first)
        .map_err(io)?;
    Ok(header_format(&String::from_utf8_lossy(&first)))
}

fn header_format(first_line: &str) -> AnnotationFormat {
    let first = first_line.trim_start_matches('\u{feff}').split(',').next();
    if first.is_some_and(|f| f.trim().eq_ignore_ascii_case("path")) {
        AnnotationFormat::Csv
    } else {
        AnnotationFormat::ImagenetCsv
    }
}

/// What `bgstream shard` reads; [`collect`] checks that the options fit the format.
#[derive(Debug, Clone)]
pub struct ShardInputs {
    /// `None`: [`detect_format`].
    pub format: Option<AnnotationFormat>,
    pub annotations: PathBuf,
    /// Required except for `voc`, where it defaults to `DIR/JPEGImages`.
    pub images: Option<PathBuf>,
    pub synsets: Option<PathBuf>,
    /// `voc` only: the `ImageSets/Main/NAME.txt` list to take.
    pub split: Option<String>,
    /// `voc` only: leave out objects marked difficult.
    pub skip_difficult: bool,
}

/// The samples found, and what was left out.
#[derive(Debug)]
pub struct Collected {
    pub format: AnnotationFormat,
    /// The folder the images were looked up in.
    pub images: PathBuf,
    pub entries: Vec<Entry>,
    /// Keys of annotated images that are not in the images folder.
    pub missing: Vec<String>,
    /// `voc`: ids of images left without objects (none annotated, or all difficult and
    /// `--voc-skip-difficult`).
    pub without_objects: Vec<String>,
}

/// Reads the annotations in their format (given or detected) into entries.
pub fn collect(inputs: &ShardInputs) -> Result<Collected, FatalError> {
    let format = match inputs.format {
        Some(f) => f,
        None => detect_format(&inputs.annotations)?,
    };
    let only_voc = |what: &str| {
        FatalError::Config(format!(
            "{what} applies to --format voc only, not {}",
            format.name()
        ))
    };
    if format != AnnotationFormat::Voc {
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
    let images = match (&inputs.images, format) {
        (Some(dir), _) => dir.clone(),
        (None, AnnotationFormat::Voc) => inputs.annotations.join("JPEGImages"),
        (None, _) => {
            return Err(FatalError::Config(format!(
                "--images is required for --format {}",
                format.name()
            )))
        }
    };
    let (a, synsets) = (&inputs.annotations, inputs.synsets.as_deref());
    let ((entries, missing), without_objects) = match format {
        AnnotationFormat::ImagenetCsv => (read_imagenet_csv(a, &images, synsets)?, Vec::new()),
        AnnotationFormat::Manifest => (read_manifest(a, &images)?, Vec::new()),
        AnnotationFormat::Csv => (read_box_csv(a, &images, synsets)?, Vec::new()),
        AnnotationFormat::Voc => {
            let voc = read_voc(a, &images, inputs.split.as_deref(), inputs.skip_difficult)?;
            ((voc.entries, voc.missing), voc.without_objects)
        }
    };
    Ok(Collected {
        format,
        images,
        entries,
        missing,
        without_objects,
    })
}

/// Reads the ImageNet validation CSV; `synsets` (optional) gives wnids by class index.
pub fn read_imagenet_csv(
    csv_path: &Path,
    images: &Path,
    synsets: Option<&Path>,
) -> Result<(Vec<Entry>, Vec<String>), FatalError> {
    let wnids = match synsets {
        Some(p) => read_synsets(p)?,
        None => Vec::new(),
    };
    let by_stem = index_folder(images)?;
    let mut reader = csv::Reader::from_path(csv_path).map_err(|e| bad(csv_path, e.to_string()))?;
    let mut entries = Vec::new();
    let mut missing = Vec::new();
    for (line, row) in reader.records().enumerate() {
        let row = row.map_err(|e| bad(csv_path, e.to_string()))?;
        let field = |i: usize| row.get(i).unwrap_or("").trim();
        let parse = |i: usize| -> Result<i64, FatalError> {
            field(i).parse().map_err(|_| {
                bad(
                    csv_path,
                    format!("row {}: column {i} is not an integer", line + 2),
                )
            })
        };
        let (index, label, width, height) = (parse(0)?, parse(1)?, parse(2)?, parse(3)?);
        let boxes = field(4)
            .split(';')
            .filter(|b| !b.trim().is_empty())
            .map(|b| {
                let v: Vec<f64> = b
                    .split_whitespace()
                    .filter_map(|t| t.parse().ok())
                    .collect();
                <[f64; 4]>::try_from(v.as_slice())
                    .map_err(|_| bad(csv_path, format!("row {}: bad box {b:?}", line + 2)))
            })
            .collect::<Result<Vec<BBox>, _>>()?;
        let key = format!("ILSVRC2012_val_{index:08}");
        match by_stem.get(&key) {
            Some(path) => entries.push(Entry {
                key,
                image: path.clone(),
                annotation: Annotation {
                    label,
                    boxes,
                    width: Some(width as usize),
                    height: Some(height as usize),
                    wnid: wnids.get(label as usize).cloned(),
                },
            }),
            None => missing.push(key),
        }
    }
    Ok((entries, missing))
}

#[derive(Deserialize)]
struct Manifest {
    samples: Vec<ManifestSample>,
}

#[derive(Deserialize)]
struct ManifestSample {
    path: PathBuf,
    key: Option<String>,
    label: i64,
    boxes: Vec<BBox>,
    wnid: Option<String>,
}

/// Reads a JSON manifest (see module docs). Image sizes are read from the image headers.
pub fn read_manifest(
    manifest: &Path,
    images: &Path,
) -> Result<(Vec<Entry>, Vec<String>), FatalError> {
    let text = std::fs::read(manifest).map_err(|e| FatalError::io(manifest, e))?;
    let m: Manifest = serde_json::from_slice(&text).map_err(|e| bad(manifest, e.to_string()))?;
    let mut entries = Vec::new();
    let mut missing = Vec::new();
    for s in m.samples {
        let path = images.join(&s.path);
        let key = s.key.unwrap_or_else(|| key_from_path(&s.path));
        if !path.is_file() {
            missing.push(key);
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| FatalError::io(&path, e))?;
        let (w, h) =
            dimensions(&bytes, &Limits::default()).map_err(|e| bad(&path, e.to_string()))?;
        entries.push(Entry {
            key,
            image: path,
            annotation: Annotation {
                label: s.label,
                boxes: s.boxes,
                width: Some(w),
                height: Some(h),
                wnid: s.wnid,
            },
        });
    }
    Ok((entries, missing))
}

/// The key of an image path: its file name up to the first dot (WebDataset keys end there).
fn key_from_path(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .unwrap_or_default()
        .to_string()
}

/// `synsets.txt`: the first whitespace token of line `n` (from 0) names class `n`.
fn read_synsets(path: &Path) -> Result<Vec<String>, FatalError> {
    Ok(std::fs::read_to_string(path)
        .map_err(|e| FatalError::io(path, e))?
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect())
}

/// A config error unless every key is given once (two paths can share a file name).
fn check_unique_keys(entries: &[Entry], source: &Path) -> Result<(), FatalError> {
    let mut seen: HashMap<&str, &Path> = HashMap::new();
    for e in entries {
        if let Some(first) = seen.insert(&e.key, &e.image) {
            return Err(bad(
                source,
                format!(
                    "key {:?} is given twice ({} and {}); keys must be unique",
                    e.key,
                    first.display(),
                    e.image.display()
                ),
            ));
        }
    }
    Ok(())
}

fn index_folder(dir: &Path) -> Result<HashMap<String, PathBuf>, FatalError> {
    let mut map = HashMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| FatalError::io(dir, e))? {
        let path = entry.map_err(|e| FatalError::io(dir, e))?.path();
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            map.insert(stem.to_string(), path);
        }
    }
    Ok(map)
}

fn append(
    builder: &mut tar::Builder<BufWriter<File>>,
    name: &str,
    data: &[u8],
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, name, data)
}

/// Writes `entries` (in order) into shards of `shard_size` samples under `out`.
pub fn write_shards(
    entries: &[Entry],
    out: &Path,
    prefix: &str,
    shard_size: usize,
) -> Result<Vec<PathBuf>, FatalError> {
    if shard_size == 0 {
        return Err(FatalError::Config("--shard-size must be at least 1".into()));
    }
    if let Some(e) = entries
        .iter()
        .find(|e| e.key.contains('.') || e.key.is_empty())
    {
        return Err(FatalError::Config(format!(
            "key {:?} is empty or has a dot (WebDataset keys end at the first dot)",
            e.key
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| FatalError::io(out, e))?;
    let mut shards = Vec::new();
    for (n, chunk) in entries.chunks(shard_size).enumerate() {
        let final_path = out.join(format!("{prefix}-{n:06}.tar"));
        let tmp = final_path.with_extension("tar.tmp");
        let io = |e: std::io::Error| FatalError::output(&final_path, e);
        let file = File::create(&tmp).map_err(io)?;
        let mut builder = tar::Builder::new(BufWriter::new(file));
        for e in chunk {
            let bytes = std::fs::read(&e.image).map_err(|err| FatalError::io(&e.image, err))?;
            let ext = e
                .image
                .extension()
                .and_then(|x| x.to_str())
                .map(|x| x.to_ascii_lowercase())
                .filter(|x| matches!(x.as_str(), "jpg" | "jpeg" | "png"))
                .unwrap_or_else(|| "jpg".into());
            let ext = if ext == "jpeg" {
                "jpg".to_string()
            } else {
                ext
            };
            append(&mut builder, &format!("{}.{ext}", e.key), &bytes).map_err(io)?;
            append(
                &mut builder,
                &format!("{}.cls", e.key),
                e.annotation.label.to_string().as_bytes(),
            )
            .map_err(io)?;
            let json = serde_json::to_vec(&e.annotation).expect("annotation serialises");
            append(&mut builder, &format!("{}.json", e.key), &json).map_err(io)?;
        }
        let mut w = builder.into_inner().map_err(io)?;
        w.flush().map_err(io)?;
        w.get_ref().sync_all().map_err(io)?;
        drop(w);
        std::fs::rename(&tmp, &final_path).map_err(io)?;
        shards.push(final_path);
    }
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart_by_the_header() {
        assert_eq!(
            header_format("path,label,x0,y0,x1,y1\n"),
            AnnotationFormat::Csv
        );
        assert_eq!(
            header_format("\u{feff}Path, label\n"),
            AnnotationFormat::Csv
        );
        assert_eq!(
            header_format("val_index,label,width,height,boxes\n"),
            AnnotationFormat::ImagenetCsv
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detect_format(dir.path()).unwrap(), AnnotationFormat::Voc);
        assert_eq!(
            detect_format(Path::new("x/boxes.JSON")).unwrap(),
            AnnotationFormat::Manifest
        );
        assert!(detect_format(&dir.path().join("absent.csv")).is_err());
        for f in <AnnotationFormat as clap::ValueEnum>::value_variants() {
            let value = clap::ValueEnum::to_possible_value(f).unwrap();
            assert_eq!(value.get_name(), f.name(), "the CLI spells it as errors do");
        }
    }
}
