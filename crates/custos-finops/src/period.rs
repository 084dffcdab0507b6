//! Budget periods: calendar days, ISO weeks (Monday first) and months, aligned in a time
//! zone, so "November" for a Berlin team starts at Berlin midnight and a DST change makes a
//! day 23 or 25 hours long instead of shifting the boundary.

use jiff::tz::TimeZone;
use jiff::{civil, Timestamp, ToSpan, Zoned};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodKind {
    Daily,
    Weekly,
    Monthly,
}

impl PeriodKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Daily => "daily",
            PeriodKind::Weekly => "weekly",
            PeriodKind::Monthly => "monthly",
        }
    }
}

impl FromStr for PeriodKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "daily" | "day" => Ok(PeriodKind::Daily),
            "weekly" | "week" => Ok(PeriodKind::Weekly),
            "monthly" | "month" => Ok(PeriodKind::Monthly),
            _ => Err(format!(
                "{s:?} is not a budget period: use daily, weekly or monthly"
            )),
        }
    }
}

/// One period: `[start, end)` in epoch milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Window {
    pub fn contains(&self, ms: i64) -> bool {
        (self.start_ms..self.end_ms).contains(&ms)
    }
}

/// Looks a time zone up by IANA name (`Europe/Berlin`) or accepts `UTC`.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    if name.eq_ignore_ascii_case("utc") || name == "Z" {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| {
        format!("{name:?} is not a known time zone: use an IANA name such as Europe/Berlin or UTC")
    })
}

fn start_of(kind: PeriodKind, z: &Zoned) -> Result<Zoned, jiff::Error> {
    let date = z.date();
    let first = match kind {
        PeriodKind::Daily => date,
        PeriodKind::Weekly => {
            let back = date.weekday().to_monday_zero_offset();
            date.checked_sub(i64::from(back).days())?
        }
        PeriodKind::Monthly => date.first_of_month(),
    };
    first.to_zoned(z.time_zone().clone())?.start_of_day()
}

fn step(kind: PeriodKind) -> jiff::Span {
    match kind {
        PeriodKind::Daily => 1.day(),
        PeriodKind::Weekly => 1.week(),
        PeriodKind::Monthly => 1.month(),
    }
}

/// The period of `kind` in `tz` that contains `at_ms`.
pub fn window(kind: PeriodKind, tz: &TimeZone, at_ms: i64) -> Result<Window, String> {
    let at = Timestamp::from_millisecond(at_ms).map_err(|e| e.to_string())?;
    let z = at.to_zoned(tz.clone());
    let start = start_of(kind, &z).map_err(|e| e.to_string())?;
    // Step the civil date, then take that day's first instant: a DST jump at midnight
    // moves the start, never the day.
    let next_date: civil::Date = start
        .date()
        .checked_add(step(kind))
        .map_err(|e| e.to_string())?;
    let end = next_date
        .to_zoned(tz.clone())
        .and_then(|z| z.start_of_day())
        .map_err(|e| e.to_string())?;
    Ok(Window {
        start_ms: start.timestamp().as_millisecond(),
        end_ms: end.timestamp().as_millisecond(),
    })
}

/// The period before `w` (of the same kind and zone).
pub fn previous(kind: PeriodKind, tz: &TimeZone, w: Window) -> Result<Window, String> {
    window(kind, tz, w.start_ms - 1)
}

/// A month named `2026-11` as a window in `tz`.
pub fn month(spec: &str, tz: &TimeZone) -> Result<Window, String> {
    let bad = || format!("{spec:?} is not a month: use YYYY-MM, e.g. 2026-11");
    let (y, m) = spec.trim().split_once('-').ok_or_else(bad)?;
    let (y, m): (i16, i8) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let d = civil::Date::new(y, m, 1).map_err(|_| bad())?;
    let z = d.to_zoned(tz.clone()).map_err(|e| e.to_string())?;
    window(PeriodKind::Monthly, tz, z.timestamp().as_millisecond())
}

/// A civil date (`YYYY-MM-DD`) for an instant in `tz`: the day a record belongs to.
pub fn civil_day(tz: &TimeZone, at_ms: i64) -> Option<civil::Date> {
    Timestamp::from_millisecond(at_ms)
        .ok()
        .map(|t| t.to_zoned(tz.clone()).date())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn month_end_and_leap_day() {
        let w = window(
            PeriodKind::Monthly,
            &TimeZone::UTC,
            ms("2028-02-29T23:59:59.999Z"),
        )
        .unwrap();
        assert_eq!(
            (w.start_ms, w.end_ms),
            (ms("2028-02-01T00:00:00Z"), ms("2028-03-01T00:00:00Z"))
        );
        let d = window(
            PeriodKind::Daily,
            &TimeZone::UTC,
            ms("2028-02-29T12:00:00Z"),
        )
        .unwrap();
        assert_eq!(d.end_ms - d.start_ms, 86_400_000);
        let dec = window(
            PeriodKind::Monthly,
            &TimeZone::UTC,
            ms("2026-12-31T23:00:00Z"),
        )
        .unwrap();
        assert_eq!(dec.end_ms, ms("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn periods_follow_the_budget_time_zone_across_dst() {
        let berlin = time_zone("Europe/Berlin").unwrap();
        // 2026-03-29: clocks go 02:00 → 03:00 in Berlin, a 23-hour day.
        let d = window(PeriodKind::Daily, &berlin, ms("2026-03-29T10:00:00Z")).unwrap();
        assert_eq!(d.start_ms, ms("2026-03-28T23:00:00Z"));
        assert_eq!(d.end_ms - d.start_ms, 23 * 3_600_000);
        // 2026-10-25: back to winter time, a 25-hour day.
        let d = window(PeriodKind::Daily, &berlin, ms("2026-10-25T10:00:00Z")).unwrap();
        assert_eq!(d.end_ms - d.start_ms, 25 * 3_600_000);
        // 23:30 UTC on Oct 31 is already November in Berlin.
        let m = window(PeriodKind::Monthly, &berlin, ms("2026-10-31T23:30:00Z")).unwrap();
        assert_eq!(m.start_ms, ms("2026-10-31T23:00:00Z"));
        assert_eq!(m.end_ms, ms("2026-11-30T23:00:00Z"));
        // A zone whose DST starts at midnight (Santiago): the day starts at 01:00.
        let santiago = time_zone("America/Santiago").unwrap();
        let d = window(PeriodKind::Daily, &santiago, ms("2026-09-06T12:00:00Z")).unwrap();
        assert_eq!(d.end_ms - d.start_ms, 23 * 3_600_000);
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-11-26 is a Thursday.
        let w = window(
            PeriodKind::Weekly,
            &TimeZone::UTC,
            ms("2026-11-26T08:00:00Z"),
        )
        .unwrap();
        assert_eq!(w.start_ms, ms("2026-11-23T00:00:00Z"));
        assert_eq!(w.end_ms, ms("2026-11-30T00:00:00Z"));
        let p = previous(PeriodKind::Weekly, &TimeZone::UTC, w).unwrap();
        assert_eq!(p.start_ms, ms("2026-11-16T00:00:00Z"));
    }

    #[test]
    fn names_and_errors() {
        assert!(time_zone("Mars/Olympus").unwrap_err().contains("IANA"));
        assert!("fortnightly".parse::<PeriodKind>().is_err());
        let m = month("2026-11", &TimeZone::UTC).unwrap();
        assert_eq!(m.start_ms, ms("2026-11-01T00:00:00Z"));
        assert!(month("2026-13", &TimeZone::UTC).is_err());
        assert!(month("nov", &TimeZone::UTC).is_err());
    }
}
