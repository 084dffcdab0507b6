//! The web console at `/console`: server-rendered pages over the same store, control plane
//! and Cedar policies as the admin API. A thin surface: each page authorizes its read with
//! the admin API's action, each form is one `custos-control` call, and sessions are signed
//! cookies (see `session`) re-checked against the key index on every request.
//!
//! Every response carries a strict CSP (scripts and styles from this origin only, no inline
//! code); every form carries a CSRF token bound to the session, and a cross-site `Origin`
//! or `Sec-Fetch-Site` refuses a change before the token is read.

// A refusal is the page to answer (a redirect, a 403), returned as it is.
#![allow(clippy::result_large_err)]

/// The value of a `Result`, or its refusal (the page to answer) returned at once.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

mod audit;
mod models;
pub mod oidc;
mod pages;
pub mod session;
mod stats;
mod view;

use crate::problem::ProblemKind;
use crate::refusals::ClientAddr;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use custos_authz::policy::Resource;
use custos_authz::{KeyCheck, KeyDigest};
use custos_control::Actor;
use custos_core::principal::SharedPrincipal;
use custos_core::time::now_ms;
use custos_core::Reason;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use maud::{html, Markup};
use session::{cookie_value, Credential, Session, Sessions, COOKIE, SIGNIN_COOKIE};
use std::collections::HashMap;

/// Largest form body read (a reason is the longest field).
const MAX_FORM: usize = 64 * 1024;

/// What every console response carries.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the console keeps: the session signer and, when configured, the OIDC sign-in.
#[derive(Debug)]
pub struct Console {
    pub sessions: Sessions,
    pub oidc: Option<oidc::Oidc>,
}

/// The console's routes.
pub fn router(console: std::sync::Arc<Console>) -> Router<AppState> {
    Router::new()
        .route("/console", get(pages::overview))
        .route("/console/", get(pages::overview))
        .route("/console/signin", get(signin_form).post(signin))
        .route("/console/signout", post(pages::signout))
        .route("/console/signin/oidc", get(oidc::start))
        .route("/console/auth/callback", get(oidc::callback))
        .route("/console/spend", get(pages::spend))
        .route("/console/spend.csv", get(pages::spend_csv))
        .route("/console/access", get(pages::access))
        .route("/console/access/keys/{id}/revoke", post(pages::revoke_key))
        .route(
            "/console/access/grants/{id}/decide",
            post(pages::decide_grant),
        )
        .route("/console/access/review", post(pages::access_review))
        .route("/console/releases", get(pages::releases))
        .route("/console/releases/{id}", get(pages::release))
        .route("/console/releases/{id}/decide", post(pages::decide_release))
        .route("/console/models", get(models::list))
        .route("/console/models/{name}/{version}", get(models::show))
        .route("/console/audit", get(audit::list))
        .route("/console/audit/{index}", get(audit::entry))
        .route("/console/audit/{index}/proof.json", get(audit::proof))
        .route("/console/assets/{name}", get(asset))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(Extension(console))
}

/// Strict headers on every console response, errors included.
async fn security_headers(req: axum::extract::Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// A signed-in viewer: the principal its credential stands for, now, and the session.
pub(crate) struct Viewer {
    pub principal: SharedPrincipal,
    pub session: Session,
    pub csrf: String,
    who: String,
    pub source: Option<String>,
    pub headers: HeaderMap,
}

impl Viewer {
    /// The tenant a page shows: `?tenant=`, else the viewer's own.
    pub fn tenant(&self, asked: Option<&str>) -> String {
        asked
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or(&self.principal.tenant)
            .to_owned()
    }

    pub fn actor(&self, s: &AppState) -> Actor {
        crate::admin::actor_for(s, &self.principal, &self.headers, self.source.clone())
    }

    pub fn frame<'a>(
        &'a self,
        title: &'a str,
        current: &'a str,
        tenant: &'a str,
    ) -> view::Frame<'a> {
        view::Frame {
            title,
            current,
            tenant,
            who: &self.who,
            csrf: &self.csrf,
        }
    }
}

/// Why there is no viewer: where to send the browser.
fn to_signin(path_and_query: &str, why: Option<&str>) -> Response {
    let mut target = format!("/console/signin?next={}", view::enc(path_and_query));
    if let Some(w) = why {
        target.push_str("&why=");
        target.push_str(&view::enc(w));
    }
    let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response();
    // An invalid session cookie is dropped so the browser stops sending it.
    if why.is_some() {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict"
        )) {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    res
}

/// Every `Cookie` header of a request, as one.
pub(crate) fn cookies(headers: &HeaderMap) -> String {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The viewer of a request, or the redirect to sign in.
pub(crate) fn viewer(
    s: &AppState,
    sessions: &Sessions,
    headers: &HeaderMap,
    addr: Option<ClientAddr>,
    path_and_query: &str,
) -> Result<Viewer, Response> {
    let cookies = cookies(headers);
    let Some(raw) = cookie_value(&cookies, COOKIE) else {
        return Err(to_signin(path_and_query, None));
    };
    let session = match sessions.open(raw, now_ms()) {
        Ok(s) => s,
        Err(e) => return Err(to_signin(path_and_query, Some(&e.to_string()))),
    };
    let principal = match &session.credential {
        Credential::Key { d } => {
            let Some(digest) = KeyDigest::from_hex(d) else {
                return Err(to_signin(path_and_query, Some("the session is malformed")));
            };
            match s.keys.check_digest(&digest) {
                KeyCheck::Valid(p) => p,
                KeyCheck::Revoked { key_id } => {
                    return Err(to_signin(
                        path_and_query,
                        Some(&format!("API key {key_id} was revoked")),
                    ))
                }
                KeyCheck::Expired { key_id } => {
                    return Err(to_signin(
                        path_and_query,
                        Some(&format!("API key {key_id} has expired")),
                    ))
                }
                KeyCheck::Unknown | KeyCheck::Malformed(_) => {
                    return Err(to_signin(
                        path_and_query,
                        Some("the key this session signed in with is gone"),
                    ))
                }
            }
        }
        // The claims were verified at sign-in and the session ends when the token does; the
        // directory maps them to today's tenant and team, as for an API call.
        Credential::Token { c } => match s.directory.principal(c.claims()) {
            Ok(p) => std::sync::Arc::new(p),
            Err(e) => {
                return Err(to_signin(
                    path_and_query,
                    Some(&format!(
                        "the sign-in no longer names a principal here: {e}"
                    )),
                ))
            }
        },
    };
    let csrf = sessions.csrf(&session.n);
    // A short name for the header: the key id and its team/app.
    let who = if principal.team.is_empty() {
        principal.id.clone()
    } else {
        format!("{} ({}/{})", principal.id, principal.team, principal.app)
    };
    Ok(Viewer {
        who,
        principal,
        session,
        csrf,
        source: addr.map(|a| a.0.to_string()),
        headers: headers.clone(),
    })
}

/// Refuses a change from another site: a cross-site `Sec-Fetch-Site`, or an `Origin` that
/// is not this host.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let origin_host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or("");
            !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
        }
    }
}

/// A form body's fields; repeated names keep the last value.
pub fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Checks a change's origin and CSRF token; the 403 page when either fails.
pub(crate) fn check_change(
    sessions: &Sessions,
    v: &Viewer,
    f: &HashMap<String, String>,
) -> Result<(), Response> {
    if !same_origin(&v.headers) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "This change came from another site, so it was refused.",
        ));
    }
    let token = f.get("csrf").map(String::as_str).unwrap_or("");
    if !sessions.csrf_ok(&v.session.n, token) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form's security token is missing or stale. Reload the page and try again.",
        ));
    }
    Ok(())
}

/// A reason from a form's `why` and `ticket`, or the 400 page saying what is wrong.
pub(crate) fn form_reason(f: &HashMap<String, String>) -> Result<Reason, Response> {
    let why = f.get("why").map(|s| s.trim()).filter(|s| !s.is_empty());
    let ticket = f.get("ticket").map(|s| s.trim()).filter(|s| !s.is_empty());
    Reason::new(why, ticket)
        .map_err(|e| error_page(StatusCode::BAD_REQUEST, "Invalid request", &e.to_string()))
}

/// Decides `action` on `tenant` with the Cedar policies; a denial is recorded in the
/// ledger like the admin API's, and its reason returned.
pub(crate) async fn decide(
    s: &AppState,
    v: &Viewer,
    action: &str,
    tenant: &str,
) -> Result<(), String> {
    let resource = Resource::Tenant(tenant.to_owned());
    let decision = match s.authz.decide_facts(s, &v.principal, action, &resource, "") {
        Ok((d, _)) => d,
        Err(e) => {
            tracing::error!(error = %e, "console authorization could not be evaluated; denied");
            return Err(
                "The request could not be evaluated against the policies, so it is denied.".into(),
            );
        }
    };
    if decision.allowed {
        return Ok(());
    }
    let event = custos_control::denial(&v.actor(s), action, tenant, &decision, &Reason::default());
    s.audit.append(&event).await;
    s.audit.flush().await;
    Err(format!(
        "{action} on tenant {tenant:?} is denied: {}",
        decision.reason()
    ))
}

/// Whether the policies let the viewer read the whole installation (`.global`), for the
/// parts of a page that span every tenant. Asked quietly: not having them is no refusal.
pub(crate) fn sees_everything(s: &AppState, v: &Viewer) -> bool {
    s.authz
        .decide_facts(
            s,
            &v.principal,
            "audit.read",
            &Resource::Tenant(custos_control::GLOBAL.into()),
            "",
        )
        .is_ok_and(|(d, _)| d.allowed)
}

/// Like `decide`, answering a denial with the 403 page.
pub(crate) async fn authorize(
    s: &AppState,
    v: &Viewer,
    action: &str,
    tenant: &str,
) -> Result<(), Response> {
    decide(s, v, action, tenant)
        .await
        .map_err(|why| error_page(StatusCode::FORBIDDEN, "Access denied", &why))
}

/// A page for an error, with a way back.
pub(crate) fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = view::bare(
        title,
        html! {
            main.signin {
                h1 { (title) }
                p { (detail) }
                p { a href="/console" { "Back to the console" } }
            }
        },
    );
    (status, html_headers(), body.into_string()).into_response()
}

fn html_headers() -> [(header::HeaderName, &'static str); 1] {
    [(header::CONTENT_TYPE, "text/html; charset=utf-8")]
}

/// An HTML page answer.
pub(crate) fn html_page(m: Markup) -> Response {
    (html_headers(), m.into_string()).into_response()
}

/// The 303 that follows a change, to the page that shows it.
pub(crate) fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

/// Where a sign-in may return to: a console path, never another site.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/console" || n.starts_with("/console/") || n.starts_with("/console?"))
                && !n.contains("//")
                && !n.contains('\\')
                && !n.starts_with("/console/signin") =>
        {
            n.to_owned()
        }
        _ => "/console".to_owned(),
    }
}

#[derive(serde::Deserialize)]
struct SigninQuery {
    next: Option<String>,
    why: Option<String>,
}

/// The sign-in form; its CSRF token is bound to a nonce cookie set here.
async fn signin_form(
    Extension(console): Extension<std::sync::Arc<Console>>,
    Query(q): Query<SigninQuery>,
) -> Response {
    signin_page(
        &console,
        q.next.as_deref(),
        q.why.as_deref(),
        StatusCode::OK,
    )
}

pub(crate) fn signin_page(
    console: &Console,
    next: Option<&str>,
    why: Option<&str>,
    status: StatusCode,
) -> Response {
    let sessions = &console.sessions;
    let nonce = session::random_hex(16);
    let csrf = sessions.csrf(&nonce);
    let next = safe_next(next);
    let body = view::bare(
        "Sign in",
        html! {
            main.signin {
                h1 { "Sign in to custos" }
                @if let Some(w) = why {
                    (view::notice(w, "error"))
                }
                @if let Some(o) = &console.oidc {
                    p { a.button href={ "/console/signin/oidc?next=" (view::enc(&next)) } { (o.label()) } }
                    p.hint { "Or with an API key:" }
                }
                form method="post" action="/console/signin" {
                    (view::csrf_field(&csrf))
                    input type="hidden" name="next" value=(next);
                    label {
                        "API key"
                        input type="password" name="key" autocomplete="off" required
                            placeholder="ck_…" autofocus;
                    }
                    button type="submit" { "Sign in" }
                }
                p.hint {
                    "Use a custos API key of your tenant. Pages show what the tenant's policies "
                    "let that key read; changes are recorded in the ledger under its name."
                }
            }
        },
    );
    let mut res = (status, html_headers(), body.into_string()).into_response();
    if let Ok(v) = HeaderValue::from_str(&sessions.cookie(SIGNIN_COOKIE, &nonce, 3600)) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// Checks the key and starts a session; a refused key is counted like a refused call.
async fn signin(
    State(s): State<AppState>,
    Extension(console): Extension<std::sync::Arc<Console>>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sessions = &console.sessions;
    let f = form(&body);
    let next = f.get("next").map(String::as_str);
    let cookies = cookies(&headers);
    let nonce = cookie_value(&cookies, SIGNIN_COOKIE).unwrap_or("");
    let token = f.get("csrf").map(String::as_str).unwrap_or("");
    if !same_origin(&headers) || !sessions.csrf_ok(nonce, token) {
        return signin_page(
            &console,
            next,
            Some("The sign-in form was stale or came from another site. Try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let key = f.get("key").map(|k| k.trim()).unwrap_or("");
    let refused = |why: String| {
        s.metrics.auth_failure(ProblemKind::InvalidApiKey.slug());
        s.refusals.note(
            addr.as_ref().map(|a| a.0 .0),
            ProblemKind::InvalidApiKey.slug(),
        );
        signin_page(&console, next, Some(&why), StatusCode::UNAUTHORIZED)
    };
    let principal = match s.keys.check(key) {
        KeyCheck::Valid(p) => p,
        KeyCheck::Malformed(e) => return refused(format!("That is not a custos API key: {e}.")),
        KeyCheck::Unknown => return refused("No such API key.".into()),
        KeyCheck::Expired { key_id } => return refused(format!("API key {key_id} has expired.")),
        KeyCheck::Revoked { key_id } => return refused(format!("API key {key_id} was revoked.")),
    };
    let session = sessions.start(
        Credential::Key {
            d: KeyDigest::of(key).to_hex(),
        },
        now_ms(),
    );
    let actor = crate::admin::actor_for(&s, &principal, &headers, addr.map(|a| a.0 .0.to_string()));
    s.audit
        .append(&custos_control::signed_in(&actor, "console"))
        .await;
    let mut res = see_other(&safe_next(next));
    let h = res.headers_mut();
    for c in [
        sessions.cookie(COOKIE, &sessions.seal(&session), sessions.ttl_secs()),
        sessions.cookie(SIGNIN_COOKIE, "", 0),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_returns_only_to_console_paths() {
        assert_eq!(safe_next(Some("/console/spend?x=1")), "/console/spend?x=1");
        assert_eq!(safe_next(Some("/console?tenant=a")), "/console?tenant=a");
        for bad in [
            "https://evil.example/",
            "//evil.example/console",
            "/console//evil",
            "/consolex",
            "/console/signin",
            "/console\\@evil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console", "{bad}");
        }
        assert_eq!(safe_next(None), "/console");
    }

    #[test]
    fn changes_from_other_sites_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h));
    }
}
