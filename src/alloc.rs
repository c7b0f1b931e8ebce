//! The memory allocator for programs that train: mimalloc.
//!
//! A training step frees and allocates again activations of tens of megabytes. The
//! system allocator (glibc) serves each of those from a fresh `mmap` and returns it with
//! `munmap` when freed, so every step faults its memory in again, zeroed, page by page,
//! and pays for the TLB shoot-downs of unmapping it: a tenth of the training step's
//! profile was in the kernel. mimalloc keeps freed memory for the next allocation (it
//! returns it to the system after 10 ms unused, its `purge_delay`; BENCHMARKS.md
//! counts the page faults that remain). A library cannot choose the global allocator; a
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

pub use mimalloc::MiMalloc as Allocator;
