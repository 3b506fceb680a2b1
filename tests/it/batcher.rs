//! Property test of the batcher and inference loop with the real (tiny) model: every
//! (item, variant, model) comes out exactly once whatever the batch size and item mix, the
//! last partial batch is flushed, filtered items are reported, failed items get error rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use bgstream::batch::{Group, Inference};
use bgstream::error::ItemError;
use bgstream::infer::{Model, Precision};
use bgstream::item::{ItemMeta, Prepared, SinkMsg};
use bgstream::pipeline::Counters;
use proptest::prelude::*;
use tch::Device;

fn meta(i: usize) -> ItemMeta {
    ItemMeta {
        shard: Arc::from(if i.is_multiple_of(2) {
            "a.tar"
        } else {
            "b.tar"
        }),
        key: format!("k{i}"),
        label: Some((i % 1000) as i64),
        fg_fraction: Some(0.3),
        width: Some(64),
        height: Some(64),
        ..ItemMeta::new("".into(), String::new())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_item_variant_model_exactly_once(
        kinds in proptest::collection::vec(0u8..4, 0..30),
        batch in 1usize..9,
        variants in 1usize..4,
    ) {
        let tiny = crate::common::model("tiny");
        let models = vec![Model::load(&tiny, Device::Cpu, Precision::Fp32).unwrap()];
        let size = models[0].sidecar.input_size;
        let names: Vec<Arc<str>> = (0..variants).map(|v| Arc::from(format!("v{v}"))).collect();
        let counters = Arc::new(Counters::default());
        let mut inf = Inference::new(vec![Group::new(models, batch, Device::Cpu)], names, Device::Cpu, counters);
        let mut msgs = Vec::new();
        let mut emit = |m: SinkMsg| { msgs.push(m); true };
        let _g = tch::no_grad_guard();
        for (i, k) in kinds.iter().enumerate() {
            let item = match k {
                0 => Prepared::Filtered(meta(i)),
                1 => Prepared::Failed(meta(i), ItemError::NoBoxes),
                _ => Prepared::Ready(Arc::new(meta(i)), vec![vec![(i % 251) as u8; size * size * 3 * variants]]),
            };
            inf.push(item, &mut emit).unwrap();
        }
        inf.finish(&mut emit).unwrap();
        let mut rows: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut filtered = 0;
        for m in &msgs {
            match m {
                SinkMsg::Rows(rs) => for r in rs {
                    prop_assert_eq!(r.outcome.is_err(), kinds[r.meta.key[1..].parse::<usize>().unwrap()] == 1);
                    *rows.entry((r.meta.key.clone(), r.variant.to_string())).or_default() += 1;
                },
                SinkMsg::Filtered(_) => filtered += 1,
                SinkMsg::ShardRead { .. } => prop_assert!(false, "inference never reports shards"),
            }
        }
        prop_assert_eq!(filtered, kinds.iter().filter(|k| **k == 0).count());
        let expected = kinds.iter().filter(|k| **k != 0).count() * variants;
        prop_assert_eq!(rows.len(), expected);
        prop_assert!(rows.values().all(|n| *n == 1), "a row repeats");
    }
}

/// Distinct pseudo-random pixels per (item, variant), so a frame or label put in the wrong
/// batch row changes that row's prediction.
fn frames(i: usize, variants: usize, size: usize) -> Vec<u8> {
    let mut x = (i as u32 + 1).wrapping_mul(2_654_435_761);
    (0..variants * size * size * 3)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Runs `n` items of `variants` variants through two groups (tiny at 32 px, Lite0 at 224 px)
/// and returns every row's prediction by (key, variant, model).
fn predictions(
    overlap: bool,
    n: usize,
    variants: usize,
    batch: usize,
) -> BTreeMap<(String, String, String), String> {
    let load = |m: &str| Model::load(&crate::common::model(m), Device::Cpu, Precision::Fp32);
    let groups = vec![
        Group::new(vec![load("tiny").unwrap()], batch, Device::Cpu),
        Group::new(
            vec![load("efficientnet-lite0").unwrap()],
            batch,
            Device::Cpu,
        ),
    ];
    let sizes: Vec<usize> = groups
        .iter()
        .map(|g| g.models[0].sidecar.input_size)
        .collect();
    let names: Vec<Arc<str>> = (0..variants).map(|v| Arc::from(format!("v{v}"))).collect();
    let inf = Inference::new(groups, names, Device::Cpu, Arc::new(Counters::default()));
    let mut inf = if overlap { inf } else { inf.without_overlap() };
    let mut rows = BTreeMap::new();
    let mut emit = |m: SinkMsg| {
        if let SinkMsg::Rows(rs) = m {
            for r in rs {
                let p = r.outcome.unwrap();
                let key = (
                    r.meta.key.clone(),
                    r.variant.to_string(),
                    r.model.to_string(),
                );
                rows.insert(key, format!("{:?} {:?} {}", p.top5, p.top5_prob, p.p_true));
            }
        }
        true
    };
    let _g = tch::no_grad_guard();
    for i in 0..n {
        let pixels = sizes.iter().map(|&s| frames(i, variants, s)).collect();
        inf.push(Prepared::Ready(Arc::new(meta(i)), pixels), &mut emit)
            .unwrap();
    }
    inf.finish(&mut emit).unwrap();
    rows
}

/// The overlapped order (read back N−1 after queueing N) gives the same predictions, to
/// the bit, as reading every batch back at once; batch 37 spans items and takes the
/// multi-threaded fill.
#[test]
fn overlap_leaves_every_prediction_unchanged() {
    let (n, variants, batch) = (23, 3, 37);
    let plain = predictions(false, n, variants, batch);
    let overlapped = predictions(true, n, variants, batch);
    assert_eq!(plain.len(), n * variants * 2);
    assert_eq!(plain, overlapped);
    // Each row is its own frame's and label's: item 5's last variant, alone in a batch of
    // the same shape, predicts the same.
    let tiny = Model::load(&crate::common::model("tiny"), Device::Cpu, Precision::Fp32).unwrap();
    let s = tiny.sidecar.input_size;
    let frame = s * s * 3;
    let mut batch_px = vec![0u8; batch * frame];
    batch_px[..frame].copy_from_slice(&frames(5, variants, s)[2 * frame..]);
    let input = tch::Tensor::from_slice(&batch_px).view([batch as i64, s as i64, s as i64, 3]);
    let labels = tch::Tensor::from_slice(&vec![meta(5).label.unwrap(); batch]);
    let p = tiny
        .launch(&input, &labels)
        .unwrap()
        .collect("tiny")
        .unwrap()
        .predictions[0];
    let want = format!("{:?} {:?} {}", p.top5, p.top5_prob, p.p_true);
    assert_eq!(plain[&("k5".into(), "v2".into(), "tiny".into())], want);
    // Not vacuous: the predictions differ between images.
    let distinct: std::collections::HashSet<&String> = plain.values().collect();
    assert!(
        distinct.len() > n,
        "{} distinct predictions",
        distinct.len()
    );
}
