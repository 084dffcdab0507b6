//! The per-call finance work on the gateway's hot path: pricing a call's usage and the
//! budget reserve/settle round trip.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use custos_finops::budget::{Action, Budget, Scope, Tracker};
use custos_finops::{Amount, Catalog, Currency, PeriodKind, Price, Rates, Usage};

fn bench(c: &mut Criterion) {
    let mut prices = Vec::new();
    for i in 0..500 {
        prices.push(Price {
            provider: "openai".into(),
            model: format!("model-{i}"),
            effective_from: 0,
            currency: Currency::USD,
            rates: Rates {
                input_per_1m: "2.5".parse().unwrap(),
                output_per_1m: "10".parse().unwrap(),
                cached_input_per_1m: Some("1.25".parse().unwrap()),
                ..Rates::default()
            },
        });
    }
    let catalog = Catalog::new(prices);
    let usage = Usage {
        input_tokens: 1200,
        cached_input_tokens: 800,
        output_tokens: 350,
        reasoning_tokens: 64,
        calls: 1,
        ..Usage::default()
    };
    c.bench_function("price_lookup_and_cost", |b| {
        b.iter(|| {
            let p = catalog
                .at("openai", black_box("model-250"), 1_700_000_000_000)
                .unwrap();
            p.rates.cost(black_box(&usage)).unwrap()
        })
    });
    let budget = Budget {
        id: "b".into(),
        name: "b".into(),
        tenant: "t".into(),
        scope: Scope::Tenant,
        period: PeriodKind::Monthly,
        time_zone: "Europe/Berlin".into(),
        amount: Amount::from_units(1_000_000_000),
        currency: Currency::USD,
        thresholds: vec![70, 90, 100],
        action: Action::Block,
    };
    let tracker = Tracker::new(budget, 1_700_000_000_000, Amount::ZERO).unwrap();
    let est = Amount::from_nanos(5_000_000);
    c.bench_function("budget_reserve_settle", |b| {
        b.iter(|| {
            let h = tracker.reserve(1_700_000_000_000, black_box(est)).unwrap();
            tracker.settle(
                Some(h),
                1_700_000_000_001,
                black_box(Amount::from_nanos(4_000_000)),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
