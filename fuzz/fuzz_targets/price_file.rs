//! Any text as a price file (custos TOML, custos JSON, LiteLLM's map): parsed or refused, and
//! every parsed price can cost any usage without panicking.
#![no_main]
use custos_finops::pricing::{parse_json, parse_toml};
use custos_finops::Usage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let usage = Usage {
        input_tokens: u64::MAX,
        cached_input_tokens: 1,
        output_tokens: 1 << 40,
        calls: 1,
        compute_ms: u64::MAX,
        ..Usage::default()
    };
    for prices in [parse_toml(text), parse_json(text)].into_iter().flatten() {
        for p in prices {
            let _ = p.rates.cost(&usage);
            let _ = p.rates.cost(&Usage::default());
        }
    }
    let _ = text.parse::<custos_finops::Amount>();
});
