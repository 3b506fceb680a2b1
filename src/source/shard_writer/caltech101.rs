//! Caltech101 as downloaded: `101_ObjectCategories/<class>/image_XXXX.jpg` and
//! `Annotations/<folder>/annotation_XXXX.mat` (MATLAB v5; read with the `matfile` crate).
//!
//! - `box_coord` is `[top, bottom, left, right]`, 1-based and inclusive: the box is
//!   `[left - 1, top - 1, right, bottom]` in bgstream's exclusive convention, clamped to the
//!   image (some boxes reach a pixel past it).
//! - `obj_contour` (2 x N, relative to the box's top-left) is the object's outline. It
//!   becomes the sample's polygon, so every variant uses the outline instead of the box
//!   ([`crate::ops::mask`]): Caltech101's own viewer draws point `i` at MATLAB pixel
//!   coordinates `(obj_contour(1, i) + left, obj_contour(2, i) + top)`, pixel centres on
//!   integers from 1, which in bgstream's pixel-edge coordinates (centres at `c + 0.5` from
//!   0) is `(x + left - 0.5, y + top - 0.5)`.
//! - Classes are the image folders in sorted (byte) order without `BACKGROUND_Google`, as
//!   torchvision numbers them, unless `--synsets` lists them (one name per line).
//! - `--split train|test`: the usual protocol's split, per class the first 30 images (in
//!   file order) for training and the rest for testing.
//! - Four annotation folders are named differently from their image folders; they are mapped
//!   (and the mapping reported): `Airplanes_Side_2` -> `airplanes`, `Faces_2` -> `Faces`,
//!   `Faces_3` -> `Faces_easy`, `Motorbikes_16` -> `Motorbikes`.

use std::path::{Path, PathBuf};

use matfile::{MatFile, NumericData};

use super::{bad, Entry, ImageRef};
use crate::error::FatalError;
use crate::ops::decode::{dimensions, Limits};
use crate::source::Annotation;

/// Annotation folder -> image folder, where they differ.
pub const FOLDER_MAP: [(&str, &str); 4] = [
    ("Airplanes_Side_2", "airplanes"),
    ("Faces_2", "Faces"),
    ("Faces_3", "Faces_easy"),
    ("Motorbikes_16", "Motorbikes"),
];

/// The clutter class, not an object category.
pub const BACKGROUND: &str = "BACKGROUND_Google";

/// Training images per class of the usual protocol (`--split train`).
pub const TRAIN_PER_CLASS: usize = 30;

/// What [`read_caltech101`] found.
#[derive(Debug, Default)]
pub struct CaltechRead {
    pub entries: Vec<Entry>,
    /// Annotations without an image.
    pub missing: Vec<String>,
    /// Images without an annotation file (not sharded).
    pub unannotated: Vec<String>,
    /// Annotations that do not read as a box (`key: why`).
    pub unreadable: Vec<String>,
    /// Boxes clamped to the image.
    pub clamped: usize,
    /// The folder mappings used, e.g. `Faces_3 -> Faces_easy`.
    pub mapped: Vec<String>,
    pub classes: Vec<String>,
}

/// The entries of `dir`, sorted by path.
pub(super) fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>, FatalError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| FatalError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A numeric array of a `.mat` file as f64, column-major.
fn numbers(mat: &MatFile, field: &str) -> Result<(Vec<usize>, Vec<f64>), String> {
    let a = mat
        .find_by_name(field)
        .ok_or_else(|| format!("no {field}"))?;
    let v: Vec<f64> = match a.data() {
        NumericData::Double { real, .. } => real.clone(),
        NumericData::Single { real, .. } => real.iter().map(|&x| x.into()).collect(),
        NumericData::Int8 { real, .. } => real.iter().map(|&x| x.into()).collect(),
        NumericData::UInt8 { real, .. } => real.iter().map(|&x| x.into()).collect(),
        NumericData::Int16 { real, .. } => real.iter().map(|&x| x.into()).collect(),
        NumericData::UInt16 { real, .. } => real.iter().map(|&x| x.into()).collect(),
        NumericData::Int32 { real, .. } => real.iter().map(|&x| x.into()).collect(),
        NumericData::UInt32 { real, .. } => real.iter().map(|&x| x.into()).collect(),
        NumericData::Int64 { real, .. } => real.iter().map(|&x| x as f64).collect(),
        NumericData::UInt64 { real, .. } => real.iter().map(|&x| x as f64).collect(),
    };
    Ok((a.size().clone(), v))
}

/// The box of one annotation file, `[x0, y0, x1, y1]` exclusive in image pixels before
/// clamping, and the outline as a polygon `[x0, y0, x1, y1, …]` in image pixels when the
/// file has one.
pub fn read_annotation(path: &Path) -> Result<([f64; 4], Option<Vec<f64>>), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mat = MatFile::parse(std::io::BufReader::new(file)).map_err(|e| format!("{e:?}"))?;
    let (_, b) = numbers(&mat, "box_coord")?;
    let [top, bottom, left, right] = <[f64; 4]>::try_from(b.as_slice())
        .map_err(|_| format!("box_coord has {} numbers, expected 4", b.len()))?;
    if !(top.is_finite() && bottom.is_finite() && left.is_finite() && right.is_finite())
        || right < left
        || bottom < top
    {
        return Err(format!(
            "box_coord [{top}, {bottom}, {left}, {right}] is not [top, bottom, left, right]"
        ));
    }
    let polygon = match numbers(&mat, "obj_contour") {
        Ok((size, c)) => {
            if size.first() != Some(&2) || c.len() < 6 || c.iter().any(|x| !x.is_finite()) {
                return Err(format!(
                    "obj_contour is {size:?}, expected 2 x N with N >= 3"
                ));
            }
            // Column-major 2 x N: x, y of each point in turn.
            let origin = [left - 0.5, top - 0.5];
            Some(
                c.chunks_exact(2)
                    .flat_map(|p| [p[0] + origin[0], p[1] + origin[1]])
                    .collect(),
            )
        }
        Err(_) => None,
    };
    Ok(([left - 1.0, top - 1.0, right, bottom], polygon))
}

/// Reads the Caltech101 layout (rules in the module docs).
pub fn read_caltech101(
    annotations: &Path,
    images: &Path,
    synsets: Option<&Path>,
    split: Option<&str>,
) -> Result<CaltechRead, FatalError> {
    let keep = |i: usize| match split {
        Some("train") => i < TRAIN_PER_CLASS,
        Some(_) => i >= TRAIN_PER_CLASS,
        None => true,
    };
    let mut out = CaltechRead::default();
    let folders: Vec<PathBuf> = sorted_dir(images)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    let found: Vec<String> = folders.iter().map(|p| name(p)).collect();
    if found.is_empty() {
        return Err(bad(
            images,
            "no class folders (expected 101_ObjectCategories)",
        ));
    }
    out.classes = match synsets {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| FatalError::io(p, e))?
            .lines()
            .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        None => found.iter().filter(|f| *f != BACKGROUND).cloned().collect(),
    };
    let limits = Limits {
        max_pixels: u64::MAX,
    };
    for folder in &folders {
        let class = name(folder);
        let Some(label) = out.classes.iter().position(|c| *c == class) else {
            continue; // BACKGROUND_Google, or a folder --synsets leaves out
        };
        let ann_name = FOLDER_MAP
            .iter()
            .find(|(_, img)| *img == class)
            .map_or(class.as_str(), |(a, _)| a);
        let ann_dir = annotations.join(ann_name);
        if ann_name != class && ann_dir.is_dir() {
            out.mapped.push(format!("{ann_name} -> {class}"));
        }
        for (i, img) in sorted_dir(folder)?.into_iter().enumerate() {
            if !keep(i) {
                continue;
            }
            let file = name(&img);
            let Some(num) = file
                .strip_prefix("image_")
                .and_then(|r| r.rsplit_once('.'))
                .map(|(n, _)| n.to_string())
            else {
                continue;
            };
            let key = format!("{class}/image_{num}");
            let mat = ann_dir.join(format!("annotation_{num}.mat"));
            if !mat.is_file() {
                out.unannotated.push(key);
                continue;
            }
            let (b, polygon) = match read_annotation(&mat) {
                Ok(b) => b,
                Err(e) => {
                    out.unreadable.push(format!("{key}: {e}"));
                    continue;
                }
            };
            let bytes = std::fs::read(&img).map_err(|e| FatalError::io(&img, e))?;
            let (w, h) = match dimensions(&bytes, &limits) {
                Ok(d) => d,
                Err(e) => {
                    out.unreadable.push(format!("{key}: image header: {e}"));
                    continue;
                }
            };
            let clamped = [
                b[0].clamp(0.0, w as f64),
                b[1].clamp(0.0, h as f64),
                b[2].clamp(0.0, w as f64),
                b[3].clamp(0.0, h as f64),
            ];
            if clamped != b {
                out.clamped += 1;
            }
            out.entries.push(Entry {
                mask: None,
                key,
                image: ImageRef::File(img.clone()),
                annotation: Annotation {
                    label: label as i64,
                    boxes: vec![clamped],
                    width: Some(w),
                    height: Some(h),
                    wnid: None,
                    polygons: polygon.into_iter().collect(),
                    ..Default::default()
                },
            });
        }
    }
    // Annotations whose image is absent.
    for dir in sorted_dir(annotations)?.into_iter().filter(|p| p.is_dir()) {
        let ann = name(&dir);
        let class = FOLDER_MAP
            .iter()
            .find(|(a, _)| *a == ann)
            .map_or(ann.clone(), |(_, c)| c.to_string());
        for mat in sorted_dir(&dir)? {
            let Some(num) = name(&mat)
                .strip_prefix("annotation_")
                .and_then(|r| r.strip_suffix(".mat"))
                .map(str::to_string)
            else {
                continue;
            };
            let key = format!("{class}/image_{num}");
            let has_image = ["jpg", "jpeg", "png"].iter().any(|x| {
                images
                    .join(&class)
                    .join(format!("image_{num}.{x}"))
                    .is_file()
            });
            if !has_image && split.is_none() {
                out.missing.push(key);
            }
        }
    }
    Ok(out)
}

/// Whether `dir` looks like Caltech101's `Annotations/` (class folders of
/// `annotation_*.mat`).
pub fn looks_like(dir: &Path) -> bool {
    sorted_dir(dir).is_ok_and(|sub| {
        sub.iter().filter(|p| p.is_dir()).take(8).any(|d| {
            sorted_dir(d).is_ok_and(|files| {
                files.iter().any(|f| {
                    let n = name(f);
                    n.starts_with("annotation_") && n.ends_with(".mat")
                })
            })
        })
    })
}
