//! The CPU stage between reading and batching: [`prepare`] turns one sample into every
//! variant's pixels per model preprocessing; [`donors`] is the bank of other images'
//! backgrounds that `mixed_*` and `worst_bg:K` draw from, fixed before the run.

pub mod donors;
pub mod prepare;
