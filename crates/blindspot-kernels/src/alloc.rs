//! The allocator setting that CPU training wants: keep freed memory for the next step.

/// Makes glibc's `malloc` keep freed memory in the process instead of handing it back to the
/// kernel: no `mmap` per large block (`M_MMAP_MAX = 0`) and no trimming of the heap while less
/// than 1 GiB is free at its top (`M_TRIM_THRESHOLD`).
///
/// A training step allocates and frees the same large activation and gradient buffers every
/// step; by default glibc maps each block above its threshold fresh and unmaps it on free, so
/// every step pays a page fault and a zeroed page per 4 KiB. On the paper's VAE this is 12 % of
/// a CPU training step (benches/README.md). Memory use stays at the peak of a step. Other
/// platforms and allocators: no effect.
///
/// # Safety
/// Call it before the process starts a second thread (first thing in `main`): glibc documents
/// `mallopt` as unsafe to run concurrently with other allocator calls.
#[allow(unsafe_code)] // `mallopt` is a C function
pub unsafe fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` takes two integers and changes two of malloc's tuning parameters; the
    // caller guarantees that no other thread runs an allocator call at the same time.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
