//! Keeping the thread pool awake for the length of a planned forward.
//!
//! A forward is a chain of short parallel regions (tens to hundreds of microseconds each).
//! Between two of them a rayon worker with nothing to do yields a few dozen times, then
//! sleeps, and waking it costs tens of microseconds on a virtual machine: the next region
//! waits for it. [`with_pool_awake`] gives every other worker of the pool a job that polls
//! for the forward's jobs (running them as they come) until the forward ends, which is
//! what ONNX Runtime's spinning thread pool does by default.

use std::sync::atomic::{AtomicBool, Ordering};

/// Runs `f` on the calling thread while the pool's other threads poll for its parallel jobs
/// instead of going to sleep between them; returns `f`'s result once they have stopped. With
/// one thread, just `f()`.
///
/// A polling thread runs whatever job the pool offers, not only `f`'s: when plans run inside
/// the caller's own rayon jobs, a forward may return only once its helper has finished a job
/// it picked up meanwhile (as with `rayon::join`, whose second half may do the same).
pub(super) fn with_pool_awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let helpers = rayon::current_num_threads() - 1;
    if helpers == 0 {
        return f();
    }
    let done = AtomicBool::new(false);
    let (result, ()) = rayon::join(
        || {
            // Set even if `f` panics, so that the helpers stop and the panic propagates.
            let _done = SetOnDrop(&done);
            f()
        },
        || poll(&done, helpers),
    );
    result
}

/// `helpers` jobs that run the pool's pending jobs until `done`; each one that a thread
/// steals hands the next to another.
fn poll(done: &AtomicBool, helpers: usize) {
    if helpers == 0 {
        return;
    }
    rayon::join(
        || {
            while !done.load(Ordering::Acquire) {
                match rayon::yield_now() {
                    Some(rayon::Yield::Executed) => {}
                    Some(rayon::Yield::Idle) => std::hint::spin_loop(),
                    None => break,
                }
            }
        },
        || poll(done, helpers - 1),
    );
}

/// Sets its flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// The result comes back, parallel jobs inside still run (on several threads of a pool of
    /// four), and a panic inside reaches the caller instead of leaving the helpers polling.
    #[test]
    fn runs_the_work_and_stops_the_helpers() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        let sum = pool.install(|| with_pool_awake(|| (0..1000u64).into_par_iter().map(|i| i * i).sum::<u64>()));
        assert_eq!(sum, (0..1000u64).map(|i| i * i).sum::<u64>());
        // On its own thread, so that helpers left polling fail the test instead of hanging it.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let panicked = pool.install(|| std::panic::catch_unwind(|| with_pool_awake(|| panic!("inside"))));
            sender.send(panicked.is_err()).unwrap();
        });
        let panicked = receiver.recv_timeout(std::time::Duration::from_secs(20));
        assert_eq!(panicked, Ok(true), "the panic did not come back");
        let single = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(single.install(|| with_pool_awake(|| 7)), 7);
    }
}
