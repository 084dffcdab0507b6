//! The console's page frame and shared pieces, as maud templates: every value is escaped
//! by the template, every form carries the session's CSRF token, and nothing loads from
//! anywhere but this gateway.

use maud::{html, Markup, PreEscaped, DOCTYPE};

/// The pages in the navigation: (path, title).
pub const NAV: [(&str, &str); 6] = [
    ("/console", "Overview"),
    ("/console/spend", "Spend"),
    ("/console/audit", "Audit"),
    ("/console/access", "Access"),
    ("/console/models", "Models"),
    ("/console/releases", "Releases"),
];

/// `s` percent-encoded for a query string.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Who is looking, for the frame.
pub struct Frame<'a> {
    pub title: &'a str,
    /// The nav entry to mark current.
    pub current: &'a str,
    pub tenant: &'a str,
    /// The principal's display name (`key_… (team/app)`, a token subject).
    pub who: &'a str,
    pub csrf: &'a str,
}

/// A whole page: the header with navigation and sign-out, then `body`.
pub fn page(f: &Frame<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(f.title, true))
            body {
                header.top {
                    a.brand href={ "/console?tenant=" (f.tenant) } { "custos" }
                    nav aria-label="Console" {
                        @for (path, name) in NAV {
                            @if path == f.current {
                                a href={ (path) "?tenant=" (enc(f.tenant)) } aria-current="page" { (name) }
                            } @else {
                                a href={ (path) "?tenant=" (enc(f.tenant)) } { (name) }
                            }
                        }
                    }
                    div.who {
                        span { "tenant " strong { (f.tenant) } }
                        span.mono { (f.who) }
                        form method="post" action="/console/signout" {
                            input type="hidden" name="csrf" value=(f.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
                footer { "custos " (env!("CARGO_PKG_VERSION")) }
            }
        }
    }
}

/// The document head: this origin's stylesheet and, in a session, its script.
fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · custos" }
            link rel="stylesheet" href="/console/assets/console.css";
            @if script { script src="/console/assets/console.js" defer {} }
        }
    }
}

/// A page outside a session (sign-in, errors before sign-in).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false))
            body { (body) }
        }
    }
}

/// One figure of a row of cards.
pub fn card(label: &str, value: &str) -> Markup {
    html! {
        div.card {
            div.label { (label) }
            div.value { (value) }
        }
    }
}

/// A chart rendered as SVG by `custos-finops::chart` (which escapes its own labels).
pub fn chart(svg: String) -> Markup {
    html! { div.chart { (PreEscaped(svg)) } }
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A coloured status word.
pub fn badge(text: &str, tone: &str) -> Markup {
    html! { span class={ "badge " (tone) } { (text) } }
}

/// A message above a page's content (`ok` or `error`).
pub fn notice(text: &str, tone: &str) -> Markup {
    html! { div class={ "notice " (tone) } role="status" { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_forms_carry_the_token() {
        let f = Frame {
            title: "<script>x</script>",
            current: "/console",
            tenant: "a\"b",
            who: "<b>",
            csrf: "tok",
        };
        let out = page(&f, html! { p { "hi" } }).into_string();
        assert!(!out.contains("<script>x"));
        assert!(out.contains("&lt;script&gt;x"));
        assert!(out.contains("tenant=a%22b"));
        assert!(out.contains(r#"name="csrf" value="tok""#));
        assert!(out.contains(r#"aria-current="page""#));
    }
}
