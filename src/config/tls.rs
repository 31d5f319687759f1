//! The TLS listeners' certificates: a PEM chain and its private key read into a signing
//! `CertifiedKey`, at load (so `runoff check` names a bad file) and by the listeners' resolver
//! on every reload.
//!
//! Must not: keep key material anywhere but the `CertifiedKey` it returns, or log it.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::model::CertFiles;

/// Read `files` into a key rustls can serve; on failure, which field (`cert` or `key`) and
/// why.
pub fn load_certified_key(files: &CertFiles) -> Result<Arc<CertifiedKey>, (&'static str, String)> {
    let shown = |p: &std::path::Path| p.display().to_string();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| ("cert", format!("cannot read `{}`: {e}", shown(&files.cert))))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            (
                "cert",
                format!(
                    "`{}` is not a PEM certificate chain: {e}",
                    shown(&files.cert)
                ),
            )
        })?;
    if chain.is_empty() {
        return Err((
            "cert",
            format!("`{}` holds no certificate", shown(&files.cert)),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        (
            "key",
            format!("`{}` is not a PEM private key: {e}", shown(&files.key)),
        )
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| ("key", format!("`{}`: {e}", shown(&files.key))))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        (
            "key",
            format!(
                "`{}` is not the key of `{}`: {e}",
                shown(&files.key),
                shown(&files.cert)
            ),
        )
    })?;
    Ok(Arc::new(certified))
}
