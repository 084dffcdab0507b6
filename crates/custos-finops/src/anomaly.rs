//! Spend anomalies: each day's burn against its trailing window (28 days by default),
//! flagged when it lies more than k standard deviations from the baseline. The robust method
//! uses the median and the scaled median absolute deviation, which one earlier spike cannot
//! inflate; weekday seasonality divides each day by its weekday's share first, so quiet
//! weekends do not look like drops. Statistics use f64; money sums never do.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Mean and sample standard deviation.
    Sigma,
    /// Median and 1.4826 × median absolute deviation.
    Robust,
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sigma" | "stddev" => Ok(Method::Sigma),
            "robust" | "mad" => Ok(Method::Robust),
            _ => Err(format!("{s:?} is not a method: use sigma or robust")),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub k: f64,
    pub window: usize,
    /// Fewest trailing days needed before a day is judged.
    pub min_history: usize,
    pub method: Method,
    pub weekday_seasonality: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            k: 2.0,
            window: 28,
            min_history: 14,
            method: Method::Sigma,
            weekday_seasonality: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    /// Index of the day in the series.
    pub index: usize,
    pub value: f64,
    /// What the baseline expected for that day (seasonality included).
    pub expected: f64,
    /// Signed distance from the baseline in (robust) standard deviations.
    pub score: f64,
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Center and spread of a baseline under a method.
fn center_spread(xs: &[f64], method: Method) -> (f64, f64) {
    match method {
        Method::Sigma => {
            let m = mean(xs);
            let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>()
                / (xs.len().saturating_sub(1).max(1)) as f64;
            (m, var.sqrt())
        }
        Method::Robust => {
            let mut v = xs.to_vec();
            let med = median(&mut v);
            let mut dev: Vec<f64> = xs.iter().map(|x| (x - med).abs()).collect();
            (med, 1.4826 * median(&mut dev))
        }
    }
}

/// Flags anomalous days in `daily` (one value per consecutive day; missing days as 0).
/// Days seven apart share a weekday, which is all seasonality needs.
pub fn detect(daily: &[f64], s: &Settings) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for i in 0..daily.len() {
        let from = i.saturating_sub(s.window);
        let base = &daily[from..i];
        if base.len() < s.min_history.max(2) {
            continue;
        }
        // With seasonality the baseline of a day is its own weekday's center in the window
        // (additive: a weekend's noise is not magnified by dividing by a small factor), and
        // the spread is that of every day's distance from its weekday's center.
        let (expected, spread) = if s.weekday_seasonality {
            // Residuals leave their own day out of its center, or a weekday seen only four
            // times would look far calmer than it is.
            let weekday_center = |day: usize| -> f64 {
                let same: Vec<f64> = (from..i)
                    .filter(|&d| d % 7 == day % 7 && d != day)
                    .map(|d| daily[d])
                    .collect();
                if same.is_empty() {
                    center_spread(base, s.method).0
                } else {
                    center_spread(&same, s.method).0
                }
            };
            let residuals: Vec<f64> = (from..i).map(|d| daily[d] - weekday_center(d)).collect();
            (weekday_center(i), center_spread(&residuals, s.method).1)
        } else {
            center_spread(base, s.method)
        };
        // A perfectly flat history would make any cent of change infinitely surprising:
        // a floor of 1% of the level keeps the score meaningful.
        let level = mean(base).abs();
        let spread = spread.max(level * 0.01).max(1e-9);
        let score = (daily[i] - expected) / spread;
        if score.abs() > s.k {
            out.push(Anomaly {
                index: i,
                value: daily[i],
                expected,
                score,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so the tests need no RNG crate.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Approximately normal (Irwin–Hall, 12 uniforms).
        fn normal(&mut self) -> f64 {
            (0..12).map(|_| self.next()).sum::<f64>() - 6.0
        }
    }

    #[test]
    fn flags_a_spike_and_a_drop() {
        let mut g = Lcg(7);
        let mut series: Vec<f64> = (0..60).map(|_| 100.0 + 3.0 * g.normal()).collect();
        series[40] = 180.0;
        series[50] = 20.0;
        for method in [Method::Sigma, Method::Robust] {
            let found = detect(
                &series,
                &Settings {
                    method,
                    ..Settings::default()
                },
            );
            let idx: Vec<usize> = found.iter().map(|a| a.index).collect();
            assert!(
                idx.contains(&40) && idx.contains(&50),
                "{method:?}: {idx:?}"
            );
            assert!(found.iter().find(|a| a.index == 40).unwrap().score > 0.0);
        }
    }

    #[test]
    fn weekday_seasonality_keeps_quiet_weekends_quiet() {
        // Weekdays ~100, weekends ~20.
        let mut g = Lcg(3);
        let mut series: Vec<f64> = (0..84)
            .map(|d| if d % 7 >= 5 { 20.0 } else { 100.0 } + 2.0 * g.normal())
            .collect();
        // A Saturday that burns like a weekday is unusual only once weekdays are known.
        series[75] = 100.0;
        let plain = detect(&series, &Settings::default());
        let seasonal = detect(
            &series,
            &Settings {
                weekday_seasonality: true,
                method: Method::Robust,
                k: 3.0,
                ..Settings::default()
            },
        );

        assert!(plain.iter().all(|a| a.index != 75), "{plain:?}");
        let idx: Vec<usize> = seasonal.iter().map(|a| a.index).collect();
        assert!(idx.contains(&75), "{idx:?}");
        // Without seasonality every weekend would be an alarm; with it, noise at most.
        assert!(idx.len() <= 3, "{idx:?}");
    }

    #[test]
    fn short_or_flat_histories_do_not_panic() {
        assert!(detect(&[], &Settings::default()).is_empty());
        assert!(detect(&[1.0; 5], &Settings::default()).is_empty());
        let flat = [10.0; 30];
        assert!(detect(&flat, &Settings::default()).is_empty());
        let mut zeros = [0.0; 30];
        zeros[29] = 5.0;
        assert_eq!(detect(&zeros, &Settings::default()).len(), 1);
    }

    /// Detection rate and false alarms on synthetic series with injected spikes (the figures
    /// in bench/RESULTS.md come from `cargo run --example anomaly_eval`).
    #[test]
    fn synthetic_detection_rate() {
        let mut g = Lcg(42);
        let (mut hits, mut spikes, mut false_alarms, mut days) = (0, 0, 0, 0);
        for _ in 0..200 {
            let mut series: Vec<f64> = (0..90).map(|_| 500.0 + 25.0 * g.normal()).collect();
            let at = 30 + (g.next() * 59.0) as usize;
            series[at] *= 1.5;
            spikes += 1;
            let found = detect(
                &series,
                &Settings {
                    method: Method::Robust,
                    k: 3.0,
                    ..Settings::default()
                },
            );
            for a in &found {
                if a.index == at {
                    hits += 1;
                } else {
                    false_alarms += 1;
                }
            }
            days += 90 - 14;
        }
        assert!(hits as f64 / spikes as f64 >= 0.95, "{hits}/{spikes}");
        assert!(
            (false_alarms as f64 / days as f64) < 0.02,
            "{false_alarms}/{days}"
        );
    }
}
