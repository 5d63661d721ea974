//! The keys a leak reporter (GitHub's secret scanning) signs reports with, as it publishes
//! them: fetched, cached, refetched at most once a minute for an identifier not seen (and 5 s
//! after a failed fetch), read at most a megabyte. A leaf: it imports nothing of the crate.

use base64::Engine;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The largest key list read.
const MAX_LIST_BYTES: usize = 1024 * 1024;
/// How often the published keys may be fetched again for an identifier not seen.
const REFETCH_AFTER: Duration = Duration::from_secs(60);
/// Longest wait for the published keys.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The SubjectPublicKeyInfo DER prefix of every P-256 public key; the 65-byte uncompressed
/// point follows it.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Published keys by identifier (their P-256 points), when they were last fetched, and when a
/// fetch last failed.
#[derive(Debug, Default)]
struct Fetched {
    keys: HashMap<String, Vec<u8>>,
    at: Option<Instant>,
    failed_at: Option<Instant>,
}

/// The signing keys GitHub publishes, by identifier, as fetched.
#[derive(Debug, Default)]
pub struct PublishedKeys {
    cached: tokio::sync::Mutex<Fetched>,
}

/// How long after a failed fetch reports with an unknown identifier get 503 without another
/// fetch.
const RETRY_FAILED_FETCH_AFTER: Duration = Duration::from_secs(5);

impl PublishedKeys {
    /// The P-256 point of the key `id`, fetching the list when the id is not known (at most
    /// once a minute after a fetch that worked). `Err` when the list could not be fetched
    /// (lately) and the id is not known: the sender should try again, not be told its report
    /// is forged.
    pub async fn point(&self, url: &str, id: &str) -> Result<Option<Vec<u8>>, String> {
        let mut cached = self.cached.lock().await;
        if let Some(point) = cached.keys.get(id) {
            return Ok(Some(point.clone()));
        }
        if cached.at.is_some_and(|at| at.elapsed() < REFETCH_AFTER) {
            return Ok(None);
        }
        if cached
            .failed_at
            .is_some_and(|at| at.elapsed() < RETRY_FAILED_FETCH_AFTER)
        {
            return Err("the last fetch failed a moment ago".into());
        }
        match fetch(url).await {
            Ok(keys) => {
                cached.keys = keys;
                cached.at = Some(Instant::now());
                cached.failed_at = None;
                Ok(cached.keys.get(id).cloned())
            }
            Err(err) => {
                cached.failed_at = Some(Instant::now());
                Err(err)
            }
        }
    }
}

/// GitHub's key list: `{"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]}`.
async fn fetch(url: &str) -> Result<HashMap<String, Vec<u8>>, String> {
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .get(url)
        .header("user-agent", "Tollgate-Secret-Scanning/1")
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    // Read in pieces, never past a megabyte.
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_LIST_BYTES {
            return Err(format!("{url} answered more than a megabyte"));
        }
        body.extend_from_slice(&chunk);
    }
    let list: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let mut keys = HashMap::new();
    for key in list["public_keys"].as_array().into_iter().flatten() {
        let (Some(id), Some(pem)) = (key["key_identifier"].as_str(), key["key"].as_str()) else {
            continue;
        };
        if let Some(point) = p256_point(pem) {
            keys.insert(id.to_owned(), point);
        }
    }
    if keys.is_empty() {
        return Err(format!("{url} listed no P-256 keys"));
    }
    Ok(keys)
}

/// The uncompressed point of a P-256 public key in PEM (SubjectPublicKeyInfo); `None` for
/// anything else.
pub(crate) fn p256_point(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let point = der.strip_prefix(&P256_SPKI_PREFIX[..])?;
    (point.len() == 65 && point[0] == 0x04).then(|| point.to_vec())
}

/// Whether `signature` (DER) is `point`'s ECDSA P-256/SHA-256 signature of `body`.
pub(crate) fn verify(point: &[u8], body: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point)
        .verify(body, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_p256_public_key_in_pem_gives_a_point() {
        let generated = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = p256_point(&generated.public_key_pem()).unwrap();
        assert_eq!(point.len(), 65);
        assert_eq!(point, generated.public_key_raw());
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert_eq!(p256_point(&p384.public_key_pem()), None);
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert_eq!(p256_point(&ed.public_key_pem()), None);
        assert_eq!(
            p256_point("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----"),
            None
        );
    }
}
