//! ImageNet-9 (Xiao et al., "Noise or Signal", the backgrounds challenge) as downloaded:
//! `--images bg_challenge/original/val` holds class folders (`00_dog` … `08_fish`, see
//! [`in9::FOLDERS`]) of images and `--annotations bg_challenge/fg_mask/val` the same folders
//! of `<image>.npy` foreground masks (boolean or numeric, `(H, W)` or `(H, W, C)`, nonzero =
//! foreground; a grayscale `<image>.png` is taken too).
//!
//! - When every mask folder is one of ImageNet-9's nine (all of them or some), the label is
//!   the folder's IN-9 index (`02_wheeled vehicle` = 2, even when `01_bird` is absent) and
//!   every sample's JSON says `"label_space": "in9"`, so that a run scores a 1,000-class
//!   model through the `in_to_in9` table. `--synsets` listing exactly the nine in order
//!   does the same.
//! - Otherwise classes are the mask folders in sorted order, unless `--synsets` lists them,
//!   and the label is the model's class as usual (no `label_space`). The folder name is the
//!   sample's `wnid` either way.
//! - The key is `<class>/<file name up to its first dot>`; the image is the file of the
//!   same name in the image folder's class folder (`.JPEG`, `.jpg`, `.png`, any case).
//! - The mask becomes `<key>.mask.png` and its bounding box the sample's box
//!   ([`super::masks`]); every variant then uses the mask.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::caltech101::sorted_dir;
use super::{bad, key_from_path, read_synsets, Entry, ImageRef};
use crate::classes::{in9, LabelSpace};
use crate::error::FatalError;
use crate::source::{valid_released_name, Annotation, IN9_RELEASED as RELEASED};

/// What [`read_imagenet9`] found.
#[derive(Debug, Default)]
pub struct In9Read {
    pub entries: Vec<Entry>,
    /// Masks without an image.
    pub missing: Vec<String>,
    /// Images without a mask (not sharded: they have no foreground).
    pub unannotated: Vec<String>,
    pub classes: Vec<String>,
    /// `Some(In9)` when the folders are ImageNet-9's (module docs).
    pub label_space: Option<LabelSpace>,
}

fn has_ext(p: &Path, exts: &[&str]) -> bool {
    p.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| exts.iter().any(|e| x.eq_ignore_ascii_case(e)))
}

fn is_mask(p: &Path) -> bool {
    has_ext(p, &["npy", "png"])
}

/// File stem (up to the first dot) -> path, of the files of `dir` that `keep` accepts.
fn by_stem(dir: &Path, keep: fn(&Path) -> bool) -> Result<BTreeMap<String, PathBuf>, FatalError> {
    if !dir.is_dir() {
        return Ok(BTreeMap::new());
    }
    Ok(sorted_dir(dir)?
        .into_iter()
        .filter(|p| p.is_file() && keep(p))
        .map(|p| (key_from_path(&p), p))
        .collect())
}

/// Reads the layout (rules in the module docs).
pub fn read_imagenet9(
    masks: &Path,
    images: &Path,
    synsets: Option<&Path>,
) -> Result<In9Read, FatalError> {
    let (folders, mut out) = class_folders(
        masks,
        synsets,
        "no class folders of masks (expected fg_mask/<split>/<class>/<image>.npy)",
    )?;
    for (class, label) in labelled(&folders, &out.classes) {
        let mask_files = by_stem(&masks.join(&class), is_mask)?;
        let mut image_files = by_stem(&images.join(&class), |p| {
            has_ext(p, &["jpeg", "jpg", "png"])
        })?;
        for (stem, mask) in mask_files {
            let key = format!("{class}/{stem}");
            let Some(image) = image_files.remove(&stem) else {
                out.missing.push(key);
                continue;
            };
            out.entries.push(Entry {
                key,
                image: ImageRef::File(image),
                annotation: Annotation {
                    label: label as i64,
                    wnid: Some(class.clone()),
                    label_space: out.label_space,
                    ..Default::default()
                },
                mask: Some(mask),
            });
        }
        out.unannotated
            .extend(image_files.into_keys().map(|s| format!("{class}/{s}")));
    }
    Ok(out)
}

/// The class folders of `dir` in sorted order, and a read with their class list and label
/// space; `none` is the error when there is no folder.
fn class_folders(
    dir: &Path,
    synsets: Option<&Path>,
    none: &str,
) -> Result<(Vec<String>, In9Read), FatalError> {
    let folders: Vec<String> = sorted_dir(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if folders.is_empty() {
        return Err(bad(dir, none));
    }
    let (classes, label_space) = class_list(&folders, synsets)?;
    let read = In9Read {
        classes,
        label_space,
        ..Default::default()
    };
    Ok((folders, read))
}

/// The folders that are classes, with their labels (a folder `--synsets` leaves out is
/// skipped).
fn labelled(folders: &[String], classes: &[String]) -> Vec<(String, usize)> {
    folders
        .iter()
        .filter_map(|f| Some((f.clone(), classes.iter().position(|c| c == f)?)))
        .collect()
}

/// The class list (label = position) and the label space, by the rules of the module docs.
fn class_list(
    folders: &[String],
    synsets: Option<&Path>,
) -> Result<(Vec<String>, Option<LabelSpace>), FatalError> {
    let nine = || in9::FOLDERS.map(String::from).to_vec();
    if let Some(p) = synsets {
        let listed: Vec<String> = read_synsets(p)?
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect();
        let space = (listed == nine()).then_some(LabelSpace::In9);
        return Ok((listed, space));
    }
    if folders.iter().all(|f| in9::folder_index(f).is_some()) {
        return Ok((nine(), Some(LabelSpace::In9)));
    }
    Ok((folders.to_vec(), None))
}

/// Whether `dir` looks like ImageNet-9's `fg_mask/<split>/`: class folders of `.npy` files.
pub fn looks_like(dir: &Path) -> bool {
    sorted_dir(dir).is_ok_and(|sub| {
        sub.iter().filter(|p| p.is_dir()).take(4).any(|d| {
            sorted_dir(d).is_ok_and(|files| files.iter().take(16).any(|f| has_ext(f, &["npy"])))
        })
    })
}

/// The released variant `images` holds: `given`, else the folder above the split
/// (`bg_challenge/mixed_rand/val` -> `mixed_rand`) when it is one of [`RELEASED`].
pub fn released_name(images: &Path, given: Option<&str>) -> Result<String, FatalError> {
    if let Some(g) = given {
        if !valid_released_name(g) {
            return Err(FatalError::Config(format!(
                "--released-variant {g:?}: up to 32 of a-z, 0-9 and _ (ImageNet-9's are {})",
                RELEASED.join(", ")
            )));
        }
        return Ok(g.to_string());
    }
    let abs = images
        .canonicalize()
        .unwrap_or_else(|_| images.to_path_buf());
    let found = abs
        .components()
        .rev()
        .take(2)
        .filter_map(|c| c.as_os_str().to_str())
        .find(|n| RELEASED.contains(n))
        .map(String::from);
    found.ok_or_else(|| {
        bad(
            images,
            format!(
                "without --annotations, --images is one of ImageNet-9's released variant \
                     folders (<variant>/<split>, variant one of {}); name another with \
                     --released-variant NAME",
                RELEASED.join(", ")
            ),
        )
    })
}

/// A released variant folder read as it is (`images/<class>/<image>`): every image one
/// sample, labelled by its class folder as [`read_imagenet9`] does, without a foreground;
/// its JSON records `released_variant`, and a run classifies it as it is (variant
/// `released:<name>`).
pub fn read_released(
    images: &Path,
    synsets: Option<&Path>,
    variant: &str,
) -> Result<In9Read, FatalError> {
    let (folders, mut out) = class_folders(
        images,
        synsets,
        "no class folders of images (expected <variant>/<split>/<class>/<image>.JPEG)",
    )?;
    for (class, label) in labelled(&folders, &out.classes) {
        let files = by_stem(&images.join(&class), |p| {
            has_ext(p, &["jpeg", "jpg", "png"])
        })?;
        for (stem, image) in files {
            out.entries.push(Entry {
                key: format!("{class}/{stem}"),
                image: ImageRef::File(image),
                annotation: Annotation {
                    label: label as i64,
                    wnid: Some(class.clone()),
                    label_space: out.label_space,
                    released_variant: Some(variant.to_string()),
                    ..Default::default()
                },
                mask: None,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn released_folder_names_the_variant() {
        let tmp = tempfile::tempdir().unwrap();
        let val = tmp.path().join("bg_challenge/mixed_rand/val");
        std::fs::create_dir_all(val.join("00_dog")).unwrap();
        std::fs::create_dir_all(val.join("08_fish")).unwrap();
        std::fs::write(val.join("00_dog/a.JPEG"), b"x").unwrap();
        std::fs::write(val.join("08_fish/b.jpg"), b"x").unwrap();
        std::fs::write(val.join("08_fish/notes.txt"), b"x").unwrap();
        assert_eq!(released_name(&val, None).unwrap(), "mixed_rand");
        // The folder itself named as a variant (no split folder below it).
        assert_eq!(
            released_name(&tmp.path().join("bg_challenge/mixed_rand"), None).unwrap(),
            "mixed_rand"
        );
        assert_eq!(released_name(&val, Some("my_set2")).unwrap(), "my_set2");
        for bad_name in ["", "Mixed", "a b", "<x>", &"a".repeat(33)] {
            assert!(released_name(&val, Some(bad_name)).is_err(), "{bad_name:?}");
        }
        let err = released_name(tmp.path(), None).unwrap_err().to_string();
        assert!(err.contains("--released-variant"), "{err}");

        let r = read_released(&val, None, "mixed_rand").unwrap();
        assert_eq!(r.label_space, Some(LabelSpace::In9));
        let got: Vec<(&str, i64, Option<&str>)> = (r.entries.iter())
            .map(|e| {
                let a = &e.annotation;
                (e.key.as_str(), a.label, a.released_variant.as_deref())
            })
            .collect();
        assert_eq!(
            got,
            [
                ("00_dog/a", 0, Some("mixed_rand")),
                ("08_fish/b", 8, Some("mixed_rand"))
            ]
        );
        assert!(r.entries.iter().all(|e| e.mask.is_none()
            && e.annotation.boxes.is_empty()
            && e.annotation.label_space == Some(LabelSpace::In9)));
    }
}
