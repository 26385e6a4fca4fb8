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

/// Named bearer tokens (`[admin] token` as `admin`, `[admin.tokens]`):
/// a presented token is compared with every secret in constant time, and
/// the match names the caller.
#[derive(Clone, Default)]
pub struct Tokens(Vec<(String, String)>);

impl Tokens {
    /// Tokens as `(name, secret)`.
    pub fn new(tokens: Vec<(String, String)>) -> Self {
        Self(tokens)
    }

    /// True when no token is configured (the guarded routes are closed).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The name of the token `presented` is, if any. Every secret is
    /// compared, so the time taken does not say which one matched.
    pub fn identify(&self, presented: &str) -> Option<&str> {
        let mut found = None;
        for (name, secret) in &self.0 {
            if secret_matches(secret, presented) && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: secrets never reach a log.
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_caller() {
        let tokens = Tokens::new(vec![
            ("admin".into(), "s3cret".into()),
            ("alice".into(), "alice-secret".into()),
        ]);
        assert_eq!(tokens.identify("s3cret"), Some("admin"));
        assert_eq!(tokens.identify("alice-secret "), Some("alice"));
        assert_eq!(tokens.identify("bob"), None);
        assert_eq!(tokens.identify(""), None);
        assert!(Tokens::default().is_empty());
        assert!(Tokens::default().identify("").is_none());
        assert_eq!(format!("{tokens:?}"), r#"["admin", "alice"]"#);
    }

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
