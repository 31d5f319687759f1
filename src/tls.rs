//! The TLS listeners' certificates, as rustls asks for them during each handshake: the one
//! whose names cover the client's SNI, else the listener's first. Read from their files at
//! start and again on every reload (a file that fails to load fails the reload, and the
//! certificates in force stay).
//!
//! Must not: read a file during a handshake, or log key material.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{load_certified_key, TlsListener};

/// One TLS listener's certificates.
pub(crate) struct Certs {
    pub address: SocketAddr,
    keys: ArcSwap<Vec<Arc<CertifiedKey>>>,
}

impl Certs {
    pub(crate) fn load(l: &TlsListener) -> Result<Certs, String> {
        Ok(Certs {
            address: l.address,
            keys: ArcSwap::from_pointee(read(l)?),
        })
    }

    /// Put `other`'s certificates in force (read by `load` beforehand, so a reload either
    /// replaces every listener's or none).
    pub(crate) fn replace(&self, other: Certs) {
        self.keys.store(other.keys.load_full());
    }
}

fn read(l: &TlsListener) -> Result<Vec<Arc<CertifiedKey>>, String> {
    l.certs
        .iter()
        .map(|files| {
            load_certified_key(files)
                .map_err(|(field, e)| format!("listen_tls {}: {field}: {e}", l.address))
        })
        .collect()
}

/// Whether `key`'s certificate is valid for `name` (its SANs, wildcards included).
fn covers(key: &CertifiedKey, name: &ServerName<'_>) -> bool {
    key.end_entity_cert()
        .ok()
        .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
        .is_some_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let keys = self.keys.load();
        let wanted = hello
            .server_name()
            .and_then(|sni| ServerName::try_from(sni).ok());
        if let Some(name) = wanted {
            if let Some(key) = keys.iter().find(|k| covers(k, &name)) {
                return Some(Arc::clone(key));
            }
        }
        keys.first().cloned()
    }
}

impl fmt::Debug for Certs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certs")
            .field("address", &self.address)
            .field("certificates", &self.keys.load().len())
            .finish()
    }
}
