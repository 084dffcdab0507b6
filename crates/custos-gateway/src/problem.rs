//! RFC 9457 `application/problem+json` errors with a stable `type` per error.
//!
//! Each body also carries an OpenAI-style `error` member, so the official SDKs show the same
//! message their users already know how to read.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde_json::json;

/// Every kind of error custos answers with. The slug is part of the public API: never
/// rename one; add new kinds instead. `docs/problems.md` documents each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    MissingApiKey,
    InvalidApiKey,
    ExpiredApiKey,
    RevokedApiKey,
    TokenTooLarge,
    TokenMalformed,
    TokenAlgorithmRefused,
    TokenUnknownKey,
    TokenBadSignature,
    TokenExpired,
    TokenNotYetValid,
    TokenWrongAudience,
    TokenWrongIssuer,
    TokenClaims,
    InsufficientScope,
    CertificateNotMapped,
    AccessDenied,
    Conflict,
    ModelNotAllowed,
    PiiBlocked,
    PromptInjection,
    ToolNotAllowed,
    ToolCallRefused,
    BudgetExhausted,
    ModelNotFound,
    MalformedJson,
    InvalidRequest,
    BodyTooLarge,
    RateLimitRequests,
    RateLimitTokens,
    RequestTooLargeForLimit,
    IdempotencyKeyInvalid,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    UpstreamUnavailable,
    UpstreamTimeout,
    UpstreamInvalid,
    NotFound,
    MethodNotAllowed,
    NotReady,
    BodyTimeout,
    Overloaded,
    NotAcceptable,
    ReasonRequired,
    ModelUnverified,
    ReleaseFrozen,
    LegalHold,
    Internal,
}

impl ProblemKind {
    /// Every kind, for documentation checks.
    pub const ALL: [ProblemKind; 48] = {
        use ProblemKind::*;
        [
            MissingApiKey,
            InvalidApiKey,
            ExpiredApiKey,
            RevokedApiKey,
            TokenTooLarge,
            TokenMalformed,
            TokenAlgorithmRefused,
            TokenUnknownKey,
            TokenBadSignature,
            TokenExpired,
            TokenNotYetValid,
            TokenWrongAudience,
            TokenWrongIssuer,
            TokenClaims,
            InsufficientScope,
            CertificateNotMapped,
            AccessDenied,
            Conflict,
            ModelNotAllowed,
            PiiBlocked,
            PromptInjection,
            ToolNotAllowed,
            ToolCallRefused,
            BudgetExhausted,
            ModelNotFound,
            MalformedJson,
            InvalidRequest,
            BodyTooLarge,
            RateLimitRequests,
            RateLimitTokens,
            RequestTooLargeForLimit,
            IdempotencyKeyInvalid,
            IdempotencyInFlight,
            IdempotencyKeyReused,
            UpstreamUnavailable,
            UpstreamTimeout,
            UpstreamInvalid,
            NotFound,
            MethodNotAllowed,
            NotReady,
            BodyTimeout,
            Overloaded,
            NotAcceptable,
            ReasonRequired,
            ModelUnverified,
            ReleaseFrozen,
            LegalHold,
            Internal,
        ]
    };

    pub fn slug(self) -> &'static str {
        use ProblemKind::*;
        match self {
            MissingApiKey => "missing-api-key",
            InvalidApiKey => "invalid-api-key",
            ExpiredApiKey => "expired-api-key",
            RevokedApiKey => "revoked-api-key",
            TokenTooLarge => "token-too-large",
            TokenMalformed => "token-malformed",
            TokenAlgorithmRefused => "token-algorithm-refused",
            TokenUnknownKey => "token-unknown-key",
            TokenBadSignature => "token-bad-signature",
            TokenExpired => "token-expired",
            TokenNotYetValid => "token-not-yet-valid",
            TokenWrongAudience => "token-wrong-audience",
            TokenWrongIssuer => "token-wrong-issuer",
            TokenClaims => "token-claims",
            InsufficientScope => "insufficient-scope",
            AccessDenied => "access-denied",
            CertificateNotMapped => "certificate-not-mapped",
            Conflict => "conflict",
            PiiBlocked => "pii-blocked",
            PromptInjection => "prompt-injection",
            ToolNotAllowed => "tool-not-allowed",
            ToolCallRefused => "tool-call-refused",
            BudgetExhausted => "budget-exhausted",
            ModelNotAllowed => "model-not-allowed",
            ModelNotFound => "model-not-found",
            MalformedJson => "malformed-json",
            InvalidRequest => "invalid-request",
            BodyTooLarge => "body-too-large",
            RateLimitRequests => "rate-limit-requests",
            RateLimitTokens => "rate-limit-tokens",
            RequestTooLargeForLimit => "request-too-large-for-limit",
            IdempotencyKeyInvalid => "idempotency-key-invalid",
            IdempotencyInFlight => "idempotency-in-flight",
            IdempotencyKeyReused => "idempotency-key-reused",
            UpstreamUnavailable => "upstream-unavailable",
            UpstreamTimeout => "upstream-timeout",
            UpstreamInvalid => "upstream-invalid-response",
            NotFound => "not-found",
            MethodNotAllowed => "method-not-allowed",
            NotReady => "not-ready",
            BodyTimeout => "body-timeout",
            Overloaded => "overloaded",
            NotAcceptable => "not-acceptable",
            ReasonRequired => "reason-required",
            ModelUnverified => "model-unverified",
            ReleaseFrozen => "release-frozen",
            LegalHold => "legal-hold",
            Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        use ProblemKind::*;
        match self {
            MissingApiKey
            | InvalidApiKey
            | ExpiredApiKey
            | RevokedApiKey
            | TokenTooLarge
            | TokenMalformed
            | TokenAlgorithmRefused
            | TokenUnknownKey
            | TokenBadSignature
            | TokenExpired
            | TokenNotYetValid
            | TokenWrongAudience
            | TokenWrongIssuer
            | TokenClaims
            | CertificateNotMapped => StatusCode::UNAUTHORIZED,
            ModelNotAllowed | PiiBlocked | PromptInjection | ToolNotAllowed | InsufficientScope
            | AccessDenied => StatusCode::FORBIDDEN,
            BudgetExhausted => StatusCode::PAYMENT_REQUIRED,
            ModelNotFound | NotFound => StatusCode::NOT_FOUND,
            MalformedJson | InvalidRequest | IdempotencyKeyInvalid => StatusCode::BAD_REQUEST,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RateLimitRequests | RateLimitTokens | RequestTooLargeForLimit => {
                StatusCode::TOO_MANY_REQUESTS
            }
            IdempotencyInFlight | Conflict | ReleaseFrozen | LegalHold => StatusCode::CONFLICT,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            UpstreamUnavailable | UpstreamInvalid | ToolCallRefused => StatusCode::BAD_GATEWAY,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            NotReady | Overloaded | ModelUnverified => StatusCode::SERVICE_UNAVAILABLE,
            NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            ReasonRequired => StatusCode::UNPROCESSABLE_ENTITY,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn title(self) -> &'static str {
        use ProblemKind::*;
        match self {
            MissingApiKey => "No API key was sent",
            InvalidApiKey => "The API key is not valid",
            ExpiredApiKey => "The API key has expired",
            RevokedApiKey => "The API key was revoked",
            TokenTooLarge => "The bearer token is too large",
            TokenMalformed => "The bearer token is not a well-formed JWT",
            TokenAlgorithmRefused => "The token's signature algorithm is refused",
            TokenUnknownKey => "The token was signed by a key the issuer does not publish",
            TokenBadSignature => "The token's signature does not verify",
            TokenExpired => "The token has expired",
            TokenNotYetValid => "The token is not valid yet",
            TokenWrongAudience => "The token is for another audience",
            TokenWrongIssuer => "The token's issuer is not trusted",
            TokenClaims => "The token's claims do not name a usable principal",
            InsufficientScope => "The token lacks the scope this operation needs",
            AccessDenied => "Policy denies this request",
            CertificateNotMapped => "The client certificate is not mapped to a principal",
            Conflict => "The change conflicts with the current state",
            ModelNotAllowed => "This key may not use the model",
            PiiBlocked => "The request holds personal data this policy blocks",
            PromptInjection => "The request holds a prompt injection this policy blocks",
            ToolNotAllowed => "The request offers a tool this app may not use",
            ToolCallRefused => "The model called a tool this app may not use",
            BudgetExhausted => "A budget this call is charged to is used up",
            ModelNotFound => "The model does not exist",
            MalformedJson => "The request body is not valid JSON",
            InvalidRequest => "The request is not valid",
            BodyTooLarge => "The request body is too large",
            RateLimitRequests => "Too many requests",
            RateLimitTokens => "Too many tokens",
            RequestTooLargeForLimit => "The request is larger than the token limit",
            IdempotencyKeyInvalid => "The Idempotency-Key header is not valid",
            IdempotencyInFlight => "A request with this Idempotency-Key is still in progress",
            IdempotencyKeyReused => "The Idempotency-Key was used with a different request",
            UpstreamUnavailable => "The model provider could not be reached",
            UpstreamTimeout => "The model provider did not answer in time",
            UpstreamInvalid => "The model provider sent an invalid response",
            NotFound => "No such endpoint",
            MethodNotAllowed => "Method not allowed",
            NotReady => "custos is not ready",
            BodyTimeout => "The request body did not arrive in time",
            Overloaded => "custos is shedding load",
            NotAcceptable => "no supported version of the admin API was asked for",
            ReasonRequired => "this change must say why",
            ModelUnverified => "The model's registry entry is not verified for serving",
            ReleaseFrozen => "Promotion is frozen",
            LegalHold => "A legal hold keeps the data",
            Internal => "Internal error",
        }
    }

    /// The OpenAI error `type` the SDKs map to their exception classes.
    fn openai_type(self) -> &'static str {
        match self.status().as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            402 => "insufficient_quota",
            400 | 409 | 413 | 422 => "invalid_request_error",
            _ => "api_error",
        }
    }
}

impl ProblemKind {
    /// The `error.code` OpenAI's API uses for the same failure, so clients written against it
    /// (which match on `invalid_api_key`, `rate_limit_exceeded`, `insufficient_quota`,
    /// `model_not_found`) keep working; custos' own slug where OpenAI has none. The problem's
    /// `type` URI always names custos' kind.
    pub fn openai_code(self) -> &'static str {
        use ProblemKind::*;
        match self {
            MissingApiKey
            | InvalidApiKey
            | ExpiredApiKey
            | RevokedApiKey
            | TokenTooLarge
            | TokenMalformed
            | TokenAlgorithmRefused
            | TokenUnknownKey
            | TokenBadSignature
            | TokenExpired
            | TokenNotYetValid
            | TokenWrongAudience
            | TokenWrongIssuer
            | TokenClaims => "invalid_api_key",
            RateLimitRequests | RateLimitTokens => "rate_limit_exceeded",
            BudgetExhausted => "insufficient_quota",
            ModelNotFound => "model_not_found",
            other => other.slug(),
        }
    }
}

/// A problem to send: kind, human detail, and extra headers (e.g. `Retry-After`).
#[derive(Debug)]
pub struct Problem {
    pub kind: ProblemKind,
    pub detail: String,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// Prefix of every problem `type` URI.
pub const TYPE_BASE: &str = "https://custos.dev/problems/";

/// The longest `detail` sent: details quote the caller's input (a model name, a key), and a
/// megabyte of it must not be echoed back (twice, with the OpenAI-style `error`).
const MAX_DETAIL: usize = 1024;

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub(crate) fn prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to at most `MAX_DETAIL` bytes on a character boundary, marked when cut.
fn capped(mut text: String) -> String {
    let end = prefix(&text, MAX_DETAIL).len();
    if end < text.len() {
        let cut = text.len() - end;
        text.truncate(end);
        text.push_str(&format!("… ({cut} more bytes)"));
    }
    text
}

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: capped(detail.into()),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl Problem {
    /// The problem+json document (with the OpenAI-style `error` member).
    pub fn body(&self) -> String {
        let slug = self.kind.slug();
        json!({
            "type": format!("{TYPE_BASE}{slug}"),
            "title": self.kind.title(),
            "status": self.kind.status().as_u16(),
            "detail": self.detail,
            "error": {
                "message": self.detail,
                "type": self.kind.openai_type(),
                "code": self.kind.openai_code(),
            },
        })
        .to_string()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        let mut response = (status, self.body()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response.extensions_mut().insert(self.kind);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_documented() {
        let doc = include_str!("../../../docs/problems.md");
        for k in ProblemKind::ALL {
            let row = format!("| `{}` | {} |", k.slug(), k.status().as_u16());
            assert!(doc.contains(&row), "docs/problems.md lacks the row {row}");
        }
    }

    #[test]
    fn echoed_input_is_capped_on_a_char_boundary() {
        let long = format!("the model {:?} is not served", "é".repeat(600_000));
        let p = Problem::new(ProblemKind::ModelNotFound, long);
        assert!(p.detail.len() <= MAX_DETAIL + 40, "{}", p.detail.len());
        assert!(p.detail.ends_with("more bytes)"));
        let short = Problem::new(ProblemKind::ModelNotFound, "no model x");
        assert_eq!(short.detail, "no model x");
    }

    #[test]
    fn openai_clients_see_openai_error_codes() {
        let body = |k: ProblemKind| -> serde_json::Value {
            serde_json::from_str(&Problem::new(k, "x").body()).unwrap()
        };
        for (kind, code, ty) in [
            (
                ProblemKind::InvalidApiKey,
                "invalid_api_key",
                "authentication_error",
            ),
            (
                ProblemKind::TokenExpired,
                "invalid_api_key",
                "authentication_error",
            ),
            (
                ProblemKind::RateLimitTokens,
                "rate_limit_exceeded",
                "rate_limit_error",
            ),
            (
                ProblemKind::BudgetExhausted,
                "insufficient_quota",
                "insufficient_quota",
            ),
            (
                ProblemKind::ModelNotFound,
                "model_not_found",
                "not_found_error",
            ),
            (ProblemKind::PiiBlocked, "pii-blocked", "permission_error"),
        ] {
            let b = body(kind);
            assert_eq!(b["error"]["code"], code, "{b}");
            assert_eq!(b["error"]["type"], ty, "{b}");
            assert_eq!(b["type"], format!("{TYPE_BASE}{}", kind.slug()));
        }
    }

    #[test]
    fn slugs_are_unique_and_urls_are_stable() {
        let all = ProblemKind::ALL;
        let slugs: std::collections::HashSet<_> = all.iter().map(|k| k.slug()).collect();
        assert_eq!(slugs.len(), all.len());
        let r = Problem::new(ProblemKind::ModelNotFound, "no model x").into_response();
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
