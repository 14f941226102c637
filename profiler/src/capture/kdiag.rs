//! The kernel programs' diagnostics (aya-log records), collected as text while the probes
//! run; the report shows them under `-v` and counts them in its warnings.
use std::sync::{Arc, Mutex};

/// A `log` sink that keeps every record the kernel programs logged, as text.
#[derive(Clone, Debug, Default)]
pub struct Collected(Arc<Mutex<Vec<String>>>);

impl Collected {
    /// The messages collected so far, taken out.
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

impl log::Log for Collected {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(format!("{}: {}", record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Log as _;

    #[test]
    fn records_are_kept_as_text_once() {
        let c = Collected::default();
        c.log(
            &log::Record::builder()
                .level(log::Level::Warn)
                .args(format_args!("slot clash: thread {}", 7))
                .build(),
        );
        let got = c.take();
        assert_eq!(got, vec!["WARN: slot clash: thread 7".to_string()]);
        assert!(c.take().is_empty());
    }
}
