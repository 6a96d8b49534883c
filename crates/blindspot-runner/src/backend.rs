//! The one place that names concrete burn backends, chosen by cargo feature:
//! `cuda` (burn-cuda) over `ndarray` (burn-ndarray) over `flex` (burn-flex, the default and the
//! fastest CPU backend measured on the paper's VAE).

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::backend::Autodiff;

#[cfg(not(any(feature = "flex", feature = "ndarray", feature = "cuda")))]
compile_error!("enable one backend feature of blindspot-runner: flex (default), ndarray or cuda");

/// The inference backend.
#[cfg(feature = "cuda")]
pub type Backend = burn_cuda::Cuda;
/// The inference backend.
#[cfg(all(feature = "ndarray", not(feature = "cuda")))]
pub type Backend = burn_ndarray::NdArray<f32>;
/// The inference backend.
#[cfg(all(feature = "flex", not(any(feature = "ndarray", feature = "cuda"))))]
pub type Backend = burn_flex::Flex;

/// The training backend.
pub type TrainBackend = Autodiff<Backend>;
/// The device type of [`Backend`].
pub type Device = burn::tensor::Device<Backend>;

/// The backend's name, for logs.
pub const NAME: &str = if cfg!(feature = "cuda") {
    "cuda (burn-cuda 0.21)"
} else if cfg!(feature = "ndarray") {
    "ndarray (burn-ndarray 0.21)"
} else {
    "flex (burn-flex 0.21)"
};

/// The device to run on. With `cuda`, checks first that an NVIDIA driver is installed, so that
/// a machine without one gets a clear message instead of a panic on a device thread.
///
/// # Errors
/// When the `cuda` backend is selected and no CUDA driver is found.
pub fn device() -> Result<Device> {
    #[cfg(feature = "cuda")]
    {
        if let Err(searched) = find_cuda_driver() {
            anyhow::bail!(
                "this `blindspot` was built with the `cuda` feature but no NVIDIA CUDA driver was \
                 found (no /proc/driver/nvidia/version and no libcuda.so.1 in {}); install the \
                 driver or rebuild without `--features cuda` to run on the CPU",
                searched
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(Device::default())
}

/// Looks for the CUDA driver without loading it: the kernel module's version file, or
/// `libcuda.so.1` in the library search path (`LD_LIBRARY_PATH`, `/etc/ld.so.conf(.d)`, the
/// usual system directories). Returns the directories searched when nothing is found.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub fn find_cuda_driver() -> std::result::Result<PathBuf, Vec<PathBuf>> {
    let proc = Path::new("/proc/driver/nvidia/version");
    if proc.is_file() {
        return Ok(proc.to_path_buf());
    }
    let dirs = library_dirs();
    for d in &dirs {
        let lib = d.join("libcuda.so.1");
        if lib.exists() {
            return Ok(lib);
        }
    }
    Err(dirs)
}

fn library_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    let mut confs = vec![PathBuf::from("/etc/ld.so.conf")];
    if let Ok(rd) = std::fs::read_dir("/etc/ld.so.conf.d") {
        confs.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
    }
    for conf in confs {
        if let Ok(text) = std::fs::read_to_string(&conf) {
            dirs.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| l.starts_with('/'))
                    .map(PathBuf::from),
            );
        }
    }
    for d in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/lib/x86_64-linux-gnu",
        "/usr/local/cuda/lib64",
        "/usr/local/cuda/compat",
        "/usr/lib/wsl/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs.dedup();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_search_reports_where_it_looked() {
        match find_cuda_driver() {
            Ok(p) => assert!(p.exists()),
            Err(dirs) => assert!(dirs.iter().any(|d| d == Path::new("/usr/lib64"))),
        }
    }
}
