//! Exact money: an integer count of nano-units (10⁻⁹) of a currency, never a float.
//! Prices per million tokens with up to nine decimals and per-token prices with up to fifteen
//! are exact, and a call's cost is rounded once (half to even) to the nano-unit.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Nano-units per unit.
pub const NANOS: i128 = 1_000_000_000;
const DECIMALS: usize = 9;

/// An exact decimal amount with nine fractional digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i128);

/// Why a decimal did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("{0:?} is not a decimal number (expected digits like 12.50)")]
    Syntax(String),
    #[error("{0:?} has more than {DECIMALS} decimal places; custos keeps amounts exact to 10⁻⁹")]
    Precision(String),
    #[error("{0:?} is too large")]
    Overflow(String),
}

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn from_nanos(n: i128) -> Self {
        Amount(n)
    }

    pub const fn nanos(self) -> i128 {
        self.0
    }

    pub const fn from_units(n: i64) -> Self {
        Amount(n as i128 * NANOS)
    }

    /// The amount as `i64` nano-units, the storage form (±9.2 billion units).
    pub fn to_i64_nanos(self) -> Option<i64> {
        i64::try_from(self.0).ok()
    }

    pub fn is_zero(&self) -> bool {
        self.0 == 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn checked_add(self, o: Amount) -> Option<Amount> {
        self.0.checked_add(o.0).map(Amount)
    }

    pub fn checked_sub(self, o: Amount) -> Option<Amount> {
        self.0.checked_sub(o.0).map(Amount)
    }

    pub fn saturating_add(self, o: Amount) -> Amount {
        Amount(self.0.saturating_add(o.0))
    }

    pub fn saturating_sub(self, o: Amount) -> Amount {
        Amount(self.0.saturating_sub(o.0))
    }

    /// `self × num / den`, rounded half to even; `None` on overflow or a zero `den`.
    pub fn mul_div(self, num: i128, den: i128) -> Option<Amount> {
        div_round_even(self.0.checked_mul(num)?, den).map(Amount)
    }

    /// Rounds to `decimals` places (≤ 9), half to even: the form for invoices and reports.
    pub fn round_dp(self, decimals: u32) -> Amount {
        let decimals = decimals.min(DECIMALS as u32);
        let step = 10i128.pow(DECIMALS as u32 - decimals);
        Amount(div_round_even(self.0, step).map_or(self.0, |q| q * step))
    }

    /// Parses a decimal and multiplies it by 10^`shift` exactly, so that a per-token price
    /// becomes a per-million price (`shift` 6) without passing through a float.
    pub fn parse_shifted(s: &str, shift: u32) -> Result<Amount, AmountError> {
        parse(s, shift, false)
    }

    /// Like `parse_shifted`, but rounds (half to even) digits beyond the ninth decimal
    /// instead of refusing them: for catalogs published as binary floats.
    pub fn parse_rounded(s: &str, shift: u32) -> Result<Amount, AmountError> {
        parse(s, shift, true)
    }

    /// Converts a JSON number exactly as written (`1.5e-07` included), scaled by 10^`shift`.
    /// Digits beyond the ninth decimal are rounded half to even.
    pub fn from_json_number(n: &serde_json::Number, shift: u32) -> Result<Amount, AmountError> {
        parse(&n.to_string(), shift, true)
    }

    /// A fraction of this amount given in percent, exact.
    pub fn percent(self, pct: u32) -> Amount {
        Amount(self.0.saturating_mul(pct as i128) / 100)
    }

    /// The amount as a float, for statistics and charts only; never for money sums.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / NANOS as f64
    }

    /// For people: cents for amounts of a unit or more, otherwise up to six decimals so a
    /// sub-cent call cost does not read as zero (`12.50`, `0.000616`, `0.00`).
    pub fn format_money(self) -> String {
        if self.0.unsigned_abs() >= NANOS as u128 || self.is_zero() {
            return self.format_dp(2);
        }
        let s = self.format_dp(6);
        let trimmed = s.trim_end_matches('0');
        let decimals = trimmed.split_once('.').map_or(0, |(_, f)| f.len());
        if decimals < 2 {
            self.format_dp(2)
        } else {
            trimmed.to_owned()
        }
    }

    /// Formats with exactly `decimals` places (rounded half to even).
    pub fn format_dp(self, decimals: u32) -> String {
        let decimals = decimals.min(DECIMALS as u32);
        let r = self.round_dp(decimals).0;
        let sign = if r < 0 { "-" } else { "" };
        let abs = r.unsigned_abs();
        let int = abs / NANOS as u128;
        if decimals == 0 {
            return format!("{sign}{int}");
        }
        let frac = (abs % NANOS as u128) / 10u128.pow(DECIMALS as u32 - decimals);
        format!("{sign}{int}.{frac:0width$}", width = decimals as usize)
    }
}

/// `n / d` rounded half to even.
fn div_round_even(n: i128, d: i128) -> Option<i128> {
    if d == 0 {
        return None;
    }
    let q = n.checked_div(d)?;
    let r = n.checked_rem(d)?;
    if r == 0 {
        return Some(q);
    }
    let twice = r.unsigned_abs().checked_mul(2)?;
    let d_abs = d.unsigned_abs();
    let away = (n < 0) != (d < 0);
    let step = if away { -1 } else { 1 };
    Some(match twice.cmp(&d_abs) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + step,
        std::cmp::Ordering::Equal if q % 2 == 0 => q,
        std::cmp::Ordering::Equal => q + step,
    })
}

fn parse(s: &str, shift: u32, round: bool) -> Result<Amount, AmountError> {
    let text = s.trim();
    let syntax = || AmountError::Syntax(s.to_owned());
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => {
            let e: i32 = text[i + 1..].parse().map_err(|_| syntax())?;
            (&text[..i], e)
        }
        None => (text, 0),
    };
    let (negative, digits) = match mantissa.as_bytes().first() {
        Some(b'-') => (true, &mantissa[1..]),
        Some(b'+') => (false, &mantissa[1..]),
        _ => (false, mantissa),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(syntax());
    }
    // The value is all digits × 10^(exp + shift − len(frac)); scale to nano-units.
    let all: String = format!("{int}{frac}");
    let all = all.trim_start_matches('0');
    let power = exp as i64 + shift as i64 - frac.len() as i64 + DECIMALS as i64;
    if all.is_empty() {
        return Ok(Amount::ZERO);
    }
    if all.len() > 38 || power > 38 {
        return Err(AmountError::Overflow(s.to_owned()));
    }
    let mantissa: i128 = all
        .parse()
        .map_err(|_| AmountError::Overflow(s.to_owned()))?;
    let nanos = if power >= 0 {
        10i128
            .checked_pow(power as u32)
            .and_then(|p| mantissa.checked_mul(p))
            .ok_or_else(|| AmountError::Overflow(s.to_owned()))?
    } else {
        let drop = (-power) as u32;
        if drop > 38 {
            if round {
                0
            } else {
                return Err(AmountError::Precision(s.to_owned()));
            }
        } else {
            let p = 10i128.pow(drop);
            if mantissa % p != 0 && !round {
                return Err(AmountError::Precision(s.to_owned()));
            }
            div_round_even(mantissa, p).ok_or_else(syntax)?
        }
    };
    Ok(Amount(if negative { -nanos } else { nanos }))
}

impl FromStr for Amount {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s, 0, false)
    }
}

impl fmt::Display for Amount {
    /// The shortest exact form: `12.5`, `0.000000075`, `3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.format_dp(DECIMALS as u32);
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.')
        } else {
            &s
        };
        f.write_str(s)
    }
}

impl Serialize for Amount {
    /// As a string, so no JSON reader turns it into a float.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    /// From a string (`"0.15"`) or a number as written (`0.15`, never via f64).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal amount such as \"0.15\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Amount, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Amount, E> {
                Ok(Amount::from_units(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Amount, E> {
                Ok(Amount(v as i128 * NANOS))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Amount, E> {
                // Formats like TOML hand floats over as f64; their shortest decimal form is
                // what the author wrote.
                if !v.is_finite() {
                    return Err(E::custom("amounts must be finite"));
                }
                parse(&format!("{v}"), 0, false).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// An ISO 4217 currency code such as `USD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    pub fn as_str(&self) -> &str {
        // Only ASCII uppercase letters get in (see `from_str`).
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency::USD
    }
}

impl FromStr for Currency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_uppercase();
        let b = t.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_uppercase) {
            return Err(format!(
                "{s:?} is not an ISO 4217 currency code (three letters such as USD or EUR)"
            ));
        }
        Ok(Currency([b[0], b[1], b[2]]))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An amount in a currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount: Amount,
    pub currency: Currency,
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Amount {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_exactly() {
        assert_eq!(a("12.5").nanos(), 12_500_000_000);
        assert_eq!(a("0.000000001").nanos(), 1);
        assert_eq!(a("-3").to_string(), "-3");
        assert_eq!(a("0.1").to_string(), "0.1");
        assert_eq!(a("1e-7").to_string(), "0.0000001");
        assert_eq!(a("1.5E2").to_string(), "150");
        assert!(matches!(
            "0.0000000001".parse::<Amount>(),
            Err(AmountError::Precision(_))
        ));
        for bad in ["", ".", "-", "1.2.3", "abc", "1e", "0x10", "1,5"] {
            assert!(bad.parse::<Amount>().is_err(), "{bad}");
        }
        assert!("1e40".parse::<Amount>().is_err());
    }

    #[test]
    fn per_token_prices_become_exact_per_million_prices() {
        // 3.75e-8 per token is 0.0375 per million: not representable per token at 10⁻⁹.
        let n: serde_json::Number = serde_json::from_str("3.75e-08").unwrap();
        assert_eq!(
            Amount::from_json_number(&n, 6).unwrap().to_string(),
            "0.0375"
        );
        let n: serde_json::Number = serde_json::from_str("0.0000025").unwrap();
        assert_eq!(Amount::from_json_number(&n, 6).unwrap().to_string(), "2.5");
        assert_eq!(Amount::parse_shifted("0.15", 0).unwrap(), a("0.15"));
    }

    #[test]
    fn rounds_half_to_even() {
        assert_eq!(a("0.125").round_dp(2), a("0.12"));
        assert_eq!(a("0.135").round_dp(2), a("0.14"));
        assert_eq!(a("-0.125").round_dp(2), a("-0.12"));
        assert_eq!(a("2.5").round_dp(0), a("2"));
        assert_eq!(a("0.005").format_dp(2), "0.00");
        assert_eq!(a("1234.5678").format_dp(2), "1234.57");
        assert_eq!(a("-0.5").format_dp(3), "-0.500");
        assert_eq!(a("12.5").format_money(), "12.50");
        assert_eq!(a("0.000616").format_money(), "0.000616");
        assert_eq!(a("0.5").format_money(), "0.50");
        assert_eq!(a("0.0000001").format_money(), "0.00");
        assert_eq!(Amount::ZERO.format_money(), "0.00");
        assert_eq!(
            Amount::from_nanos(5).mul_div(1, 10),
            Some(Amount::from_nanos(0))
        );
        assert_eq!(
            Amount::from_nanos(15).mul_div(1, 10),
            Some(Amount::from_nanos(2))
        );
    }

    #[test]
    fn serde_keeps_decimals_exact() {
        let v: Amount = serde_json::from_str("0.1").unwrap();
        assert_eq!(v, a("0.1"));
        let v: Amount = serde_json::from_str("\"0.30\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"0.3\"");
        assert!(serde_json::from_str::<Currency>("\"usd\"").is_ok());
        assert!(serde_json::from_str::<Currency>("\"dollars\"").is_err());
    }
}
