//! Cloud billing exports as normalized line items: FinOps FOCUS 1.0–1.2 and AWS CUR 2.0,
//! as CSV, gzip CSV or Parquet. Rows stream through one at a time; every defect is reported with the
//! row number (1 = the first data row) and the column it is in. Money is parsed exactly;
//! digits beyond the ninth decimal are rounded half to even.

use crate::money::{Amount, Currency};
use std::collections::BTreeMap;
use std::io::Read;

/// One charge, whatever export it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineItem {
    /// 1-based data row in its file.
    pub row: u64,
    pub provider: String,
    pub billing_account: String,
    pub sub_account: String,
    pub service: String,
    pub service_category: String,
    pub charge_category: String,
    pub period_start_ms: i64,
    pub period_end_ms: i64,
    pub billed_cost: Amount,
    pub effective_cost: Amount,
    pub list_cost: Amount,
    pub currency: Currency,
    pub region: String,
    pub resource_id: String,
    pub sku: String,
    pub description: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Focus,
    Cur2,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Focus => "focus",
            Format::Cur2 => "aws-cur-2.0",
        }
    }
}

/// A defect in a billing file.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a FOCUS or AWS CUR 2.0 export: the header has neither BilledCost nor line_item_unblended_cost")]
    UnknownFormat,
    #[error("the header lacks the required column {0}")]
    MissingColumn(&'static str),
    #[error("row {row}, column {column}: {message}")]
    Cell {
        row: u64,
        column: String,
        message: String,
    },
    #[error("row {row}: {message}")]
    Row { row: u64, message: String },
}

/// Where each field sits in the file's header.
#[derive(Debug)]
struct Columns {
    billed: usize,
    effective: Option<usize>,
    list: Option<usize>,
    currency: usize,
    start: usize,
    end: usize,
    provider: Option<usize>,
    billing_account: Option<usize>,
    sub_account: Option<usize>,
    service: Option<usize>,
    service_category: Option<usize>,
    charge_category: Option<usize>,
    region: Option<usize>,
    resource_id: Option<usize>,
    sku: Option<usize>,
    description: Option<usize>,
    tags: Option<usize>,
}

fn find(header: &[String], names: &[&str]) -> Option<usize> {
    names.iter().find_map(|n| {
        header
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == *n)
    })
}

fn required(header: &[String], names: &[&'static str]) -> Result<usize, BillingError> {
    find(header, names).ok_or(BillingError::MissingColumn(names[0]))
}

impl Columns {
    fn of(format: Format, h: &[String]) -> Result<Self, BillingError> {
        Ok(match format {
            // FOCUS 1.0 names some columns …Name; 1.1 and 1.2 drop the suffix.
            Format::Focus => Columns {
                billed: required(h, &["BilledCost"])?,
                effective: find(h, &["EffectiveCost"]),
                list: find(h, &["ListCost"]),
                currency: required(h, &["BillingCurrency"])?,
                start: required(h, &["ChargePeriodStart"])?,
                end: required(h, &["ChargePeriodEnd"])?,
                provider: find(h, &["ServiceProviderName", "Provider", "ProviderName"]),
                billing_account: find(h, &["BillingAccountId"]),
                sub_account: find(h, &["SubAccountId"]),
                service: find(h, &["ServiceName"]),
                service_category: find(h, &["ServiceCategory"]),
                charge_category: find(h, &["ChargeCategory"]),
                region: find(h, &["RegionId", "Region"]),
                resource_id: find(h, &["ResourceId"]),
                sku: find(h, &["SkuId", "SkuPriceId"]),
                description: find(h, &["ChargeDescription"]),
                tags: find(h, &["Tags"]),
            },
            Format::Cur2 => Columns {
                billed: required(h, &["line_item_unblended_cost"])?,
                effective: find(h, &["line_item_net_unblended_cost"]),
                list: find(h, &["pricing_public_on_demand_cost"]),
                currency: required(h, &["line_item_currency_code"])?,
                start: required(h, &["line_item_usage_start_date"])?,
                end: required(h, &["line_item_usage_end_date"])?,
                provider: find(h, &["bill_billing_entity"]),
                billing_account: find(h, &["bill_payer_account_id"]),
                sub_account: find(h, &["line_item_usage_account_id"]),
                service: find(h, &["product_servicecode", "line_item_product_code"]),
                service_category: find(h, &["product_product_family"]),
                charge_category: find(h, &["line_item_line_item_type"]),
                region: find(h, &["product_region_code", "product_region"]),
                resource_id: find(h, &["line_item_resource_id"]),
                sku: find(h, &["product_sku"]),
                description: find(h, &["line_item_line_item_description"]),
                tags: find(h, &["resource_tags"]),
            },
        })
    }
}

/// One cell of the current row, as the source holds it.
enum Cell<'a> {
    Null,
    Text(std::borrow::Cow<'a, str>),
    /// An exact decimal (Parquet DECIMAL, integers).
    Exact(Amount),
    /// A binary float (Parquet DOUBLE): converted through its shortest decimal form.
    Float(f64),
    /// Epoch milliseconds (Parquet TIMESTAMP, DATE).
    Time(i64),
    /// Key-value pairs (Parquet MAP).
    Map(Vec<(String, String)>),
}

/// A table of rows: CSV text or Parquet records.
trait Cells: Send {
    fn header(&self) -> &[String];
    /// Moves to the next row: `None` at the end, an error for an unreadable row.
    fn advance(&mut self) -> Option<Result<(), String>>;
    fn cell(&self, col: usize) -> Cell<'_>;
}

struct CsvCells {
    csv: csv::Reader<Box<dyn Read + Send>>,
    header: Vec<String>,
    record: csv::StringRecord,
}

impl Cells for CsvCells {
    fn header(&self) -> &[String] {
        &self.header
    }
    fn advance(&mut self) -> Option<Result<(), String>> {
        match self.csv.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => Some(Ok(())),
            Err(e) => Some(Err(e.to_string())),
        }
    }
    fn cell(&self, col: usize) -> Cell<'_> {
        match self.record.get(col) {
            Some(s) if !is_null(s) => Cell::Text(std::borrow::Cow::Borrowed(s)),
            _ => Cell::Null,
        }
    }
}

struct ParquetCells {
    rows: parquet::record::reader::RowIter<'static>,
    header: Vec<String>,
    row: Vec<parquet::record::Field>,
    /// The decoder panicked; nothing more is read.
    failed: bool,
}

/// A DECIMAL's unscaled big-endian two's-complement bytes and scale as an amount.
fn decimal(d: &parquet::data_type::Decimal) -> Option<Amount> {
    let bytes = d.data();
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let mut v: i128 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
    for b in bytes {
        v = (v << 8) | i128::from(*b);
    }
    let scale = d.scale();
    if scale <= 9 {
        10i128
            .checked_pow((9 - scale) as u32)
            .and_then(|p| v.checked_mul(p))
            .map(Amount::from_nanos)
    } else {
        Amount::from_nanos(v).mul_div(1, 10i128.checked_pow((scale - 9) as u32)?)
    }
}

fn field_text(f: &parquet::record::Field) -> Option<String> {
    use parquet::record::Field as F;
    Some(match f {
        F::Null => return None,
        F::Str(s) => s.clone(),
        F::Bytes(b) => String::from_utf8_lossy(b.data()).into_owned(),
        other => other.to_string(),
    })
}

impl Cells for ParquetCells {
    fn header(&self) -> &[String] {
        &self.header
    }
    fn advance(&mut self) -> Option<Result<(), String>> {
        if self.failed {
            return None;
        }
        // The `parquet` crate panics on some malformed pages (found by fuzzing): a damaged
        // file must end in an error naming the row, not take the process down.
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.rows.next()));
        match next {
            Ok(None) => None,
            Ok(Some(Ok(row))) => {
                self.row = row.into_columns().into_iter().map(|(_, f)| f).collect();
                Some(Ok(()))
            }
            Ok(Some(Err(e))) => Some(Err(e.to_string())),
            Err(_) => {
                self.failed = true;
                Some(Err(
                    "the Parquet data is malformed and cannot be decoded".into()
                ))
            }
        }
    }
    fn cell(&self, col: usize) -> Cell<'_> {
        use parquet::record::Field as F;
        let Some(f) = self.row.get(col) else {
            return Cell::Null;
        };
        match f {
            F::Null => Cell::Null,
            F::Str(s) => Cell::Text(std::borrow::Cow::Borrowed(s)),
            F::Bytes(b) => Cell::Text(String::from_utf8_lossy(b.data())),
            F::Decimal(d) => decimal(d).map_or(Cell::Null, Cell::Exact),
            F::Double(v) => Cell::Float(*v),
            F::Float(v) => Cell::Float(f64::from(*v)),
            F::Int(v) => Cell::Exact(Amount::from_units(i64::from(*v))),
            F::Long(v) => Cell::Exact(Amount::from_units(*v)),
            F::TimestampMillis(ms) => Cell::Time(*ms),
            F::TimestampMicros(us) => Cell::Time(us.div_euclid(1000)),
            F::Date(days) => Cell::Time(i64::from(*days) * 86_400_000),
            F::MapInternal(m) => Cell::Map(
                m.entries()
                    .iter()
                    .filter_map(|(k, v)| Some((field_text(k)?, field_text(v).unwrap_or_default())))
                    .collect(),
            ),
            other => Cell::Text(std::borrow::Cow::Owned(other.to_string())),
        }
    }
}

/// Streams line items from an export: CSV (gzip detected by its magic bytes) or Parquet.
pub struct Reader {
    cells: Box<dyn Cells>,
    format: Format,
    cols: Columns,
    row: u64,
    /// Currency every row must carry (the caller's, or the first row's).
    currency: Option<Currency>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("format", &self.format)
            .field("row", &self.row)
            .finish()
    }
}

/// Null as FOCUS files write it: empty, or the literal NULL some exporters use.
fn is_null(s: &str) -> bool {
    s.is_empty() || s.eq_ignore_ascii_case("null")
}

/// FOCUS date-times are UTC: `2024-09-18T22:00:00Z`, also seen as `2024-09-18 22:00:00`
/// and with fractional seconds or an explicit offset.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t.as_millisecond());
    }
    let civil = s
        .trim_end_matches(['Z', 'z'])
        .parse::<jiff::civil::DateTime>()
        .ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

/// True when a file starts with Parquet's magic bytes.
pub fn is_parquet(path: &std::path::Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"PAR1"
}

impl Reader {
    /// Reads the header of a CSV export; `currency` pins the currency every row must be in.
    pub fn new(
        input: Box<dyn Read + Send>,
        currency: Option<Currency>,
    ) -> Result<Self, BillingError> {
        let mut input = input;
        let mut magic = [0u8; 2];
        let mut got = 0;
        while got < 2 {
            match input.read(&mut magic[got..])? {
                0 => break,
                n => got += n,
            }
        }
        let head = std::io::Cursor::new(magic[..got].to_vec());
        let chained: Box<dyn Read + Send> = Box::new(head.chain(input));
        let source: Box<dyn Read + Send> = if got == 2 && magic == [0x1f, 0x8b] {
            Box::new(flate2::read::MultiGzDecoder::new(chained))
        } else {
            chained
        };
        let mut csv = csv::ReaderBuilder::new()
            .flexible(false)
            .buffer_capacity(1 << 20)
            .from_reader(source);
        let header: Vec<String> = csv
            .headers()
            .map_err(|e| BillingError::Row {
                row: 0,
                message: format!("cannot read the header: {e}"),
            })?
            .iter()
            .map(str::to_owned)
            .collect();
        Self::over(
            Box::new(CsvCells {
                csv,
                header,
                record: csv::StringRecord::new(),
            }),
            currency,
        )
    }

    /// Reads a Parquet export (any of its compressions: Snappy, gzip, LZ4, zstd).
    pub fn parquet(file: std::fs::File, currency: Option<Currency>) -> Result<Self, BillingError> {
        Self::parquet_from(file, currency)
    }

    /// Reads Parquet from any source the `parquet` crate can seek in (a file, bytes).
    pub fn parquet_from<R: parquet::file::reader::ChunkReader + 'static>(
        source: R,
        currency: Option<Currency>,
    ) -> Result<Self, BillingError> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let bad = |e: parquet::errors::ParquetError| BillingError::Row {
            row: 0,
            message: format!("not a readable Parquet file: {e}"),
        };
        let malformed = || BillingError::Row {
            row: 0,
            message: "not a readable Parquet file: its metadata is malformed".into(),
        };
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            SerializedFileReader::new(source)
        }))
        .map_err(|_| malformed())?;
        let reader = opened.map_err(bad)?;
        let header: Vec<String> = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        let rows = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            parquet::record::reader::RowIter::from_file_into(Box::new(reader))
        }))
        .map_err(|_| malformed())?;
        Self::over(
            Box::new(ParquetCells {
                rows,
                header,
                row: Vec::new(),
                failed: false,
            }),
            currency,
        )
    }

    fn over(cells: Box<dyn Cells>, currency: Option<Currency>) -> Result<Self, BillingError> {
        let header = cells.header();
        let format = if find(header, &["BilledCost"]).is_some() {
            Format::Focus
        } else if find(header, &["line_item_unblended_cost"]).is_some() {
            Format::Cur2
        } else {
            return Err(BillingError::UnknownFormat);
        };
        let cols = Columns::of(format, header)?;
        Ok(Reader {
            cells,
            format,
            cols,
            row: 0,
            currency,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Rows read so far.
    pub fn rows(&self) -> u64 {
        self.row
    }

    fn cell_error(&self, col: usize, message: impl Into<String>) -> BillingError {
        BillingError::Cell {
            row: self.row,
            column: self
                .cells
                .header()
                .get(col)
                .cloned()
                .unwrap_or_else(|| "?".into()),
            message: message.into(),
        }
    }

    fn text(&self, col: Option<usize>) -> String {
        let Some(col) = col else {
            return String::new();
        };
        match self.cells.cell(col) {
            Cell::Null => String::new(),
            Cell::Text(t) => t.into_owned(),
            Cell::Exact(a) => a.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Time(ms) => jiff::Timestamp::from_millisecond(ms)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            Cell::Map(m) => m
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    fn money(&self, col: usize, nullable: bool) -> Result<Amount, BillingError> {
        match self.cells.cell(col) {
            Cell::Null if nullable => Ok(Amount::ZERO),
            Cell::Null => Err(self.cell_error(col, "is null; it must be a decimal number")),
            Cell::Text(s) if is_null(s.trim()) && nullable => Ok(Amount::ZERO),
            Cell::Text(s) => {
                Amount::parse_rounded(s.trim(), 0).map_err(|e| self.cell_error(col, e.to_string()))
            }
            Cell::Exact(a) => Ok(a),
            Cell::Float(f) if f.is_finite() => Amount::parse_rounded(&format!("{f}"), 0)
                .map_err(|e| self.cell_error(col, e.to_string())),
            Cell::Float(_) => Err(self.cell_error(col, "is not a finite number")),
            Cell::Time(_) | Cell::Map(_) => Err(self.cell_error(col, "must be a decimal number")),
        }
    }

    fn time(&self, col: usize) -> Result<i64, BillingError> {
        match self.cells.cell(col) {
            Cell::Time(ms) => Ok(ms),
            Cell::Null => Err(self.cell_error(col, "is null; it must be a date-time")),
            Cell::Text(s) => parse_time(&s).ok_or_else(|| {
                self.cell_error(
                    col,
                    format!("{s:?} is not an ISO 8601 date-time (e.g. 2026-11-01T00:00:00Z)"),
                )
            }),
            _ => Err(self.cell_error(col, "must be a date-time")),
        }
    }

    fn tags(&self) -> Result<BTreeMap<String, String>, BillingError> {
        let Some(col) = self.cols.tags else {
            return Ok(BTreeMap::new());
        };
        let pairs: Vec<(String, String)> = match self.cells.cell(col) {
            Cell::Null => return Ok(BTreeMap::new()),
            Cell::Map(m) => m,
            Cell::Text(s) => {
                let v: serde_json::Value = serde_json::from_str(&s)
                    .map_err(|e| self.cell_error(col, format!("is not a JSON object: {e}")))?;
                let Some(obj) = v.as_object() else {
                    return Err(
                        self.cell_error(col, "must be a JSON object of tag keys and values")
                    );
                };
                obj.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Null => String::new(),
                            other => other.to_string(),
                        };
                        (k.clone(), v)
                    })
                    .collect()
            }
            _ => return Err(self.cell_error(col, "must be a JSON object or a map of tags")),
        };
        Ok(pairs
            .into_iter()
            .map(|(k, v)| {
                // CUR 2.0 prefixes user tags with `user_`.
                let k = match self.format {
                    Format::Cur2 => k.strip_prefix("user_").map(str::to_owned).unwrap_or(k),
                    Format::Focus => k,
                };
                (k, v)
            })
            .collect())
    }

    /// The next line item, `None` at the end of the file.
    pub fn next_item(&mut self) -> Option<Result<LineItem, BillingError>> {
        let step = self.cells.advance()?;
        self.row += 1;
        if let Err(message) = step {
            return Some(Err(BillingError::Row {
                row: self.row,
                message,
            }));
        }
        Some(self.item())
    }

    fn item(&mut self) -> Result<LineItem, BillingError> {
        let c = &self.cols;
        let cur_text = self.text(Some(c.currency));
        let currency: Currency = cur_text
            .parse()
            .map_err(|e: String| self.cell_error(c.currency, e))?;
        match self.currency {
            Some(expected) if expected != currency => {
                return Err(self.cell_error(
                    c.currency,
                    format!("{currency} differs from {expected}, the currency of this ingest; ingest each currency separately or pass --currency"),
                ))
            }
            Some(_) => {}
            None => self.currency = Some(currency),
        }
        let (start, end) = (self.time(c.start)?, self.time(c.end)?);
        if end < start {
            return Err(self.cell_error(c.end, "ends before the charge period starts"));
        }
        Ok(LineItem {
            row: self.row,
            provider: match (self.format, self.text(c.provider)) {
                (Format::Cur2, p) if p.is_empty() || p == "AWS" => "AWS".into(),
                (_, p) => p,
            },
            billing_account: self.text(c.billing_account),
            sub_account: self.text(c.sub_account),
            service: self.text(c.service),
            service_category: self.text(c.service_category),
            charge_category: self.text(c.charge_category),
            period_start_ms: start,
            period_end_ms: end,
            billed_cost: self.money(c.billed, false)?,
            effective_cost: match c.effective {
                Some(col) => self.money(col, true)?,
                None => Amount::ZERO,
            },
            list_cost: match c.list {
                Some(col) => self.money(col, true)?,
                None => Amount::ZERO,
            },
            currency,
            region: self.text(c.region),
            resource_id: self.text(c.resource_id),
            sku: self.text(c.sku),
            description: self.text(c.description),
            tags: self.tags()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<LineItem>, BillingError> {
        let mut r = Reader::new(
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
            None,
        )?;
        let mut out = Vec::new();
        while let Some(item) = r.next_item() {
            out.push(item?);
        }
        Ok(out)
    }

    const FOCUS_HEAD: &str = "BilledCost,EffectiveCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,ProviderName,ServiceName,Tags\n";

    #[test]
    fn reads_focus_rows_exactly() {
        let items = read(&format!(
            "{FOCUS_HEAD}0.00000080000,NULL,USD,2024-09-18 22:00:00,2024-09-18 23:00:00,AWS,Amazon SQS,\"{{\"\"team\"\": \"\"ml\"\", \"\"flag\"\": true}}\"\n\
             12.5,12,USD,2024-09-18T22:00:00Z,2024-09-19T00:00:00Z,Microsoft,Azure OpenAI,NULL\n"
        ))
        .unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].billed_cost, "0.0000008".parse().unwrap());
        assert_eq!(items[0].tags.get("team").map(String::as_str), Some("ml"));
        assert_eq!(items[0].tags.get("flag").map(String::as_str), Some("true"));
        assert_eq!(
            items[1].period_end_ms - items[1].period_start_ms,
            2 * 3_600_000
        );
        assert_eq!(items[1].provider, "Microsoft");
    }

    #[test]
    fn defects_name_row_and_column() {
        let e = read(&format!(
            "{FOCUS_HEAD}abc,0,USD,2024-09-18 22:00:00,2024-09-18 23:00:00,AWS,S,\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("row 1, column BilledCost:"), "{e}");
        let e = read(&format!(
            "{FOCUS_HEAD}1,1,USD,2024-09-18 22:00:00,2024-09-18 23:00:00,AWS,S,\n2,2,EUR,2024-09-18 22:00:00,2024-09-18 23:00:00,AWS,S,\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("row 2, column BillingCurrency: EUR differs from USD"),
            "{e}"
        );
        let e = read(&format!(
            "{FOCUS_HEAD}1,1,USD,yesterday,2024-09-18 23:00:00,AWS,S,\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("column ChargePeriodStart"), "{e}");
        let e = read(&format!(
            "{FOCUS_HEAD}NULL,1,USD,2024-09-18 22:00:00,2024-09-18 23:00:00,AWS,S,\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("is null"), "{e}");
        let e = read(&format!(
            "{FOCUS_HEAD}1,1,USD,2024-09-18 22:00:00,2024-09-18 23:00:00,AWS,S,{{bad\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("column Tags"), "{e}");
        let e = read("BilledCost,BillingCurrency,ChargePeriodStart\n1,USD,2024-01-01\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ChargePeriodEnd"), "{e}");
        assert!(matches!(
            read("a,b\n1,2\n"),
            Err(BillingError::UnknownFormat)
        ));
        let e = read(&format!("{FOCUS_HEAD}1,1,USD\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("row 1:"), "{e}");
    }

    #[test]
    fn reads_cur2_and_gzip() {
        let text = "bill_payer_account_id,line_item_usage_account_id,line_item_line_item_type,line_item_usage_start_date,line_item_usage_end_date,line_item_product_code,line_item_unblended_cost,line_item_currency_code,product_region_code,resource_tags\n\
            111,222,Usage,2026-11-01T00:00:00Z,2026-11-01T01:00:00Z,AmazonBedrock,0.0421,USD,us-east-1,\"{\"\"user_Team\"\":\"\"ml\"\"}\"\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        let mut r = Reader::new(Box::new(std::io::Cursor::new(bytes)), None).unwrap();
        assert_eq!(r.format(), Format::Cur2);
        let item = r.next_item().unwrap().unwrap();
        assert_eq!(item.provider, "AWS");
        assert_eq!(item.service, "AmazonBedrock");
        assert_eq!(item.tags.get("Team").map(String::as_str), Some("ml"));
        assert_eq!(item.billed_cost, "0.0421".parse().unwrap());
        assert!(r.next_item().is_none());
    }

    #[test]
    fn reads_parquet_written_by_another_tool() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/focus-sample-50.zstd.parquet"
        );
        assert!(is_parquet(std::path::Path::new(path)));
        let mut r = Reader::parquet(std::fs::File::open(path).unwrap(), None).unwrap();
        assert_eq!(r.format(), Format::Focus);
        let mut total = Amount::ZERO;
        let mut tagged = None;
        while let Some(item) = r.next_item() {
            let item = item.unwrap();
            total = total.saturating_add(item.billed_cost);
            if tagged.is_none() && !item.tags.is_empty() {
                tagged = Some(item);
            }
        }
        assert_eq!(r.rows(), 50);
        // DECIMAL(18,10) values, each rounded half to even at 10⁻⁹, summed (Python decimal).
        assert_eq!(total, "0.371112582".parse().unwrap());
        let t = tagged.unwrap();
        assert_eq!(t.tags.get("environment").map(String::as_str), Some("dev"));
        assert_eq!(
            t.period_start_ms,
            "2024-09-30T22:00:00Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_millisecond()
        );
        let not_parquet = std::env::temp_dir().join("custos-not-parquet.parquet");
        std::fs::write(&not_parquet, b"PAR1 but not really").unwrap();
        let e = Reader::parquet(std::fs::File::open(&not_parquet).unwrap(), None).unwrap_err();
        assert!(e.to_string().contains("Parquet"), "{e}");
    }

    /// A file the fuzzer found that makes the `parquet` crate panic while decoding a page.
    #[test]
    fn malformed_parquet_is_an_error_not_a_panic() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/malformed-page.parquet"
        );
        let data = std::fs::read(path).unwrap();
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = Reader::parquet_from(bytes::Bytes::from(data), None).map(|mut r| {
            let mut errors = 0;
            while let Some(item) = r.next_item() {
                errors += usize::from(item.is_err());
            }
            errors
        });
        std::panic::set_hook(hook);
        assert!(matches!(result, Err(_) | Ok(1..)), "{result:?}");
    }

    /// Σ BilledCost of the sample, each value rounded half to even at 10⁻⁹, by Python's
    /// `decimal` module.
    const SAMPLE_TOTAL: &str = "20.520226737";

    #[test]
    fn reads_the_official_focus_sample() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/focus-1.0-sample.csv.gz"
        );
        let file = std::fs::File::open(path).unwrap();
        let mut r = Reader::new(Box::new(file), None).unwrap();
        let mut n = 0;
        let mut total = Amount::ZERO;
        while let Some(item) = r.next_item() {
            let item = item.unwrap();
            total = total.saturating_add(item.billed_cost);
            n += 1;
        }
        assert_eq!(n, 1000);
        // The sum as Python's decimal module computes it from the same file.
        assert_eq!(total.round_dp(9), SAMPLE_TOTAL.parse().unwrap());
    }
}
