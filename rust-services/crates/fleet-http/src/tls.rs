//! Client TLS for `https://` (the supervisor's apiEndpoint, fleetd's update URLs): rustls with
//! the `ring` provider, trusting the system bundle plus a CA config.json names
//! (`balenaRootCA`, `fleet.supervisor.rootCA`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// The Debian/OE `ca-certificates` bundle, relative to the root prefix.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where trust comes from: the system bundle path and config.json's extra CA (PEM text, or
/// base64 of it as balenaOS writes `balenaRootCA`), with the key it came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustSource {
    pub system_bundle: PathBuf,
    pub extra_ca: Option<(String, String)>,
}

/// A client configuration and what went into it.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<ClientConfig>,
    /// Certificates trusted, from the bundle and from config.json.
    pub bundle_roots: usize,
    pub config_roots: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("config.json {key}: not a usable CA")]
    ExtraCa {
        key: String,
        #[source]
        problem: CaProblem,
    },
    #[error(
        "no trusted certificates: {bundle} gives none and config.json has no balenaRootCA",
        bundle = bundle.display()
    )]
    NoRoots {
        bundle: PathBuf,
        #[source]
        problem: BundleProblem,
    },
    #[error("TLS setup: the ring provider offers no safe protocol version")]
    Setup(#[source] rustls::Error),
}

/// Why config.json's CA cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum CaProblem {
    #[error("neither PEM text nor base64 of PEM")]
    NotPemOrBase64,
    #[error("bad PEM")]
    BadPem(#[source] rustls::pki_types::pem::Error),
    #[error("not a usable CA certificate")]
    Unusable(#[source] rustls::Error),
    #[error("holds no PEM certificate")]
    Empty,
}

/// Why the system bundle gave no trust root.
#[derive(Debug, thiserror::Error)]
pub enum BundleProblem {
    #[error("cannot be read")]
    Unreadable(#[source] std::io::Error),
    #[error("holds no certificate")]
    Empty,
}

impl Tls {
    /// Reads the trust roots. A missing or unreadable system bundle is not an error while
    /// config.json supplies a CA (a self-hosted server); an unusable config.json CA is.
    pub fn load(source: &TrustSource) -> Result<Tls, TlsError> {
        let mut roots = RootCertStore::empty();
        let (bundle_roots, bundle_problem) = match std::fs::read(&source.system_bundle) {
            Ok(pem) => {
                let (added, _ignored) =
                    roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).flatten());
                (added, (added == 0).then_some(BundleProblem::Empty))
            }
            Err(e) => (0, Some(BundleProblem::Unreadable(e))),
        };
        let mut config_roots = 0;
        if let Some((key, value)) = &source.extra_ca {
            let extra = |problem: CaProblem| TlsError::ExtraCa {
                key: key.clone(),
                problem,
            };
            let pem = decode_ca(value).map_err(extra)?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| extra(CaProblem::BadPem(e)))?;
                roots.add(cert).map_err(|e| extra(CaProblem::Unusable(e)))?;
                config_roots += 1;
            }
            if config_roots == 0 {
                return Err(extra(CaProblem::Empty));
            }
        }
        if roots.is_empty() {
            return Err(TlsError::NoRoots {
                bundle: source.system_bundle.clone(),
                problem: bundle_problem.unwrap_or(BundleProblem::Empty),
            });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls {
            config: Arc::new(config),
            bundle_roots,
            config_roots,
        })
    }
}

impl TrustSource {
    /// The bundle below `root` (`/` in the container) and the CA from config.json.
    pub fn new(root: &Path, extra_ca: Option<(String, String)>) -> TrustSource {
        TrustSource {
            system_bundle: root.join(SYSTEM_BUNDLE.trim_start_matches('/')),
            extra_ca,
        }
    }
}

/// `balenaRootCA` as the balena supervisor reads it (Node's `Buffer.from(v, 'base64')`):
/// padding optional.
const CA_BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// PEM text as is; anything else is taken as base64 of PEM (balenaOS's `balenaRootCA`).
fn decode_ca(value: &str) -> Result<Vec<u8>, CaProblem> {
    if value.contains("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    let digits: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    CA_BASE64
        .decode(digits)
        .ok()
        .filter(|pem| !pem.is_empty())
        .ok_or(CaProblem::NotPemOrBase64)
}

/// The reason of a failed handshake in words, naming the host for a name mismatch.
pub fn describe_failure(e: &std::io::Error, host: &str) -> String {
    use rustls::{CertificateError, Error};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) else {
        return format!("TLS connection to {host} failed");
    };
    match tls {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "TLS: the server's certificate is not trusted (its issuer is neither in the system bundle nor config.json's balenaRootCA)".into()
        }
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("TLS: the server's certificate is not valid for the name {host}"),
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "TLS: the server's certificate has expired (or the device clock is wrong)".into(),
        Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "TLS: the server's certificate is not valid yet (is the device clock set?)".into(),
        other => format!("TLS: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64_as_balena_writes_it() {
        assert_eq!(decode_ca("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_ca("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_ca("aGVs\nbG8h").unwrap(), b"hello!");
        assert!(decode_ca("a").is_err());
        assert!(decode_ca("a*b=").is_err());
        assert!(decode_ca("").is_err());
    }

    #[test]
    fn a_bad_config_ca_is_an_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let source = TrustSource::new(
            dir.path(),
            Some(("balenaRootCA".into(), "bm90IGEgY2VydA==".into())),
        );
        let e = Tls::load(&source).err().unwrap();
        assert_eq!(e.to_string(), "config.json balenaRootCA: not a usable CA");
        assert!(
            matches!(
                e,
                TlsError::ExtraCa {
                    problem: CaProblem::Empty,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn no_roots_at_all_is_an_error_naming_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let e = Tls::load(&TrustSource::new(dir.path(), None))
            .err()
            .unwrap();
        assert!(e.to_string().contains("ca-certificates.crt"), "{e}");
        assert!(
            matches!(
                e,
                TlsError::NoRoots {
                    problem: BundleProblem::Unreadable(_),
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
