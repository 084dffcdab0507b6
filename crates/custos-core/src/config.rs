//! `custos.toml`: the one configuration file. Every key has a default, so an absent file
//! means "embedded SQLite, built-in mock provider". Secrets never live here: providers name
//! the environment variable or file that holds their key.

use crate::duration::{format_duration, parse_duration};
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration error that names the file, the line and column, and the key at fault.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Identity sources besides API keys.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// OIDC providers whose JWT access tokens custos accepts as bearer tokens.
    pub jwt: Vec<JwtIssuerConfig>,
    /// Client certificates (SPIFFE ID or subject CN) → service principals.
    pub mtls: Vec<MtlsPrincipal>,
}

/// Which client certificates act as which service principal.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsPrincipal {
    /// A SPIFFE ID (URI SAN), exact, or ending in `/*` for every ID under a path.
    #[serde(default)]
    pub spiffe_id: Option<String>,
    /// Or the subject common name, exact.
    #[serde(default)]
    pub subject: Option<String>,
    pub tenant: String,
    #[serde(default)]
    pub team: Option<String>,
    /// Roles in policies; default `service`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Deployment environment (`prod`, …), for policies' `context.environment`.
    #[serde(default)]
    pub env: String,
}

/// Authorization by Cedar policies.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthzConfig {
    /// Policy files (relative to this file); none: custos' built-in roles.
    pub policies: Vec<PathBuf>,
    pub grants: GrantsConfig,
}

/// How long time-bound grants may last.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantsConfig {
    /// The longest just-in-time grant.
    pub max_duration: HumanDuration,
    /// The longest break-glass grant; never more than 4h.
    pub break_glass_max: HumanDuration,
    /// Shorter maxima for particular roles (`tenant-admin = "1h"`).
    pub max_by_role: std::collections::BTreeMap<String, HumanDuration>,
}

/// Break-glass access never lasts longer than this, whatever the configuration says.
pub const BREAK_GLASS_CAP: Duration = Duration::from_secs(4 * 3600);

impl Default for GrantsConfig {
    fn default() -> Self {
        Self {
            max_duration: HumanDuration(Duration::from_secs(8 * 3600)),
            break_glass_max: HumanDuration(BREAK_GLASS_CAP),
            max_by_role: Default::default(),
        }
    }
}

impl GrantsConfig {
    /// The longest grant of `role` of this kind.
    pub fn max_for(&self, role: &str, break_glass: bool) -> Duration {
        let base = if break_glass {
            self.break_glass_max.0.min(BREAK_GLASS_CAP)
        } else {
            self.max_duration.0
        };
        self.max_by_role.get(role).map_or(base, |d| d.0.min(base))
    }
}

/// One trusted token issuer: where its keys are, what it must say, how claims map.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerConfig {
    /// The exact `iss` value tokens carry.
    pub issuer: String,
    /// Accepted `aud` values (this API); a token must name at least one.
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// A JWKS document on disk…
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// …or at a URL, fetched at start, every `jwks_refresh_interval`, and on an unknown `kid`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_interval: HumanDuration,
    /// The shortest time between two fetches; a token with an unknown `kid` fetches the key
    /// set again only this long after the last fetch, so forged kids cannot flood the IdP.
    #[serde(default = "default_jwks_min_refetch")]
    pub jwks_min_refetch: HumanDuration,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway: HumanDuration,
    /// Signature algorithms accepted; empty means every asymmetric one custos knows.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// The tenant of tokens that carry no tenant claim (single-tenant deployments).
    #[serde(default)]
    pub default_tenant: Option<String>,
    /// The tenants this issuer may speak for: a token's tenant claim is honoured only when
    /// it names one of them (`["*"]`: every tenant, for an IdP trusted by all of them).
    /// Unset, it is `[default_tenant]`; an issuer with neither is refused at load.
    #[serde(default, alias = "tenant", deserialize_with = "one_or_many")]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub claims: ClaimNames,
    #[serde(default)]
    pub scopes: OperationScopes,
}

impl JwtIssuerConfig {
    /// An issuer with every optional setting at its default (keys to be set by the caller),
    /// trusted for every tenant.
    pub fn new(issuer: &str, audience: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: vec![audience.to_owned()],
            jwks_file: None,
            jwks_url: None,
            jwks_refresh_interval: default_jwks_refresh(),
            jwks_min_refetch: default_jwks_min_refetch(),
            leeway: default_leeway(),
            algorithms: Vec::new(),
            default_tenant: None,
            // Tests, benches and fuzzing build issuers this way; a file must name its tenants.
            tenants: vec!["*".into()],
            claims: ClaimNames::default(),
            scopes: OperationScopes::default(),
        }
    }

    /// The tenants this issuer's tokens may name: `tenants`, else `[default_tenant]`.
    /// `None` means every tenant (`tenants = ["*"]`).
    pub fn allowed_tenants(&self) -> Option<Vec<String>> {
        if self.tenants.iter().any(|t| t == "*") {
            return None;
        }
        if self.tenants.is_empty() {
            return Some(self.default_tenant.iter().cloned().collect());
        }
        Some(self.tenants.clone())
    }
}

/// Which claim holds what. A name is looked up as written first (URL-style claim names
/// contain dots), then as a dotted path into nested objects (`realm_access.roles`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    pub subject: String,
    pub tenant: String,
    pub team: String,
    pub roles: String,
    pub groups: String,
    /// A space-separated string (`scope`) or an array (`scp`); both are read.
    pub scopes: String,
    /// Authentication methods (`amr`); MFA when it lists a second factor.
    pub mfa: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            tenant: "tenant".into(),
            team: "team".into(),
            roles: "roles".into(),
            groups: "groups".into(),
            scopes: "scope".into(),
            mfa: "amr".into(),
        }
    }
}

/// The scope a token needs for each operation (`aud` names the API, `scope` the operation).
/// An empty string lets every token of the issuer perform that operation.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperationScopes {
    pub chat: String,
    pub completions: String,
    pub embeddings: String,
    /// The Responses API (`/v1/responses`).
    pub responses: String,
    pub models: String,
    pub usage: String,
    pub pii: String,
    /// The admin API (`/admin/v1/…`); policies then decide each action.
    pub admin: String,
}

impl Default for OperationScopes {
    fn default() -> Self {
        Self {
            chat: "custos:chat".into(),
            completions: "custos:completions".into(),
            embeddings: "custos:embeddings".into(),
            responses: "custos:responses".into(),
            models: "custos:models".into(),
            usage: "custos:usage".into(),
            pii: "custos:pii".into(),
            admin: "custos:admin".into(),
        }
    }
}

fn default_jwks_refresh() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

fn default_jwks_min_refetch() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_leeway() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// A duration written as a human string in the file (`"60s"`, `"500ms"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// The whole file. `Default` is empty on purpose: serde fills absent sections from it, and
/// the mock default applies only when the file routes no providers and no models at all.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub idempotency: IdempotencyConfig,
    pub audit: AuditConfig,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelRoute>,
    /// PII detection: threshold, entity filter, custom recognizers, deny and allow lists.
    pub pii: custos_pii::PiiConfig,
    /// Metering, budgets and their alerts.
    pub finops: FinopsConfig,
    /// Carbon estimates of jobs: overrides of the shipped device, grid and instance tables.
    pub carbon: CarbonConfig,
    /// Who may call: OIDC/JWT issuers besides custos' own API keys.
    pub auth: AuthConfig,
    /// What callers may do: Cedar policy files.
    pub authz: AuthzConfig,
    /// The model registry: which keys may sign which models (`[[registry.trust]]`).
    pub registry: RegistryConfig,
    /// Releases: what each risk tier requires (`[release.tiers.high]`, …).
    pub release: ReleaseConfig,
    /// Data lifecycle: the erasure SLA.
    pub lifecycle: LifecycleConfig,
    /// Several gateway replicas: the shared Redis their counters live in.
    pub cluster: ClusterConfig,
    /// Tools (functions) in model calls: what a refusal does, argument constraints.
    pub tools: ToolsConfig,
    /// Prompt-injection screening of what models read.
    pub injection: InjectionConfig,
    /// Where custos may send traffic: provider, JWKS, webhook and witness hosts.
    pub egress: EgressConfig,
    /// CloudEvents to webhooks as the ledger records what they select.
    pub events: EventsConfig,
    /// OpenTelemetry traces of calls, to an OTLP receiver.
    pub telemetry: TelemetryConfig,
    /// The web console at `/console`.
    pub console: ConsoleConfig,
}

/// `[console]`: the web console `custos serve` serves at `/console`. Sessions are signed
/// cookies; the signing key comes from `CUSTOS_CONSOLE_SECRET` (never from this file), else a
/// random key per process, so sessions then end when the process stops.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console (default true); off, `/console` answers 404.
    pub enabled: bool,
    /// How long a sign-in lasts (default 8h; at most 7 days). A sign-in with a token ends
    /// when the token expires, if that is sooner.
    pub session_ttl: HumanDuration,
    /// Sign-in with an OIDC provider (authorization code with PKCE), besides API keys.
    pub oidc: Option<ConsoleOidcConfig>,
    /// Mark the console's cookies `Secure` (sent over HTTPS only). Default: when the gateway
    /// serves TLS itself or `[console.oidc] public_url` is `https://`; set it to `true` behind
    /// a proxy that terminates TLS.
    pub secure_cookies: Option<bool>,
    /// The risk register (`custos risk init` writes one) the Access page shows to those who
    /// may read the whole installation: its heat map, open risks and lint. Relative paths are
    /// read from the directory `custos serve` runs in.
    pub risks: Option<PathBuf>,
}

impl ConsoleConfig {
    /// Whether the console's cookies are `Secure`, given whether the gateway serves TLS.
    pub fn cookies_secure(&self, tls: bool) -> bool {
        self.secure_cookies.unwrap_or_else(|| {
            tls || self.oidc.as_ref().is_some_and(|o| {
                o.public_url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("https://"))
            })
        })
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_ttl: HumanDuration(Duration::from_secs(8 * 3600)),
            oidc: None,
            secure_cookies: None,
            risks: None,
        }
    }
}

/// `[console.oidc]`: people sign in to the console at an OIDC provider. The provider's
/// access token must be one the API accepts (an `[[auth.jwt]]` issuer's, with its audience
/// and the admin scope), so a person is the same principal in the console as in the API.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleOidcConfig {
    /// The issuer: exactly one of `[[auth.jwt]]`'s `issuer` values. Its endpoints come from
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// This console's client id at the provider (the ID token's audience).
    pub client_id: String,
    /// The environment variable holding the client secret of a confidential client; PKCE is
    /// used either way. The secret itself is never in this file.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Scopes asked for besides `openid` (default: the issuer's admin scope).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The console's address as browsers reach it (`https://custos.example.com`); the
    /// redirect URI registered at the provider is `<public_url>/console/auth/callback`.
    /// Default: the scheme and `Host` of the sign-in request.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The button's label (default: "Sign in with <issuer host>").
    #[serde(default)]
    pub label: Option<String>,
    /// The `acr_values` asked for when a change needs a second factor the sign-in lacks
    /// (step-up); the provider is also asked to authenticate again (`prompt=login`,
    /// `max_age=0`). Default: the OpenID PAPE multi-factor policy.
    #[serde(default)]
    pub step_up_acr: Option<String>,
}

/// `[telemetry]`: OpenTelemetry traces over OTLP/HTTP. Off unless `otlp_endpoint` is set;
/// then each sampled call is a server span with a child span per control and one for the
/// upstream call. Headers the receiver needs (an API key) come from the standard
/// `OTEL_EXPORTER_OTLP_HEADERS` variable, never from this file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP receiver (an OpenTelemetry Collector, Jaeger, Tempo):
    /// `http://127.0.0.1:4318`; spans are POSTed to `<endpoint>/v1/traces` as protobuf.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute of every span.
    pub service_name: String,
    /// The share of calls (0 to 1) that start a trace here; a caller's `traceparent` decides
    /// for its own calls (sampled or not), as W3C parent-based sampling does.
    pub sample_ratio: f64,
    /// Most finished calls waiting for export; past it traces are dropped (and counted in
    /// `custos_otlp_spans_dropped_total`) rather than holding calls up.
    pub queue: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "custos".into(),
            sample_ratio: 1.0,
            queue: 4096,
        }
    }
}

/// `[events]`: every receiver in `[[events.webhooks]]` (and `[[finops.webhooks]]`, the
/// older place for alert receivers) gets the ledger events its `types` select as
/// CloudEvents 1.0, HMAC-signed, in ledger order, resuming where it stopped.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// The CloudEvents `source` of every event sent: a URI reference naming this deployment
    /// (receivers tell deployments apart by it; `id` is unique within it).
    pub source: String,
    /// How long a gateway that stopped without a word keeps its hold on a receiver before
    /// another replica (or its own restart) takes the deliveries over.
    pub failover: HumanDuration,
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            source: "/custos".into(),
            failover: HumanDuration(Duration::from_secs(30)),
            webhooks: Vec::new(),
        }
    }
}

/// `[egress]`: the hosts outbound traffic may go to. Empty: anywhere. When set, every
/// provider `base_url`, JWKS URL, webhook and witness URL in the configuration must name one
/// of them, or the configuration is refused; markdown images and links to them in prompts
/// are not taken for exfiltration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Host names, exact (`api.openai.com`) or with their subdomains (`*.internal.example`).
    pub allow: Vec<String>,
}

impl EgressConfig {
    /// Whether `url` may be reached: its host (after any userinfo, before any port) is
    /// allowed. Always true when no list is set.
    pub fn permits(&self, url: &str) -> Result<(), String> {
        if self.allow.is_empty() {
            return Ok(());
        }
        let Some(host) = url_host(url) else {
            return Err(format!("{url:?} names no host"));
        };
        if host_matches(&host, &self.allow) {
            Ok(())
        } else {
            Err(format!(
                "the host {host} is not in [egress] allow ({})",
                self.allow.join(", ")
            ))
        }
    }
}

/// Whether `host` (lower case) is one of `allowed`: an exact name, or `*.parent` for any
/// subdomain of `parent` (not `parent` itself).
pub fn host_matches(host: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        match a.strip_prefix("*.") {
            Some(parent) => host
                .strip_suffix(parent)
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            None => host == a,
        }
    })
}

/// The host of an http(s) URL, lower case: after the scheme and any userinfo, before a port,
/// path, query or fragment (a backslash ends it too, as browsers read one).
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.trim().split_once("://")?.1;
    let authority = rest.split(['/', '?', '#', '\\']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// What the gateway does with a text that screens as a prompt injection.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InjectionAction {
    /// Nothing: not even screened.
    Allow,
    /// Record it (the call's ledger event, a metric) and forward the call.
    #[default]
    Flag,
    /// 403 `prompt-injection`, naming the category, never the text.
    Block,
}

/// `[injection]`: prompt-injection screening of user content (`direct`) and of tool results
/// and documents (`indirect`), with rules by tenant, app or model (the first match wins).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InjectionConfig {
    pub direct: InjectionAction,
    pub indirect: InjectionAction,
    /// The model's answers: images and links carrying data to hosts not allowed. `block`
    /// replaces their URL with `#custos-removed`. Default `allow` (not screened).
    pub output: InjectionAction,
    /// Signals scoring at least this (0–1) are acted on.
    pub threshold: f32,
    /// Hosts markdown images and links may point at with data (`*.example.com` for
    /// subdomains); `[egress] allow` counts too.
    pub allow_hosts: Vec<String>,
    pub rules: Vec<InjectionRule>,
}

impl Default for InjectionConfig {
    fn default() -> Self {
        InjectionConfig {
            direct: InjectionAction::Flag,
            indirect: InjectionAction::Flag,
            // Screening answers means parsing every streamed event: opt in.
            output: InjectionAction::Allow,
            threshold: 0.7,
            allow_hosts: Vec::new(),
            rules: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InjectionRule {
    pub tenant: Option<String>,
    pub app: Option<String>,
    pub model: Option<String>,
    pub direct: Option<InjectionAction>,
    pub indirect: Option<InjectionAction>,
    pub output: Option<InjectionAction>,
    pub threshold: Option<f32>,
}

/// The injection policy in force for one call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InjectionPolicy {
    pub direct: InjectionAction,
    pub indirect: InjectionAction,
    pub output: InjectionAction,
    pub threshold: f32,
}

impl InjectionConfig {
    pub fn resolve(&self, tenant: &str, app: &str, model: &str) -> InjectionPolicy {
        let hit = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        let rule = self
            .rules
            .iter()
            .find(|r| hit(&r.tenant, tenant) && hit(&r.app, app) && hit(&r.model, model));
        InjectionPolicy {
            direct: rule.and_then(|r| r.direct).unwrap_or(self.direct),
            indirect: rule.and_then(|r| r.indirect).unwrap_or(self.indirect),
            output: rule.and_then(|r| r.output).unwrap_or(self.output),
            threshold: rule.and_then(|r| r.threshold).unwrap_or(self.threshold),
        }
    }

    /// True when no call is screened.
    pub fn is_off(&self) -> bool {
        let off = |a: InjectionAction| a == InjectionAction::Allow;
        off(self.direct)
            && off(self.indirect)
            && off(self.output)
            && self.rules.iter().all(|r| {
                r.direct.is_none_or(off) && r.indirect.is_none_or(off) && r.output.is_none_or(off)
            })
    }
}

/// What the gateway does with a request offering a tool the `tool.call` policies refuse.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ToolOffered {
    /// 403 `tool-not-allowed`, naming the tools.
    #[default]
    Refuse,
    /// Remove the tool from the request and forward the rest.
    Strip,
}

/// What the gateway does with a model response calling a refused tool.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ToolCalled {
    /// Replace the call with an assistant message saying it was refused.
    #[default]
    Rewrite,
    /// Answer 502 `tool-call-refused` (a stream ends with an in-band error).
    Block,
}

/// `[tools]`: tool use in model calls. Whether a tool may be used is the Cedar action
/// `tool.call`; this says what a refusal does and constrains the arguments of calls.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolsConfig {
    pub offered: ToolOffered,
    pub called: ToolCalled,
    /// Constraints on the arguments of the model's calls (`[[tools.constraints]]`).
    pub constraints: Vec<ToolConstraint>,
}

/// One argument of one tool (or all its arguments): where it is and what it may hold.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConstraint {
    /// The tool's name as the model calls it.
    pub tool: String,
    /// The argument: a top-level name (`url`) or a JSON pointer (`/request/url`); empty for
    /// the whole arguments object (with `schema` only).
    #[serde(default)]
    pub argument: String,
    /// A JSON Schema the argument (or the whole arguments object) must satisfy, written as
    /// a TOML table or read from `schema_file` (relative to this file) when the
    /// configuration loads.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// The call must carry the argument.
    #[serde(default)]
    pub required: bool,
    /// Hosts a URL argument may name: `docs.example.com`, or `*.example.com` for its
    /// subdomains. Empty: any host.
    #[serde(default)]
    pub domains: Vec<String>,
    /// A regular expression the whole argument must match (each element, for a list).
    #[serde(default)]
    pub pattern: Option<String>,
    /// The most bytes the argument's text may have.
    #[serde(default)]
    pub max_len: Option<usize>,
}

/// Overrides of the shipped carbon tables (`crates/custos-finops/data/carbon.toml`): an
/// entry here replaces or adds to the shipped one of the same name.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CarbonConfig {
    /// Facility overhead (power usage effectiveness), at least 1.
    pub pue: Option<f64>,
    /// Utilization of a job that did not measure it, 0–1.
    pub default_utilization: Option<f64>,
    /// Board power in watts by device type (`h100 = 700`).
    pub device_watts: std::collections::BTreeMap<String, f64>,
    /// Grid intensity in gCO2e/kWh by region (`"us-east-1" = 380`).
    pub grid_g_per_kwh: std::collections::BTreeMap<String, f64>,
    /// The GPUs an instance type holds (`"p4d.24xlarge" = { gpu = "a100", count = 8 }`).
    pub instance_gpus: std::collections::BTreeMap<String, InstanceGpus>,
}

/// The GPUs of one instance type.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstanceGpus {
    pub gpu: String,
    pub count: u32,
}

/// What replicas share. Without `redis_url` (or `CUSTOS_REDIS_URL`) each gateway keeps its
/// counters in memory, exact for one process.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://HOST:PORT/DB`; a password only through `CUSTOS_REDIS_URL`.
    pub redis_url: Option<String>,
    /// What a control does when Redis does not answer: `local` (per-replica state, logged
    /// and counted), `fail_open` (admit), or `fail_closed` (refuse with 503). One mode for
    /// every control, or a table per control: `{ quota = "local", budgets = "fail_closed",
    /// idempotency = "fail_open" }` (controls left out are `local`).
    pub on_redis_error: RedisErrorModes,
    /// How long a call waits for Redis before `on_redis_error` applies.
    pub timeout: HumanDuration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            on_redis_error: RedisErrorModes::default(),
            timeout: HumanDuration(Duration::from_millis(250)),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRedisError {
    #[default]
    Local,
    FailOpen,
    FailClosed,
}

impl OnRedisError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnRedisError::Local => "local",
            OnRedisError::FailOpen => "fail_open",
            OnRedisError::FailClosed => "fail_closed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "local" => Some(OnRedisError::Local),
            "fail_open" => Some(OnRedisError::FailOpen),
            "fail_closed" => Some(OnRedisError::FailClosed),
            _ => None,
        }
    }
}

/// The shared controls, each with its own `on_redis_error`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedisErrorModes {
    pub quota: OnRedisError,
    pub budgets: OnRedisError,
    pub idempotency: OnRedisError,
}

impl RedisErrorModes {
    /// The same mode for every control.
    pub fn all(mode: OnRedisError) -> Self {
        Self {
            quota: mode,
            budgets: mode,
            idempotency: mode,
        }
    }

    /// Whether any control refuses calls while Redis is away.
    pub fn any_fail_closed(&self) -> bool {
        [self.quota, self.budgets, self.idempotency].contains(&OnRedisError::FailClosed)
    }
}

impl<'de> Deserialize<'de> for RedisErrorModes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Modes;
        const EXPECTED: &str =
            "\"local\", \"fail_open\" or \"fail_closed\", or a table { quota = ..., budgets = ..., idempotency = ... }";
        fn mode<E: serde::de::Error>(s: &str) -> Result<OnRedisError, E> {
            OnRedisError::parse(s).ok_or_else(|| {
                E::custom(format!(
                    "unknown mode {s:?}: use \"local\", \"fail_open\" or \"fail_closed\""
                ))
            })
        }
        impl<'de> serde::de::Visitor<'de> for Modes {
            type Value = RedisErrorModes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RedisErrorModes, E> {
                mode(s).map(RedisErrorModes::all)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RedisErrorModes, A::Error> {
                let mut out = RedisErrorModes::default();
                while let Some(control) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    let m = mode(&value)?;
                    match control.as_str() {
                        "quota" => out.quota = m,
                        "budgets" => out.budgets = m,
                        "idempotency" => out.idempotency = m,
                        other => {
                            return Err(serde::de::Error::custom(format!(
                                "unknown control {other:?}: use quota, budgets or idempotency"
                            )))
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(Modes)
    }
}

impl ClusterConfig {
    /// The Redis to use: `CUSTOS_REDIS_URL` (`env`), else `redis_url`.
    pub fn redis(&self, env: Option<&str>) -> Option<String> {
        env.filter(|u| !u.trim().is_empty())
            .map(str::to_owned)
            .or_else(|| self.redis_url.clone())
    }
}

/// Data lifecycle settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// How long an erasure request may stay open before it is overdue (default 72h).
    pub erasure_sla: Option<HumanDuration>,
    /// The object store the data classes live in: a local folder (`data`, `file:///srv/data`)
    /// or `s3://BUCKET[/PREFIX]` (credentials and endpoint from the `AWS_*` environment).
    pub store: Option<String>,
    /// Data classes: which prefixes each owns, how long it keeps data, when it moves it.
    pub class: Vec<DataClass>,
    /// How long custos keeps its own records.
    pub custos: OwnRetention,
}

/// Retention of custos' own data, applied by `custos lifecycle apply` like the classes'.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OwnRetention {
    /// Usage records older than this are deleted (daily rollups, which name no request and
    /// no end user, stay for reports).
    pub usage_records: Option<HumanDuration>,
    /// End-user ids are cleared from usage records older than this.
    pub end_user_ids: Option<HumanDuration>,
    /// Ledger events older than this are due for pruning through `custos audit prune`
    /// (signed, after a verified export); the plan says which and how.
    pub ledger: Option<HumanDuration>,
}

/// A data class (bronze raw logs, silver, gold labels, feature tables, archives…).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataClass {
    pub name: String,
    /// Object prefixes in the store that belong to the class (the longest match wins).
    pub prefixes: Vec<String>,
    /// Objects older than this are deleted; absent: kept forever.
    #[serde(default)]
    pub retention: Option<HumanDuration>,
    /// Objects older than this move to `tier_prefix`.
    #[serde(default)]
    pub tier_after: Option<HumanDuration>,
    #[serde(default)]
    pub tier_prefix: Option<String>,
    /// How the class is encrypted at rest (recorded in plans, e.g. "sse-kms").
    #[serde(default)]
    pub encryption: Option<String>,
    /// Whether the class holds personal data.
    #[serde(default)]
    pub pii: bool,
}

/// Release change management.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReleaseConfig {
    /// Per tier (`low`, `medium`, `high`, `emergency`): the approver roles and evidence kinds
    /// it requires; a tier not named keeps custos' defaults.
    pub tiers: std::collections::BTreeMap<String, TierRequirements>,
    /// Change freezes: no release but an emergency one is promoted inside a window.
    pub freeze: Vec<FreezeWindow>,
    /// Change advisory board meetings (the CAB calendar), shown by `custos release calendar`.
    pub cab: Vec<CabMeeting>,
    /// Service level objectives per app: when one's error budget is spent over its window,
    /// only an emergency release is promoted.
    pub slo: Vec<SloConfig>,
    /// How a promotion is checked against the release it replaced.
    pub post_check: PostCheckConfig,
    /// How long an emergency release has to get its ADR and audit bundle (default 24h).
    pub emergency_followup: Option<HumanDuration>,
    /// How often a gateway measures the SLOs: their budgets and burn rates on /metrics, and
    /// burn-rate alerts (`slo.burn`, `slo.recovered`) in the ledger (default 30s).
    pub slo_interval: Option<HumanDuration>,
}

/// One CAB meeting.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CabMeeting {
    /// RFC 3339 time.
    pub at: String,
    pub name: String,
}

/// A service level objective over the gateway's own call outcomes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    pub name: String,
    /// `TEAM/APP` (its calls, by key or alias); absent: every call of the tenant.
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The percentage of good calls, e.g. 99.5.
    pub objective: f64,
    /// The rolling window the budget is measured over (default 1h).
    #[serde(default)]
    pub window: Option<HumanDuration>,
    /// Present: a latency SLO (a call slower than this is bad); absent: availability (a
    /// provider or gateway error, 5xx, is bad).
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Fewer calls than this in the window never spend the budget (default 20).
    #[serde(default)]
    pub min_calls: Option<u64>,
}

fn default_tenant() -> String {
    "default".into()
}

/// Post-check thresholds: a new release breaches when, over the window after promotion,
/// any of these is exceeded relative to the previous release's calls before it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostCheckConfig {
    /// How long to watch after promotion (default 5m).
    pub window: Option<HumanDuration>,
    /// Calls needed before a verdict (default 20).
    pub min_calls: Option<u64>,
    /// Error rate allowed above the previous release's (default 0.02).
    pub error_rate_margin: Option<f64>,
    /// p99 latency allowed, as a multiple of the previous release's (default 1.5).
    pub p99_ratio: Option<f64>,
    /// Cost per call allowed, as a multiple of the previous release's (default 1.25).
    pub cost_ratio: Option<f64>,
    /// Guardrail refusal rate allowed above the previous release's (default 0.05).
    pub guard_rate_margin: Option<f64>,
}

/// A freeze window (the CAB calendar as code).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeWindow {
    /// RFC 3339 start, inclusive.
    pub from: String,
    /// RFC 3339 end, exclusive.
    pub until: String,
    /// Why (shown when a promotion is refused).
    pub reason: String,
}

impl FreezeWindow {
    /// The window in Unix milliseconds.
    pub fn bounds(&self) -> Option<(i64, i64)> {
        let from = crate::time::parse_rfc3339(&self.from)?;
        let until = crate::time::parse_rfc3339(&self.until)?;
        (from < until).then_some((from, until))
    }
}

/// What one risk tier requires before promotion.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRequirements {
    /// Roles that must each approve, by someone other than the author.
    pub approvals: Vec<String>,
    /// Evidence kinds that must be attached (adr, tests, eval, slo, risk-assessment, …).
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// The model registry's trust policy: what a route naming a registry entry needs to be served.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Public keys and the model names each may sign; a signature by any other key does not
    /// count. With no rules, no weights are trusted (a remote model needs only approval).
    pub trust: Vec<TrustRule>,
}

/// One trusted signer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRule {
    /// A PEM public key (P-256 or P-384), relative to this file.
    pub public_key: PathBuf,
    /// Model names it may sign; `*` matches any run of characters.
    pub names: Vec<String>,
}

/// What happens to a usage report that lacks a mandatory tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UntaggedPolicy {
    /// Refuse it with an error naming the missing tags.
    #[default]
    Refuse,
    /// Keep it, marked untagged, so tag compliance shows the gap.
    Accept,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinopsConfig {
    /// How often budget spend is re-read from the store (it is shared by every gateway
    /// process on one database). Added or removed prices, budgets and overrides are seen
    /// sooner, within `server.key_refresh_interval`.
    pub refresh_interval: HumanDuration,
    /// Tags every job usage report must carry (e.g. Project, Env, Team, CostCenter).
    pub mandatory_tags: Vec<String>,
    pub untagged: UntaggedPolicy,
    /// Completion tokens a budget reserves for a call that sets no `max_tokens`.
    pub default_max_output_tokens: u32,
    /// IANA time zone of reports and anomaly days.
    pub time_zone: String,
    /// Where budget and anomaly alerts are POSTed, signed with HMAC-SHA256.
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for FinopsConfig {
    fn default() -> Self {
        Self {
            refresh_interval: HumanDuration(Duration::from_secs(5)),
            mandatory_tags: Vec::new(),
            untagged: UntaggedPolicy::Refuse,
            default_max_output_tokens: 1024,
            time_zone: "UTC".into(),
            webhooks: Vec::new(),
        }
    }
}

/// An event receiver. Its signing secret comes from the environment or a file, never inline.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Ledger activities this receiver gets: names (`dpia.required`) or prefixes
    /// (`release.`, `grant.*`). Empty: budgets, anomalies, grants and break-glass,
    /// releases, erasures, DPIA triggers and SLO burn-rate alerts. Not for
    /// `audit.anchor_webhooks`.
    #[serde(default)]
    pub types: Vec<String>,
    /// Send personal identifiers in clear instead of sealed as the ledger keeps them (for
    /// a receiver trusted with them, such as an on-call pager that must name who broke
    /// glass). Not for `audit.anchor_webhooks`.
    #[serde(default)]
    pub reveal: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the gateway listens on.
    pub listen: SocketAddr,
    /// Largest request body accepted; larger bodies get 413.
    pub max_body_bytes: u64,
    /// How long to wait for the upstream's response headers (and between stream chunks).
    pub upstream_timeout: HumanDuration,
    /// How long to wait for a TCP connection to the upstream.
    pub connect_timeout: HumanDuration,
    /// How often the key cache polls the database for revocations and new keys.
    pub key_refresh_interval: HumanDuration,
    /// A client must send a request's headers within this (slow-client protection).
    pub header_read_timeout: HumanDuration,
    /// On shutdown, how long in-flight requests (and streams) may take to finish.
    pub shutdown_grace: HumanDuration,
    /// A request body must arrive whole within this (slow-client protection)…
    pub body_timeout: HumanDuration,
    /// …and, after its first 5 seconds, at no less than this many bytes per second on
    /// average; a trickling body gets 408 `body-timeout`. 0 turns the rate check off.
    pub body_min_rate: u64,
    /// Open connections at most; more are answered 503 `overloaded` and closed at once
    /// (lowered to what the process's open-file limit allows).
    pub max_connections: usize,
    /// Open connections at most from one client address.
    pub max_connections_per_client: usize,
    /// Requests being read, authenticated and routed at once (before their response starts);
    /// more are shed with 503 `overloaded` and `Retry-After`. Health, readiness and metrics
    /// are never shed.
    pub max_concurrent_requests: usize,
    /// `/metrics` needs a credential whose principal may `metrics.read` (the built-in role
    /// `metrics-reader`). The metrics name tenants and apps and their spend.
    pub metrics_auth: bool,
    /// Connections are served on this many single-threaded runtimes, one OS thread each:
    /// a connection, its calls and what they start (the provider exchange, the body
    /// streams) stay on one thread, which saves the cross-thread wake-ups of a shared
    /// runtime. Unset: one per core. 0: one shared multi-threaded runtime.
    pub io_threads: Option<usize>,
    /// Serve HTTPS (TLS 1.2 and 1.3), optionally asking clients for certificates (mTLS).
    pub tls: Option<TlsConfig>,
}

/// The listener's certificate, and the CA that client certificates must chain to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). A path, never the key itself.
    pub key_file: PathBuf,
    /// PEM CA certificates; when set, clients may present certificates (mTLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Refuse connections without a client certificate (default: optional, so API keys and
    /// tokens keep working on the same port).
    #[serde(default)]
    pub require_client_cert: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 * 1024 * 1024,
            upstream_timeout: HumanDuration(Duration::from_secs(60)),
            connect_timeout: HumanDuration(Duration::from_secs(5)),
            key_refresh_interval: HumanDuration(Duration::from_millis(500)),
            header_read_timeout: HumanDuration(Duration::from_secs(30)),
            shutdown_grace: HumanDuration(Duration::from_secs(30)),
            body_timeout: HumanDuration(Duration::from_secs(30)),
            body_min_rate: 1024,
            max_connections: 8192,
            max_connections_per_client: 256,
            max_concurrent_requests: 2048,
            metrics_auth: false,
            io_threads: None,
            tls: None,
        }
    }
}

impl ServerConfig {
    /// How many connection threads to run: `io_threads`, or one per core when unset.
    pub fn io_threads(&self) -> usize {
        self.io_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/custos.db` or `postgres://…`. A URL with a password must come from
    /// `CUSTOS_DATABASE_URL` instead. Default: `sqlite://<data_dir>/custos.db`.
    pub url: Option<String>,
    /// Directory for the embedded database and other local state. Default: `.custos`.
    pub data_dir: Option<PathBuf>,
    /// The gateway's background writers (audit events, usage records) commit at most once
    /// per this interval, gathering what arrives meanwhile into one transaction: longer
    /// means fewer, larger commits and less CPU; an event then waits up to this long to be
    /// durable (the response does not wait for it).
    pub commit_interval: HumanDuration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            data_dir: None,
            commit_interval: HumanDuration(Duration::from_millis(10)),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `custos_gateway=debug,info`.
    pub level: String,
    /// The per-request access line: logged at `debug`, except server errors and one request
    /// in every `access_log_sample` (0: none), which are logged at `info`. At 1,000
    /// requests/s a line for every request is gigabytes a day; metrics and the audit ledger
    /// already count each one.
    pub access_log_sample: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
            access_log_sample: 0,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// How long a completed response is replayed for the same `Idempotency-Key`.
    pub ttl: HumanDuration,
    /// Most stored responses kept in memory; the oldest are evicted first.
    pub max_entries: usize,
    /// Memory budget for stored responses (bytes); the oldest are evicted first.
    pub max_memory_bytes: usize,
    /// Responses larger than this are not stored (a repeat executes again).
    pub max_response_bytes: usize,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl: HumanDuration(Duration::from_secs(24 * 3600)),
            max_entries: 100_000,
            max_memory_bytes: 256 * 1024 * 1024,
            max_response_bytes: 1024 * 1024,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Private key file from `custos audit keygen`; when set, the gateway signs a ledger
    /// checkpoint every `checkpoint_interval` while the ledger grows.
    pub checkpoint_key_file: Option<PathBuf>,
    pub checkpoint_interval: HumanDuration,
    /// Also sign as soon as this many events were added since the last checkpoint.
    pub checkpoint_every: u64,
    /// Events younger than this are never pruned, whatever `custos audit prune --before`
    /// says (regulations commonly ask for 12–24 months).
    pub retention: HumanDuration,
    /// A directory outside the database where every signed checkpoint is published, one
    /// read-only file per size, never overwritten: the anchor `custos audit verify` checks
    /// the database against. Put it on storage the database's administrators cannot rewrite
    /// (a WORM mount, an S3 bucket with Object Lock through a FUSE mount, another host).
    pub anchor_dir: Option<PathBuf>,
    /// Receivers to which every signed checkpoint is POSTed (HMAC-signed like alerts).
    pub anchor_webhooks: Vec<WebhookConfig>,
    /// C2SP tlog-witnesses (another custos's `custos witness serve`, or any witness that
    /// knows this ledger's public key) that cosign every checkpoint after checking it
    /// extends the last one they saw.
    pub witnesses: Vec<WitnessConfig>,
    /// Calls refused before a principal is known are recorded as one `auth.refused` event
    /// per source address and reason per this window, with their count.
    pub refusal_window: HumanDuration,
    /// `strict`: a model call's response does not complete (its last byte, or the end of
    /// its stream) until its ledger event is committed, so every acknowledged call has its
    /// evidence even if the process is killed. `async`: events are committed within
    /// `database.commit_interval` after the response, and a crash can lose the last few.
    pub durability: Durability,
    /// Control-plane actions (Cedar action names, or a prefix ending in `*`) that must carry
    /// a reason (`--why`, JSON `why`); a change without one is refused with the flag named.
    pub require_why: Vec<String>,
}

/// A witness of the ledger's checkpoints.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness's base URL (its `/add-checkpoint` is under it).
    pub url: String,
    /// The witness's public key file, to check its cosignatures (recommended).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
}

/// When a model call's ledger event must be durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    #[default]
    Strict,
    Async,
}

/// The actions that need a reason unless `[audit] require_why` says otherwise: grants and
/// break-glass, spend overrides, policy changes and key revocation.
pub const DEFAULT_REQUIRE_WHY: &[&str] = &[
    "grants.*",
    "budgets.override",
    "policies.manage",
    "keys.revoke",
];

impl AuditConfig {
    /// Whether `action` must carry a reason.
    pub fn requires_why(&self, action: &str) -> bool {
        self.require_why.iter().any(|r| match r.strip_suffix('*') {
            Some(prefix) => action.starts_with(prefix),
            None => r == action,
        })
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_key_file: None,
            checkpoint_interval: HumanDuration(Duration::from_secs(60)),
            checkpoint_every: 10_000,
            retention: HumanDuration(Duration::from_secs(365 * 24 * 3600)),
            anchor_dir: None,
            anchor_webhooks: Vec::new(),
            witnesses: Vec::new(),
            refusal_window: HumanDuration(Duration::from_secs(60)),
            durability: Durability::default(),
            require_why: DEFAULT_REQUIRE_WHY
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The built-in deterministic provider for quickstarts and tests.
    Mock,
    /// Any OpenAI-compatible HTTP API (OpenAI, Azure OpenAI's v1 API, vLLM, Ollama, …).
    Openai,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// Base URL including the version path, e.g. `https://api.openai.com/v1`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Name of the environment variable holding the provider's API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Path of a file holding the provider's API key (first line).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Per-provider override of `server.upstream_timeout`.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Mock only: delay before the first byte of each reply.
    #[serde(default)]
    pub latency: Option<HumanDuration>,
    /// Mock only: delay between streamed chunks.
    #[serde(default)]
    pub chunk_delay: Option<HumanDuration>,
    /// Mock only: the fraction of calls (0 to 1) answered `503`, spread evenly — fault
    /// injection for release drills and tests.
    #[serde(default)]
    pub failure_rate: Option<f64>,
    /// Where the provider runs (e.g. `us-east`, `eu-west-1`): recorded on usage and used
    /// for carbon estimates.
    #[serde(default)]
    pub region: Option<String>,
    /// Present only so custos can refuse an inline key with a helpful message.
    #[serde(default)]
    api_key: Option<toml::Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRoute {
    /// The model name clients send.
    pub name: String,
    /// The provider that serves it.
    pub provider: toml::Spanned<String>,
    /// The provider's name for the model, when it differs.
    #[serde(default)]
    pub upstream: Option<String>,
    /// A model registry entry (`NAME@VERSION`) this route serves: it is served only while the
    /// entry is approved (or promoted) and, for weights, signed by a trusted key.
    #[serde(default)]
    pub registry: Option<String>,
}

impl ModelRoute {
    pub fn upstream_model(&self) -> &str {
        self.upstream.as_deref().unwrap_or(&self.name)
    }
}

/// Models the built-in mock provider serves when nothing else is configured.
pub const MOCK_DEFAULT_MODELS: &[&str] = &[
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
];

impl Config {
    /// The configuration used when there is no file: embedded SQLite and the mock provider.
    pub fn embedded() -> Self {
        let mut c = Self::default();
        c.apply_mock_default();
        c
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read the configuration file: {e}"),
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates configuration text; `path` is used in error messages only.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::new(text);
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let (line, column) = match inner.span() {
                Some(span) => line_col(text, span.start),
                None => (None, None),
            };
            ConfigError {
                path: path.to_owned(),
                line,
                column,
                key: (key != "." && !key.is_empty()).then_some(key),
                message: inner.message().trim().to_owned(),
            }
        })?;
        if config.providers.is_empty() && config.models.is_empty() {
            config.apply_mock_default();
        }
        let base = path.parent().unwrap_or(Path::new("."));
        if let Err(e) = config.pii.load_files(base) {
            return Err(ConfigError {
                path: path.to_owned(),
                line: text
                    .find("files")
                    .map(|s| line_col(text, s).0)
                    .unwrap_or(None),
                column: None,
                key: Some("pii.files".into()),
                message: e.to_string(),
            });
        }
        for (i, c) in config.tools.constraints.iter_mut().enumerate() {
            let Some(f) = c.schema_file.clone() else {
                continue;
            };
            let f = if f.is_relative() { base.join(f) } else { f };
            let read = std::fs::read(&f)
                .map_err(|e| format!("cannot read {}: {e}", f.display()))
                .and_then(|b| {
                    serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| {
                        format!(
                            "{} is not JSON (line {}, column {}): {e}",
                            f.display(),
                            e.line(),
                            e.column()
                        )
                    })
                });
            let message = match (read, &c.schema) {
                (Ok(_), Some(_)) => Some("give `schema` or `schema_file`, not both".to_owned()),
                (Ok(v), None) => {
                    c.schema = Some(v);
                    None
                }
                (Err(e), _) => Some(e),
            };
            if let Some(message) = message {
                return Err(ConfigError {
                    path: path.to_owned(),
                    line: text
                        .find("schema_file")
                        .map(|s| line_col(text, s).0)
                        .unwrap_or(None),
                    column: None,
                    key: Some(format!("tools.constraints[{i}].schema_file")),
                    message,
                });
            }
        }
        if let Some(tls) = &mut config.server.tls {
            for f in [&mut tls.cert_file, &mut tls.key_file]
                .into_iter()
                .chain(tls.client_ca_file.as_mut())
            {
                if f.is_relative() {
                    *f = base.join(&*f);
                }
            }
        }
        if let Some(f) = &mut config.audit.anchor_dir {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        for f in &mut config.authz.policies {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        for (i, w) in config.release.freeze.iter().enumerate() {
            if w.bounds().is_none() {
                return Err(ConfigError {
                    path: path.to_owned(),
                    line: None,
                    column: None,
                    key: Some(format!("release.freeze[{i}]")),
                    message: format!(
                        "from {:?} and until {:?} must be RFC 3339 times (2026-12-20T00:00:00Z), from before until",
                        w.from, w.until
                    ),
                });
            }
        }
        for (i, m) in config.release.cab.iter().enumerate() {
            if crate::time::parse_rfc3339(&m.at).is_none() {
                return Err(ConfigError {
                    path: path.to_owned(),
                    line: None,
                    column: None,
                    key: Some(format!("release.cab[{i}].at")),
                    message: format!("{:?} is not an RFC 3339 time (2026-12-08T15:00:00Z)", m.at),
                });
            }
        }
        for (i, o) in config.release.slo.iter().enumerate() {
            let bad = if !(o.objective > 0.0 && o.objective < 100.0) {
                Some("`objective` is a percentage above 0 and below 100, e.g. 99.5")
            } else if o
                .app
                .as_deref()
                .is_some_and(|a| a.split_once('/').is_none())
            {
                Some("`app` is TEAM/APP")
            } else if o.window.is_some_and(|w| w.0.is_zero()) {
                Some("`window` must be longer than zero")
            } else {
                None
            };
            if let Some(message) = bad {
                return Err(ConfigError {
                    path: path.to_owned(),
                    line: None,
                    column: None,
                    key: Some(format!("release.slo[{i}]")),
                    message: message.into(),
                });
            }
        }
        for (i, c) in config.lifecycle.class.iter().enumerate() {
            let bad = if c.prefixes.is_empty() || c.prefixes.iter().any(|p| p.is_empty()) {
                Some("`prefixes` names at least one non-empty prefix".to_owned())
            } else if c.tier_after.is_some() != c.tier_prefix.is_some() {
                Some("`tier_after` and `tier_prefix` go together".to_owned())
            } else if let (Some(r), Some(t)) = (c.retention, c.tier_after) {
                (r.0 <= t.0).then(|| "`retention` must be longer than `tier_after`".to_owned())
            } else {
                None
            };
            if let Some(message) = bad {
                return Err(ConfigError {
                    path: path.to_owned(),
                    line: None,
                    column: None,
                    key: Some(format!("lifecycle.class[{i}] ({})", c.name)),
                    message,
                });
            }
        }
        for name in config.release.tiers.keys() {
            if !["low", "medium", "high", "emergency"].contains(&name.as_str()) {
                return Err(ConfigError {
                    path: path.to_owned(),
                    line: None,
                    column: None,
                    key: Some(format!("release.tiers.{name}")),
                    message: "a tier is low, medium, high or emergency".into(),
                });
            }
        }
        if let Some(s) = &mut config.lifecycle.store {
            if !s.contains("://") && Path::new(s.as_str()).is_relative() {
                *s = base.join(s.as_str()).display().to_string();
            }
        }
        for t in &mut config.registry.trust {
            if t.public_key.is_relative() {
                t.public_key = base.join(&t.public_key);
            }
        }
        for j in &mut config.auth.jwt {
            if let Some(f) = &mut j.jwks_file {
                if f.is_relative() {
                    *f = base.join(&*f);
                }
            }
        }
        config.validate(text, path)?;
        Ok(config)
    }

    fn apply_mock_default(&mut self) {
        self.providers.push(ProviderConfig {
            name: "mock".into(),
            kind: ProviderKind::Mock,
            base_url: None,
            api_key_env: None,
            api_key_file: None,
            timeout: None,
            latency: None,
            chunk_delay: None,
            failure_rate: None,
            region: None,
            api_key: None,
        });
        self.models = MOCK_DEFAULT_MODELS
            .iter()
            .map(|m| ModelRoute {
                name: (*m).into(),
                provider: toml::Spanned::new(0..0, "mock".into()),
                upstream: None,
                registry: None,
            })
            .collect();
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let fail = |key: String, span: Option<usize>, message: String| {
            let (line, column) = span.map_or((None, None), |s| line_col(text, s));
            Err(ConfigError {
                path: path.to_owned(),
                line,
                column,
                key: Some(key),
                message,
            })
        };
        if let Some(url) = &self.cluster.redis_url {
            let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
            if after_scheme
                .split('/')
                .next()
                .is_some_and(|auth| auth.contains('@'))
            {
                return fail(
                    "cluster.redis_url".into(),
                    find_key(text, "redis_url"),
                    "the URL carries credentials; set CUSTOS_REDIS_URL in the environment instead"
                        .into(),
                );
            }
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix://"))
            {
                return fail(
                    "cluster.redis_url".into(),
                    find_key(text, "redis_url"),
                    format!("{url:?} is not a Redis URL (redis://HOST:PORT/DB)"),
                );
            }
        }
        for (i, a) in self.egress.allow.iter().enumerate() {
            let host = a.strip_prefix("*.").unwrap_or(a);
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
            {
                return fail(
                    format!("egress.allow[{i}]"),
                    find_key(text, "allow"),
                    format!("{a:?} is not a host name (api.openai.com, or *.internal.example for its subdomains)"),
                );
            }
        }
        let mut outbound: Vec<(String, Option<usize>, &str)> = Vec::new();
        for (i, p) in self.providers.iter().enumerate() {
            if let Some(u) = &p.base_url {
                outbound.push((
                    format!("providers[{i}].base_url"),
                    find_nth_table_key(text, "providers", i, "base_url"),
                    u,
                ));
            }
        }
        for (i, j) in self.auth.jwt.iter().enumerate() {
            if let Some(u) = &j.jwks_url {
                outbound.push((
                    format!("auth.jwt[{i}].jwks_url"),
                    find_nth_table_key(text, "auth.jwt", i, "jwks_url"),
                    u,
                ));
            }
        }
        for (table, list) in [
            ("finops.webhooks", &self.finops.webhooks),
            ("events.webhooks", &self.events.webhooks),
            ("audit.anchor_webhooks", &self.audit.anchor_webhooks),
        ] {
            for (i, w) in list.iter().enumerate() {
                outbound.push((
                    format!("{table}[{i}].url"),
                    find_nth_table_key(text, table, i, "url"),
                    &w.url,
                ));
            }
        }
        if let Some(u) = &self.telemetry.otlp_endpoint {
            outbound.push((
                "telemetry.otlp_endpoint".into(),
                find_key(text, "otlp_endpoint"),
                u,
            ));
        }
        for (i, w) in self.audit.witnesses.iter().enumerate() {
            outbound.push((
                format!("audit.witnesses[{i}].url"),
                find_nth_table_key(text, "audit.witnesses", i, "url"),
                &w.url,
            ));
        }
        if let Some(n) = self.server.io_threads.filter(|&n| n > 1024) {
            return fail(
                "server.io_threads".into(),
                find_key(text, "io_threads"),
                format!(
                    "{n} threads is more than 1024; one per core is the point (0: the shared runtime)"
                ),
            );
        }
        if let Some(d) = self.release.slo_interval {
            if d.0 < Duration::from_millis(100) {
                return fail(
                    "release.slo_interval".into(),
                    find_key(text, "slo_interval"),
                    format!(
                        "{d} is too short; measure the SLOs every 100ms or longer (default 30s)"
                    ),
                );
            }
        }
        let ttl = self.console.session_ttl.0;
        if ttl < Duration::from_secs(60) || ttl > Duration::from_secs(7 * 86_400) {
            return fail(
                "console.session_ttl".into(),
                find_key(text, "session_ttl"),
                format!(
                    "{} is not between 1m and 7d (default 8h)",
                    self.console.session_ttl
                ),
            );
        }
        if let Some(o) = &self.console.oidc {
            let at = find_key(text, "client_id");
            if !self.auth.jwt.iter().any(|j| j.issuer == o.issuer) {
                return fail(
                    "console.oidc.issuer".into(),
                    find_key(text, "issuer"),
                    format!(
                        "{:?} is not an [[auth.jwt]] issuer; the console accepts the tokens the API accepts, so add the issuer there first",
                        o.issuer
                    ),
                );
            }
            if o.client_id.trim().is_empty() || o.client_id.chars().any(char::is_control) {
                return fail(
                    "console.oidc.client_id".into(),
                    at,
                    "must name this console's client at the provider".into(),
                );
            }
            if let Some(u) = &o.public_url {
                if !(u.starts_with("http://") || u.starts_with("https://"))
                    || url_host(u).is_none()
                    || u.contains('?')
                    || u.contains('#')
                {
                    return fail(
                        "console.oidc.public_url".into(),
                        find_key(text, "public_url"),
                        format!("{u:?} is not an http:// or https:// base URL (https://custos.example.com)"),
                    );
                }
            }
            if let Some(e) = &o.client_secret_env {
                if e.is_empty() || !e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return fail(
                        "console.oidc.client_secret_env".into(),
                        find_key(text, "client_secret_env"),
                        format!("{e:?} is not an environment variable name"),
                    );
                }
            }
            if let Err(why) = self.egress.permits(&o.issuer) {
                return fail("console.oidc.issuer".into(), find_key(text, "issuer"), why);
            }
        }
        let t = &self.telemetry;
        if let Some(u) = &t.otlp_endpoint {
            if !(u.starts_with("http://") || u.starts_with("https://")) || url_host(u).is_none() {
                return fail(
                    "telemetry.otlp_endpoint".into(),
                    find_key(text, "otlp_endpoint"),
                    format!("{u:?} is not an http:// or https:// URL (an OTLP/HTTP receiver, e.g. http://127.0.0.1:4318)"),
                );
            }
        }
        if !(0.0..=1.0).contains(&t.sample_ratio) || t.sample_ratio.is_nan() {
            return fail(
                "telemetry.sample_ratio".into(),
                find_key(text, "sample_ratio"),
                format!("{} is not a share between 0 and 1", t.sample_ratio),
            );
        }
        if !(1..=1_000_000).contains(&t.queue) {
            return fail(
                "telemetry.queue".into(),
                find_key(text, "queue"),
                format!("{} is not between 1 and 1000000 traces", t.queue),
            );
        }
        if t.service_name.trim().is_empty() {
            return fail(
                "telemetry.service_name".into(),
                find_key(text, "service_name"),
                "must name the service (default \"custos\")".into(),
            );
        }
        for (key, at, url) in outbound {
            if let Err(why) = self.egress.permits(url) {
                return fail(key, at, why);
            }
        }
        for (i, t) in std::iter::once(self.injection.threshold)
            .chain(self.injection.rules.iter().filter_map(|r| r.threshold))
            .enumerate()
        {
            if !(0.0..=1.0).contains(&t) || t.is_nan() {
                return fail(
                    if i == 0 {
                        "injection.threshold".into()
                    } else {
                        format!("injection.rules[{}].threshold", i - 1)
                    },
                    find_key(text, "threshold"),
                    format!("{t} is not a score between 0 and 1"),
                );
            }
        }
        for (i, c) in self.tools.constraints.iter().enumerate() {
            let key = format!("tools.constraints[{i}]");
            let at = find_key(text, "constraints");
            if c.tool.trim().is_empty() {
                return fail(key, at, "needs `tool`".into());
            }
            if c.argument.trim().is_empty() && c.schema.is_none() {
                return fail(
                    key,
                    at,
                    "needs `argument` (or a `schema` for the whole arguments object)".into(),
                );
            }
            if c.argument.trim().is_empty()
                && (!c.domains.is_empty()
                    || c.pattern.is_some()
                    || c.max_len.is_some()
                    || c.required)
            {
                return fail(
                    key,
                    at,
                    "`domains`, `pattern`, `max_len` and `required` check one argument: name it in `argument`".into(),
                );
            }
            if let Some(schema) = &c.schema {
                if let Err(e) = jsonschema::validator_for(schema) {
                    return fail(
                        format!("{key}.schema"),
                        at,
                        format!("not a usable JSON Schema: {e}"),
                    );
                }
            }
            if c.argument.starts_with('/') && c.argument.len() == 1 {
                return fail(
                    format!("{key}.argument"),
                    at,
                    "\"/\" names the whole arguments object; name one argument (`/url`)".into(),
                );
            }
            if let Some(p) = &c.pattern {
                if let Err(e) = regex::Regex::new(p) {
                    return fail(
                        format!("{key}.pattern"),
                        at,
                        format!("not a regular expression: {e}"),
                    );
                }
            }
            for d in &c.domains {
                let host = d.strip_prefix("*.").unwrap_or(d);
                let ok = !host.is_empty()
                    && host.len() <= 253
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
                    && !host.starts_with('.')
                    && !host.ends_with('.');
                if !ok {
                    return fail(
                        format!("{key}.domains"),
                        at,
                        format!("{d:?} is not a host name (docs.example.com, or *.example.com for its subdomains)"),
                    );
                }
            }
            if c.domains.is_empty()
                && c.pattern.is_none()
                && c.max_len.is_none()
                && !c.required
                && c.schema.is_none()
            {
                return fail(
                    key,
                    at,
                    "constrains nothing: give `domains`, `pattern`, `max_len`, `schema` or `required = true`"
                        .into(),
                );
            }
        }
        let c = &self.carbon;
        if c.pue.is_some_and(|p| !(1.0..=5.0).contains(&p)) {
            return fail(
                "carbon.pue".into(),
                find_key(text, "pue"),
                "must be between 1 and 5 (facility power over IT power)".into(),
            );
        }
        if c.default_utilization
            .is_some_and(|u| !(0.0..=1.0).contains(&u))
        {
            return fail(
                "carbon.default_utilization".into(),
                find_key(text, "default_utilization"),
                "must be between 0 and 1".into(),
            );
        }
        for (table, values) in [
            ("device_watts", &c.device_watts),
            ("grid_g_per_kwh", &c.grid_g_per_kwh),
        ] {
            if let Some((k, v)) = values.iter().find(|(_, v)| !v.is_finite() || **v < 0.0) {
                return fail(
                    format!("carbon.{table}.{k}"),
                    text.find(&format!("[carbon.{table}")),
                    format!("{v} is not a figure (a number, zero or more)"),
                );
            }
        }
        if let Some((k, _)) = c.instance_gpus.iter().find(|(_, g)| g.count == 0) {
            return fail(
                format!("carbon.instance_gpus.{k}"),
                text.find("instance_gpus"),
                "count must be at least 1".into(),
            );
        }
        if self.server.max_body_bytes == 0 {
            return fail(
                "server.max_body_bytes".into(),
                find_key(text, "max_body_bytes"),
                "must be greater than zero".into(),
            );
        }
        if let Err(e) = custos_pii::Analyzer::new(&self.pii) {
            return fail("pii".into(), text.find("[pii"), e.to_string());
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let key = |k: &str| format!("providers[{i}].{k}");
            let at = |k: &str| find_nth_table_key(text, "providers", i, k);
            if !names.insert(p.name.as_str()) {
                return fail(
                    key("name"),
                    at("name"),
                    format!("provider name {:?} is used twice", p.name),
                );
            }
            if p.api_key.is_some() {
                return fail(
                    key("api_key"),
                    at("api_key"),
                    "API keys never go in the configuration file; name the environment variable that holds it with `api_key_env = \"OPENAI_UPSTREAM_KEY\"` or a file with `api_key_file`".into(),
                );
            }
            match p.kind {
                ProviderKind::Openai => match &p.base_url {
                    None => return fail(
                        key("base_url"),
                        at("kind"),
                        "an `openai` provider needs `base_url`, e.g. \"https://api.openai.com/v1\""
                            .into(),
                    ),
                    Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                        return fail(
                            key("base_url"),
                            at("base_url"),
                            format!("{u:?} is not an http:// or https:// URL"),
                        )
                    }
                    Some(_) => {}
                },
                ProviderKind::Mock => {}
            }
            if let Some(r) = p.failure_rate {
                if p.kind != ProviderKind::Mock || !(0.0..=1.0).contains(&r) {
                    return fail(
                        key("failure_rate"),
                        at("failure_rate"),
                        "`failure_rate` is a fraction from 0 to 1, for the mock provider only"
                            .into(),
                    );
                }
            }
            if let Some(env) = &p.api_key_env {
                if env.is_empty() || !env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return fail(
                        key("api_key_env"),
                        at("api_key_env"),
                        format!("{env:?} is not an environment variable name"),
                    );
                }
            }
        }
        for (table, list) in [
            ("finops.webhooks", &self.finops.webhooks),
            ("events.webhooks", &self.events.webhooks),
            ("audit.anchor_webhooks", &self.audit.anchor_webhooks),
        ] {
            for (i, w) in list.iter().enumerate() {
                let key = |k: &str| format!("{table}[{i}].{k}");
                let at = |k: &str| find_nth_table_key(text, table, i, k);
                if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                    return fail(
                        key("url"),
                        at("url"),
                        format!("{:?} is not an http:// or https:// URL", w.url),
                    );
                }
                if table == "audit.anchor_webhooks" && (!w.types.is_empty() || w.reveal) {
                    return fail(
                        key("types"),
                        at("types").or(at("reveal")),
                        "anchor receivers get every checkpoint; `types` and `reveal` belong \
                         to [[events.webhooks]]"
                            .into(),
                    );
                }
                for (j, t) in w.types.iter().enumerate() {
                    let body = t.trim_end_matches(['*', '.']);
                    if body.is_empty()
                        || !body.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_'
                        })
                    {
                        return fail(
                            format!("{table}[{i}].types[{j}]"),
                            at("types"),
                            format!(
                                "{t:?} is not an activity (`release.approve`) or a prefix \
                                 (`release.`, `release.*`)"
                            ),
                        );
                    }
                }
            }
        }
        if self.events.source.trim().is_empty()
            || self.events.source.chars().any(char::is_whitespace)
        {
            return fail(
                "events.source".into(),
                find_key(text, "source"),
                format!(
                    "{:?} is not a URI reference (e.g. \"/custos/prod\" or \"urn:example:custos\")",
                    self.events.source
                ),
            );
        }
        for (i, m) in self.auth.mtls.iter().enumerate() {
            let key = |k: &str| format!("auth.mtls[{i}].{k}");
            let at = |k: &str| find_nth_table_key(text, "auth.mtls", i, k);
            if m.spiffe_id.is_some() == m.subject.is_some() {
                return fail(
                    key("spiffe_id"),
                    at("tenant"),
                    "set exactly one of `spiffe_id` and `subject`".into(),
                );
            }
            if let Some(id) = &m.spiffe_id {
                if !id.starts_with("spiffe://") {
                    return fail(
                        key("spiffe_id"),
                        at("spiffe_id"),
                        format!("{id:?} is not a SPIFFE ID (spiffe://trust-domain/path)"),
                    );
                }
            }
        }
        if !self.auth.mtls.is_empty()
            && self
                .server
                .tls
                .as_ref()
                .is_none_or(|t| t.client_ca_file.is_none())
        {
            return fail(
                "auth.mtls".into(),
                text.find("[[auth.mtls"),
                "client certificates need `[server.tls] client_ca_file`".into(),
            );
        }
        if self.authz.grants.break_glass_max.0 > BREAK_GLASS_CAP {
            return fail(
                "authz.grants.break_glass_max".into(),
                find_key(text, "break_glass_max"),
                "break-glass access lasts at most 4h".into(),
            );
        }
        for (i, j) in self.auth.jwt.iter().enumerate() {
            let key = |k: &str| format!("auth.jwt[{i}].{k}");
            let at = |k: &str| find_nth_table_key(text, "auth.jwt", i, k);
            if j.issuer.is_empty() {
                return fail(key("issuer"), at("issuer"), "must not be empty".into());
            }
            if j.audience.is_empty() || j.audience.iter().any(String::is_empty) {
                return fail(
                    key("audience"),
                    at("audience"),
                    "name the audience tokens for this API carry, e.g. \"custos\"".into(),
                );
            }
            match (&j.jwks_file, &j.jwks_url) {
                (None, None) | (Some(_), Some(_)) => {
                    return fail(
                        key("jwks_file"),
                        at("issuer"),
                        "set exactly one of `jwks_file` and `jwks_url` (the issuer's public keys)"
                            .into(),
                    )
                }
                (None, Some(u)) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                    return fail(
                        key("jwks_url"),
                        at("jwks_url"),
                        format!("{u:?} is not an http:// or https:// URL"),
                    )
                }
                _ => {}
            }
            if j.tenants.is_empty() && j.default_tenant.is_none() {
                return fail(
                    key("tenants"),
                    at("issuer"),
                    "name the tenants this issuer may sign for, e.g. `tenants = [\"acme\"]` \
                     (or `tenants = [\"*\"]` for an identity provider every tenant trusts): \
                     without it, any token of this issuer could claim any tenant"
                        .into(),
                );
            }
            if j.tenants.iter().any(String::is_empty) {
                return fail(
                    key("tenants"),
                    at("tenants"),
                    "tenant names must not be empty".into(),
                );
            }
            if let (Some(d), Some(allowed)) = (&j.default_tenant, j.allowed_tenants()) {
                if !allowed.contains(d) {
                    return fail(
                        key("default_tenant"),
                        at("default_tenant"),
                        format!("{d:?} is not one of this issuer's `tenants`"),
                    );
                }
            }
            if j.leeway.0 > Duration::from_secs(600) {
                return fail(
                    key("leeway"),
                    at("leeway"),
                    "at most 10m: a larger leeway keeps expired tokens alive".into(),
                );
            }
        }
        let mut models = std::collections::HashMap::new();
        for (i, m) in self.models.iter().enumerate() {
            if let Some(first) = models.insert(m.name.as_str(), m.provider.get_ref().as_str()) {
                return fail(
                    format!("models[{i}].name"),
                    find_nth_table_key(text, "models", i, "name"),
                    format!(
                        "model {:?} is routed twice (an earlier [[models]] entry sends it to provider {first:?}); a model name has one provider: change that entry's `provider` or remove one of them",
                        m.name
                    ),
                );
            }
            if let Some(r) = &m.registry {
                let ok = r.rsplit_once('@').is_some_and(|(n, v)| {
                    let part = |s: &str| {
                        !s.is_empty()
                            && s.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+')
                            })
                    };
                    part(n) && part(v)
                });
                if !ok {
                    return fail(
                        format!("models[{i}].registry"),
                        find_nth_table_key(text, "models", i, "registry"),
                        format!("{r:?} is not NAME@VERSION (a model registry entry)"),
                    );
                }
            }
            if !self
                .providers
                .iter()
                .any(|p| p.name == *m.provider.get_ref())
            {
                let known: Vec<&str> = self.providers.iter().map(|p| p.name.as_str()).collect();
                return fail(
                    format!("models[{i}].provider"),
                    Some(m.provider.span().start),
                    format!(
                        "no provider named {:?} (configured: {})",
                        m.provider.get_ref(),
                        known.join(", ")
                    ),
                );
            }
        }
        if self.models.is_empty() {
            return fail(
                "models".into(),
                None,
                "no [[models]] are routed: add one per model name clients may call".into(),
            );
        }
        Ok(())
    }

    /// The database URL: the flag or `CUSTOS_DATABASE_URL` first, then the file, then the
    /// embedded default under the data directory.
    pub fn database_url(&self, override_url: Option<&str>) -> String {
        if let Some(u) = override_url.filter(|u| !u.is_empty()) {
            return u.to_owned();
        }
        if let Some(u) = &self.database.url {
            return u.clone();
        }
        format!("sqlite://{}", self.data_dir().join("custos.db").display())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.database
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(".custos"))
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (Option<usize>, Option<usize>) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = offset
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (Some(line), Some(col))
}

/// Byte offset of the first `key =` line anywhere in the text.
fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
            return Some(offset + (line.len() - t.len()));
        }
        offset += line.len();
    }
    None
}

/// Byte offset of `key =` inside the `n`-th `[[array]]` table (0-based), or of the table
/// header when the key is absent.
fn find_nth_table_key(text: &str, array: &str, n: usize, key: &str) -> Option<usize> {
    let header = format!("[[{array}]]");
    let mut offset = 0;
    let mut seen = 0usize;
    let mut in_table = false;
    let mut header_at = None;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        let at = offset + (line.len() - t.len());
        if t.starts_with('[') {
            if in_table {
                break;
            }
            if t.starts_with(&header) {
                if seen == n {
                    in_table = true;
                    header_at = Some(at);
                }
                seen += 1;
            }
        } else if in_table && t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
            return Some(at);
        }
        offset += line.len();
    }
    header_at
}

/// A commented starter configuration, written by `custos init`.
pub const STARTER_TOML: &str = r#"# custos.toml — configuration for the custos gateway.
# Every key is optional; the values shown are the defaults unless marked "example".
# Secrets never go in this file: providers name the environment variable (or file)
# that holds their key, and a database URL with a password comes from CUSTOS_DATABASE_URL.

[server]
# Where the gateway listens. Keep it on loopback unless a TLS proxy fronts it.
listen = "127.0.0.1:8080"
# Largest request body accepted (bytes); larger requests get 413.
max_body_bytes = 4194304
# How long to wait for the upstream's response headers, and between streamed chunks (504 after).
upstream_timeout = "60s"
# How long to wait for a TCP connection to the upstream (502 after).
connect_timeout = "5s"
# How often the key cache re-reads changed keys (revocations take effect within this).
key_refresh_interval = "500ms"
# A client must send a request's headers within this; slower connections are closed.
header_read_timeout = "30s"
# On SIGTERM/Ctrl-C, how long in-flight requests and streams may take to finish.
shutdown_grace = "30s"
# Connections are served on single-threaded runtimes, one per core by default: a
# connection and its calls stay on one thread. Set a number of threads to override it, or
# 0 for one shared multi-threaded runtime.
# io_threads = 2                        (example)
# /metrics names tenants, apps and their spend: set true to require a credential whose
# principal holds the built-in role metrics-reader (or a policy allowing metrics.read).
metrics_auth = false

[database]
# Embedded SQLite by default. For PostgreSQL set CUSTOS_DATABASE_URL=postgres://… instead.
# url = "sqlite://.custos/custos.db"
data_dir = ".custos"
# Audit events and usage records are committed in batches, at most once per this interval.
# commit_interval = "10ms"

[log]
# "text" for people, "json" for log pipelines. Logs never carry prompts or keys.
format = "text"
level = "info"
# One access line per request at "info" for 1 in N requests (0: none; every request is
# still logged at "debug", server errors always at "info").
access_log_sample = 0

[idempotency]
# A POST with an Idempotency-Key is executed once; repeats within `ttl` replay the response.
ttl = "24h"
max_entries = 100000
max_memory_bytes = 268435456       # 256 MiB for stored responses; oldest evicted first
max_response_bytes = 1048576       # larger responses are not stored (a repeat runs again)

[audit]
# Every model call and control-plane change is recorded in the tamper-evident ledger.
# With a key from `custos audit keygen`, the gateway also signs checkpoints periodically.
# checkpoint_key_file = ".custos/ledger.key"
checkpoint_interval = "60s"
checkpoint_every = 10000          # or as soon as this many events were added
# `custos audit prune` never removes events younger than this, nor any not yet exported.
retention = "365d"
# "strict": a call's response completes only once its ledger event is committed (every
# acknowledged call has evidence, even after kill -9); "async": committed within
# database.commit_interval after the response (a crash can lose the last few events).
durability = "strict"
# Control-plane actions that must say why (`--why`, JSON "why"); "grants.*" is a prefix.
require_why = ["grants.*", "budgets.override", "policies.manage", "keys.revoke"]
# Every signed checkpoint is also published outside the database, so that rows rewritten
# or deleted in it are caught by `custos audit verify` (which exits 3 when nothing anchors
# the ledger). A directory on storage the database's administrators cannot rewrite:
# anchor_dir = "/mnt/worm/custos-anchors"
# [[audit.anchor_webhooks]]         # and/or receivers of every checkpoint (HMAC-signed)
# url = "https://evidence.example.com/custos"
# secret_env = "CUSTOS_ANCHOR_SECRET"

[finops]
# Prices (`custos prices …`) and budgets (`custos budgets …`) live in the database; every
# gateway re-reads budget spend this often. A new price, budget or override is picked up
# within `server.key_refresh_interval`, like a new key.
refresh_interval = "5s"
# Tags every job usage report (POST /v1/usage, `custos usage record`) must carry; a report
# without one is refused ("refuse") or kept marked untagged ("accept").
mandatory_tags = []                # e.g. ["Project", "Env", "Team", "CostCenter"]
untagged = "refuse"
# Completion tokens a budget holds for a call that sets no max_tokens.
default_max_output_tokens = 1024
# Time zone of reports and anomaly days (budgets carry their own).
time_zone = "UTC"
# [[finops.webhooks]]             # budget and anomaly alerts: see [[events.webhooks]]
# url = "https://alerts.example.com/custos"
# secret_env = "CUSTOS_WEBHOOK_SECRET"

[events]
# Ledger events go to webhooks as CloudEvents 1.0 (structured JSON, HMAC-SHA256-signed in
# X-Custos-Signature), in ledger order; a receiver that was down gets what it missed.
# `source` names this deployment in every event.
source = "/custos"
# A stopped gateway's hold on a receiver lapses after this; another replica takes over.
failover = "30s"
# [[events.webhooks]]
# url = "https://siem.example.com/custos"
# secret_env = "CUSTOS_EVENTS_SECRET"
# types = ["release.", "grant.", "erasure.", "dpia.required"]   # default: budgets,
#                                   # anomalies, grants, break-glass, releases, erasures, DPIAs, SLOs
# reveal = false                    # personal identifiers stay sealed unless true

[telemetry]
# OpenTelemetry traces over OTLP/HTTP (protobuf): one server span per call, a child span
# per control and one for the upstream call. Off unless an endpoint is set; headers the
# receiver needs come from OTEL_EXPORTER_OTLP_HEADERS (key=value,key=value).
# otlp_endpoint = "http://127.0.0.1:4318"
service_name = "custos"
sample_ratio = 1.0       # share of calls that start a trace; a caller's traceparent decides its own

[console]
# The web console at /console (sign in with an API key). Sessions are signed cookies; set
# CUSTOS_CONSOLE_SECRET (32+ random bytes, base64 or hex) so they survive restarts and work
# on every replica.
enabled = true
session_ttl = "8h"
# secure_cookies = true            # behind a proxy that terminates TLS (default: TLS here or an https public_url)
# risks = "risks.yaml"             # the risk register the Access page shows (`custos risk init`)
# [console.oidc]                   # people sign in at an OIDC provider (code flow + PKCE)
# issuer = "https://login.example.com/"   # one of the [[auth.jwt]] issuers
# client_id = "custos-console"
# client_secret_env = "CUSTOS_CONSOLE_OIDC_SECRET"   # confidential clients only
# public_url = "https://custos.example.com"          # redirect: <public_url>/console/auth/callback

# Carbon estimates of jobs use the shipped tables (crates/custos-finops/data/carbon.toml,
# with sources); entries here replace or add to them.
# [carbon]
# pue = 1.1
# [carbon.grid_g_per_kwh]
# "us-east-1" = 380               # gCO2e/kWh
# [carbon.device_watts]
# "mi325x" = 1000
# [carbon.instance_gpus]
# "my-gpu-node" = { gpu = "h100", count = 4 }

# Identity: custos API keys always work; add OIDC issuers whose JWT access tokens are
# accepted too (RS256/384/512, PS256/384/512, ES256, ES384, EdDSA; never HS* or none).
# [[auth.jwt]]
# issuer = "https://login.example.com/"          # the exact `iss`
# audience = "custos"                            # `aud` must name this API
# jwks_url = "https://login.example.com/.well-known/jwks.json"   # or jwks_file = "jwks.json"
# jwks_refresh_interval = "1h"
# jwks_min_refetch = "30s"     # an unknown `kid` refetches at most this often
# leeway = "60s"               # clock skew tolerated on exp and nbf
# tenants = ["acme"]           # the only tenants its tokens may name ("*": every tenant)
# default_tenant = "acme"      # for tokens without a tenant claim
# [auth.jwt.claims]            # which claim holds what (dotted paths reach nested claims)
# tenant = "tenant"
# team = "team"
# roles = "roles"              # e.g. "realm_access.roles" for Keycloak
# [auth.jwt.scopes]            # the scope each operation needs ("" = none)
# chat = "custos:chat"
# embeddings = "custos:embeddings"
# responses = "custos:responses"

# Authorization: Cedar policies validated against `custos policy schema`. With no files the
# built-in roles apply (developer, service, tenant-admin, finops-viewer, auditor,
# security-admin, operator). Files are reloaded on change and on SIGHUP.
[authz]
# policies = ["policies/roles.cedar", "policies/ours.cedar"]

# Providers: "mock" is built in and deterministic; "openai" is any OpenAI-compatible API.
[[providers]]
name = "mock"
kind = "mock"
# latency = "20ms"       # delay before the first byte
# chunk_delay = "5ms"    # delay between streamed chunks
# failure_rate = 0.5     # answer this fraction of calls 503 (fault injection for drills)

# [[providers]]          # example: a real provider
# name = "openai"
# kind = "openai"
# base_url = "https://api.openai.com/v1"
# api_key_env = "OPENAI_UPSTREAM_KEY"   # the provider's key; not OPENAI_API_KEY, which
#                                      # holds the custos key your clients send
# timeout = "120s"
# region = "us-east"     # recorded on usage; for carbon estimates and residency pins

# Models: the names clients send, and which provider serves each.
[[models]]
name = "gpt-4o-mini"
provider = "mock"

[[models]]
name = "gpt-4o"
provider = "mock"

[[models]]
name = "gpt-3.5-turbo-instruct"
provider = "mock"

[[models]]
name = "text-embedding-3-small"
provider = "mock"
# upstream = "text-embedding-3-small"   # the provider's own name, when it differs
# registry = "embedder@2024-01"          # serve only while this model registry entry is
#                                        # approved and signed by a trusted key

# Which keys may sign which models, for routes that name a registry entry
# (`custos models keygen` makes a key pair; `custos models sign --registry` attaches a signature).
# [[registry.trust]]
# public_key = "keys/release.pem.pub"
# names = ["llama-*", "embedder"]

# Releases (`custos release --help`): what each risk tier needs, change freezes, the CAB
# calendar, SLOs whose spent error budget freezes promotion, and post-check thresholds.
# [release.tiers.medium]
# approvals = ["owner", "platform", "security"]
# evidence = ["adr", "tests", "eval", "slo"]
# [[release.freeze]]
# from = "2026-12-20T00:00:00Z"
# until = "2027-01-04T00:00:00Z"
# reason = "year-end freeze"
# [[release.cab]]
# at = "2026-12-08T15:00:00Z"
# name = "weekly CAB"
# [[release.slo]]
# name = "support-bot availability"
# app = "ml/support-bot"
# objective = 99.5         # percent of calls without a 5xx
# window = "1h"
# [release.post_check]
# window = "5m"            # watch this long after a promotion
# p99_ratio = 1.5          # breach: p99 latency above 1.5x the previous release's
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("custos.toml"))
    }

    #[test]
    fn empty_file_means_mock_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.providers.len(), 1);
        assert_eq!(c.providers[0].kind, ProviderKind::Mock);
        assert!(c.models.iter().any(|m| m.name == "gpt-4o-mini"));
        assert_eq!(c.server.max_body_bytes, 4 * 1024 * 1024);
    }

    /// Issue 29 (6): the `[carbon]` override that data/carbon.toml documents is accepted,
    /// and a figure that cannot be right is refused naming its key.
    #[test]
    fn carbon_overrides_parse_and_are_checked() {
        let c = parse(
            "[carbon]\npue = 1.1\n[carbon.grid_g_per_kwh]\n\"mars-1\" = 12\n[carbon.instance_gpus]\n\"node\" = { gpu = \"h100\", count = 4 }\n",
        )
        .unwrap();
        assert_eq!(c.carbon.pue, Some(1.1));
        assert_eq!(c.carbon.grid_g_per_kwh["mars-1"], 12.0);
        assert_eq!(c.carbon.instance_gpus["node"].count, 4);
        let e = parse("[carbon]\npue = 0.5\n").unwrap_err().to_string();
        assert!(e.contains("carbon.pue") && e.contains(":2"), "{e}");
        let e = parse("[carbon.device_watts]\nh100 = -1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("carbon.device_watts.h100"), "{e}");
        assert!(parse("[carbon]\nwatts = 1\n").is_err());
    }

    /// Telemetry: off by default; an endpoint must be an http(s) URL the egress allows, the
    /// ratio a share, the queue bounded.
    #[test]
    fn telemetry_is_checked_at_load() {
        let c = parse("").unwrap();
        assert!(c.telemetry.otlp_endpoint.is_none());
        assert_eq!(c.telemetry.service_name, "custos");
        let c = parse("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 0.25\n[release]\nslo_interval = \"10s\"\n").unwrap();
        assert_eq!(c.telemetry.sample_ratio, 0.25);
        assert_eq!(c.release.slo_interval.unwrap().0, Duration::from_secs(10));
        for (text, key, says) in [
            ("[telemetry]\notlp_endpoint = \"127.0.0.1:4318\"\n", "telemetry.otlp_endpoint", "http://"),
            ("[telemetry]\nsample_ratio = 1.5\n", "telemetry.sample_ratio", "between 0 and 1"),
            ("[telemetry]\nqueue = 0\n", "telemetry.queue", "between 1 and"),
            ("[console]\nsession_ttl = \"10s\"\n", "console.session_ttl", "between 1m and 7d"),
            ("[console]\nsession_ttl = \"30d\"\n", "console.session_ttl", "between 1m and 7d"),
            ("[console.oidc]\nissuer = \"https://idp.example\"\nclient_id = \"c\"\n", "console.oidc.issuer", "not an [[auth.jwt]] issuer"),
            ("[[auth.jwt]]\nissuer = \"https://idp.example\"\naudience = \"custos\"\njwks_file = \"k.json\"\ntenants = [\"*\"]\n[console.oidc]\nissuer = \"https://idp.example\"\nclient_id = \"c\"\npublic_url = \"custos.example\"\n", "console.oidc.public_url", "not an http"),
            ("[telemetry]\nservice_name = \" \"\n", "telemetry.service_name", "name the service"),
            ("[egress]\nallow = [\"api.openai.com\"]\n[telemetry]\notlp_endpoint = \"http://collector.example:4318\"\n", "telemetry.otlp_endpoint", "not in [egress] allow"),
            ("[telemetry]\notlp_headers = \"k=v\"\n", "otlp_headers", "unknown field"),
            ("[release]\nslo_interval = \"0s\"\n", "release.slo_interval", "too short"),
            ("[server]\nio_threads = 5000\n", "server.io_threads", "more than 1024"),
            ("[server]\nio_threads = -1\n", "io_threads", "invalid value"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(says), "{text}: {e}");
        }
    }

    /// Event receivers: their types must be activities or prefixes, anchors take none, the
    /// source must be a URI reference, and egress applies to them.
    #[test]
    fn event_receivers_are_checked_at_load() {
        let c = parse(
            "[events]\nsource = \"/custos/prod\"\nfailover = \"10s\"\n[[events.webhooks]]\nurl = \"https://hooks.example.com/c\"\ntypes = [\"release.\", \"grant.*\", \"dpia.required\"]\nreveal = true\n",
        )
        .unwrap();
        assert_eq!(c.events.source, "/custos/prod");
        assert_eq!(c.events.webhooks[0].types.len(), 3);
        assert!(c.events.webhooks[0].reveal);
        assert_eq!(c.events.failover.0, Duration::from_secs(10));
        for (text, key) in [
            (
                "[[events.webhooks]]\nurl = \"https://h.example/c\"\ntypes = [\"Release!\"]\n",
                "events.webhooks[0].types[0]",
            ),
            (
                "[[events.webhooks]]\nurl = \"https://h.example/c\"\ntypes = [\"*\"]\n",
                "events.webhooks[0].types[0]",
            ),
            (
                "[[events.webhooks]]\nurl = \"ftp://h.example/c\"\n",
                "events.webhooks[0].url",
            ),
            (
                "[[audit.anchor_webhooks]]\nurl = \"https://h.example/c\"\ntypes = [\"grant.\"]\n",
                "audit.anchor_webhooks[0].types",
            ),
            ("[events]\nsource = \"two words\"\n", "events.source"),
            (
                "[egress]\nallow = [\"hooks.example.com\"]\n[[events.webhooks]]\nurl = \"https://other.example/h\"\n",
                "events.webhooks[0].url",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    /// Issue 25: outbound URLs outside `[egress] allow` are refused at load, naming the key.
    #[test]
    fn egress_refuses_urls_outside_the_allowed_hosts() {
        let providers = |url: &str| {
            format!(
                "[egress]\nallow = [\"api.openai.com\", \"*.internal.example\"]\n\n[[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"{url}\"\n\n[[models]]\nname = \"m\"\nprovider = \"up\"\n"
            )
        };
        assert!(parse(&providers("https://api.openai.com/v1")).is_ok());
        assert!(parse(&providers("http://llm.internal.example:8000/v1")).is_ok());
        for bad in [
            "https://evil.example/v1",
            "https://api.openai.com@evil.example/v1",
            "https://api.openai.com.evil.example/v1",
            "https://internal.example/v1",
        ] {
            let e = parse(&providers(bad)).unwrap_err().to_string();
            assert!(
                e.contains("providers[0].base_url")
                    && e.contains("not in [egress] allow")
                    && e.contains(":7"),
                "{bad}: {e}"
            );
        }
        let e = parse(
            "[egress]\nallow = [\"hooks.example.com\"]\n[[finops.webhooks]]\nurl = \"https://other.example/h\"\nsecret_env = \"S\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("finops.webhooks[0].url"), "{e}");
        let e = parse("[egress]\nallow = [\"bad host\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("egress.allow[0]"), "{e}");
        // Tool constraints and injection thresholds that cannot work are refused too.
        for (text, key) in [
            (
                "[[tools.constraints]]\ntool = \"f\"\nargument = \"q\"\npattern = \"(\"\n",
                "tools.constraints[0].pattern",
            ),
            (
                "[[tools.constraints]]\ntool = \"f\"\nargument = \"u\"\ndomains = [\"bad host\"]\n",
                "tools.constraints[0].domains",
            ),
            (
                "[[tools.constraints]]\ntool = \"f\"\nargument = \"u\"\n",
                "tools.constraints[0]",
            ),
            (
                "[[tools.constraints]]\ntool = \"f\"\nschema = { type = \"nonsense\" }\n",
                "tools.constraints[0].schema",
            ),
            (
                "[[tools.constraints]]\ntool = \"f\"\npattern = \"x\"\nschema = { type = \"object\" }\n",
                "name it in `argument`",
            ),
            (
                "[[tools.constraints]]\ntool = \"f\"\nschema_file = \"no-such-schema.json\"\n",
                "tools.constraints[0].schema_file",
            ),
            ("[injection]\nthreshold = 1.5\n", "injection.threshold"),
            ("[injection]\ndirect = \"maybe\"\n", "direct"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        // No list: anywhere.
        assert!(parse(&providers("https://evil.example/v1").replace(
            "[egress]\nallow = [\"api.openai.com\", \"*.internal.example\"]\n",
            ""
        ))
        .is_ok());
    }

    #[test]
    fn tool_schemas_come_inline_or_from_a_file_beside_the_config() {
        let c = parse(
            "[[tools.constraints]]\ntool = \"run_sql\"\nschema = { type = \"object\", required = [\"query\"], properties = { query = { type = \"string\", maxLength = 200 } } }\n",
        )
        .unwrap();
        let schema = c.tools.constraints[0].schema.as_ref().unwrap();
        assert_eq!(schema["properties"]["query"]["maxLength"], 200);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("schemas")).unwrap();
        std::fs::write(
            dir.path().join("schemas/fetch.json"),
            r#"{"type": "object", "properties": {"url": {"type": "string"}}}"#,
        )
        .unwrap();
        let file = dir.path().join("custos.toml");
        let toml =
            "[[tools.constraints]]\ntool = \"fetch\"\nschema_file = \"schemas/fetch.json\"\n";
        std::fs::write(&file, toml).unwrap();
        let c = Config::load(&file).unwrap();
        assert_eq!(
            c.tools.constraints[0].schema.as_ref().unwrap()["type"],
            "object"
        );
        std::fs::write(dir.path().join("schemas/fetch.json"), "{oops").unwrap();
        let e = Config::load(&file).unwrap_err().to_string();
        assert!(e.contains("is not JSON (line 1, column 2)"), "{e}");
    }

    #[test]
    fn starter_file_parses() {
        let c = parse(STARTER_TOML).unwrap();
        assert_eq!(c.server.listen.port(), 8080);
        assert_eq!(c.models.len(), 4);
    }

    #[test]
    fn jwt_issuers_are_checked() {
        let ok = parse(
            "[[auth.jwt]]\nissuer = \"https://idp\"\naudience = [\"custos\", \"api\"]\njwks_file = \"keys/jwks.json\"\ntenants = [\"acme\", \"globex\"]\n[auth.jwt.claims]\nroles = \"realm_access.roles\"\n",
        )
        .unwrap();
        let j = &ok.auth.jwt[0];
        assert_eq!(j.audience, ["custos", "api"]);
        assert_eq!(j.allowed_tenants().unwrap(), ["acme", "globex"]);
        assert_eq!(j.claims.roles, "realm_access.roles");
        assert_eq!(j.claims.tenant, "tenant");
        assert_eq!(j.scopes.chat, "custos:chat");
        assert_eq!(j.leeway.0, Duration::from_secs(60));
        assert!(j.jwks_file.as_ref().unwrap().ends_with("keys/jwks.json"));
        let err = |text: &str| parse(text).unwrap_err().to_string();
        // An issuer bound to no tenant would speak for all of them: refused.
        let e = err(
            "[[auth.jwt]]\nissuer = \"https://idp\"\naudience = \"custos\"\njwks_file = \"j\"\n",
        );
        assert!(e.contains("auth.jwt[0].tenants"), "{e}");
        let e = err("[[auth.jwt]]\nissuer = \"https://idp\"\naudience = \"custos\"\njwks_file = \"j\"\ntenant = \"acme\"\ndefault_tenant = \"globex\"\n");
        assert!(
            e.contains("default_tenant") && e.contains("not one of"),
            "{e}"
        );
        let one = parse("[[auth.jwt]]\nissuer = \"i\"\naudience = \"a\"\njwks_file = \"j\"\ntenant = \"acme\"\n").unwrap();
        assert_eq!(one.auth.jwt[0].allowed_tenants().unwrap(), ["acme"]);
        let all = parse("[[auth.jwt]]\nissuer = \"i\"\naudience = \"a\"\njwks_file = \"j\"\ntenants = [\"*\"]\n").unwrap();
        assert!(all.auth.jwt[0].allowed_tenants().is_none());
        let e = err(
            "[[auth.jwt]]\nissuer = \"https://idp\"\naudience = \"custos\"\ntenants = [\"*\"]\n",
        );
        assert!(
            e.contains("auth.jwt[0].jwks_file") && e.contains("exactly one"),
            "{e}"
        );
        let e = err("[[auth.jwt]]\nissuer = \"https://idp\"\naudience = \"custos\"\njwks_url = \"ftp://x\"\ntenants = [\"*\"]\n");
        assert!(e.contains("jwks_url"), "{e}");
        let e = err(
            "[[auth.jwt]]\nissuer = \"i\"\naudience = []\njwks_file = \"j\"\ntenants = [\"*\"]\n",
        );
        assert!(e.contains("audience"), "{e}");
        let e = err(
            "[[auth.jwt]]\nissuer = \"i\"\naudience = \"a\"\njwks_file = \"j\"\ntenants = [\"*\"]\nleeway = \"1h\"\n",
        );
        assert!(e.contains("leeway") && e.contains("10m"), "{e}");
    }

    #[test]
    fn type_error_names_line_and_key() {
        let e =
            parse("[server]\nlisten = \"127.0.0.1:8080\"\nmax_body_bytes = \"big\"\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.key.as_deref(), Some("server.max_body_bytes"), "{e}");
        assert!(e.to_string().starts_with("custos.toml:3:"), "{e}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let e = parse("[server]\nupstream_timeout = \"soon\"\n").unwrap_err();
        assert!(e.message.contains("invalid duration"), "{e}");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("[server\nlisten=1").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn inline_api_key_is_refused() {
        let text = "[[providers]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\napi_key = \"sk-123\"\n\n[[models]]\nname = \"m\"\nprovider = \"openai\"\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("providers[0].api_key"));
        assert_eq!(e.line, Some(5));
        assert!(!e.to_string().contains("sk-123"));
    }

    #[test]
    fn unknown_provider_reference_points_at_it() {
        let text = "[[providers]]\nname = \"mock\"\nkind = \"mock\"\n\n[[models]]\nname = \"m\"\nprovider = \"nope\"\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("models[0].provider"));
        assert_eq!(e.line, Some(7), "{e}");
        assert!(e.message.contains("configured: mock"));
    }

    #[test]
    fn providers_without_models_is_an_error() {
        let e = parse("[[providers]]\nname = \"mock\"\nkind = \"mock\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("models"));
    }

    #[test]
    fn cluster_redis_urls_never_carry_credentials() {
        let c = parse("[cluster]\nredis_url = \"redis://127.0.0.1:6379/0\"\non_redis_error = \"fail_closed\"\ntimeout = \"100ms\"\n").unwrap();
        assert_eq!(
            c.cluster.on_redis_error,
            RedisErrorModes::all(OnRedisError::FailClosed)
        );
        let t = parse("[cluster]\non_redis_error = { budgets = \"fail_closed\", idempotency = \"fail_open\" }\n").unwrap();
        assert_eq!(t.cluster.on_redis_error.quota, OnRedisError::Local);
        assert_eq!(t.cluster.on_redis_error.budgets, OnRedisError::FailClosed);
        assert_eq!(t.cluster.on_redis_error.idempotency, OnRedisError::FailOpen);
        let err = parse("[cluster]\non_redis_error = { rates = \"local\" }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("quota, budgets or idempotency"), "{err}");
        let err = parse("[cluster]\non_redis_error = { quota = \"maybe\" }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("fail_closed"), "{err}");
        assert_eq!(
            c.cluster.redis(None).as_deref(),
            Some("redis://127.0.0.1:6379/0")
        );
        assert_eq!(
            c.cluster.redis(Some("redis://r:6379")).as_deref(),
            Some("redis://r:6379")
        );
        let err = parse("[cluster]\nredis_url = \"redis://:hunter2@r:6379\"\n") // custos:allow (made up)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CUSTOS_REDIS_URL") && !err.contains("hunter2"),
            "{err}"
        );
        assert!(parse("[cluster]\nredis_url = \"http://r\"\n").is_err());
        assert!(parse("[cluster]\non_redis_error = \"maybe\"\n").is_err());
        assert_eq!(
            Config::default().cluster.on_redis_error,
            RedisErrorModes::all(OnRedisError::Local)
        );
    }

    #[test]
    fn console_cookies_are_secure_under_tls_an_https_public_url_or_when_asked() {
        let c = ConsoleConfig::default();
        assert!(!c.cookies_secure(false) && c.cookies_secure(true));
        let c = ConsoleConfig {
            oidc: Some(ConsoleOidcConfig {
                issuer: "https://idp.example".into(),
                client_id: "c".into(),
                client_secret_env: None,
                scopes: Vec::new(),
                public_url: Some("https://custos.example".into()),
                label: None,
                step_up_acr: None,
            }),
            ..ConsoleConfig::default()
        };
        assert!(c.cookies_secure(false));
        let c = ConsoleConfig {
            secure_cookies: Some(false),
            ..c
        };
        assert!(!c.cookies_secure(true), "an explicit setting wins");
        let c = parse("[console]\nsecure_cookies = true\nrisks = \"risks.yaml\"\n").unwrap();
        assert!(c.console.cookies_secure(false));
        assert_eq!(
            c.console.risks.as_deref(),
            Some(std::path::Path::new("risks.yaml"))
        );
    }

    #[test]
    fn a_model_routed_twice_names_the_earlier_provider() {
        let text = format!(
            "{}\n[[providers]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\napi_key_env = \"OPENAI_UPSTREAM_KEY\"\n\n[[models]]\nname = \"gpt-4o-mini\"\nprovider = \"openai\"\n",
            STARTER_TOML
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("routed twice")
                && err.contains("provider \"mock\"")
                && err.contains("change that entry"),
            "{err}"
        );
        // The template never suggests the variable clients keep their custos key in.
        assert!(!STARTER_TOML.contains("api_key_env = \"OPENAI_API_KEY\""));
    }

    #[test]
    fn database_url_precedence() {
        let c = parse("[database]\ndata_dir = \"/var/lib/custos\"\n").unwrap();
        assert_eq!(c.database.commit_interval.0, Duration::from_millis(10));
        let c2 = parse("[database]\ncommit_interval = \"50ms\"\n").unwrap();
        assert_eq!(c2.database.commit_interval.0, Duration::from_millis(50));
        let err = parse("[database]\ncommit_interval = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("database.commit_interval") && err.contains("invalid duration"),
            "{err}"
        );
        assert_eq!(c.database_url(None), "sqlite:///var/lib/custos/custos.db");
        assert_eq!(c.database_url(Some("postgres://h/db")), "postgres://h/db");
    }
}
