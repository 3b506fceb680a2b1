//! Is the output complete? Every folder with run files is checked on its own: each rank of
//! a split run wrote a plan (`_rank-R-of-W.json`, the shards it was given) and a manifest
//! (the shards it finished). Missing ranks and unfinished shards become warnings: the
//! numbers are still computed from what is there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::run::ranks::{parse_tag, Plan};
use crate::sink::manifest::{self, MANIFEST};
use crate::source::tar_reader::ShardContent;

fn dirs_with_runs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut has_run = false;
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            dirs_with_runs(&p, out);
        } else if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
            has_run |= name.starts_with("_manifest") && name.ends_with(".jsonl")
                || name.starts_with("_rank-") && name.ends_with(".json");
        }
    }
    if has_run {
        out.push(dir.to_path_buf());
    }
}

/// Every shard a manifest under `dir` (recursively) records as finished, with the size and
/// hash its run read (`None` for a shard that could not be read to its end).
pub fn recorded_shards(dir: &Path) -> Vec<(String, Option<ShardContent>)> {
    let mut dirs = Vec::new();
    dirs_with_runs(dir, &mut dirs);
    dirs.sort();
    let mut out = Vec::new();
    for d in &dirs {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("_manifest") && name.ends_with(".jsonl") {
                let entries = manifest::read(d, &name).unwrap_or_default();
                out.extend(entries.into_iter().map(|e| (e.shard, e.content)));
            }
        }
    }
    out
}

/// `aggregate --shards` draws images only from shards the run read, unchanged: each given
/// shard must be recorded by a manifest under the input (matched by file name, so the
/// folder may have moved) with the same size and hash. Returns what differs, one line per
/// shard, in the order given; empty when all match. Hashes every given shard that a run
/// recorded (in parallel: about the time to read them once).
pub fn changed_shards(
    given: &[PathBuf],
    recorded: &[(String, Option<ShardContent>)],
) -> Vec<String> {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut by_name: BTreeMap<String, Vec<Option<&ShardContent>>> = BTreeMap::new();
    for (shard, content) in recorded {
        if let Some(n) = name(Path::new(shard)) {
            by_name.entry(n).or_default().push(content.as_ref());
        }
    }
    let known: Vec<&PathBuf> = (given.iter())
        .filter(|p| name(p).is_some_and(|n| by_name.contains_key(&n)))
        .collect();
    let now = crate::source::tar_reader::contents(known.iter().map(|p| p.as_path()));
    let now: BTreeMap<&PathBuf, _> = known.into_iter().zip(now).collect();
    let mut out = Vec::new();
    for p in given {
        let Some(was) = name(p).and_then(|n| by_name.get(&n)) else {
            out.push(format!(
                "{}: no run under the input read a shard of this name",
                p.display()
            ));
            continue;
        };
        match &now[p] {
            Err(e) => out.push(format!("{}: unreadable ({e})", p.display())),
            Ok(c) if was.iter().any(|w| w == &Some(c)) => {}
            Ok(_) if was.iter().all(Option::is_none) => {}
            Ok(c) => {
                let then = was.iter().flatten().next().expect("one is Some");
                out.push(format!(
                    "{}: {} bytes, xxh3 {}, but the run read {} bytes, xxh3 {}",
                    p.display(),
                    c.bytes,
                    c.xxh3,
                    then.bytes,
                    then.xxh3
                ));
            }
        }
    }
    out
}

/// Warnings about missing ranks and unfinished shards under `dir` (recursively).
pub fn check(dir: &Path) -> Vec<String> {
    let mut dirs = Vec::new();
    dirs_with_runs(dir, &mut dirs);
    dirs.sort();
    dirs.iter().flat_map(|d| check_one(d)).collect()
}

fn check_one(dir: &Path) -> Vec<String> {
    // (world size, rank) -> plan / finished shards
    let mut plans: BTreeMap<(usize, usize), Plan> = BTreeMap::new();
    let mut done: BTreeMap<(usize, usize), BTreeSet<String>> = BTreeMap::new();
    let mut warnings = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("_rank-") && name.ends_with(".json") {
            match std::fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Plan>(&b).ok())
            {
                Some(plan) => {
                    plans.insert((plan.world_size, plan.rank), plan);
                }
                None => warnings.push(format!("{}: unreadable rank plan", e.path().display())),
            }
        } else if name.starts_with("_manifest") && name.ends_with(".jsonl") {
            let (rank, world) = if name == MANIFEST {
                (0, 1)
            } else {
                match parse_tag(&name) {
                    Some(t) => t,
                    None => continue,
                }
            };
            let shards = manifest::read(dir, &name)
                .map(|es| es.into_iter().map(|e| e.shard).collect())
                .unwrap_or_default();
            done.insert((world, rank), shards);
        }
    }
    let worlds: BTreeSet<usize> = plans.keys().chain(done.keys()).map(|k| k.0).collect();
    if worlds.len() > 1 {
        warnings.push(format!(
            "{}: files of runs split {} ways are mixed in one folder",
            dir.display(),
            worlds
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        ));
    }
    for &w in &worlds {
        for r in 0..w {
            let who = if w == 1 {
                dir.display().to_string()
            } else {
                format!("{}: rank {r} of {w}", dir.display())
            };
            match (plans.get(&(w, r)), done.get(&(w, r))) {
                (None, None) => warnings.push(format!(
                    "{who} left no plan and no manifest: it never ran, or ran elsewhere; its shards are missing"
                )),
                (None, Some(_)) => warnings.push(format!(
                    "{who} has a manifest but no plan: cannot tell whether it finished"
                )),
                (Some(plan), finished) => {
                    let empty = BTreeSet::new();
                    let finished = finished.unwrap_or(&empty);
                    let missing = plan.shards.iter().filter(|s| !finished.contains(*s)).count();
                    if missing > 0 {
                        warnings.push(format!(
                            "{who}: {missing} of {} shards not complete (rerun it with --resume)",
                            plan.shards.len()
                        ));
                    }
                }
            }
        }
    }
    warnings
}

/// What the run folders under a directory say about their runs: identities (`_run.json`)
/// and the manifests' counts.
#[derive(Debug, Default)]
pub struct RunFacts {
    /// Each distinct identity, with the first folder it was found in; an unreadable one
    /// (another bgstream version) is an error message.
    pub identities: Vec<(PathBuf, Result<crate::run::identity::RunIdentity, String>)>,
    pub shards: u64,
    pub samples: u64,
    pub filtered: u64,
    pub failed: u64,
}

impl RunFacts {
    /// The first readable run identity.
    pub fn identity(&self) -> Option<&crate::run::identity::RunIdentity> {
        self.identities.iter().find_map(|(_, id)| id.as_ref().ok())
    }
}

/// Reads [`RunFacts`] under `dir` (recursively).
pub fn facts(dir: &Path) -> RunFacts {
    let mut dirs = Vec::new();
    dirs_with_runs(dir, &mut dirs);
    dirs.sort();
    let mut f = RunFacts::default();
    for d in &dirs {
        let run = d.join(manifest::RUN);
        if run.is_file() {
            let id = std::fs::read(&run)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<crate::run::identity::RunIdentity>(&b).map_err(|e| {
                        format!(
                            "{}: {e} (written by another bgstream version?)",
                            run.display()
                        )
                    })
                });
            if !f.identities.iter().any(|(_, known)| known == &id) {
                f.identities.push((d.clone(), id));
            }
        }
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("_manifest") && name.ends_with(".jsonl") {
                for entry in manifest::read(d, &name).unwrap_or_default() {
                    f.shards += 1;
                    f.samples += entry.samples;
                    f.filtered += entry.filtered;
                    f.failed += entry.failed;
                }
            }
        }
    }
    f
}
