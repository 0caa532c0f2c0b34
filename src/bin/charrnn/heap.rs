//! Heap accounting for `charrnn bench`'s peak-heap column: a global allocator that forwards to
//! the system's and counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use charrnn::bench;

/// Counts heap bytes in use and their peak, so `charrnn bench` can report each case's memory.
struct CountingAlloc;

static HEAP_NOW: AtomicUsize = AtomicUsize::new(0);
static HEAP_PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters only
// observe sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = HEAP_NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            HEAP_PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        HEAP_NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            HEAP_NOW.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = HEAP_NOW.fetch_add(new_size, Ordering::Relaxed) + new_size;
            HEAP_PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The heap counters of [`CountingAlloc`], for `bench`'s peak-heap column.
pub(crate) struct HeapCounter;

impl bench::HeapProbe for HeapCounter {
    fn start(&self) -> usize {
        let now = HEAP_NOW.load(Ordering::Relaxed);
        HEAP_PEAK.store(now, Ordering::Relaxed);
        now
    }

    fn peak_since(&self, start: usize) -> Option<u64> {
        Some(HEAP_PEAK.load(Ordering::Relaxed).saturating_sub(start) as u64)
    }
}
