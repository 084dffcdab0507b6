//! Authorization by Cedar policies: the schema custos ships, policy sets loaded from files and
//! validated against it, and the decision for one request. Deny by default; a matching
//! `forbid` beats any `permit`.
//!
//! Entities are sliced per request (the principal, its tenant, team, roles and groups, the
//! resource and its provider), so a decision costs the same with ten entities or ten
//! thousand: the caller keeps the facts in maps and hands over only what one request touches.

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicyId, PolicySet, PrincipalConstraint, Request, ResourceConstraint, RestrictedExpression,
    Schema, ValidationMode,
};
use custos_core::principal::{AuthMethod, Principal};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

/// The schema, in Cedar's schema syntax.
pub const SCHEMA: &str = include_str!("../policies/custos.cedarschema");

/// The built-in roles, in force when no policy files are configured.
pub const BUILTIN_POLICIES: &str = include_str!("../policies/roles.cedar");

/// Name of the built-in policy source in messages.
pub const BUILTIN_NAME: &str = "built-in roles.cedar";

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: policy id {id:?} is used twice (also in {first})")]
    DuplicateId {
        source_name: String,
        id: String,
        first: String,
    },
    #[error("policy {id} ({origin}) does not fit the custos schema: {message}")]
    Invalid {
        id: String,
        origin: String,
        message: String,
    },
    #[error("the built-in schema does not parse: {0}")]
    Schema(String),
    #[error("{0}")]
    Request(String),
}

/// Renders a Cedar error with its causes and help, on one line.
fn describe(e: &(dyn miette::Diagnostic + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    if let Some(help) = e.help() {
        out.push_str(&format!(" (help: {help})"));
    }
    out
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The custos schema.
pub fn schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(s, _warnings)| s)
        .map_err(|e| PolicyError::Schema(describe(&e)))
}

/// Reads policy files as (path, text) sources for [`Policies::load`].
pub fn read_sources(paths: &[std::path::PathBuf]) -> Result<Vec<(String, String)>, PolicyError> {
    paths
        .iter()
        .map(|p| {
            let name = p.display().to_string();
            let bytes = std::fs::read(p).map_err(|e| PolicyError::Parse {
                source_name: name.clone(),
                message: format!("cannot read: {e}"),
            })?;
            let text = String::from_utf8(bytes).map_err(|e| PolicyError::Parse {
                source_name: name.clone(),
                message: format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
            })?;
            Ok((name, text))
        })
        .collect()
}

/// The policies configured (`[authz] policies`), or the built-in roles when none are.
pub fn configured(paths: &[std::path::PathBuf], schema: &Schema) -> Result<Policies, PolicyError> {
    if paths.is_empty() {
        Policies::builtin(schema)
    } else {
        Policies::load(&read_sources(paths)?, schema)
    }
}

/// A validated policy set and where each policy came from.
#[derive(Clone, Debug)]
pub struct Policies {
    set: PolicySet,
    /// policy id → "file:line".
    /// policy id → ("file:line", file).
    origin: HashMap<String, (String, String)>,
}

impl Policies {
    /// Parses every source (name, text), gives each policy its `@id("…")` (or
    /// `name:line` without one), and validates the set strictly against the schema.
    pub fn load(sources: &[(String, String)], schema: &Schema) -> Result<Policies, PolicyError> {
        let mut set = PolicySet::new();
        let mut origin: HashMap<String, (String, String)> = HashMap::new();
        for (name, text) in sources {
            let parsed = PolicySet::from_str(text).map_err(|e| PolicyError::Parse {
                source_name: name.clone(),
                message: parse_message(&e, text),
            })?;
            // Cedar names policies policy0, policy1, … in source order.
            let mut policies: Vec<_> = parsed.policies().collect();
            policies.sort_by_key(|p| {
                p.id()
                    .to_string()
                    .trim_start_matches("policy")
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
            });
            for (n, p) in policies.into_iter().enumerate() {
                let (id, at) = match p.annotation("id") {
                    Some(id) => {
                        let line = text
                            .find(&format!("\"{id}\""))
                            .map(|o| line_of(text, o))
                            .unwrap_or(0);
                        (id.to_owned(), format!("{name}:{line}"))
                    }
                    None => (
                        format!("{name}#{}", n + 1),
                        format!("{name}, policy {}", n + 1),
                    ),
                };
                if let Some((first, _)) = origin.get(&id) {
                    return Err(PolicyError::DuplicateId {
                        source_name: at,
                        id,
                        first: first.clone(),
                    });
                }
                set.add(p.new_id(PolicyId::new(&id)))
                    .map_err(|e| PolicyError::Parse {
                        source_name: at.clone(),
                        message: describe(&e),
                    })?;
                origin.insert(id, (at, name.clone()));
            }
            if parsed.templates().next().is_some() {
                return Err(PolicyError::Parse {
                    source_name: name.clone(),
                    message: "policy templates (`?principal`, `?resource`) are not supported; write the policy for the entity".into(),
                });
            }
        }
        let result =
            cedar_policy::Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        if let Some(e) = result.validation_errors().next() {
            let id = e.policy_id().to_string();
            let mut message = describe(e);
            // The span points into the file the policy came from.
            let file = origin.get(&id).map(|(_, f)| f.as_str()).unwrap_or("");
            if let (Some((_, text)), Some(label)) = (
                sources.iter().find(|(n, _)| n == file),
                miette::Diagnostic::labels(e).and_then(|mut l| l.next()),
            ) {
                message = format!("line {}: {message}", line_of(text, label.offset()));
            }
            return Err(PolicyError::Invalid {
                origin: origin
                    .get(&id)
                    .map(|(at, _)| at.clone())
                    .unwrap_or_default(),
                id,
                message,
            });
        }
        Ok(Policies { set, origin })
    }

    /// The built-in roles.
    pub fn builtin(schema: &Schema) -> Result<Policies, PolicyError> {
        Policies::load(
            &[(BUILTIN_NAME.to_owned(), BUILTIN_POLICIES.to_owned())],
            schema,
        )
    }

    pub fn len(&self) -> usize {
        self.origin.len()
    }

    pub fn is_empty(&self) -> bool {
        self.origin.is_empty()
    }

    /// Where a policy was written ("file:line").
    pub fn origin(&self, id: &str) -> Option<&str> {
        self.origin.get(id).map(|(at, _)| at.as_str())
    }

    /// Every policy's id and text (Cedar's rendering), sorted by id: what a configuration
    /// digest compares between loads.
    pub fn texts(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .set
            .policies()
            .map(|p| {
                let id = p
                    .annotation("id")
                    .map(str::to_owned)
                    .unwrap_or_else(|| p.id().to_string());
                (id, p.to_string())
            })
            .collect();
        out.sort();
        out
    }

    /// Every policy id, sorted.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.origin.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }
}

fn parse_message(e: &cedar_policy::ParseErrors, text: &str) -> String {
    let mut parts = Vec::new();
    for err in e.iter() {
        let line = miette::Diagnostic::labels(err)
            .and_then(|mut l| l.next())
            .map(|l| format!("line {}: ", line_of(text, l.offset())))
            .unwrap_or_default();
        parts.push(format!("{line}{}", describe(err)));
    }
    parts.join("; ")
}

/// What custos knows about a tenant beyond its name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantFacts {
    pub regions: Vec<String>,
}

/// The resource of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// A model route, the provider serving it and that provider's region ("" if unknown).
    Model {
        name: String,
        provider: String,
        region: String,
    },
    /// A tenant, for control-plane actions.
    Tenant(String),
    /// A tool offered to a model or called by it (`tool.call`).
    Tool(ToolFacts),
}

/// A tool in one call: what the calling app declared and what the call carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolFacts {
    pub name: String,
    /// The calling app declared this tool.
    pub declared: bool,
    /// The calling app declared its tools at all.
    pub app_declares: bool,
    pub model: String,
    /// `offered` or `called`.
    pub phase: &'static str,
    /// The call's arguments as JSON text; empty when offered.
    pub arguments: String,
}

/// Facts about the request beyond who, what and on which resource.
#[derive(Clone, Debug, Default)]
pub struct RequestFacts {
    /// Unix seconds.
    pub time: i64,
    pub classification: String,
    pub step_up: bool,
    /// Roles held through live grants.
    pub grants: Vec<String>,
}

/// The outcome, with the policies that decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Ids of the deciding policies: the permits that allowed, or the forbids that denied.
    /// Empty on a default deny (no policy permits).
    pub policies: Vec<String>,
    /// Policies that failed to evaluate (they are skipped, as Cedar specifies).
    pub errors: Vec<String>,
}

impl Decision {
    /// One sentence for a 403 or an `explain`.
    pub fn reason(&self) -> String {
        match (self.allowed, self.policies.is_empty()) {
            (true, _) => format!("permitted by {}", self.policies.join(", ")),
            (false, true) => "no policy permits this request (deny by default)".into(),
            (false, false) => format!("forbidden by {}", self.policies.join(", ")),
        }
    }
}

fn uid(kind: &str, id: &str) -> EntityUid {
    // Type names are fixed, valid identifiers; ids are arbitrary strings Cedar accepts as is.
    let kind = EntityTypeName::from_str(kind).unwrap_or_else(|_| unreachable!("type {kind}"));
    EntityUid::from_type_name_and_id(kind, EntityId::new(id))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn strings<'a>(list: impl IntoIterator<Item = &'a String>) -> RestrictedExpression {
    RestrictedExpression::new_set(list.into_iter().map(|s| string(s)))
}

/// The action uid of a name from the schema (`chat`, `keys.create`, …).
pub fn action(name: &str) -> EntityUid {
    uid("Custos::Action", name)
}

/// The uid custos gives a principal in policies.
pub fn principal_uid(p: &Principal) -> EntityUid {
    match p.method {
        AuthMethod::Jwt => uid("Custos::User", &p.id),
        AuthMethod::ApiKey | AuthMethod::Mtls => uid("Custos::ServiceAccount", &p.id),
    }
}

/// The roles a principal holds by its credential: a token's roles, and `service` for API keys
/// and certificates that name none.
pub fn roles(p: &Principal) -> Vec<String> {
    if p.roles.is_empty() && p.method != AuthMethod::Jwt {
        vec!["service".to_owned()]
    } else {
        p.roles.clone()
    }
}

/// The compiled engine: schema, policies, authorizer.
#[derive(Debug)]
pub struct Engine {
    schema: Schema,
    policies: Policies,
    authorizer: Authorizer,
    /// Per action: the action and the groups it is in (`chat` in `model.use`), the start of
    /// every request's entities.
    actions: HashMap<EntityUid, Entities>,
    /// Every policy with its scope, in a fixed order, for the per-request prefilter.
    scoped: Vec<Scoped>,
    /// Policies by the entity their principal scope names (`==`, `in`), by the type it names
    /// (`is`), and those with no principal scope: a request looks up only its principal, its
    /// ancestors and its type.
    by_principal: HashMap<EntityUid, Vec<usize>>,
    by_principal_type: HashMap<EntityTypeName, Vec<usize>>,
    any_principal: Vec<usize>,
    /// Per action: the action groups it is in.
    action_ancestors: HashMap<EntityUid, Vec<EntityUid>>,
    /// Prepared requests by everything they depend on.
    prepared: RwLock<HashMap<String, Arc<Prepared>>>,
}

/// A policy and its scope (principal, action, resource constraints).
#[derive(Debug)]
struct Scoped {
    policy: cedar_policy::Policy,
    principal: PrincipalConstraint,
    action: ActionConstraint,
    resource: ResourceConstraint,
}

/// Whether a principal or resource scope can hold for `uid` with these ancestors.
fn scope_holds(
    kind: Option<&EntityTypeName>,
    eq: Option<&EntityUid>,
    within: Option<&EntityUid>,
    uid: &EntityUid,
    ancestors: &[EntityUid],
) -> bool {
    kind.is_none_or(|t| uid.type_name() == t)
        && eq.is_none_or(|e| e == uid)
        && within.is_none_or(|w| w == uid || ancestors.contains(w))
}

fn principal_holds(c: &PrincipalConstraint, uid: &EntityUid, anc: &[EntityUid]) -> bool {
    match c {
        PrincipalConstraint::Any => true,
        PrincipalConstraint::Eq(e) => scope_holds(None, Some(e), None, uid, anc),
        PrincipalConstraint::In(w) => scope_holds(None, None, Some(w), uid, anc),
        PrincipalConstraint::Is(t) => scope_holds(Some(t), None, None, uid, anc),
        PrincipalConstraint::IsIn(t, w) => scope_holds(Some(t), None, Some(w), uid, anc),
    }
}

fn resource_holds(c: &ResourceConstraint, uid: &EntityUid, anc: &[EntityUid]) -> bool {
    match c {
        ResourceConstraint::Any => true,
        ResourceConstraint::Eq(e) => scope_holds(None, Some(e), None, uid, anc),
        ResourceConstraint::In(w) => scope_holds(None, None, Some(w), uid, anc),
        ResourceConstraint::Is(t) => scope_holds(Some(t), None, None, uid, anc),
        ResourceConstraint::IsIn(t, w) => scope_holds(Some(t), None, Some(w), uid, anc),
    }
}

fn action_holds(c: &ActionConstraint, uid: &EntityUid, anc: &[EntityUid]) -> bool {
    match c {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(e) => e == uid,
        ActionConstraint::In(list) => list.iter().any(|w| w == uid || anc.contains(w)),
    }
}

impl Engine {
    pub fn new(schema: Schema, policies: Policies) -> Result<Engine, PolicyError> {
        let all = schema
            .action_entities()
            .map_err(|e| PolicyError::Schema(describe(&e)))?;
        let mut actions = HashMap::new();
        let mut action_ancestors = HashMap::new();
        for a in all.iter() {
            let uid = a.uid();
            let mut own = vec![a.clone()];
            let groups: Vec<EntityUid> = all
                .ancestors(&uid)
                .map(|anc| anc.cloned().collect())
                .unwrap_or_default();
            own.extend(groups.iter().filter_map(|g| all.get(g).cloned()));
            action_ancestors.insert(uid.clone(), groups);
            let own = Entities::from_entities(own, None)
                .map_err(|e| PolicyError::Schema(describe(&e)))?;
            actions.insert(uid, own);
        }
        let mut scoped: Vec<Scoped> = policies
            .set
            .policies()
            .map(|p| Scoped {
                principal: p.principal_constraint(),
                action: p.action_constraint(),
                resource: p.resource_constraint(),
                policy: p.clone(),
            })
            .collect();
        scoped.sort_by_key(|s| s.policy.id().to_string());
        let mut by_principal: HashMap<EntityUid, Vec<usize>> = HashMap::new();
        let mut by_principal_type: HashMap<EntityTypeName, Vec<usize>> = HashMap::new();
        let mut any_principal = Vec::new();
        for (i, s) in scoped.iter().enumerate() {
            match &s.principal {
                PrincipalConstraint::Any => any_principal.push(i),
                PrincipalConstraint::Eq(u)
                | PrincipalConstraint::In(u)
                | PrincipalConstraint::IsIn(_, u) => {
                    by_principal.entry(u.clone()).or_default().push(i)
                }
                PrincipalConstraint::Is(t) => {
                    by_principal_type.entry(t.clone()).or_default().push(i)
                }
            }
        }
        Ok(Engine {
            schema,
            policies,
            authorizer: Authorizer::new(),
            actions,
            scoped,
            by_principal,
            by_principal_type,
            any_principal,
            action_ancestors,
            prepared: RwLock::new(HashMap::new()),
        })
    }

    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The request's entities and the policies whose scope can hold for it. A pure function
    /// of who, what, on which resource, the tenant's pins and the live grants: cached.
    fn prepare(
        &self,
        principal: &Principal,
        action_name: &str,
        resource: &Resource,
        tenant: &TenantFacts,
        facts: &RequestFacts,
    ) -> Result<Prepared, PolicyError> {
        let action_uid = action(action_name);
        let Some(actions) = self.actions.get(&action_uid) else {
            return Err(PolicyError::Request(format!(
                "unknown action {action_name:?} (see `custos policy schema`)"
            )));
        };
        let sl = slice(actions, principal, resource, tenant, facts)?;
        let (principal_id, resource_id) = (&sl.principal, &sl.resource);
        // Only policies whose scope can hold are evaluated: a policy out of scope can neither
        // apply nor fail, so the decision is the one the whole set would give.
        let no_groups = Vec::new();
        let anc_a = self.action_ancestors.get(&action_uid).unwrap_or(&no_groups);
        let mut candidates: Vec<usize> = self.any_principal.clone();
        for u in std::iter::once(principal_id).chain(&sl.principal_ancestors) {
            if let Some(list) = self.by_principal.get(u) {
                candidates.extend(list);
            }
        }
        if let Some(list) = self.by_principal_type.get(principal_id.type_name()) {
            candidates.extend(list);
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut set = PolicySet::new();
        for i in candidates {
            let s = &self.scoped[i];
            if action_holds(&s.action, &action_uid, anc_a)
                && principal_holds(&s.principal, principal_id, &sl.principal_ancestors)
                && resource_holds(&s.resource, resource_id, &sl.resource_ancestors)
            {
                set.add(s.policy.clone())
                    .map_err(|e| PolicyError::Request(describe(&e)))?;
            }
        }
        Ok(Prepared {
            entities: sl.entities,
            principal: sl.principal,
            action: action_uid,
            resource: sl.resource,
            set,
            context: std::sync::Mutex::new(None),
        })
    }

    /// Decides whether `principal` may perform `action` on `resource`.
    pub fn authorize(
        &self,
        principal: &Principal,
        action_name: &str,
        resource: &Resource,
        tenant: &TenantFacts,
        facts: &RequestFacts,
    ) -> Result<Decision, PolicyError> {
        let key = prepared_key(principal, action_name, resource, tenant, facts);
        let cached = self
            .prepared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let prepared = match cached {
            Some(p) => p,
            None => {
                let p = Arc::new(self.prepare(principal, action_name, resource, tenant, facts)?);
                let mut map = self.prepared.write().unwrap_or_else(|e| e.into_inner());
                if map.len() >= PREPARED_CAPACITY {
                    map.clear();
                }
                map.insert(key, p.clone());
                p
            }
        };
        let Prepared {
            entities,
            principal: principal_id,
            action: action_uid,
            resource: resource_id,
            set,
            context: last_context,
        } = &*prepared;
        #[cfg(test)]
        let all = self.policies.set.clone();
        #[cfg(test)]
        let set = if UNFILTERED.with(|u| u.get()) {
            &all
        } else {
            set
        };
        // A tool's context carries its call's arguments: never shared. Otherwise requests in
        // the same second with the same classification and step-up have the same context and
        // so the same decision: evaluation is a pure function of the request, the policy set
        // and the entities, all of which this prepared request fixes.
        let shareable = !matches!(resource, Resource::Tool(_));
        #[cfg(test)]
        let shareable = shareable && !UNFILTERED.with(|u| u.get());
        if shareable {
            let last = last_context.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(l) = &*last {
                if l.time == facts.time
                    && l.classification == facts.classification
                    && l.step_up == facts.step_up
                {
                    return Ok(l.decision.clone());
                }
            }
        }
        let context = context(principal, resource, facts)?;
        let request = Request::new(
            principal_id.clone(),
            action_uid.clone(),
            resource_id.clone(),
            context,
            None,
        )
        .map_err(|e| PolicyError::Request(describe(&e)))?;
        let response = self.authorizer.is_authorized(&request, set, entities);
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|p| p.to_string())
            .collect();
        policies.sort_unstable();
        let decision = Decision {
            allowed: response.decision() == cedar_policy::Decision::Allow,
            policies,
            errors: response
                .diagnostics()
                .errors()
                .map(|e| e.to_string())
                .collect(),
        };
        if shareable {
            *last_context.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastDecision {
                time: facts.time,
                classification: facts.classification.clone(),
                step_up: facts.step_up,
                decision: decision.clone(),
            });
        }
        Ok(decision)
    }
}

#[cfg(test)]
thread_local! {
    /// Tests compare the prefiltered decision with the whole set's.
    static UNFILTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Prepared requests kept before the cache starts over.
const PREPARED_CAPACITY: usize = 16_384;

/// What a request needs besides its context, ready to evaluate.
#[derive(Debug)]
struct Prepared {
    entities: Entities,
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    set: PolicySet,
    /// The last decision and the facts its context was built from: requests in the same
    /// second with the same classification and step-up share it.
    context: std::sync::Mutex<Option<LastDecision>>,
}

#[derive(Debug)]
struct LastDecision {
    time: i64,
    classification: String,
    step_up: bool,
    decision: Decision,
}

/// Every input `prepare` reads, as one string (fields separated by NUL, which no name holds
/// in a way that could make two different inputs collide: lists carry their lengths).
fn prepared_key(
    p: &Principal,
    action: &str,
    r: &Resource,
    t: &TenantFacts,
    f: &RequestFacts,
) -> String {
    let mut k = String::with_capacity(160);
    let mut put = |s: &str| {
        k.push_str(s);
        k.push('\0');
    };
    put(p.method.as_str());
    put(&p.id);
    put(&p.tenant);
    put(&p.team);
    put(&p.issuer);
    put(&p.app);
    put(&p.env);
    put(action);
    put(if p.mfa { "mfa" } else { "-" });
    let no_scopes = Vec::new();
    put(if p.scopes.is_some() { "scoped" } else { "-" });
    for list in [
        &p.roles,
        &p.groups,
        &f.grants,
        &t.regions,
        p.scopes.as_ref().unwrap_or(&no_scopes),
    ] {
        put(&list.len().to_string());
        for x in list {
            put(x);
        }
    }
    match r {
        Resource::Model {
            name,
            provider,
            region,
        } => {
            put("model");
            put(name);
            put(provider);
            put(region);
        }
        Resource::Tenant(name) => {
            put("tenant");
            put(name);
        }
        Resource::Tool(t) => {
            // Arguments, model and phase are context only, built for each request.
            put("tool");
            put(&t.name);
            put(if t.declared { "declared" } else { "-" });
            put(if t.app_declares { "app-declares" } else { "-" });
        }
    }
    k
}

/// The entities one request touches, and the ancestors of its principal and resource
/// (transitively closed by construction).
struct Slice {
    entities: Entities,
    principal: EntityUid,
    principal_ancestors: Vec<EntityUid>,
    resource: EntityUid,
    resource_ancestors: Vec<EntityUid>,
}

/// The entities one request touches.
fn slice(
    actions: &Entities,
    p: &Principal,
    resource: &Resource,
    tenant: &TenantFacts,
    facts: &RequestFacts,
) -> Result<Slice, PolicyError> {
    let bad = |e: &dyn std::fmt::Display| PolicyError::Request(e.to_string());
    let tenant_uid = uid("Custos::Tenant", &p.tenant);
    let mut entities = Vec::with_capacity(8);
    entities.push(
        Entity::new(
            tenant_uid.clone(),
            HashMap::from([("regions".to_owned(), strings(&tenant.regions))]),
            HashSet::new(),
        )
        .map_err(|e| bad(&e))?,
    );
    let mut parents = HashSet::from([tenant_uid.clone()]);
    if !p.team.is_empty() {
        let team_uid = uid("Custos::Team", &format!("{}/{}", p.tenant, p.team));
        entities.push(
            Entity::new(
                team_uid.clone(),
                HashMap::from([("name".to_owned(), string(&p.team))]),
                HashSet::from([tenant_uid.clone()]),
            )
            .map_err(|e| bad(&e))?,
        );
        parents.insert(team_uid);
    }
    for role in roles(p).iter().chain(&facts.grants) {
        let r = uid("Custos::Role", role);
        if parents.insert(r.clone()) {
            entities.push(Entity::new_no_attrs(r, HashSet::new()));
        }
    }
    let principal_uid = principal_uid(p);
    let tenant_ref = RestrictedExpression::new_entity_uid(tenant_uid.clone());
    let attrs = match p.method {
        AuthMethod::Jwt => {
            for g in &p.groups {
                let g = uid("Custos::Group", g);
                if parents.insert(g.clone()) {
                    entities.push(Entity::new_no_attrs(g, HashSet::from([tenant_uid.clone()])));
                }
            }
            HashMap::from([
                ("tenant".to_owned(), tenant_ref),
                ("method".to_owned(), string(p.method.as_str())),
                ("issuer".to_owned(), string(&p.issuer)),
            ])
        }
        AuthMethod::ApiKey | AuthMethod::Mtls => HashMap::from([
            ("tenant".to_owned(), tenant_ref),
            ("method".to_owned(), string(p.method.as_str())),
            ("app".to_owned(), string(&p.app)),
            ("env".to_owned(), string(&p.env)),
        ]),
    };
    let principal_ancestors: Vec<EntityUid> = parents.iter().cloned().collect();
    entities.push(Entity::new(principal_uid.clone(), attrs, parents).map_err(|e| bad(&e))?);
    let mut resource_ancestors = Vec::new();
    let resource_uid = match resource {
        Resource::Model {
            name,
            provider,
            region,
        } => {
            let provider_uid = uid("Custos::Provider", provider);
            entities.push(
                Entity::new(
                    provider_uid.clone(),
                    HashMap::from([("region".to_owned(), string(region))]),
                    HashSet::new(),
                )
                .map_err(|e| bad(&e))?,
            );
            let model_uid = uid("Custos::Model", name);
            entities.push(
                Entity::new(
                    model_uid.clone(),
                    HashMap::from([
                        ("provider".to_owned(), string(provider)),
                        ("region".to_owned(), string(region)),
                    ]),
                    HashSet::from([provider_uid.clone()]),
                )
                .map_err(|e| bad(&e))?,
            );
            model_uid
        }
        Resource::Tenant(name) if *name == p.tenant => tenant_uid,
        Resource::Tenant(name) => {
            // Another tenant: present it with no facts, so policies can compare but learn nothing.
            let other = uid("Custos::Tenant", name);
            entities.push(
                Entity::new(
                    other.clone(),
                    HashMap::from([("regions".to_owned(), strings(&[]))]),
                    HashSet::new(),
                )
                .map_err(|e| bad(&e))?,
            );
            other
        }
        Resource::Tool(t) => {
            let tool = uid("Custos::Tool", &t.name);
            entities.push(
                Entity::new(
                    tool.clone(),
                    HashMap::from([
                        (
                            "declared".to_owned(),
                            RestrictedExpression::new_bool(t.declared),
                        ),
                        (
                            "app_declares".to_owned(),
                            RestrictedExpression::new_bool(t.app_declares),
                        ),
                    ]),
                    HashSet::new(),
                )
                .map_err(|e| bad(&e))?,
            );
            tool
        }
    };
    let entities = actions
        .clone()
        .add_entities(entities, None)
        .map_err(|e| bad(&e))?;
    if let Resource::Model { provider, .. } = resource {
        resource_ancestors.push(uid("Custos::Provider", provider));
    }
    Ok(Slice {
        entities,
        principal: principal_uid,
        principal_ancestors,
        resource: resource_uid,
        resource_ancestors,
    })
}

fn context(
    p: &Principal,
    resource: &Resource,
    facts: &RequestFacts,
) -> Result<Context, PolicyError> {
    let region = match resource {
        Resource::Model { region, .. } => region.as_str(),
        Resource::Tenant(_) | Resource::Tool(_) => "",
    };
    let secs = facts.time;
    let days = secs.div_euclid(86_400);
    // 1970-01-01 was a Thursday (ISO weekday 4).
    let weekday = (days + 3).rem_euclid(7) + 1;
    let hour = secs.rem_euclid(86_400) / 3_600;
    let classification = if facts.classification.is_empty() {
        "internal"
    } else {
        &facts.classification
    };
    let empty = Vec::new();
    let tool = match resource {
        Resource::Tool(t) => vec![
            ("model".to_owned(), string(&t.model)),
            ("app".to_owned(), string(&p.app)),
            ("phase".to_owned(), string(t.phase)),
            ("arguments".to_owned(), string(&t.arguments)),
        ],
        _ => Vec::new(),
    };
    Context::from_pairs(tool.into_iter().chain([
        ("time".to_owned(), RestrictedExpression::new_long(secs)),
        ("hour".to_owned(), RestrictedExpression::new_long(hour)),
        (
            "weekday".to_owned(),
            RestrictedExpression::new_long(weekday),
        ),
        ("environment".to_owned(), string(&p.env)),
        ("region".to_owned(), string(region)),
        ("classification".to_owned(), string(classification)),
        ("mfa".to_owned(), RestrictedExpression::new_bool(p.mfa)),
        (
            "step_up".to_owned(),
            RestrictedExpression::new_bool(facts.step_up),
        ),
        (
            "scopes".to_owned(),
            strings(p.scopes.as_ref().unwrap_or(&empty)),
        ),
        ("grants".to_owned(), strings(&facts.grants)),
    ]))
    .map_err(|e| PolicyError::Request(describe(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let schema = schema().unwrap();
        let policies = Policies::builtin(&schema).unwrap();
        Engine::new(schema, policies).unwrap()
    }

    fn user(tenant: &str, roles: &[&str], mfa: bool) -> Principal {
        Principal {
            id: "alice@example.com".into(),
            method: AuthMethod::Jwt,
            issuer: "https://idp".into(),
            tenant: tenant.into(),
            team: "search".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            mfa,
            scopes: Some(vec!["custos:chat".into()]),
            ..Principal::default()
        }
    }

    fn model(region: &str) -> Resource {
        Resource::Model {
            name: "gpt-4o".into(),
            provider: "openai".into(),
            region: region.into(),
        }
    }

    fn decide(e: &Engine, p: &Principal, action: &str, r: &Resource, t: &TenantFacts) -> Decision {
        e.authorize(p, action, r, t, &RequestFacts::default())
            .unwrap()
    }

    #[test]
    fn builtin_roles_allow_what_they_say_and_nothing_else() {
        let e = engine();
        let none = TenantFacts::default();
        let d = decide(
            &e,
            &user("acme", &["developer"], false),
            "chat",
            &model(""),
            &none,
        );
        assert!(d.allowed);
        assert_eq!(d.policies, ["developer.models"]);
        let d = decide(&e, &user("acme", &[], false), "chat", &model(""), &none);
        assert!(!d.allowed);
        assert!(d.policies.is_empty());
        assert_eq!(
            d.reason(),
            "no policy permits this request (deny by default)"
        );
        let key = Principal {
            id: "key_1".into(),
            tenant: "acme".into(),
            ..Principal::default()
        };
        assert!(decide(&e, &key, "embeddings", &model(""), &none).allowed);
        assert!(
            !decide(
                &e,
                &key,
                "keys.create",
                &Resource::Tenant("acme".into()),
                &none
            )
            .allowed
        );
        let fin = user("acme", &["finops-viewer"], false);
        assert!(
            decide(
                &e,
                &fin,
                "usage.read",
                &Resource::Tenant("acme".into()),
                &none
            )
            .allowed
        );
        assert!(!decide(&e, &fin, "chat", &model(""), &none).allowed);
    }

    #[test]
    fn admins_act_only_in_their_own_tenant_and_with_a_second_factor() {
        let e = engine();
        let none = TenantFacts::default();
        let own = Resource::Tenant("acme".into());
        let other = Resource::Tenant("globex".into());
        let admin = user("acme", &["tenant-admin"], true);
        assert!(decide(&e, &admin, "keys.create", &own, &none).allowed);
        let d = decide(&e, &admin, "keys.create", &other, &none);
        assert!(!d.allowed);
        assert!(d.policies.is_empty(), "{d:?}");
        let no_mfa = user("acme", &["tenant-admin"], false);
        let d = decide(&e, &no_mfa, "keys.create", &own, &none);
        assert_eq!(d.policies, ["admin.requires-mfa"]);
        assert!(decide(&e, &no_mfa, "keys.read", &own, &none).allowed);
        let auditor = user("acme", &["auditor"], false);
        assert!(decide(&e, &auditor, "audit.read", &own, &none).allowed);
        assert!(!decide(&e, &auditor, "audit.read", &other, &none).allowed);
        assert!(!decide(&e, &auditor, "keys.revoke", &own, &none).allowed);
    }

    #[test]
    fn grants_add_roles_for_their_lifetime() {
        let e = engine();
        let p = user("acme", &[], true);
        let own = Resource::Tenant("acme".into());
        let mut facts = RequestFacts::default();
        assert!(
            !e.authorize(&p, "keys.revoke", &own, &TenantFacts::default(), &facts)
                .unwrap()
                .allowed
        );
        facts.grants = vec!["security-admin".into()];
        let d = e
            .authorize(&p, "keys.revoke", &own, &TenantFacts::default(), &facts)
            .unwrap();
        assert_eq!(d.policies, ["security-admin.controls"]);
    }

    #[test]
    fn residency_pins_a_tenant_to_its_regions() {
        let e = engine();
        let eu = TenantFacts {
            regions: vec!["eu-west".into()],
        };
        let dev = user("acme", &["developer"], false);
        let d = decide(&e, &dev, "chat", &model("us-east"), &eu);
        assert_eq!(d.policies, ["residency.pinned-regions"]);
        assert!(
            !decide(&e, &dev, "chat", &model(""), &eu).allowed,
            "unknown region"
        );
        assert!(decide(&e, &dev, "chat", &model("eu-west"), &eu).allowed);
    }

    /// Generated policies of every scope shape, for the prefilter property.
    fn mixed_engine() -> Engine {
        let schema = schema().unwrap();
        let text = r#"
@id("eq-user") permit(principal == Custos::User::"u1", action == Custos::Action::"chat", resource);
@id("in-team") permit(principal in Custos::Team::"t0/a", action in Custos::Action::"model.use", resource == Custos::Model::"m1");
@id("is-sa") forbid(principal is Custos::ServiceAccount, action == Custos::Action::"embeddings", resource) when { context.hour < 3 };
@id("is-in") permit(principal is Custos::User in Custos::Group::"g1", action in [Custos::Action::"read", Custos::Action::"chat"], resource);
@id("res-in") forbid(principal, action, resource in Custos::Provider::"p1") unless { context.classification == "internal" };
@id("res-is") permit(principal in Custos::Role::"r1", action, resource is Custos::Tenant) when { principal in resource };
@id("res-eq") permit(principal, action == Custos::Action::"keys.read", resource == Custos::Tenant::"t1");
"#;
        let sources = vec![
            (BUILTIN_NAME.to_owned(), BUILTIN_POLICIES.to_owned()),
            ("mixed.cedar".to_owned(), text.to_owned()),
        ];
        Engine::new(schema.clone(), Policies::load(&sources, &schema).unwrap()).unwrap()
    }

    proptest::proptest! {
        #[test]
        fn the_scope_prefilter_never_changes_a_decision(
            user in proptest::bool::ANY,
            id in 0..3usize,
            tenant in 0..2usize,
            team in proptest::sample::select(vec!["", "a", "b"]),
            roles in proptest::sample::subsequence(vec!["developer", "service", "tenant-admin", "auditor", "security-admin", "operator", "r1", "finops-viewer"], 0..4),
            groups in proptest::sample::subsequence(vec!["g1", "g2"], 0..2),
            grants in proptest::sample::subsequence(vec!["tenant-admin", "r1"], 0..2),
            mfa in proptest::bool::ANY,
            action_i in 0..40usize,
            on_model in proptest::bool::ANY,
            model in 0..2usize,
            provider in 0..2usize,
            region in proptest::sample::select(vec!["", "eu-west", "us-east"]),
            on_tenant in 0..3usize,
            pinned in proptest::sample::subsequence(vec!["eu-west".to_owned(), "us-east".to_owned()], 0..2),
            hour in 0..24i64,
            classification in proptest::sample::select(vec!["", "internal", "restricted"]),
        ) {
            let e = mixed_engine();
            let actions: Vec<String> = e.actions.keys().map(|a| a.id().unescaped().to_owned()).collect();
            let mut actions = actions;
            actions.sort();
            let action = &actions[action_i % actions.len()];
            let p = Principal {
                id: format!("u{id}"),
                method: if user { AuthMethod::Jwt } else { AuthMethod::ApiKey },
                tenant: format!("t{tenant}"),
                team: team.to_owned(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                mfa,
                ..Principal::default()
            };
            let r = if on_model {
                Resource::Model { name: format!("m{model}"), provider: format!("p{provider}"), region: region.to_owned() }
            } else {
                Resource::Tenant(format!("t{on_tenant}"))
            };
            let t = TenantFacts { regions: pinned };
            let f = RequestFacts {
                time: 1_800_000_000 + hour * 3600,
                classification: classification.to_owned(),
                step_up: mfa,
                grants: grants.iter().map(|g| g.to_string()).collect(),
            };
            let filtered = e.authorize(&p, action, &r, &t, &f);
            UNFILTERED.with(|u| u.set(true));
            let whole = e.authorize(&p, action, &r, &t, &f);
            UNFILTERED.with(|u| u.set(false));
            match (filtered, whole) {
                (Ok(a), Ok(b)) => {
                    proptest::prop_assert_eq!(a.allowed, b.allowed);
                    proptest::prop_assert_eq!(a.policies, b.policies);
                }
                (Err(a), Err(b)) => proptest::prop_assert_eq!(a.to_string(), b.to_string()),
                (a, b) => proptest::prop_assert!(false, "{a:?} vs {b:?}"),
            }
        }
    }

    #[test]
    fn the_context_carries_region_time_and_classification() {
        let schema = schema().unwrap();
        let text = r#"
@id("all") permit(principal, action, resource);
@id("no-us") forbid(principal, action, resource) when { context.region == "us-east" };
@id("nights") forbid(principal, action, resource) when { context.hour < 6 && context.weekday <= 5 };
@id("secret") forbid(principal, action, resource) when { context.classification == "restricted" && !context.mfa };
"#;
        let e = Engine::new(
            schema.clone(),
            Policies::load(&[("t.cedar".into(), text.into())], &schema).unwrap(),
        )
        .unwrap();
        let p = user("acme", &[], false);
        let t = TenantFacts::default();
        // 2026-11-26 is a Thursday; 10:00 UTC.
        let day = RequestFacts {
            time: 1_795_651_200 + 10 * 3600,
            ..RequestFacts::default()
        };
        let at = |f: &RequestFacts, r: &Resource| e.authorize(&p, "chat", r, &t, f).unwrap();
        assert!(at(&day, &model("eu-west")).allowed);
        assert_eq!(at(&day, &model("us-east")).policies, ["no-us"]);
        let night = RequestFacts {
            time: 1_795_651_200 + 3 * 3600,
            ..RequestFacts::default()
        };
        assert_eq!(at(&night, &model("eu-west")).policies, ["nights"]);
        let restricted = RequestFacts {
            classification: "restricted".into(),
            ..day.clone()
        };
        assert_eq!(at(&restricted, &model("eu-west")).policies, ["secret"]);
        // Decisions are shared within a second only between requests whose context is the
        // same: the classification (or step-up) changing in that second changes the answer.
        assert!(at(&day, &model("eu-west")).allowed);
        assert_eq!(at(&restricted, &model("eu-west")).policies, ["secret"]);
        let stepped_up = RequestFacts {
            step_up: true,
            ..restricted.clone()
        };
        assert_eq!(at(&stepped_up, &model("eu-west")).policies, ["secret"]);
    }

    #[test]
    fn bad_policies_are_refused_with_where_and_why() {
        let schema = schema().unwrap();
        let load = |text: &str| {
            Policies::load(&[("p.cedar".into(), text.into())], &schema)
                .unwrap_err()
                .to_string()
        };
        let e = load("permit(principal, action, resource)\nwhen { context.nope };");
        assert!(
            e.contains("p.cedar#1") && e.contains("line 2") && e.contains("nope"),
            "{e}"
        );
        let e = load("@id(\"a\")\npermit(principal, action, resource);\n\npermit(principal, action ==, resource);");
        assert!(e.starts_with("p.cedar: line 4"), "{e}");
        let e = load("@id(\"x\") permit(principal, action, resource);\n@id(\"x\") forbid(principal, action, resource);");
        assert!(e.contains("\"x\" is used twice"), "{e}");
        let e = load("@id(\"t\") permit(principal == Custos::User::\"a\", action == Custos::Action::\"fly\", resource);");
        assert!(
            e.contains("policy t (p.cedar:1)") && e.contains("fly"),
            "{e}"
        );
        let e = load("permit(principal == ?principal, action, resource);");
        assert!(e.contains("templates"), "{e}");
    }

    fn tool(name: &str, declared: bool, app_declares: bool, arguments: &str) -> Resource {
        Resource::Tool(ToolFacts {
            name: name.into(),
            declared,
            app_declares,
            model: "gpt-4o".into(),
            phase: "called",
            arguments: arguments.into(),
        })
    }

    #[test]
    fn tools_follow_the_apps_declaration_and_policies_read_their_arguments() {
        let e = engine();
        let none = TenantFacts::default();
        let svc = Principal {
            id: "key_1".into(),
            method: AuthMethod::ApiKey,
            tenant: "acme".into(),
            app: "bot".into(),
            ..Principal::default()
        };
        let d = |r: &Resource| decide(&e, &svc, "tool.call", r, &none);
        assert!(d(&tool("search", true, true, "")).allowed);
        assert!(d(&tool("anything", false, false, "")).allowed);
        let denied = d(&tool("shell", false, true, ""));
        assert!(!denied.allowed && denied.policies.is_empty(), "{denied:?}");

        let schema = schema().unwrap();
        let text = format!(
            "{BUILTIN_POLICIES}\n@id(\"no-deletes\")\nforbid (principal, action == Custos::Action::\"tool.call\", resource == Custos::Tool::\"sql\")\nwhen {{ context.arguments like \"*DROP*\" && context.app == \"bot\" }};"
        );
        let e = Engine::new(
            schema.clone(),
            Policies::load(&[("t.cedar".into(), text)], &schema).unwrap(),
        )
        .unwrap();
        let d = |r: &Resource| decide(&e, &svc, "tool.call", r, &none);
        // The same tool, one second, two argument texts: the context is never reused.
        assert!(d(&tool("sql", true, true, "{\"q\":\"SELECT 1\"}")).allowed);
        assert_eq!(
            d(&tool("sql", true, true, "{\"q\":\"DROP TABLE t\"}")).policies,
            ["no-deletes"]
        );
        assert!(d(&tool("sql", true, true, "{\"q\":\"SELECT 2\"}")).allowed);
    }
}
