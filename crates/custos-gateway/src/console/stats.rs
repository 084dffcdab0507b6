//! Numbers the console derives from bucketed counts: latency percentiles from a histogram
//! (interpolated inside the bucket that holds the rank, as Prometheus' `histogram_quantile`
//! does), shares, and readable durations.

/// The `q` quantile (0–1) of calls counted per bucket, where bucket `i` holds latencies in
/// (`bounds[i-1]`, `bounds[i]`] and a last bucket the ones above every bound. `None` without
/// calls; the last bound when the rank falls in the open last bucket (it is at least that).
pub fn quantile(q: f64, bounds: &[i64], counts: &[i64]) -> Option<f64> {
    let total: i64 = counts.iter().map(|c| (*c).max(0)).sum();
    if total == 0 || !q.is_finite() {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut seen = 0i64;
    for (i, &c) in counts.iter().enumerate() {
        let c = c.max(0);
        if c > 0 && (seen + c) as f64 >= rank {
            let Some(&upper) = bounds.get(i) else {
                return bounds.last().map(|b| *b as f64);
            };
            let lower = if i == 0 { 0 } else { bounds[i - 1] };
            let within = ((rank - seen as f64) / c as f64).clamp(0.0, 1.0);
            return Some(lower as f64 + (upper - lower) as f64 * within);
        }
        seen += c;
    }
    bounds.last().map(|b| *b as f64)
}

/// `part` of `whole` as a percentage with one decimal, or "–" of nothing.
pub fn percent(part: i64, whole: i64) -> String {
    if whole <= 0 {
        "–".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// Milliseconds as "820 ms" or "2.4 s"; "–" when unknown.
pub fn millis(ms: Option<f64>) -> String {
    match ms {
        None => "–".into(),
        Some(v) if v < 1000.0 => format!("{v:.0} ms"),
        Some(v) => format!("{:.1} s", v / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: [i64; 3] = [10, 100, 1000];

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        // 10 calls ≤10 ms, 10 in (10, 100].
        let c = [10, 10, 0, 0];
        assert_eq!(quantile(0.5, &B, &c), Some(10.0));
        assert_eq!(quantile(0.75, &B, &c), Some(55.0));
        assert_eq!(quantile(1.0, &B, &c), Some(100.0));
        assert_eq!(quantile(0.5, &B, &[0, 0, 0, 0]), None);
        // Beyond every bound: at least the last one.
        assert_eq!(quantile(0.99, &B, &[1, 0, 0, 99]), Some(1000.0));
    }

    #[test]
    fn shares_and_durations_read_well() {
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(1, 0), "–");
        assert_eq!(millis(Some(820.4)), "820 ms");
        assert_eq!(millis(Some(2400.0)), "2.4 s");
        assert_eq!(millis(None), "–");
    }

    proptest! {
        #[test]
        fn quantiles_are_monotone_and_bounded(
            counts in proptest::collection::vec(0i64..1000, 4),
            a in 0.0f64..1.0,
            b in 0.0f64..1.0,
        ) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            match (quantile(lo, &B, &counts), quantile(hi, &B, &counts)) {
                (Some(x), Some(y)) => {
                    prop_assert!(x <= y + 1e-9);
                    prop_assert!((0.0..=1000.0).contains(&x) && (0.0..=1000.0).contains(&y));
                }
                (None, None) => prop_assert_eq!(counts.iter().sum::<i64>(), 0),
                _ => prop_assert!(false, "one quantile without the other"),
            }
        }
    }
}
