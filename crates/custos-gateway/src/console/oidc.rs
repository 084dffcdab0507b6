//! Console sign-in at an OIDC provider: the authorization code flow with PKCE (RFC 7636,
//! S256), `state` and `nonce`, the provider's endpoints from its discovery document. The
//! provider's access token must verify exactly as an API bearer token does (an
//! `[[auth.jwt]]` issuer's, with the admin scope), and its ID token for this client with
//! the nonce sent; the session then keeps the verified claims, never a token.

use super::session::{random_hex, Credential, TokenFacts, COOKIE, MAX_COOKIE};
use super::{cookies, error_page, safe_next, see_other, signin_page, Console};
use crate::providers::openai::{https_client, HttpClient};
use crate::refusals::ClientAddr;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Extension;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bytes::Bytes;
use custos_core::config::{ConsoleOidcConfig, EgressConfig};
use custos_core::time::now_ms;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// The cookie holding a sign-in in flight (state, nonce, verifier), for ten minutes.
const FLIGHT_COOKIE: &str = "custos_oidc";
const FLIGHT_LABEL: &[u8] = b"custos-console-oidc-v1\n";
const FLIGHT_MS: i64 = 600_000;
/// Largest discovery document or token answer read.
const MAX_ANSWER: usize = 256 * 1024;

/// The provider's endpoints, as its discovery document names them.
#[derive(Clone, Debug)]
struct Endpoints {
    authorization: String,
    token: String,
}

/// The sign-in: configuration, client secret (from the environment), HTTP client, and the
/// endpoints once discovered.
pub struct Oidc {
    cfg: ConsoleOidcConfig,
    secret: Option<String>,
    egress: EgressConfig,
    client: HttpClient,
    endpoints: tokio::sync::Mutex<Option<Endpoints>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.cfg.issuer)
            .field("client_id", &self.cfg.client_id)
            .finish_non_exhaustive()
    }
}

/// A sign-in in flight, sealed in its cookie.
#[derive(Serialize, Deserialize)]
struct Flight {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    redirect: String,
    exp: i64,
}

impl Oidc {
    pub fn new(cfg: &ConsoleOidcConfig, egress: &EgressConfig) -> Result<Self, String> {
        let secret = match &cfg.client_secret_env {
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Some(v.trim().to_owned()),
                _ => {
                    return Err(format!(
                        "console.oidc.client_secret_env names {var}, which is not set"
                    ))
                }
            },
            None => None,
        };
        Ok(Oidc {
            cfg: cfg.clone(),
            secret,
            egress: egress.clone(),
            client: https_client(Duration::from_secs(5)),
            endpoints: tokio::sync::Mutex::new(None),
        })
    }

    /// The sign-in button's text.
    pub fn label(&self) -> String {
        self.cfg.label.clone().unwrap_or_else(|| {
            format!(
                "Sign in with {}",
                custos_core::config::url_host(&self.cfg.issuer)
                    .unwrap_or_else(|| self.cfg.issuer.clone())
            )
        })
    }

    async fn fetch(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Vec<u8>), String> {
        let res = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| "no answer within 10 s".to_owned())?
            .map_err(|e| crate::providers::openai::error_chain(&e))?;
        let status = res.status();
        let body = Limited::new(res.into_body(), MAX_ANSWER);
        let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .map_err(|_| "the answer did not arrive within 10 s".to_owned())?
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok((status, body.to_bytes().to_vec()))
    }

    /// The endpoints, from `<issuer>/.well-known/openid-configuration` the first time.
    async fn endpoints(&self) -> Result<Endpoints, String> {
        let mut known = self.endpoints.lock().await;
        if let Some(e) = known.as_ref() {
            return Ok(e.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let req = http::Request::get(&url)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let (status, body) = self.fetch(req).await.map_err(|e| format!("{url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        let doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{url} is not a JSON discovery document: {e}"))?;
        // OIDC Discovery 1.0 §4.3: the document is the issuer's own.
        if doc["issuer"].as_str() != Some(self.cfg.issuer.as_str()) {
            return Err(format!(
                "{url} names issuer {}, not {:?}",
                doc["issuer"], self.cfg.issuer
            ));
        }
        let endpoint = |k: &str| -> Result<String, String> {
            let u = doc[k]
                .as_str()
                .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
                .ok_or_else(|| format!("{url} has no http(s) `{k}`"))?;
            self.egress.permits(u)?;
            Ok(u.to_owned())
        };
        let e = Endpoints {
            authorization: endpoint("authorization_endpoint")?,
            token: endpoint("token_endpoint")?,
        };
        *known = Some(e.clone());
        Ok(e)
    }

    /// Where the provider sends the browser back.
    fn redirect_uri(&self, headers: &HeaderMap, tls: bool) -> Option<String> {
        let base = match &self.cfg.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let host = headers.get(header::HOST)?.to_str().ok()?;
                if host.is_empty() || host.contains(['/', '\\', '@', ' ']) {
                    return None;
                }
                format!("{}://{host}", if tls { "https" } else { "http" })
            }
        };
        Some(format!("{base}/console/auth/callback"))
    }

    fn scopes(&self, admin_scope: &str) -> String {
        let mut scopes = vec!["openid".to_owned()];
        if self.cfg.scopes.is_empty() {
            if !admin_scope.is_empty() {
                scopes.push(admin_scope.to_owned());
            }
        } else {
            scopes.extend(self.cfg.scopes.iter().cloned());
        }
        scopes.join(" ")
    }
}

/// `BASE64URL(SHA-256(verifier))` (RFC 7636 §4.2, S256).
fn challenge(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

fn flight_cookie(console: &Console, value: &str, max_age: i64) -> Option<HeaderValue> {
    // The provider's redirect back is a cross-site navigation, which SameSite=Strict cookies
    // do not accompany; Lax ones do (top-level GET), and this one only holds the flight.
    let strict = console.sessions.cookie(FLIGHT_COOKIE, value, max_age);
    HeaderValue::from_str(&strict.replace("SameSite=Strict", "SameSite=Lax")).ok()
}

#[derive(Deserialize)]
pub(crate) struct StartQuery {
    next: Option<String>,
    /// Ask the provider to authenticate again with a second factor.
    step_up: Option<String>,
}

/// The PAPE multi-factor policy (OpenID Provider Authentication Policy Extension 1.0).
const MULTI_FACTOR_ACR: &str = "http://schemas.openid.net/pape/policies/2007/06/multi-factor";

/// Sends the browser to the provider with a fresh state, nonce and PKCE challenge.
pub(crate) async fn start(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Response {
    let Some(oidc) = &console.oidc else {
        return error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No OIDC sign-in is configured ([console.oidc]).",
        );
    };
    let step_up = q
        .step_up
        .as_deref()
        .is_some_and(|v| v == "1" || v == "true");
    let unavailable = |why: String| {
        tracing::warn!(error = %why, "console OIDC sign-in could not start");
        signin_page(
            &console,
            q.next.as_deref(),
            Some(&format!("The identity provider cannot be reached: {why}")),
            StatusCode::BAD_GATEWAY,
        )
    };
    let endpoints = match oidc.endpoints().await {
        Ok(e) => e,
        Err(e) => return unavailable(e),
    };
    let Some(redirect) = oidc.redirect_uri(&headers, s.config.server.tls.is_some()) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The request names no usable Host; set [console.oidc] public_url.",
        );
    };
    let flight = Flight {
        state: random_hex(16),
        nonce: random_hex(16),
        verifier: B64.encode(hex::decode(random_hex(32)).unwrap_or_default()),
        next: safe_next(q.next.as_deref()),
        redirect: redirect.clone(),
        exp: now_ms() + FLIGHT_MS,
    };
    let admin_scope = s
        .issuers
        .scopes_of(&oidc.cfg.issuer)
        .map(|sc| sc.admin.clone())
        .unwrap_or_default();
    let query: String = {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("response_type", "code")
            .append_pair("client_id", &oidc.cfg.client_id)
            .append_pair("redirect_uri", &redirect)
            .append_pair("scope", &oidc.scopes(&admin_scope))
            .append_pair("state", &flight.state)
            .append_pair("nonce", &flight.nonce)
            .append_pair("code_challenge", &challenge(&flight.verifier))
            .append_pair("code_challenge_method", "S256");
        if step_up {
            q.append_pair("prompt", "login")
                .append_pair("max_age", "0")
                .append_pair(
                    "acr_values",
                    oidc.cfg.step_up_acr.as_deref().unwrap_or(MULTI_FACTOR_ACR),
                );
        }
        q.finish()
    };
    let sep = if endpoints.authorization.contains('?') {
        '&'
    } else {
        '?'
    };
    let mut res = see_other(&format!("{}{sep}{query}", endpoints.authorization));
    let sealed = console.sessions.seal_value(FLIGHT_LABEL, &flight);
    if let Some(c) = flight_cookie(&console, &sealed, FLIGHT_MS / 1000) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where the provider sends the browser back: checks the state, redeems the code with the
/// verifier, verifies both tokens and starts the session.
pub(crate) async fn callback(
    State(s): State<AppState>,
    Extension(console): Extension<Arc<Console>>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(oidc) = &console.oidc else {
        return error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "No OIDC sign-in is configured ([console.oidc]).",
        );
    };
    let refuse = |status: StatusCode, why: &str| {
        let mut r = signin_page(&console, None, Some(why), status);
        if let Some(c) = flight_cookie(&console, "", 0) {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
        r
    };
    let jar = cookies(&headers);
    let flight: Flight =
        match super::session::cookie_value(&jar, FLIGHT_COOKIE)
            .map(|c| console.sessions.open_value::<Flight>(FLIGHT_LABEL, c))
        {
            Some(Ok(f)) if f.exp > now_ms() => f,
            _ => return refuse(
                StatusCode::BAD_REQUEST,
                "This sign-in was not started here, or took longer than ten minutes. Start again.",
            ),
        };
    if q.state.as_deref() != Some(flight.state.as_str()) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The provider's answer does not belong to this sign-in (its state differs). Start again.",
        );
    }
    if let Some(e) = &q.error {
        let detail = q.error_description.as_deref().unwrap_or("");
        return refuse(
            StatusCode::UNAUTHORIZED,
            &format!("The identity provider refused the sign-in: {e} {detail}"),
        );
    }
    let Some(code) = q
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 4096)
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The provider's answer carries no code.",
        );
    };
    let endpoints = match oidc.endpoints().await {
        Ok(e) => e,
        Err(e) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                &format!("The identity provider cannot be reached: {e}"),
            )
        }
    };
    // The serializer is not Send, so it is done with before anything is awaited.
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &flight.redirect)
            .append_pair("client_id", &oidc.cfg.client_id)
            .append_pair("code_verifier", &flight.verifier);
        if let Some(secret) = &oidc.secret {
            form.append_pair("client_secret", secret);
        }
        form.finish()
    };
    let req = http::Request::post(&endpoints.token)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)));
    let answer = match req.map_err(|e| e.to_string()) {
        Ok(req) => oidc.fetch(req).await,
        Err(e) => Err(e),
    };
    let tokens: TokenAnswer = match answer {
        Ok((_, body)) => match serde_json::from_slice(&body) {
            Ok(t) => t,
            Err(_) => {
                return refuse(
                    StatusCode::BAD_GATEWAY,
                    "The token endpoint's answer is not JSON.",
                )
            }
        },
        Err(e) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                &format!("The token endpoint cannot be reached: {e}"),
            )
        }
    };
    let (Some(access), Some(id)) = (tokens.access_token.as_deref(), tokens.id_token.as_deref())
    else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            &format!(
                "The token endpoint gave no tokens: {} {}",
                tokens.error.as_deref().unwrap_or("(no error named)"),
                tokens.error_description.as_deref().unwrap_or("")
            ),
        );
    };
    match s
        .issuers
        .verify_id_token(id, &oidc.cfg.issuer, &oidc.cfg.client_id)
        .await
    {
        Ok((_, Some(nonce))) if nonce == flight.nonce => {}
        Ok(_) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "The ID token's nonce is not this sign-in's.",
            )
        }
        Err(e) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                &format!("The ID token does not verify: {e}"),
            )
        }
    }
    let (claims, scopes) = match s.issuers.verify(access).await {
        Ok(v) => v,
        Err(e) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                &format!("The provider's access token is not one the custos API accepts ({e}); have the provider issue JWT access tokens for the API's audience"),
            )
        }
    };
    if claims.issuer != oidc.cfg.issuer {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "The access token is another issuer's.",
        );
    }
    if !scopes.admin.is_empty() && !claims.scopes.contains(&scopes.admin) {
        return refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "The access token lacks the scope {:?} the admin API and the console need.",
                scopes.admin
            ),
        );
    }
    let principal = match s.directory.principal(claims.clone()) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            return refuse(
                StatusCode::FORBIDDEN,
                &format!("The token names no principal here: {e}"),
            )
        }
    };
    let now = now_ms();
    let session = console.sessions.start_until(
        Credential::Token {
            c: TokenFacts::of(&claims),
        },
        now,
        claims.expires_at.saturating_mul(1000),
    );
    let sealed = console.sessions.seal(&session);
    if sealed.len() > MAX_COOKIE {
        return refuse(
            StatusCode::FORBIDDEN,
            "The token carries too many roles or groups to fit a session cookie; narrow the claims the provider sends.",
        );
    }
    let actor = crate::admin::actor_for(&s, &principal, &headers, addr.map(|a| a.0 .0.to_string()));
    s.audit
        .append(&custos_control::signed_in(&actor, "console"))
        .await;
    // The provider's redirect started this navigation on another site, so a redirect from
    // here would arrive without the SameSite=Strict session cookie; a page of this origin
    // that moves on by itself carries it.
    let next = safe_next(Some(&flight.next));
    let page = super::view::bare(
        "Signed in",
        maud::html! {
            meta http-equiv="refresh" content={ "0;url=" (next) };
            main.signin {
                h1 { "Signed in" }
                p { a href=(next) { "Continue to the console" } }
            }
        },
    );
    let mut res = super::html_page(page);
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&console.sessions.cookie(
        COOKIE,
        &sealed,
        console.sessions.ttl_secs(),
    )) {
        h.append(header::SET_COOKIE, v);
    }
    if let Some(c) = flight_cookie(&console, "", 0) {
        h.append(header::SET_COOKIE, c);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_rfc_7636s() {
        // RFC 7636, Appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
