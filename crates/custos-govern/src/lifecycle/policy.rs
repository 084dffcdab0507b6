//! Retention and tiering as code: data classes own location prefixes; an object older than
//! its class's retention is deleted, older than its tier age moved to the class's tier
//! prefix. Legal holds win over everything, and registered artifacts (dataset locations the
//! registry pins) are never expired. `plan` is pure: objects and facts in, actions out.

use serde::Serialize;

/// A data class as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct Class {
    pub name: String,
    pub prefixes: Vec<String>,
    pub retention_ms: Option<i64>,
    pub tier_after_ms: Option<i64>,
    pub tier_prefix: Option<String>,
}

/// An object in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub path: String,
    pub size: u64,
    pub modified_ms: i64,
}

/// What the plan does with one object, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    Delete {
        path: String,
        class: String,
        why: String,
    },
    Move {
        path: String,
        to: String,
        class: String,
        why: String,
    },
    /// Due for an action but kept: a legal hold, or a registered artifact.
    Keep {
        path: String,
        class: String,
        why: String,
    },
}

impl Action {
    pub fn path(&self) -> &str {
        match self {
            Action::Delete { path, .. } | Action::Move { path, .. } | Action::Keep { path, .. } => {
                path
            }
        }
    }
}

fn days(ms: i64) -> String {
    let d = ms as f64 / 86_400_000.0;
    if d >= 1.0 {
        format!("{d:.0}d")
    } else {
        format!("{:.0}h", ms as f64 / 3_600_000.0)
    }
}

/// The class owning `path`: the one with the longest matching prefix.
pub fn class_of<'c>(classes: &'c [Class], path: &str) -> Option<&'c Class> {
    classes
        .iter()
        .flat_map(|c| c.prefixes.iter().map(move |p| (c, p)))
        .filter(|(_, p)| path.starts_with(p.as_str()))
        .max_by_key(|(_, p)| p.len())
        .map(|(c, _)| c)
}

/// The plan at `now` for `objects`. `held(path)` names the hold covering a path, if any;
/// `protected(path)` names the registered artifact it belongs to, if any.
pub fn plan(
    classes: &[Class],
    objects: &[Object],
    now: i64,
    held: &dyn Fn(&str) -> Option<String>,
    protected: &dyn Fn(&str) -> Option<String>,
) -> Vec<Action> {
    let mut out = Vec::new();
    for o in objects {
        let Some(c) = class_of(classes, &o.path) else {
            continue;
        };
        let age = now.saturating_sub(o.modified_ms);
        let in_tier = c
            .tier_prefix
            .as_deref()
            .is_some_and(|t| o.path.starts_with(t));
        let due = if c.retention_ms.is_some_and(|r| age >= r) {
            Some(Action::Delete {
                path: o.path.clone(),
                class: c.name.clone(),
                why: format!(
                    "{} old; {} keeps {}",
                    days(age),
                    c.name,
                    days(c.retention_ms.unwrap_or(0))
                ),
            })
        } else if let (Some(after), Some(tier), false) = (c.tier_after_ms, &c.tier_prefix, in_tier)
        {
            (age >= after).then(|| {
                let rest = c
                    .prefixes
                    .iter()
                    .filter(|p| o.path.starts_with(p.as_str()))
                    .max_by_key(|p| p.len())
                    .map_or(o.path.as_str(), |p| &o.path[p.len()..]);
                Action::Move {
                    path: o.path.clone(),
                    to: format!("{tier}{rest}"),
                    class: c.name.clone(),
                    why: format!(
                        "{} old; {} moves to {tier} after {}",
                        days(age),
                        c.name,
                        days(after)
                    ),
                }
            })
        } else {
            None
        };
        let Some(action) = due else { continue };
        // Holds first, then the registry's artifacts: neither is ever expired or moved.
        if let Some(h) = held(&o.path) {
            out.push(Action::Keep {
                path: o.path.clone(),
                class: c.name.clone(),
                why: format!("legal hold {h}"),
            });
        } else if let Some(a) = protected(&o.path) {
            out.push(Action::Keep {
                path: o.path.clone(),
                class: c.name.clone(),
                why: format!("registered artifact {a}"),
            });
        } else {
            out.push(action);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 86_400_000;

    fn classes() -> Vec<Class> {
        vec![
            Class {
                name: "bronze".into(),
                prefixes: vec!["raw/".into()],
                retention_ms: Some(30 * DAY),
                tier_after_ms: Some(7 * DAY),
                tier_prefix: Some("archive/raw/".into()),
            },
            Class {
                name: "gold".into(),
                prefixes: vec!["raw/labels/".into()],
                retention_ms: None,
                tier_after_ms: None,
                tier_prefix: None,
            },
            Class {
                name: "archive".into(),
                prefixes: vec!["archive/".into()],
                retention_ms: Some(365 * DAY),
                tier_after_ms: None,
                tier_prefix: None,
            },
        ]
    }

    fn obj(path: &str, age_days: i64) -> Object {
        Object {
            path: path.into(),
            size: 1,
            modified_ms: 1000 * DAY - age_days * DAY,
        }
    }

    #[test]
    fn retention_tiering_holds_and_registered_artifacts() {
        let objects = [
            obj("raw/a.log", 40),
            obj("raw/b.log", 10),
            obj("raw/c.log", 1),
            obj("raw/labels/l.csv", 400),
            obj("archive/raw/old.log", 10),
            obj("raw/held/x.log", 40),
            obj("raw/ds/y.csv", 40),
            obj("elsewhere/z", 999),
        ];
        let held = |p: &str| p.starts_with("raw/held/").then(|| "hold_1".to_owned());
        let protected = |p: &str| {
            p.starts_with("raw/ds/")
                .then(|| "dataset:reviews@raw".to_owned())
        };
        let p = plan(&classes(), &objects, 1000 * DAY, &held, &protected);
        let by = |path: &str| p.iter().find(|a| a.path() == path).cloned();
        assert!(matches!(by("raw/a.log"), Some(Action::Delete { .. })));
        assert!(
            matches!(by("raw/b.log"), Some(Action::Move { ref to, .. }) if to == "archive/raw/b.log")
        );
        assert_eq!(by("raw/c.log"), None);
        assert_eq!(by("raw/labels/l.csv"), None, "gold keeps forever");
        assert_eq!(by("archive/raw/old.log"), None);
        assert!(
            matches!(by("raw/held/x.log"), Some(Action::Keep { ref why, .. }) if why.contains("hold_1"))
        );
        assert!(
            matches!(by("raw/ds/y.csv"), Some(Action::Keep { ref why, .. }) if why.contains("reviews@raw"))
        );
        assert_eq!(by("elsewhere/z"), None);
    }

    proptest! {
        #[test]
        fn nothing_held_or_registered_is_ever_deleted_or_moved(
            paths in proptest::collection::vec(("(raw|archive|raw/labels|x)/[a-z]{1,3}/[a-z]{1,4}", 0i64..800), 0..60)
        ) {
            let objects: Vec<Object> = paths.iter().map(|(p, a)| obj(p, *a)).collect();
            let held = |p: &str| p.contains("/a").then(|| "h".to_owned());
            let protected = |p: &str| p.contains("/b").then(|| "d".to_owned());
            for a in plan(&classes(), &objects, 1000 * DAY, &held, &protected) {
                if let Action::Delete { path, .. } | Action::Move { path, .. } = &a {
                    prop_assert!(held(path).is_none() && protected(path).is_none());
                    prop_assert!(class_of(&classes(), path).is_some());
                }
            }
        }
    }
}
