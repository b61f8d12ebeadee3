//! TLS for the listeners (rustls, ring): a listener's certificate chain and key
//! from PEM files, served through a resolver whose certificate a reload swaps.
//!
//! - TLS 1.2 and 1.3 only (rustls has nothing older); ALPN `h2` and
//!   `http/1.1` on the admin listener, `http/1.1` on ingest.
//! - The current certificate is an `Arc<CertifiedKey>` behind [`Live`]: a new
//!   handshake takes the one in effect then, connections already open keep
//!   theirs.
//! - [`Certificates::reload`] (on a config reload) and [`Certificates::watch`]
//!   (a poll of the files' mtime, size and inode) load the files again; a pair
//!   that does not load (bad PEM, a key that does not match) is logged and the
//!   running certificate stays.
//! - Errors name the file, never its content: the key is never logged.
//!
//! A leaf module: the config's checks and the listeners both use it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

/// How often [`Certificates::watch`] looks at the files: two `stat` calls.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Why a certificate and key pair did not load. The messages name the files,
/// never what is in them.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not PEM, or a PEM section is broken.
    #[error("`{0}` is not valid PEM")]
    BadPem(PathBuf),
    /// The certificate file holds no `CERTIFICATE` section.
    #[error("`{0}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate(PathBuf),
    /// The key file holds no private key section.
    #[error("`{0}` holds no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)")]
    NoKey(PathBuf),
    /// The key is of a kind rustls does not sign with.
    #[error("the private key in `{0}` is not usable (RSA, ECDSA P-256/P-384 or Ed25519 are)")]
    BadKey(PathBuf),
    /// The first certificate cannot be parsed.
    #[error("the certificate in `{0}` cannot be parsed")]
    BadCertificate(PathBuf),
    /// The key is not the certificate's.
    #[error("the private key in `{key}` does not match the certificate in `{cert}`")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// The certificate chain and private key files of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM certificate chain, the listener's own certificate first.
    pub cert: PathBuf,
    /// PEM private key of that certificate.
    pub key: PathBuf,
}

/// Which file of a pair an error is about, for the config's error positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The certificate file.
    Cert,
    /// The key file.
    Key,
    /// The pair (a key that does not match).
    Pair,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl CertFiles {
    /// Reads and checks both files: the chain, a usable key, and that the key
    /// is the certificate's. The error says which file it is about.
    pub fn load(&self) -> Result<Arc<CertifiedKey>, (Which, TlsError)> {
        let cert_pem = read(&self.cert).map_err(|e| (Which::Cert, e))?;
        let key_pem = read(&self.key).map_err(|e| (Which::Key, e))?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| (Which::Cert, TlsError::BadPem(self.cert.clone())))?;
        if chain.is_empty() {
            return Err((Which::Cert, TlsError::NoCertificate(self.cert.clone())));
        }
        // The PEM error of a key file may quote a line of it: never shown.
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            pem::Error::NoItemsFound => (Which::Key, TlsError::NoKey(self.key.clone())),
            _ => (Which::Key, TlsError::BadPem(self.key.clone())),
        })?;
        let signer = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|_| (Which::Key, TlsError::BadKey(self.key.clone())))?;
        let certified = CertifiedKey::new(chain, signer);
        match certified.keys_match() {
            Ok(()) => Ok(Arc::new(certified)),
            Err(rustls::Error::InconsistentKeys(_)) => Err((
                Which::Pair,
                TlsError::Mismatch {
                    cert: self.cert.clone(),
                    key: self.key.clone(),
                },
            )),
            Err(_) => Err((Which::Cert, TlsError::BadCertificate(self.cert.clone()))),
        }
    }

    /// What identifies the files' present contents cheaply: (mtime, size,
    /// inode) of each; `None` for a file that cannot be looked at.
    fn stamp(&self) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        let one = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().ok(), m.len(), m.ino()))
        };
        (one(&self.cert), one(&self.key))
    }
}

type Stamp = (
    Option<(Option<std::time::SystemTime>, u64, u64)>,
    Option<(Option<std::time::SystemTime>, u64, u64)>,
);

/// A listener's certificate, swapped by reloads; the rustls resolver of its
/// server config.
pub struct Certificates {
    /// `server.tls` or `server.admin_tls`, for log lines.
    setting: &'static str,
    current: RwLock<Arc<CertifiedKey>>,
    files: Mutex<(CertFiles, Stamp)>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("setting", &self.setting)
            .field("files", &self.files.lock().0)
            .finish()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

impl Certificates {
    /// Loads `files` for the listener of `setting`.
    pub fn load(setting: &'static str, files: CertFiles) -> Result<Arc<Self>, TlsError> {
        let stamp = files.stamp();
        let key = files.load().map_err(|(_, e)| e)?;
        Ok(Arc::new(Certificates {
            setting,
            current: RwLock::new(key),
            files: Mutex::new((files, stamp)),
        }))
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().clone()
    }

    /// Loads `files` (the running ones, or new paths from a reloaded config)
    /// and serves them from the next handshake on. On failure the running
    /// certificate stays, and the error is logged and returned.
    pub fn reload(&self, files: &CertFiles) -> Result<(), TlsError> {
        let mut held = self.files.lock();
        self.load_into(&mut held, files)
    }

    /// Loads the files again if they changed since they were last loaded.
    pub fn reload_if_changed(&self) {
        // One lock for the look and the load: a reload with new paths
        // cannot be undone by a look at the old ones.
        let mut held = self.files.lock();
        let files = held.0.clone();
        if files.stamp() != held.1 {
            let _ = self.load_into(&mut held, &files);
        }
    }

    fn load_into(&self, held: &mut (CertFiles, Stamp), files: &CertFiles) -> Result<(), TlsError> {
        // The stamp first: a change during the load is seen at the next look.
        let stamp = files.stamp();
        let loaded = files.load().map_err(|(_, e)| e);
        // Seen, even if it failed: the watcher logs a bad pair once, not
        // at every look.
        *held = (files.clone(), stamp);
        match loaded {
            Ok(key) => {
                *self.current.write() = key;
                tracing::info!(
                    setting = self.setting,
                    cert = %files.cert.display(),
                    "TLS certificate loaded"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    setting = self.setting,
                    error = %e,
                    "TLS certificate not reloaded; the running one stays"
                );
                Err(e)
            }
        }
    }

    /// Looks at the files every `every` until `stop`, and loads them again when
    /// one changed (renewals by certbot and the like need no signal).
    pub async fn watch(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
                }
                _ = stop.cancelled() => break,
            }
        }
    }
}

/// What a TLS listener needs: the rustls server config, whose resolver is
/// [`Certificates`].
#[derive(Clone)]
pub struct Acceptor {
    /// Accepts handshakes.
    pub inner: tokio_rustls::TlsAcceptor,
    /// The certificates it serves.
    pub certificates: Arc<Certificates>,
}

impl Acceptor {
    /// A TLS 1.2/1.3 acceptor serving `certificates`, offering `alpn`
    /// (`[b"h2", b"http/1.1"]` on the admin listener).
    pub fn new(certificates: Arc<Certificates>, alpn: &[&[u8]]) -> Self {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(certificates.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Acceptor {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            certificates,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &str, key: &str) -> CertFiles {
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        CertFiles { cert: c, key: k }
    }

    #[test]
    fn errors_name_the_file_and_never_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = CertFiles {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
        };
        let (which, e) = missing.load().unwrap_err();
        assert_eq!(which, Which::Cert);
        assert!(e.to_string().contains("nope.pem"), "{e}");

        let f = files(
            dir.path(),
            "not pem at all",
            "-----BEGIN PRIVATE KEY-----\nSECRETSTUFF\n",
        );
        let (which, e) = f.load().unwrap_err();
        assert_eq!(which, Which::Cert);
        assert!(e.to_string().contains("c.pem"), "{e}");

        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let f = files(
            dir.path(),
            cert,
            "-----BEGIN PRIVATE KEY-----\nSECRETSTUFF\n",
        );
        let (which, e) = f.load().unwrap_err();
        assert_eq!(which, Which::Key);
        let text = format!("{e} {e:?}");
        assert!(
            text.contains("k.pem") && !text.contains("SECRETSTUFF"),
            "{text}"
        );

        let f = files(dir.path(), cert, "nothing here");
        let (_, e) = f.load().unwrap_err();
        assert!(matches!(e, TlsError::NoKey(_)), "{e}");
    }
}
