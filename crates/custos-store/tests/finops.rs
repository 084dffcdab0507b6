//! Prices, usage, budgets and alerts against a real SQLite file and, when
//! `CUSTOS_TEST_POSTGRES_URL` is set, a fresh PostgreSQL database.

use custos_finops::budget::{Action, Budget, Scope};
use custos_finops::period::Window;
use custos_finops::{Amount, Currency, PeriodKind, Price, Rates};
use custos_store::testkit::Seed as _;
use custos_store::{sample_record, testkit, Dimension, Store, StoreError, UsageFilter};

async fn backends(test: &str) -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("custos.db").display());
    let mut out = vec![(Store::open(&url).await.unwrap(), Some(dir))];
    if let Some(pg) = testkit::fresh_postgres(test).await.unwrap() {
        out.push((Store::open(&pg).await.unwrap(), None));
    }
    out
}

fn a(s: &str) -> Amount {
    s.parse().unwrap()
}

#[tokio::test]
async fn prices_round_trip_exactly() {
    for (store, _dir) in backends("prices_round_trip_exactly").await {
        let p = Price {
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            effective_from: 1_700_000_000_000,
            currency: Currency::USD,
            rates: Rates {
                input_per_1m: a("0.15"),
                output_per_1m: a("0.6"),
                cached_input_per_1m: Some(a("0.075")),
                ..Rates::default()
            },
        };
        store.prices_upsert(std::slice::from_ref(&p)).await.unwrap();
        let mut newer = p.clone();
        newer.rates.input_per_1m = a("0.000000001");
        store.prices_upsert(&[newer.clone()]).await.unwrap();
        assert_eq!(store.prices_all().await.unwrap(), vec![newer]);
    }
}

#[tokio::test]
async fn usage_is_idempotent_and_reports_sum_exactly() {
    for (store, _dir) in backends("usage_reports").await {
        let b = store.backend().as_str();
        let mut records = Vec::new();
        for i in 0..100 {
            let team = if i % 4 == 0 { "ml" } else { "web" };
            let mut r = sample_record(&format!("r{i}"), "acme", team, 1_000 + i, a("0.000000007"));
            r.tags.insert("Project".into(), format!("p{}", i % 2));
            r.usage.input_tokens = 10;
            records.push(r);
        }
        records.push(sample_record("other", "globex", "ml", 1_000, a("5")));
        assert_eq!(store.usage_insert(&records).await.unwrap(), 101, "{b}");
        // A retried batch adds nothing.
        assert_eq!(store.usage_insert(&records[..10]).await.unwrap(), 0, "{b}");
        let f = UsageFilter {
            tenant: Some("acme".into()),
            from_ms: 0,
            until_ms: 10_000,
            ..UsageFilter::default()
        };
        let by_team = store.usage_report(&f, &[Dimension::Team], 0).await.unwrap();
        assert_eq!(by_team.len(), 2, "{b}");
        assert_eq!(by_team[0].keys, vec!["web".to_owned()], "{b}");
        assert_eq!(by_team[0].cost, a("0.000000525"), "{b}");
        assert_eq!(by_team[1].cost, a("0.000000175"), "{b}");
        assert_eq!(by_team[0].input_tokens, 750, "{b}");
        let by_tag = store
            .usage_report(&f, &[Dimension::Tag("Project".into())], 0)
            .await
            .unwrap();
        assert_eq!(by_tag.len(), 2, "{b}");
        assert!(by_tag.iter().all(|r| r.records == 50), "{b}");
        let tagged = UsageFilter {
            tags: vec![("Project".into(), "p1".into())],
            ..f.clone()
        };
        let total = store.usage_report(&tagged, &[], 0).await.unwrap();
        assert_eq!(total[0].records, 50, "{b}");
        let buckets = store.usage_buckets(&f, 50).await.unwrap();
        assert_eq!(buckets.len(), 2, "{b}");
    }
}

#[tokio::test]
async fn budgets_and_alerts_fire_once() {
    for (store, _dir) in backends("budgets_and_alerts").await {
        let b = store.backend().as_str();
        let budget = Budget {
            id: "bud_1".into(),
            name: "ml-monthly".into(),
            tenant: "acme".into(),
            scope: Scope::Team("ml".into()),
            period: PeriodKind::Monthly,
            time_zone: "Europe/Berlin".into(),
            amount: a("100"),
            currency: Currency::USD,
            thresholds: vec![70, 90, 100],
            action: Action::Block,
        };
        store.budget_create(&budget).await.unwrap();
        assert!(matches!(
            store.budget_create(&budget).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            store.budgets(Some("acme")).await.unwrap(),
            vec![budget.clone()],
            "{b}"
        );
        assert!(store.budgets(Some("globex")).await.unwrap().is_empty());
        store
            .usage_insert(&[
                sample_record("1", "acme", "ml", 10, a("60")),
                sample_record("2", "acme", "web", 10, a("60")),
                sample_record("3", "acme", "ml", 5_000, a("60")),
            ])
            .await
            .unwrap();
        let w = Window {
            start_ms: 0,
            end_ms: 1_000,
        };
        assert_eq!(
            store.budget_spent(&budget, w).await.unwrap(),
            a("60"),
            "{b}"
        );
        assert!(store
            .budget_alert_claim("bud_1", 0, 70, a("71"))
            .await
            .unwrap());
        assert!(!store
            .budget_alert_claim("bud_1", 0, 70, a("72"))
            .await
            .unwrap());
        assert!(store
            .budget_alert_claim("bud_1", 1_000, 70, a("71"))
            .await
            .unwrap());
        assert_eq!(
            store.budget_alerts_fired("bud_1", 0).await.unwrap(),
            vec![70]
        );
        store.budget_delete("acme", "ml-monthly").await.unwrap();
        assert!(matches!(
            store.budget_delete("acme", "ml-monthly").await,
            Err(StoreError::NotFound(_))
        ));
    }
}

#[tokio::test]
async fn billing_items_are_stored_once_and_grouped() {
    use custos_finops::billing::LineItem;
    for (store, _dir) in backends("billing_items").await {
        let b = store.backend().as_str();
        let item = |row: u64, team: Option<&str>, cost: &str| LineItem {
            row,
            provider: "AWS".into(),
            billing_account: "1".into(),
            sub_account: "2".into(),
            service: "Amazon Bedrock".into(),
            service_category: "AI and Machine Learning".into(),
            charge_category: "Usage".into(),
            period_start_ms: 1_000,
            period_end_ms: 2_000,
            billed_cost: a(cost),
            effective_cost: a(cost),
            list_cost: a(cost),
            currency: Currency::USD,
            region: "us-east-1".into(),
            resource_id: String::new(),
            sku: "claude-sonnet-4".into(),
            description: "input tokens".into(),
            tags: team
                .map(|t| [("Team".to_owned(), t.to_owned())].into_iter().collect())
                .unwrap_or_default(),
        };
        let sha = "ab".repeat(32);
        let items = vec![
            item(1, Some("ml"), "1.5"),
            item(2, Some("web"), "2"),
            item(3, None, "0.25"),
        ];
        assert_eq!(
            store.billing_insert(&sha, items.clone()).await.unwrap(),
            3,
            "{b}"
        );
        assert_eq!(
            store.billing_insert(&sha, items.clone()).await.unwrap(),
            0,
            "{b}"
        );
        assert!(store.billing_file(&sha).await.unwrap().is_none());
        let by_team = store.billing_groups(0, 10_000, Some("Team")).await.unwrap();
        let find = |k: &str| by_team.iter().find(|g| g.keys[0] == k).map(|g| g.billed);
        assert_eq!(
            (find("ml"), find("web"), find("")),
            (Some(a("1.5")), Some(a("2")), Some(a("0.25"))),
            "{b}"
        );
        let by_sku = store.billing_groups(0, 10_000, None).await.unwrap();
        assert_eq!(
            by_sku[0].keys,
            vec!["AWS", "Amazon Bedrock", "claude-sonnet-4", "input tokens"]
        );
        assert_eq!(by_sku[0].billed, a("3.75"));
        assert!(store
            .billing_groups(5_000, 10_000, None)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.billing_discard(&sha).await.unwrap(), 3, "{b}");
        let f = custos_store::BillingFile {
            sha256: sha.clone(),
            name: "focus.csv".into(),
            format: "focus".into(),
            rows: 3,
            currency: "USD".into(),
            billed: a("3.75"),
            ingested_at: 5,
        };
        store.billing_file_done(&f).await.unwrap();
        assert_eq!(store.billing_file(&sha).await.unwrap(), Some(f), "{b}");
    }
}

#[tokio::test]
async fn reports_from_the_daily_rollup_match_the_records() {
    const DAY: i64 = 86_400_000;
    for (store, _dir) in backends("rollup_matches_records").await {
        let b = store.backend().as_str();
        let mut records = Vec::new();
        // Five days of records at uneven times, two teams, some with a tag.
        for i in 0..500i64 {
            let at = 10 * DAY + (i * 7_919_003) % (5 * DAY);
            let team = if i % 3 == 0 { "ml" } else { "web" };
            let mut r = sample_record(
                &format!("r{i}"),
                "acme",
                team,
                at,
                Amount::from_nanos(1_000 + i as i128),
            );
            if i % 2 == 0 {
                r.tags.insert("Project".into(), "atlas".into());
            }
            records.push(r);
        }
        store.usage_insert(&records).await.unwrap();
        // A retried batch must not count twice in the rollup either.
        store.usage_insert(&records[..100]).await.unwrap();
        let windows = [
            (10 * DAY, 15 * DAY),                     // whole days only
            (10 * DAY + 3_600_000, 14 * DAY + 5),     // ragged edges on both sides
            (11 * DAY + 1, 11 * DAY + 2 * 3_600_000), // inside one day
            (0, i64::MAX),
        ];
        for (from, until) in windows {
            let f = UsageFilter {
                tenant: Some("acme".into()),
                from_ms: from,
                until_ms: until,
                ..UsageFilter::default()
            };
            let expect = |team: &str| {
                records
                    .iter()
                    .filter(|r| r.team == team && r.at_ms >= from && r.at_ms < until)
                    .fold((0i64, Amount::ZERO), |(n, c), r| {
                        (n + 1, c.saturating_add(r.cost))
                    })
            };
            let got = store.usage_report(&f, &[Dimension::Team], 0).await.unwrap();
            for team in ["ml", "web"] {
                let g = got
                    .iter()
                    .find(|t| t.keys[0] == team)
                    .map_or((0, Amount::ZERO), |t| (t.records, t.cost));
                assert_eq!(g, expect(team), "{b}: {team} in [{from}, {until})");
            }
            let tagged = UsageFilter {
                tags: vec![("Project".into(), "atlas".into())],
                ..f.clone()
            };
            let t = store.usage_report(&tagged, &[], 0).await.unwrap();
            let n = records
                .iter()
                .filter(|r| r.tags.contains_key("Project") && r.at_ms >= from && r.at_ms < until)
                .count() as i64;
            assert_eq!(
                t.first().map_or(0, |t| t.records),
                n,
                "{b}: tagged in [{from}, {until})"
            );
            // Days in a zone east of UTC come from the records, and still add up.
            let by_day = store
                .usage_report(&f, &[Dimension::Day], 2 * 3_600_000)
                .await
                .unwrap();
            let total: i64 = by_day.iter().map(|t| t.records).sum();
            assert_eq!(total, expect("ml").0 + expect("web").0, "{b}");
        }
    }
}

#[tokio::test]
async fn the_rollup_adds_up_across_separate_batches() {
    for (store, _dir) in backends("rollup_across_batches").await {
        let b = store.backend().as_str();
        for i in 0..3 {
            let r = sample_record(&format!("x{i}"), "acme", "ml", 5 * 86_400_000 + i, a("1.5"));
            store.usage_insert(&[r]).await.unwrap();
        }
        let f = UsageFilter {
            tenant: Some("acme".into()),
            from_ms: 0,
            until_ms: i64::MAX,
            ..UsageFilter::default()
        };
        let t = store.usage_report(&f, &[], 0).await.unwrap();
        assert_eq!((t[0].records, t[0].cost), (3, a("4.5")), "{b}");
    }
}

#[tokio::test]
async fn slo_outcomes_and_release_slices_come_from_the_records() {
    for (store, _dir) in backends("slo_outcomes_and_release_slices").await {
        let b = store.backend().as_str();
        let mut records = Vec::new();
        for i in 0..10 {
            let mut r = sample_record(&format!("r{i}"), "acme", "ml", 1_000 + i, a("0.001"));
            r.app = "bot".into();
            r.status = if i < 3 { 503 } else { 200 };
            r.latency_ms = 100 * i as u64;
            r.release = Some(if i < 5 { "rel_a" } else { "rel_b" }.into());
            records.push(r);
        }
        // A drill's failures, another app's, and another tenant's: not the bot's SLO.
        let mut drill = sample_record("d", "acme", "ml", 1_005, a("0"));
        drill.app = "bot".into();
        drill.env = "drill".into();
        drill.status = 503;
        records.push(drill);
        let mut other = sample_record("o", "acme", "ml", 1_005, a("0"));
        other.app = "other".into();
        other.status = 500;
        records.push(other);
        records.push(sample_record("g", "globex", "ml", 1_005, a("0")));
        store.usage_insert(&records).await.unwrap();
        let f = UsageFilter {
            tenant: Some("acme".into()),
            team: Some("ml".into()),
            app: Some("bot".into()),
            from_ms: 0,
            until_ms: 10_000,
            ..UsageFilter::default()
        };
        assert_eq!(
            store.usage_outcomes(&f, None).await.unwrap(),
            (10, 3),
            "{b}"
        );
        assert_eq!(
            store.usage_outcomes(&f, Some(450)).await.unwrap(),
            (10, 5),
            "{b}: latency over 450 ms"
        );
        let empty = UsageFilter {
            from_ms: 20_000,
            until_ms: 30_000,
            ..f.clone()
        };
        assert_eq!(
            store.usage_outcomes(&empty, None).await.unwrap(),
            (0, 0),
            "{b}"
        );
        let calls = store
            .usage_release_calls("rel_a", 0, 10_000, 100)
            .await
            .unwrap();
        assert_eq!(calls.len(), 5, "{b}");
        assert_eq!(calls.iter().filter(|c| c.0 >= 500).count(), 3, "{b}");
        assert_eq!(calls[4].1, 400, "{b}");
        assert_eq!(calls[0].2, 1_000_000, "{b}: cost in nanos");
        let bounded = store
            .usage_release_calls("rel_b", 0, 10_000, 2)
            .await
            .unwrap();
        assert_eq!(bounded.len(), 2, "{b}");
        let round = store.usage_page(&f, "", 100).await.unwrap();
        assert!(
            round.iter().any(|r| r.release.as_deref() == Some("rel_b")),
            "{b}"
        );
    }
}
