//! Progress reporting for long operations: an indicatif bar when stderr is a terminal, plain
//! lines otherwise (logs and CI stay readable).

use std::io::IsTerminal;
use std::sync::Mutex;

use amberdb::backup::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// The CLI's implementation of the engine's `Progress` trait.
pub struct CliProgress {
    bar: Mutex<Option<ProgressBar>>,
    tty: bool,
    quiet: bool,
}

impl CliProgress {
    /// Bars on a terminal, lines otherwise; nothing at all when `quiet` (e.g. `--json`).
    pub fn new(quiet: bool) -> Self {
        CliProgress {
            bar: Mutex::new(None),
            tty: std::io::stderr().is_terminal(),
            quiet,
        }
    }
}

impl Progress for CliProgress {
    fn begin(&self, stage: &str, total: Option<u64>) {
        if self.quiet {
            return;
        }
        if !self.tty {
            match total {
                Some(t) => eprintln!("{stage} ({t} bytes)"),
                None => eprintln!("{stage}"),
            }
            return;
        }
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template(
                    "{msg:40} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        bar.set_message(stage.to_owned());
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(bar);
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(b) = self.bar.lock() {
            if let Some(bar) = b.as_ref() {
                bar.inc(n);
            }
        }
    }

    fn end(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(bar) = b.take() {
                bar.finish_and_clear();
            }
        }
    }
}
