//! Writing the shards: images read on several threads a window ahead of the one tar
//! writer, each image's header checked against its annotation. Windows are bounded in
//! images and bytes ([`limits::WINDOW_BYTES`]); each image is read through
//! [`limits::IMAGE_FILE`], each mask through the mask limits.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};

use super::limits;
use super::masks::{load_mask, polygons_bbox, MaskFile};
use super::Entry;
use crate::error::{panic_message, FatalError};
use crate::ops::decode::{dimensions, Limits};

/// Images read per window; windows are read while the previous one is written.
const WINDOW: usize = 64;

/// What [`write_shards`] wrote and noticed.
#[derive(Debug, Default)]
pub struct ShardReport {
    pub shards: Vec<PathBuf>,
    pub samples: usize,
    /// Image bytes written.
    pub bytes: u64,
    /// `key: header WxH, annotation WxH`: written with the annotation's size, which the
    /// run then records as `size_mismatch`.
    pub size_mismatch: Vec<String>,
    /// `key: reason`: images whose header cannot be read; written as they are (the run
    /// records the decode error).
    pub unreadable: Vec<String>,
    /// Samples written with a mask.
    pub masks: usize,
    /// `key: reason`: masks that cannot be read or do not fit the image; the run records
    /// them as `bad_mask`.
    pub bad_masks: Vec<String>,
}

struct Loaded {
    bytes: Vec<u8>,
    dims: Result<(usize, usize), String>,
    mask: Option<Result<MaskFile, String>>,
}

fn load(e: &Entry) -> Result<Loaded, FatalError> {
    let bytes = e
        .image
        .read()
        .map_err(|err| FatalError::io(e.image.describe(), err))?;
    let dims = dimensions(&bytes, &Limits::default()).map_err(|err| err.to_string());
    let mask = e.mask.as_deref().map(load_mask);
    Ok(Loaded { bytes, dims, mask })
}

/// Reads `entries` on `threads` threads, keeping their order.
fn load_window(entries: &[Entry], threads: usize) -> Result<Vec<Loaded>, FatalError> {
    if threads <= 1 {
        return entries.iter().map(load).collect();
    }
    let per = entries.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = entries
            .chunks(per.max(1))
            .map(|c| s.spawn(|| c.iter().map(load).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut out = Vec::with_capacity(entries.len());
        for p in parts {
            out.extend(
                p.join()
                    .map_err(|p| FatalError::Panic(panic_message(&*p)))??,
            );
        }
        Ok(out)
    })
}

/// `entries` cut into windows of at most [`WINDOW`] images and, past the first image,
/// [`limits::WINDOW_BYTES`] (sizes as the files or tar headers say).
fn windows(entries: &[Entry]) -> impl Iterator<Item = &[Entry]> {
    let mut rest = entries;
    std::iter::from_fn(move || {
        let (mut n, mut bytes) = (0usize, 0u64);
        for e in rest.iter().take(WINDOW) {
            bytes = bytes.saturating_add(e.image.size());
            if n > 0 && bytes > limits::WINDOW_BYTES {
                break;
            }
            n = n.saturating_add(1);
        }
        let (window, after) = rest.split_at_checked(n)?;
        rest = after;
        (!window.is_empty()).then_some(window)
    })
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

/// The member extension: `jpg` or `png` from the image's name, `jpg` otherwise.
fn extension(name: &str) -> &'static str {
    let ext = Path::new(name)
        .extension()
        .and_then(|x| x.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if ext == "png" {
        "png"
    } else {
        "jpg"
    }
}

/// Writes `entries` (in order) into shards of `shard_size` samples under `out`, reading
/// images on `threads` threads (at least 1). On an error the shard being written is
/// removed (its `.tmp`); the shards already renamed are whole and stay.
pub fn write_shards(
    entries: &[Entry],
    out: &Path,
    prefix: &str,
    shard_size: usize,
    threads: usize,
) -> Result<ShardReport, FatalError> {
    if shard_size == 0 {
        return Err(FatalError::Config("--shard-size must be at least 1".into()));
    }
    if let Some(e) = entries
        .iter()
        .find(|e| e.key.contains('.') || e.key.is_empty())
    {
        return Err(FatalError::Data(format!(
            "key {:?} of {} is empty or has a dot (WebDataset keys end at the first dot)",
            e.key,
            e.image.describe()
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| FatalError::io(out, e))?;
    let (tx, rx) = sync_channel::<Result<Vec<Loaded>, FatalError>>(1);
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            for window in windows(entries) {
                let loaded = load_window(window, threads);
                let failed = loaded.is_err();
                if tx.send(loaded).is_err() || failed {
                    return;
                }
            }
        });
        let mut loads = Loads {
            windows: rx,
            pending: Vec::new().into_iter(),
        };
        let written = write_all(entries, out, prefix, shard_size, &mut loads);
        // Dropping the receiver unblocks the reader thread, should it still be sending.
        drop(loads);
        let joined = reader
            .join()
            .map_err(|p| FatalError::Panic(panic_message(&*p)));
        let report = written?;
        joined?;
        Ok(report)
    })
}

/// The loaded images, in the entries' order, as the reader thread sends them.
struct Loads {
    windows: Receiver<Result<Vec<Loaded>, FatalError>>,
    pending: std::vec::IntoIter<Loaded>,
}

impl Loads {
    fn next(&mut self) -> Result<Loaded, FatalError> {
        loop {
            if let Some(l) = self.pending.next() {
                return Ok(l);
            }
            match self.windows.recv() {
                Ok(window) => self.pending = window?.into_iter(),
                Err(_) => return Err(FatalError::Panic("the image reader stopped early".into())),
            }
        }
    }
}

fn write_all(
    entries: &[Entry],
    out: &Path,
    prefix: &str,
    shard_size: usize,
    loads: &mut Loads,
) -> Result<ShardReport, FatalError> {
    let mut report = ShardReport::default();
    for (n, chunk) in entries.chunks(shard_size).enumerate() {
        let final_path = out.join(format!("{prefix}-{n:06}.tar"));
        let tmp = crate::atomic::tmp_path(&final_path);
        let written = write_shard(&tmp, &final_path, chunk, loads, &mut report)
            .and_then(|()| crate::atomic::commit(&tmp, &final_path));
        if let Err(e) = written {
            // Best effort: the error that stops the run is the one to report.
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        report.shards.push(final_path);
        report.samples = report.samples.saturating_add(chunk.len());
    }
    Ok(report)
}

/// Writes the samples of `chunk` into `tmp`, fsynced (the caller renames it).
fn write_shard(
    tmp: &Path,
    final_path: &Path,
    chunk: &[Entry],
    loads: &mut Loads,
    report: &mut ShardReport,
) -> Result<(), FatalError> {
    let io = |e: std::io::Error| FatalError::output(final_path, e);
    let file = File::create(tmp).map_err(io)?;
    let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    for e in chunk {
        let loaded = loads.next()?;
        let annotation = checked(e, &loaded, report);
        let ext = extension(e.image.name());
        append(&mut builder, &format!("{}.{ext}", e.key), &loaded.bytes).map_err(io)?;
        append(
            &mut builder,
            &format!("{}.cls", e.key),
            annotation.label.to_string().as_bytes(),
        )
        .map_err(io)?;
        let json =
            serde_json::to_vec(&annotation).map_err(|err| FatalError::output(final_path, err))?;
        append(&mut builder, &format!("{}.json", e.key), &json).map_err(io)?;
        if let Some(Ok(m)) = &loaded.mask {
            append(&mut builder, &format!("{}.mask.png", e.key), &m.png).map_err(io)?;
            report.masks = report.masks.saturating_add(1);
        }
        report.bytes = report.bytes.saturating_add(loaded.bytes.len() as u64);
    }
    let mut w = builder.into_inner().map_err(io)?;
    w.flush().map_err(io)?;
    w.get_ref().sync_all().map_err(io)
}

/// The annotation to write: the size filled in from the header where the annotation has
/// none; a disagreement or an unreadable header noted in `report`. With a mask or polygons:
/// their bounding box as the box when the entry has none; a mask that cannot be read becomes
/// `mask_error` (so the run records `bad_mask`, not a silent fall-back to boxes).
fn checked(e: &Entry, loaded: &Loaded, report: &mut ShardReport) -> crate::source::Annotation {
    let mut a = e.annotation.clone();
    let needs_box = a.boxes.is_empty();
    match &loaded.mask {
        Some(Ok(m)) => {
            if needs_box {
                a.boxes.extend(m.bbox);
            }
            if let Ok((w, h)) = loaded.dims {
                if (w, h) != (m.width, m.height) {
                    report.bad_masks.push(format!(
                        "{}: mask {}x{}, image {w}x{h}",
                        e.key, m.width, m.height
                    ));
                }
            }
        }
        Some(Err(reason)) => {
            report.bad_masks.push(format!("{}: {reason}", e.key));
            a.mask_error = Some(reason.clone());
        }
        None => {}
    }
    if let (true, &Ok((w, h))) = (needs_box, &loaded.dims) {
        // One box around the whole foreground: the mask's and the polygons' union.
        if let Some(p) = polygons_bbox(&a.polygons, w, h) {
            a.boxes = vec![match a.boxes.first() {
                Some(m) => [
                    m[0].min(p[0]),
                    m[1].min(p[1]),
                    m[2].max(p[2]),
                    m[3].max(p[3]),
                ],
                None => p,
            }];
        }
    }
    match (&loaded.dims, a.width, a.height) {
        (Err(reason), _, _) => report.unreadable.push(format!("{}: {reason}", e.key)),
        (Ok((w, h)), None, None) => (a.width, a.height) = (Some(*w), Some(*h)),
        (Ok((w, h)), aw, ah) if (aw, ah) != (Some(*w), Some(*h)) => {
            let show = |v: Option<usize>| v.map_or("?".into(), |v| v.to_string());
            report.size_mismatch.push(format!(
                "{}: header {w}x{h}, annotation {}x{}",
                e.key,
                show(aw),
                show(ah)
            ));
        }
        _ => {}
    }
    a
}
