//! Usage as FOCUS-shaped rows, for Spark, Athena, Trino or DuckDB: FOCUS 1.2 column names
//! and types (costs DECIMAL(18,9), times TIMESTAMP UTC), each record one charge, with
//! custos' own details in `x_` columns as the specification asks of custom columns. Written
//! as Parquet (Snappy, row groups of 100,000) or CSV, streaming.

use crate::usage::UsageRecord;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use std::io::Write;
use std::sync::Arc;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// DECIMAL(18,9) stored as nano-units.
    Decimal,
    Timestamp,
    Text,
    /// Text that FOCUS allows to be null (written null when empty).
    OptionalText,
    Integer,
}

const COLUMNS: [(&str, Kind); 41] = [
    ("BilledCost", Kind::Decimal),
    ("EffectiveCost", Kind::Decimal),
    ("ListCost", Kind::Decimal),
    ("ContractedCost", Kind::Decimal),
    ("BillingCurrency", Kind::Text),
    ("BillingPeriodStart", Kind::Timestamp),
    ("BillingPeriodEnd", Kind::Timestamp),
    ("ChargePeriodStart", Kind::Timestamp),
    ("ChargePeriodEnd", Kind::Timestamp),
    ("ChargeCategory", Kind::Text),
    ("ChargeClass", Kind::OptionalText),
    ("ChargeDescription", Kind::Text),
    ("ChargeFrequency", Kind::Text),
    ("BillingAccountId", Kind::Text),
    ("BillingAccountName", Kind::Text),
    ("SubAccountId", Kind::Text),
    ("SubAccountName", Kind::Text),
    ("InvoiceIssuerName", Kind::Text),
    ("ProviderName", Kind::Text),
    ("PublisherName", Kind::Text),
    ("ServiceName", Kind::Text),
    ("ServiceCategory", Kind::Text),
    ("ResourceId", Kind::Text),
    ("ResourceName", Kind::Text),
    ("RegionId", Kind::OptionalText),
    ("SkuId", Kind::Text),
    ("PricingQuantity", Kind::Decimal),
    ("PricingUnit", Kind::Text),
    ("ConsumedQuantity", Kind::Decimal),
    ("ConsumedUnit", Kind::Text),
    ("Tags", Kind::Text),
    ("x_Source", Kind::Text),
    ("x_Environment", Kind::Text),
    ("x_InputTokens", Kind::Integer),
    ("x_CachedInputTokens", Kind::Integer),
    ("x_CacheWriteTokens", Kind::Integer),
    ("x_OutputTokens", Kind::Integer),
    ("x_ReasoningTokens", Kind::Integer),
    ("x_Calls", Kind::Integer),
    ("x_Documents", Kind::Integer),
    ("x_RequestId", Kind::OptionalText),
];

/// One value of one row.
enum Value {
    Nanos(i64),
    Ms(i64),
    Text(String),
    Int(i64),
}

fn month_bounds(at_ms: i64) -> (i64, i64) {
    let Ok(t) = jiff::Timestamp::from_millisecond(at_ms) else {
        return (at_ms, at_ms);
    };
    let z = t.to_zoned(jiff::tz::TimeZone::UTC);
    let first = z.date().first_of_month();
    let ms = |d: jiff::civil::Date| {
        d.to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(at_ms)
    };
    let next = first.checked_add(jiff::ToSpan::month(1)).unwrap_or(first);
    (ms(first), ms(next))
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn values(r: &UsageRecord) -> Vec<Value> {
    let cost = r.cost.to_i64_nanos().unwrap_or(i64::MAX);
    let (bill_start, bill_end) = month_bounds(r.at_ms);
    let tokens = clamp(r.usage.total_tokens());
    let (quantity, unit) = if tokens > 0 {
        (crate::Amount::from_units(tokens), "Tokens")
    } else if r.usage.compute_ms > 0 {
        let hours = crate::Amount::from_units(clamp(r.usage.compute_ms)).mul_div(1, 3_600_000);
        (hours.unwrap_or_default(), "Hours")
    } else {
        (
            crate::Amount::from_units(clamp(r.usage.calls.max(1))),
            "Requests",
        )
    };
    let quantity_nanos = quantity.to_i64_nanos().unwrap_or(i64::MAX);
    let mut tags: serde_json::Map<String, serde_json::Value> = r
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    for (k, v) in [
        ("custos/team", &r.team),
        ("custos/app", &r.app),
        ("custos/env", &r.env),
        ("custos/key", &r.key_id),
    ] {
        tags.insert(k.into(), serde_json::Value::String(v.clone()));
    }
    let description = match r.source.as_str() {
        "gateway" => format!(
            "{} calls to {} through the custos gateway",
            r.usage.calls, r.model
        ),
        _ => format!(
            "job usage of {}",
            if r.model.is_empty() {
                "compute"
            } else {
                &r.model
            }
        ),
    };
    vec![
        Value::Nanos(cost),
        Value::Nanos(cost),
        Value::Nanos(cost),
        Value::Nanos(cost),
        Value::Text(r.currency.as_str().to_owned()),
        Value::Ms(bill_start),
        Value::Ms(bill_end),
        Value::Ms(r.at_ms.saturating_sub(clamp(r.latency_ms))),
        Value::Ms(r.at_ms),
        Value::Text("Usage".into()),
        Value::Text(String::new()),
        Value::Text(description),
        Value::Text("Usage-Based".into()),
        Value::Text(r.tenant.clone()),
        Value::Text(r.tenant.clone()),
        Value::Text(r.team.clone()),
        Value::Text(r.team.clone()),
        Value::Text(r.provider.clone()),
        Value::Text(r.provider.clone()),
        Value::Text(r.provider.clone()),
        Value::Text(r.provider.clone()),
        Value::Text("AI and Machine Learning".into()),
        Value::Text(r.app.clone()),
        Value::Text(r.app.clone()),
        Value::Text(r.region.clone()),
        Value::Text(r.model.clone()),
        Value::Nanos(quantity_nanos),
        Value::Text(unit.into()),
        Value::Nanos(quantity_nanos),
        Value::Text(unit.into()),
        Value::Text(serde_json::Value::Object(tags).to_string()),
        Value::Text(r.source.clone()),
        Value::Text(r.env.clone()),
        Value::Int(clamp(r.usage.input_tokens)),
        Value::Int(clamp(r.usage.cached_input_tokens)),
        Value::Int(clamp(r.usage.cache_write_tokens)),
        Value::Int(clamp(r.usage.output_tokens)),
        Value::Int(clamp(r.usage.reasoning_tokens)),
        Value::Int(clamp(r.usage.calls)),
        Value::Int(clamp(r.documents)),
        Value::Text(r.request_id.clone().unwrap_or_default()),
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// Writes FOCUS rows as CSV (RFC 4180) with a header line.
pub struct CsvWriter<W: Write> {
    out: W,
}

/// One CSV line (RFC 4180 quoting), newline included.
pub fn csv_line(cells: &[String]) -> String {
    let mut line = cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

impl<W: Write> CsvWriter<W> {
    pub fn new(mut out: W) -> Result<Self, ExportError> {
        let header: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
        writeln!(out, "{}", header.join(","))?;
        Ok(Self { out })
    }

    pub fn write(&mut self, r: &UsageRecord) -> Result<(), ExportError> {
        let cells: Vec<String> = values(r)
            .into_iter()
            .map(|v| match v {
                Value::Nanos(n) => crate::Amount::from_nanos(n.into()).to_string(),
                Value::Ms(ms) => jiff::Timestamp::from_millisecond(ms)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                Value::Text(s) => csv_cell(&s),
                Value::Int(i) => i.to_string(),
            })
            .collect();
        writeln!(self.out, "{}", cells.join(","))?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<W, ExportError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Rows per Parquet row group.
const ROW_GROUP: usize = 100_000;

/// Writes FOCUS rows as Parquet, one row group per 100,000 rows.
pub struct ParquetWriter<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    ints: Vec<Vec<i64>>,
    texts: Vec<Vec<ByteArray>>,
    defs: Vec<Vec<i16>>,
    rows: usize,
}

fn schema() -> String {
    let mut s = String::from("message focus {\n");
    for (name, kind) in COLUMNS {
        let line = match kind {
            Kind::Decimal => format!("  REQUIRED INT64 {name} (DECIMAL(18,9));\n"),
            Kind::Timestamp => format!("  REQUIRED INT64 {name} (TIMESTAMP(MILLIS,true));\n"),
            Kind::Text => format!("  REQUIRED BYTE_ARRAY {name} (UTF8);\n"),
            Kind::OptionalText => format!("  OPTIONAL BYTE_ARRAY {name} (UTF8);\n"),
            Kind::Integer => format!("  REQUIRED INT64 {name};\n"),
        };
        s.push_str(&line);
    }
    s.push('}');
    s
}

impl<W: Write + Send> ParquetWriter<W> {
    pub fn new(out: W) -> Result<Self, ExportError> {
        let schema = parquet::schema::parser::parse_message_type(&schema())?;
        let props = WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .set_created_by(concat!("custos ", env!("CARGO_PKG_VERSION")).into())
            .build();
        Ok(Self {
            writer: SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props))?,
            ints: vec![Vec::new(); COLUMNS.len()],
            texts: vec![Vec::new(); COLUMNS.len()],
            defs: vec![Vec::new(); COLUMNS.len()],
            rows: 0,
        })
    }

    pub fn write(&mut self, r: &UsageRecord) -> Result<(), ExportError> {
        for (i, v) in values(r).into_iter().enumerate() {
            match v {
                Value::Nanos(n) | Value::Ms(n) | Value::Int(n) => self.ints[i].push(n),
                Value::Text(s) if COLUMNS[i].1 == Kind::OptionalText => {
                    if s.is_empty() {
                        self.defs[i].push(0);
                    } else {
                        self.defs[i].push(1);
                        self.texts[i].push(ByteArray::from(s.into_bytes()));
                    }
                }
                Value::Text(s) => self.texts[i].push(ByteArray::from(s.into_bytes())),
            }
        }
        self.rows += 1;
        if self.rows == ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        let mut i = 0;
        while let Some(mut col) = group.next_column()? {
            match COLUMNS[i].1 {
                Kind::Decimal | Kind::Timestamp | Kind::Integer => {
                    col.typed::<Int64Type>()
                        .write_batch(&self.ints[i], None, None)?;
                }
                Kind::Text => {
                    col.typed::<ByteArrayType>()
                        .write_batch(&self.texts[i], None, None)?;
                }
                Kind::OptionalText => {
                    col.typed::<ByteArrayType>().write_batch(
                        &self.texts[i],
                        Some(&self.defs[i]),
                        None,
                    )?;
                }
            }
            col.close()?;
            self.ints[i].clear();
            self.texts[i].clear();
            self.defs[i].clear();
            i += 1;
        }
        group.close()?;
        self.rows = 0;
        Ok(())
    }

    pub fn finish(mut self) -> Result<(), ExportError> {
        self.flush()?;
        self.writer.close()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::Reader;

    #[test]
    fn columns_carry_focus_1_column_ids() {
        // FOCUS 1.x names these by their Column ID, not their display name.
        let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
        for id in ["ProviderName", "PublisherName", "InvoiceIssuerName"] {
            assert!(names.contains(&id), "{id}");
        }
        for display in ["Provider", "Publisher", "InvoiceIssuer"] {
            assert!(!names.contains(&display), "{display}");
        }
    }

    fn record(i: u64) -> UsageRecord {
        UsageRecord {
            id: format!("use_{i}"),
            at_ms: 1_790_812_800_000 + i as i64 * 1000,
            source: "gateway".into(),
            tenant: "acme".into(),
            team: if i % 2 == 0 {
                "ml".into()
            } else {
                "web".into()
            },
            app: "bot".into(),
            env: "prod".into(),
            key_id: "key_1".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            region: if i % 3 == 0 {
                String::new()
            } else {
                "us-east".into()
            },
            usage: crate::Usage {
                input_tokens: 100 + i,
                output_tokens: 20,
                calls: 1,
                ..crate::Usage::default()
            },
            documents: 0,
            latency_ms: 250,
            cost: crate::Amount::from_nanos(1_234_567 + i as i128),
            currency: crate::Currency::USD,
            priced: true,
            energy_mwh: 0,
            co2e_mg: 0,
            tags: [("Project".to_owned(), "atlas, \"x\"".to_owned())]
                .into_iter()
                .collect(),
            untagged: false,
            request_id: None,
            status: 200,
            detail: None,
            release: None,
            end_user: None,
        }
    }

    /// What custos exports, custos (and so any FOCUS reader) ingests back, to the nano-unit.
    #[test]
    fn parquet_and_csv_round_trip_through_the_billing_reader() {
        let records: Vec<UsageRecord> = (0..250_001).step_by(1000).map(record).collect();
        let expected = records
            .iter()
            .fold(crate::Amount::ZERO, |s, r| s.saturating_add(r.cost));
        let dir = std::env::temp_dir().join(format!("custos-focus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pq = dir.join("usage.parquet");
        let mut w = ParquetWriter::new(std::fs::File::create(&pq).unwrap()).unwrap();
        for r in &records {
            w.write(r).unwrap();
        }
        w.finish().unwrap();
        let csv = dir.join("usage.csv");
        let mut w = CsvWriter::new(std::fs::File::create(&csv).unwrap()).unwrap();
        for r in &records {
            w.write(r).unwrap();
        }
        w.finish().unwrap();
        for reader in [
            Reader::parquet(std::fs::File::open(&pq).unwrap(), None).unwrap(),
            Reader::new(Box::new(std::fs::File::open(&csv).unwrap()), None).unwrap(),
        ] {
            let mut reader = reader;
            let mut total = crate::Amount::ZERO;
            let mut n = 0;
            while let Some(item) = reader.next_item() {
                let item = item.unwrap();
                total = total.saturating_add(item.billed_cost);
                assert_eq!(item.provider, "openai");
                assert_eq!(
                    item.tags.get("Project").map(String::as_str),
                    Some("atlas, \"x\"")
                );
                assert_eq!(item.period_end_ms - item.period_start_ms, 250);
                n += 1;
            }
            assert_eq!(n, records.len());
            assert_eq!(total, expected);
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
