//! Any bytes as a billing export (FOCUS or CUR 2.0, plain or gzip): every row is read or
//! refused with an error naming it; never a panic, never an endless loop.
#![no_main]
use custos_finops::billing::Reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut r) = Reader::new(Box::new(std::io::Cursor::new(data.to_vec())), None) else {
        return;
    };
    let mut n = 0;
    while let Some(item) = r.next_item() {
        let _ = item;
        n += 1;
        assert!(n <= data.len() + 1, "more rows than bytes");
    }
});
