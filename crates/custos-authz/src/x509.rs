//! The names in a client certificate: URI subject alternative names (where a SPIFFE ID
//! lives) and the subject's common name. rustls has verified the chain before custos reads
//! the certificate; this is only a small, bounds-checked DER walk over what it needs.

/// Errors reading a certificate; none of them panics.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum X509Error {
    #[error("the certificate is not valid DER: {0}")]
    Der(&'static str),
}

/// The names a client certificate carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerNames {
    /// URI SANs, in certificate order.
    pub uris: Vec<String>,
    /// The subject's first common name (CN).
    pub common_name: Option<String>,
}

impl PeerNames {
    /// The SPIFFE ID: the URI SAN with scheme `spiffe` (a SPIFFE X509-SVID has exactly one).
    pub fn spiffe_id(&self) -> Option<&str> {
        self.uris
            .iter()
            .map(String::as_str)
            .find(|u| is_spiffe_id(u))
    }
}

/// `spiffe://trust-domain/path`: lowercase trust domain of letters, digits, `.`, `-`, `_`;
/// a path without empty, `.` or `..` segments; no query or fragment.
pub fn is_spiffe_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("spiffe://") else {
        return false;
    };
    let (domain, path) = rest.split_once('/').map_or((rest, ""), |(d, p)| (d, p));
    let domain_ok = !domain.is_empty()
        && domain.len() <= 255
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    let path_ok = rest.contains('/').then_some(path).is_none_or(|p| {
        p.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        })
    });
    domain_ok && path_ok && s.len() <= 2048
}

/// One DER element: tag and contents.
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
}

/// Reads one element from the front of `input`; returns it and the rest.
fn next(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), X509Error> {
    let (&tag, rest) = input.split_first().ok_or(X509Error::Der("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(X509Error::Der(
            "high tag numbers are not used in certificates",
        ));
    }
    let (&first, mut rest) = rest
        .split_first()
        .ok_or(X509Error::Der("truncated length"))?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(X509Error::Der("bad length"));
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(X509Error::Der("element longer than its container"));
    }
    Ok((
        Tlv {
            tag,
            body: &rest[..len],
        },
        &rest[len..],
    ))
}

/// The elements of a constructed element's body.
fn children(mut body: &[u8]) -> Result<Vec<Tlv<'_>>, X509Error> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (t, rest) = next(body)?;
        out.push(t);
        body = rest;
        if out.len() > 10_000 {
            return Err(X509Error::Der("too many elements"));
        }
    }
    Ok(out)
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
/// 2.5.29.17, subjectAltName.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
/// 2.5.4.3, commonName.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// [6] IMPLICIT IA5String: uniformResourceIdentifier in GeneralName.
const GENERAL_NAME_URI: u8 = 0x86;
/// [3] EXPLICIT: extensions in TBSCertificate.
const EXTENSIONS: u8 = 0xa3;

/// Reads the URI SANs and the subject CN of a DER certificate.
pub fn peer_names(der: &[u8]) -> Result<PeerNames, X509Error> {
    let (cert, _) = next(der)?;
    if cert.tag != SEQUENCE {
        return Err(X509Error::Der("a certificate is a SEQUENCE"));
    }
    let parts = children(cert.body)?;
    let tbs = parts.first().ok_or(X509Error::Der("no tbsCertificate"))?;
    if tbs.tag != SEQUENCE {
        return Err(X509Error::Der("tbsCertificate is a SEQUENCE"));
    }
    let fields = children(tbs.body)?;
    // version [0] is optional; after it: serial, signature, issuer, validity, subject.
    let skip = usize::from(fields.first().is_some_and(|f| f.tag == 0xa0));
    let subject = fields
        .get(skip + 4)
        .filter(|f| f.tag == SEQUENCE)
        .ok_or(X509Error::Der("no subject"))?;
    let mut names = PeerNames {
        common_name: common_name(subject.body)?,
        ..PeerNames::default()
    };
    let Some(exts) = fields.iter().find(|f| f.tag == EXTENSIONS) else {
        return Ok(names);
    };
    let (list, _) = next(exts.body)?;
    for ext in children(list.body)? {
        let items = children(ext.body)?;
        let is_san = items
            .first()
            .is_some_and(|o| o.tag == OID && o.body == OID_SAN);
        if !is_san {
            continue;
        }
        let value = items
            .iter()
            .find(|i| i.tag == OCTET_STRING)
            .ok_or(X509Error::Der("subjectAltName without a value"))?;
        let (general_names, _) = next(value.body)?;
        for name in children(general_names.body)? {
            if name.tag == GENERAL_NAME_URI {
                let uri = std::str::from_utf8(name.body)
                    .map_err(|_| X509Error::Der("a URI SAN is not text"))?;
                names.uris.push(uri.to_owned());
            }
        }
    }
    Ok(names)
}

fn common_name(name: &[u8]) -> Result<Option<String>, X509Error> {
    for rdn in children(name)? {
        if rdn.tag != SET {
            continue;
        }
        for atv in children(rdn.body)? {
            let items = children(atv.body)?;
            if let [oid, value, ..] = items.as_slice() {
                if oid.tag == OID && oid.body == OID_CN {
                    // UTF8String, PrintableString, IA5String and T61String all read as text here.
                    return Ok(Some(String::from_utf8_lossy(value.body).into_owned()));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spiffe_ids() {
        assert!(is_spiffe_id("spiffe://example.org/ns/prod/sa/billing"));
        assert!(is_spiffe_id("spiffe://example.org"));
        assert!(!is_spiffe_id("spiffe://Example.org/x"));
        assert!(!is_spiffe_id("spiffe://example.org/a//b"));
        assert!(!is_spiffe_id("spiffe://example.org/../x"));
        assert!(!is_spiffe_id("spiffe://example.org/x?y=1"));
        assert!(!is_spiffe_id("https://example.org/x"));
        assert!(!is_spiffe_id("spiffe:///x"));
    }

    #[test]
    fn malformed_der_is_an_error() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x05, 0x30],
            &[0x1f, 0],
        ] {
            assert!(peer_names(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = peer_names(&bytes);
        }
    }
}
