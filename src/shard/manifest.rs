//! The JSON manifest reader of `bgstream shard` (`--format manifest`, see the parent docs),
//! and the bounded JSON lists it shares with the box CSV's `polygons` column: samples,
//! boxes and polygon coordinates are counted against [`limits::IMAGES`],
//! [`limits::BOXES`] and [`limits::POLYGON_VALUES`] while they are parsed, so that a file
//! within [`limits::TABLE_FILE`] cannot turn into several times its size in memory.

use std::cell::Cell;
use std::fs::File;
use std::io::BufReader;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde::Deserialize;

use super::limits::{self, Limited, OverLimit, Tally};
use super::{bad, key_from_path, Entry, ImageRef};
use crate::error::FatalError;
use crate::ops::decode::{dimensions, Limits};
use crate::ops::geometry::BBox;
use crate::source::Annotation;

thread_local! {
    /// What the bounded lists charge while [`with_tally`] runs on this thread.
    static TALLY: Cell<Option<Tally>> = const { Cell::new(None) };
}

/// Runs `f` (a parse) with `tally` charged by the bounded lists it deserializes.
fn with_tally<R>(tally: &mut Tally, f: impl FnOnce() -> R) -> R {
    TALLY.with(|t| t.set(Some(*tally)));
    let out = f();
    if let Some(t) = TALLY.with(|t| t.take()) {
        *tally = t;
    }
    out
}

#[derive(Clone, Copy)]
enum Kind {
    Sample,
    Box,
    /// A polygon coordinate, or a polygon (charged once its numbers are read: empty ones
    /// count too).
    Value,
}

fn charge(kind: Kind) -> Result<(), OverLimit> {
    TALLY.with(|t| {
        let Some(mut tally) = t.get() else {
            return Ok(()); // not under with_tally: bounded by the caller
        };
        let r = match kind {
            Kind::Sample => tally.add(1, 0, 0),
            Kind::Box => tally.add(0, 1, 0),
            Kind::Value => tally.add(0, 0, 1),
        };
        t.set(Some(tally));
        r
    })
}

/// A JSON list whose every element is charged as `kind` before it is kept.
fn bounded<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    kind: Kind,
) -> Result<Vec<T>, D::Error> {
    struct V<T>(Kind, PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(x) = seq.next_element()? {
                charge(self.0).map_err(A::Error::custom)?;
                out.push(x);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V(kind, PhantomData))
}

/// One polygon, `[x0, y0, x1, y1, …]`, each number charged.
struct Coords(Vec<f64>);

impl<'de> Deserialize<'de> for Coords {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bounded(d, Kind::Value).map(Coords)
    }
}

fn polygons<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f64>>, D::Error> {
    let p: Vec<Coords> = bounded(d, Kind::Value)?;
    Ok(p.into_iter().map(|c| c.0).collect())
}

fn boxes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BBox>, D::Error> {
    bounded(d, Kind::Box)
}

fn samples<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ManifestSample>, D::Error> {
    bounded(d, Kind::Sample)
}

/// COCO-style polygons `[[x0, y0, x1, y1, …], …]` (the box CSV's `polygons` cell), their
/// numbers charged to `tally`.
pub fn parse_polygons_json(text: &str, tally: &mut Tally) -> serde_json::Result<Vec<Vec<f64>>> {
    with_tally(tally, || {
        polygons(&mut serde_json::Deserializer::from_str(text))
    })
}

#[derive(Deserialize)]
pub struct Manifest {
    #[serde(deserialize_with = "samples")]
    pub samples: Vec<ManifestSample>,
}

#[derive(Deserialize)]
pub struct ManifestSample {
    pub path: PathBuf,
    pub key: Option<String>,
    pub label: i64,
    #[serde(default, deserialize_with = "boxes")]
    pub boxes: Vec<BBox>,
    pub wnid: Option<String>,
    /// COCO-style polygons `[[x0, y0, x1, y1, …], …]` in original pixels.
    #[serde(default, deserialize_with = "polygons")]
    pub polygons: Vec<Vec<f64>>,
    /// A mask file relative to `--images`: grayscale PNG or `.npy`.
    pub mask: Option<PathBuf>,
}

/// Parses a manifest from `reader`, its samples, boxes and polygon numbers counted against
/// the limits of one input.
pub fn parse_manifest(reader: impl std::io::Read) -> serde_json::Result<Manifest> {
    let mut tally = Tally::default();
    with_tally(&mut tally, || serde_json::from_reader(reader))
}

/// Reads a JSON manifest (see the parent docs) through [`limits::TABLE_FILE`]. Image sizes
/// are read from the image headers.
pub fn read_manifest(
    manifest: &Path,
    images: &Path,
) -> Result<(Vec<Entry>, Vec<String>), FatalError> {
    let file = File::open(manifest).map_err(|e| FatalError::io(manifest, e))?;
    let m = parse_manifest(BufReader::new(Limited::new(file, limits::TABLE_FILE))).map_err(
        |e| match e.io_error_kind() {
            Some(_) => FatalError::io(manifest, e.into()),
            None => FatalError::input(manifest, e),
        },
    )?;
    let mut entries = Vec::new();
    let mut missing = Vec::new();
    for s in m.samples {
        let path = images.join(&s.path);
        let key = s.key.unwrap_or_else(|| key_from_path(&s.path));
        if !path.is_file() {
            missing.push(key);
            continue;
        }
        let bytes = limits::read_file(&path, limits::IMAGE_FILE)?;
        let (w, h) =
            dimensions(&bytes, &Limits::default()).map_err(|e| FatalError::input(&path, e))?;
        if s.boxes.is_empty() && s.polygons.is_empty() && s.mask.is_none() {
            return Err(bad(
                manifest,
                format!("sample {key}: no boxes, polygons or mask"),
            ));
        }
        entries.push(Entry {
            mask: s.mask.map(|m| images.join(m)),
            key,
            image: ImageRef::File(path),
            annotation: Annotation {
                label: s.label,
                boxes: s.boxes,
                width: Some(w),
                height: Some(h),
                wnid: s.wnid,
                polygons: s.polygons,
                ..Default::default()
            },
        });
    }
    Ok((entries, missing))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_counted_as_they_are_parsed() {
        let m = parse_manifest(
            &br#"{"samples": [{"path": "a.jpg", "label": 1, "boxes": [[0, 0, 2, 2]],
                 "polygons": [[0, 0, 4, 0, 0, 4], []]}]}"#[..],
        )
        .unwrap();
        assert_eq!(
            m.samples[0].polygons,
            vec![vec![0.0, 0.0, 4.0, 0.0, 0.0, 4.0], vec![]]
        );
        assert_eq!(m.samples[0].boxes, vec![[0.0, 0.0, 2.0, 2.0]]);
        // One value short of the limit: two polygons (1 each) and their numbers.
        let n = limits::POLYGON_VALUES.max as usize;
        let mut tally = Tally::default();
        tally.add(0, 0, n - 8).unwrap();
        let p = parse_polygons_json("[[0, 0, 4, 0, 0, 4], []]", &mut tally).unwrap();
        assert_eq!(p.len(), 2);
        let e = parse_polygons_json("[[1]]", &mut tally)
            .unwrap_err()
            .to_string();
        assert!(e.contains("MAX_POLYGON_VALUES"), "{e}");
        // Outside with_tally nothing is charged.
        assert!(charge(Kind::Box).is_ok());
    }
}
