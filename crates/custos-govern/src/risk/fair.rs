//! FAIR-style quantification: a risk's annualized loss exposure by Monte Carlo over its loss
//! event frequency and loss magnitude, each a three-point (min, most likely, max) estimate
//! drawn as a PERT distribution. Seeded, so the same register and seed give the same numbers.

use super::Range;
use serde::Serialize;

/// A checked three-point estimate: finite, non-negative, min ≤ likely ≤ max.
pub fn check_range(r: &Range) -> Result<(), String> {
    if ![r.min, r.likely, r.max].iter().all(|v| v.is_finite()) {
        return Err("min, likely and max must be finite numbers".into());
    }
    if r.min < 0.0 {
        return Err(format!("min {} is negative", r.min));
    }
    if !(r.min <= r.likely && r.likely <= r.max) {
        return Err(format!(
            "min ≤ likely ≤ max does not hold ({} / {} / {})",
            r.min, r.likely, r.max
        ));
    }
    Ok(())
}

/// SplitMix64: small, fast, and fixed by its definition, so a seed means the same numbers
/// on every build (a library generator may change its algorithm between versions).
#[derive(Clone, Debug)]
pub struct Sampler(u64);

impl Sampler {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1): never 0, so logarithms are finite.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    /// Gamma(shape, 1) for shape ≥ 1 (Marsaglia and Tsang).
    fn gamma(&mut self, shape: f64) -> f64 {
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }
    fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        x / (x + y)
    }
    /// A PERT draw (λ = 4) from a checked range.
    pub fn pert(&mut self, r: &Range) -> f64 {
        let span = r.max - r.min;
        if span <= 0.0 {
            return r.min;
        }
        let a = 1.0 + 4.0 * (r.likely - r.min) / span;
        let b = 1.0 + 4.0 * (r.max - r.likely) / span;
        r.min + self.beta(a, b) * span
    }
    /// Poisson(λ): exact (Knuth) below 30, the normal approximation above.
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut k = 0u64;
            let mut p = 1.0;
            loop {
                p *= self.uniform();
                if p <= limit {
                    return k;
                }
                k += 1;
            }
        }
        (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64
    }
}

/// The PERT distribution's mean and variance.
pub fn pert_moments(r: &Range) -> (f64, f64) {
    let mean = (r.min + 4.0 * r.likely + r.max) / 6.0;
    (mean, ((mean - r.min) * (r.max - mean) / 7.0).max(0.0))
}

/// A risk's simulated annual loss.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Exposure {
    pub iterations: u32,
    pub seed: u64,
    /// Mean annual loss: the annualized loss exposure.
    pub ale: f64,
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    /// Share of years with any loss.
    pub p_loss: f64,
}

/// Events in a year beyond which their losses are summed as one normal draw (the central
/// limit), so a frequency of a million a year costs no more than one of a thousand.
const SUMMED: u64 = 1000;

/// Simulates `iterations` years: each draws a frequency, a Poisson count of loss events at
/// that rate, and a magnitude per event.
pub fn simulate(f: &super::Fair, iterations: u32, seed: u64) -> Result<Exposure, String> {
    check_range(&f.frequency).map_err(|e| format!("frequency: {e}"))?;
    check_range(&f.magnitude).map_err(|e| format!("magnitude: {e}"))?;
    let iterations = iterations.max(1);
    let mut rng = Sampler::new(seed);
    let (m_mean, m_var) = pert_moments(&f.magnitude);
    let mut years: Vec<f64> = Vec::with_capacity(iterations as usize);
    for _ in 0..iterations {
        let rate = rng.pert(&f.frequency);
        let n = rng.poisson(rate);
        let loss = if n <= SUMMED {
            (0..n).map(|_| rng.pert(&f.magnitude)).sum::<f64>()
        } else {
            let n = n as f64;
            (n * m_mean + (n * m_var).sqrt() * rng.normal())
                .clamp(n * f.magnitude.min, n * f.magnitude.max)
        };
        years.push(loss);
    }
    let ale = years.iter().sum::<f64>() / f64::from(iterations);
    let p_loss = years.iter().filter(|y| **y > 0.0).count() as f64 / f64::from(iterations);
    years.sort_by(f64::total_cmp);
    let q = |p: f64| years[((p * (years.len() - 1) as f64).round() as usize).min(years.len() - 1)];
    Ok(Exposure {
        iterations,
        seed,
        ale,
        p10: q(0.10),
        p50: q(0.50),
        p90: q(0.90),
        p95: q(0.95),
        p_loss,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Fair;
    use super::*;
    use proptest::prelude::*;

    fn range(a: f64, b: f64, c: f64) -> Range {
        Range {
            min: a,
            likely: b,
            max: c,
        }
    }

    #[test]
    fn the_mean_converges_on_frequency_times_magnitude() {
        let f = Fair {
            frequency: range(1.0, 4.0, 10.0),
            magnitude: range(1_000.0, 20_000.0, 200_000.0),
        };
        let e = simulate(&f, 40_000, 7).unwrap();
        let expected = pert_moments(&f.frequency).0 * pert_moments(&f.magnitude).0;
        assert!(
            (e.ale / expected - 1.0).abs() < 0.03,
            "{} vs {expected}",
            e.ale
        );
        assert!(e.p10 <= e.p50 && e.p50 <= e.p90 && e.p90 <= e.p95);
    }

    #[test]
    fn large_frequencies_are_summed_not_looped() {
        let f = Fair {
            frequency: range(1e6, 2e6, 3e6),
            magnitude: range(0.01, 0.02, 0.05),
        };
        let e = simulate(&f, 200, 1).unwrap();
        let expected = 2e6 * pert_moments(&f.magnitude).0;
        assert!(
            (e.ale / expected - 1.0).abs() < 0.05,
            "{} vs {expected}",
            e.ale
        );
    }

    #[test]
    fn bad_ranges_are_refused() {
        let f = Fair {
            frequency: range(3.0, 2.0, 1.0),
            magnitude: range(1.0, 1.0, 1.0),
        };
        assert!(simulate(&f, 10, 1).unwrap_err().contains("frequency"));
        assert!(check_range(&range(-1.0, 0.0, 1.0)).is_err());
        assert!(check_range(&range(0.0, f64::NAN, 1.0)).is_err());
    }

    proptest! {
        #[test]
        fn draws_stay_in_range_and_seeds_repeat(
            a in 0.0f64..1e6, b in 0.0f64..1e6, c in 0.0f64..1e6, seed in any::<u64>()
        ) {
            let mut v = [a, b, c];
            v.sort_by(f64::total_cmp);
            let r = range(v[0], v[1], v[2]);
            let mut rng = Sampler::new(seed);
            for _ in 0..50 {
                let x = rng.pert(&r);
                prop_assert!(x >= r.min && x <= r.max, "{x} outside {r:?}");
            }
            let f = Fair { frequency: range(0.0, v[0] / 1e5, v[2] / 1e5), magnitude: r.clone() };
            let one = simulate(&f, 64, seed).unwrap();
            let two = simulate(&f, 64, seed).unwrap();
            prop_assert_eq!(&one, &two);
            prop_assert!(one.ale >= 0.0 && one.ale.is_finite());
            prop_assert!(one.p95 <= (f.frequency.max * 3.0 + 40.0) * r.max + 1e-9);
        }
    }
}
