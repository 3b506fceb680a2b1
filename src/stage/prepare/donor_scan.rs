//! Planning's scan of the donor shards: per donor class, the images that pass the run's
//! checks and filter with the smallest `xxh3(key, seed ^ BANK_SALT)`, decoded and tiled
//! into the [`DonorBank`] (the pairing rules are in [`crate::stage::donors`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::{admit, crop_groups, source_mask, Admitted, PrepareConfig, Scratch};
use crate::item::ItemMeta;
use crate::ops::background::tile_background;
use crate::source::tar_reader::read_shard;
use crate::source::Annotation;
use crate::stage::donors::{Donor, DonorBank, BANK_SALT};

/// A scanned candidate: (bank hash, shard, key) orders it; the rest builds it.
struct Candidate {
    rank: (u64, Arc<str>, String),
    class: i64,
    /// Width and height from the image header.
    header: (usize, usize),
    bytes: Vec<u8>,
    ann: Annotation,
    /// The `.mask.png` member: kept compressed, decoded again when the donor is built.
    mask: Option<Vec<u8>>,
}

/// Calls `work(i, state)` for every `i` in `0..n` on `threads` scoped threads, each with
/// its own `state` from `init`; items go to whichever thread is free.
fn par_for<S>(
    n: usize,
    threads: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(usize, &mut S) + Sync,
) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            scope.spawn(|| {
                let mut state = init();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    work(i, &mut state);
                }
            });
        }
    });
}

/// Scans `shards` with `threads` readers and builds the bank for `cfg`.
/// The label space of the first sample of `shards` that has a readable annotation (`None`:
/// the models' own classes).
pub fn label_space(shards: &[PathBuf]) -> Option<crate::classes::LabelSpace> {
    let mut found = None;
    for shard in shards {
        let mut seen = false;
        read_shard(shard, |sample| match sample.annotation() {
            Ok(a) => {
                (found, seen) = (a.label_space, true);
                false
            }
            Err(_) => true,
        });
        if seen {
            break;
        }
    }
    found
}

pub fn build_bank(
    shards: &[PathBuf],
    cfg: &PrepareConfig,
    per_class: usize,
    threads: usize,
) -> DonorBank {
    let start = Instant::now();
    let per_class = per_class.max(1);
    let best: Mutex<BTreeMap<i64, Vec<Candidate>>> = Mutex::default();
    let scanned = AtomicUsize::new(0);
    par_for(
        shards.len(),
        threads,
        || (),
        |i, ()| {
            read_shard(&shards[i], |sample| {
                scanned.fetch_add(1, Ordering::Relaxed);
                let mut meta = ItemMeta::new(sample.shard.clone(), sample.key.clone());
                let Ok(Some(Admitted { ann, .. })) = admit(&sample, cfg, &mut meta) else {
                    return true;
                };
                let Some(class) = cfg.donor_class(ann.label, ann.label_space) else {
                    return true;
                };
                let rank = (
                    xxh3_64_with_seed(sample.key.as_bytes(), cfg.seed ^ BANK_SALT),
                    sample.shard.clone(),
                    sample.key.clone(),
                );
                let mut best = best.lock().unwrap_or_else(|p| p.into_inner());
                let list = best.entry(class).or_default();
                if list.len() < per_class || list.last().is_some_and(|c| rank < c.rank) {
                    let at = list.partition_point(|c| c.rank < rank);
                    list.insert(
                        at,
                        Candidate {
                            rank,
                            class,
                            header: (meta.width.unwrap_or(0), meta.height.unwrap_or(0)),
                            bytes: sample.image.unwrap_or_default(),
                            ann,
                            mask: sample.mask,
                        },
                    );
                    list.truncate(per_class);
                }
                true
            });
        },
    );
    let candidates: Vec<Candidate> = best
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_values()
        .flatten()
        .collect();
    // Decode and tile the chosen ones, in parallel, keeping the (class, rank) order.
    let built: Vec<Mutex<Option<Donor>>> = candidates.iter().map(|_| Mutex::default()).collect();
    par_for(candidates.len(), threads, Scratch::default, |i, scratch| {
        let donor = tile(&candidates[i], cfg, scratch);
        *built[i].lock().unwrap_or_else(|p| p.into_inner()) = donor;
    });
    let donors = built
        .into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()));
    let bank = DonorBank::new(donors.collect(), &cfg.textures.names);
    tracing::info!(
        donors = bank.donors.len(),
        classes = bank.classes(),
        scanned = scanned.load(Ordering::Relaxed),
        shards = shards.len(),
        seconds = start.elapsed().as_secs_f64(),
        "donor bank built"
    );
    bank
}

fn tile(c: &Candidate, cfg: &PrepareConfig, scratch: &mut Scratch) -> Option<Donor> {
    let (w, h) = c.header;
    let mask = source_mask(c.mask.as_deref(), &c.ann, w, h).ok()?;
    crop_groups(
        &c.bytes,
        c.header,
        &c.ann.boxes,
        mask.as_ref(),
        cfg,
        scratch,
    )
    .ok()?;
    let backgrounds = scratch
        .crops
        .iter()
        .map(|crop| {
            let mut bg = vec![0u8; crop.pixels.len()];
            tile_background(&crop.pixels, &crop.fg, &mut bg);
            bg
        })
        .collect();
    Some(Donor::new(&c.rank.2, c.class, backgrounds))
}

/// The bank entry for one sample, built as the scan builds it (`None` when it does not
/// pass the run's checks and filter, or does not decode): the report's gallery builds a
/// bank of just the donors it shows.
pub fn donor_from_sample(
    sample: &crate::source::Sample,
    cfg: &PrepareConfig,
    scratch: &mut Scratch,
) -> Option<Donor> {
    let mut meta = ItemMeta::new(sample.shard.clone(), sample.key.clone());
    let ann = admit(sample, cfg, &mut meta).ok()??.ann;
    let class = cfg
        .donor_class(ann.label, ann.label_space)
        .unwrap_or(ann.label);
    let c = Candidate {
        rank: (0, sample.shard.clone(), sample.key.clone()),
        class,
        header: (meta.width.unwrap_or(0), meta.height.unwrap_or(0)),
        bytes: sample.image.clone().unwrap_or_default(),
        ann,
        mask: sample.mask.clone(),
    };
    tile(&c, cfg, scratch)
}
