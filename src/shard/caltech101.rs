//! Caltech101 as downloaded: `101_ObjectCategories/<class>/image_XXXX.jpg` and
//! `Annotations/<folder>/annotation_XXXX.mat` (MATLAB v5, read by [`super::mat`] within
//! [`limits::MAT_FILE`], stored and inflated).
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
//!   `Faces_3` -> `Faces_easy`, `Motorbikes_16` -> `Motorbikes`. An annotation folder with
//!   no image folder is reported (and its annotations listed as without an image).

use std::path::{Path, PathBuf};

use super::limits::{self, Tally};
use super::mat::{parse_mat, MatArray};
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
    /// Annotation folders without an image folder: `folder (N annotations)`.
    pub folders_without_images: Vec<String>,
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

/// The array `field` of a `.mat` file.
fn array<'a>(mat: &'a [MatArray], field: &str) -> Option<&'a MatArray> {
    mat.iter().find(|a| a.name == field)
}

/// The box of one annotation file, `[x0, y0, x1, y1]` exclusive in image pixels before
/// clamping, and the outline as a polygon `[x0, y0, x1, y1, …]` in image pixels when the
/// file has one. The error names the file.
pub fn read_annotation(path: &Path) -> Result<([f64; 4], Option<Vec<f64>>), String> {
    let bytes = std::fs::File::open(path)
        .and_then(|f| limits::read_all(f, limits::MAT_FILE))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    parse_annotation(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// [`read_annotation`] of the file's bytes.
pub fn parse_annotation(bytes: &[u8]) -> Result<([f64; 4], Option<Vec<f64>>), String> {
    let mat = parse_mat(bytes)?;
    let b = array(&mat, "box_coord").ok_or("no box_coord")?;
    let [top, bottom, left, right] = <[f64; 4]>::try_from(b.values.as_slice())
        .map_err(|_| format!("box_coord has {} numbers, expected 4", b.values.len()))?;
    if !(top.is_finite() && bottom.is_finite() && left.is_finite() && right.is_finite())
        || right < left
        || bottom < top
    {
        return Err(format!(
            "box_coord [{top}, {bottom}, {left}, {right}] is not [top, bottom, left, right]"
        ));
    }
    let polygon = match array(&mat, "obj_contour") {
        Some(c) => {
            let v = &c.values;
            if c.dims.first() != Some(&2) || v.len() < 6 || v.iter().any(|x| !x.is_finite()) {
                return Err(format!(
                    "obj_contour is {:?}, expected 2 x N with N >= 3",
                    c.dims
                ));
            }
            // Column-major 2 x N: x, y of each point in turn.
            let origin = [left - 0.5, top - 0.5];
            Some(
                v.chunks_exact(2)
                    .flat_map(|p| p.iter().zip(origin).map(|(v, o)| v + o))
                    .collect(),
            )
        }
        None => None,
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
        Some(p) => super::read_synsets(p)?
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect(),
        None => found.iter().filter(|f| *f != BACKGROUND).cloned().collect(),
    };
    let mut tally = Tally::default();
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
            let keep = match split {
                Some("train") => i < TRAIN_PER_CLASS,
                Some(_) => i >= TRAIN_PER_CLASS,
                None => true,
            };
            if keep {
                read_sample(&mut out, &mut tally, (&class, label), &ann_dir, img)?;
            }
        }
    }
    annotations_without_images(&mut out, annotations, images, split)?;
    Ok(out)
}

/// Adds the image `img` of `class` (with its annotation from `ann_dir`) to `out`.
fn read_sample(
    out: &mut CaltechRead,
    tally: &mut Tally,
    (class, label): (&str, usize),
    ann_dir: &Path,
    img: PathBuf,
) -> Result<(), FatalError> {
    let file = name(&img);
    let Some(num) = file
        .strip_prefix("image_")
        .and_then(|r| r.rsplit_once('.'))
        .map(|(n, _)| n.to_string())
    else {
        return Ok(());
    };
    let key = format!("{class}/image_{num}");
    let mat = ann_dir.join(format!("annotation_{num}.mat"));
    if !mat.is_file() {
        out.unannotated.push(key);
        return Ok(());
    }
    let ([x0, y0, x1, y1], polygon) = match read_annotation(&mat) {
        Ok(b) => b,
        Err(e) => {
            out.unreadable.push(format!("{key}: {e}"));
            return Ok(());
        }
    };
    let bytes = limits::read_file(&img, limits::IMAGE_FILE)?;
    // Only the header is read here; the pixel limit is the run's business.
    let header_only = Limits {
        max_pixels: u64::MAX,
    };
    let (w, h) = match dimensions(&bytes, &header_only) {
        Ok(d) => d,
        Err(e) => {
            out.unreadable.push(format!("{key}: image header: {e}"));
            return Ok(());
        }
    };
    let (wf, hf) = (w as f64, h as f64);
    let clamped = [
        x0.clamp(0.0, wf),
        y0.clamp(0.0, hf),
        x1.clamp(0.0, wf),
        y1.clamp(0.0, hf),
    ];
    if clamped != [x0, y0, x1, y1] {
        out.clamped = out.clamped.saturating_add(1);
    }
    let values = polygon.as_ref().map_or(0, Vec::len);
    tally
        .add(1, 1, values)
        .map_err(|e| FatalError::input(&mat, e))?;
    out.entries.push(Entry {
        mask: None,
        key,
        image: ImageRef::File(img),
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
    Ok(())
}

/// Lists the annotations whose image is absent (without `--split`, which picks images by
/// position) and the annotation folders that have no image folder at all.
fn annotations_without_images(
    out: &mut CaltechRead,
    annotations: &Path,
    images: &Path,
    split: Option<&str>,
) -> Result<(), FatalError> {
    for dir in sorted_dir(annotations)?.into_iter().filter(|p| p.is_dir()) {
        let ann = name(&dir);
        let class = FOLDER_MAP
            .iter()
            .find(|(a, _)| *a == ann)
            .map_or(ann.clone(), |(_, c)| c.to_string());
        let class_dir = images.join(&class);
        let mut n = 0usize;
        for mat in sorted_dir(&dir)? {
            let Some(num) = name(&mat)
                .strip_prefix("annotation_")
                .and_then(|r| r.strip_suffix(".mat"))
                .map(str::to_string)
            else {
                continue;
            };
            n = n.saturating_add(1);
            let has_image = ["jpg", "jpeg", "png"]
                .iter()
                .any(|x| class_dir.join(format!("image_{num}.{x}")).is_file());
            if !has_image && split.is_none() {
                out.missing.push(format!("{class}/image_{num}"));
            }
        }
        if n > 0 && !class_dir.is_dir() {
            let mapped = if class == ann {
                String::new()
            } else {
                format!(", image folder {class}")
            };
            out.folders_without_images
                .push(format!("{ann} ({n} annotations{mapped})"));
        }
    }
    Ok(())
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::super::mat::tests::{compressed, double_matrix, header};
    use super::*;

    #[test]
    fn annotations_box_and_outline() {
        let mut file = header();
        file.extend(double_matrix(
            "box_coord",
            &[1, 4],
            &[8.0, 100.0, 4.0, 90.0],
        ));
        let outline = [0.0, 0.0, 10.0, 0.0, 0.0, 12.0];
        file.extend(compressed(&double_matrix("obj_contour", &[2, 3], &outline)));
        let (b, polygon) = parse_annotation(&file).unwrap();
        assert_eq!(b, [3.0, 7.0, 90.0, 100.0]);
        assert_eq!(polygon.unwrap(), [3.5, 7.5, 13.5, 7.5, 3.5, 19.5]);
        let mut file = header();
        file.extend(double_matrix("box_coord", &[1, 4], &[8.0, 1.0, 4.0, 90.0]));
        let e = parse_annotation(&file).unwrap_err();
        assert!(e.contains("not [top, bottom, left, right]"), "{e}");
        let mut file = header();
        file.extend(double_matrix("box_coord", &[1, 4], &[1.0, 2.0, 3.0, 4.0]));
        file.extend(double_matrix("obj_contour", &[3, 2], &[0.0; 6]));
        assert!(parse_annotation(&file).unwrap_err().contains("2 x N"));
    }

    #[test]
    fn an_annotation_folder_without_its_image_folder_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (anns, imgs) = (dir.path().join("Annotations"), dir.path().join("images"));
        for d in ["accordion", "Faces_3", "ant"] {
            std::fs::create_dir_all(anns.join(d)).unwrap();
        }
        std::fs::create_dir_all(imgs.join("accordion")).unwrap();
        std::fs::write(imgs.join("accordion/image_0001.jpg"), b"x").unwrap();
        for f in [
            "Faces_3/annotation_0001.mat",
            "Faces_3/annotation_0002.mat",
            "ant/annotation_0001.mat",
        ] {
            std::fs::write(anns.join(f), b"").unwrap();
        }
        for split in [None, Some("test")] {
            let r = read_caltech101(&anns, &imgs, None, split).unwrap();
            assert_eq!(
                r.folders_without_images,
                [
                    "Faces_3 (2 annotations, image folder Faces_easy)",
                    "ant (1 annotations)"
                ]
            );
            // --split test takes images from the 31st: none here.
            let n = if split.is_none() { 1 } else { 0 };
            assert_eq!(r.unannotated.len(), n, "{:?}", r.unannotated);
            assert_eq!(r.missing.len(), 3 * n, "{:?}", r.missing);
        }
    }
}
