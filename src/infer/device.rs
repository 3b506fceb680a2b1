//! Device selection and the CUDA start-up fix.
//!
//! rustc links with `--as-needed`, so `libtorch_cuda.so` (which the binary never calls by
//! name) is dropped and libtorch then reports no CUDA even on a GPU machine. Loading it with
//! `RTLD_GLOBAL` before the first tch call registers the CUDA backend. The library is found
//! through the binary's rpath (the venv's `torch/lib`, set by `build.rs`) or
//! `LD_LIBRARY_PATH` (another torch 2.11 install).

use std::sync::{Arc, OnceLock};

use tch::{Cuda, Device, Kind};

use crate::error::FatalError;

static CUDA_LIB: OnceLock<Result<(), NoCuda>> = OnceLock::new();

/// Why CUDA cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NoCuda {
    /// The library did not load (shared, so that every caller keeps the loader's error).
    #[error("libtorch_cuda.so not loadable")]
    NotLoadable(#[source] Arc<libloading::Error>),
    #[error("libtorch sees no CUDA device")]
    NoDevice,
}

/// Loads `libtorch_cuda.so` once; `Err` says why CUDA cannot be used.
pub fn load_cuda() -> Result<(), NoCuda> {
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
                Err(e) => Err(NoCuda::NotLoadable(Arc::new(e))),
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
fn cuda_count() -> Result<i64, NoCuda> {
    load_cuda().and_then(|()| {
        if Cuda::is_available() {
            Ok(Cuda::device_count())
        } else {
            Err(NoCuda::NoDevice)
        }
    })
}

/// `spec` needs CUDA, which `why` says cannot be used.
fn unavailable(spec: &str, why: NoCuda) -> FatalError {
    FatalError::DeviceUnavailable {
        spec: spec.into(),
        source: why.into(),
    }
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
                let why = crate::error::chain(&why);
                tracing::warn!("no usable GPU ({why}); running on CPU");
                Device::Cpu
            }
        }),
        _ => {
            let count = || cuda.clone().map_err(|why| unavailable(spec, why));
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
        let count = cuda_count().map_err(|why| unavailable(spec, why))?;
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

/// What a command asks of its device: where, in what precision, and how fp32 and cuDNN may
/// behave. Building one changes nothing in the process; [`open`] does.
#[derive(Debug, Clone)]
pub struct DeviceRequest {
    /// `--device`: auto, cpu, cuda, cuda:N, a list, or cuda:all.
    pub spec: String,
    /// The launcher's local rank (torchrun, Slurm), which picks the GPU for auto and cuda.
    pub local_rank: Option<usize>,
    pub precision: Precision,
    /// `--allow-tf32`: fp32 may run as TF32.
    pub allow_tf32: bool,
    /// `--cudnn-benchmark`.
    pub autotune: crate::precision::Autotune,
}

/// The devices a command runs on, with the process settings [`open`] applied.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenDevices {
    /// One inference worker per device; never empty.
    pub devices: Vec<Device>,
    /// cuDNN autotuning is on (CUDA only).
    pub cudnn_benchmark: bool,
    /// fp32 may run as TF32 (CUDA only).
    pub tf32: bool,
}

impl OpenDevices {
    /// The first device (where a single-device command runs).
    pub fn first(&self) -> Device {
        self.devices[0]
    }
}

/// Opens the requested devices: the one place that changes process state for a device
/// (run, bench, preview and challenge all come through here). The order is the point:
/// `NVIDIA_TF32_OVERRIDE=0` goes into the environment before anything loads CUDA, which
/// resolving `auto` or `cuda` does; cuDNN's autotuning is set once the device is known.
pub fn open(req: &DeviceRequest) -> Result<OpenDevices, FatalError> {
    if req.allow_tf32 && req.precision != Precision::Fp32 {
        return Err(FatalError::Usage(
            "--allow-tf32 applies to --precision fp32 only".into(),
        ));
    }
    if req.precision == Precision::Fp32 && !req.allow_tf32 {
        forbid_tf32().map_err(FatalError::Config)?;
    }
    let devices = resolve_devices(&req.spec, req.local_rank)?;
    let cuda = devices[0].is_cuda();
    req.precision.check(devices[0])?;
    let cudnn_benchmark = cuda && req.autotune.enabled(req.precision);
    if cuda {
        tch::Cuda::cudnn_set_benchmark(cudnn_benchmark);
    }
    Ok(OpenDevices {
        devices,
        cudnn_benchmark,
        tf32: cuda && req.allow_tf32,
    })
}

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

    fn request(spec: &str, precision: Precision, allow_tf32: bool) -> DeviceRequest {
        DeviceRequest {
            spec: spec.into(),
            local_rank: None,
            precision,
            allow_tf32,
            autotune: crate::precision::Autotune::Auto,
        }
    }

    /// `auto` loads CUDA's library while resolving: `open` must have set TF32's override
    /// before, or `forbid_tf32` (which refuses once CUDA is loaded) would fail here, as
    /// `preview --device cuda` did when it resolved first. Run in a child process of its
    /// own: other tests of this binary load CUDA too, in any order.
    #[test]
    fn open_sets_the_tf32_override_before_cuda_loads() {
        const CHILD: &str = "BGSTREAM_TEST_OPEN_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let name = "infer::device::tests::open_sets_the_tf32_override_before_cuda_loads";
            let exe = std::env::current_exe().unwrap();
            let out = std::process::Command::new(exe)
                .args(["--exact", name, "--nocapture", "--test-threads", "1"])
                .env(CHILD, "1")
                .env_remove("NVIDIA_TF32_OVERRIDE")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success() && text.contains("1 passed"), "{text}");
            return;
        }
        assert!(CUDA_LIB.get().is_none(), "nothing loaded CUDA before open");
        let opened = open(&request("auto", Precision::Fp32, false)).unwrap();
        assert_eq!(
            std::env::var("NVIDIA_TF32_OVERRIDE").as_deref(),
            Ok("0"),
            "fp32 without --allow-tf32 must forbid TF32"
        );
        assert!(CUDA_LIB.get().is_some(), "auto tried to load CUDA");
        // Opening again (CUDA now loaded) still works: the override is already in place.
        assert_eq!(
            open(&request("auto", Precision::Fp32, false)).unwrap(),
            opened
        );
        assert!(!opened.tf32, "fp32 without --allow-tf32 runs true fp32");
    }

    #[test]
    fn open_refuses_tf32_outside_fp32_and_fp16_on_cpu() {
        let err = open(&request("cpu", Precision::Bf16, true)).unwrap_err();
        assert!(matches!(err, FatalError::Usage(_)), "{err}");
        let err = open(&request("cpu", Precision::Fp16, false)).unwrap_err();
        assert!(err.to_string().contains("fp16 needs a GPU"), "{err}");
        let cpu = open(&request("cpu", Precision::Bf16, false)).unwrap();
        assert_eq!(cpu.devices, [Device::Cpu]);
        assert!(!cpu.cudnn_benchmark && !cpu.tf32);
    }

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
