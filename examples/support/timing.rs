//! The examples' one timing rule: the median of repeated runs.

use std::time::Instant;

/// Runs `f` `runs` times (at least once) and returns the median wall time in milliseconds.
pub fn median_ms(runs: usize, mut f: impl FnMut() -> rep::Result<()>) -> rep::Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
