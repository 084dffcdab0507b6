//! The `Principal`: who is calling, as every control after authentication sees it.

use std::sync::Arc;

/// How the principal proved who it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMethod {
    /// A custos API key (`ck_live_…`).
    #[default]
    ApiKey,
    /// A JWT access token from a trusted OIDC issuer.
    Jwt,
    /// A client certificate on a mutual-TLS connection.
    Mtls,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Mtls => "mtls",
        }
    }
}

/// Which models a principal may call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ModelScope {
    /// Every routed model.
    #[default]
    Any,
    /// Only these public model names.
    Only(Vec<String>),
}

impl ModelScope {
    /// Parses a comma-separated list; `*` (or an empty list) means any model.
    pub fn parse(list: &str) -> Self {
        let models: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        if models.is_empty() || models.iter().any(|m| m == "*") {
            ModelScope::Any
        } else {
            ModelScope::Only(models)
        }
    }

    pub fn allows(&self, model: &str) -> bool {
        match self {
            ModelScope::Any => true,
            ModelScope::Only(list) => list.iter().any(|m| m == model),
        }
    }

    /// The storage form: `*` or a comma-separated list.
    pub fn to_list(&self) -> String {
        match self {
            ModelScope::Any => "*".into(),
            ModelScope::Only(list) => list.join(","),
        }
    }
}

/// An authenticated caller. Cheap to clone: shared behind an `Arc` on the hot path.
#[derive(Clone, Debug, Default)]
pub struct Principal {
    /// Id of the caller within its credential's namespace: the key id (`key_…`), the token
    /// subject, or the SPIFFE ID (or `cn:NAME`). Not unique across tenants or issuers: state
    /// and evidence are keyed by `uid`.
    pub id: String,
    /// The caller's id qualified by tenant, credential kind and issuer (see `qualify`), so
    /// `sub=alice` of one tenant or issuer never shares quotas, idempotency keys, grants or
    /// overrides with `alice` of another.
    pub uid: String,
    pub method: AuthMethod,
    /// Who vouched for the identity: the token issuer or the client CA; empty for API keys.
    pub issuer: String,
    /// Roles the credential carries (`developer`, `tenant-admin`, …).
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    /// OAuth scopes of a token; `None` when the credential is not scope-limited (API keys).
    pub scopes: Option<Vec<String>>,
    /// The caller proved a second factor.
    pub mfa: bool,
    pub tenant_id: String,
    pub tenant: String,
    pub team_id: String,
    pub team: String,
    pub app_id: String,
    pub app: String,
    /// Deployment environment the credential is for (`prod`, `staging`, `dev`, …).
    pub env: String,
    pub models: ModelScope,
    /// Requests per minute for this credential, if limited.
    pub rpm: Option<u32>,
    /// Tokens per minute for this credential, if limited.
    pub tpm: Option<u32>,
    /// Team-wide limits shared by every key of the team, if set.
    pub team_rpm: Option<u32>,
    pub team_tpm: Option<u32>,
}

impl Principal {
    /// The qualified id of a principal of `tenant_id`: `TENANT/key/KEY_ID`,
    /// `TENANT/jwt/ISSUER#SUBJECT`, `TENANT/mtls/SPIFFE_ID`.
    pub fn qualified_id(tenant_id: &str, method: AuthMethod, issuer: &str, id: &str) -> String {
        match method {
            AuthMethod::ApiKey => format!("{tenant_id}/key/{id}"),
            AuthMethod::Jwt => format!("{tenant_id}/jwt/{issuer}#{id}"),
            AuthMethod::Mtls => format!("{tenant_id}/mtls/{id}"),
        }
    }

    /// Sets `uid` from the tenant id, method, issuer and id; call once they are final.
    pub fn qualify(&mut self) {
        self.uid = Self::qualified_id(&self.tenant_id, self.method, &self.issuer, &self.id);
    }

    /// How grants and overrides name this principal within its tenant: the key id, the
    /// SPIFFE ID, or `ISSUER#SUBJECT` for tokens.
    pub fn grant_name(&self) -> String {
        match self.method {
            AuthMethod::Jwt => format!("{}#{}", self.issuer, self.id),
            AuthMethod::ApiKey | AuthMethod::Mtls => self.id.clone(),
        }
    }
}

pub type SharedPrincipal = Arc<Principal>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_ids_keep_tenants_and_issuers_apart() {
        let mut a = Principal {
            id: "alice".into(),
            method: AuthMethod::Jwt,
            issuer: "https://idp-a".into(),
            tenant_id: "ten_a".into(),
            ..Principal::default()
        };
        a.qualify();
        let mut b = a.clone();
        b.tenant_id = "ten_b".into();
        b.qualify();
        let mut c = a.clone();
        c.issuer = "https://idp-b".into();
        c.qualify();
        assert_eq!(a.uid, "ten_a/jwt/https://idp-a#alice");
        assert_ne!(a.uid, b.uid);
        assert_ne!(a.uid, c.uid);
        assert_eq!(a.grant_name(), "https://idp-a#alice");
    }

    #[test]
    fn model_scope() {
        assert_eq!(ModelScope::parse(""), ModelScope::Any);
        assert_eq!(ModelScope::parse("a,*"), ModelScope::Any);
        let s = ModelScope::parse(" gpt-4o-mini , text-embedding-3-small,");
        assert!(s.allows("gpt-4o-mini"));
        assert!(!s.allows("gpt-4o"));
        assert_eq!(s.to_list(), "gpt-4o-mini,text-embedding-3-small");
    }
}
