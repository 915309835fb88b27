//! A learned baseline for one rate: exponentially weighted mean and variance, robust to bursts.

/// Exponentially weighted moving mean and variance of a rate (per second).
///
/// The variance update is the incremental form of Finch, "Incremental calculation of weighted
/// mean and variance" (2009), section 9: `diff = x - mean; mean += a * diff;
/// var = (1 - a) * (var + a * diff^2)`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Baseline {
    mean: f64,
    var: f64,
}

impl Baseline {
    /// The weighted mean, per second.
    #[must_use]
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The deviation used to judge a rate measured over `interval_secs`.
    ///
    /// The learned standard deviation, but never below the counting noise a Poisson process
    /// with the same mean shows over that interval (`sqrt(mean / interval)`): a series that
    /// happened to be smooth while learning must not make ordinary jitter look extreme.
    #[must_use]
    pub fn sigma(&self, interval_secs: f64) -> f64 {
        self.var.max(self.mean / interval_secs).sqrt()
    }

    /// How many deviations `rate` lies above the mean. Infinite above a mean of exactly zero
    /// with no variance (a silent series that speaks); the minimum rates guard that case.
    #[must_use]
    pub fn z(&self, rate: f64, interval_secs: f64) -> f64 {
        let excess = rate - self.mean;
        let sigma = self.sigma(interval_secs);
        if sigma > 0.0 {
            excess / sigma
        } else if excess > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    }

    /// Learns `rate` with weight `alpha` in (0, 1], after clipping it to `ceiling`.
    ///
    /// Clipping (winsorizing) keeps one burst from inflating the mean and variance that
    /// should catch the next burst, while a lasting change of level is still learned: each
    /// sample moves the ceiling up with the mean and variance it raises.
    pub fn learn(&mut self, rate: f64, alpha: f64, ceiling: f64) {
        let x = rate.min(ceiling);
        let diff = x - self.mean;
        let step = alpha * diff;
        self.mean += step;
        self.var = (1.0 - alpha) * (self.var + diff * step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_one_takes_the_sample() {
        let mut b = Baseline::default();
        b.learn(42.0, 1.0, f64::INFINITY);
        assert!(
            (b.mean() - 42.0).abs() < 1e-12,
            "expected mean 42, got {}",
            b.mean()
        );
        assert!(
            b.var.abs() < 1e-12,
            "expected no variance after one sample, got {}",
            b.var
        );
    }

    #[test]
    fn cumulative_weights_give_the_sample_mean_and_variance() {
        // With alpha = 1/n the recurrence is the running mean and population variance.
        let samples = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let mut b = Baseline::default();
        for (i, x) in samples.iter().enumerate() {
            #[expect(clippy::cast_precision_loss, reason = "i < 8")]
            b.learn(*x, 1.0 / (i as f64 + 1.0), f64::INFINITY);
        }
        assert!(
            (b.mean() - 5.0).abs() < 1e-12,
            "expected mean 5, got {}",
            b.mean()
        );
        assert!(
            (b.var - 4.0).abs() < 1e-12,
            "expected variance 4, got {}",
            b.var
        );
    }

    #[test]
    fn ceiling_clips_the_sample() {
        let mut b = Baseline::default();
        b.learn(1000.0, 0.5, 10.0);
        assert!(
            (b.mean() - 5.0).abs() < 1e-12,
            "expected the clipped sample to move the mean to 5, got {}",
            b.mean()
        );
    }

    #[test]
    fn sigma_is_floored_at_poisson_noise() {
        let b = Baseline {
            mean: 100.0,
            var: 0.0,
        };
        let cases = [("1 s interval", 1.0, 10.0), ("4 s interval", 4.0, 5.0)];
        for (name, interval, want) in cases {
            let got = b.sigma(interval);
            assert!(
                (got - want).abs() < 1e-12,
                "{name}: expected sigma {want}, got {got}"
            );
        }
    }

    #[test]
    fn z_of_a_silent_series() {
        let b = Baseline::default();
        assert!(
            b.z(1.0, 1.0).is_infinite(),
            "any rate above a silent baseline is infinitely far"
        );
        assert!(
            b.z(0.0, 1.0).abs() < f64::EPSILON,
            "silence is no deviation"
        );
    }
}
