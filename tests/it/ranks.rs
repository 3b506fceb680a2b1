//! Split runs: N processes with the launcher's environment (torchrun, Slurm) or --rank
//! write into one folder; together they hold exactly the rows of one process, a killed
//! rank resumes alone, and `aggregate` warns about a rank that never ran.

use std::path::Path;

use crate::common;
use crate::resume::{command, shards, sorted_rows, status, SHARDS};

/// Runs ranks 0..world of one split run into `out` at the same time; each rank's launcher
/// environment comes from `env(rank)`.
fn run_ranks(glob: &str, out: &Path, world: usize, env: impl Fn(usize) -> Vec<(String, String)>) {
    let children: Vec<_> = (0..world)
        .map(|r| {
            let mut c = command(glob, out, &["--workers", "1"]);
            c.envs(env(r));
            c.spawn().unwrap()
        })
        .collect();
    for (r, child) in children.into_iter().enumerate() {
        let o = child.wait_with_output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "rank {r} of {world}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn torchrun(world: usize) -> impl Fn(usize) -> Vec<(String, String)> {
    move |r| {
        vec![
            ("RANK".into(), r.to_string()),
            ("WORLD_SIZE".into(), world.to_string()),
            ("LOCAL_RANK".into(), r.to_string()),
        ]
    }
}

fn slurm(world: usize) -> impl Fn(usize) -> Vec<(String, String)> {
    move |r| {
        vec![
            ("SLURM_PROCID".into(), r.to_string()),
            ("SLURM_NTASKS".into(), world.to_string()),
            ("SLURM_LOCALID".into(), "0".into()),
        ]
    }
}

fn aggregate_warnings(out: &Path, dir: &Path) -> String {
    let (code, _, stderr) = common::aggregate(out, dir, &["--no-figures"]);
    assert_eq!(code, 0, "{stderr}");
    stderr
}

#[test]
fn ranks_together_write_exactly_the_rows_of_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    shards(tmp.path());
    // 7 of the shards, so that 2, 3 and 5 ranks do not divide them.
    let glob = format!("{}/r-00000[0-6].tar", tmp.path().display());
    let single = tmp.path().join("single");
    assert_eq!(status(&mut command(&glob, &single, &[])).0, 0);
    let expected = sorted_rows(&single);
    assert!(expected.contains("r-000006.tar") && !expected.contains("r-000007.tar"));
    // Over 1, 2, 3 and 5 ranks, launched as torchrun and as Slurm would.
    for (world, how) in [(1, "torchrun"), (2, "slurm"), (3, "torchrun"), (5, "slurm")] {
        let out = tmp.path().join(format!("w{world}"));
        match how {
            "torchrun" => run_ranks(&glob, &out, world, torchrun(world)),
            _ => run_ranks(&glob, &out, world, slurm(world)),
        }
        assert_eq!(sorted_rows(&out), expected, "{world} ranks ({how})");
        let manifests: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("_manifest"))
            .collect();
        assert_eq!(manifests.len(), world, "{manifests:?}");
        let warnings = aggregate_warnings(&out, &tmp.path().join(format!("agg{world}")));
        assert!(!warnings.contains("warning"), "{warnings}");
    }
}

#[test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs fail points: cargo test --features failpoints"
)]
fn a_killed_rank_resumes_alone_and_a_missing_rank_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let glob = shards(tmp.path());
    let single = tmp.path().join("single");
    assert_eq!(status(&mut command(&glob, &single, &[])).0, 0);
    let expected = sorted_rows(&single);

    let out = tmp.path().join("split");
    let flags = |r: usize| {
        [
            "--rank".to_string(),
            r.to_string(),
            "--world-size".into(),
            "3".into(),
        ]
    };
    // Ranks 0 and 2 finish; rank 1 crashes after writing some of its 4 shards.
    for r in [0, 2] {
        let f = flags(r);
        let args: Vec<&str> = f.iter().map(String::as_str).collect();
        assert_eq!(status(&mut command(&glob, &out, &args)).0, 0);
    }
    let f = flags(1);
    let args: Vec<&str> = f.iter().map(String::as_str).collect();
    let (code, _) =
        status(command(&glob, &out, &args).env("FAILPOINTS", "sink::after_rename=2*off->return"));
    assert_ne!(code, 0, "the fail point kills rank 1");
    let warnings = aggregate_warnings(&out, &tmp.path().join("agg-partial"));
    assert!(
        warnings.contains("rank 1 of 3: 2 of 4 shards not complete"),
        "{warnings}"
    );
    // Rerunning rank 1 without --resume refuses; with it, finishes its part only.
    let (code, stderr) = status(&mut command(&glob, &out, &args));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("of rank 1"), "{stderr}");
    let mut resume = args.clone();
    resume.push("--resume");
    let (code, stderr) = status(&mut command(&glob, &out, &resume));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(sorted_rows(&out), expected, "no row lost or repeated");
    let warnings = aggregate_warnings(&out, &tmp.path().join("agg-full"));
    assert!(!warnings.contains("warning"), "{warnings}");

    // A rank that never ran: its shards are missing and aggregate says so.
    let gap = tmp.path().join("gap");
    for r in [0, 2] {
        let f = flags(r);
        let args: Vec<&str> = f.iter().map(String::as_str).collect();
        assert_eq!(status(&mut command(&glob, &gap, &args)).0, 0);
    }
    let warnings = aggregate_warnings(&gap, &tmp.path().join("agg-gap"));
    assert!(
        warnings.contains("rank 1 of 3 left no plan and no manifest"),
        "{warnings}"
    );
    // Another world size in the same folder is refused (it would assign shards again).
    let (code, stderr) = status(&mut command(
        &glob,
        &gap,
        &["--rank", "0", "--world-size", "2", "--resume"],
    ));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("differs"), "{stderr}");
    let _ = SHARDS;
}

#[test]
fn bad_rank_settings_stop_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let glob = shards(tmp.path());
    let out = tmp.path().join("o");
    for (args, env, want) in [
        (
            vec!["--rank", "3", "--world-size", "3"],
            vec![],
            "outside a world of size 3",
        ),
        (
            vec!["--rank", "0"],
            vec![],
            "--rank and --world-size go together",
        ),
        (
            vec![],
            vec![("RANK", "x"), ("WORLD_SIZE", "2")],
            "RANK=\"x\"",
        ),
    ] {
        let mut c = command(&glob, &out, &args);
        c.envs(env);
        let (code, stderr) = status(&mut c);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
