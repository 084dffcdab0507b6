//! Detection rate and false alarms of `anomaly::detect` on synthetic daily spend: 500 series
//! of 120 days (level 500, noise σ 25, weekends at 40% on half of them), one injected spike or
//! drop of ±30–100% per series at a random day after the first 30. Prints one line per
//! method and k. `cargo run --release -p custos-finops --example anomaly_eval`

use custos_finops::anomaly::{detect, Method, Settings};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.next()).sum::<f64>() - 6.0
    }
}

fn main() {
    println!("method    seasonal  k    detected  false alarms per 1000 judged days");
    for (method, seasonal) in [
        (Method::Sigma, false),
        (Method::Robust, false),
        (Method::Robust, true),
    ] {
        for k in [2.0, 3.0] {
            let mut g = Lcg(2026);
            let (mut hits, mut spikes, mut false_alarms, mut judged) = (0, 0, 0, 0);
            for s in 0..500 {
                let weekly = s % 2 == 0;
                let mut series: Vec<f64> = (0..120)
                    .map(|d| {
                        let level = if weekly && d % 7 >= 5 { 200.0 } else { 500.0 };
                        (level + 25.0 * g.normal()).max(0.0)
                    })
                    .collect();
                let at = 30 + (g.next() * 89.0) as usize;
                let size = 0.3 + 0.7 * g.next();
                let sign = if g.next() < 0.5 { -1.0 } else { 1.0 };
                series[at] *= (1.0 + sign * size).max(0.0);
                spikes += 1;
                let settings = Settings {
                    k,
                    method,
                    weekday_seasonality: seasonal,
                    ..Settings::default()
                };
                for a in detect(&series, &settings) {
                    if a.index == at {
                        hits += 1;
                    } else {
                        false_alarms += 1;
                    }
                }
                judged += series.len() - settings.min_history;
            }
            println!(
                "{:<9} {:<9} {k:<4} {:>5.1}%    {:>6.1}",
                format!("{method:?}").to_lowercase(),
                seasonal,
                hits as f64 / spikes as f64 * 100.0,
                false_alarms as f64 / judged as f64 * 1000.0
            );
        }
    }
}
