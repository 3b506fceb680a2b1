//! Scale-out without a home-made cluster: a run is split over `W` ranks (processes) that
//! share one `--out` and never talk to each other. Slurm and torchrun launch them; bgstream
//! only reads who it is.
//!
//! - **Who am I**: `--rank R --world-size W`, else torchrun's `RANK`/`WORLD_SIZE`, else
//!   Slurm's `SLURM_PROCID`/`SLURM_NTASKS`, else rank 0 of 1. The GPU of a rank is
//!   `cuda:LOCAL_RANK` (torchrun) or `cuda:SLURM_LOCALID` (Slurm) when `--device` is `auto`
//!   or `cuda`, modulo the GPUs the process sees (one process per GPU).
//! - **Which shards**: the run's shard list, expanded and sorted as every rank does it
//!   identically; shard number `i` belongs to rank `i mod W`.
//! - **Which files**: a rank writes the part files of its own shards (named after the shard,
//!   so ranks never collide), its own manifest `_manifest.rank-RRRRR-of-WWWWW.jsonl` and its
//!   plan `_rank-RRRRR-of-WWWWW.json` (the shards it was given), and only ever deletes files
//!   of its own shards. With `W = 1` the manifest keeps its plain name `_manifest.jsonl`.
//! - **Together**: `bgstream aggregate` over the folder reads every rank's files and warns
//!   when a rank's plan or manifest is missing or a shard is not complete.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::FatalError;

/// This process's place in the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rank {
    pub rank: usize,
    pub world_size: usize,
    /// The process's index on its node (picks the GPU).
    pub local_rank: Option<usize>,
    /// Where the rank came from: `flags`, `torchrun`, `slurm` or `single`.
    pub source: &'static str,
}

impl Rank {
    pub const SINGLE: Rank = Rank {
        rank: 0,
        world_size: 1,
        local_rank: None,
        source: "single",
    };

    /// Resolves the rank from the flags, then the environment (`env` looks a variable up).
    pub fn detect(
        rank: Option<usize>,
        world_size: Option<usize>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Rank, FatalError> {
        let num = |name: &str| -> Result<Option<usize>, FatalError> {
            env(name)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        FatalError::Config(format!("{name}={v:?} is not a non-negative integer"))
                    })
                })
                .transpose()
        };
        let local = match num("LOCAL_RANK")? {
            Some(l) => Some(l),
            None => num("SLURM_LOCALID")?,
        };
        if world_size == Some(0) {
            return Err(FatalError::Usage(
                "--world-size must be at least 1 (the number of processes sharing the run)".into(),
            ));
        }
        let (rank, world_size, source) = match (rank, world_size) {
            (Some(r), Some(w)) => (r, w, "flags"),
            (None, None) => match (num("RANK")?, num("WORLD_SIZE")?) {
                (Some(r), Some(w)) => (r, w, "torchrun"),
                _ => match (num("SLURM_PROCID")?, num("SLURM_NTASKS")?) {
                    (Some(r), Some(w)) => (r, w, "slurm"),
                    _ => {
                        return Ok(Rank {
                            local_rank: local,
                            ..Rank::SINGLE
                        })
                    }
                },
            },
            _ => {
                return Err(FatalError::Config(
                    "--rank and --world-size go together".into(),
                ))
            }
        };
        if world_size == 0 {
            return Err(FatalError::Config(format!(
                "a world size of 0 (from {source}) is not a run: it needs at least 1 rank"
            )));
        }
        if rank >= world_size {
            return Err(FatalError::Config(format!(
                "rank {rank} is outside a world of size {world_size} (from {source})"
            )));
        }
        Ok(Rank {
            rank,
            world_size,
            local_rank: local,
            source,
        })
    }

    /// From the process environment.
    pub fn from_env(rank: Option<usize>, world_size: Option<usize>) -> Result<Rank, FatalError> {
        Self::detect(rank, world_size, |k| std::env::var(k).ok())
    }

    /// This rank's shards: number `i` of the full list goes to rank `i mod W`.
    pub fn assign<T: Clone>(&self, all: &[T]) -> Vec<T> {
        all.iter()
            .enumerate()
            .filter(|(i, _)| i % self.world_size == self.rank)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// `-RRRRR-of-WWWWW`, the suffix of this rank's own files.
    pub fn tag(&self) -> String {
        format!("rank-{:05}-of-{:05}", self.rank, self.world_size)
    }

    /// This rank's manifest: `_manifest.jsonl` alone, else one per rank.
    pub fn manifest_name(&self) -> String {
        if self.world_size == 1 {
            crate::sink::manifest::MANIFEST.to_string()
        } else {
            format!("_manifest.{}.jsonl", self.tag())
        }
    }

    /// The plan file: which shards this rank was given.
    pub fn plan_name(&self) -> String {
        format!("_{}.json", self.tag())
    }
}

/// What a rank was asked to do and with what, written when it starts
/// (`_rank-R-of-W.json`): what may differ between ranks or reruns without changing a row
/// (the rest is the identity, `_run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub rank: usize,
    pub world_size: usize,
    pub shards: Vec<String>,
    /// The models' files as this rank loaded them (absolute).
    #[serde(default)]
    pub model_paths: Vec<String>,
    #[serde(default)]
    pub devices: Vec<String>,
}

impl Plan {
    pub fn new(rank: &Rank, shards: &[PathBuf]) -> Self {
        Plan {
            rank: rank.rank,
            world_size: rank.world_size,
            shards: shards.iter().map(|p| p.display().to_string()).collect(),
            model_paths: Vec::new(),
            devices: Vec::new(),
        }
    }

    pub fn write(&self, dir: &Path, rank: &Rank) -> Result<(), FatalError> {
        let json = serde_json::to_vec_pretty(self).expect("json");
        crate::atomic::write_file(&dir.join(rank.plan_name()), &json)
    }
}

/// Parses `_rank-RRRRR-of-WWWWW.json` / `_manifest.rank-RRRRR-of-WWWWW.jsonl` names.
pub fn parse_tag(name: &str) -> Option<(usize, usize)> {
    let start = name.find("rank-")? + 5;
    let rest = &name[start..];
    let (r, rest) = rest.split_once("-of-")?;
    let w: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((r.parse().ok()?, w.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn flags_then_torchrun_then_slurm() {
        let all = [
            ("RANK", "2"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
        ];
        let r = Rank::detect(Some(0), Some(3), env(&all)).unwrap();
        assert_eq!((r.rank, r.world_size, r.source), (0, 3, "flags"));
        let r = Rank::detect(None, None, env(&all)).unwrap();
        assert_eq!(
            (r.rank, r.world_size, r.local_rank, r.source),
            (2, 4, Some(1), "torchrun")
        );
        let r = Rank::detect(None, None, env(&all[3..])).unwrap();
        assert_eq!((r.rank, r.world_size, r.source), (5, 8, "slurm"));
        let r = Rank::detect(None, None, env(&[("SLURM_LOCALID", "3")])).unwrap();
        assert_eq!((r.rank, r.world_size, r.local_rank), (0, 1, Some(3)));
        assert!(Rank::detect(Some(3), Some(3), env(&[])).is_err());
        assert!(Rank::detect(Some(1), None, env(&[])).is_err());
        assert!(Rank::detect(None, None, env(&[("RANK", "x"), ("WORLD_SIZE", "2")])).is_err());
        // A zero world says so, given alone, with a rank, or from the environment.
        for (r, w, e) in [(None, Some(0), &[][..]), (Some(0), Some(0), &[])] {
            let msg = Rank::detect(r, w, env(e)).unwrap_err().to_string();
            assert!(msg.contains("--world-size must be at least 1"), "{msg}");
        }
        let msg = Rank::detect(None, None, env(&[("RANK", "0"), ("WORLD_SIZE", "0")]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("world size of 0 (from torchrun)"), "{msg}");
    }

    #[test]
    fn shards_split_round_robin_and_cover_everything_once() {
        let all: Vec<usize> = (0..7).collect();
        for w in 1..5 {
            let mut seen: Vec<usize> = (0..w)
                .flat_map(|r| {
                    Rank {
                        rank: r,
                        world_size: w,
                        local_rank: None,
                        source: "flags",
                    }
                    .assign(&all)
                })
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, all, "world {w}");
        }
        let r = Rank {
            rank: 1,
            world_size: 3,
            local_rank: None,
            source: "flags",
        };
        assert_eq!(r.assign(&all), [1, 4]);
        assert_eq!(parse_tag(&r.manifest_name()), Some((1, 3)));
        assert_eq!(parse_tag(&r.plan_name()), Some((1, 3)));
        assert_eq!(Rank::SINGLE.manifest_name(), "_manifest.jsonl");
    }
}
