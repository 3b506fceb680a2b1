//! The binary away from its checkout: a plain copy has no libtorch (its rpath is relative
//! to the checkout, not the build machine's absolute paths), and `scripts/bgstream` runs the
//! copy from any directory with only a torch 2.11 install (found through Python).

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{self, path_str};

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout)
}

#[test]
fn a_copied_binary_runs_through_the_launcher_from_anywhere() {
    let kit = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_bgstream"),
        kit.path().join("bgstream.bin"),
    )
    .unwrap();
    std::fs::copy(
        common::root().join("scripts/bgstream"),
        kit.path().join("bgstream"),
    )
    .unwrap();
    let run = |program: &Path, python: &Path, args: &[&str]| {
        Command::new(program)
            .args(args)
            .current_dir(elsewhere.path())
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("LIBTORCH")
            .env_remove("BGSTREAM_BIN")
            .env("PYTHON", python)
            .env("BGSTREAM_LOG", "error")
            .output()
            .unwrap()
    };
    let python = common::python();
    let copy = run(&kit.path().join("bgstream.bin"), &python, &["--version"]);
    assert!(!copy.status.success());
    assert!(text(&copy).contains("libtorch"), "{}", text(&copy));

    // A real run: libtorch loads, the tiny model predicts, Parquet is written.
    let shards = elsewhere.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    let mut b = tar::Builder::new(std::fs::File::create(shards.join("s.tar")).unwrap());
    common::tar_add(&mut b, "a.jpg", &common::jpeg(64, 48, 1));
    common::tar_add(&mut b, "a.cls", b"3");
    common::tar_add(&mut b, "a.json", br#"{"boxes": [[8, 8, 40, 30]]}"#);
    b.finish().unwrap();
    let launcher = kit.path().join("bgstream");
    let tiny = common::model("tiny");
    let ok = run(
        &launcher,
        &python,
        &[
            "--shards",
            "shards/s.tar",
            "--model",
            path_str(&tiny),
            "--out",
            "out",
            "--no-progress",
        ],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(std::fs::read_dir(elsewhere.path().join("out"))
        .unwrap()
        .any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "parquet")));

    // No torch anywhere: a clear error that names the way out.
    let none = run(&launcher, Path::new("false"), &["--version"]);
    assert_eq!(none.status.code(), Some(127));
    assert!(text(&none).contains("LD_LIBRARY_PATH"), "{}", text(&none));
}
