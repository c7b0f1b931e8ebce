//! The memory allocator for programs that train: mimalloc, told to keep what is freed.
//!
//! A training step frees and allocates again activations of tens of megabytes. The
//! system allocator hands each one back to the kernel and faults it in again, zeroed,
//! page by page; mimalloc keeps it, but by default still returns ("purges") freed memory
//! after 10 ms, and a step lasts longer than that. A library cannot choose the global
//! allocator; a program does, as the `cxr` binary and the benches do:
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOCATOR: cxr::alloc::Allocator = cxr::alloc::Allocator;
//!
//! fn main() {
//!     cxr::alloc::keep_freed_memory();
//!     // ... train
//! }
//! ```

pub use mimalloc::MiMalloc as Allocator;

/// mimalloc's `mi_option_purge_delay`: its place in `mi_option_e`, the same in mimalloc
/// 2 and 3 (mimalloc.h).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    #[cfg(test)]
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
}

/// Never return freed memory to the operating system (mimalloc's purge delay -1): the
/// next step's tensors reuse it without page faults. Memory stays at the largest step's
/// size until the program ends. Does nothing unless [`Allocator`] is the global one.
pub fn keep_freed_memory() {
    // SAFETY: mimalloc's options may be set at any time from any thread; the value is
    // the documented "never" of this option.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_set_is_the_purge_delay() {
        // The purge delay's default is 10 ms: an option at another place would not read
        // 10 (the environment can override it, as MIMALLOC_PURGE_DELAY).
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reading an option is always allowed.
            assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, 10);
        }
        keep_freed_memory();
        // SAFETY: as above.
        assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, -1);
    }
}
