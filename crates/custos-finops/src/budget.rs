//! Budgets: an amount per period for a scope (a tenant, team, app, key or tag), thresholds
//! that alert once per period, and what happens at 100%. `Tracker` is the in-memory state the
//! gateway checks on every call: spend so far plus reservations for calls in flight, so that
//! concurrent calls can overspend by no more than what their estimates undercounted.

use crate::money::{Amount, Currency};
use crate::period::{self, PeriodKind, Window};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::sync::Mutex;

/// What a budget covers, inside its tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Scope {
    Tenant,
    Team(String),
    App(String),
    Key(String),
    Tag { key: String, value: String },
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Tenant => f.write_str("tenant"),
            Scope::Team(t) => write!(f, "team:{t}"),
            Scope::App(a) => write!(f, "app:{a}"),
            Scope::Key(k) => write!(f, "key:{k}"),
            Scope::Tag { key, value } => write!(f, "tag:{key}={value}"),
        }
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "tenant" {
            return Ok(Scope::Tenant);
        }
        let bad = || {
            format!("{s:?} is not a budget scope: use tenant, team:NAME, app:NAME, key:ID or tag:KEY=VALUE")
        };
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match kind {
            "team" => Ok(Scope::Team(rest.to_owned())),
            "app" => Ok(Scope::App(rest.to_owned())),
            "key" => Ok(Scope::Key(rest.to_owned())),
            "tag" => {
                let (k, v) = rest.split_once('=').ok_or_else(bad)?;
                if k.is_empty() {
                    return Err(bad());
                }
                Ok(Scope::Tag {
                    key: k.to_owned(),
                    value: v.to_owned(),
                })
            }
            _ => Err(bad()),
        }
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Scope {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// What happens when a budget is used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Alert only; calls continue.
    Alert,
    /// Refuse calls (402) until the period ends, unless the caller holds a spend override.
    Block,
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "alert" => Ok(Action::Alert),
            "block" => Ok(Action::Block),
            _ => Err(format!("{s:?} is not a budget action: use alert or block")),
        }
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Block => "block",
        }
    }
}

pub const DEFAULT_THRESHOLDS: [u32; 3] = [70, 90, 100];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub scope: Scope,
    pub period: PeriodKind,
    /// IANA zone in which periods are calendar-aligned.
    pub time_zone: String,
    pub amount: Amount,
    pub currency: Currency,
    /// Percentages of `amount`, ascending.
    pub thresholds: Vec<u32>,
    pub action: Action,
}

/// Who and what a unit of spend belongs to.
#[derive(Clone, Copy, Debug)]
pub struct Attribution<'a> {
    pub tenant: &'a str,
    pub team: &'a str,
    pub app: &'a str,
    pub key: &'a str,
    pub tags: &'a [(String, String)],
}

impl Budget {
    pub fn applies(&self, a: &Attribution<'_>) -> bool {
        if self.tenant != a.tenant {
            return false;
        }
        match &self.scope {
            Scope::Tenant => true,
            Scope::Team(t) => t == a.team,
            Scope::App(x) => x == a.app,
            Scope::Key(k) => k == a.key,
            Scope::Tag { key, value } => a.tags.iter().any(|(k, v)| k == key && v == value),
        }
    }

    /// Checks a new budget's fields and normalizes its thresholds (sorted, unique, 1–1000%).
    pub fn validate(&mut self) -> Result<(), String> {
        if self.amount <= Amount::ZERO {
            return Err("a budget's amount must be greater than zero".into());
        }
        period::time_zone(&self.time_zone)?;
        if self.thresholds.is_empty() {
            self.thresholds = DEFAULT_THRESHOLDS.to_vec();
        }
        if let Some(t) = self.thresholds.iter().find(|t| **t == 0 || **t > 1000) {
            return Err(format!("threshold {t}% is out of range: use 1 to 1000"));
        }
        self.thresholds.sort_unstable();
        self.thresholds.dedup();
        Ok(())
    }

    /// Spend at which threshold `pct` is reached.
    pub fn level(&self, pct: u32) -> Amount {
        self.amount.percent(pct)
    }
}

/// Why a call may not spend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exhausted {
    pub spent: Amount,
    pub reserved: Amount,
    pub amount: Amount,
    pub window: Window,
}

#[derive(Debug)]
struct State {
    window: Window,
    spent: Amount,
    reserved: Amount,
    /// Thresholds already alerted (or known to be) in this window.
    fired: Vec<u32>,
}

/// Live state of one budget in one process.
#[derive(Debug)]
pub struct Tracker {
    pub budget: Budget,
    tz: jiff::tz::TimeZone,
    state: Mutex<State>,
}

/// A hold on part of a budget for a call in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub amount: Amount,
    pub window: Window,
}

impl Tracker {
    /// A tracker for `budget`, starting from `spent` in the window containing `now_ms`.
    pub fn new(budget: Budget, now_ms: i64, spent: Amount) -> Result<Self, String> {
        let tz = period::time_zone(&budget.time_zone)?;
        let window = period::window(budget.period, &tz, now_ms)?;
        Ok(Tracker {
            state: Mutex::new(State {
                window,
                spent,
                reserved: Amount::ZERO,
                fired: Vec::new(),
            }),
            tz,
            budget,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves to the window containing `now_ms` if the period has turned.
    fn roll(&self, s: &mut State, now_ms: i64) {
        if !s.window.contains(now_ms) {
            if let Ok(w) = period::window(self.budget.period, &self.tz, now_ms) {
                *s = State {
                    window: w,
                    spent: Amount::ZERO,
                    reserved: Amount::ZERO,
                    fired: Vec::new(),
                };
            }
        }
    }

    pub fn window(&self, now_ms: i64) -> Window {
        let mut s = self.lock();
        self.roll(&mut s, now_ms);
        s.window
    }

    /// Holds `estimate` for a call. A blocking budget refuses when spend plus holds plus the
    /// estimate would pass the amount — or when it is already used up, so a call with a zero
    /// estimate cannot slip through.
    pub fn reserve(&self, now_ms: i64, estimate: Amount) -> Result<Hold, Exhausted> {
        let mut s = self.lock();
        self.roll(&mut s, now_ms);
        let committed = s.spent.saturating_add(s.reserved);
        if self.budget.action == Action::Block
            && (committed >= self.budget.amount
                || committed.saturating_add(estimate) > self.budget.amount)
        {
            return Err(Exhausted {
                spent: s.spent,
                reserved: s.reserved,
                amount: self.budget.amount,
                window: s.window,
            });
        }
        s.reserved = s.reserved.saturating_add(estimate);
        Ok(Hold {
            amount: estimate,
            window: s.window,
        })
    }

    /// Holds `estimate` whatever the budget says: for a caller with a spend override, whose
    /// call still counts against the budget.
    pub fn hold_anyway(&self, now_ms: i64, estimate: Amount) -> Hold {
        let mut s = self.lock();
        self.roll(&mut s, now_ms);
        s.reserved = s.reserved.saturating_add(estimate);
        Hold {
            amount: estimate,
            window: s.window,
        }
    }

    /// Releases a hold and adds the call's actual cost; returns the thresholds this call
    /// crossed that were not yet fired in this window (they are marked fired).
    pub fn settle(&self, hold: Option<Hold>, now_ms: i64, actual: Amount) -> Vec<u32> {
        let mut s = self.lock();
        if let Some(h) = hold {
            if h.window == s.window {
                s.reserved = s.reserved.saturating_sub(h.amount);
            }
        }
        self.roll(&mut s, now_ms);
        s.spent = s.spent.saturating_add(actual);
        let mut out = Vec::new();
        for t in &self.budget.thresholds {
            if s.spent >= self.budget.level(*t) && !s.fired.contains(t) {
                s.fired.push(*t);
                out.push(*t);
            }
        }
        out
    }

    /// Takes in the spend the database knows for `window` (from every process); local spend
    /// not yet written is never lost because the larger of the two wins. Returns thresholds
    /// now reached that this process had not fired (another process may have; the store's
    /// once-per-period record decides).
    pub fn refresh(&self, now_ms: i64, window: Window, db_spent: Amount) -> Vec<u32> {
        let mut s = self.lock();
        self.roll(&mut s, now_ms);
        if s.window != window {
            return Vec::new();
        }
        if db_spent > s.spent {
            s.spent = db_spent;
        }
        let mut out = Vec::new();
        for t in &self.budget.thresholds {
            if s.spent >= self.budget.level(*t) && !s.fired.contains(t) {
                s.fired.push(*t);
                out.push(*t);
            }
        }
        out
    }

    /// A blocking budget just refused a call: its holds keep spend under the amount, so its
    /// 100% threshold, which spend alone may never reach, is due now (lower ones still wait
    /// for spend). Returns it when configured and not yet fired in this window.
    pub fn refused(&self, now_ms: i64) -> Vec<u32> {
        let mut s = self.lock();
        self.roll(&mut s, now_ms);
        if self.budget.thresholds.contains(&100) && !s.fired.contains(&100) {
            s.fired.push(100);
            return vec![100];
        }
        Vec::new()
    }

    /// Marks thresholds as already fired (e.g. loaded from the store at start).
    pub fn mark_fired(&self, window: Window, thresholds: &[u32]) {
        let mut s = self.lock();
        if s.window == window {
            for t in thresholds {
                if !s.fired.contains(t) {
                    s.fired.push(*t);
                }
            }
        }
    }

    /// (spent, reserved) in the current window.
    pub fn snapshot(&self, now_ms: i64) -> (Amount, Amount, Window) {
        let mut s = self.lock();
        self.roll(&mut s, now_ms);
        (s.spent, s.reserved, s.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(action: Action, amount: &str) -> Budget {
        let mut b = Budget {
            id: "b1".into(),
            name: "ml".into(),
            tenant: "acme".into(),
            scope: Scope::Team("ml".into()),
            period: PeriodKind::Monthly,
            time_zone: "UTC".into(),
            amount: amount.parse().unwrap(),
            currency: Currency::USD,
            thresholds: vec![],
            action,
        };
        b.validate().unwrap();
        b
    }

    fn a(s: &str) -> Amount {
        s.parse().unwrap()
    }

    #[test]
    fn scopes_parse_and_match() {
        for s in [
            "tenant",
            "team:ml",
            "app:chat",
            "key:k_1",
            "tag:Project=atlas",
        ] {
            assert_eq!(s.parse::<Scope>().unwrap().to_string(), s);
        }
        for bad in ["", "team:", "group:x", "tag:=x", "tag:novalue"] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
        let tags = vec![("Project".to_owned(), "atlas".to_owned())];
        let at = Attribution {
            tenant: "acme",
            team: "ml",
            app: "chat",
            key: "k1",
            tags: &tags,
        };
        assert!(budget(Action::Alert, "1").applies(&at));
        let other = Attribution {
            tenant: "globex",
            ..at
        };
        assert!(!budget(Action::Alert, "1").applies(&other));
        let mut b = budget(Action::Alert, "1");
        b.scope = "tag:Project=atlas".parse().unwrap();
        assert!(b.applies(&at));
    }

    #[test]
    fn a_refusal_fires_the_thresholds_up_to_100_once() {
        let t = Tracker::new(budget(Action::Block, "10"), 0, Amount::ZERO).unwrap();
        assert_eq!(t.settle(None, 1, a("7.5")), vec![70]);
        // 7.5 spent + 3 estimated > 10: refused, although spend never reaches 100%.
        assert!(t.reserve(2, a("3")).is_err());
        assert_eq!(t.refused(2), vec![100]);
        assert!(t.refused(3).is_empty());
        // 90% still fires when spend reaches it; 100% only once.
        assert_eq!(t.settle(None, 4, a("2.5")), vec![90]);
    }

    #[test]
    fn thresholds_fire_once_per_window() {
        let t = Tracker::new(budget(Action::Alert, "100"), 0, Amount::ZERO).unwrap();
        assert!(t.settle(None, 1, a("69.99")).is_empty());
        assert_eq!(t.settle(None, 2, a("0.01")), vec![70]);
        assert_eq!(t.settle(None, 3, a("40")), vec![90, 100]);
        assert!(t.settle(None, 4, a("40")).is_empty());
        // The next month starts from zero.
        let next = "2026-02-01T00:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        assert_eq!(t.settle(None, next, a("75")), vec![70]);
    }

    #[test]
    fn blocking_budgets_hold_estimates() {
        let t = Tracker::new(budget(Action::Block, "10"), 0, Amount::ZERO).unwrap();
        let h1 = t.reserve(1, a("6")).unwrap();
        // 6 held: another 6 would pass the amount.
        assert!(t.reserve(1, a("6")).is_err());
        let h2 = t.reserve(1, a("4")).unwrap();
        t.settle(Some(h1), 2, a("5"));
        t.settle(Some(h2), 2, a("4"));
        let (spent, reserved, _) = t.snapshot(3);
        assert_eq!((spent, reserved), (a("9"), Amount::ZERO));
        t.settle(None, 3, a("1"));
        let e = t.reserve(4, Amount::ZERO).unwrap_err();
        assert_eq!(e.spent, a("10"));
    }

    #[test]
    fn refresh_takes_the_larger_spend() {
        let t = Tracker::new(budget(Action::Alert, "100"), 0, a("10")).unwrap();
        let w = t.window(0);
        assert_eq!(t.refresh(1, w, a("75")), vec![70]);
        assert!(t.refresh(1, w, a("5")).is_empty());
        assert_eq!(t.snapshot(1).0, a("75"));
        t.mark_fired(w, &[90]);
        assert_eq!(t.refresh(1, w, a("95")), Vec::<u32>::new());
    }

    #[test]
    fn validation() {
        let mut b = budget(Action::Alert, "1");
        b.thresholds = vec![100, 50, 50];
        b.validate().unwrap();
        assert_eq!(b.thresholds, vec![50, 100]);
        b.thresholds = vec![0];
        assert!(b.validate().is_err());
        b.thresholds = vec![];
        b.amount = Amount::ZERO;
        assert!(b.validate().is_err());
    }
}
