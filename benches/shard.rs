//! `bgstream shard` throughput: writing shards from the 66 real ImageNet JPEGs (repeated
//! to ~2,000 images per pass, warm page cache) on 1 and 4 reader threads, from a folder
//! and from a tar read in place; and reading all 50,000 validation annotations from the
//! official `.tgz`, an XML folder's worth of files, and Kaggle's CSV.
//!
//! `cargo bench --bench shard` (needs ../shared/data; skips with a message without it).

#[path = "common/mod.rs"]
#[allow(dead_code)] // shared by the benches; this one needs only the entries
mod common;

use bgstream::shard::imagenet::{read_kaggle, read_xml, Classes};
use bgstream::shard::{write_shards, Entry, ImageIndex, ImageRef};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const COPIES: usize = 30;

/// The 66 entries repeated `COPIES` times under distinct keys.
fn repeated(entries: &[Entry]) -> Vec<Entry> {
    (0..COPIES)
        .flat_map(|c| {
            entries.iter().map(move |e| Entry {
                key: format!("{}c{c}", e.key),
                ..e.clone()
            })
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let formats = common::root().join("../shared/data/imagenet-val/imagenet-formats");
    if !formats.exists() {
        eprintln!("../shared/data absent: nothing to benchmark for shard");
        return;
    }
    let entries = common::entries();
    let tmp = tempfile::tempdir().unwrap();
    // The same images as members of one uncompressed tar, read in place.
    let tar_path = tmp.path().join("val.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    for e in &entries {
        let mut h = tar::Header::new_gnu();
        let bytes = e.image.read().unwrap();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, format!("{}.JPEG", e.key), bytes.as_slice())
            .unwrap();
    }
    b.finish().unwrap();
    drop(b);
    let index = ImageIndex::open(&tar_path).unwrap();
    let in_tar: Vec<Entry> = entries
        .iter()
        .map(|e| Entry {
            image: index.by_key[&e.key].clone(),
            ..e.clone()
        })
        .collect();
    assert!(matches!(in_tar[0].image, ImageRef::Member { .. }));

    let mut g = c.benchmark_group("shard_write");
    g.sample_size(10);
    let out = tmp.path().join("out");
    for (source, list) in [("folder", repeated(&entries)), ("tar", repeated(&in_tar))] {
        g.throughput(Throughput::Elements(list.len() as u64));
        for threads in [1, 4] {
            g.bench_function(format!("{source}_{threads}_threads"), |b| {
                b.iter(|| write_shards(&list, &out, "val", 1000, threads).unwrap())
            });
        }
    }
    g.finish();

    let classes = Classes::imagenet();
    let mut g = c.benchmark_group("shard_annotations_50k");
    g.sample_size(10);
    g.throughput(Throughput::Elements(50_000));
    let tgz = formats.join("ILSVRC2012_bbox_val_v3.tgz");
    g.bench_function("xml_tgz", |b| {
        b.iter(|| assert_eq!(read_xml(&tgz, &classes).unwrap().records.len(), 50_000))
    });
    let unpacked = tmp.path().join("bbox");
    tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&tgz).unwrap(),
    ))
    .unpack(&unpacked)
    .unwrap();
    g.bench_function("xml_folder", |b| {
        b.iter(|| assert_eq!(read_xml(&unpacked, &classes).unwrap().records.len(), 50_000))
    });
    let kaggle = formats.join("LOC_val_solution.csv");
    g.bench_function("kaggle_csv", |b| {
        b.iter(|| {
            assert_eq!(
                read_kaggle(&kaggle, &classes).unwrap().records.len(),
                50_000
            )
        })
    });
    g.finish();
}

criterion_group!(shard, benches);
criterion_main!(shard);
