//! `--device auto|cpu|cuda`. tch links libtorch's CPU library only (the linker drops
//! libtorch_cuda, nothing references it directly), so CUDA is loaded on demand here: the
//! library's static initializers register the CUDA backend. `bitkit ingest` never pays for it.

use std::ffi::CString;

use tch::Device;

use crate::error::TrainError;

/// Which device a command runs on.
pub fn select(spec: &str) -> Result<Device, TrainError> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        // Without an NVIDIA driver node there is no GPU: skip loading the CUDA libraries
        // (seconds and hundreds of MB on a CPU-only machine).
        "auto" if !std::path::Path::new("/dev/nvidiactl").exists() => Ok(Device::Cpu),
        "auto" => Ok(if load_cuda().is_ok() && tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu }),
        "cuda" | "cuda:0" => {
            load_cuda().map_err(|reason| TrainError::Device { spec: spec.to_owned(), reason })?;
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err(TrainError::Device {
                    spec: spec.to_owned(),
                    reason: "libtorch_cuda loaded but no CUDA device is visible".into(),
                })
            }
        }
        other => match other.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
            Some(i) => {
                load_cuda().map_err(|reason| TrainError::Device { spec: spec.to_owned(), reason })?;
                if (i as i64) < tch::Cuda::device_count() {
                    Ok(Device::Cuda(i))
                } else {
                    Err(TrainError::Device { spec: spec.to_owned(), reason: "no such CUDA device".into() })
                }
            }
            None => {
                Err(TrainError::Device { spec: spec.to_owned(), reason: "expected auto, cpu, cuda or cuda:N".into() })
            }
        },
    }
}

/// Loads libtorch_cuda.so once: by name first (LD_LIBRARY_PATH, the binary's rpath), then from
/// the libtorch this binary was built against.
pub fn load_cuda() -> Result<(), String> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let mut candidates = vec!["libtorch_cuda.so".to_owned()];
            if let Some(dir) = option_env!("BITKIT_LIBTORCH_LIB") {
                candidates.push(format!("{dir}/libtorch_cuda.so"));
            }
            let mut last = String::from("libtorch_cuda.so not found");
            for name in candidates {
                let Ok(c) = CString::new(name.clone()) else { continue };
                // SAFETY: dlopen with a valid NUL-terminated name; the handle is kept for the
                // life of the process on purpose (never dlclose'd).
                let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
                if !handle.is_null() {
                    return Ok(());
                }
                // SAFETY: dlerror returns a thread-local message or null.
                let err = unsafe { libc::dlerror() };
                if !err.is_null() {
                    // SAFETY: non-null dlerror strings are NUL-terminated.
                    last = unsafe { std::ffi::CStr::from_ptr(err) }.to_string_lossy().into_owned();
                }
            }
            Err(last)
        })
        .clone()
}

/// A short description for run records: "cpu (N threads)" or the GPU name.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => format!("cpu ({} threads)", tch::get_num_threads()),
    }
}
