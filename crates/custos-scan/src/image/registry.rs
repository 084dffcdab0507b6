//! Pulling an image from a registry over the OCI distribution API (`oci-client`): the
//! manifest (an index resolved to the wanted platform), the config and every layer blob,
//! each checked against its digest, into a temporary directory the image is read from.
//! Anonymous pulls, or credentials from the environment or the Docker config file; plain
//! HTTP only for registries on this machine or named in `CUSTOS_REGISTRY_HTTP`.

use super::{Image, ImageError};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::ImageIndexEntry;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::path::Path;

fn err(reference: &str, e: impl std::fmt::Display) -> ImageError {
    ImageError::Source(format!("{reference}: {e}"))
}

/// The registry host of a reference, as `oci-client` resolves it (Docker Hub's names too).
fn host(r: &Reference) -> String {
    r.resolve_registry().to_owned()
}

/// Whether to speak plain HTTP to `host`: a registry on this machine (as Docker does), or
/// one the user lists in `CUSTOS_REGISTRY_HTTP` (comma-separated `host:port`).
fn plain_http(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if matches!(name, "localhost" | "127.0.0.1" | "[::1]") || name.starts_with("127.") {
        return true;
    }
    std::env::var("CUSTOS_REGISTRY_HTTP")
        .map(|v| v.split(',').any(|h| h.trim() == host))
        .unwrap_or(false)
}

/// Credentials for `host`: `CUSTOS_REGISTRY_USERNAME`/`CUSTOS_REGISTRY_PASSWORD`, else the
/// Docker config file's `auths` (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`),
/// else anonymous (a token is still fetched when the registry asks for one).
fn auth_for(host: &str) -> RegistryAuth {
    if let (Ok(u), Ok(p)) = (
        std::env::var("CUSTOS_REGISTRY_USERNAME"),
        std::env::var("CUSTOS_REGISTRY_PASSWORD"),
    ) {
        return RegistryAuth::Basic(u, p);
    }
    let file = std::env::var_os("DOCKER_CONFIG")
        .map(|d| Path::new(&d).join("config.json"))
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker/config.json")));
    let from_file = file
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            let auths = v.get("auths")?.as_object()?;
            let entry = auths.iter().find(|(k, _)| {
                let k = k
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                k.split('/').next() == Some(host)
            })?;
            let encoded = entry.1.get("auth")?.as_str()?;
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (u, p) = text.split_once(':')?;
            Some(RegistryAuth::Basic(u.to_owned(), p.to_owned()))
        });
    from_file.unwrap_or(RegistryAuth::Anonymous)
}

/// Picks the manifest of `platform` (`os/arch[/variant]`) from an index.
fn resolver(platform: String) -> impl Fn(&[ImageIndexEntry]) -> Option<String> + Send + Sync {
    move |entries: &[ImageIndexEntry]| {
        let mut want = platform.split('/');
        let (os, arch, variant) = (want.next(), want.next(), want.next());
        entries
            .iter()
            .find(|e| {
                e.platform.as_ref().is_some_and(|p| {
                    os.is_none_or(|o| p.os == o)
                        && arch.is_none_or(|a| p.architecture == a)
                        && variant.is_none_or(|v| p.variant.as_deref() == Some(v))
                })
            })
            .map(|e| e.digest.clone())
    }
}

/// Pulls `reference` for `platform` and opens it.
pub fn pull(reference: &str, platform: &str) -> Result<Image, ImageError> {
    let r: Reference = reference
        .parse()
        .map_err(|e| err(reference, format!("not an image reference: {e}")))?;
    let host = host(&r);
    let protocol = if plain_http(&host) {
        ClientProtocol::HttpsExcept(vec![host.clone()])
    } else {
        ClientProtocol::Https
    };
    let client = Client::new(ClientConfig {
        protocol,
        platform_resolver: Some(Box::new(resolver(platform.to_owned()))),
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..ClientConfig::default()
    });
    let auth = auth_for(&host);
    let dir = tempfile::tempdir().map_err(|e| err(reference, e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(reference, e))?;
    let (config, blobs, digests) = runtime.block_on(async {
        let (manifest, _digest) = client
            .pull_image_manifest(&r, &auth)
            .await
            .map_err(|e| err(reference, format!("cannot read its manifest: {e}")))?;
        let mut config = Vec::new();
        client
            .pull_blob(&r, &manifest.config, &mut config)
            .await
            .map_err(|e| err(reference, format!("cannot fetch its config: {e}")))?;
        let config: serde_json::Value = serde_json::from_slice(&config)
            .map_err(|e| err(reference, format!("its config is not JSON: {e}")))?;
        let mut blobs = Vec::new();
        let mut digests = Vec::new();
        for (i, layer) in manifest.layers.iter().enumerate() {
            let path = dir.path().join(format!("layer-{i}"));
            let file = tokio::fs::File::create(&path)
                .await
                .map_err(|e| err(reference, e))?;
            let mut out = tokio::io::BufWriter::new(file);
            client.pull_blob(&r, layer, &mut out).await.map_err(|e| {
                err(
                    reference,
                    format!("cannot fetch layer {i} ({}): {e}", layer.digest),
                )
            })?;
            tokio::io::AsyncWriteExt::flush(&mut out)
                .await
                .map_err(|e| err(reference, e))?;
            blobs.push(path);
            digests.push(layer.digest.clone());
        }
        Ok::<_, ImageError>((config, blobs, digests))
    })?;
    Image::assemble(reference.to_owned(), &config, blobs, digests, Some(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_or_listed_registries_get_plain_http() {
        assert!(plain_http("localhost:5000"));
        assert!(plain_http("127.0.0.1:5000"));
        assert!(!plain_http("ghcr.io"));
        assert!(!plain_http("registry.example.com:5000"));
        let r: Reference = "python:3.11-slim".parse().unwrap();
        assert_eq!(host(&r), "index.docker.io");
    }
}
