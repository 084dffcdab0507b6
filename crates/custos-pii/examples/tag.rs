//! Tags Presidio evaluator samples with the tagger alone (weights from a file) and prints
//! them back with the predicted spans, for scoring beside the analyzer:
//! `cargo run --release -p custos-pii --example tag -- WEIGHTS.bin.gz SAMPLES.json > OUT.json`.

use custos_pii::tagger::{decode, spans, tokenize, Weights};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [weights, samples] = args.as_slice() else {
        return Err("usage: tag WEIGHTS.bin.gz SAMPLES.json".into());
    };
    let w = Weights::decode(&std::fs::read(weights).map_err(|e| format!("{weights}: {e}"))?)?;
    let text = std::fs::read_to_string(samples).map_err(|e| format!("{samples}: {e}"))?;
    let v: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| format!("{samples}: {e}"))?;
    let mut out = Vec::new();
    for s in v {
        let t = s["full_text"].as_str().unwrap_or_default();
        let toks = tokenize(t);
        let labels = decode(&w, &toks);
        let chars = |b: usize| t[..b].chars().count();
        let found: Vec<serde_json::Value> = spans(&toks, &labels)
            .into_iter()
            .map(|(e, r)| serde_json::json!({"entity_type": e, "start_position": chars(r.start), "end_position": chars(r.end)}))
            .collect();
        out.push(serde_json::json!({"full_text": t, "spans": found}));
    }
    println!("{}", serde_json::Value::Array(out));
    Ok(())
}
