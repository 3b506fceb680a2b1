//! One file per subcommand: arguments -> library call -> exit status. Everything the tool
//! does is in the library; what is here is checking flags, printing and exit codes.

pub mod aggregate;
#[cfg(feature = "torch")]
pub mod bench;
#[cfg(feature = "torch")]
pub mod challenge;
pub mod export;
#[cfg(feature = "torch")]
pub mod preview;
#[cfg(feature = "torch")]
pub mod run;
pub mod shard;

/// Finished, but some items or shards failed, or tar members were skipped (rows carry
/// their status; the summary counts the rest).
#[cfg(feature = "torch")]
pub const EXIT_ITEMS_FAILED: u8 = 3;

/// `run`, `bench`, `preview` and `challenge` without libtorch.
#[cfg(not(feature = "torch"))]
pub fn without_torch(what: &str) -> anyhow::Result<u8> {
    anyhow::bail!(
        "this bgstream was built without libtorch (cargo feature `torch`): only `shard` and \
         `aggregate` work; build with default features to {what}"
    )
}

/// Same inputs must give bit-identical rows run after run. libtorch's CPU GEMMs go through
/// MKL, whose threads split work by machine load unless conditional numerical
/// reproducibility is on: measured here, two identical runs differed in the last bits of
/// ~20% of the probabilities without these settings and never with them. Set only when the
/// user has not chosen otherwise, and before any thread or library starts.
pub fn reproducible_math() {
    for (key, value) in [("MKL_CBWR", "AUTO,STRICT"), ("MKL_DYNAMIC", "FALSE")] {
        if std::env::var_os(key).is_none() {
            std::env::set_var(key, value);
        }
    }
}
