//! Release health: the telemetry slice of a release's calls (error rate, latency percentiles,
//! cost per call, guardrail refusals), the post-check verdict comparing a new release with
//! the one it replaced, and SLO error budgets. Pure arithmetic over counts the store gives.

use serde::{Deserialize, Serialize};

/// A release's calls over a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Slice {
    /// Calls that reached a provider.
    pub calls: u64,
    /// Of those, answered 5xx.
    pub errors: u64,
    pub error_rate: f64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    /// Mean cost per call in nano-units of the price's currency.
    pub cost_per_call_nanos: i64,
    /// Calls refused by a guardrail (never reaching a provider).
    pub guard_refusals: u64,
    /// Guardrail refusals over all calls (reached or refused).
    pub guard_rate: f64,
}

/// The nearest-rank percentile of sorted values (`p` in 0..=100).
fn percentile(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p.min(100) as usize * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

impl Slice {
    /// The slice of `calls` as (status, latency ms, cost nanos), plus guardrail refusals.
    pub fn of(calls: &[(u16, u64, i64)], guard_refusals: u64) -> Slice {
        let n = calls.len() as u64;
        let errors = calls.iter().filter(|c| c.0 >= 500).count() as u64;
        let mut lat: Vec<u64> = calls.iter().map(|c| c.1).collect();
        lat.sort_unstable();
        let cost: i128 = calls.iter().map(|c| i128::from(c.2)).sum();
        let all = n + guard_refusals;
        Slice {
            calls: n,
            errors,
            error_rate: if n == 0 {
                0.0
            } else {
                errors as f64 / n as f64
            },
            p50_ms: percentile(&lat, 50),
            p99_ms: percentile(&lat, 99),
            cost_per_call_nanos: if n == 0 {
                0
            } else {
                (cost / i128::from(n)).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
            },
            guard_refusals,
            guard_rate: if all == 0 {
                0.0
            } else {
                guard_refusals as f64 / all as f64
            },
        }
    }
}

/// When a new release breaches, relative to the previous one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Calls after promotion needed for a verdict.
    pub min_calls: u64,
    pub error_rate_margin: f64,
    pub p99_ratio: f64,
    pub cost_ratio: f64,
    pub guard_rate_margin: f64,
}

/// Latency differences under this are noise, whatever the ratio.
pub const P99_SLACK_MS: u64 = 100;

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_calls: 20,
            error_rate_margin: 0.02,
            p99_ratio: 1.5,
            cost_ratio: 1.25,
            guard_rate_margin: 0.05,
        }
    }
}

/// A post-check's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// `pass`, `breach`, or `insufficient` (too few calls to judge).
    pub status: String,
    /// Each threshold crossed, in words.
    pub breaches: Vec<String>,
}

impl Verdict {
    pub fn breached(&self) -> bool {
        self.status == "breach"
    }
}

/// Judges `after` against `before` (the previous release's calls over the same length of
/// time; compared only when it had `min_calls` itself, else absolute limits apply: the error
/// and guard margins over zero).
pub fn judge(before: Option<&Slice>, after: &Slice, t: &Thresholds) -> Verdict {
    if after.calls + after.guard_refusals < t.min_calls.max(1) {
        return Verdict {
            status: "insufficient".into(),
            breaches: vec![format!(
                "{} calls after promotion; {} are needed for a verdict",
                after.calls + after.guard_refusals,
                t.min_calls.max(1)
            )],
        };
    }
    let base = before.filter(|b| b.calls + b.guard_refusals >= t.min_calls.max(1));
    let mut breaches = Vec::new();
    let base_err = base.map_or(0.0, |b| b.error_rate);
    if after.calls > 0 && after.error_rate > base_err + t.error_rate_margin {
        breaches.push(format!(
            "error rate {:.1}% against {:.1}% before (allowed +{:.1} points)",
            after.error_rate * 100.0,
            base_err * 100.0,
            t.error_rate_margin * 100.0
        ));
    }
    if let Some(b) = base.filter(|b| b.calls > 0) {
        let limit = ((b.p99_ms as f64) * t.p99_ratio).max((b.p99_ms + P99_SLACK_MS) as f64);
        if after.calls > 0 && after.p99_ms as f64 > limit {
            breaches.push(format!(
                "p99 latency {} ms against {} ms before (allowed {:.0} ms)",
                after.p99_ms, b.p99_ms, limit
            ));
        }
        if b.cost_per_call_nanos > 0
            && after.cost_per_call_nanos as f64 > b.cost_per_call_nanos as f64 * t.cost_ratio
        {
            breaches.push(format!(
                "cost per call {} against {} before (allowed ×{})",
                after.cost_per_call_nanos, b.cost_per_call_nanos, t.cost_ratio
            ));
        }
    }
    let base_guard = base.map_or(0.0, |b| b.guard_rate);
    if after.guard_rate > base_guard + t.guard_rate_margin {
        breaches.push(format!(
            "guardrail refusal rate {:.1}% against {:.1}% before (allowed +{:.1} points)",
            after.guard_rate * 100.0,
            base_guard * 100.0,
            t.guard_rate_margin * 100.0
        ));
    }
    Verdict {
        status: if breaches.is_empty() {
            "pass"
        } else {
            "breach"
        }
        .into(),
        breaches,
    }
}

/// An SLO's error budget over its window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub calls: u64,
    pub bad: u64,
    /// Bad calls the objective allows in this many calls.
    pub allowed: f64,
    /// Bad over allowed: 1.0 is the whole budget spent.
    pub burn: f64,
    pub exhausted: bool,
}

/// The budget of an SLO with `objective` percent good calls, given `calls` of which `bad`
/// were bad; fewer than `min_calls` calls never exhaust it.
pub fn budget(objective: f64, calls: u64, bad: u64, min_calls: u64) -> Budget {
    let bad = bad.min(calls);
    let allowed = (1.0 - objective / 100.0).max(0.0) * calls as f64;
    let burn = if allowed > 0.0 {
        bad as f64 / allowed
    } else if bad > 0 {
        f64::INFINITY
    } else {
        0.0
    };
    Budget {
        calls,
        bad,
        allowed,
        burn: if burn.is_finite() { burn } else { f64::MAX },
        exhausted: calls >= min_calls.max(1) && bad as f64 > allowed,
    }
}

/// How fast an SLO spends its error budget over a lookback: the share of bad calls over the
/// share the objective allows. 1 spends the budget exactly over the SLO's window; 14.4 spends
/// 2% of a 30-day budget in an hour. No calls burn nothing.
pub fn burn_rate(objective: f64, calls: u64, bad: u64) -> f64 {
    if calls == 0 {
        return 0.0;
    }
    let allowed = (1.0 - objective / 100.0).max(0.0);
    let share = bad.min(calls) as f64 / calls as f64;
    if allowed > 0.0 {
        share / allowed
    } else if share > 0.0 {
        f64::MAX
    } else {
        0.0
    }
}

/// A multiwindow burn-rate alert (the SRE workbook's): it fires while both the long and the
/// short lookback burn at `threshold` or faster; the short one makes it stop soon after the
/// burning does. Lookbacks of fewer than `min_calls` calls never fire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BurnAlert {
    /// `page` or `ticket`.
    pub severity: &'static str,
    pub long: (&'static str, u64),
    pub short: (&'static str, u64),
    pub threshold: f64,
}

/// The lookbacks burn rates are reported over, as (label, milliseconds).
pub const BURN_WINDOWS: [(&str, u64); 4] = [
    ("5m", 300_000),
    ("30m", 1_800_000),
    ("1h", 3_600_000),
    ("6h", 21_600_000),
];

/// Page at 14.4x over an hour and five minutes; open a ticket at 6x over six hours and half
/// an hour (2% and 5% of a 30-day budget): the workbook's defaults, which Prometheus rule
/// generators (Sloth, Pyrra) also use.
pub const BURN_ALERTS: [BurnAlert; 2] = [
    BurnAlert {
        severity: "page",
        long: ("1h", 3_600_000),
        short: ("5m", 300_000),
        threshold: 14.4,
    },
    BurnAlert {
        severity: "ticket",
        long: ("6h", 21_600_000),
        short: ("30m", 1_800_000),
        threshold: 6.0,
    },
];

impl BurnAlert {
    /// Whether the alert fires, given (calls, bad) over its long and short lookbacks.
    pub fn fires(
        &self,
        objective: f64,
        long: (u64, u64),
        short: (u64, u64),
        min_calls: u64,
    ) -> bool {
        let enough = |c: (u64, u64)| c.0 >= min_calls.max(1);
        enough(long)
            && enough(short)
            && burn_rate(objective, long.0, long.1) >= self.threshold
            && burn_rate(objective, short.0, short.1) >= self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 99), 0);
    }

    #[test]
    fn a_failing_release_breaches_and_a_healthy_one_passes() {
        let good: Vec<(u16, u64, i64)> = (0..50).map(|i| (200, 10 + i % 5, 1000)).collect();
        let before = Slice::of(&good, 0);
        assert_eq!(
            judge(Some(&before), &Slice::of(&good, 0), &Thresholds::default()).status,
            "pass"
        );
        let bad: Vec<(u16, u64, i64)> = (0..50)
            .map(|i| (if i % 2 == 0 { 503 } else { 200 }, 12, 1000))
            .collect();
        let v = judge(Some(&before), &Slice::of(&bad, 0), &Thresholds::default());
        assert!(v.breached());
        assert!(v.breaches[0].starts_with("error rate 50.0%"), "{v:?}");
        let few = Slice::of(&bad[..5], 0);
        assert_eq!(
            judge(Some(&before), &few, &Thresholds::default()).status,
            "insufficient"
        );
    }

    #[test]
    fn latency_cost_and_guard_regressions_breach() {
        let before = Slice::of(&vec![(200, 200, 1000); 40], 0);
        let slow = Slice::of(&vec![(200, 400, 1000); 40], 0);
        assert!(judge(Some(&before), &slow, &Thresholds::default()).breaches[0].contains("p99"));
        let dear = Slice::of(&vec![(200, 200, 2000); 40], 0);
        assert!(judge(Some(&before), &dear, &Thresholds::default()).breaches[0].contains("cost"));
        let guarded = Slice::of(&vec![(200, 200, 1000); 40], 10);
        assert!(
            judge(Some(&before), &guarded, &Thresholds::default()).breaches[0]
                .contains("guardrail")
        );
        // Tiny latencies doubling is noise.
        let fast = Slice::of(&vec![(200, 2, 1000); 40], 0);
        let less_fast = Slice::of(&vec![(200, 4, 1000); 40], 0);
        assert!(!judge(Some(&fast), &less_fast, &Thresholds::default()).breached());
    }

    #[test]
    fn budgets() {
        let b = budget(99.0, 1000, 10, 20);
        assert!(!b.exhausted);
        assert!((b.burn - 1.0).abs() < 1e-9);
        assert!(budget(99.0, 1000, 11, 20).exhausted);
        assert!(!budget(99.0, 10, 10, 20).exhausted, "too few calls");
        assert!(budget(99.9, 100, 1, 20).exhausted);
        assert_eq!(budget(99.0, 0, 0, 20).burn, 0.0);
    }

    proptest! {
        #[test]
        fn exhausted_exactly_when_the_bad_share_exceeds_the_allowance(
            objective in 50.0f64..99.99, calls in 1u64..100_000, bad_share in 0.0f64..1.0
        ) {
            let bad = (calls as f64 * bad_share) as u64;
            let b = budget(objective, calls, bad, 1);
            let share = bad as f64 / calls as f64;
            let allowed_share = 1.0 - objective / 100.0;
            // Away from the boundary (float rounding), the verdict follows the shares.
            if (share - allowed_share).abs() > 1e-9 {
                prop_assert_eq!(b.exhausted, share > allowed_share);
            }
            prop_assert!(b.burn >= 0.0);
        }

        #[test]
        fn slices_are_consistent(calls in proptest::collection::vec((100u16..600, 0u64..100_000, 0i64..1_000_000_000), 0..300), guard in 0u64..50) {
            let s = Slice::of(&calls, guard);
            prop_assert_eq!(s.calls, calls.len() as u64);
            prop_assert!(s.errors <= s.calls);
            prop_assert!(s.p50_ms <= s.p99_ms);
            prop_assert!((0.0..=1.0).contains(&s.error_rate));
            prop_assert!((0.0..=1.0).contains(&s.guard_rate));
            if let Some(max) = calls.iter().map(|c| c.1).max() {
                prop_assert!(s.p99_ms <= max);
            }
            // A release never breaches against itself.
            let v = judge(Some(&s), &s, &Thresholds::default());
            prop_assert!(!v.breached(), "{:?}", v);
        }
    }

    #[test]
    fn burn_rates_and_multiwindow_alerts() {
        // 99.5%: 0.5% may fail; 7.2% failing burns at 14.4x.
        assert!((burn_rate(99.5, 1000, 72) - 14.4).abs() < 1e-9);
        assert_eq!(burn_rate(99.5, 0, 0), 0.0);
        assert_eq!(burn_rate(100.0, 10, 0), 0.0);
        assert_eq!(burn_rate(100.0, 10, 1), f64::MAX);
        let page = BURN_ALERTS[0];
        assert!(page.fires(99.5, (1000, 80), (100, 10), 20));
        // The short lookback has recovered: it stops.
        assert!(!page.fires(99.5, (1000, 80), (100, 0), 20));
        // Too few calls say nothing.
        assert!(!page.fires(99.5, (10, 10), (10, 10), 20));
    }

    proptest! {
        #[test]
        fn burn_rate_is_the_budget_over_the_window(
            objective in 50.0f64..99.99, calls in 1u64..1_000_000, bad in 0u64..1_000_000,
        ) {
            let bad = bad.min(calls);
            let r = burn_rate(objective, calls, bad);
            prop_assert!(r >= 0.0 && r.is_finite());
            // Over the SLO's own window the burn rate is the budget's burn.
            let b = budget(objective, calls, bad, 1);
            prop_assert!((r - b.burn).abs() <= 1e-9 * r.max(1.0));
            // More bad calls never burn slower.
            if bad < calls {
                prop_assert!(burn_rate(objective, calls, bad + 1) >= r);
            }
        }
    }
}
