//! Device selection and the CUDA start-up fix.
//!
//! rustc links with `--as-needed`, so `libtorch_cuda.so` (which the binary never calls by
//! name) is dropped and libtorch then reports no CUDA even on a GPU machine. Loading it with
//! `RTLD_GLOBAL` before the first tch call registers the CUDA backend. The library is found
//! through the binary's rpath (the venv's `torch/lib`, set by `build.rs`) or
//! `LD_LIBRARY_PATH` (another torch 2.11 install).

use std::sync::OnceLock;

use tch::{Cuda, Device, Kind};

use crate::error::FatalError;

static CUDA_LIB: OnceLock<Result<(), String>> = OnceLock::new();

/// Loads `libtorch_cuda.so` once; `Err` says why CUDA cannot be used.
pub fn load_cuda() -> Result<(), String> {
    CUDA_LIB
        .get_or_init(|| {
            use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
            // SAFETY: loading libtorch's own CUDA backend; its initialisers only register
            // kernels with the libtorch already linked into this process.
            match unsafe { Library::open(Some("libtorch_cuda.so"), RTLD_NOW | RTLD_GLOBAL) } {
                Ok(lib) => {
                    // Kept loaded for the life of the process.
                    std::mem::forget(lib);
                    Ok(())
                }
                Err(e) => Err(format!("libtorch_cuda.so not loadable: {e}")),
            }
        })
        .clone()
}

/// Makes fp32 mean fp32 on GPUs with TF32 (Ampere and later), where cuDNN convolutions run
/// as TF32 by default in torch 2.11: NVIDIA's libraries honour `NVIDIA_TF32_OVERRIDE=0`
/// over any programmatic setting. It must be set before CUDA is loaded; `Err` if too late.
pub fn forbid_tf32() -> Result<(), String> {
    const VAR: &str = "NVIDIA_TF32_OVERRIDE";
    if std::env::var_os(VAR).is_some_and(|v| v == "0") {
        return Ok(());
    }
    if CUDA_LIB.get().is_some() {
        return Err(format!("CUDA was loaded before {VAR}=0 could be set"));
    }
    // Called from the main thread while it is the only one reading the environment (the
    // config is built before any runtime, progress or stage thread starts).
    std::env::set_var(VAR, "0");
    tracing::info!("fp32 without TF32: {VAR}=0");
    Ok(())
}

/// How many GPUs libtorch sees; `Err` says why there are none.
fn cuda_count() -> Result<i64, String> {
    load_cuda().and_then(|()| {
        if Cuda::is_available() {
            Ok(Cuda::device_count())
        } else {
            Err("libtorch sees no CUDA device".to_string())
        }
    })
}

/// `auto | cpu | cuda | cuda:N` to a tch device. `auto` falls back to CPU with one message.
/// `auto` and `cuda` take GPU `local_rank mod count` when a launcher set a local rank (one
/// process per GPU); `cuda:N` is taken as given.
pub fn resolve_device(spec: &str, local_rank: Option<usize>) -> Result<Device, FatalError> {
    let spec = spec.trim();
    if spec == "cpu" {
        return Ok(Device::Cpu);
    }
    let cuda = cuda_count();
    match spec {
        "auto" => Ok(match cuda {
            Ok(count) => Device::Cuda(local_rank.unwrap_or(0) % count.max(1) as usize),
            Err(why) => {
                tracing::warn!("no usable GPU ({why}); running on CPU");
                Device::Cpu
            }
        }),
        _ => {
            let count = || {
                cuda.clone()
                    .map_err(|why| FatalError::Device(spec.into(), why))
            };
            let index: usize = match spec.strip_prefix("cuda") {
                Some("") => local_rank.unwrap_or(0) % count()?.max(1) as usize,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| FatalError::Device(spec.into(), "expected cuda:N".into()))?,
                None => {
                    return Err(FatalError::Device(
                        spec.into(),
                        "expected auto, cpu, cuda or cuda:N".into(),
                    ))
                }
            };
            let count = count()?;
            if index as i64 >= count {
                return Err(FatalError::Device(
                    spec.into(),
                    format!("only {count} CUDA device(s)"),
                ));
            }
            Ok(Device::Cuda(index))
        }
    }
}

/// A device list: `cuda:0,cuda:1`, `cuda:all` (every GPU; the local rank's alone when a
/// launcher set one), or one spec as in
/// [`resolve_device`]. Each device gets its own inference worker. `cpu,cpu` is allowed (two
/// CPU workers; it tests the fan-out without a GPU).
pub fn resolve_devices(spec: &str, local_rank: Option<usize>) -> Result<Vec<Device>, FatalError> {
    let spec = spec.trim();
    if spec == "cuda:all" {
        let count = cuda_count().map_err(|why| FatalError::Device(spec.into(), why))?;
        // Under torchrun or Slurm there is one process per GPU: this one takes its own.
        if let Some(rank) = local_rank {
            let gpu = rank % count.max(1) as usize;
            tracing::info!("cuda:all with LOCAL_RANK {rank}: this process runs on cuda:{gpu}");
            return Ok(vec![Device::Cuda(gpu)]);
        }
        return Ok((0..count as usize).map(Device::Cuda).collect());
    }
    let devices = spec
        .split(',')
        .map(|s| resolve_device(s, local_rank))
        .collect::<Result<Vec<_>, _>>()?;
    let cuda: Vec<&Device> = devices.iter().filter(|d| d.is_cuda()).collect();
    if devices.len() > 1 && !cuda.is_empty() && cuda.len() != devices.len() {
        return Err(FatalError::Device(
            spec.into(),
            "mix of CPU and CUDA devices; list only GPUs".into(),
        ));
    }
    for (i, d) in cuda.iter().enumerate() {
        if cuda[..i].contains(d) {
            return Err(FatalError::Device(
                spec.into(),
                format!("{d:?} listed twice"),
            ));
        }
    }
    Ok(devices)
}

pub use crate::precision::Precision;

// The enum lives outside the torch-gated code (the CLI and run identity need it without
// libtorch); what needs tch is implemented here.
impl Precision {
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
            Precision::Fp16 => Kind::Half,
        }
    }

    /// Rejects combinations libtorch runs badly or not at all.
    pub fn check(self, device: Device) -> Result<(), FatalError> {
        if device == Device::Cpu && self == Precision::Fp16 {
            return Err(FatalError::Config(
                "--precision fp16 needs a GPU; use fp32 or bf16 on CPU".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_always_resolves_and_bad_specs_are_clear() {
        assert_eq!(resolve_device("cpu", Some(3)).unwrap(), Device::Cpu);
        let err = resolve_device("tpu", None).unwrap_err().to_string();
        assert!(err.contains("expected auto, cpu"), "{err}");
        assert!(resolve_device("cuda:x", None).is_err());
        assert_eq!(
            resolve_devices("cpu,cpu", None).unwrap(),
            [Device::Cpu, Device::Cpu]
        );
    }
}
