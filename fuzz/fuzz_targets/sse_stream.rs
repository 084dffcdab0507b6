//! Any upstream bytes, split anywhere: the SSE scanner must pass them through unchanged when
//! not stripping, and never panic.
#![no_main]
use custos_gateway::sse::UsageScanner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &[u8])| {
    let (cut, data) = input;
    let cut = (cut as usize).min(data.len());
    let mut keep = UsageScanner::new(false);
    let mut out = Vec::new();
    out.extend_from_slice(&keep.feed(&data[..cut]));
    out.extend_from_slice(&keep.feed(&data[cut..]));
    out.extend_from_slice(&keep.finish());
    assert_eq!(out, data);
    let mut strip = UsageScanner::new(true);
    let _ = strip.feed(data);
    let _ = strip.finish();
});
