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
