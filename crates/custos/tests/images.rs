//! Container images end to end: an image assembled here from files the test writes (a
//! Debian-like base layer, an application layer holding a credential, and a layer that
//! installs a package and deletes the credential), saved as an OCI image layout, an OCI
//! archive and a `docker save` archive. `custos sbom`, `vulns scan` and `secrets scan` read
//! each; every package and finding names its layer.

mod common;

use common::*;
use flate2::write::GzEncoder;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Output};

enum Item<'a> {
    File(&'a str, Vec<u8>),
    Link(&'a str, &'a str),
}

/// A layer tar of `items`.
fn layer(items: &[Item<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        let mut h = tar::Header::new_gnu();
        match item {
            Item::File(path, content) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(content.len() as u64);
                h.set_mode(0o644);
                b.append_data(&mut h, path, content.as_slice()).unwrap();
            }
            Item::Link(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A dpkg status database of `packages`, with libssl3 (built from openssl) in each.
fn dpkg(packages: &[(&str, &str)]) -> Vec<u8> {
    let mut text: String = packages
        .iter()
        .map(|(n, v)| {
            format!(
                "Package: {n}\nStatus: install ok installed\nVersion: {v}\nArchitecture: amd64\n\n"
            )
        })
        .collect();
    text.push_str("Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.11-1~deb12u2\nArchitecture: amd64\n\n");
    text.into_bytes()
}

/// A credential built at run time, so this file holds none.
fn credential() -> String {
    format!("AKIA{}", "Q3EGRIVXYZ7HPM2W")
}

const HISTORY: [&str; 3] = [
    "/bin/sh -c #(nop) ADD file:rootfs.tar in / ",
    "COPY app /app # buildkit",
    "RUN /bin/sh -c apt-get install -y curl && rm /app/config.py # buildkit",
];

/// The three layers, uncompressed.
fn layers() -> Vec<Vec<u8>> {
    let db = "var/lib/dpkg/status";
    vec![
        layer(&[
            Item::File(
                "usr/lib/os-release",
                b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"
                    .to_vec(),
            ),
            Item::Link("etc/os-release", "../usr/lib/os-release"),
            Item::File(db, dpkg(&[("base-files", "12.4"), ("bash", "5.2.15-2")])),
        ]),
        layer(&[
            Item::File("app/requirements.txt", b"flask==2.0.0\n".to_vec()),
            Item::File(
                "app/config.py",
                format!("aws_access_key_id = \"{}\"\n", credential()).into_bytes(),
            ),
        ]),
        layer(&[
            Item::File("app/.wh.config.py", Vec::new()),
            Item::File(
                db,
                dpkg(&[
                    ("base-files", "12.4"),
                    ("bash", "5.2.15-2"),
                    ("curl", "7.88.1-10"),
                ]),
            ),
        ]),
    ]
}

fn config(diff_ids: &[String]) -> Vec<u8> {
    let history: Vec<Value> = HISTORY
        .iter()
        .map(|h| json!({"created_by": h}))
        .chain([json!({"created_by": "CMD [\"python\"]", "empty_layer": true})])
        .collect();
    serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}))
    .unwrap()
}

/// Writes an OCI image layout (layers gzip-compressed but the last, left plain).
fn oci_layout(dir: &Path) {
    let raw = layers();
    let diff_ids: Vec<String> = raw.iter().map(|l| sha(l)).collect();
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha(bytes);
        std::fs::write(dir.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        d
    };
    let mut descriptors = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let (bytes, media) = if i + 1 < raw.len() {
            (gzip(l), "application/vnd.oci.image.layer.v1.tar+gzip")
        } else {
            (l.clone(), "application/vnd.oci.image.layer.v1.tar")
        };
        let d = put(&bytes);
        descriptors.push(json!({"mediaType": media, "digest": d, "size": bytes.len()}));
    }
    let cfg = config(&diff_ids);
    let cfg_digest = put(&cfg);
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg.len()},
        "layers": descriptors}))
    .unwrap();
    let m = put(&manifest);
    // A multi-platform index: an arm64 image that is not there, and ours.
    let index = json!({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", "0".repeat(64)), "size": 1,
         "platform": {"os": "linux", "architecture": "arm64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": manifest.len(),
         "platform": {"os": "linux", "architecture": "amd64"},
         "annotations": {"org.opencontainers.image.ref.name": "1.0"}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// Packs a directory into a tar (for oci-archive).
fn pack(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

/// Writes what `docker save` writes: manifest.json, the config, and one tar per layer.
fn docker_archive(out: &Path) {
    docker_archive_of(out, layers());
}

/// `docker save` output of an image made of `raw` layers.
fn docker_archive_of(out: &Path, raw: Vec<Vec<u8>>) {
    let diff_ids: Vec<String> = raw.iter().map(|l| sha(l)).collect();
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    let mut add = |path: &str, bytes: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, bytes).unwrap();
    };
    let cfg = config(&diff_ids);
    let cfg_name = format!("{}.json", &sha(&cfg)[7..]);
    add(&cfg_name, &cfg);
    let mut names = Vec::new();
    for l in &raw {
        let name = format!("{}/layer.tar", &sha(l)[7..19]);
        add(&name, l);
        names.push(name);
    }
    let manifest = json!([{"Config": cfg_name, "RepoTags": ["shop/api:1.0"], "Layers": names}]);
    add("manifest.json", manifest.to_string().as_bytes());
    b.into_inner().unwrap();
}

fn property<'a>(component: &'a Value, name: &str) -> Option<&'a str> {
    component["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["value"].as_str())
}

#[test]
fn image_sboms_name_each_packages_layer_from_every_kind_of_source() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    oci_layout(&d.join("layout"));
    pack(&d.join("layout"), &d.join("oci.tar"));
    docker_archive(&d.join("docker.tar"));
    for source in [
        "oci-dir:layout",
        "layout",
        "oci-archive:oci.tar",
        "oci.tar",
        "docker-archive:docker.tar",
        "docker.tar",
    ] {
        let out = custos(d, &["sbom", source]);
        assert!(
            out.status.success(),
            "{source}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let comps = doc["components"].as_array().unwrap();
        let find = |name: &str| {
            comps
                .iter()
                .find(|c| c["name"] == name)
                .unwrap_or_else(|| panic!("{source}: no {name} in {doc}"))
        };
        for (name, layer) in [
            ("base-files", "0"),
            ("bash", "0"),
            ("libssl3", "0"),
            ("flask", "1"),
            ("curl", "2"),
        ] {
            assert_eq!(
                property(find(name), "custos:layer:index"),
                Some(layer),
                "{source}: {name}"
            );
        }
        let curl = find("curl");
        assert!(
            property(curl, "custos:layer:created_by")
                .unwrap()
                .starts_with("RUN /bin/sh -c apt-get install -y curl"),
            "{curl}"
        );
        // The os-release symlink was followed inside the image: Debian 12's packages.
        assert!(
            curl["purl"]
                .as_str()
                .unwrap()
                .starts_with("pkg:deb/debian/curl@7.88.1-10"),
            "{curl}"
        );
        assert_eq!(comps.len(), 5, "{source}: {doc}");
    }
    // Another platform of the index is named when it is not there.
    let (code, err) = fails(d, &["sbom", "layout", "--platform", "linux/s390x"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("linux/arm64") && err.contains("--platform"),
        "{err}"
    );
}

#[test]
fn secrets_in_any_layer_are_found_even_when_a_later_layer_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    docker_archive(&d.join("docker.tar"));
    oci_layout(&d.join("layout"));
    for source in ["docker-archive:docker.tar", "oci-dir:layout"] {
        let out = custos(d, &["secrets", "scan", source, "--format", "json"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{source}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let f = &v["findings"][0];
        assert_eq!(f["path"], "app/config.py", "{v}");
        assert_eq!(f["layer"]["index"], 1);
        assert_eq!(f["layer"]["created_by"], "COPY app /app # buildkit");
        assert_eq!(f["removed_in_later_layer"], true);
        assert!(
            !out.stdout.is_empty() && !String::from_utf8_lossy(&out.stdout).contains(&credential())
        );
        let out = custos(d, &["secrets", "scan", source]);
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            table.contains("layer 1") && table.contains("deleted by a later layer"),
            "{table}"
        );
    }
}

#[test]
fn image_vulnerabilities_fail_the_scan_and_name_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    docker_archive(&d.join("docker.tar"));
    std::fs::create_dir(d.join("osv")).unwrap();
    std::fs::write(
        d.join("osv/DSA-9999-1.json"),
        json!({"id": "DSA-9999-1", "modified": "2026-01-01T00:00:00Z", "aliases": ["CVE-2026-9999"],
               "summary": "curl: heap overflow",
               "affected": [{"package": {"ecosystem": "Debian:12", "name": "curl"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "7.88.1-10+deb12u5"}]}]}],
               "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]})
        .to_string(),
    )
    .unwrap();
    // An advisory on the source package: libssl3 is affected through openssl.
    std::fs::write(
        d.join("osv/DSA-9998-1.json"),
        json!({"id": "DSA-9998-1", "modified": "2026-01-01T00:00:00Z",
               "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u3"}]}]}],
               "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:N"}]})
        .to_string(),
    )
    .unwrap();
    ok(d, &["vulns", "db", "import", "osv", "--db", "v.db"]);
    let scan = |target: &str| {
        let out = custos(
            d,
            &[
                "vulns",
                "scan",
                target,
                "--db",
                "v.db",
                "--format",
                "json",
                "--fail-on",
                "high",
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut found: Vec<(String, String)> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["package"].as_str().unwrap().to_owned(),
                    f["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        found.sort();
        (v, found)
    };
    let (v, from_image) = scan("docker.tar");
    assert_eq!(
        from_image,
        [
            ("curl".to_owned(), "DSA-9999-1".to_owned()),
            ("libssl3".to_owned(), "DSA-9998-1".to_owned())
        ]
    );
    let curl = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["package"] == "curl")
        .unwrap();
    assert_eq!(curl["layer"]["index"], 2);
    // The image's SBOM scans to the same findings: OS packages keep their source package
    // and release through the purl.
    ok(d, &["sbom", "docker.tar", "-o", "image.cdx.json"]);
    ok(
        d,
        &[
            "sbom",
            "docker.tar",
            "--format",
            "spdx-json",
            "-o",
            "image.spdx.json",
        ],
    );
    assert_eq!(scan("image.cdx.json").1, from_image);
    assert_eq!(scan("image.spdx.json").1, from_image);

    // Nothing to list is an error, not a clean answer.
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(
        empty.join("blob"),
        layer(&[Item::File("bin/app", b"\x7fELF".to_vec())]),
    )
    .unwrap();
    let digest = sha(&std::fs::read(empty.join("blob")).unwrap());
    let cfg = json!({"os": "linux", "architecture": "amd64", "rootfs": {"diff_ids": [digest]}});
    std::fs::write(empty.join("cfg.json"), cfg.to_string()).unwrap();
    std::fs::write(
        empty.join("manifest.json"),
        json!([{"Config": "cfg.json", "Layers": ["blob"]}]).to_string(),
    )
    .unwrap();
    let mut b = tar::Builder::new(std::fs::File::create(d.join("scratch.tar")).unwrap());
    b.append_dir_all(".", &empty).unwrap();
    b.finish().unwrap();
    drop(b);
    let (code, err) = fails(d, &["sbom", "docker-archive:scratch.tar"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("nothing to list") && err.contains("in its 1 file across 1 layer "),
        "{err}"
    );
    // A missing archive is named.
    let (code, err) = fails(d, &["sbom", "docker-archive:missing.tar"]);
    assert_eq!(code, 2);
    assert!(err.contains("no such file"), "{err}");
}

/// A CNCF distribution registry (Debian's `docker-registry`) on a free port of 127.0.0.1,
/// stopped when dropped.
struct Registry {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry() -> Option<Registry> {
    registry_with(|_| String::new())
}

/// A registry whose configuration ends with `auth(dir)` (an `auth:` section, given the
/// registry's own temporary directory for any file it needs).
fn registry_with(auth: impl FnOnce(&Path) -> String) -> Option<Registry> {
    let have = |bin: &str| {
        std::process::Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("docker-registry") || !have("skopeo") {
        eprintln!(
            "skipping: docker-registry and skopeo are not installed (./dev test installs them)"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{}",
            dir.path().join("data").display(),
            auth(dir.path())
        ),
    )
    .unwrap();
    let child = std::process::Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the registry did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Some(Registry {
        child,
        addr,
        _dir: dir,
    })
}

/// Pushes the test image to `reference` with skopeo (`creds` as `user:password`, if any).
fn push(layout: &Path, reference: &str, creds: Option<&str>) {
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args(["copy", "--dest-tls-verify=false", "--insecure-policy"]);
    if let Some(c) = creds {
        cmd.arg("--dest-creds").arg(c);
    }
    let push = cmd
        .arg(format!("oci:{}:1.0", layout.display()))
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        push.status.success(),
        "skopeo push: {}",
        String::from_utf8_lossy(&push.stderr)
    );
}

/// `custos sbom SOURCE` with registry credentials in the environment.
fn sbom_with_credentials(dir: &Path, source: &str, user: &str, password: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["sbom", source])
        .current_dir(dir)
        .env_remove("CUSTOS_CONFIG")
        .env("DOCKER_CONFIG", dir.join("no-docker-config"))
        .env("CUSTOS_REGISTRY_USERNAME", user)
        .env("CUSTOS_REGISTRY_PASSWORD", password)
        .output()
        .unwrap()
}

/// A password made at run time, so this file holds none.
fn test_password() -> String {
    format!("pw-{}-{}", std::process::id(), "reg")
}

#[test]
fn a_registry_behind_basic_auth_is_pulled_with_the_users_credentials() {
    // An htpasswd line needs bcrypt: Python's crypt module (libxcrypt) makes one.
    let password = test_password();
    let hash = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
            &password,
        ])
        .output();
    let hash = match hash {
        Ok(o) if o.status.success() && o.stdout.starts_with(b"$2") => {
            String::from_utf8(o.stdout).unwrap().trim().to_owned()
        }
        _ => {
            eprintln!(
                "skipping: python3 with a bcrypt-capable crypt module is needed for htpasswd"
            );
            return;
        }
    };
    let Some(reg) = registry_with(|d| {
        let file = d.join("htpasswd");
        std::fs::write(&file, format!("ci:{hash}\n")).unwrap();
        format!(
            "auth:\n  htpasswd:\n    realm: custos-test\n    path: {}\n",
            file.display()
        )
    }) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    oci_layout(&d.join("layout"));
    let reference = format!("{}/shop/api:1.0", reg.addr);
    push(
        &d.join("layout"),
        &reference,
        Some(&format!("ci:{password}")),
    );

    let out = sbom_with_credentials(d, &reference, "ci", &password);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "curl"));

    // Without credentials, or with wrong ones, the registry's refusal is named.
    for (user, pw) in [("", ""), ("ci", "wrong")] {
        let out = if user.is_empty() {
            custos(d, &["sbom", &reference])
        } else {
            sbom_with_credentials(d, &reference, user, pw)
        };
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("shop/api:1.0"), "{err}");
        assert!(!err.contains(&password), "the password leaked: {err}");
    }
}

/// A registry token service for the Bearer challenge: answers every request with a token and
/// keeps each request line and `Authorization` header it saw.
struct TokenService {
    addr: String,
    seen: Seen,
}

/// Each request line and its `Authorization` header, if any.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

fn token_service() -> TokenService {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen: Seen = Default::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut authorization = None;
            for _ in 0..100 {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        authorization = Some(v.trim().to_owned());
                    }
                }
            }
            log.lock()
                .unwrap()
                .push((line.trim().to_owned(), authorization));
            let body = r#"{"token":"t-test","access_token":"t-test","expires_in":300}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    TokenService { addr, seen }
}

#[test]
fn a_registry_asking_for_a_bearer_token_gets_one_fetched_with_the_users_credentials() {
    let tokens = token_service();
    // `silly` auth: the registry challenges with Bearer and this realm, and accepts any token.
    let realm = format!("http://{}/token", tokens.addr);
    let Some(reg) = registry_with(|_| {
        format!("auth:\n  silly:\n    realm: {realm}\n    service: custos-test\n")
    }) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    oci_layout(&d.join("layout"));
    let reference = format!("{}/shop/api:1.0", reg.addr);
    push(&d.join("layout"), &reference, None);
    tokens.seen.lock().unwrap().clear();

    let password = test_password();
    let out = sbom_with_credentials(d, &reference, "ci", &password);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = tokens.seen.lock().unwrap().clone();
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ci:{password}"))
    );
    assert!(
        seen.iter()
            .any(|(line, auth)| line.contains("service=custos-test")
                && line.contains("repository%3Ashop%2Fapi%3Apull")
                && auth.as_deref() == Some(basic.as_str())),
        "{seen:?}"
    );

    // Anonymous: the token is still fetched, without credentials.
    tokens.seen.lock().unwrap().clear();
    let out = custos(d, &["sbom", &reference]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = tokens.seen.lock().unwrap().clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|(_, a)| a.is_none()),
        "{seen:?}"
    );
}

#[test]
fn images_are_pulled_from_a_registry_over_the_distribution_api() {
    let Some(reg) = registry() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    oci_layout(&d.join("layout"));
    let reference = format!("{}/shop/api:1.0", reg.addr);
    push(&d.join("layout"), &reference, None);
    for source in [format!("registry:{reference}"), reference.clone()] {
        let out = custos(d, &["sbom", &source]);
        assert!(
            out.status.success(),
            "{source}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let curl = doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "curl")
            .unwrap_or_else(|| panic!("{doc}"));
        assert_eq!(property(curl, "custos:layer:index"), Some("2"));
    }
    let out = custos(d, &["secrets", "scan", &reference, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["findings"][0]["removed_in_later_layer"], true);
    // An image the registry does not hold is named, with the registry's answer.
    let missing = format!("{}/shop/none:1.0", reg.addr);
    let (code, err) = fails(d, &["sbom", &missing]);
    assert_eq!(code, 2);
    assert!(
        err.contains("shop/none:1.0") && err.contains("manifest"),
        "{err}"
    );
}

#[test]
fn excludes_and_test_fixtures_are_left_out_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tree = d.join("tree");
    for (path, text) in [
        ("requirements.txt", "flask==2.0.0\n".to_owned()),
        (
            "tests/fixtures/requirements.txt",
            "django==1.0\n".to_owned(),
        ),
        (
            "vendor/lib/requirements.txt",
            "requests==2.0.0\n".to_owned(),
        ),
        (
            "deploy/settings.py",
            format!("aws_access_key_id = \"{}\"\n", credential()),
        ),
    ] {
        let p = tree.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let names = |args: &[&str]| -> (Vec<String>, String) {
        let mut all = vec!["sbom", "tree"];
        all.extend_from_slice(args);
        let out = custos(d, &all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut n: Vec<String> = doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        (n, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (n, err) = names(&[]);
    assert_eq!(n, ["flask", "requests"]);
    assert!(
        err.contains("left out 1 lockfile or manifest under test-fixture folders (tests/fixtures/requirements.txt)"),
        "{err}"
    );
    assert_eq!(names(&["--exclude", "vendor/**"]).0, ["flask"]);
    assert_eq!(
        names(&["--include-fixtures"]).0,
        ["django", "flask", "requests"]
    );
    let (code, err) = fails(d, &["sbom", "tree", "--exclude", "a[b"]);
    assert_eq!(code, 2);
    assert!(err.contains("--exclude \"a[b\""), "{err}");

    // Secrets: the same globs, in trees and in images.
    let out = custos(d, &["secrets", "scan", "tree"]);
    assert_eq!(out.status.code(), Some(1));
    let out = custos(d, &["secrets", "scan", "tree", "--exclude", "deploy/"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    docker_archive(&d.join("docker.tar"));
    let out = custos(
        d,
        &["secrets", "scan", "docker.tar", "--exclude", "app/*.py"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = custos(d, &["sbom", "docker.tar", "--exclude", "app/"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "flask"),
        "{doc}"
    );
}

#[test]
fn alpine_and_language_packages_scan_the_same_from_the_image_and_its_sbom() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let apk = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\nC:Q1def=\nP:libcrypto3\nV:3.1.4-r0\nA:x86_64\no:openssl\n\n";
    docker_archive_of(
        &d.join("alpine.tar"),
        vec![layer(&[
            Item::File(
                "etc/os-release",
                b"NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.18.4\n".to_vec(),
            ),
            Item::File("lib/apk/db/installed", apk.as_bytes().to_vec()),
            Item::File(
                "usr/lib/python3.11/site-packages/requests-2.19.0.dist-info/METADATA",
                b"Metadata-Version: 2.1\nName: requests\nVersion: 2.19.0\n".to_vec(),
            ),
        ])],
    );
    std::fs::create_dir(d.join("osv")).unwrap();
    let high = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:N";
    for (id, eco, name, fixed) in [
        ("ALPINE-9999-1", "Alpine:v3.18", "openssl", "3.1.4-r1"),
        ("PYSEC-9999-1", "PyPI", "requests", "2.20.0"),
    ] {
        std::fs::write(
            d.join(format!("osv/{id}.json")),
            json!({"id": id, "modified": "2026-01-01T00:00:00Z",
                   "affected": [{"package": {"ecosystem": eco, "name": name},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
                   "severity": [{"type": "CVSS_V3", "score": high}]})
            .to_string(),
        )
        .unwrap();
    }
    ok(d, &["vulns", "db", "import", "osv", "--db", "v.db"]);
    let scan = |target: &str| -> Vec<String> {
        let out = custos(
            d,
            &["vulns", "scan", target, "--db", "v.db", "--format", "json"],
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut ids: Vec<String> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{} {}",
                    f["package"].as_str().unwrap(),
                    f["id"].as_str().unwrap()
                )
            })
            .collect();
        ids.sort();
        ids
    };
    let from_image = scan("alpine.tar");
    assert_eq!(
        from_image,
        ["libcrypto3 ALPINE-9999-1", "requests PYSEC-9999-1"]
    );
    ok(d, &["sbom", "alpine.tar", "-o", "alpine.cdx.json"]);
    assert_eq!(scan("alpine.cdx.json"), from_image);

    // The seed's mini-lab: a key pasted into code is found.
    std::fs::write(
        d.join("config.py"),
        format!("api_key = '{}{}'\n", "sk-", "1234567890abcdef"),
    )
    .unwrap();
    let out = custos(d, &["secrets", "scan", "config.py"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // An SBOM that lists nothing is not a clean answer.
    std::fs::write(
        d.join("empty.cdx.json"),
        json!({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []}).to_string(),
    )
    .unwrap();
    let (code, err) = fails(d, &["vulns", "scan", "empty.cdx.json", "--db", "v.db"]);
    assert_eq!(code, 2);
    assert!(err.contains("no component with a package URL"), "{err}");
}
