//! Two-thread pipelines for the decoders of an open: one thread produces (reads, checks,
//! decompresses), the caller's thread consumes (decodes into the state), in order, with a
//! small bound on how far the producer runs ahead. The checkpoint reader uses it; log replay
//! tried it and does not (`docs/BENCHMARKS.md`, "Session of 2026-12-04").

/// Runs `produce` on a second thread named `name` while `consume` takes what it hands over
/// on this one, in order, with at most two events in flight. `produce`'s sink returns
/// `false` once the consuming side is gone. When no thread can be started it runs both on
/// this one, in turn, with the same result.
pub(crate) fn pipelined<T: Send>(
    name: &str,
    produce: impl FnOnce(&mut dyn FnMut(T) -> bool) + Send,
    consume: &mut dyn FnMut(T),
) {
    let cell = std::sync::Mutex::new(Some(produce));
    let spawned = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<T>(2);
        let cell = &cell;
        let started = std::thread::Builder::new()
            .name(name.into())
            .spawn_scoped(s, move || {
                let produce = cell.lock().ok().and_then(|mut c| c.take());
                if let Some(produce) = produce {
                    produce(&mut |event| tx.send(event).is_ok());
                }
            });
        if started.is_err() {
            return false;
        }
        for event in rx {
            consume(event);
        }
        true
    });
    if !spawned {
        if let Some(produce) = cell.into_inner().ok().flatten() {
            produce(&mut |event| {
                consume(event);
                true
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// Issue 14: the producing side runs on a thread of its own (named, so profiles show
    /// it); everything arrives in order, and it is held at most a few events ahead, so a
    /// decoder's memory stays a few blocks or records.
    #[test]
    fn the_producer_runs_on_its_own_thread_in_order_and_bounded_ahead() {
        let sent = std::sync::atomic::AtomicUsize::new(0);
        let mut got = vec![];
        let mut ahead = 0;
        pipelined(
            "amberdb-test-pipe",
            |sink: &mut dyn FnMut((usize, Option<String>)) -> bool| {
                for i in 0..200 {
                    sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let name = std::thread::current().name().map(str::to_string);
                    if !sink((i, name)) {
                        return;
                    }
                }
            },
            &mut |(i, name)| {
                // Let the reader run ahead as far as it can before taking the next.
                std::thread::sleep(std::time::Duration::from_micros(200));
                let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
                ahead = ahead.max(sent - got.len());
                got.push((i, name));
            },
        );
        assert_eq!(got.len(), 200);
        for (n, (i, name)) in got.iter().enumerate() {
            assert_eq!(*i, n, "in order");
            assert_eq!(name.as_deref(), Some("amberdb-test-pipe"));
        }
        // The channel holds 2, the reader one more in hand, plus the one being taken.
        assert!(ahead <= 4, "the reader ran {ahead} events ahead");
    }
}
