//! Arithmetic precision of the forward pass: the setting, without libtorch (what needs
//! tch, such as the tensor kind and the device check, is in [`crate::infer`]).

/// `--precision`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Bf16,
    Fp16,
}

impl Precision {
    /// The CLI spelling.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }
}

/// `--cudnn-benchmark`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Autotune {
    /// Off for fp32 (rows the same in every run), on for bf16 and fp16 (speed).
    Auto,
    On,
    Off,
}

impl Autotune {
    /// Whether cuDNN autotuning runs for `precision`.
    pub fn enabled(self, precision: Precision) -> bool {
        match self {
            Autotune::Auto => precision != Precision::Fp32,
            Autotune::On => true,
            Autotune::Off => false,
        }
    }
}
