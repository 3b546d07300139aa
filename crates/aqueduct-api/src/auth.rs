//! Who is calling: bearer tokens map to a tenant or to the admin role. Tokens are kept as SHA-256 digests,
//! so the config never holds a usable secret.

use std::collections::HashMap;

use aqueduct_model::config::TokenConfig;
use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Sees and changes every datastream.
    Admin,
    /// Sees and changes only the datastreams it owns.
    Tenant(String),
    /// No tokens are configured: the API is open, as for an admin.
    Open,
}

impl Principal {
    /// Whether the caller may see and change a stream owned by `owner`.
    pub fn may_access(&self, owner: Option<&str>) -> bool {
        match self {
            Principal::Admin | Principal::Open => true,
            Principal::Tenant(tenant) => owner == Some(tenant.as_str()),
        }
    }

    /// For the audit log.
    pub fn name(&self) -> String {
        match self {
            Principal::Admin => "admin".to_string(),
            Principal::Tenant(tenant) => format!("tenant:{tenant}"),
            Principal::Open => "anonymous".to_string(),
        }
    }
}

/// The accepted tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_digest: HashMap<String, Principal>,
}

/// Lowercase hex SHA-256 of `token`.
pub fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Tokens {
    pub fn new(tokens: &[TokenConfig]) -> Self {
        let by_digest = tokens
            .iter()
            .map(|t| {
                let principal = match &t.tenant {
                    Some(tenant) if !t.admin => Principal::Tenant(tenant.clone()),
                    _ => Principal::Admin,
                };
                (t.sha256.to_ascii_lowercase(), principal)
            })
            .collect();
        Self { by_digest }
    }

    pub fn is_open(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The caller of a request with these headers; 401 without a valid bearer token.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        if self.is_open() {
            return Ok(Principal::Open);
        }
        let unauthorized = |why: &str| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!("{why}: send Authorization: Bearer <token>"),
            )
        };
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("no token"))?
            .to_str()
            .map_err(|_| unauthorized("unreadable Authorization header"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| unauthorized("not a bearer token"))?
            .trim();
        self.by_digest
            .get(&digest(token))
            .cloned()
            .ok_or_else(|| unauthorized("unknown token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&[
            TokenConfig {
                sha256: digest("team-a-secret"),
                tenant: Some("team-a".to_string()),
                admin: false,
            },
            TokenConfig {
                sha256: digest("root").to_uppercase(),
                tenant: None,
                admin: true,
            },
        ])
    }

    fn bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn tokens_map_to_their_principal() {
        let tokens = tokens();
        assert_eq!(
            tokens.authenticate(&bearer("Bearer team-a-secret")),
            Ok(Principal::Tenant("team-a".to_string()))
        );
        assert_eq!(
            tokens.authenticate(&bearer("Bearer root")),
            Ok(Principal::Admin)
        );
        for bad in ["Bearer nope", "Basic cm9vdA==", "root"] {
            let error = tokens.authenticate(&bearer(bad)).unwrap_err();
            assert_eq!(error.status, StatusCode::UNAUTHORIZED, "{bad}");
        }
        assert_eq!(
            tokens.authenticate(&HeaderMap::new()).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn tenants_reach_only_their_own_streams() {
        let tenant = Principal::Tenant("team-a".to_string());
        assert!(tenant.may_access(Some("team-a")));
        assert!(!tenant.may_access(Some("team-b")));
        assert!(!tenant.may_access(None));
        assert!(Principal::Admin.may_access(Some("team-b")));
        assert!(Tokens::default().is_open());
        assert_eq!(
            Tokens::default().authenticate(&HeaderMap::new()),
            Ok(Principal::Open)
        );
    }

    #[test]
    fn the_digest_is_sha256_in_hex() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
