//! `bgstream shard`: turn a folder of images plus annotations into WebDataset tar shards.
//!
//! Two annotation formats:
//! - ImageNet validation CSV (`val_index,label,width,height,boxes`, boxes `x0 y0 x1 y1`
//!   joined by `;`), as `../shared/data/imagenet-val/annotations.csv`; the image of row
//!   `i` is the file with stem `ILSVRC2012_val_{i:08}` in `--images`.
//! - JSON manifest `{"samples": [{"path", "label", "boxes", "key"?, "wnid"?}]}` with paths
//!   relative to `--images` (the demo's `examples/demo/boxes.json`).
//!
//! Shards are `PREFIX-000000.tar`, ...; each is written to `NAME.tmp` and renamed when
//! complete, so a shard that exists is whole. Members have mtime 0 and mode 0644, so the
//! same inputs give byte-identical shards.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
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

/// Reads the ImageNet validation CSV; `synsets` (optional) gives wnids by class index.
pub fn read_imagenet_csv(
    csv_path: &Path,
    images: &Path,
    synsets: Option<&Path>,
) -> Result<(Vec<Entry>, Vec<String>), FatalError> {
    let wnids: Vec<String> = match synsets {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| FatalError::io(p, e))?
            .lines()
            .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
            .collect(),
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
        let key = match s.key {
            Some(k) => k,
            None => s
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('.').next())
                .unwrap_or_default()
                .to_string(),
        };
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
