//! ImageNet as researchers download it: the official bounding-box XMLs (a folder, or
//! `ILSVRC2012_bbox_val_v3.tgz` read without unpacking), Kaggle's `LOC_val_solution.csv`,
//! and the `val_index,label,width,height,boxes` table; images from any [`ImageIndex`].
//!
//! ImageNet's box numbers are 0-based and inclusive (`xmax` reaches `width - 1`, never
//! `width`), so every reader here turns `xmin ymin xmax ymax` into bgstream's exclusive
//! `[xmin, ymin, xmax + 1, ymax + 1]`. Labels are class indices in the standard order
//! (the built-in [`crate::classes::imagenet`] table, or `--synsets`); an image whose objects
//! name several wnids is labelled by the largest total box area ([`largest_area_label`]),
//! and only that class's boxes are its foreground.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::images::{ImageIndex, ImagesLayout};
use super::limits::{self, Limited, Metered, Tally};
use super::voc::largest_area_label;
use super::xml::{parse_pascal_xml, XmlError};
use super::{bad, key_from_path, read_synsets, Entry};
use crate::error::{panic_message, FatalError};
use crate::ops::geometry::BBox;
use crate::source::Annotation;

/// The class list that wnids are looked up in: line `n` is class `n`.
#[derive(Debug, Clone)]
pub struct Classes {
    pub wnids: Vec<String>,
    index: HashMap<String, usize>,
}

impl Classes {
    /// The 1,000 ImageNet-1k classes built into the binary.
    pub fn imagenet() -> Self {
        Self::new(crate::classes::imagenet::wnids())
    }

    /// `--synsets` (first token of each line), or the built-in ImageNet classes.
    pub fn from_synsets(path: Option<&Path>) -> Result<Self, FatalError> {
        match path {
            Some(p) => Ok(Self::new(read_synsets(p)?)),
            None => Ok(Self::imagenet()),
        }
    }

    fn new(wnids: Vec<String>) -> Self {
        let mut index = HashMap::new();
        for (i, w) in wnids.iter().enumerate() {
            index.entry(w.clone()).or_insert(i);
        }
        Classes { wnids, index }
    }

    /// Whether this is the standard ImageNet-1k order.
    pub fn is_imagenet(&self) -> bool {
        self.wnids == crate::classes::imagenet::wnids()
    }

    fn label(&self, wnid: &str) -> Result<usize, String> {
        self.index.get(wnid).copied().ok_or_else(|| {
            format!(
                "unknown wnid {wnid:?}: not one of the {} classes{}",
                self.wnids.len(),
                if self.is_imagenet() {
                    " of ImageNet-1k (give --synsets for another class list)"
                } else {
                    " of --synsets"
                }
            )
        })
    }
}

/// One annotated image, not yet matched to its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub key: String,
    pub annotation: Annotation,
    /// Its objects named more than one class (labelled by the largest total area).
    pub several_classes: bool,
}

/// `(key, objects)` -> a record, or `None` when there are no objects. Boxes are ImageNet's
/// inclusive numbers.
fn record(
    key: String,
    objects: &[(usize, BBox)],
    size: (Option<usize>, Option<usize>),
    classes: &Classes,
) -> Option<Record> {
    let exclusive: Vec<(usize, BBox)> = objects
        .iter()
        .map(|&(c, [x0, y0, x1, y1])| (c, [x0, y0, x1 + 1.0, y1 + 1.0]))
        .collect();
    let (label, boxes) = largest_area_label(&exclusive)?;
    let several_classes = objects.iter().any(|o| o.0 != label);
    Some(Record {
        key,
        annotation: Annotation {
            label: label as i64,
            boxes,
            width: size.0,
            height: size.1,
            wnid: classes.wnids.get(label).cloned(),
            ..Default::default()
        },
        several_classes,
    })
}

/// What the ImageNet readers found: records sorted by key, and keys without objects.
#[derive(Debug, Default)]
pub struct Records {
    pub records: Vec<Record>,
    pub without_objects: Vec<String>,
}

impl Records {
    fn from(
        found: impl IntoIterator<Item = (String, Option<Record>)>,
        source: &Path,
    ) -> Result<Self, FatalError> {
        let mut out = Records::default();
        for (key, r) in found {
            match r {
                Some(r) => out.records.push(r),
                None => out.without_objects.push(key),
            }
        }
        out.records.sort_by(|a, b| a.key.cmp(&b.key));
        out.without_objects.sort();
        let twice = out.records.windows(2).find_map(|w| match w {
            [a, b] if a.key == b.key => Some(&a.key),
            _ => None,
        });
        if let Some(key) = twice {
            return Err(bad(
                source,
                format!("{key:?} is annotated twice (keys must be unique)"),
            ));
        }
        Ok(out)
    }
}

/// Counts one image read from `source` against the limits of one input.
fn count(
    tally: &mut Tally,
    source: &Path,
    where_: impl std::fmt::Display,
    record: Option<&Record>,
) -> Result<(), FatalError> {
    let boxes = record.map_or(0, |r| r.annotation.boxes.len());
    tally
        .add(1, boxes, 0)
        .map_err(|e| FatalError::input_from(source, where_.to_string(), e))
}

/// Parses one ImageNet XML annotation (`key` is its file name up to the first dot): `None`
/// when it has no objects. The error is the reason, for the caller to name the file
/// ([`XmlError::at`]).
pub fn parse_xml(key: &str, text: &str, classes: &Classes) -> Result<Option<Record>, XmlError> {
    let doc = parse_pascal_xml(text)?;
    let objects = doc
        .objects
        .iter()
        .map(|o| Ok((classes.label(&o.name)?, o.bndbox)))
        .collect::<Result<Vec<_>, String>>()?;
    Ok(record(
        key.to_string(),
        &objects,
        (doc.width, doc.height),
        classes,
    ))
}

/// Runs `f` over `items` on all cores, keeping the order; the first error wins.
fn par_map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R, FatalError> + Sync,
) -> Result<Vec<R>, FatalError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(256);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(|| c.iter().map(&f).collect::<Result<Vec<R>, _>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            let part = h
                .join()
                .map_err(|p| FatalError::Panic(panic_message(&*p)))?;
            out.extend(part?);
        }
        Ok(out)
    })
}

/// The official bounding-box XMLs: a folder (searched recursively for `*.xml`) or a tar of
/// them, gzipped (`ILSVRC2012_bbox_val_v3.tgz`) or not. The key is the file name up to
/// its first dot. Parsed on all cores. Each file is read through [`limits::XML_FILE`], all
/// of them through [`limits::XML_TOTAL`].
pub fn read_xml(path: &Path, classes: &Classes) -> Result<Records, FatalError> {
    if path.is_dir() {
        read_xml_folder(path, classes)
    } else {
        read_xml_tar(path, classes)
    }
}

fn is_xml(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".xml")
}

fn read_xml_folder(path: &Path, classes: &Classes) -> Result<Records, FatalError> {
    let mut files = Vec::new();
    let mut total = 0u64;
    for entry in walkdir::WalkDir::new(path).follow_links(true) {
        let entry = entry.map_err(|e| FatalError::io(path, e.into()))?;
        let name = entry.file_name().to_str().unwrap_or_default();
        if !(entry.file_type().is_file() && is_xml(name)) {
            continue;
        }
        // Sizes as listed; each read is limited again, should a file grow meanwhile.
        let len = entry.metadata().map_or(0, |m| m.len());
        total = total.saturating_add(len);
        let over = limits::XML_TOTAL.check(total).err().or_else(|| {
            limits::IMAGES
                .check((files.len() as u64).saturating_add(1))
                .err()
        });
        if let Some(e) = over {
            return Err(FatalError::io(
                path,
                io::Error::new(io::ErrorKind::FileTooLarge, e),
            ));
        }
        files.push(entry.into_path());
    }
    if files.is_empty() {
        return Err(bad(path, "no *.xml annotation file in this folder"));
    }
    let found = par_map(&files, |file: &PathBuf| {
        let text = limits::read_file_string(file, limits::XML_FILE)?;
        let key = key_from_path(file);
        let r = parse_xml(&key, &text, classes).map_err(|e| e.at(file, None))?;
        Ok((key, r))
    })?;
    let mut tally = Tally::default();
    for ((_, r), file) in found.iter().zip(&files) {
        count(&mut tally, path, file.display(), r.as_ref())?;
    }
    Records::from(found, path)
}

/// A tar (gzipped or not) of XML files, read member by member and parsed in batches of
/// [`limits::XML_BATCH_BYTES`], so that only one batch of text is in memory.
fn read_xml_tar(path: &Path, classes: &Classes) -> Result<Records, FatalError> {
    let io = |e| FatalError::io(path, e);
    let mut raw = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
    let gzip = {
        let buf = std::io::BufRead::fill_buf(&mut raw).map_err(io)?;
        buf.starts_with(&[0x1f, 0x8b])
    };
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::bufread::MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    let (metered, allowance) = Metered::new(reader);
    let mut archive = tar::Archive::new(metered);
    let not_tar = |e: io::Error| match limits::over_limit(&e) {
        Some(_) => FatalError::io(path, e),
        None => FatalError::input_from(path, "not a (gzipped) tar of XML files", e),
    };
    let (mut batch, mut batch_bytes, mut members) = (Vec::new(), 0u64, 0usize);
    let (mut found, mut tally) = (Vec::new(), Tally::default());
    for entry in archive.entries().map_err(not_tar)? {
        let mut entry = entry.map_err(not_tar)?;
        allowance.member(entry.size());
        let name = entry
            .path()
            .map_err(not_tar)?
            .to_string_lossy()
            .into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular || !is_xml(&name) {
            continue;
        }
        let member = |e| FatalError::io(format!("{}:{name}", path.display()), e);
        let text = limits::read_all_string(&mut entry, limits::XML_FILE).map_err(member)?;
        batch_bytes = batch_bytes.saturating_add(text.len() as u64);
        batch.push((name, text));
        members = members.saturating_add(1);
        if batch_bytes >= limits::XML_BATCH_BYTES {
            parse_batch(path, &mut batch, classes, &mut found, &mut tally)?;
            batch_bytes = 0;
        }
    }
    parse_batch(path, &mut batch, classes, &mut found, &mut tally)?;
    if members == 0 {
        return Err(bad(path, "no *.xml member in this tar"));
    }
    Records::from(found, path)
}

/// Parses (on all cores) and empties `batch`, `(member name, text)`s of the tar `path`.
fn parse_batch(
    path: &Path,
    batch: &mut Vec<(String, String)>,
    classes: &Classes,
    found: &mut Vec<(String, Option<Record>)>,
    tally: &mut Tally,
) -> Result<(), FatalError> {
    let parsed = par_map(batch, |(name, text)| {
        let key = key_from_path(Path::new(name));
        let r = parse_xml(&key, text, classes).map_err(|e| e.at(path, Some(name)))?;
        Ok((key, r))
    })?;
    for ((_, r), (name, _)) in parsed.iter().zip(batch.iter()) {
        count(tally, path, name, r.as_ref())?;
    }
    found.extend(parsed);
    batch.clear();
    Ok(())
}

/// A csv error: an io error (the limit among them) keeps its source.
fn csv_error(path: &Path, e: csv::Error) -> FatalError {
    if e.is_io_error() {
        if let csv::ErrorKind::Io(io) = e.into_kind() {
            return FatalError::io(path, io);
        }
        return bad(path, "csv read error");
    }
    FatalError::input(path, e)
}

/// The CSV file at `path`, read through [`limits::TABLE_FILE`].
fn table(path: &Path) -> Result<Limited<File>, FatalError> {
    let file = File::open(path).map_err(|e| FatalError::io(path, e))?;
    Ok(Limited::new(file, limits::TABLE_FILE))
}

/// Kaggle's `LOC_val_solution.csv`: `ImageId,PredictionString`, the string being
/// `wnid x0 y0 x1 y1` repeated once per box.
pub fn read_kaggle(path: &Path, classes: &Classes) -> Result<Records, FatalError> {
    parse_kaggle(table(path)?, path, classes)
}

/// [`read_kaggle`] of the CSV text `data`; `path` names it in errors.
pub fn parse_kaggle(
    data: impl Read,
    path: &Path,
    classes: &Classes,
) -> Result<Records, FatalError> {
    let mut reader = csv::Reader::from_reader(data);
    let header = reader.headers().map_err(|e| csv_error(path, e))?;
    if !is_kaggle_header(&header.iter().collect::<Vec<_>>().join(",")) {
        return Err(bad(
            path,
            format!(
                "the header is {:?}, expected ImageId,PredictionString",
                header.iter().collect::<Vec<_>>()
            ),
        ));
    }
    let (mut found, mut tally) = (Vec::new(), Tally::default());
    for row in reader.records() {
        let row = row.map_err(|e| csv_error(path, e))?;
        let line = row.position().map_or(0, |p| p.line());
        let at = |r: String| bad(path, format!("line {line}: {r}"));
        let key = row.get(0).unwrap_or("").trim().to_string();
        if key.is_empty() {
            return Err(at("empty ImageId".into()));
        }
        let objects = kaggle_objects(row.get(1).unwrap_or(""), classes).map_err(at)?;
        let r = record(key.clone(), &objects, (None, None), classes);
        count(&mut tally, path, format_args!("line {line}"), r.as_ref())?;
        found.push((key, r));
    }
    Records::from(found, path)
}

/// A PredictionString: `wnid x0 y0 x1 y1` per box, inclusive numbers.
fn kaggle_objects(s: &str, classes: &Classes) -> Result<Vec<(usize, BBox)>, String> {
    let tokens: Vec<&str> = s.split_whitespace().collect();
    let boxes = tokens.chunks_exact(5);
    if !boxes.remainder().is_empty() {
        return Err(format!(
            "PredictionString has {} fields, not a multiple of 5 (wnid x0 y0 x1 y1 per box)",
            tokens.len()
        ));
    }
    let mut objects = Vec::new();
    for b in boxes {
        let Some((wnid, numbers)) = b.split_first() else {
            continue;
        };
        let label = classes.label(wnid)?;
        let mut bbox = [0.0; 4];
        for (v, t) in bbox.iter_mut().zip(numbers) {
            *v = t
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("box coordinate {t:?} is not a number"))?;
        }
        objects.push((label, bbox));
    }
    Ok(objects)
}

pub(super) fn is_kaggle_header(first_line: &str) -> bool {
    let fields: Vec<String> = first_line
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(|f| f.trim().to_ascii_lowercase())
        .collect();
    fields == ["imageid", "predictionstring"]
}

/// The `val_index,label,width,height,boxes` table of the validation set: boxes
/// `x0 y0 x1 y1` joined by `;`, the numbers of the XML files. The image of row `i` has the
/// key `ILSVRC2012_val_{i:08}`.
pub fn read_imagenet_csv(path: &Path, classes: &Classes) -> Result<Records, FatalError> {
    parse_imagenet_csv(table(path)?, path, classes)
}

/// [`read_imagenet_csv`] of the CSV text `data`; `path` names it in errors.
pub fn parse_imagenet_csv(
    data: impl Read,
    path: &Path,
    classes: &Classes,
) -> Result<Records, FatalError> {
    let mut reader = csv::Reader::from_reader(data);
    let (mut found, mut tally) = (Vec::new(), Tally::default());
    for row in reader.records() {
        let row = row.map_err(|e| csv_error(path, e))?;
        let line = row.position().map_or(0, |p| p.line());
        let at = |r: String| bad(path, format!("line {line}: {r}"));
        let field = |i: usize| row.get(i).unwrap_or("").trim();
        let parse = |i: usize| -> Result<usize, FatalError> {
            field(i)
                .parse()
                .map_err(|_| at(format!("column {i} is not a whole number")))
        };
        let (index, label, width, height) = (parse(0)?, parse(1)?, parse(2)?, parse(3)?);
        if label >= classes.wnids.len() {
            return Err(at(format!(
                "label {label} is not a class (there are {})",
                classes.wnids.len()
            )));
        }
        let objects = field(4)
            .split(';')
            .filter(|b| !b.trim().is_empty())
            .map(|b| {
                let v: Vec<f64> = b
                    .split_whitespace()
                    .filter_map(|t| t.parse().ok())
                    .collect();
                <[f64; 4]>::try_from(v.as_slice())
                    .map(|b| (label, b))
                    .map_err(|_| at(format!("bad box {b:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key = format!("ILSVRC2012_val_{index:08}");
        let size = (
            Some(width).filter(|&w| w > 0),
            Some(height).filter(|&h| h > 0),
        );
        let r = record(key.clone(), &objects, size, classes);
        count(&mut tally, path, format_args!("line {line}"), r.as_ref())?;
        found.push((key, r));
    }
    Records::from(found, path)
}

/// Records matched to images.
#[derive(Debug, Default)]
pub struct Joined {
    pub entries: Vec<Entry>,
    /// Annotated keys with no image.
    pub missing: Vec<String>,
    /// Image keys with no annotation.
    pub unannotated: Vec<String>,
    /// Keys whose objects named several classes.
    pub several_classes: Vec<String>,
    /// ImageFolder layout: `key (folder F, annotated W)` where the class folder is a known
    /// wnid other than the annotation's.
    pub folder_mismatch: Vec<String>,
}

/// Matches records (sorted by key) to the images by key; entries keep the records' order.
pub fn join(records: Vec<Record>, images: &ImageIndex, classes: &Classes) -> Joined {
    let mut out = Joined::default();
    let mut used = std::collections::HashSet::new();
    for r in records {
        let Some(image) = images.by_key.get(&r.key) else {
            out.missing.push(r.key);
            continue;
        };
        used.insert(r.key.clone());
        if r.several_classes {
            out.several_classes.push(r.key.clone());
        }
        if let (ImagesLayout::ImageFolder { .. }, Some(folder)) =
            (images.layout, images.folder.get(&r.key))
        {
            let wnid = r.annotation.wnid.as_deref().unwrap_or("");
            if classes.index.contains_key(folder) && folder != wnid {
                out.folder_mismatch
                    .push(format!("{} (folder {folder}, annotated {wnid})", r.key));
            }
        }
        out.entries.push(Entry {
            mask: None,
            key: r.key,
            image: image.clone(),
            annotation: r.annotation,
        });
    }
    out.unannotated = images
        .by_key
        .keys()
        .filter(|k| !used.contains(*k))
        .cloned()
        .collect();
    out.unannotated.sort();
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn xml(size: Option<(u32, u32)>, objects: &[(&str, [u32; 4])]) -> String {
        let size = size.map_or(String::new(), |(w, h)| {
            format!("<size><width>{w}</width><height>{h}</height><depth>3</depth></size>")
        });
        let objects: String = objects
            .iter()
            .map(|(n, b)| {
                format!(
                    "<object><name>{n}</name><bndbox><xmin>{}</xmin><ymin>{}</ymin>\
                     <xmax>{}</xmax><ymax>{}</ymax></bndbox></object>",
                    b[0], b[1], b[2], b[3]
                )
            })
            .collect();
        format!("<annotation><folder>val</folder>{size}{objects}</annotation>")
    }

    #[test]
    fn inclusive_boxes_become_exclusive() {
        let c = Classes::imagenet();
        // A box reaching the last column (499 of a 500-wide image) covers it.
        let r = parse_xml(
            "k",
            &xml(Some((500, 375)), &[("n01440764", [0, 10, 499, 374])]),
            &c,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.annotation.boxes, vec![[0.0, 10.0, 500.0, 375.0]]);
        assert_eq!(
            (r.annotation.label, r.annotation.wnid.as_deref()),
            (0, Some("n01440764"))
        );
        assert_eq!(
            (r.annotation.width, r.annotation.height),
            (Some(500), Some(375))
        );
        assert!(!r.several_classes);
        // A one-pixel box is one pixel wide, not empty.
        let r = parse_xml("k", &xml(None, &[("n15075141", [7, 7, 7, 7])]), &c)
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.annotation.boxes[0], r.annotation.label),
            ([7.0, 7.0, 8.0, 8.0], 999)
        );
    }

    #[test]
    fn several_wnids_take_the_largest_total_area() {
        let c = Classes::imagenet();
        // Two goldfish of 10x10 (200 px) beat one tench of 14x14 (196 px).
        let text = xml(
            None,
            &[
                ("n01440764", [0, 0, 13, 13]),
                ("n01443537", [20, 0, 29, 9]),
                ("n01443537", [20, 20, 29, 29]),
            ],
        );
        let r = parse_xml("k", &text, &c).unwrap().unwrap();
        assert_eq!(r.annotation.label, 1);
        assert_eq!(r.annotation.boxes.len(), 2);
        assert!(r.several_classes);
        assert_eq!(parse_xml("k", &xml(None, &[]), &c).unwrap(), None);
        let e = parse_xml("k", &xml(None, &[("n99999999", [0, 0, 1, 1])]), &c)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown wnid \"n99999999\""), "{e}");
    }

    #[test]
    fn kaggle_rows_hold_every_box() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("LOC_val_solution.csv");
        std::fs::write(
            &p,
            "ImageId,PredictionString\n\
             ILSVRC2012_val_00000002,n09193705 45 49 499 162 n09193705 2 69 437 207 \n\
             ILSVRC2012_val_00000001,n01751748 111 108 441 193 \n",
        )
        .unwrap();
        let r = read_kaggle(&p, &Classes::imagenet()).unwrap();
        let keys: Vec<_> = r.records.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["ILSVRC2012_val_00000001", "ILSVRC2012_val_00000002"]);
        assert_eq!(
            r.records[1].annotation.boxes,
            vec![[45.0, 49.0, 500.0, 163.0], [2.0, 69.0, 438.0, 208.0]]
        );
        assert_eq!(r.records[0].annotation.width, None);
        for (bad_row, want) in [
            ("k,n09193705 45 49 499\n", "not a multiple of 5"),
            ("k,n00000000 1 1 2 2\n", "unknown wnid"),
            ("k,n09193705 1 1 x 2\n", "\"x\" is not a number"),
        ] {
            std::fs::write(&p, format!("ImageId,PredictionString\n{bad_row}")).unwrap();
            let e = read_kaggle(&p, &Classes::imagenet())
                .unwrap_err()
                .to_string();
            assert!(e.contains("line 2") && e.contains(want), "{e}");
        }
        assert!(is_kaggle_header("\u{feff}ImageId,PredictionString\r"));
        assert!(!is_kaggle_header("ImageId,label"));
    }
}
