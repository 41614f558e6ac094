//! Progress of the long commands (`caliop sites …`, `caliop tenant …`): a
//! bar on a terminal; otherwise a log line every tenth of the way.

use std::io::IsTerminal as _;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Bar {
    /// What is counted (`objects`), after the numbers; may be empty.
    unit: &'static str,
    bar: Mutex<Option<(ProgressBar, String, u64, u64)>>,
}

impl Bar {
    pub fn new(unit: &'static str) -> Bar {
        Bar {
            unit,
            bar: Mutex::new(None),
        }
    }
}

impl mail::dispersed::Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::new(total)
        } else {
            ProgressBar::hidden()
        };
        bar.set_length(total);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{msg:>18}} [{{bar:40}}] {{pos}}/{{len}} {}({{per_sec}}, {{eta}} left)",
                if self.unit.is_empty() {
                    String::new()
                } else {
                    format!("{} ", self.unit)
                }
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(what.to_owned());
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((bar, what.to_owned(), total, 0));
    }

    fn advance(&self, done: u64) {
        if let Some((bar, what, total, logged)) =
            &mut *self.bar.lock().unwrap_or_else(|p| p.into_inner())
        {
            bar.inc(done);
            let tenth = (bar.position() * 10).checked_div(*total).unwrap_or(0);
            if bar.is_hidden() && tenth > *logged {
                *logged = tenth;
                tracing::info!(step = %what, done = bar.position(), total = *total, "{}0% done", tenth);
            }
        }
    }

    fn finish(&self) {
        if let Some((bar, ..)) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}
