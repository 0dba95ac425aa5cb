//! ed25519 keys in the PEM files OpenSSL uses (`openssl genpkey -algorithm ed25519`):
//! PKCS#8 `PRIVATE KEY` and SubjectPublicKeyInfo `PUBLIC KEY`. Both are fixed-size DER with a
//! constant prefix, so no ASN.1 parser is needed.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::error::BundleError;

const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn pem(label: &str, der: &[u8]) -> String {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        STANDARD.encode(der)
    )
}

fn unpem(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = text[start..].find(&end)? + start;
    let digits: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(digits).ok()
}

pub fn private_pem(key: &SigningKey) -> String {
    let mut der = PKCS8_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    pem("PRIVATE KEY", &der)
}

pub fn public_pem(key: &VerifyingKey) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    pem("PUBLIC KEY", &der)
}

fn key_error(path: &Path, reason: impl Into<String>) -> BundleError {
    BundleError::Key {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

pub fn read_private(path: &Path) -> Result<SigningKey, BundleError> {
    let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e.to_string()))?;
    let der =
        unpem(&text, "PRIVATE KEY").ok_or_else(|| key_error(path, "no PEM PRIVATE KEY block"))?;
    let seed = der
        .strip_prefix(&PKCS8_PREFIX[..])
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .ok_or_else(|| key_error(path, "not an ed25519 private key"))?;
    Ok(SigningKey::from_bytes(&seed))
}

pub fn read_public(path: &Path) -> Result<VerifyingKey, BundleError> {
    let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e.to_string()))?;
    let der =
        unpem(&text, "PUBLIC KEY").ok_or_else(|| key_error(path, "no PEM PUBLIC KEY block"))?;
    let raw = der
        .strip_prefix(&SPKI_PREFIX[..])
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .ok_or_else(|| key_error(path, "not an ed25519 public key"))?;
    VerifyingKey::from_bytes(&raw).map_err(|e| key_error(path, e.to_string()))
}

/// Every `*.pub` in `dir`, sorted by name; an error when there is none.
pub fn read_public_dir(dir: &Path) -> Result<Vec<(PathBuf, VerifyingKey)>, BundleError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| key_error(dir, e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(key_error(dir, "no public keys (*.pub)"));
    }
    paths
        .into_iter()
        .map(|p| read_public(&p).map(|k| (p, k)))
        .collect()
}

/// A new key from the kernel's random source.
pub fn generate() -> Result<SigningKey, BundleError> {
    let mut seed = [0u8; 32];
    let path = Path::new("/dev/urandom");
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| key_error(path, e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

pub fn sign(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    key.sign(message).to_bytes().to_vec()
}

/// The key (from `keys`) that signed `message`, if any.
pub fn verify<'k>(
    keys: &'k [(PathBuf, VerifyingKey)],
    message: &[u8],
    signature: &[u8],
) -> Result<&'k Path, BundleError> {
    if signature.is_empty() {
        return Err(BundleError::Unsigned);
    }
    let sig = <[u8; 64]>::try_from(signature)
        .map(|b| Signature::from_bytes(&b))
        .map_err(|_| BundleError::BadSignature)?;
    keys.iter()
        .find(|(_, k)| k.verify_strict(message, &sig).is_ok())
        .map(|(p, _)| p.as_path())
        .ok_or(BundleError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pub");
        std::fs::write(&p, public_pem(&key.verifying_key())).unwrap();
        let keys = read_public_dir(dir.path()).unwrap();
        let sig = sign(&key, b"msg");
        assert!(verify(&keys, b"msg", &sig).is_ok());
        assert!(matches!(
            verify(&keys, b"msh", &sig),
            Err(BundleError::BadSignature)
        ));
        assert!(matches!(
            verify(&keys, b"msg", b""),
            Err(BundleError::Unsigned)
        ));
    }
}
