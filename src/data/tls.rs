//! TLS material, read once at start: PEM certificates and keys (rustls-pki-types), the client
//! configuration for `https://` upstreams (Mozilla's roots from webpki-roots, plus any CA the
//! operator adds for internal upstreams), and the server configuration of a listener that
//! terminates TLS itself, which `SIGHUP` reloads (certificate renewal without a restart). One
//! crypto provider (aws-lc-rs) serves both, chosen explicitly so
//! nothing depends on a process-wide default.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Every certificate in a PEM file; a file with none is an error (a wrong path or a key file
/// given by mistake should not pass silently).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certificates)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1). The error never quotes the file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a PEM private key from {}: {e}", path.display()))
}

/// The client side of `https://` upstreams: the public web's roots plus `extra_roots`.
pub fn upstream_client_config(extra_roots: &[CertificateDer<'static>]) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for root in extra_roots {
        roots.add(root.clone()).map_err(|e| format!("a CA certificate cannot be used: {e}"))?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A listener's TLS: the certificate chain and key, checked to belong together, with ALPN
/// offering HTTP/2 and HTTP/1.1.
pub fn server_config(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not make a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Which of a listener's two files is wrong, and how.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The certificate file, or the pair (a certificate that is not the key's).
    #[error("{0}")]
    Certificate(String),
    /// The key file: unreadable, or no private key in it.
    #[error("{0}")]
    Key(String),
}

/// A listener's certificate and key, and the server configuration made of them, which can be
/// swapped while the listener serves: each new connection takes the current one; connections
/// already open keep theirs.
pub struct ListenerCertificate {
    /// Read again on `SIGHUP`.
    pub cert_file: PathBuf,
    /// Read again on `SIGHUP`, with the certificate.
    pub key_file: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl ListenerCertificate {
    /// Reads and checks the pair.
    pub fn load(cert_file: PathBuf, key_file: PathBuf) -> Result<Self, CertificateError> {
        let config = Self::read(&cert_file, &key_file)?;
        Ok(ListenerCertificate { cert_file, key_file, current: RwLock::new(Arc::new(config)) })
    }

    fn read(cert_file: &Path, key_file: &Path) -> Result<ServerConfig, CertificateError> {
        let chain = read_certificates(cert_file).map_err(CertificateError::Certificate)?;
        let key = read_private_key(key_file).map_err(CertificateError::Key)?;
        server_config(chain, key).map_err(CertificateError::Certificate)
    }

    /// The configuration for the next connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads the files again. On any error the previous certificate stays in use, so a
    /// half-written renewal never takes a listener down.
    pub fn reload(&self) -> Result<(), CertificateError> {
        let config = Self::read(&self.cert_file, &self.key_file)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        Ok(())
    }
}

/// The paths only: the configuration holds the private key.
impl std::fmt::Debug for ListenerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerCertificate")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}
