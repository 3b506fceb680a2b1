// Puts libtorch's folder on the binary's rpath so that it runs without LD_LIBRARY_PATH.
// torch-sys links libtorch but leaves finding it at run time to the user.
//
// When libtorch is inside this checkout (the default: `.venv/libtorch`), the rpath is
// relative to the binary (`$ORIGIN/...`), so a moved checkout still runs and nothing refers
// to the build machine's absolute paths; a copy of the binary elsewhere runs through
// `scripts/bgstream`, which finds a torch install. A libtorch outside the checkout keeps its
// absolute path.
//
// The binaries also look in a Python prefix's site-packages/torch/lib (the wheel).
//
// With the `torch` feature it also compiles src/infer/streams.cpp, the CUDA stream and event
// shim (tch has no stream API), against libtorch's own headers.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Ok(libtorch) = std::env::var("LIBTORCH") else {
        return;
    };
    if std::env::var_os("CARGO_FEATURE_TORCH").is_some() {
        shim(Path::new(&libtorch));
    }
    let lib = std::path::absolute(Path::new(&libtorch).join("lib")).expect("absolute LIBTORCH");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    // OUT_DIR is <profile>/build/<pkg>-<hash>/out; binaries land in <profile> and tests in
    // <profile>/deps.
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let profile = out.ancestors().nth(3).expect("OUT_DIR layout");
    // An installed wheel puts the binary in <prefix>/bin and torch in
    // <prefix>/lib/pythonX.Y/site-packages/torch (a venv, --user, conda): listed first, so
    // that an installed binary never picks up some other checkout's .venv.
    let installed: Vec<String> = (9..=14)
        .flat_map(|minor| {
            ["site-packages", "dist-packages"]
                .map(|d| format!("$ORIGIN/../lib/python3.{minor}/{d}/torch/lib"))
        })
        .collect();
    println!(
        "cargo:rustc-link-arg-bins=-Wl,-rpath,{}",
        installed.join(":")
    );
    match pathdiff::diff_paths(&lib, profile) {
        Some(rel) if lib.starts_with(&manifest) && profile.starts_with(&manifest) => {
            let rel = rel.display();
            println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/{rel}:$ORIGIN/../{rel}");
        }
        _ => println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display()),
    }
}

/// Builds the stream shim with the C++ ABI libtorch was built with (torch-sys reads the same
/// variable; PyTorch's wheels use the new ABI).
fn shim(libtorch: &Path) {
    println!("cargo:rerun-if-changed=src/infer/streams.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("src/infer/streams.cpp")
        .include(libtorch.join("include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .warnings(false)
        .compile("bgstream_streams");
}
