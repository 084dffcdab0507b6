//! The lineage graph: nodes are `dataset:NAME@TAG`, `model:NAME@VERSION` and
//! `release:ID`; edges point downstream (source → derived, dataset → model trained on it,
//! model or dataset → release that serves it). `impact` is everything downstream of a node.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A node name's kind and reference, checked.
pub fn parse_node(s: &str) -> Result<(&str, &str), String> {
    let (kind, rest) = s.split_once(':').ok_or_else(|| {
        format!("{s:?} is not KIND:REF (dataset:NAME@TAG, model:NAME@VERSION, release:ID)")
    })?;
    match kind {
        "dataset" | "model" => {
            let (n, v) = rest.split_once('@').ok_or_else(|| {
                format!(
                    "{s:?}: a {kind} is named NAME@{}",
                    if kind == "model" { "VERSION" } else { "TAG" }
                )
            })?;
            if n.is_empty() || v.is_empty() {
                return Err(format!("{s:?}: the name and the version are not empty"));
            }
        }
        "release" if !rest.is_empty() => {}
        _ => return Err(format!("{s:?}: the kind is dataset, model or release")),
    }
    Ok((kind, rest))
}

/// One edge and how it is known: `recorded` (lineage add, with the job), `trained` (the model
/// registry's training datasets, by digest) or `serves` (a release's components).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub how: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// A graph to walk.
#[derive(Debug, Default)]
pub struct Graph {
    down: BTreeMap<String, Vec<Edge>>,
    up: BTreeMap<String, Vec<Edge>>,
}

impl Graph {
    pub fn new(edges: impl IntoIterator<Item = Edge>) -> Graph {
        let mut g = Graph::default();
        for e in edges {
            g.up.entry(e.to.clone()).or_default().push(e.clone());
            g.down.entry(e.from.clone()).or_default().push(e);
        }
        g
    }

    /// Every node downstream of `start`, nearest first, with the edge that reached it; each
    /// once, whatever the cycles.
    pub fn impact(&self, start: &str) -> Vec<Edge> {
        self.walk(start, &self.down, |e| &e.to)
    }

    /// Everything `start` came from.
    pub fn sources(&self, start: &str) -> Vec<Edge> {
        self.walk(start, &self.up, |e| &e.from)
    }

    fn walk(
        &self,
        start: &str,
        map: &BTreeMap<String, Vec<Edge>>,
        next: impl Fn(&Edge) -> &String,
    ) -> Vec<Edge> {
        let mut seen = BTreeSet::from([start.to_owned()]);
        let mut queue = VecDeque::from([start.to_owned()]);
        let mut out = Vec::new();
        while let Some(n) = queue.pop_front() {
            for e in map.get(&n).into_iter().flatten() {
                let to = next(e);
                if seen.insert(to.clone()) {
                    queue.push_back(to.clone());
                    out.push(e.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(a: &str, b: &str) -> Edge {
        Edge {
            from: a.into(),
            to: b.into(),
            how: "recorded".into(),
            job: None,
        }
    }

    #[test]
    fn impact_follows_edges_downstream_once() {
        let g = Graph::new([
            e("dataset:raw@1", "dataset:clean@1"),
            e("dataset:clean@1", "model:m@1"),
            e("model:m@1", "release:r1"),
            e("dataset:clean@1", "release:r1"),
            e("release:r1", "dataset:raw@1"),
        ]);
        let i: Vec<String> = g
            .impact("dataset:raw@1")
            .into_iter()
            .map(|x| x.to)
            .collect();
        assert_eq!(i, ["dataset:clean@1", "model:m@1", "release:r1"]);
        let s: Vec<String> = g.sources("model:m@1").into_iter().map(|x| x.from).collect();
        assert!(s.contains(&"dataset:raw@1".to_owned()));
    }

    #[test]
    fn nodes_are_checked() {
        assert!(parse_node("dataset:reviews@golden").is_ok());
        assert!(parse_node("model:llama@1.0").is_ok());
        assert!(parse_node("release:rel_1").is_ok());
        for bad in [
            "reviews",
            "dataset:reviews",
            "table:x@1",
            "model:@1",
            "release:",
        ] {
            assert!(parse_node(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn impact_visits_each_reachable_node_once(edges in proptest::collection::vec((0u8..12, 0u8..12), 0..60)) {
            let g = Graph::new(edges.iter().map(|(a, b)| e(&format!("dataset:n@{a}"), &format!("dataset:n@{b}"))));
            let i = g.impact("dataset:n@0");
            let names: BTreeSet<&String> = i.iter().map(|x| &x.to).collect();
            prop_assert_eq!(names.len(), i.len());
            prop_assert!(!names.contains(&"dataset:n@0".to_owned()));
        }
    }
}
