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

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

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

impl ClassMap {
    pub fn from_json(text: &str, origin: &str) -> Result<Self, String> {
        if let Ok(flat) = serde_json::from_str::<HashMap<String, i64>>(text) {
            return Self::from_flat(&flat, origin);
        }
        let raw: RawMap = serde_json::from_str(text).map_err(|e| e.to_string())?;
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
        Self::from_json(&text, &path.display().to_string()).map_err(|reason| FatalError::Input {
            path: path.to_path_buf(),
            reason: format!("class map: {reason}"),
        })
    }

    /// The coarse index of a fine label.
    pub fn coarse(&self, label: i64) -> Option<usize> {
        self.coarse.get(&label).copied()
    }

    pub fn len(&self) -> usize {
        self.classes.len()
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
