//! The log sink: log lines never panic, never block a request, and are counted when dropped.
//!
//! tracing-subscriber writes each event with one `write_all` to the writer it is given; when
//! that fails (stderr on a full disk) it reports the failure with `eprintln!`, which panics,
//! and a blocked stderr (a pipe nobody reads) blocks the thread that logs. So events go into a
//! bounded queue instead, drained by one thread that writes them to stderr; a full queue or a
//! failed write drops the line and counts it in [`dropped_lines`] (the metric
//! `amberdb_log_lines_dropped_total`).

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Lines queued at most; more are dropped (and counted) rather than waited for.
const QUEUE_LINES: usize = 4096;

static DROPPED: AtomicU64 = AtomicU64::new(0);
static PENDING: AtomicU64 = AtomicU64::new(0);
static QUEUE: OnceLock<Mutex<SyncSender<Vec<u8>>>> = OnceLock::new();

/// Log lines dropped since start (queue full or stderr failing).
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn queue() -> &'static Mutex<SyncSender<Vec<u8>>> {
    QUEUE.get_or_init(|| {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("amberdb-log".into())
            .spawn(move || drain(rx));
        if spawned.is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Mutex::new(tx)
    })
}

fn drain(rx: Receiver<Vec<u8>>) {
    let mut err = io::stderr();
    for line in rx {
        if err.write_all(&line).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        PENDING.fetch_sub(1, Ordering::Release);
    }
}

/// Waits (at most `limit`) until every queued line has been written: call before exiting.
pub fn flush(limit: Duration) {
    let end = Instant::now() + limit;
    while PENDING.load(Ordering::Acquire) > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A `MakeWriter` for tracing-subscriber: each event is buffered and queued whole.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sink;

/// One event being written.
#[derive(Debug, Default)]
pub struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.0);
        let Ok(tx) = queue().lock() else {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        };
        PENDING.fetch_add(1, Ordering::Release);
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                PENDING.fetch_sub(1, Ordering::Release);
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line::default()
    }
}
