//! One `bgstream` run's top level: [`settings`] (validated, no side effects) -> [`plan`]
//! (everything loaded and checked, `--out` untouched) -> [`claim`] (the only step that
//! touches `--out`) -> the pipeline executes -> [`summary`]. [`identity`] is what makes two
//! runs comparable; [`ranks`] which part of a split run this process does.

#[cfg(feature = "torch")]
pub mod claim;
pub mod identity;
#[cfg(feature = "torch")]
pub mod plan;
pub mod ranks;
#[cfg(feature = "torch")]
pub mod settings;
#[cfg(feature = "torch")]
pub mod summary;
