//! A global allocator that counts, for the examples' measurements: heap allocations, live bytes
//! and their peak. Included by the examples that measure (`#[path] mod counting;`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static COUNT: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            COUNT.fetch_add(1, Ordering::Relaxed);
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What a closure did to the heap.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)]
pub struct Heap {
    /// Allocations made (on any thread).
    pub allocations: usize,
    /// Peak growth of the live bytes above where they started.
    pub peak_bytes: usize,
}

/// Runs `f` and reports its allocations and peak heap growth.
#[allow(dead_code)]
pub fn during<T>(f: impl FnOnce() -> T) -> (T, Heap) {
    let (count, base) = (COUNT.load(Ordering::SeqCst), LIVE.load(Ordering::SeqCst));
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    let heap = Heap {
        allocations: COUNT.load(Ordering::SeqCst) - count,
        peak_bytes: PEAK.load(Ordering::SeqCst).saturating_sub(base),
    };
    (out, heap)
}
