//! A fixed-bucket histogram of durations (map reads), cheap to record from the reader.

use std::time::Duration;

/// Upper bounds in seconds: a full read is about a millisecond, so the buckets resolve
/// 0.1 ms to 100 ms.
pub const BOUNDS: [f64; 10] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// Counts per bucket (not cumulative), total count and sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    counts: [u64; BOUNDS.len()],
    count: u64,
    sum_seconds: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        if let Some(index) = BOUNDS.iter().position(|&bound| seconds <= bound) {
            self.counts[index] += 1;
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }

    /// Cumulative `(upper bound, count)` pairs, as exposition formats want them.
    #[must_use]
    pub fn cumulative(&self) -> [(f64, u64); BOUNDS.len()] {
        let mut running = 0;
        let mut out = [(0.0, 0); BOUNDS.len()];
        for ((slot, &bound), &count) in out.iter_mut().zip(&BOUNDS).zip(&self.counts) {
            running += count;
            *slot = (bound, running);
        }
        out
    }

    /// Observations recorded.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the observations, in seconds.
    #[must_use]
    pub fn sum_seconds(&self) -> f64 {
        self.sum_seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let mut histogram = Histogram::default();
        for micros in [50, 100, 700, 3_000, 500_000] {
            histogram.observe(Duration::from_micros(micros));
        }
        let cumulative = histogram.cumulative();
        assert_eq!(
            cumulative[0],
            (0.000_1, 2),
            "50 us and 100 us are <= 0.1 ms"
        );
        assert_eq!(cumulative[3], (0.001, 3), "700 us is <= 1 ms");
        assert_eq!(cumulative[5], (0.005, 4), "3 ms is <= 5 ms");
        assert_eq!(cumulative[9], (0.1, 4), "500 ms is only in +Inf");
        assert_eq!(histogram.count(), 5);
        assert!((histogram.sum_seconds() - 0.503_85).abs() < 1e-9, "sum");
    }
}
