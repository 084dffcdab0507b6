//! Any bytes as a billing export (FOCUS or CUR 2.0; CSV, gzip or Parquet): every row is read
//! or refused with an error naming it; never a panic, never an endless loop.
#![no_main]
use custos_finops::billing::Reader;
use libfuzzer_sys::fuzz_target;

fn drain(mut r: Reader, limit: usize) {
    let mut n = 0;
    while let Some(item) = r.next_item() {
        let _ = item;
        n += 1;
        assert!(n <= limit, "more rows than the input can hold");
    }
}

fuzz_target!(|data: &[u8]| {
    // libFuzzer's hook aborts on any panic, even one the reader catches: the `parquet`
    // crate's own panics are caught and turned into errors, so only an uncaught panic
    // (which libfuzzer-sys still reports as a crash) may end a run.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    if let Ok(r) = Reader::new(Box::new(std::io::Cursor::new(data.to_vec())), None) {
        drain(r, data.len() + 1);
    }
    // Parquet declares its row counts; a lying footer must still end in an error.
    if let Ok(r) = Reader::parquet_from(bytes::Bytes::from(data.to_vec()), None) {
        drain(r, 1 << 20);
    }
});
