//! Coarse class maps (ImageNet-9 style): fine labels grouped into super-classes, used by
//! `--class-map` for donor classes at run time and for coarse accuracies in `aggregate`.
//!
//! Format (`schemas/class-map.schema.json`):
//! `{"name": "...", "classes": [{"name": "dog", "labels": [151, "152-268"]}, ...]}` — labels
//! are indices or inclusive `"a-b"` ranges; the order of `classes` is the coarse index (so
//! `mixed_next` takes the next entry). A label in no class is unmapped.
//!
//! The flat form of the ImageNet-9 backgrounds challenge (`in_to_in9.json`:
//! `{"0": -1, "151": 0, ...}`, fine label -> coarse index, -1 unmapped) is read as well; its
//! classes are then named by their index.
//!
//! ImageNet-9 labels are another matter: a shard of `bgstream shard --format imagenet9`
//! records `"label_space": "in9"` ([`LabelSpace`]), and a 1,000-class model's predictions on
//! it are mapped through the built-in [`in9`] table before they are compared ([`Scoring`]).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::FatalError;

#[derive(Debug, Clone, PartialEq)]
pub struct ClassMap {
    pub name: String,
    pub classes: Vec<String>,
    coarse: HashMap<i64, usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    #[serde(default)]
    name: Option<String>,
    /// Free text for readers; allowed, not used.
    #[serde(default, rename = "about")]
    _about: Option<serde::de::IgnoredAny>,
    classes: Vec<RawClass>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    name: String,
    labels: Vec<LabelSpec>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LabelSpec {
    One(i64),
    Range(String),
}

/// Why a class map is refused.
#[derive(Debug, thiserror::Error)]
pub enum ClassMapError {
    /// Not JSON of either form (the error of the nested form).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// JSON of the right shape that does not make a class map: the reason.
    #[error("{0}")]
    Invalid(String),
}

impl ClassMap {
    pub fn from_json(text: &str, origin: &str) -> Result<Self, ClassMapError> {
        if let Ok(flat) = serde_json::from_str::<HashMap<String, i64>>(text) {
            return Self::from_flat(&flat, origin).map_err(ClassMapError::Invalid);
        }
        let raw: RawMap = serde_json::from_str(text)?;
        Self::from_raw(raw, origin).map_err(ClassMapError::Invalid)
    }

    fn from_raw(raw: RawMap, origin: &str) -> Result<Self, String> {
        if raw.classes.is_empty() {
            return Err("no classes".into());
        }
        let mut coarse = HashMap::new();
        let mut names = Vec::new();
        for (ci, c) in raw.classes.iter().enumerate() {
            if names.contains(&c.name) {
                return Err(format!("class {:?} listed twice", c.name));
            }
            names.push(c.name.clone());
            for spec in &c.labels {
                let (lo, hi) = match spec {
                    LabelSpec::One(v) => (*v, *v),
                    LabelSpec::Range(s) => s
                        .split_once('-')
                        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
                        .filter(|(a, b): &(i64, i64)| a <= b)
                        .ok_or_else(|| {
                            format!("class {:?}: bad range {s:?} (want \"a-b\")", c.name)
                        })?,
                };
                if lo < 0 {
                    return Err(format!("class {:?}: negative label {lo}", c.name));
                }
                for label in lo..=hi {
                    if let Some(prev) = coarse.insert(label, ci) {
                        if prev != ci {
                            return Err(format!(
                                "label {label} is in both {:?} and {:?}",
                                raw.classes[prev].name, c.name
                            ));
                        }
                    }
                }
            }
        }
        Ok(ClassMap {
            name: raw.name.unwrap_or_else(|| origin.to_string()),
            classes: names,
            coarse,
        })
    }

    fn from_flat(flat: &HashMap<String, i64>, origin: &str) -> Result<Self, String> {
        let mut coarse = HashMap::new();
        for (k, &v) in flat {
            let label: i64 = k
                .trim()
                .parse()
                .map_err(|_| format!("key {k:?} is not a class index"))?;
            if v >= 0 {
                coarse.insert(label, v as usize);
            }
        }
        let n = coarse.values().max().map_or(0, |m| m + 1);
        if n == 0 {
            return Err("no label maps to a class".into());
        }
        Ok(ClassMap {
            name: origin.to_string(),
            classes: (0..n).map(|i| i.to_string()).collect(),
            coarse,
        })
    }

    pub fn read(path: &Path) -> Result<Self, FatalError> {
        let text = std::fs::read_to_string(path).map_err(|e| FatalError::io(path, e))?;
        Self::from_json(&text, &path.display().to_string()).map_err(|e| match e {
            ClassMapError::Json(e) => FatalError::input_from(path, "class map", e),
            ClassMapError::Invalid(reason) => FatalError::Input {
                path: path.to_path_buf(),
                reason: format!("class map: {reason}"),
            },
        })
    }

    /// The coarse index of a fine label.
    pub fn coarse(&self, label: i64) -> Option<usize> {
        self.coarse.get(&label).copied()
    }

    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// The largest fine label the map sends to a coarse class.
    pub fn max_label(&self) -> Option<i64> {
        self.coarse.keys().max().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
}

/// Names of fine classes for `aggregate --class-names`: line `n` names class `n`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassNames {
    names: Vec<String>,
}

impl ClassNames {
    /// The built-in ImageNet-1k names (first WordNet name of each class).
    pub fn imagenet() -> Self {
        ClassNames {
            names: (0..1000)
                .map(|i| imagenet::name(i).unwrap_or_default().to_string())
                .collect(),
        }
    }

    /// `imagenet`, or a file with one class per line: `wnid name, synonyms` (synsets.txt,
    /// LOC_synset_mapping.txt: the first name after the wnid) or just a name.
    pub fn read(spec: &Path) -> Result<Self, FatalError> {
        if spec.as_os_str() == "imagenet" {
            return Ok(Self::imagenet());
        }
        let text = std::fs::read_to_string(spec).map_err(|e| FatalError::io(spec, e))?;
        Ok(Self::parse(&text))
    }

    fn parse(text: &str) -> Self {
        let is_wnid = |t: &str| {
            t.len() == 9 && t.starts_with('n') && t[1..].bytes().all(|b| b.is_ascii_digit())
        };
        let names = text
            .lines()
            .map(|l| {
                let l = l.trim();
                let rest = match l.split_once(char::is_whitespace) {
                    Some((first, rest)) if is_wnid(first) => rest,
                    _ => l,
                };
                rest.split(',')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .collect();
        ClassNames { names }
    }

    /// The names a reader sees for these models: `spec` (`imagenet`, `none`, a file), else
    /// ImageNet's when every model has 1,000 classes (or there is no model).
    pub fn for_models(
        spec: Option<&Path>,
        num_classes: &[i64],
    ) -> Result<Option<Self>, FatalError> {
        match spec {
            Some(p) if p.as_os_str() == "none" => Ok(None),
            Some(p) => Self::read(p).map(Some),
            None if num_classes.iter().all(|&n| n == 1000) => Ok(Some(Self::imagenet())),
            None => Ok(None),
        }
    }

    pub fn name(&self, label: i64) -> Option<&str> {
        let n = self.names.get(usize::try_from(label).ok()?)?;
        (!n.is_empty()).then_some(n.as_str())
    }

    /// The nine ImageNet-9 class names ("dog" for 0).
    pub fn in9() -> Self {
        ClassNames {
            names: in9::NAMES.iter().map(|n| n.to_string()).collect(),
        }
    }
}

/// What a sample's label numbers: the model's own classes (no `label_space` in its JSON),
/// or one of the label spaces bgstream knows how to score a model against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelSpace {
    /// ImageNet-9: 0 = dog … 8 = fish ([`in9::FOLDERS`]).
    #[serde(rename = "in9")]
    In9,
}

/// How a row's prediction is compared with its label (the `scoring` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// The label is one of the model's classes: top-k compared as they are.
    Direct,
    /// An ImageNet-9 label and a 9-class model: compared as they are (`in9_eval.py --in9`).
    In9,
    /// An ImageNet-9 label and a 1,000-class ImageNet model: each predicted class is mapped
    /// through [`in9::to_in9`] first (`in9_eval.py` without `--in9`); a class outside the
    /// nine (−1) is wrong. Top-5 is right when any of the five maps to the label, and
    /// `p_true` is the probability of the label's IN-9 class: the sum over its fine classes.
    InToIn9,
    /// An ImageNet-1k label and a model with a class map (its sidecar's `class_map`): the
    /// output that covers the label, compared with the model's top-k. `None`: no output
    /// covers it; the row is recorded, its correctness is null and it counts in no accuracy.
    ClassMap(Option<i64>),
}

impl Scoring {
    /// The rule for a sample of `space` and a model of `num_classes`; an ImageNet-9 label
    /// means nothing to a model of another class count, which is an error.
    pub fn for_model(space: Option<LabelSpace>, num_classes: i64) -> Result<Self, String> {
        match (space, num_classes) {
            (None, _) => Ok(Scoring::Direct),
            (Some(LabelSpace::In9), 9) => Ok(Scoring::In9),
            (Some(LabelSpace::In9), 1000) => Ok(Scoring::InToIn9),
            (Some(LabelSpace::In9), n) => Err(format!(
                "an ImageNet-9 label is scored for a 9-class model or a 1,000-class ImageNet \
                 model (through in_to_in9); this model has {n} classes"
            )),
        }
    }

    /// The `scoring` column's value.
    pub fn name(self) -> &'static str {
        match self {
            Scoring::Direct => "direct",
            Scoring::In9 => "in9",
            Scoring::InToIn9 => "in_to_in9",
            Scoring::ClassMap(_) => "class_map",
        }
    }

    /// The rule of a `scoring` value (a class map's output is not in the name).
    pub fn parse(name: &str) -> Option<Self> {
        [
            Scoring::Direct,
            Scoring::In9,
            Scoring::InToIn9,
            Scoring::ClassMap(None),
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// Whether the label is ImageNet-9's (whatever the model).
    pub fn is_in9(self) -> bool {
        matches!(self, Scoring::In9 | Scoring::InToIn9)
    }

    /// (top-1 right, top-5 right) for the top-k classes `top` (best first) and `label`.
    pub fn hits(self, top: &[i64], label: i64) -> (bool, bool) {
        let label = match self {
            Scoring::ClassMap(output) => output,
            Scoring::Direct | Scoring::In9 | Scoring::InToIn9 => Some(label),
        };
        let class = |c: i64| match self {
            Scoring::InToIn9 => in9::to_in9(c),
            Scoring::Direct | Scoring::In9 | Scoring::ClassMap(_) => Some(c),
        };
        let right = |c: &i64| label.is_some() && class(*c) == label;
        (top.first().is_some_and(right), top.iter().any(right))
    }
}

/// ImageNet-9 (Xiao et al. 2020, the backgrounds challenge): its nine classes and its
/// published ImageNet-1k -> IN-9 table (`assets/in9/`, source and commit in its README).
pub mod in9 {
    use std::sync::OnceLock;

    /// The class folders of the released data, in IN-9 index order (two hold a space).
    pub const FOLDERS: [&str; 9] = [
        "00_dog",
        "01_bird",
        "02_wheeled vehicle",
        "03_reptile",
        "04_carnivore",
        "05_insect",
        "06_musical instrument",
        "07_primate",
        "08_fish",
    ];

    /// The class names, in index order.
    pub const NAMES: [&str; 9] = [
        "dog",
        "bird",
        "wheeled vehicle",
        "reptile",
        "carnivore",
        "insect",
        "musical instrument",
        "primate",
        "fish",
    ];

    /// The table, byte for byte as MadryLab/backgrounds_challenge publishes it.
    pub const TABLE_JSON: &str = include_str!("../assets/in9/in_to_in9.json");

    /// The IN-9 class of each ImageNet class, −1 outside the nine.
    pub fn table() -> &'static [i8; 1000] {
        static TABLE: OnceLock<[i8; 1000]> = OnceLock::new();
        TABLE.get_or_init(|| {
            let flat: std::collections::HashMap<String, i64> =
                serde_json::from_str(TABLE_JSON).expect("the embedded table is JSON");
            let mut t = [-2i8; 1000];
            for (k, v) in flat {
                let k: usize = k.parse().expect("class index keys");
                t[k] = i8::try_from(v).expect("values -1..=8");
            }
            assert!(t.iter().all(|&v| (-1..=8).contains(&v)), "1,000 entries");
            t
        })
    }

    /// The IN-9 class of ImageNet class `class`; `None` outside the nine (and outside
    /// 0..1000).
    pub fn to_in9(class: i64) -> Option<i64> {
        let v = *table().get(usize::try_from(class).ok()?)?;
        (v >= 0).then_some(i64::from(v))
    }

    /// The IN-9 index of a released class folder (`"02_wheeled vehicle"` -> 2).
    pub fn folder_index(name: &str) -> Option<usize> {
        FOLDERS.iter().position(|f| *f == name)
    }
}

/// The 1,000 ImageNet-1k classes, compiled in (`assets/imagenet/classes.tsv`): class `n` is
/// the `n`-th wnid in sorted order, as torchvision and timm number them.
pub mod imagenet {
    use std::collections::HashMap;
    use std::sync::OnceLock;

    const TABLE: &str = include_str!("../assets/imagenet/classes.tsv");

    /// `(wnid, names)` per class, in class order.
    pub fn classes() -> &'static [(&'static str, &'static str)] {
        static CLASSES: OnceLock<Vec<(&str, &str)>> = OnceLock::new();
        CLASSES.get_or_init(|| {
            TABLE
                .lines()
                .map(|l| l.split_once('\t').expect("wnid<TAB>names"))
                .collect()
        })
    }

    /// The class index of a wnid.
    pub fn index(wnid: &str) -> Option<usize> {
        static INDEX: OnceLock<HashMap<&str, usize>> = OnceLock::new();
        INDEX
            .get_or_init(|| {
                classes()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.0, i))
                    .collect()
            })
            .get(wnid)
            .copied()
    }

    /// The wnids in class order.
    pub fn wnids() -> Vec<String> {
        classes().iter().map(|c| c.0.to_string()).collect()
    }

    /// The short name of a class: the first of its WordNet names ("tench" for 0).
    pub fn name(label: i64) -> Option<&'static str> {
        let (_, names) = classes().get(usize::try_from(label).ok()?)?;
        names.split(',').next().map(str::trim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_from_synsets_or_plain_lines() {
        let n =
            ClassNames::parse("n01440764 tench, Tinca tinca\nn01443537 goldfish\n\nplain dog\n");
        assert_eq!(
            (n.name(0), n.name(1), n.name(2), n.name(3), n.name(4)),
            (
                Some("tench"),
                Some("goldfish"),
                None,
                Some("plain dog"),
                None
            )
        );
        assert_eq!(ClassNames::imagenet().name(1), Some("goldfish"));
    }

    #[test]
    fn imagenet_classes_are_the_sorted_wnids() {
        let c = imagenet::classes();
        assert_eq!(c.len(), 1000);
        assert!(c.windows(2).all(|w| w[0].0 < w[1].0), "sorted, no repeats");
        assert_eq!(c[0].0, "n01440764");
        assert_eq!(imagenet::name(0), Some("tench"));
        assert_eq!(imagenet::name(999), Some("toilet tissue"));
        assert_eq!(imagenet::index("n15075141"), Some(999));
        assert_eq!(
            (imagenet::index("n00000000"), imagenet::name(1000)),
            (None, None)
        );
        assert_eq!(imagenet::name(-1), None);
    }

    #[test]
    fn in9_table_is_the_published_one() {
        // The published file, unmodified (assets/in9/README.md gives its source).
        use sha2::Digest;
        let digest = sha2::Sha256::digest(in9::TABLE_JSON.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5b72ab44c804129744f5dff9372d8048c3b85da38d48385d73686ee0b0e7b638"
        );
        let mut per_class = [0usize; 10];
        for c in 0..1000 {
            per_class[in9::to_in9(c).map_or(9, |v| v as usize)] += 1;
        }
        assert_eq!(per_class, [116, 52, 42, 36, 35, 27, 26, 20, 16, 630]);
        // Chihuahua is a dog, tench a fish, a violin an instrument; a toilet tissue none.
        let of = |wnid| in9::to_in9(imagenet::index(wnid).unwrap() as i64);
        assert_eq!(of("n02085620"), Some(0));
        assert_eq!(of("n01440764"), Some(8));
        assert_eq!(of("n04536866"), Some(6));
        assert_eq!(of("n15075141"), None);
        assert_eq!((in9::to_in9(-1), in9::to_in9(1000)), (None, None));
        assert_eq!(in9::folder_index("06_musical instrument"), Some(6));
        assert_eq!(ClassNames::in9().name(8), Some("fish"));
    }

    #[test]
    fn scoring_rules() {
        let tench = 0; // IN-9 fish (8); Chihuahua (151) is a dog (0); 999 is in none.
        assert_eq!(Scoring::InToIn9.hits(&[tench, 151], 8), (true, true));
        assert_eq!(Scoring::InToIn9.hits(&[999, 151], 0), (false, true));
        assert_eq!(Scoring::InToIn9.hits(&[999], 0), (false, false));
        // Compared directly, the same numbers mean other things.
        assert_eq!(Scoring::Direct.hits(&[tench, 151], 8), (false, false));
        assert_eq!(Scoring::In9.hits(&[8, 0], 8), (true, true));
        assert_eq!(Scoring::Direct.hits(&[], 0), (false, false));
        let in9 = Some(LabelSpace::In9);
        assert_eq!(Scoring::for_model(in9, 1000), Ok(Scoring::InToIn9));
        assert_eq!(Scoring::for_model(in9, 9), Ok(Scoring::In9));
        assert_eq!(Scoring::for_model(None, 9), Ok(Scoring::Direct));
        let err = Scoring::for_model(in9, 101).unwrap_err();
        assert!(err.contains("101 classes"), "{err}");
        for s in [
            Scoring::Direct,
            Scoring::In9,
            Scoring::InToIn9,
            Scoring::ClassMap(None),
        ] {
            assert_eq!(Scoring::parse(s.name()), Some(s));
        }
        // A class map's rule compares with the covering output; no output, no hit.
        assert_eq!(Scoring::ClassMap(Some(3)).hits(&[1, 3], 151), (false, true));
        assert_eq!(Scoring::ClassMap(Some(1)).hits(&[1], 1), (true, true));
        assert_eq!(Scoring::ClassMap(None).hits(&[0, 1], 0), (false, false));
    }

    #[test]
    fn ranges_and_order() {
        let m = ClassMap::from_json(
            r#"{"name": "t", "classes": [{"name": "a", "labels": [1, "3-5"]}, {"name": "b", "labels": [2]}]}"#,
            "x",
        )
        .unwrap();
        assert_eq!(m.coarse(4), Some(0));
        assert_eq!(m.coarse(2), Some(1));
        assert_eq!(m.coarse(6), None);
        assert_eq!(m.classes, ["a", "b"]);
        let flat = ClassMap::from_json(r#"{"0": -1, "1": 1, "2": 0}"#, "in9").unwrap();
        assert_eq!(
            (flat.coarse(0), flat.coarse(1), flat.len()),
            (None, Some(1), 2)
        );
        for bad in [
            r#"{"classes": []}"#,
            r#"{"classes": [{"name": "a", "labels": ["5-3"]}]}"#,
            r#"{"classes": [{"name": "a", "labels": [1]}, {"name": "b", "labels": [1]}]}"#,
            r#"{"classes": [{"name": "a", "labels": [1]}, {"name": "a", "labels": [2]}]}"#,
        ] {
            assert!(ClassMap::from_json(bad, "x").is_err(), "{bad}");
        }
    }
}
