//! route: the public model name a client sends → the provider that serves it and the
//! provider's own name for the model.

use crate::providers::Provider;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct Route {
    pub model: String,
    pub upstream_model: String,
    pub provider: Arc<Provider>,
    /// Where the provider serves from (`providers[].region`), "" when not configured.
    pub region: String,
    /// The registry entry the route serves, behind the deploy gate.
    pub registry: Option<Arc<crate::registry::Gate>>,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    by_model: HashMap<String, Arc<Route>>,
    /// Model names in configuration order, for `/v1/models`.
    order: Vec<String>,
}

impl RouteTable {
    pub fn insert(&mut self, route: Route) {
        self.order.push(route.model.clone());
        self.by_model.insert(route.model.clone(), Arc::new(route));
    }

    pub fn get(&self, model: &str) -> Option<&Arc<Route>> {
        self.by_model.get(model)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.order.iter().filter_map(|m| self.by_model.get(m))
    }
}
