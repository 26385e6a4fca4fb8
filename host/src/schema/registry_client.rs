//! A client of an external Confluent-compatible schema registry
//! (`[schema_registry] url`): ids of the schemas this host writes (looked
//! up, or registered with `auto_register` after a compatibility check), and
//! writer schemas of other producers' records, fetched by id and cached.
//!
//! **Outages.** Ids already known keep working without the registry. A
//! stage that meets an unknown id while the registry is unreachable holds
//! its batch (retrying with backoff, committing nothing, dead-lettering
//! nothing) and `/readyz` answers 503 with `schema_registry` saying why,
//! until the registry answers again. An id the registry does not have
//! (404) is a permanent error: that record is dead-lettered.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value as Json, json};

use crate::config::{SchemaRegistryConfig, interpolate_env};

/// Why a registry call failed.
#[derive(Debug)]
pub enum ClientError {
    /// The registry is unreachable, answered 5xx or 429, or refused the
    /// credentials (401, 403): try again later.
    Transient(String),
    /// The registry answered that the request cannot succeed.
    Permanent(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Transient(m) | ClientError::Permanent(m) => f.write_str(m),
        }
    }
}

/// Since when and why the registry is unreachable, for `/readyz`.
static OUTAGE: RwLock<Option<(Instant, String)>> = RwLock::new(None);

/// The current registry outage, if a held batch is waiting on one:
/// seconds since it began and the last error.
pub fn outage() -> Option<(u64, String)> {
    OUTAGE.read().ok().and_then(|o| {
        o.as_ref()
            .map(|(since, why)| (since.elapsed().as_secs(), why.clone()))
    })
}

fn set_outage(why: Option<String>) {
    if let Ok(mut outage) = OUTAGE.write() {
        match why {
            Some(why) => {
                let since = outage.as_ref().map_or_else(Instant::now, |(s, _)| *s);
                *outage = Some((since, why));
            }
            None => *outage = None,
        }
    }
}

/// An HTTP client of one registry.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    basic: Option<(String, String)>,
    bearer: Option<String>,
    /// Register route schemas at start-up.
    pub auto_register: bool,
}

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

impl RegistryClient {
    /// From `[schema_registry]`, reading `${VAR}`s.
    pub fn from_config(config: &SchemaRegistryConfig) -> anyhow::Result<Self> {
        let var = |v: &Option<String>, key: &str| {
            v.as_deref()
                .map(interpolate_env)
                .transpose()
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("schema_registry.{key}"))
        };
        let base = interpolate_env(&config.url)
            .map_err(anyhow::Error::msg)
            .context("schema_registry.url")?
            .trim_end_matches('/')
            .to_string();
        let basic = match (
            var(&config.username, "username")?,
            var(&config.password, "password")?,
        ) {
            (Some(user), password) => Some((user, password.unwrap_or_default())),
            (None, Some(_)) => bail!("schema_registry.password needs schema_registry.username"),
            (None, None) => None,
        };
        let bearer = var(&config.token, "token")?;
        if basic.is_some() && bearer.is_some() {
            bail!("schema_registry: set username/password or token, not both");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .context("cannot build the schema registry's HTTP client")?;
        Ok(Self {
            base,
            http,
            basic,
            bearer,
            auto_register: config.auto_register,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        if let Some((user, password)) = &self.basic {
            request = request.basic_auth(user, Some(password));
        }
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        request
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<(u16, Json), ClientError> {
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Transient(format!("schema registry unreachable: {e}")))?;
        let status = response.status().as_u16();
        let body: Json = response.json().await.unwrap_or(Json::Null);
        // Refused credentials are an operator's to fix, not the record's
        // fault: held and reported like an outage, never dead-lettered.
        if status >= 500 || status == 429 || status == 401 || status == 403 {
            return Err(ClientError::Transient(format!(
                "schema registry answered {status}: {body}"
            )));
        }
        Ok((status, body))
    }

    fn subject_path(subject: &str) -> String {
        // Subjects are topic names plus `-value`: no characters to escape
        // but the path separator.
        subject.replace('/', "%2F")
    }

    /// The schema text of `id` (`GET /schemas/ids/{id}`).
    pub async fn schema_by_id(&self, id: u32) -> Result<String, ClientError> {
        let (status, body) = self
            .call(self.request(reqwest::Method::GET, &format!("/schemas/ids/{id}")))
            .await?;
        match (status, body.get("schema").and_then(Json::as_str)) {
            (200, Some(schema)) => Ok(schema.to_string()),
            _ => Err(ClientError::Permanent(format!(
                "schema registry has no schema {id} ({status}: {body})"
            ))),
        }
    }

    /// The id of `schema` under `subject`, registering it first when
    /// `auto_register` (after checking it is compatible with the latest
    /// version), else looking it up.
    pub async fn id_for(&self, subject: &str, schema: &str) -> anyhow::Result<u32> {
        let path = Self::subject_path(subject);
        let body = json!({ "schema": schema });
        if self.auto_register {
            let (status, answer) = self
                .call(
                    self.request(
                        reqwest::Method::POST,
                        &format!("/compatibility/subjects/{path}/versions/latest"),
                    )
                    .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                    .json(&body),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            // 404: no subject (or no version) yet; anything compatible goes.
            if status == 200 && answer.get("is_compatible") == Some(&Json::Bool(false)) {
                bail!(
                    "the schema is not compatible with the latest version of subject `{subject}`: {answer}"
                );
            }
            let (status, answer) = self
                .call(
                    self.request(reqwest::Method::POST, &format!("/subjects/{path}/versions"))
                        .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                        .json(&body),
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            return match (status, answer.get("id").and_then(Json::as_u64)) {
                (200, Some(id)) => Ok(id as u32),
                _ => bail!("registering under subject `{subject}` failed ({status}: {answer})"),
            };
        }
        let (status, answer) = self
            .call(
                self.request(reqwest::Method::POST, &format!("/subjects/{path}"))
                    .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                    .json(&body),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        match (status, answer.get("id").and_then(Json::as_u64)) {
            (200, Some(id)) => Ok(id as u32),
            _ => bail!(
                "the schema is not registered under subject `{subject}` ({status}: {answer}); \
                 register it or set [schema_registry] auto_register = true"
            ),
        }
    }
}

/// Fetch a writer schema by id on a thread of its own (callers may be in
/// or out of an async runtime). With `hold`, a transient failure is retried
/// with backoff (200 ms doubling to 5 s) until the registry answers, and
/// reported as an outage meanwhile; without, it is returned.
pub fn fetch_blocking(
    client: &RegistryClient,
    handle: &tokio::runtime::Handle,
    id: u32,
    hold: bool,
) -> Result<String, ClientError> {
    let mut delay = Duration::from_millis(200);
    loop {
        let (client, handle2) = (client.clone(), handle.clone());
        let result = std::thread::spawn(move || handle2.block_on(client.schema_by_id(id)))
            .join()
            .unwrap_or_else(|_| Err(ClientError::Transient("registry fetch panicked".into())));
        match result {
            Err(ClientError::Transient(why)) if hold => {
                tracing::warn!(id, error = %why, "schema registry unavailable: holding the batch");
                set_outage(Some(format!("fetching schema {id}: {why}")));
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => {
                if hold {
                    set_outage(None);
                }
                return other;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::Path;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;

    /// A registry that wants `Authorization: Basic dTpw` (u:p) or
    /// `Bearer tok`, knows schema 7, and is "down" (503) for id 9.
    async fn serve() -> String {
        let app = Router::new().route(
            "/schemas/ids/{id}",
            get(|Path(id): Path<u32>, headers: HeaderMap| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if auth != "Basic dTpw" && auth != "Bearer tok" {
                    return (StatusCode::UNAUTHORIZED, "{}".to_string());
                }
                match id {
                    7 => (StatusCode::OK, json!({"schema": "\"long\""}).to_string()),
                    9 => (StatusCode::SERVICE_UNAVAILABLE, "{}".to_string()),
                    _ => (
                        StatusCode::NOT_FOUND,
                        json!({"error_code": 40403}).to_string(),
                    ),
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn config(url: &str) -> SchemaRegistryConfig {
        SchemaRegistryConfig {
            url: url.into(),
            username: None,
            password: None,
            token: None,
            auto_register: false,
            timeout_ms: 2000,
            subject_strategy: Default::default(),
        }
    }

    #[tokio::test]
    async fn basic_and_bearer_auth_and_error_kinds() {
        let url = serve().await;
        // SAFETY: this test is the only reader of these variables.
        unsafe {
            std::env::set_var("SLUICE_TEST_SR_USER", "u");
            std::env::set_var("SLUICE_TEST_SR_PASSWORD", "p");
        }
        let basic = RegistryClient::from_config(&SchemaRegistryConfig {
            username: Some("${SLUICE_TEST_SR_USER}".into()),
            password: Some("${SLUICE_TEST_SR_PASSWORD}".into()),
            ..config(&url)
        })
        .unwrap();
        assert_eq!(basic.schema_by_id(7).await.unwrap(), "\"long\"");
        let bearer = RegistryClient::from_config(&SchemaRegistryConfig {
            token: Some("tok".into()),
            ..config(&url)
        })
        .unwrap();
        assert_eq!(bearer.schema_by_id(7).await.unwrap(), "\"long\"");
        let anonymous = RegistryClient::from_config(&config(&url)).unwrap();
        assert!(matches!(
            anonymous.schema_by_id(7).await,
            Err(ClientError::Transient(_))
        ));
        assert!(matches!(
            bearer.schema_by_id(8).await,
            Err(ClientError::Permanent(_))
        ));
        assert!(matches!(
            bearer.schema_by_id(9).await,
            Err(ClientError::Transient(_))
        ));
        let down = RegistryClient::from_config(&config("http://127.0.0.1:9")).unwrap();
        assert!(matches!(
            down.schema_by_id(7).await,
            Err(ClientError::Transient(_))
        ));
        assert!(
            RegistryClient::from_config(&SchemaRegistryConfig {
                token: Some("t".into()),
                username: Some("u".into()),
                ..config(&url)
            })
            .is_err()
        );
    }
}
