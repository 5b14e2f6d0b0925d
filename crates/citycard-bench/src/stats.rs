//! Medians and percentiles.

use std::time::Duration;

/// Median and 95th percentile (nearest rank) of `samples`, in microseconds.
pub fn median_p95_us(samples: &mut [Duration]) -> (f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let n = samples.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        samples
            .get(rank - 1)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    };
    (at(0.5), at(0.95))
}

/// Median of `samples` in microseconds.
pub fn median_us(samples: &mut [Duration]) -> f64 {
    median_p95_us(samples).0
}
