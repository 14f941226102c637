//! A progress line for long runs on a terminal: a spinner with the time traced and the calls
//! seen so far, on standard error. Hidden when standard error is not a terminal.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Calls decoded so far in this process.
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Counts one decoded call.
pub fn count_call() {
    CALLS.fetch_add(1, Ordering::Relaxed);
}

/// Calls decoded so far.
pub fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

/// A running progress line; cleared when dropped.
pub struct Progress {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the line on standard error when `shown` and standard error is a terminal.
    pub fn start(shown: bool) -> Self {
        // indicatif draws nothing to a target that is not a terminal.
        let target = if shown {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} traced, {msg}")
        {
            bar.set_style(style);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = (!bar.is_hidden()).then(|| {
            let (bar, stop) = (bar.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    bar.set_message(format!("{} calls", calls()));
                    bar.tick();
                    std::thread::sleep(Duration::from_millis(150));
                }
            })
        });
        Self { bar, stop, ticker }
    }

    /// True when nothing is drawn.
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_when_not_asked_and_counts_calls() {
        let p = Progress::start(false);
        assert!(p.is_hidden());
        let before = calls();
        count_call();
        count_call();
        assert!(calls() >= before + 2);
        drop(p);
    }
}
