//! Showback: the unit economics of a group of usage, the series the cost report charts (daily
//! spend per team, a budget's burn-down) and the self-contained HTML page. Pure: the store
//! brings the sums, the CLI writes the page.

use crate::chart::{escape, line_chart, Series};
use crate::Amount;

/// What a group of usage cost per unit — per 1K tokens, per call, per document, per 1M
/// calls, per GPU-hour — each dividing only the cost of the usage that has that unit (a GPU
/// job's cost never lands in the cost per token); none where the group has none of the unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnitCosts {
    pub token_cost_per_1k_tokens: Option<Amount>,
    pub call_cost_per_call: Option<Amount>,
    pub document_cost_per_document: Option<Amount>,
    pub call_cost_per_1m_calls: Option<Amount>,
    pub gpu_cost_per_gpu_hour: Option<Amount>,
}

/// The quantities of a group of usage and the cost of the usage that has each of them (a
/// call with tokens counts in both the token and the call cost).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnitBasis {
    pub tokens: i64,
    pub token_cost: Amount,
    pub calls: i64,
    pub call_cost: Amount,
    pub documents: i64,
    pub document_cost: Amount,
    /// GPUs × wall clock, in milliseconds.
    pub gpu_ms: i64,
    pub gpu_cost: Amount,
}

/// `cost / quantity × per`, or None without a quantity.
pub fn per_unit(cost: Amount, quantity: i64, per: i128) -> Option<Amount> {
    (quantity > 0)
        .then(|| cost.mul_div(per, i128::from(quantity)))
        .flatten()
}

impl UnitCosts {
    pub fn of(b: &UnitBasis) -> Self {
        UnitCosts {
            token_cost_per_1k_tokens: per_unit(b.token_cost, b.tokens, 1_000),
            call_cost_per_call: per_unit(b.call_cost, b.calls, 1),
            document_cost_per_document: per_unit(b.document_cost, b.documents, 1),
            call_cost_per_1m_calls: per_unit(b.call_cost, b.calls, 1_000_000),
            gpu_cost_per_gpu_hour: per_unit(b.gpu_cost, b.gpu_ms, 3_600_000),
        }
    }
}

/// One series per team of its spend on each of `days` days from `first_day` (days since the
/// epoch, in the report's time zone); rows outside the range are left out, and days after
/// `today` (an index, when the period is still running) are blank, not zero.
pub fn daily_spend(
    rows: &[(String, i64, f64)],
    first_day: i64,
    days: usize,
    today: Option<usize>,
) -> Vec<Series> {
    let blank = |i: usize| today.is_some_and(|t| i > t);
    let empty = || {
        (0..days)
            .map(|i| if blank(i) { f64::NAN } else { 0.0 })
            .collect::<Vec<_>>()
    };
    let mut teams: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for (team, day, cost) in rows {
        let i = day - first_day;
        if (0..days as i64).contains(&i) && !blank(i as usize) {
            teams.entry(team).or_insert_with(empty)[i as usize] += cost;
        }
    }
    teams
        .into_iter()
        .map(|(name, values)| Series {
            name: name.to_owned(),
            values,
            dashed: false,
        })
        .collect()
}

/// A budget's burn-down: cumulative spend up to `today` (later days blank), the budget line,
/// and the even pace that would end the period exactly at the budget.
pub fn burn_down(per_day: &[f64], today: usize, amount: f64) -> Vec<Series> {
    let days = per_day.len().max(1);
    let mut cumulative = Vec::with_capacity(days);
    let mut sum = 0.0;
    for (i, v) in per_day.iter().enumerate() {
        sum += v;
        cumulative.push(if i <= today { sum } else { f64::NAN });
    }
    vec![
        Series {
            name: "spent".into(),
            values: cumulative,
            dashed: false,
        },
        Series {
            name: "budget".into(),
            values: vec![amount; days],
            dashed: true,
        },
        Series {
            name: "even pace".into(),
            values: (0..days)
                .map(|i| amount * (i + 1) as f64 / days as f64)
                .collect(),
            dashed: true,
        },
    ]
}

/// One budget's standing, as the HTML report lists it.
pub struct BudgetLine {
    pub name: String,
    pub scope: String,
    pub period: String,
    pub amount: String,
    pub spent: String,
    pub percent: f64,
    /// `ok`, `alerting` (a threshold passed) or `exhausted`.
    pub status: &'static str,
}

/// What the HTML cost report shows.
pub struct ReportPage<'a> {
    /// Whose spend: a tenant's name, or "all tenants".
    pub scope: &'a str,
    pub start: &'a str,
    pub end: &'a str,
    pub time_zone: &'a str,
    /// None when no mandatory tags are configured.
    pub compliance_percent: Option<f64>,
    /// Records without a price (counted as zero).
    pub unpriced: i64,
    pub budgets: Vec<BudgetLine>,
    pub generator: &'a str,
    pub generated_at: &'a str,
    pub headers: &'a [String],
    pub rows: &'a [Vec<String>],
    /// (title, unit, x labels, series) of each chart, in order.
    pub charts: Vec<(String, String, Vec<String>, Vec<Series>)>,
}

/// The report as one self-contained HTML page: the table, then the charts inline (SVG).
/// Every text from the data is escaped.
pub fn report_html(p: &ReportPage<'_>) -> String {
    let mut html = String::from("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>custos cost report</title>\n<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}.warn,.exhausted{color:#b00020}.alerting{color:#a05a00}</style></head><body>\n");
    let compliance = match p.compliance_percent {
        Some(c) => format!("Tag compliance: {c:.1}% of records carry every mandatory tag."),
        None => "Tag compliance: no mandatory tags configured.".into(),
    };
    html.push_str(&format!(
        "<h1>Cost report: {}</h1><p>From {} to {} (time zone {}). {} Generated by {} at {}.</p>\n",
        escape(p.scope),
        escape(p.start),
        escape(p.end),
        escape(p.time_zone),
        escape(&compliance),
        escape(p.generator),
        escape(p.generated_at)
    ));
    if p.unpriced > 0 {
        html.push_str(&format!(
            "<p class=\"warn\">{} had no price and count as zero: add prices with <code>custos prices set</code>.</p>\n",
            if p.unpriced == 1 { "1 record".to_owned() } else { format!("{} records", p.unpriced) }
        ));
    }
    html.push_str("<table><thead><tr>");
    for h in p.headers {
        html.push_str(&format!("<th>{}</th>", escape(h)));
    }
    html.push_str("</tr></thead><tbody>\n");
    for row in p.rows {
        html.push_str("<tr>");
        for c in row {
            html.push_str(&format!("<td>{}</td>", escape(c)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody></table>\n");
    if !p.budgets.is_empty() {
        html.push_str("<h2>Budgets</h2>\n<table><thead><tr><th>Budget</th><th>Scope</th><th>Period</th><th>Amount</th><th>Spent</th><th>Used</th><th>Status</th></tr></thead><tbody>\n");
        for b in &p.budgets {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td class=\"{}\">{}</td></tr>\n",
                escape(&b.name),
                escape(&b.scope),
                escape(&b.period),
                escape(&b.amount),
                escape(&b.spent),
                b.percent,
                b.status,
                b.status
            ));
        }
        html.push_str("</tbody></table>\n");
    }
    for (title, unit, labels, series) in &p.charts {
        html.push_str(&format!(
            "<figure>{}</figure>\n",
            line_chart(title, unit, labels, series)
        ));
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 29 (1): a GPU job's cost never lands in the cost per token or per call.
    #[test]
    fn unit_costs_divide_only_the_cost_of_their_units_usage() {
        let a = |s: &str| s.parse::<Amount>().unwrap();
        let u = UnitCosts::of(&UnitBasis {
            tokens: 4000,
            token_cost: a("2"),
            calls: 4,
            call_cost: a("2"),
            documents: 0,
            document_cost: Amount::ZERO,
            gpu_ms: 1_800_000,
            gpu_cost: a("65"),
        });
        assert_eq!(u.token_cost_per_1k_tokens, Some(a("0.5")));
        assert_eq!(u.call_cost_per_call, Some(a("0.5")));
        assert_eq!(u.call_cost_per_1m_calls, Some(a("500000")));
        assert_eq!(u.document_cost_per_document, None);
        assert_eq!(u.gpu_cost_per_gpu_hour, Some(a("130")));
    }

    #[test]
    fn burn_down_stops_at_today_and_paces_evenly() {
        let s = burn_down(&[1.0, 2.0, 3.0, 4.0], 1, 20.0);
        assert_eq!(s[0].values[..2], [1.0, 3.0]);
        assert!(s[0].values[2].is_nan());
        assert_eq!(s[2].values, vec![5.0, 10.0, 15.0, 20.0]);
    }

    #[test]
    fn daily_spend_per_team_within_range() {
        let rows = vec![
            ("ml".to_owned(), 10, 1.5),
            ("ml".to_owned(), 12, 2.0),
            ("web".to_owned(), 11, 1.0),
            ("web".to_owned(), 99, 7.0),
        ];
        let s = daily_spend(&rows, 10, 3, None);
        assert_eq!(s[0].name, "ml");
        assert_eq!(s[0].values, vec![1.5, 0.0, 2.0]);
        assert_eq!(s[1].values, vec![0.0, 1.0, 0.0]);
        // Issue 29 (10): days still to come are blank, not zero.
        let s = daily_spend(&rows, 10, 3, Some(1));
        assert_eq!(s[0].values[..2], [1.5, 0.0]);
        assert!(s[0].values[2].is_nan() && s[1].values[2].is_nan());
    }

    #[test]
    fn the_page_escapes_what_the_data_says() {
        let headers = vec!["TEAM".to_owned()];
        let rows = vec![vec!["<script>x</script>".to_owned()]];
        let page = report_html(&ReportPage {
            scope: "tenant <acme>",
            start: "a",
            end: "b",
            time_zone: "UTC",
            compliance_percent: None,
            unpriced: 3,
            budgets: vec![BudgetLine {
                name: "tiny".into(),
                scope: "team:ml".into(),
                period: "monthly".into(),
                amount: "0.000001".into(),
                spent: "0.05".into(),
                percent: 5_000_000.0,
                status: "exhausted",
            }],
            generator: "custos",
            generated_at: "now",
            headers: &headers,
            rows: &rows,
            charts: Vec::new(),
        });
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("Cost report: tenant &lt;acme&gt;"));
        assert!(page.contains("3 records had no price"));
        assert!(page.contains("no mandatory tags configured"));
        assert!(page.contains(">exhausted</td>"));
    }
}
