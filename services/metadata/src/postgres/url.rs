//! Store URLs: `postgres://user:password@host:port/database?param=value&...`.
//!
//! libpq's parameters are passed to tokio-postgres as they are; Strata's own (`pool_size`)
//! are taken out first. [`redacted`] hides passwords wherever a URL is shown.

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::config::SslMode;

use super::error;
use super::tls::ServerVerification;
use crate::store::StoreError;

/// Connections a store keeps open at most unless the URL sets `pool_size`.
pub const DEFAULT_POOL_SIZE: usize = 10;

/// Time to open one connection when the URL sets no `connect_timeout`.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection settings parsed from a store URL.
#[derive(Debug, Clone)]
pub struct PostgresUrl {
    /// What tokio-postgres connects with.
    pub config: tokio_postgres::Config,
    /// Connections kept open at most.
    pub pool_size: usize,
    /// How the server's certificate is checked when TLS is used.
    pub verification: ServerVerification,
}

/// Parameters Strata reads itself; the rest go to tokio-postgres.
#[derive(Default)]
struct OwnParams<'a> {
    pool_size: Option<&'a str>,
    root_cert: Option<&'a str>,
    verify: bool,
}

impl PostgresUrl {
    /// Parses a `postgres://` or `postgresql://` URL. Strata reads `pool_size`,
    /// `sslrootcert` and the `verify-ca` / `verify-full` modes of `sslmode` itself (see
    /// [`super::tls`]); the other parameters go to tokio-postgres as they are.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(invalid(
                "expected postgres://user@host:port/database".into(),
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut own = OwnParams::default();
        let mut kept = Vec::new();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            match param.split_once('=') {
                Some(("pool_size", value)) => own.pool_size = Some(value),
                Some(("sslrootcert", value)) => own.root_cert = Some(value),
                Some(("sslmode", "verify-ca" | "verify-full")) => {
                    own.verify = true;
                    kept.push("sslmode=require");
                }
                _ => kept.push(param),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| invalid(error::describe(&e)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("strata-metadata");
        }
        let pool_size =
            match own.pool_size {
                None => DEFAULT_POOL_SIZE,
                Some(value) => value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    invalid(format!("pool_size {value:?} is not a positive integer"))
                })?,
            };
        let verification = match (own.root_cert, own.verify) {
            (Some(path), _) => {
                if config.get_ssl_mode() != SslMode::Disable {
                    config.ssl_mode(SslMode::Require);
                }
                ServerVerification::CaFile(PathBuf::from(percent_decoded(path)?))
            }
            (None, true) => {
                return Err(invalid(
                    "sslmode=verify-ca and verify-full need sslrootcert=/path/to/ca.pem".into(),
                ))
            }
            (None, false) => ServerVerification::Unverified,
        };
        Ok(Self {
            config,
            pool_size,
            verification,
        })
    }
}

fn invalid(why: String) -> StoreError {
    StoreError::InvalidRequest(format!("store URL: {why}"))
}

/// Decodes `%XX` escapes of a URL parameter value.
fn percent_decoded(value: &str) -> Result<String, StoreError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(format!("bad %-escape in {value:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(format!("{value:?} is not UTF-8")))
}

/// The URL with its password (in the user info or a `password=` parameter) replaced by
/// `***`, for logs and error messages.
pub fn redacted(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let authority = match authority.rsplit_once('@') {
                Some((user_info, host)) => match user_info.split_once(':') {
                    Some((user, _)) => format!("{user}:***@{host}"),
                    None => authority.to_string(),
                },
                None => authority.to_string(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_string(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some(("password", _)) => "password=***".to_string(),
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted("postgres://strata:s3cr%40t@db:5432/meta?sslmode=disable&password=x"),
            "postgres://strata:***@db:5432/meta?sslmode=disable&password=***"
        );
        assert_eq!(
            redacted("postgres://strata@db/meta"),
            "postgres://strata@db/meta"
        );
        assert_eq!(redacted("sqlite:///var/x.db"), "sqlite:///var/x.db");
    }

    #[test]
    fn root_certificates_turn_verification_on() {
        let url = PostgresUrl::parse(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Frds.pem",
        )
        .unwrap();
        assert_eq!(
            url.verification,
            ServerVerification::CaFile(PathBuf::from("/etc/rds.pem"))
        );
        assert_eq!(url.config.get_ssl_mode(), SslMode::Require);
        let url = PostgresUrl::parse("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!(url.verification, ServerVerification::Unverified);
        assert!(PostgresUrl::parse("postgres://u@h/db?sslmode=verify-ca").is_err());
    }
}
