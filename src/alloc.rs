//! The memory allocator for programs that train: mimalloc, told to keep what is freed.
//!
//! A training step frees and allocates again activations of tens of megabytes. The
//! system allocator (glibc) serves each of those from a fresh `mmap` and returns it with
//! `munmap` when freed, so every step faults its memory in again, zeroed, page by page,
//! and pays for the TLB shoot-downs of unmapping it: a tenth of the training step's
//! profile was in the kernel. mimalloc keeps freed memory for the next allocation, but
//! by default hands it back to the system after a second unused (its `purge_delay`), and
//! a step of the tutorial's CNN on two cores takes about a second: the kernel was still
//! clearing pages for a fifth of the step. [`Allocator`] therefore turns purging off
//! (`purge_delay` -1), so a program keeps the memory of its largest step until it exits;
//! `MIMALLOC_PURGE_DELAY` in the environment still decides when it is set.
//! BENCHMARKS.md has the measurements. A library cannot choose the global allocator; a
//! program does, as the `cxr` binary and the benches do:
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOCATOR: cxr::alloc::Allocator = cxr::alloc::Allocator;
//!
//! fn main() {
//!     // ... train
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::{c_int, c_long};
use std::sync::atomic::{AtomicBool, Ordering};

use mimalloc::MiMalloc;

/// mimalloc that never hands freed memory back to the system (see the module's notes).
pub struct Allocator;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (libmimalloc-sys 0.1.49); the
/// test below checks it against the option's documented default.
const PURGE_DELAY: c_int = 15;

unsafe extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    fn mi_option_get(option: c_int) -> c_long;
}

static CONFIGURED: AtomicBool = AtomicBool::new(false);

/// Turns purging off once, before the first allocation can be freed.
#[inline]
fn configure() {
    if !CONFIGURED.load(Ordering::Relaxed) {
        CONFIGURED.store(true, Ordering::Relaxed);
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: sets one of mimalloc's options, which may be changed at any time.
            unsafe { mi_option_set(PURGE_DELAY, -1) }
        }
    }
}

/// How long mimalloc waits before it hands freed memory back, in milliseconds (-1: never).
pub fn purge_delay() -> c_long {
    // SAFETY: reads one of mimalloc's options.
    unsafe { mi_option_get(PURGE_DELAY) }
}

// SAFETY: every call goes to mimalloc with the same arguments.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        configure();
        // SAFETY: the caller's guarantees, passed on.
        unsafe { MiMalloc.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        configure();
        // SAFETY: the caller's guarantees, passed on.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_allocation_turns_purging_off() {
        // mimalloc 3's default delay, read before anything used `Allocator`: a wrong
        // option number would read some other option's value.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay(), 1000);
        }
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: a non-zero size, freed with the same layout.
        unsafe {
            let p = Allocator.alloc(layout);
            assert!(!p.is_null());
            Allocator.dealloc(p, layout);
        }
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay(), -1);
        }
    }
}
