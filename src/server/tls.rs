//! Built-in TLS: the certificate chain and key from PEM files (rustls, ring), offered with ALPN
//! for HTTP/2 and HTTP/1.1, and reloaded without a restart on SIGHUP or when either file
//! changes. A reload that fails keeps the certificate in use and says why in the log.
use super::config::TlsFiles;
use anyhow::Context;
use arc_swap::ArcSwap;
use std::{sync::Arc, time::Duration, time::SystemTime};
use tokio_rustls::{
    rustls::{
        self,
        pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
        server::{ClientHello, ResolvesServerCert},
        sign::CertifiedKey,
        ServerConfig,
    },
    TlsAcceptor,
};
use tokio_util::sync::CancellationToken;

/// How often the files' modification times are compared.
const CHECK_FILES_EVERY: Duration = Duration::from_secs(2);

/// The certificate in use, swapped whole when the files change.
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl Certificates {
    /// Reads both files; fails (start-up stops) if they are missing, malformed or do not match.
    pub fn load(files: TlsFiles) -> anyhow::Result<Arc<Self>> {
        let key = read_key(&files)?;
        Ok(Arc::new(Self {
            files,
            current: ArcSwap::from_pointee(key),
        }))
    }

    /// Reads the files again; on failure the certificate in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        self.current.store(Arc::new(read_key(&self.files)?));
        Ok(())
    }

    /// A TLS acceptor offering h2 and http/1.1 that always presents the current certificate.
    pub fn acceptor(self: &Arc<Self>) -> anyhow::Result<TlsAcceptor> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    fn stamps(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let modified =
            |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        (modified(&self.files.cert), modified(&self.files.key))
    }

    /// Reloads on SIGHUP and whenever either file's modification time changes, until shutdown.
    pub async fn keep_fresh(self: Arc<Self>, shutdown: CancellationToken) {
        #[cfg(unix)]
        let mut hangups =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut seen = self.stamps();
        let mut every = tokio::time::interval(CHECK_FILES_EVERY);
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hangups.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            let why = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = hangup => "SIGHUP",
                _ = every.tick() => {
                    let now = self.stamps();
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    "the files changed"
                }
            };
            match self.reload() {
                Ok(()) => tracing::info!(why, "TLS certificate reloaded"),
                Err(error) => {
                    tracing::error!(why, error = %format!("{error:#}"), "TLS certificate not reloaded; the previous one stays in use")
                }
            }
        }
    }
}

fn read_key(files: &TlsFiles) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate chain {}", files.cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "no certificate in {}",
        files.cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key {}", files.key.display()))?;
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
        .context("the private key does not match the certificate, or is of an unsupported kind")
}
