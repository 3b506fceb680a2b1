//! **claim**: the only step that touches `--out`, run after planning succeeded.
//!
//! It checks the run identity against the one already there (`--resume`, and the other
//! ranks of a split run) before anything is deleted, settles what an earlier run left
//! (`--overwrite` deletes it, `--resume` keeps its complete shards), records the identity
//! and this rank's plan, and says which shards are still to do.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::FatalError;
use crate::run::plan::{RunIdentity, RunPlan};
use crate::run::ranks::{Plan, Rank};
use crate::sink::manifest::{self, ShardEntry};
use crate::sink::writer::shard_file_stem;

/// The output folder, claimed for a run.
#[derive(Debug)]
pub struct Claim {
    /// Shards an earlier run completed (`--resume`); not read again.
    pub completed: Vec<ShardEntry>,
    /// This rank's shards still to do.
    pub todo: Vec<PathBuf>,
    /// OS locks on `--out`, held until the run ends (the process exits, however).
    _locks: Vec<std::fs::File>,
}

/// The lock every process writing into a folder takes: exclusively for a whole run,
/// shared by the ranks of a split run (each of which also locks its own file).
pub const LOCK: &str = "_run.lock";

/// Locks `out` for this process (see [`LOCK`]); a second run into the same folder, or a
/// second process given the same rank, is refused while the first holds it.
fn lock_out(out: &Path, rank: &Rank) -> Result<Vec<std::fs::File>, FatalError> {
    let open = |name: &str| {
        let path = out.join(name);
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| FatalError::output(&path, e))
            .map(|f| (f, path))
    };
    let busy = |path: &Path, who: &str| FatalError::OutputInUse {
        path: out.to_path_buf(),
        reason: format!(
            "{who} is writing into it (it holds the lock {}); wait for it to finish, or \
             choose another --out",
            path.display()
        ),
    };
    let refused = |path: &Path, e: std::fs::TryLockError, who: &str| match e {
        std::fs::TryLockError::WouldBlock => busy(path, who),
        std::fs::TryLockError::Error(e) => FatalError::output(path, e),
    };
    let (run, path) = open(LOCK)?;
    if rank.world_size == 1 {
        run.try_lock()
            .map_err(|e| refused(&path, e, "another bgstream run"))?;
        return Ok(vec![run]);
    }
    run.try_lock_shared()
        .map_err(|e| refused(&path, e, "a bgstream run that is not split into ranks"))?;
    let (mine, path) = open(&format!("_{}.lock", rank.tag()))?;
    mine.try_lock().map_err(|e| {
        refused(
            &path,
            e,
            &format!("another process with rank {}", rank.rank),
        )
    })?;
    Ok(vec![run, mine])
}

/// Claims `plan.cfg.out` for the run (see the module docs).
pub fn claim(plan: &RunPlan) -> Result<Claim, FatalError> {
    let cfg = &plan.cfg;
    let out = &cfg.out;
    std::fs::create_dir_all(out).map_err(|e| FatalError::output(out, e))?;
    let locks = lock_out(out, &cfg.rank)?;
    if cfg.resume {
        // Before any cleanup: a refused resume leaves the folder as it was.
        if let Some(before) = read_identity(out)? {
            refuse_other_run(out, &plan.identity, &before)?;
        }
    }
    let completed = prepare_out_dir(out, cfg.overwrite, cfg.resume, &cfg.rank, &cfg.rank_shards)?;
    record_identity(out, &plan.identity, &cfg.rank, cfg.overwrite)?;
    Plan {
        model_paths: (plan.groups.iter().flatten())
            .map(|m| m.path.display().to_string())
            .collect(),
        devices: cfg.devices.iter().map(|d| format!("{d:?}")).collect(),
        ..Plan::new(&cfg.rank, &cfg.rank_shards)
    }
    .write(out, &cfg.rank)?;
    let done: HashSet<&str> = completed.iter().map(|e| e.shard.as_str()).collect();
    let todo = cfg
        .rank_shards
        .iter()
        .filter(|p| !done.contains(p.display().to_string().as_str()))
        .cloned()
        .collect();
    Ok(Claim {
        completed,
        todo,
        _locks: locks,
    })
}

fn read_identity(out: &Path) -> Result<Option<RunIdentity>, FatalError> {
    let path = out.join(manifest::RUN);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| FatalError::Input {
                path: path.clone(),
                reason: format!(
                    "not a run identity of this bgstream version ({e}); pass --overwrite to \
                     replace that run, or choose another --out"
                ),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FatalError::io(&path, e)),
    }
}

fn refuse_other_run(out: &Path, now: &RunIdentity, before: &RunIdentity) -> Result<(), FatalError> {
    let diff = now.differences(before);
    if diff.is_empty() {
        return Ok(());
    }
    Err(FatalError::OutputInUse {
        path: out.to_path_buf(),
        reason: format!(
            "this run differs from the one there: {}; pass --overwrite to replace it, or \
             choose another --out",
            diff.join("; ")
        ),
    })
}

/// Records the identity in `--out`, or checks it against the one there (ranks of a split
/// run share `_run.json`; each writes the same identity through its own temporary).
fn record_identity(
    out: &Path,
    identity: &RunIdentity,
    rank: &Rank,
    overwrite: bool,
) -> Result<(), FatalError> {
    let path = out.join(manifest::RUN);
    let tmp = out.join(format!("_run.{}.json.tmp", rank.tag()));
    let write = || crate::atomic::write_via(&path, &tmp, &identity.to_json());
    if overwrite && rank.world_size > 1 {
        // A split run's --overwrite replaces this rank's files, never the others'; the
        // shared identity is simply rewritten.
        return write();
    }
    match read_identity(out)? {
        Some(before) => refuse_other_run(out, identity, &before),
        None => write(),
    }
}

/// The complete shards that `--resume` may skip: those whose file still has the size and
/// hash this run read. A shard recorded without them (never, since 0.3.0) is redone; a
/// shard of this run whose file changed is refused, naming it: its rows describe other
/// images, and redoing it alone would leave a run made from two different inputs (its
/// donors and duplicates were drawn across all shards). Reads every such shard once (in
/// parallel), before anything in `out` is touched.
fn unchanged(
    out: &Path,
    entries: Vec<ShardEntry>,
    shards: &[PathBuf],
) -> Result<Vec<ShardEntry>, FatalError> {
    let ours: HashSet<String> = shards.iter().map(|p| p.display().to_string()).collect();
    let (check, keep): (Vec<ShardEntry>, Vec<ShardEntry>) = entries
        .into_iter()
        .filter(|e| e.content.is_some())
        .partition(|e| ours.contains(&e.shard));
    let now = crate::source::tar_reader::contents(check.iter().map(|e| Path::new(&e.shard)));
    for (e, now) in check.iter().zip(&now) {
        let was = e.content.as_ref().expect("filtered above");
        let changed = match now {
            Ok(now) if now == was => continue,
            Ok(now) => format!(
                "now {} bytes, xxh3 {}; then {} bytes, xxh3 {}",
                now.bytes, now.xxh3, was.bytes, was.xxh3
            ),
            Err(err) => format!("it cannot be read now ({err})"),
        };
        return Err(FatalError::OutputInUse {
            path: out.to_path_buf(),
            reason: format!(
                "--resume: shard {} changed since this run read it ({changed}), so its rows \
                 here describe other images; restore the shard, or pass --overwrite to start \
                 the run afresh, or choose another --out",
                e.shard
            ),
        });
    }
    Ok(keep.into_iter().chain(check).collect())
}

/// Creates `out` and settles what an earlier run left there. Returns the shards the
/// manifest records as complete (only with `resume`).
///
/// - `overwrite`: removes earlier predictions, temporary files and the manifest.
/// - `resume`: keeps the files of complete shards, deletes everything else an interrupted
///   run left (files of incomplete shards and of shards that failed to read, `*.tmp`), and
///   drops torn manifest lines.
/// - neither: refuses a folder that already holds a run.
///
/// A rank of a split run (`W > 1`) only looks at its own files — the part files of its
/// shards, its manifest and plan — since the other ranks write beside it at the same time.
fn prepare_out_dir(
    out: &Path,
    overwrite: bool,
    resume: bool,
    rank: &Rank,
    shards: &[PathBuf],
) -> Result<Vec<ShardEntry>, FatalError> {
    std::fs::create_dir_all(out).map_err(|e| FatalError::output(out, e))?;
    let leftovers = own_files(out, rank, shards)?;
    if resume {
        return keep_complete(out, rank, shards, &leftovers);
    }
    clear_earlier_run(out, overwrite, rank, &leftovers)?;
    Ok(Vec::new())
}

/// The files in `out` that this process may settle: all the run's files, or for a rank
/// of a split run only its own (see [`prepare_out_dir`]).
fn own_files(out: &Path, rank: &Rank, shards: &[PathBuf]) -> Result<Vec<PathBuf>, FatalError> {
    let manifest_name = rank.manifest_name();
    let split = rank.world_size > 1;
    let stems: Vec<String> = shards
        .iter()
        .map(|p| format!("{}-", shard_file_stem(&p.display().to_string())))
        .collect();
    let mine = |name: &str| -> bool {
        let own_meta = name == manifest_name
            || name == format!("{manifest_name}.tmp")
            || name == rank.plan_name()
            || name == format!("{}.tmp", rank.plan_name());
        if split {
            own_meta
                || ((name.ends_with(".parquet") || name.ends_with(".parquet.tmp"))
                    && stems.iter().any(|s| name.starts_with(s.as_str())))
        } else {
            own_meta
                || name.ends_with(".parquet")
                || name.ends_with(".tmp")
                || name == manifest::RUN
        }
    };
    Ok(std::fs::read_dir(out)
        .map_err(|e| FatalError::output(out, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| mine(file_name(p)))
        .collect())
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

fn remove(p: &Path) -> Result<(), FatalError> {
    std::fs::remove_file(p).map_err(|e| FatalError::output(p, e))
}

/// `--resume`: keeps the files of the complete shards the manifest records, deletes the
/// other `leftovers`, and rewrites the manifest without torn lines. Returns those shards.
fn keep_complete(
    out: &Path,
    rank: &Rank,
    shards: &[PathBuf],
    leftovers: &[PathBuf],
) -> Result<Vec<ShardEntry>, FatalError> {
    let manifest_name = rank.manifest_name();
    // A shard that could not be read to its end is redone: its file may have been
    // fixed since, and its rows are only what was readable then.
    let entries: Vec<ShardEntry> = manifest::read(out, &manifest_name)?
        .into_iter()
        .filter(|e| e.error.is_none() && files_intact(out, e))
        .collect();
    let entries = unchanged(out, entries, shards)?;
    let keep: HashSet<&str> = entries
        .iter()
        .flat_map(|e| e.files.iter().map(String::as_str))
        .collect();
    for p in leftovers {
        let name = file_name(p);
        if (name.ends_with(".parquet") && !keep.contains(name)) || name.ends_with(".tmp") {
            remove(p)?;
        }
    }
    manifest::compact(out, &manifest_name, &entries)?;
    Ok(entries)
}

/// Whether every file of `entry` is in `out` at its recorded size. The sink does not sync
/// the folder after each rename, so a crash can keep a recorded file from the disk: its
/// shard is then redone.
fn files_intact(out: &Path, entry: &ShardEntry) -> bool {
    let intact =
        entry
            .files
            .iter()
            .enumerate()
            .all(|(i, name)| match std::fs::metadata(out.join(name)) {
                Ok(m) => entry.bytes.get(i).is_none_or(|&b| b == m.len()),
                Err(_) => false,
            });
    if !intact {
        tracing::warn!(shard = %entry.shard, "--resume: a recorded file is missing or not its recorded size; redoing the shard");
    }
    intact
}

/// Without `--resume`: refuses `leftovers` that hold a run unless `overwrite`, which
/// deletes them.
fn clear_earlier_run(
    out: &Path,
    overwrite: bool,
    rank: &Rank,
    leftovers: &[PathBuf],
) -> Result<(), FatalError> {
    // A plan alone (a rank that started and wrote nothing yet) is not a run to protect.
    let holds_run = leftovers.iter().any(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n != rank.plan_name())
    });
    if !holds_run {
        return Ok(());
    }
    if !overwrite {
        return Err(FatalError::OutputInUse {
            path: out.to_path_buf(),
            reason: format!(
                "already holds a run ({} file(s){}); pass --resume to finish it, --overwrite \
                 to replace it, or choose another --out",
                leftovers.len(),
                if rank.world_size > 1 {
                    format!(" of rank {}", rank.rank)
                } else {
                    String::new()
                }
            ),
        });
    }
    for p in leftovers {
        remove(p)?;
    }
    Ok(())
}
