//! One way to spread work over the cores: used wherever a run handles many independent items (leaves to decide
//! or issue, nodes to render, pieces of the index, proofs to record).

use std::sync::atomic::{AtomicUsize, Ordering};

/// `f` of every item, on every core, in the items' order. Each thread takes the next item from a shared counter
/// rather than a fixed share of the list, because the items that take long are often neighbours (a renewed profile,
/// a new node): fixed halves would leave one core idle. Results are put back in list order, so nothing depends on
/// how the work is split.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len().max(1));
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (f, next) = (&f, &next);
                s.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, f(item)));
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a worker thread panicked")).collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}
