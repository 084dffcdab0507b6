//! Trains the PERSON/LOCATION/ORGANIZATION tagger on labeled JSON lines
//! (`{"text": "…", "spans": [[start, end, "PERSON"], …]}`, offsets in characters) and writes
//! its weights: `cargo run --release -p custos-pii --example train_tagger -- TRAIN.jsonl OUT.bin.gz`.
//! `crates/custos-pii/data/README.md` says which data the shipped weights were trained on.

use custos_pii::tagger::{gold_labels, tokenize, Trainer};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [train, out, rest @ ..] = args.as_slice() else {
        return Err("usage: train_tagger TRAIN.jsonl OUT.bin.gz [BITS] [EPOCHS]".into());
    };
    let bits: u32 = rest
        .first()
        .map_or(Ok(18), |b| b.parse())
        .map_err(|e| format!("BITS: {e}"))?;
    let epochs: usize = rest
        .get(1)
        .map_or(Ok(6), |b| b.parse())
        .map_err(|e| format!("EPOCHS: {e}"))?;
    let text = std::fs::read_to_string(train).map_err(|e| format!("{train}: {e}"))?;
    let mut data = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{train}:{}: {e}", n + 1))?;
        let t = v["text"]
            .as_str()
            .ok_or(format!("{train}:{}: no text", n + 1))?
            .to_owned();
        // Character offsets to bytes.
        let bytes: Vec<usize> = t.char_indices().map(|(i, _)| i).chain([t.len()]).collect();
        let spans: Vec<(usize, usize, String)> = v["spans"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let a = bytes.get(s[0].as_u64()? as usize)?;
                let b = bytes.get(s[1].as_u64()? as usize)?;
                Some((*a, *b, s[2].as_str()?.to_owned()))
            })
            .collect();
        let toks = tokenize(&t);
        let refs: Vec<(usize, usize, &str)> =
            spans.iter().map(|(a, b, e)| (*a, *b, e.as_str())).collect();
        let gold = gold_labels(&toks, &refs);
        data.push((toks, gold));
    }
    let tokens: usize = data.iter().map(|(t, _)| t.len()).sum();
    eprintln!("{} paragraphs, {tokens} tokens", data.len());
    let mut tr = Trainer::new(bits);
    // A fixed shuffle per epoch (xorshift), so the same data trains the same weights.
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for epoch in 0..epochs {
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        let wrong: usize = order
            .iter()
            .map(|&k| tr.learn(&data[k].0, &data[k].1))
            .sum();
        eprintln!(
            "epoch {}: {:.2}% of tokens wrong",
            epoch + 1,
            100.0 * wrong as f64 / tokens as f64
        );
    }
    let bytes = tr.finish().encode();
    std::fs::write(out, &bytes).map_err(|e| format!("{out}: {e}"))?;
    eprintln!("wrote {out} ({} bytes)", bytes.len());
    Ok(())
}
