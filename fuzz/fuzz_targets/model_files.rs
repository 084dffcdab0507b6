//! Any bytes as a model artifact (safetensors, GGUF, ONNX, PyTorch) and as a model folder's
//! config.json: the ML cataloger reads headers with hard bounds and either describes the
//! file or refuses it; never a panic, never a huge allocation from a lying header.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().expect("temp dir");
    }
    DIR.with(|dir| {
        for name in ["model.safetensors", "model.gguf", "model.onnx", "model.pt", "config.json"] {
            let path = dir.path().join(name);
            if std::fs::write(&path, data).is_ok() {
                let _ = custos_scan::sbom::ml::catalog(&path, name);
                let _ = std::fs::remove_file(&path);
            }
        }
    });
});
