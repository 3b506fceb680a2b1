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

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
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

/// The 20 Pascal VOC classes in their standard order: the class index is the position.
pub const VOC_CLASSES: [&str; 20] = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// What [`read_voc`] found.
#[derive(Debug, Default)]
pub struct VocRead {
    pub entries: Vec<Entry>,
    /// Ids whose JPEG is not in the images folder.
    pub missing: Vec<String>,
    /// Ids left without objects.
    pub without_objects: Vec<String>,
}

/// Reads a Pascal VOC folder (layout and rules in the module docs). `images` holds the
/// JPEGs (`root/JPEGImages` in the standard layout).
pub fn read_voc(
    root: &Path,
    images: &Path,
    split: Option<&str>,
    skip_difficult: bool,
) -> Result<VocRead, FatalError> {
    let (ids, listed_in) = voc_ids(root, split)?;
    let mut out = VocRead::default();
    for id in ids {
        let xml_path = root.join("Annotations").join(format!("{id}.xml"));
        let text = std::fs::read_to_string(&xml_path).map_err(|e| FatalError::io(&xml_path, e))?;
        let voc = parse_voc(&text, skip_difficult).map_err(|r| bad(&xml_path, r))?;
        let Some((label, boxes)) = voc_label(&voc.objects) else {
            out.without_objects.push(id);
            continue;
        };
        let image = images.join(format!("{id}.jpg"));
        if !image.is_file() {
            out.missing.push(id);
            continue;
        }
        out.entries.push(Entry {
            key: id,
            image,
            annotation: Annotation {
                label: label as i64,
                boxes,
                width: voc.width,
                height: voc.height,
                wnid: Some(VOC_CLASSES[label].to_string()),
            },
        });
    }
    check_unique_keys(&out.entries, &listed_in)?;
    Ok(out)
}

/// The ids of `root/ImageSets/Main/SPLIT.txt` (first token of each non-empty line), or of
/// every `root/Annotations/*.xml`, sorted; and the file or folder they came from.
fn voc_ids(root: &Path, split: Option<&str>) -> Result<(Vec<String>, PathBuf), FatalError> {
    if let Some(name) = split {
        let list = root.join("ImageSets/Main").join(format!("{name}.txt"));
        let text = std::fs::read_to_string(&list).map_err(|e| FatalError::io(&list, e))?;
        let ids = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect();
        return Ok((ids, list));
    }
    let dir = root.join("Annotations");
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| FatalError::io(&dir, e))? {
        let path = entry.map_err(|e| FatalError::io(&dir, e))?.path();
        let is_xml = path.extension().is_some_and(|x| x == "xml");
        if let (true, Some(stem)) = (is_xml, path.file_stem().and_then(|s| s.to_str())) {
            ids.push(stem.to_string());
        }
    }
    ids.sort();
    Ok((ids, dir))
}

/// One VOC XML file, reduced to what bgstream uses.
#[derive(Debug, Clone, PartialEq)]
pub struct VocImage {
    /// From `<size>`; `None` when absent or 0.
    pub width: Option<usize>,
    pub height: Option<usize>,
    /// `(class index, box)` per `<object>`, the box already in bgstream's convention;
    /// difficult objects are left out when `skip_difficult`.
    pub objects: Vec<(usize, BBox)>,
}

/// Parses one VOC annotation. Only the direct children of `<annotation>` and `<object>`
/// count (the `<part>`s of a person have their own `<name>` and `<bndbox>`). The error is
/// the reason, for the caller to prefix with the file name.
pub fn parse_voc(xml: &str, skip_difficult: bool) -> Result<VocImage, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("malformed XML: {e}"))?;
    let root = doc.root_element();
    if !root.has_tag_name("annotation") {
        return Err(format!(
            "the root element is <{}>, not <annotation>",
            root.tag_name().name()
        ));
    }
    let (width, height) = match child(root, "size") {
        Some(size) => (size_field(size, "width")?, size_field(size, "height")?),
        None => (None, None),
    };
    let mut objects = Vec::new();
    let elements = root.children().filter(|n| n.has_tag_name("object"));
    for (i, object) in elements.enumerate() {
        let (class, bbox, difficult) =
            voc_object(object).map_err(|r| format!("<object> {}: {r}", i + 1))?;
        if !(skip_difficult && difficult) {
            objects.push((class, bbox));
        }
    }
    Ok(VocImage {
        width,
        height,
        objects,
    })
}

/// `(class, box in bgstream's convention, difficult)` of one `<object>`.
fn voc_object(object: roxmltree::Node) -> Result<(usize, BBox, bool), String> {
    let name = text(object, "name").ok_or("no <name>")?;
    let class = VOC_CLASSES.iter().position(|c| *c == name).ok_or_else(|| {
        format!(
            "unknown VOC class {name:?} (the 20 classes are {})",
            VOC_CLASSES.join(", ")
        )
    })?;
    let difficult = match text(object, "difficult") {
        None | Some("0") => false,
        Some("1") => true,
        Some(v) => return Err(format!("<difficult> is {v:?}, not 0 or 1")),
    };
    let bndbox = child(object, "bndbox").ok_or_else(|| format!("{name} has no <bndbox>"))?;
    let coord = |tag: &str| -> Result<f64, String> {
        let v = text(bndbox, tag).ok_or_else(|| format!("{name}: <bndbox> has no <{tag}>"))?;
        v.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{name}: <{tag}> is {v:?}, not a number"))
    };
    // VOC: 1-based pixel indices, both corners inclusive -> 0-based, x1/y1 exclusive.
    let bbox = [
        coord("xmin")? - 1.0,
        coord("ymin")? - 1.0,
        coord("xmax")?,
        coord("ymax")?,
    ];
    Ok((class, bbox, difficult))
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| c.has_tag_name(tag))
}

/// The trimmed text of `node`'s child `tag`.
fn text<'a>(node: roxmltree::Node<'a, '_>, tag: &str) -> Option<&'a str> {
    child(node, tag)?.text().map(str::trim)
}

/// A `<size>` field: `None` when absent or 0 (then the image header is all there is).
fn size_field(size: roxmltree::Node, tag: &str) -> Result<Option<usize>, String> {
    match text(size, tag) {
        None => Ok(None),
        Some(v) => v
            .parse::<usize>()
            .map(|n| (n > 0).then_some(n))
            .map_err(|_| format!("<size><{tag}> is {v:?}, not a whole number")),
    }
}

/// The image label and its foreground boxes: the class with the largest total box area
/// (ties: the lower class index) and every box of that class. `None` without objects.
pub fn voc_label(objects: &[(usize, BBox)]) -> Option<(usize, Vec<BBox>)> {
    let mut area = [0.0f64; VOC_CLASSES.len()];
    for (class, b) in objects {
        area[*class] += (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    }
    let mut present: Vec<usize> = objects.iter().map(|o| o.0).collect();
    present.sort_unstable();
    present.dedup();
    // Strictly larger replaces, so the lower index wins a tie.
    let label = present
        .into_iter()
        .reduce(|best, c| if area[c] > area[best] { c } else { best })?;
    let boxes = objects
        .iter()
        .filter(|o| o.0 == label)
        .map(|o| o.1)
        .collect();
    Some((label, boxes))
}

/// One image of a box CSV: its rows grouped, in the order of first appearance.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvImage {
    pub path: PathBuf,
    pub label: i64,
    pub boxes: Vec<BBox>,
}

const BOX_CSV_HEADER: [&str; 6] = ["path", "label", "x0", "y0", "x1", "y1"];

/// Reads a box CSV (`path,label,x0,y0,x1,y1`, see the module docs). `classes` are the
/// `--synsets` names (may be empty): `label` is a class index or one of them. The error
/// is the reason with its line number, for the caller to prefix with the file name.
pub fn parse_box_csv(data: impl Read, classes: &[String]) -> Result<Vec<CsvImage>, String> {
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, name) in classes.iter().enumerate().filter(|(_, n)| !n.is_empty()) {
        by_name.entry(name.as_str()).or_insert(i);
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(data);
    let header = reader.headers().map_err(|e| e.to_string())?;
    if !header
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .eq(BOX_CSV_HEADER)
    {
        return Err(format!(
            "the header is {:?}, expected {}",
            header.iter().collect::<Vec<_>>(),
            BOX_CSV_HEADER.join(",")
        ));
    }
    let mut images: Vec<CsvImage> = Vec::new();
    // path -> (index in `images`, line of its first row)
    let mut seen: HashMap<String, (usize, u64)> = HashMap::new();
    for row in reader.records() {
        let row = row.map_err(|e| e.to_string())?;
        let line = row.position().map_or(0, |p| p.line());
        let at = |reason: String| format!("line {line}: {reason}");
        let path = &row[0];
        if path.is_empty() {
            return Err(at("empty path".into()));
        }
        let label = csv_label(&row[1], &by_name).map_err(at)?;
        let mut bbox = [0.0; 4];
        for (v, (field, name)) in bbox.iter_mut().zip(row.iter().zip(BOX_CSV_HEADER).skip(2)) {
            *v = field
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| at(format!("{name} is {field:?}, not a number")))?;
        }
        match seen.get(path) {
            Some(&(i, first)) if images[i].label != label => {
                return Err(at(format!(
                    "{path} has label {label} here but {} on line {first}",
                    images[i].label
                )))
            }
            Some(&(i, _)) => images[i].boxes.push(bbox),
            None => {
                seen.insert(path.to_string(), (images.len(), line));
                images.push(CsvImage {
                    path: PathBuf::from(path),
                    label,
                    boxes: vec![bbox],
                });
            }
        }
    }
    Ok(images)
}

/// A class index, or a class name of `--synsets`.
fn csv_label(field: &str, by_name: &HashMap<&str, usize>) -> Result<i64, String> {
    if let Ok(n) = field.parse::<i64>() {
        return if n >= 0 {
            Ok(n)
        } else {
            Err(format!("label {n} is negative"))
        };
    }
    match by_name.get(field) {
        Some(&i) => Ok(i as i64),
        None if by_name.is_empty() => Err(format!(
            "label {field:?} is not a class index (class names need --synsets)"
        )),
        None => Err(format!(
            "label {field:?} is neither a class index nor a class name of --synsets"
        )),
    }
}

/// Reads a box CSV (see the module docs); `synsets` (optional) gives class names, which are
/// also recorded in `wnid`. Sizes are not recorded: the run reads them from the image.
pub fn read_box_csv(
    csv_path: &Path,
    images: &Path,
    synsets: Option<&Path>,
) -> Result<(Vec<Entry>, Vec<String>), FatalError> {
    let classes = match synsets {
        Some(p) => read_synsets(p)?,
        None => Vec::new(),
    };
    let file = File::open(csv_path).map_err(|e| FatalError::io(csv_path, e))?;
    let rows = parse_box_csv(BufReader::new(file), &classes).map_err(|r| bad(csv_path, r))?;
    let mut entries = Vec::new();
    let mut missing = Vec::new();
    for img in rows {
        let key = key_from_path(&img.path);
        let image = images.join(&img.path);
        if !image.is_file() {
            missing.push(key);
            continue;
        }
        entries.push(Entry {
            key,
            image,
            annotation: Annotation {
                label: img.label,
                boxes: img.boxes,
                width: None,
                height: None,
                wnid: usize::try_from(img.label)
                    .ok()
                    .and_then(|i| classes.get(i))
                    .filter(|n| !n.is_empty())
                    .cloned(),
            },
        });
    }
    check_unique_keys(&entries, csv_path)?;
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

    fn object(name: &str, b: [u32; 4], difficult: bool) -> String {
        format!(
            "<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>\
             <difficult>{}</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin>\
             <xmax>{}</xmax><ymax>{}</ymax></bndbox></object>",
            u8::from(difficult),
            b[0],
            b[1],
            b[2],
            b[3]
        )
    }

    fn annotation(objects: &[String]) -> String {
        format!(
            "<annotation><folder>VOC2012</folder><filename>x.jpg</filename>\
             <size><width>500</width><height>375</height><depth>3</depth></size>\
             <segmented>0</segmented>{}</annotation>",
            objects.concat()
        )
    }

    #[test]
    fn voc_coordinates_become_zero_based_exclusive() {
        // A VOC box covering exactly pixel columns 1..=10 (1-based) and rows 1..=5.
        let voc = parse_voc(&annotation(&[object("dog", [1, 1, 10, 5], false)]), false).unwrap();
        assert_eq!((voc.width, voc.height), (Some(500), Some(375)));
        assert_eq!(voc.objects, vec![(11, [0.0, 0.0, 10.0, 5.0])]);
        let pad = "\n   ";
        let spaced = annotation(&[format!(
            "<object><name>{pad}cat{pad}</name><bndbox><xmin> 48 </xmin><ymin>240</ymin>\
             <xmax>195.5</xmax><ymax>371</ymax></bndbox></object>"
        )]);
        let voc = parse_voc(&spaced, false).unwrap();
        assert_eq!(voc.objects, vec![(7, [47.0, 239.0, 195.5, 371.0])]);
    }

    #[test]
    fn voc_label_is_the_class_with_the_largest_total_area() {
        // Two dogs of 10x10 (total 200) beat one person of 14x14 (196); the chair is small.
        let objects = [
            object("person", [1, 1, 14, 14], false),
            object("dog", [21, 1, 30, 10], false),
            object("chair", [41, 1, 42, 2], false),
            object("dog", [21, 21, 30, 30], false),
        ];
        let voc = parse_voc(&annotation(&objects), false).unwrap();
        let (label, boxes) = voc_label(&voc.objects).unwrap();
        assert_eq!(VOC_CLASSES[label], "dog");
        assert_eq!(
            boxes,
            vec![[20.0, 0.0, 30.0, 10.0], [20.0, 20.0, 30.0, 30.0]]
        );
        // Difficult dogs skipped: the person wins.
        let objects = [
            object("person", [1, 1, 14, 14], false),
            object("dog", [21, 1, 30, 10], true),
            object("dog", [21, 21, 30, 30], true),
        ];
        let voc = parse_voc(&annotation(&objects), true).unwrap();
        assert_eq!(
            voc_label(&voc.objects).unwrap(),
            (14, vec![[0.0, 0.0, 14.0, 14.0]])
        );
        let voc = parse_voc(&annotation(&objects[1..]), true).unwrap();
        assert_eq!(voc_label(&voc.objects), None, "all difficult: no objects");
        // A tie goes to the lower class index, whatever the order of the objects.
        let tie = [(14, [0.0, 0.0, 4.0, 4.0]), (11, [0.0, 0.0, 2.0, 8.0])];
        assert_eq!(voc_label(&tie).unwrap().0, 11);
        assert_eq!(voc_label(&[]), None);
    }

    #[test]
    fn voc_parts_do_not_count_as_objects() {
        let person = "<object><name>person</name><bndbox><xmin>1</xmin><ymin>1</ymin>\
                      <xmax>50</xmax><ymax>80</ymax></bndbox><part><name>head</name>\
                      <bndbox><xmin>10</xmin><ymin>1</ymin><xmax>30</xmax><ymax>20</ymax>\
                      </bndbox></part></object>";
        let voc = parse_voc(&annotation(&[person.to_string()]), false).unwrap();
        assert_eq!(voc.objects, vec![(14, [0.0, 0.0, 50.0, 80.0])]);
    }

    #[test]
    fn voc_errors_name_the_problem() {
        let err = |xml: &str| parse_voc(xml, false).unwrap_err();
        let e = err(&annotation(&[
            object("dog", [1, 1, 5, 5], false),
            object("unicorn", [1, 1, 5, 5], false),
        ]));
        assert!(
            e.contains("<object> 2") && e.contains("unknown VOC class \"unicorn\""),
            "{e}"
        );
        assert!(err("<annotation><object>").contains("malformed XML"));
        assert!(err("<notes/>").contains("not <annotation>"));
        let e = err(&annotation(&["<object><name>dog</name></object>".into()]));
        assert!(e.contains("dog has no <bndbox>"), "{e}");
        let e = err(&annotation(&[
            "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>x</xmax>\
             <ymax>5</ymax></bndbox></object>"
                .into(),
        ]));
        assert!(e.contains("<xmax> is \"x\""), "{e}");
        let e = err("<annotation><size><width>big</width></size></annotation>");
        assert!(e.contains("<size><width>"), "{e}");
        let e = err(&annotation(&["<object><bndbox/></object>".into()]));
        assert!(e.contains("no <name>"), "{e}");
    }

    #[test]
    fn voc_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("Annotations")).unwrap();
        let xml = dir.path().join("Annotations/2008_000001.xml");
        std::fs::write(&xml, "<annotation><object></annotation>").unwrap();
        let e = read_voc(dir.path(), dir.path(), None, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2008_000001.xml") && e.contains("malformed XML"),
            "{e}"
        );
    }

    fn csv_rows(text: &str, classes: &[&str]) -> Result<Vec<CsvImage>, String> {
        let classes: Vec<String> = classes.iter().map(|s| s.to_string()).collect();
        parse_box_csv(text.as_bytes(), &classes)
    }

    #[test]
    fn box_csv_groups_rows_by_path() {
        let rows = csv_rows(
            "path,label,x0,y0,x1,y1\n\
             a/cat.jpg,3,0,0,10,10\n\
             b.jpg,5,1,2,3,4\n\
             a/cat.jpg, 3 ,20,20,30,30.5\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                CsvImage {
                    path: "a/cat.jpg".into(),
                    label: 3,
                    boxes: vec![[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.5]],
                },
                CsvImage {
                    path: "b.jpg".into(),
                    label: 5,
                    boxes: vec![[1.0, 2.0, 3.0, 4.0]],
                },
            ]
        );
        assert_eq!(key_from_path(&rows[0].path), "cat");
    }

    #[test]
    fn box_csv_labels_must_agree() {
        let e = csv_rows(
            "path,label,x0,y0,x1,y1\na.jpg,1,0,0,5,5\nb.jpg,2,0,0,5,5\na.jpg,2,0,0,5,5\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.starts_with("line 4:") && e.contains("label 2 here but 1 on line 2"),
            "{e}"
        );
    }

    #[test]
    fn box_csv_class_names_come_from_synsets() {
        let text =
            "path,label,x0,y0,x1,y1\na.jpg,dog,0,0,5,5\na.jpg,2,1,1,5,5\nb.jpg,cat,0,0,5,5\n";
        let rows = csv_rows(text, &["cat", "", "dog"]).unwrap();
        assert_eq!((rows[0].label, rows[0].boxes.len()), (2, 2));
        assert_eq!(rows[1].label, 0);
        let e = csv_rows(text, &[]).unwrap_err();
        assert!(
            e.starts_with("line 2:") && e.contains("need --synsets"),
            "{e}"
        );
        let e = csv_rows(text, &["cat"]).unwrap_err();
        assert!(
            e.starts_with("line 2:") && e.contains("neither a class index nor"),
            "{e}"
        );
        let e = csv_rows("path,label,x0,y0,x1,y1\na.jpg,-1,0,0,5,5\n", &[]).unwrap_err();
        assert!(e.contains("negative"), "{e}");
        let e = csv_rows("path,label,x0,y0,x1,y1\na.jpg,1,0,zero,5,5\n", &[]).unwrap_err();
        assert!(e.contains("y0 is \"zero\""), "{e}");
        let e = csv_rows("path,label,x,y,w,h\na.jpg,1,0,0,5,5\n", &[]).unwrap_err();
        assert!(e.contains("expected path,label,x0,y0,x1,y1"), "{e}");
        assert!(csv_rows("path,label,x0,y0,x1,y1\na.jpg,1,0,0,5\n", &[]).is_err());
    }

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
