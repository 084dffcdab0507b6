//! Authorization cost on the hot path: one model call decided against 100 policies while the
//! deployment knows 10,000 entities (tenants and teams with residency facts), plus token
//! verification. Besides criterion's means, prints p50/p99 over 200,000 decisions.

use criterion::{black_box, criterion_group, Criterion};
use custos_authz::jwt::{Jwks, Unverified, Validator};
use custos_authz::policy::{self, Engine, Policies, RequestFacts, Resource, TenantFacts};
use custos_authz::testkit::TestIssuer;
use custos_core::config::JwtIssuerConfig;
use custos_core::principal::{AuthMethod, Principal};
use std::collections::HashMap;
use std::time::Instant;

/// The built-in roles plus generated team, model and time policies: 100 in all.
fn engine() -> Engine {
    let schema = policy::schema().unwrap();
    let builtin = Policies::builtin(&schema).unwrap().len();
    let mut text = String::new();
    for i in 0..(100 - builtin) {
        match i % 4 {
            0 => text.push_str(&format!(
                "@id(\"team{i}.chat\") permit(principal in Custos::Team::\"tenant{i}/team{i}\", action == Custos::Action::\"chat\", resource == Custos::Model::\"model-{i}\");\n"
            )),
            1 => text.push_str(&format!(
                "@id(\"tenant{i}.office-hours\") forbid(principal in Custos::Tenant::\"tenant{i}\", action in Custos::Action::\"model.use\", resource) unless {{ context.hour >= 6 && context.hour < 22 }};\n"
            )),
            2 => text.push_str(&format!(
                "@id(\"class{i}\") forbid(principal in Custos::Group::\"contractors-{i}\", action in Custos::Action::\"model.use\", resource) when {{ context.classification == \"restricted\" }};\n"
            )),
            _ => text.push_str(&format!(
                "@id(\"provider{i}\") permit(principal in Custos::Role::\"vendor-{i}\", action == Custos::Action::\"embeddings\", resource in Custos::Provider::\"provider-{i}\");\n"
            )),
        }
    }
    let mut sources = vec![(
        policy::BUILTIN_NAME.to_owned(),
        policy::BUILTIN_POLICIES.to_owned(),
    )];
    sources.push(("generated.cedar".to_owned(), text));
    let policies = Policies::load(&sources, &schema).unwrap();
    assert_eq!(policies.len(), 100);
    Engine::new(schema, policies).unwrap()
}

/// 10,000 entities' facts: 2,000 tenants with residency pins and 8,000 teams.
fn world() -> HashMap<String, TenantFacts> {
    let mut m = HashMap::new();
    for t in 0..2_000 {
        m.insert(
            format!("tenant{t}"),
            TenantFacts {
                regions: if t % 2 == 0 {
                    vec!["us-east".into(), "eu-west".into()]
                } else {
                    Vec::new()
                },
            },
        );
        for team in 0..4 {
            m.insert(format!("tenant{t}/team{team}"), TenantFacts::default());
        }
    }
    m
}

fn developer() -> Principal {
    Principal {
        id: "alice@example.com".into(),
        method: AuthMethod::Jwt,
        issuer: "https://idp".into(),
        tenant: "tenant42".into(),
        team: "team1".into(),
        roles: vec!["developer".into()],
        groups: vec!["engineering".into()],
        scopes: Some(vec!["custos:chat".into()]),
        mfa: true,
        ..Principal::default()
    }
}

fn model() -> Resource {
    Resource::Model {
        name: "gpt-4o".into(),
        provider: "openai".into(),
        region: "us-east".into(),
    }
}

fn validator() -> (TestIssuer, Validator, Jwks) {
    let t = TestIssuer::new("https://idp");
    let config = JwtIssuerConfig::new("https://idp", "custos");
    let jwks = Jwks::parse(t.jwks().as_bytes()).unwrap();
    (t, Validator::new(&config).unwrap(), jwks)
}

fn authz(c: &mut Criterion) {
    let engine = engine();
    let world = world();
    let p = developer();
    let r = model();
    let facts = RequestFacts {
        time: 1_800_000_000,
        ..RequestFacts::default()
    };
    c.bench_function("authorize model call (100 policies, 10k entities)", |b| {
        b.iter(|| {
            let tenant = world.get(black_box(&p.tenant)).unwrap();
            let d = engine
                .authorize(black_box(&p), "chat", &r, tenant, &facts)
                .unwrap();
            assert!(d.allowed);
        })
    });
    // Every call a principal the engine has not seen: entities and policy slice built anew.
    let mut n = 0u64;
    c.bench_function("authorize model call, first call of a principal", |b| {
        b.iter(|| {
            n += 1;
            let fresh = Principal {
                id: format!("user-{n}"),
                ..p.clone()
            };
            let tenant = world.get(&fresh.tenant).unwrap();
            engine
                .authorize(&fresh, "chat", &r, tenant, &facts)
                .unwrap()
        })
    });
    let key = Principal {
        id: "key_0193".into(),
        tenant: "tenant7".into(),
        team: "team2".into(),
        ..Principal::default()
    };
    c.bench_function("authorize API key call", |b| {
        b.iter(|| {
            let tenant = world.get(&key.tenant).unwrap();
            engine
                .authorize(black_box(&key), "embeddings", &r, tenant, &facts)
                .unwrap()
        })
    });
    let (issuer, v, jwks) = validator();
    let mut claims = issuer.claims("alice", "custos", 1_800_000_000);
    claims["tenant"] = serde_json::json!("acme");
    let ed = issuer.token(&claims);
    let es = issuer.sign(&serde_json::json!({"alg": "ES256", "kid": "ec-1"}), &claims);
    for (name, token) in [("verify EdDSA token", ed), ("verify ES256 token", es)] {
        c.bench_function(name, |b| {
            b.iter(|| {
                let u = Unverified::parse(black_box(&token)).unwrap();
                v.validate(&u, &jwks, 1_800_000_000).unwrap()
            })
        });
    }
}

/// p50 and p99 of single decisions, as the gateway sees them.
fn percentiles() {
    let engine = engine();
    let world = world();
    let p = developer();
    let r = model();
    let facts = RequestFacts {
        time: 1_800_000_000,
        ..RequestFacts::default()
    };
    let mut samples = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        let start = Instant::now();
        let tenant = world.get(&p.tenant).unwrap();
        let d = engine.authorize(&p, "chat", &r, tenant, &facts).unwrap();
        samples.push(start.elapsed());
        black_box(d);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "authorize model call, 200000 decisions: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        at(0.999).as_secs_f64() * 1e6
    );
}

criterion_group!(benches, authz);

fn main() {
    benches();
    percentiles();
    Criterion::default().configure_from_args().final_summary();
}
