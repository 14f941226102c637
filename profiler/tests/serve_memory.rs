//! Host test of the memory a `/metrics` scrape holds: the exposition is written piece by
//! piece into a buffer of bounded size, so what a scrape allocates does not grow with the
//! label sets (the whole text, 19 KB or more a label set with wide histograms, is never held).
//! A counting allocator measures the peak heap above the start of each rendering.
use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::HashMap,
    sync::atomic::{AtomicUsize, Ordering},
};

use probe_common::{CallSummary, SummaryKey, hist_bucket};
use profiler::{
    analyze::summary::Summaries,
    render::prometheus::{self, Exposition, Health},
    serve::{CHUNK, otlp, series::Series},
};

struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller's layout is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The peak heap above its start while `f` runs.
fn peak_of(f: impl FnOnce() -> usize) -> (usize, usize) {
    let base = NOW.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (PEAK.load(Ordering::Relaxed) - base, out)
}

/// `n` label sets whose histograms spread over many octaves (the widest text per set).
fn series(n: u32) -> Series {
    let mut live = Summaries::new();
    let mut names = HashMap::new();
    for pid in 1..=n {
        let mut s = CallSummary {
            calls: 1000,
            bytes: 4096 * 1000,
            ..CallSummary::default()
        };
        for (i, ns) in [300u64, 10_000, 1_000_000, 100_000_000]
            .into_iter()
            .enumerate()
        {
            s.hist_total[hist_bucket(ns)] = 250;
            s.hist_wait[hist_bucket(ns / 2)] = 250;
            s.hist_copy[hist_bucket(ns / 4 + i as u64)] = 250;
        }
        let key = SummaryKey {
            pid,
            nr: libc::SYS_read as u32,
            fd_class: probe_common::fd_class::FILE,
        };
        live.insert(key, s);
        names.insert(pid, format!("worker-{pid}"));
    }
    let mut series = Series::new(n as usize + 1);
    series.update(&live, &names);
    series
}

/// What the server does for a scrape: pieces of about `CHUNK` bytes into one buffer, each
/// handed on (here: counted) before the next; the bytes rendered.
fn streamed(s: &Series, health: &Health) -> usize {
    let mut buf = String::with_capacity(CHUNK + 64 * 1024);
    let mut text = Exposition::new(s, health);
    let mut total = 0;
    loop {
        let more = text.fill(&mut buf, CHUNK);
        total += buf.len();
        buf.clear();
        if !more {
            return total;
        }
    }
}

#[test]
fn a_scrape_holds_the_same_memory_for_100_or_1000_label_sets() {
    let health = Health::default();
    let mut rows = Vec::new();
    for n in [100, 1000] {
        let s = series(n);
        let (whole, len) = peak_of(|| prometheus::exposition(&s, &health).len());
        let (piecewise, streamed_len) = peak_of(|| streamed(&s, &health));
        assert_eq!(streamed_len, len);
        let cx = otlp::Context {
            host: "h".into(),
            start_ns: 1,
            now_ns: 2,
        };
        let (push, body) = peak_of(|| otlp::encode(&s, &health, &cx).len());
        // The OTLP push holds its encoded request whole: packed numbers make it smaller than
        // the text, and one family's structures at a time.
        assert!(body < len / 2, "{body} bytes of OTLP, {len} of text");
        assert!(
            push < 2 * body,
            "{push} bytes held for {body} bytes of OTLP"
        );
        eprintln!(
            "{n} label sets: {len} bytes of text ({} a set); held at once: {whole} bytes whole, {piecewise} bytes in pieces; OTLP: {body} bytes ({} a set), {push} bytes held",
            len / n as usize,
            body / n as usize
        );
        rows.push((n, whole, piecewise));
    }
    // The whole text grows with the label sets; the pieces do not.
    assert!(rows[1].1 > 5 * rows[0].1, "{rows:?}");
    assert_eq!(rows[0].2, rows[1].2, "{rows:?}");
    assert!(rows[1].2 < 3 * CHUNK, "{rows:?}");
}
