//! Any bytes as the small inputs of cost telemetry: a cost-tag header, a job usage report, a
//! Terraform plan, a provider usage object. Parsed or refused, never a panic.
#![no_main]
use custos_finops::job::{to_record, JobReport, Policy, Reporter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = custos_gateway::meter::parse_tags(s);
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = custos_finops::Usage::from_provider(&v);
    let _ = custos_finops::tags::check_plan(&v, &["Project".to_owned(), "Env".to_owned()]);
    if let Ok(r) = serde_json::from_value::<JobReport>(v) {
        let who = Reporter { tenant: "t", team: "ml", app: "a", env: "prod", key_id: "k" };
        let tables = custos_finops::carbon::Tables::shipped();
        let catalog = custos_finops::Catalog::default();
        let policy = Policy { mandatory_tags: vec!["Project".into()], accept_untagged: true };
        let _ = to_record(&r, &who, &catalog, &tables, &policy, 0, || "id".into());
    }
});
