//! The donor bank: other images' backgrounds for `mixed_same`, `mixed_rand`, `mixed_next`
//! and `worst_bg:K`.
//!
//! Pairing images with donors while streaming is the hard part: workers finish in any
//! order, shards are read concurrently, `--resume` skips finished shards and ranks see only
//! their share. A pool of "recent" backgrounds would make every row depend on all of that.
//! So the bank is fixed before the run, from the whole shard list (`--donor-shards`, default
//! the run's shards including finished ones), and every choice is a pure function of
//! (image key, class, seed):
//!
//! - **Bank**: for every donor class (the label, or its coarse class with `--class-map`),
//!   the `--donors-per-class` images that pass the same checks and filter as the run with
//!   the smallest `xxh3(key, seed ^ BANK_SALT)` — a seeded uniform sample of that class,
//!   bounded in memory (one `bg_tiled` crop per donor and preprocessing).
//! - `mixed_same`: among the bank's donors of the image's class, other than the image
//!   itself, the one with the smallest `xxh3(key 0 donor_key, seed ^ salt)`.
//! - `mixed_next`: the same over class `(class + 1) mod classes`.
//! - `mixed_rand`: "random" is uniform over the *other classes that have donors*, then
//!   uniform within the class: class number `xxh3(key, seed ^ salt) mod n` of the sorted
//!   other classes, then the smallest-hash donor in it.
//! - `worst_bg:K`: the texture set in its order, then donors of other classes by ascending
//!   `xxh3(key 0 donor_key, seed ^ salt)`, the first K.
//!
//! A slot without a candidate (no other image of that class in the bank, an unmapped label)
//! becomes a row with status `no_donor`. The scan that fills the bank is part of planning
//! ([`crate::stage::prepare::donor_scan`]: the bank is filled by prepare's own admission rule,
//! so this module depends on nothing of it): it reads every shard once more before the run (no decoding except
//! the chosen donors); its cost is in the log.

use std::collections::BTreeMap;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::item::RowError;

use crate::ops::variants::Variant;

/// Seeds the bank's per-class sample ([`crate::run::plan`] scans the shards with it).
pub const BANK_SALT: u64 = 0x646f_6e6f_725f_6261;
const SAME_SALT: u64 = 0x6d69_7865_645f_7361;
const RAND_SALT: u64 = 0x6d69_7865_645f_7261;
const NEXT_SALT: u64 = 0x6d69_7865_645f_6e65;
const WORST_SALT: u64 = 0x776f_7273_745f_6267;

/// One bank entry.
#[derive(Debug)]
pub struct Donor {
    pub key: Arc<str>,
    pub class: i64,
    /// `image:KEY`, written to the `background` column of the rows it serves.
    pub label: Arc<str>,
    /// Per preprocessing group, the donor's `bg_tiled` crop.
    backgrounds: Vec<Vec<u8>>,
}

impl Donor {
    pub fn new(key: &str, class: i64, backgrounds: Vec<Vec<u8>>) -> Self {
        Donor {
            key: key.into(),
            class,
            label: format!("image:{key}").into(),
            backgrounds,
        }
    }
}

/// What pairs one image with donors: its donor class (`None`: a label the class map
/// leaves out), how many donor classes there are, the seed and the run's variants.
#[derive(Debug, Clone, Copy)]
pub struct Pairing<'a> {
    pub class: Option<i64>,
    pub classes: i64,
    pub seed: u64,
    pub variants: &'a [Variant],
}

/// Where one output slot of an image gets its pixels.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotSource {
    /// The variant renders from the image alone.
    Own,
    /// The bank donor with this index.
    Donor(usize),
    /// Texture number `i` of the texture set.
    Texture(usize),
    /// No candidate: the slot's rows are errors.
    Missing(RowError),
}

impl SlotSource {
    pub fn error(&self) -> Option<RowError> {
        match self {
            SlotSource::Missing(e) => Some(e.clone()),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct DonorBank {
    pub donors: Vec<Donor>,
    /// Donor class -> donor indices, by ascending bank hash.
    by_class: BTreeMap<i64, Vec<usize>>,
    /// `texture:NAME` per texture of the set.
    texture_labels: Vec<Arc<str>>,
}

fn pair_hash(key: &str, donor: &str, seed: u64, salt: u64) -> u64 {
    let mut m = Vec::with_capacity(key.len() + donor.len() + 1);
    m.extend_from_slice(key.as_bytes());
    m.push(0);
    m.extend_from_slice(donor.as_bytes());
    xxh3_64_with_seed(&m, seed ^ salt)
}

fn no_donor(what: String) -> SlotSource {
    SlotSource::Missing(RowError {
        code: "no_donor",
        message: what,
    })
}

impl DonorBank {
    /// A bank of `donors` (in class, then bank-hash order) and the run's textures.
    pub fn new(donors: Vec<Donor>, texture_names: &[String]) -> Self {
        let mut bank = DonorBank {
            texture_labels: texture_names
                .iter()
                .map(|n| Arc::from(format!("texture:{n}")))
                .collect(),
            ..Default::default()
        };
        for d in donors {
            bank.by_class
                .entry(d.class)
                .or_default()
                .push(bank.donors.len());
            bank.donors.push(d);
        }
        bank
    }

    /// The donor's background at preprocessing group `group`.
    pub fn background(&self, donor: usize, group: usize) -> Option<&[u8]> {
        self.donors
            .get(donor)?
            .backgrounds
            .get(group)
            .map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.donors.len()
    }

    /// Donor classes with at least one donor.
    pub fn classes(&self) -> usize {
        self.by_class.len()
    }

    pub fn is_empty(&self) -> bool {
        self.donors.is_empty()
    }

    /// The label of a source, for the `background` column.
    /// The slot source for a recorded `background` value (`image:KEY`, `texture:NAME`,
    /// `None` for the image's own pixels).
    pub fn source_of(&self, recorded: Option<&str>) -> SlotSource {
        let Some(label) = recorded else {
            return SlotSource::Own;
        };
        if let Some(d) = self.donors.iter().position(|d| &*d.label == label) {
            return SlotSource::Donor(d);
        }
        if let Some(t) = self.texture_labels.iter().position(|t| &**t == label) {
            return SlotSource::Texture(t);
        }
        no_donor(format!("background {label} is not in the bank"))
    }

    pub fn source_label(&self, s: &SlotSource) -> Option<Arc<str>> {
        match s {
            SlotSource::Donor(d) => self.donors.get(*d).map(|d| d.label.clone()),
            SlotSource::Texture(t) => self.texture_labels.get(*t).cloned(),
            _ => None,
        }
    }

    fn smallest(&self, key: &str, class: i64, seed: u64, salt: u64) -> Option<usize> {
        self.by_class
            .get(&class)?
            .iter()
            .copied()
            .filter(|&d| &*self.donors[d].key != key)
            .min_by_key(|&d| (pair_hash(key, &self.donors[d].key, seed, salt), d))
    }

    /// `worst_bg:K`'s candidates: half textures, half donors of other classes (one side
    /// fills in when the other runs short), each side in the image's own hash order.
    fn worst_candidates(
        &self,
        key: &str,
        class: Option<i64>,
        k: usize,
        seed: u64,
    ) -> Vec<SlotSource> {
        let mut textures: Vec<(u64, usize)> = self
            .texture_labels
            .iter()
            .enumerate()
            .map(|(i, l)| (pair_hash(key, l, seed, WORST_SALT), i))
            .collect();
        textures.sort_unstable();
        let mut donors: Vec<(u64, usize)> = self
            .by_class
            .iter()
            .filter(|(&c, _)| Some(c) != class)
            .flat_map(|(_, ds)| ds.iter().copied())
            .map(|d| (pair_hash(key, &self.donors[d].key, seed, WORST_SALT), d))
            .collect();
        donors.sort_unstable();
        let half = k.div_ceil(2).min(textures.len());
        let d = (k - half).min(donors.len());
        let t = (k - d).min(textures.len());
        let mut out: Vec<SlotSource> = textures[..t]
            .iter()
            .map(|&(_, i)| SlotSource::Texture(i))
            .chain(donors[..d].iter().map(|&(_, i)| SlotSource::Donor(i)))
            .collect();
        let found = out.len();
        out.resize_with(k, || {
            no_donor(format!("worst_bg:{k}: only {found} candidate backgrounds"))
        });
        out
    }

    /// Every slot's source for an image of `label` (see the module rules).
    pub fn plan(&self, key: &str, label: i64, p: &Pairing) -> Vec<SlotSource> {
        let (class, seed) = (p.class, p.seed);
        let mut out = Vec::new();
        for v in p.variants {
            let missing = |what: &str| match class {
                Some(c) => no_donor(format!("no {what} donor for class {c} in the bank")),
                None => no_donor(format!("label {label} is in no class of the class map")),
            };
            match v {
                Variant::MixedSame => out.push(
                    class
                        .and_then(|c| self.smallest(key, c, seed, SAME_SALT))
                        .map_or_else(|| missing("same-class"), SlotSource::Donor),
                ),
                Variant::MixedNext => out.push(
                    class
                        .and_then(|c| {
                            let n = p.classes.max(1);
                            self.smallest(key, (c + 1).rem_euclid(n), seed, NEXT_SALT)
                        })
                        .map_or_else(|| missing("next-class"), SlotSource::Donor),
                ),
                Variant::MixedRand => {
                    let pick = class.and_then(|c| {
                        let mut others = self.by_class.keys().copied().filter(|&k| k != c);
                        let n = self.by_class.len() - usize::from(self.by_class.contains_key(&c));
                        let h = xxh3_64_with_seed(key.as_bytes(), seed ^ RAND_SALT);
                        let chosen = others.nth((h % n.max(1) as u64) as usize)?;
                        self.smallest(key, chosen, seed, RAND_SALT)
                    });
                    out.push(pick.map_or_else(|| missing("other-class"), SlotSource::Donor));
                }
                Variant::WorstBg { k } => out.extend(self.worst_candidates(key, class, *k, seed)),
                _ => out.push(SlotSource::Own),
            }
        }
        out
    }
}
