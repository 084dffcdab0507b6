//! The price catalog: what each model of each provider costs, per token class, call, image,
//! second and hour, each price effective from a date so that a price change never rewrites
//! the cost of earlier usage. Reads custos' own TOML/JSON format and LiteLLM's
//! `model_prices_and_context_window.json`.

use crate::money::{Amount, AmountError, Currency};
use crate::usage::Usage;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Rates of one price. Token rates are per million tokens; `None` for a cached, cache-write
/// or reasoning rate means "billed as plain input (or output)".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    #[serde(default)]
    pub input_per_1m: Amount,
    #[serde(default)]
    pub output_per_1m: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_1m: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_1m: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_per_1m: Option<Amount>,
    #[serde(default, skip_serializing_if = "Amount::is_zero")]
    pub per_call: Amount,
    #[serde(default, skip_serializing_if = "Amount::is_zero")]
    pub per_image: Amount,
    #[serde(default, skip_serializing_if = "Amount::is_zero")]
    pub per_second: Amount,
    /// For compute: GPU or instance hours reported by jobs.
    #[serde(default, skip_serializing_if = "Amount::is_zero")]
    pub per_hour: Amount,
}

/// One price: a provider's model (or resource), its rates, and when they took effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub provider: String,
    pub model: String,
    /// Epoch milliseconds (UTC) from which these rates apply.
    pub effective_from: i64,
    pub currency: Currency,
    #[serde(flatten)]
    pub rates: Rates,
}

/// The common denominator of all rates: per 10⁶ tokens, per 10³ ms (second) and per
/// 3.6·10⁶ ms (hour) all divide 1.8·10⁷, so a cost is one exact sum and one rounding.
const DENOMINATOR: i128 = 18_000_000;

impl Rates {
    /// True when any rate is below zero (refused everywhere prices come in).
    pub fn has_negative(&self) -> bool {
        [
            Some(self.input_per_1m),
            Some(self.output_per_1m),
            self.cached_input_per_1m,
            self.cache_write_per_1m,
            self.reasoning_per_1m,
            Some(self.per_call),
            Some(self.per_image),
            Some(self.per_second),
            Some(self.per_hour),
        ]
        .into_iter()
        .flatten()
        .any(Amount::is_negative)
    }

    /// The exact cost of `usage` at these rates, rounded once, half to even, to 10⁻⁹.
    /// `None` only on arithmetic overflow (amounts beyond 10²⁰).
    pub fn cost(&self, u: &Usage) -> Option<Amount> {
        let per_token = |tokens: u64, rate: Amount| -> Option<i128> {
            (tokens as i128).checked_mul(rate.nanos())?.checked_mul(18)
        };
        let cached = self.cached_input_per_1m.unwrap_or(self.input_per_1m);
        let cache_write = self.cache_write_per_1m.unwrap_or(self.input_per_1m);
        let reasoning = self.reasoning_per_1m.unwrap_or(self.output_per_1m);
        let terms = [
            per_token(u.input_tokens, self.input_per_1m)?,
            per_token(u.cached_input_tokens, cached)?,
            per_token(u.cache_write_tokens, cache_write)?,
            per_token(u.output_tokens, self.output_per_1m)?,
            per_token(u.reasoning_tokens, reasoning)?,
            (u.calls as i128)
                .checked_mul(self.per_call.nanos())?
                .checked_mul(DENOMINATOR)?,
            (u.images as i128)
                .checked_mul(self.per_image.nanos())?
                .checked_mul(DENOMINATOR)?,
            (u.duration_ms as i128)
                .checked_mul(self.per_second.nanos())?
                .checked_mul(18_000)?,
            (u.compute_ms as i128)
                .checked_mul(self.per_hour.nanos())?
                .checked_mul(5)?,
        ];
        let mut sum: i128 = 0;
        for t in terms {
            sum = sum.checked_add(t)?;
        }
        Amount::from_nanos(sum).mul_div(1, DENOMINATOR)
    }
}

/// Why a catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("line {line}, column {column}: {message}")]
    Toml {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}")]
    Json(String),
    #[error("{entry}: {field}: {source}")]
    Amount {
        entry: String,
        field: &'static str,
        source: AmountError,
    },
    #[error("{entry}: {message}")]
    Entry { entry: String, message: String },
}

/// Prices by (provider, model), each list sorted by effective date.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    by_model: HashMap<(String, String), Vec<Price>>,
}

impl Catalog {
    pub fn new(prices: impl IntoIterator<Item = Price>) -> Self {
        let mut c = Catalog::default();
        for p in prices {
            c.insert(p);
        }
        c
    }

    /// Adds a price; a price with the same provider, model and date replaces the old one.
    pub fn insert(&mut self, p: Price) {
        let list = self
            .by_model
            .entry((p.provider.clone(), p.model.clone()))
            .or_default();
        match list.binary_search_by_key(&p.effective_from, |q| q.effective_from) {
            Ok(i) => list[i] = p,
            Err(i) => list.insert(i, p),
        }
    }

    /// The price in force at `at_ms` for a provider's model: the latest one effective at or
    /// before that time. A price for provider `*` serves any provider without its own.
    pub fn at(&self, provider: &str, model: &str, at_ms: i64) -> Option<&Price> {
        fn pick(list: &[Price], at_ms: i64) -> Option<&Price> {
            let i = list.partition_point(|p| p.effective_from <= at_ms);
            i.checked_sub(1).map(|i| &list[i])
        }
        self.by_model
            .get(&(provider.to_owned(), model.to_owned()))
            .and_then(|l| pick(l, at_ms))
            .or_else(|| {
                self.by_model
                    .get(&("*".to_owned(), model.to_owned()))
                    .and_then(|l| pick(l, at_ms))
            })
    }

    pub fn len(&self) -> usize {
        self.by_model.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_model.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Price> {
        self.by_model.values().flatten()
    }
}

/// custos' own price file: `[[price]]` tables (TOML) or a `{"price": [...]}` / bare array
/// (JSON). `effective_from` is a date (`2026-01-01`) or an RFC 3339 time; it defaults to
/// the Unix epoch, i.e. "always".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    #[serde(default)]
    currency: Option<Currency>,
    #[serde(default)]
    price: Vec<PriceEntry>,
}

/// Rates are spelled out rather than flattened: serde's `flatten` would lose the TOML
/// spans that let errors name the line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceEntry {
    provider: String,
    model: String,
    #[serde(default)]
    effective_from: Option<String>,
    #[serde(default)]
    currency: Option<Currency>,
    #[serde(default)]
    input_per_1m: Amount,
    #[serde(default)]
    output_per_1m: Amount,
    cached_input_per_1m: Option<Amount>,
    cache_write_per_1m: Option<Amount>,
    reasoning_per_1m: Option<Amount>,
    #[serde(default)]
    per_call: Amount,
    #[serde(default)]
    per_image: Amount,
    #[serde(default)]
    per_second: Amount,
    #[serde(default)]
    per_hour: Amount,
}

impl PriceEntry {
    fn rates(&self) -> Rates {
        Rates {
            input_per_1m: self.input_per_1m,
            output_per_1m: self.output_per_1m,
            cached_input_per_1m: self.cached_input_per_1m,
            cache_write_per_1m: self.cache_write_per_1m,
            reasoning_per_1m: self.reasoning_per_1m,
            per_call: self.per_call,
            per_image: self.per_image,
            per_second: self.per_second,
            per_hour: self.per_hour,
        }
    }
}

/// Parses `2026-01-01` or `2026-01-01T00:00:00Z` (any offset) to epoch milliseconds.
pub fn parse_effective(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        if s.len() == 10 {
            return d
                .to_zoned(jiff::tz::TimeZone::UTC)
                .map(|z| z.timestamp().as_millisecond())
                .map_err(|e| e.to_string());
        }
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| format!("{s:?} is not a date (2026-01-01) or an RFC 3339 time"))
}

fn entries_to_prices(
    file_currency: Option<Currency>,
    entries: Vec<PriceEntry>,
) -> Result<Vec<Price>, CatalogError> {
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let name = format!("price #{} ({}/{})", i + 1, e.provider, e.model);
            if e.provider.trim().is_empty() || e.model.trim().is_empty() {
                return Err(CatalogError::Entry {
                    entry: name,
                    message: "provider and model must not be empty".into(),
                });
            }
            let effective_from = match &e.effective_from {
                Some(s) => parse_effective(s).map_err(|message| CatalogError::Entry {
                    entry: name.clone(),
                    message: format!("effective_from: {message}"),
                })?,
                None => 0,
            };
            let rates = e.rates();
            check_rates(&name, &rates)?;
            Ok(Price {
                provider: e.provider,
                model: e.model,
                effective_from,
                currency: e.currency.or(file_currency).unwrap_or_default(),
                rates,
            })
        })
        .collect()
}

fn check_rates(entry: &str, r: &Rates) -> Result<(), CatalogError> {
    if r.has_negative() {
        return Err(CatalogError::Entry {
            entry: entry.to_owned(),
            message: "a rate is negative".into(),
        });
    }
    Ok(())
}

/// Reads custos' TOML price file.
pub fn parse_toml(text: &str) -> Result<Vec<Price>, CatalogError> {
    let file: PriceFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        CatalogError::Toml {
            line,
            column,
            message: e.message().to_owned(),
        }
    })?;
    entries_to_prices(file.currency, file.price)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Reads a JSON price file: custos' own shape, or LiteLLM's model map (detected by its
/// per-token keys).
pub fn parse_json(text: &str) -> Result<Vec<Price>, CatalogError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        CatalogError::Json(format!(
            "invalid JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    let looks_litellm = value.as_object().is_some_and(|o| {
        o.values().any(|v| {
            v.get("input_cost_per_token").is_some() || v.get("output_cost_per_token").is_some()
        })
    });
    if looks_litellm {
        return parse_litellm(&value);
    }
    let file: PriceFile = match value {
        serde_json::Value::Array(_) => PriceFile {
            currency: None,
            price: serde_json::from_value(value).map_err(|e| CatalogError::Json(e.to_string()))?,
        },
        other => serde_json::from_value(other).map_err(|e| CatalogError::Json(e.to_string()))?,
    };
    entries_to_prices(file.currency, file.price)
}

/// LiteLLM's `model_prices_and_context_window.json`: one object per model with per-token
/// USD prices as JSON numbers. The provider is `litellm_provider`; a `provider/model` key
/// keeps only its model part. Entries without token prices (`sample_spec`, image-only
/// models) are skipped; prices are effective from the epoch.
pub fn parse_litellm(value: &serde_json::Value) -> Result<Vec<Price>, CatalogError> {
    let Some(map) = value.as_object() else {
        return Err(CatalogError::Json(
            "a LiteLLM price map is a JSON object keyed by model".into(),
        ));
    };
    let mut out = Vec::new();
    for (key, entry) in map {
        if key == "sample_spec" {
            continue;
        }
        let Some(obj) = entry.as_object() else {
            continue;
        };
        let get = |field: &'static str, shift: u32| -> Result<Option<Amount>, CatalogError> {
            match obj.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::Number(n)) => Amount::from_json_number(n, shift)
                    .map(Some)
                    .map_err(|source| CatalogError::Amount {
                        entry: key.clone(),
                        field,
                        source,
                    }),
                Some(serde_json::Value::String(s)) => Amount::parse_rounded(s, shift)
                    .map(Some)
                    .map_err(|source| CatalogError::Amount {
                        entry: key.clone(),
                        field,
                        source,
                    }),
                Some(_) => Err(CatalogError::Entry {
                    entry: key.clone(),
                    message: format!("{field} must be a number"),
                }),
            }
        };
        let input = get("input_cost_per_token", 6)?;
        let output = get("output_cost_per_token", 6)?;
        let per_second = get("output_cost_per_second", 0)?.or(get("input_cost_per_second", 0)?);
        let per_image = get("output_cost_per_image", 0)?.or(get("input_cost_per_image", 0)?);
        let per_call = get("input_cost_per_request", 0)?;
        if input.is_none() && output.is_none() && per_second.is_none() && per_image.is_none() {
            continue;
        }
        let rates = Rates {
            input_per_1m: input.unwrap_or_default(),
            output_per_1m: output.unwrap_or_default(),
            cached_input_per_1m: get("cache_read_input_token_cost", 6)?,
            cache_write_per_1m: get("cache_creation_input_token_cost", 6)?,
            reasoning_per_1m: get("output_cost_per_reasoning_token", 6)?,
            per_call: per_call.unwrap_or_default(),
            per_image: per_image.unwrap_or_default(),
            per_second: per_second.unwrap_or_default(),
            per_hour: Amount::ZERO,
        };
        check_rates(key, &rates)?;
        let provider = obj
            .get("litellm_provider")
            .and_then(|v| v.as_str())
            .unwrap_or("*")
            .to_owned();
        let model = match key.split_once('/') {
            Some((prefix, rest)) if prefix == provider => rest.to_owned(),
            _ => key.clone(),
        };
        out.push(Price {
            provider,
            model,
            effective_from: 0,
            currency: Currency::USD,
            rates,
        });
    }
    out.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amt(s: &str) -> Amount {
        s.parse().unwrap()
    }

    #[test]
    fn cost_is_exact_per_token_class() {
        let r = Rates {
            input_per_1m: amt("2.50"),
            output_per_1m: amt("10"),
            cached_input_per_1m: Some(amt("1.25")),
            ..Rates::default()
        };
        // 1000 uncached input, 500 cached, 200 output (50 of them reasoning at output rate).
        let u = Usage {
            input_tokens: 1000,
            cached_input_tokens: 500,
            output_tokens: 150,
            reasoning_tokens: 50,
            ..Usage::default()
        };
        // 1000×2.5/1e6 + 500×1.25/1e6 + 200×10/1e6 = 0.0025 + 0.000625 + 0.002
        assert_eq!(r.cost(&u).unwrap(), amt("0.005125"));
        let one_token = Usage {
            input_tokens: 1,
            ..Usage::default()
        };
        let cheap = Rates {
            input_per_1m: amt("0.0375"),
            ..Rates::default()
        };
        // 37.5 nano-units round half to even to 38.
        assert_eq!(cheap.cost(&one_token).unwrap(), amt("0.000000038"));
    }

    #[test]
    fn time_and_compute_rates() {
        let r = Rates {
            per_second: amt("0.006"),
            per_hour: amt("32.77"),
            per_call: amt("0.01"),
            per_image: amt("0.04"),
            ..Rates::default()
        };
        let u = Usage {
            duration_ms: 1500,
            compute_ms: 30 * 60 * 1000,
            calls: 2,
            images: 3,
            ..Usage::default()
        };
        // 1.5×0.006 + 0.5×32.77 + 2×0.01 + 3×0.04
        assert_eq!(r.cost(&u).unwrap(), amt("16.534"));
    }

    #[test]
    fn effective_dates_never_rewrite_history() {
        let p = |from: &str, input: &str| Price {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            effective_from: parse_effective(from).unwrap(),
            currency: Currency::USD,
            rates: Rates {
                input_per_1m: amt(input),
                ..Rates::default()
            },
        };
        let c = Catalog::new([p("2026-06-01", "2.5"), p("2025-01-01", "5")]);
        let t = |s: &str| parse_effective(s).unwrap();
        assert_eq!(
            c.at("openai", "gpt-4o", t("2026-05-31T23:59:59Z"))
                .unwrap()
                .rates
                .input_per_1m,
            amt("5")
        );
        assert_eq!(
            c.at("openai", "gpt-4o", t("2026-06-01"))
                .unwrap()
                .rates
                .input_per_1m,
            amt("2.5")
        );
        assert!(c.at("openai", "gpt-4o", t("2024-12-31")).is_none());
        assert!(c.at("azure", "gpt-4o", t("2026-07-01")).is_none());
    }

    #[test]
    fn reads_litellm_layout() {
        let json = r#"{
          "sample_spec": {"input_cost_per_token": 0, "litellm_provider": "x"},
          "gpt-4o-mini": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07,
             "cache_read_input_token_cost": 7.5e-08, "litellm_provider": "openai", "mode": "chat"},
          "anthropic/claude-3-5-haiku": {"input_cost_per_token": 8e-07, "output_cost_per_token": 4e-06,
             "cache_creation_input_token_cost": 1e-06, "litellm_provider": "anthropic"},
          "dall-e-3": {"output_cost_per_image": 0.04, "litellm_provider": "openai"},
          "text-moderation": {"litellm_provider": "openai"}
        }"#;
        let prices = parse_json(json).unwrap();
        assert_eq!(prices.len(), 3);
        let mini = prices.iter().find(|p| p.model == "gpt-4o-mini").unwrap();
        assert_eq!(mini.rates.input_per_1m, amt("0.15"));
        assert_eq!(mini.rates.output_per_1m, amt("0.6"));
        assert_eq!(mini.rates.cached_input_per_1m, Some(amt("0.075")));
        let haiku = prices.iter().find(|p| p.provider == "anthropic").unwrap();
        assert_eq!(haiku.model, "claude-3-5-haiku");
        assert_eq!(haiku.rates.cache_write_per_1m, Some(amt("1")));
        let bad = r#"{"m": {"input_cost_per_token": "lots", "litellm_provider": "openai"}}"#;
        assert!(parse_json(bad)
            .unwrap_err()
            .to_string()
            .contains("m: input_cost_per_token"));
    }

    #[test]
    fn reads_own_toml_with_errors_that_point_at_the_line() {
        let text = r#"
currency = "EUR"
[[price]]
provider = "openai"
model = "gpt-4o"
effective_from = "2026-01-01"
input_per_1m = "2.50"
output_per_1m = 10
"#;
        let prices = parse_toml(text).unwrap();
        assert_eq!(prices[0].currency.as_str(), "EUR");
        assert_eq!(prices[0].rates.output_per_1m, amt("10"));
        let err = parse_toml("[[price]]\nprovider = \"p\"\nmodel = \"m\"\ninput_per_1m = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("line 4"), "{err}");
        let err = parse_toml("[[price]]\nprovider = \"p\"\nmodel = \"m\"\ninptu_per_1m = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("inptu_per_1m"), "{err}");
        let err = parse_toml("[[price]]\nprovider = \"p\"\nmodel = \"m\"\ninput_per_1m = -1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("negative"), "{err}");
    }
}
