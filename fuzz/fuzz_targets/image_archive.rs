//! Any bytes as a `docker save` archive or an OCI archive: opening it, walking its layers
//! and assembling the file system never panics, never writes outside the temporary
//! directory, and a secrets scan of the layers ends.
#![no_main]
use custos_scan::image::{Image, ImageView, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("image.tar");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    for source in [
        Source::DockerArchive(path.clone()),
        Source::OciArchive(path),
    ] {
        let Ok(image) = Image::open(&source, None) else {
            continue;
        };
        let _ = ImageView::build(&image);
        let _ = custos_scan::image::sbom_of(&image, &Default::default());
    }
});
