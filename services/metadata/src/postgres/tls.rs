//! TLS to PostgreSQL: rustls with the ring provider.
//!
//! libpq's `sslmode` values, as Strata applies them:
//!
//! | URL | TLS | server certificate |
//! | --- | --- | --- |
//! | `sslmode=disable` | never | - |
//! | `sslmode=prefer` (the default) | when the server offers it | not verified |
//! | `sslmode=require` | always | not verified (as libpq without a root certificate) |
//! | `sslrootcert=FILE`, or `sslmode=verify-ca` / `verify-full` with it | always | must chain to a CA in FILE (PEM) and name the host |
//!
//! An unverified certificate protects against eavesdropping but not against a machine
//! in the middle; name the CA bundle (for RDS, the region's bundle from AWS) with
//! `sslrootcert` to have the server proven. `verify-ca` is checked like `verify-full`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// How the server's certificate is checked when the connection uses TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerVerification {
    /// Not at all: the connection is encrypted, the server is not proven.
    Unverified,
    /// The chain must end at a CA of this PEM file and the certificate must name the host.
    CaFile(PathBuf),
}

/// The TLS connector the pool's connections use.
pub(super) fn connector(
    verification: &ServerVerification,
) -> Result<MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Database(format!("TLS setup: {e}")))?;
    let config = match verification {
        ServerVerification::Unverified => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
            .with_no_client_auth(),
        ServerVerification::CaFile(path) => builder
            .with_root_certificates(root_store(path)?)
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

fn root_store(path: &Path) -> Result<RootCertStore, StoreError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        StoreError::InvalidRequest(format!("sslrootcert {}: {e}", path.display()))
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
        roots
            .add(cert.map_err(|e| unreadable(&e))?)
            .map_err(|e| unreadable(&e))?;
    }
    if roots.is_empty() {
        return Err(unreadable(&"holds no certificate"));
    }
    Ok(roots)
}

/// libpq's `sslmode=require`: any certificate is accepted, but the handshake signatures
/// are still checked, so the session keys belong to whoever holds the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
