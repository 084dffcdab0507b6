//! Authorization by Cedar policies: the schema custos ships, policy sets loaded from files and
//! validated against it, and the decision for one request. Deny by default; a matching
//! `forbid` beats any `permit`.
//!
//! Entities are sliced per request (the principal, its tenant, team, roles and groups, the
//! resource and its provider), so a decision costs the same with ten entities or ten
//! thousand: the caller keeps the facts in maps and hands over only what one request touches.

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode,
};
use custos_core::principal::{AuthMethod, Principal};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

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
    /// The action hierarchy (`chat` in `model.use`, …), added to every request's entities.
    actions: Entities,
}

impl Engine {
    pub fn new(schema: Schema, policies: Policies) -> Result<Engine, PolicyError> {
        let actions = schema
            .action_entities()
            .map_err(|e| PolicyError::Schema(describe(&e)))?;
        Ok(Engine {
            schema,
            policies,
            authorizer: Authorizer::new(),
            actions,
        })
    }

    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
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
        let (entities, principal_id, resource_id) =
            slice(&self.actions, principal, resource, tenant, facts)?;
        let context = context(principal, facts)?;
        let request = Request::new(
            principal_id,
            action(action_name),
            resource_id,
            context,
            None,
        )
        .map_err(|e| PolicyError::Request(describe(&e)))?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies.set, &entities);
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|p| p.to_string())
            .collect();
        policies.sort_unstable();
        Ok(Decision {
            allowed: response.decision() == cedar_policy::Decision::Allow,
            policies,
            errors: response
                .diagnostics()
                .errors()
                .map(|e| e.to_string())
                .collect(),
        })
    }
}

/// The entities one request touches.
fn slice(
    actions: &Entities,
    p: &Principal,
    resource: &Resource,
    tenant: &TenantFacts,
    facts: &RequestFacts,
) -> Result<(Entities, EntityUid, EntityUid), PolicyError> {
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
    entities.push(Entity::new(principal_uid.clone(), attrs, parents).map_err(|e| bad(&e))?);
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
                    HashSet::from([provider_uid]),
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
    };
    let entities = actions
        .clone()
        .add_entities(entities, None)
        .map_err(|e| bad(&e))?;
    Ok((entities, principal_uid, resource_uid))
}

fn context(p: &Principal, facts: &RequestFacts) -> Result<Context, PolicyError> {
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
    Context::from_pairs([
        ("time".to_owned(), RestrictedExpression::new_long(secs)),
        ("hour".to_owned(), RestrictedExpression::new_long(hour)),
        (
            "weekday".to_owned(),
            RestrictedExpression::new_long(weekday),
        ),
        ("environment".to_owned(), string(&p.env)),
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
    ])
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
}
