//! Bearer credentials, shared by the ingest API (API keys) and the admin API
//! (the admin token): reading them from a request and comparing them.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

/// The token of an `Authorization: Bearer TOKEN` header, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// True when `presented` (trimmed) is `secret`, compared in constant time so
/// the answer's timing does not leak how much of it matched.
pub fn secret_matches(secret: &str, presented: &str) -> bool {
    secret.as_bytes().ct_eq(presented.trim().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_compares_bearer_tokens() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(AUTHORIZATION, "Bearer s3cret ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("s3cret "));
        assert!(secret_matches("s3cret", "s3cret "));
        assert!(!secret_matches("s3cret", "s3cre"));
        assert!(!secret_matches("s3cret", "s3cret2"));
    }
}
