//! Where the routing keys and the webhook token come from: AWS Secrets Manager (or the
//! environment, for local use), cached per container.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use crate::adapters::aws_call_timeouts;
use crate::config::callable_url;
use crate::domain::pagerduty::MAX_ROUTING_KEY_CHARS;

/// A PagerDuty integration key. Never printed: `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct RoutingKey(String);

impl RoutingKey {
    pub fn new(key: &str) -> Result<Self, SecretError> {
        let key = key.trim();
        let valid = !key.is_empty()
            && key.len() <= MAX_ROUTING_KEY_CHARS
            && key.bytes().all(|b| b.is_ascii_alphanumeric());
        if valid {
            Ok(RoutingKey(key.to_owned()))
        } else {
            Err(SecretError::Malformed(format!(
                "a routing key must be 1 to {MAX_ROUTING_KEY_CHARS} ASCII letters and digits"
            )))
        }
    }

    /// The key itself, for the one place that needs it: the body sent to PagerDuty.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RoutingKey(redacted)")
    }
}

/// The shared secret a caller must present. Compared in constant time, never printed.
#[derive(Clone)]
pub struct WebhookToken(String);

impl WebhookToken {
    /// `None` for an empty token: an empty token is no token.
    pub fn new(token: &str) -> Option<Self> {
        let token = token.trim();
        (!token.is_empty()).then(|| WebhookToken(token.to_owned()))
    }

    /// Constant-time: both sides are hashed to 32 bytes first, so not even the token's
    /// length shows in the timing.
    pub fn matches(&self, presented: &str) -> bool {
        let expected = Sha256::digest(self.0.as_bytes());
        let presented = Sha256::digest(presented.as_bytes());
        expected.as_slice().ct_eq(presented.as_slice()).into()
    }
}

impl fmt::Debug for WebhookToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookToken(redacted)")
    }
}

/// A credential of two-way (a signing secret, PagerDuty's REST API key, a Guance API
/// key). Never printed: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// `None` for an empty value: an empty credential is none.
    pub fn new(value: &str) -> Option<Self> {
        let value = value.trim();
        (!value.is_empty()).then(|| Credential(value.to_owned()))
    }

    /// The value itself, for the one place each is used: an HMAC key or a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(redacted)")
    }
}

/// One Guance workspace the bridge may recover events in: its OpenAPI key (the key
/// decides the workspace) and its site's OpenAPI host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuanceWorkspace {
    pub api_key: Credential,
    /// `https://...` (or `http://` on a loopback address), no trailing `/`.
    pub openapi_url: String,
}

/// Two-way's part of the secret: on once `pagerduty_webhook_secrets` is set.
#[derive(Debug, Clone, Default)]
pub struct TwoWaySecrets {
    /// PagerDuty's webhook signing secrets: more than one while a secret is rotated.
    pub signing_secrets: Vec<Credential>,
    /// PagerDuty's REST API key, to read an incident's alerts.
    pub pagerduty_api_token: Option<Credential>,
    /// By `df_workspace_uuid`. An entry that could not be read is left out (with a
    /// warning naming the workspace), so a typo there never stops the pages.
    pub guance_workspaces: BTreeMap<String, GuanceWorkspace>,
}

/// Everything the secret holds.
#[derive(Debug, Clone)]
pub struct WebhookSecrets {
    pub routing_key: RoutingKey,
    /// Every token accepted: more than one while a token is being rotated, so that the
    /// old one keeps working until Guance's notification object has the new one.
    pub webhook_tokens: Vec<WebhookToken>,
    pub routes: BTreeMap<String, RoutingKey>,
    /// `None` until `pagerduty_webhook_secrets` names at least one signing secret.
    pub two_way: Option<TwoWaySecrets>,
}

/// A route is the first path segment of the function URL: `POST /payments`.
pub fn is_valid_route_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A route as the function URL path it is called on, `/` or `/<name>`: the queue's
/// message group and the metrics' `Route` dimension.
pub fn route_path(route: Option<&str>) -> String {
    match route {
        None => "/".to_owned(),
        Some(name) => format!("/{name}"),
    }
}

impl WebhookSecrets {
    /// Reads a secret value: a bare routing key, or JSON
    /// `{"routing_key": "...", "webhook_token": "...", "routes": {"name": "..."}}`.
    /// Error messages name what is wrong, never a value.
    pub fn parse(value: &str) -> Result<Self, SecretError> {
        let value = value.trim();
        if !value.starts_with('{') {
            return Ok(WebhookSecrets {
                routing_key: RoutingKey::new(value)?,
                webhook_tokens: Vec::new(),
                routes: BTreeMap::new(),
                two_way: None,
            });
        }
        /// `"webhook_token": "t"` or, during a rotation, `["new", "old"]`. An entry of the
        /// list that is not a string is skipped, not fatal: a typo made while rotating
        /// the token must not make the routing keys unreadable too.
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<serde_json::Value>),
        }
        #[derive(serde::Deserialize)]
        struct Shape {
            routing_key: String,
            #[serde(default)]
            webhook_token: Option<OneOrMany>,
            #[serde(default)]
            routes: BTreeMap<String, String>,
            // Two-way's fields are read leniently, so that a mistake in them can turn
            // two-way off but never stop the pages.
            #[serde(default)]
            pagerduty_webhook_secrets: serde_json::Value,
            #[serde(default)]
            pagerduty_api_token: serde_json::Value,
            #[serde(default)]
            guance_workspaces: serde_json::Value,
        }
        // Read as an object first: a field given twice (a block pasted again) keeps its
        // last value instead of making the routing key unreadable.
        let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(value)
            .map_err(|e| {
                SecretError::Malformed(format!(
                    "the secret is not a JSON object (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?;
        // serde's messages can quote values; this one is replaced with the field at fault.
        let shape: Shape = serde_path_to_error::deserialize(serde_json::Value::Object(fields))
            .map_err(|e| {
                SecretError::Malformed(format!(
                    "the secret's field `{}` is missing or of the wrong type (the form is {{\"routing_key\": string, \"webhook_token\": string or [string], \"routes\": {{name: string}}}})",
                    e.path()
                ))
            })?;
        let routes = shape
            .routes
            .iter()
            .map(|(name, key)| {
                if !is_valid_route_name(name) {
                    return Err(SecretError::Malformed(
                        "route names must be 1 to 64 letters, digits, '-' or '_'".to_owned(),
                    ));
                }
                let key = RoutingKey::new(key)
                    .map_err(|e| SecretError::Malformed(format!("route {name:?}: {e}")))?;
                Ok((name.clone(), key))
            })
            .collect::<Result<_, _>>()?;
        impl OneOrMany {
            /// The strings given, skipping (with a warning naming `field`) what is not one.
            fn strings(self, field: &'static str) -> Vec<String> {
                match self {
                    OneOrMany::One(value) => vec![value],
                    OneOrMany::Many(values) => {
                        let skipped = values.iter().filter(|t| !t.is_string()).count();
                        if skipped > 0 {
                            tracing::warn!(
                                field,
                                skipped,
                                "list entries that are not strings were skipped"
                            );
                        }
                        values
                            .into_iter()
                            .filter_map(|v| match v {
                                serde_json::Value::String(s) => Some(s),
                                _ => None,
                            })
                            .collect()
                    }
                }
            }
        }
        let webhook_tokens = shape
            .webhook_token
            .map(|tokens| tokens.strings("webhook_token"))
            .unwrap_or_default()
            .iter()
            .filter_map(|t| WebhookToken::new(t))
            .collect();
        let signing_secrets: Vec<Credential> =
            match serde_json::from_value::<Option<OneOrMany>>(shape.pagerduty_webhook_secrets) {
                Ok(secrets) => secrets
                    .map(|secrets| secrets.strings("pagerduty_webhook_secrets"))
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|s| Credential::new(s))
                    .collect(),
                Err(_) => {
                    tracing::warn!(
                        "pagerduty_webhook_secrets is neither a string nor a list; two-way is off"
                    );
                    Vec::new()
                }
            };
        let two_way = (!signing_secrets.is_empty()).then(|| TwoWaySecrets {
            signing_secrets,
            pagerduty_api_token: shape.pagerduty_api_token.as_str().and_then(Credential::new),
            guance_workspaces: guance_workspaces(&shape.guance_workspaces),
        });
        Ok(WebhookSecrets {
            routing_key: RoutingKey::new(&shape.routing_key)?,
            webhook_tokens,
            routes,
            two_way,
        })
    }

    /// The signing secrets PagerDuty's webhooks are checked against; empty while two-way
    /// is off.
    pub fn signing_secrets(&self) -> &[Credential] {
        self.two_way
            .as_ref()
            .map_or(&[], |two_way| two_way.signing_secrets.as_slice())
    }

    /// Whether `presented` is one of the tokens. Every token is compared, matched or not,
    /// so the time taken does not say which one matched.
    pub fn accepts_token(&self, presented: &str) -> bool {
        self.webhook_tokens
            .iter()
            .fold(false, |accepted, token| token.matches(presented) | accepted)
    }

    /// The routing key for `POST /` (`None`) or `POST /<route>`.
    pub fn routing_key_for(&self, route: Option<&str>) -> Option<&RoutingKey> {
        match route {
            None => Some(&self.routing_key),
            Some(name) => self.routes.get(name),
        }
    }
}

/// The readable entries of `guance_workspaces`. An entry that is not
/// `{"api_key": string, "openapi_url": https URL}` is left out with a warning naming its
/// workspace (never its key): its events are then not recovered, and the rest work.
fn guance_workspaces(entries: &serde_json::Value) -> BTreeMap<String, GuanceWorkspace> {
    let mut workspaces = BTreeMap::new();
    let entries = match entries {
        serde_json::Value::Object(entries) => entries,
        serde_json::Value::Null => return workspaces,
        _ => {
            tracing::warn!("guance_workspaces is not an object of workspaces; none is used");
            return workspaces;
        }
    };
    for (uuid, entry) in entries {
        let api_key = entry["api_key"].as_str().and_then(Credential::new);
        let openapi_url = entry["openapi_url"].as_str().and_then(callable_url);
        let sane_uuid = (1..=128).contains(&uuid.len())
            && uuid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        match (sane_uuid, api_key, openapi_url) {
            (true, Some(api_key), Some(openapi_url)) => {
                workspaces.insert(
                    uuid.clone(),
                    GuanceWorkspace {
                        api_key,
                        openapi_url,
                    },
                );
            }
            (false, ..) => tracing::warn!(
                "a guance_workspaces entry whose name is not a workspace uuid was skipped"
            ),
            (true, None, _) => tracing::warn!(
                workspace_uuid = %uuid,
                "guance_workspaces entry skipped: api_key is missing or not a string"
            ),
            (true, Some(_), None) => tracing::warn!(
                workspace_uuid = %uuid,
                "guance_workspaces entry skipped: openapi_url must be an https URL (http only on loopback)"
            ),
        }
    }
    workspaces
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// The secret could not be read (permissions, network, not found).
    Unavailable(String),
    /// The secret was read but does not hold what it must.
    Malformed(String),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Unavailable(why) => write!(f, "secret unavailable: {why}"),
            SecretError::Malformed(why) => write!(f, "secret malformed: {why}"),
        }
    }
}

impl std::error::Error for SecretError {}

/// Something that can produce the current secrets.
pub trait SecretSource: Send + Sync {
    fn fetch(&self) -> impl Future<Output = Result<WebhookSecrets, SecretError>> + Send;
}

/// The secret in AWS Secrets Manager named by `PAGERDUTY_SECRET_ID`.
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerSource {
    /// `client` with this adapter's attempt and operation timeouts, whatever it had.
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        let config = client
            .config()
            .to_builder()
            .timeout_config(aws_call_timeouts())
            .build();
        SecretsManagerSource {
            client: aws_sdk_secretsmanager::Client::from_conf(config),
            secret_id: secret_id.into(),
        }
    }
}

impl SecretSource for SecretsManagerSource {
    async fn fetch(&self) -> Result<WebhookSecrets, SecretError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| {
                SecretError::Unavailable(
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
                )
            })?;
        let value = output.secret_string().ok_or_else(|| {
            SecretError::Malformed(
                "the secret has no SecretString (binary secrets are not read)".into(),
            )
        })?;
        WebhookSecrets::parse(value)
    }
}

/// Secrets given directly, from `PAGERDUTY_ROUTING_KEY` and `WEBHOOK_TOKEN`.
pub struct StaticSource(pub WebhookSecrets);

impl SecretSource for StaticSource {
    async fn fetch(&self) -> Result<WebhookSecrets, SecretError> {
        Ok(self.0.clone())
    }
}

/// Either source, chosen at start-up.
pub enum AnySecretSource {
    SecretsManager(SecretsManagerSource),
    Static(StaticSource),
}

impl SecretSource for AnySecretSource {
    async fn fetch(&self) -> Result<WebhookSecrets, SecretError> {
        match self {
            AnySecretSource::SecretsManager(source) => source.fetch().await,
            AnySecretSource::Static(source) => source.fetch().await,
        }
    }
}

/// Caches the secrets for a TTL. A refresh forced by a token mismatch is allowed at most
/// once per `forced_refresh_interval`, so a rotated token works at once but strangers
/// cannot make the function hammer Secrets Manager.
pub struct SecretCache<S> {
    source: S,
    ttl: Duration,
    forced_refresh_interval: Duration,
    state: Mutex<CacheState>,
    fetches: AtomicU64,
}

#[derive(Default)]
struct CacheState {
    current: Option<(Arc<WebhookSecrets>, Instant)>,
    last_forced: Option<Instant>,
    /// When a refresh last failed while a stale value was served.
    last_failed: Option<Instant>,
}

/// After a failed refresh the stale value is served this long before the source is asked
/// again: a Secrets Manager that stalls would otherwise cost every request its timeout.
const PAUSE_AFTER_FAILED_REFRESH: Duration = Duration::from_secs(30);

impl<S: SecretSource> SecretCache<S> {
    pub fn new(source: S, ttl: Duration, forced_refresh_interval: Duration) -> Self {
        SecretCache {
            source,
            ttl,
            forced_refresh_interval,
            state: Mutex::new(CacheState::default()),
            fetches: AtomicU64::new(0),
        }
    }

    /// The cached secrets, fetched again once the TTL has passed. When that fetch
    /// fails, or does not finish by `deadline`, the stale value is served: paging with
    /// last minute's key beats not paging.
    pub async fn get(&self, deadline: Instant) -> Result<Arc<WebhookSecrets>, SecretError> {
        let mut state = self.state.lock().await;
        if let Some((secrets, fetched_at)) = &state.current {
            let paused = state
                .last_failed
                .is_some_and(|failed| failed.elapsed() < PAUSE_AFTER_FAILED_REFRESH);
            if fetched_at.elapsed() < self.ttl || paused {
                return Ok(Arc::clone(secrets));
            }
        }
        match self.fetch_into(&mut state, deadline).await {
            Ok(secrets) => Ok(secrets),
            Err(error) => match &state.current {
                Some((stale, _)) => {
                    tracing::warn!(%error, "secret refresh failed; serving the cached value");
                    let stale = Arc::clone(stale);
                    state.last_failed = Some(Instant::now());
                    Ok(stale)
                }
                None => Err(error),
            },
        }
    }

    /// Fetches again after a webhook token mismatch (the token may have been rotated in),
    /// unless one such refresh happened within the interval: strangers cannot make the
    /// function hammer Secrets Manager. `None` when refused, failed or not done by
    /// `deadline`.
    pub async fn refresh_after_mismatch(&self, deadline: Instant) -> Option<Arc<WebhookSecrets>> {
        let mut state = self.state.lock().await;
        if let Some(last) = state.last_forced {
            if last.elapsed() < self.forced_refresh_interval {
                return None;
            }
        }
        state.last_forced = Some(Instant::now());
        self.refresh_locked(&mut state, deadline).await
    }

    /// Fetches again now, because PagerDuty refused the cached routing key (it may have
    /// been rotated). Only PagerDuty's answers lead here, at most once per delivery, so
    /// this is not rate-limited: a fixed secret is picked up on the next try.
    pub async fn refresh(&self, deadline: Instant) -> Option<Arc<WebhookSecrets>> {
        let mut state = self.state.lock().await;
        self.refresh_locked(&mut state, deadline).await
    }

    async fn refresh_locked(
        &self,
        state: &mut CacheState,
        deadline: Instant,
    ) -> Option<Arc<WebhookSecrets>> {
        match self.fetch_into(state, deadline).await {
            Ok(secrets) => Some(secrets),
            Err(error) => {
                tracing::warn!(%error, "reading the secret again failed");
                None
            }
        }
    }

    /// How many times the source was asked, for tests and benchmarks.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Asks the source, giving up at `deadline`, and on success makes the answer the
    /// cached value.
    async fn fetch_into(
        &self,
        state: &mut CacheState,
        deadline: Instant,
    ) -> Result<Arc<WebhookSecrets>, SecretError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched = tokio::time::timeout_at(deadline.into(), self.source.fetch())
            .await
            .map_err(|_| {
                SecretError::Unavailable(
                    "Secrets Manager did not answer before the invocation's deadline".into(),
                )
            })?;
        let secrets = Arc::new(fetched?);
        state.current = Some((Arc::clone(&secrets), Instant::now()));
        state.last_failed = None;
        Ok(secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "abcdef0123456789abcdef0123456789";

    #[test]
    fn two_way_fields() {
        let parse = |extra: &str| {
            WebhookSecrets::parse(&format!(r#"{{"routing_key":"{KEY}"{extra}}}"#))
                .expect("two-way's fields never make the routing key unreadable")
        };
        assert!(
            parse("").two_way.is_none(),
            "off until a signing secret is set"
        );
        assert!(parse(r#","pagerduty_api_token":"t""#).two_way.is_none());
        assert!(parse(r#","pagerduty_webhook_secrets":[" ", 7]"#)
            .two_way
            .is_none());
        assert!(parse(r#","pagerduty_webhook_secrets":{"a":1}"#)
            .two_way
            .is_none());

        let one = parse(r#","pagerduty_webhook_secrets":"s1""#);
        assert_eq!(one.signing_secrets(), [Credential("s1".into())]);
        let full = parse(
            r#","pagerduty_webhook_secrets":["s1", 5, "s2"],"pagerduty_api_token":"tok",
               "guance_workspaces":{
                 "wksp_a":{"api_key":"ka","openapi_url":"https://us1-openapi.guance.com/"},
                 "wksp_local":{"api_key":"kl","openapi_url":"http://127.0.0.1:8080"},
                 "wksp_v6":{"api_key":"k6","openapi_url":"http://[::1]:8080"},
                 "wksp_plain":{"api_key":"kp","openapi_url":"http://openapi.guance.com"},
                 "wksp_nokey":{"openapi_url":"https://openapi.guance.com"},
                 "wksp_query":{"api_key":"kq","openapi_url":"https://openapi.guance.com/?x=1"},
                 "bad uuid/..":{"api_key":"kb","openapi_url":"https://openapi.guance.com"}
               }"#,
        );
        let two_way = full.two_way.unwrap();
        assert_eq!(two_way.signing_secrets.len(), 2);
        assert_eq!(two_way.pagerduty_api_token, Some(Credential("tok".into())));
        let usable: Vec<(&str, &str)> = two_way
            .guance_workspaces
            .iter()
            .map(|(uuid, w)| (uuid.as_str(), w.openapi_url.as_str()))
            .collect();
        assert_eq!(
            usable,
            [
                ("wksp_a", "https://us1-openapi.guance.com"),
                ("wksp_local", "http://127.0.0.1:8080"),
                ("wksp_v6", "http://[::1]:8080"),
            ],
            "http only on loopback; no key, a query or a strange name leaves the entry out"
        );
        let printed = format!("{two_way:?}");
        for secret in ["s1", "s2", "tok", "ka", "kl"] {
            assert!(!printed.contains(&format!("\"{secret}\"")), "{printed}");
        }
        assert!(
            parse(r#","pagerduty_webhook_secrets":"s","guance_workspaces":[1]"#)
                .two_way
                .unwrap()
                .guance_workspaces
                .is_empty()
        );
    }

    #[test]
    fn secret_forms() {
        let bare = WebhookSecrets::parse(&format!("  {KEY}\n")).unwrap();
        assert_eq!(bare.routing_key.expose(), KEY);
        assert!(bare.webhook_tokens.is_empty() && bare.routes.is_empty());

        let full = WebhookSecrets::parse(&format!(
            r#"{{"routing_key":"{KEY}","webhook_token":"tok","routes":{{"payments":"{}"}}}}"#,
            "P".repeat(32)
        ))
        .unwrap();
        assert!(full.accepts_token("tok") && !full.accepts_token("tok2"));
        assert_eq!(
            full.routing_key_for(Some("payments")).unwrap().expose(),
            "P".repeat(32)
        );
        assert_eq!(full.routing_key_for(None).unwrap().expose(), KEY);
        assert!(full.routing_key_for(Some("nope")).is_none());

        let empty_token =
            WebhookSecrets::parse(&format!(r#"{{"routing_key":"{KEY}","webhook_token":" "}}"#))
                .unwrap();
        assert!(empty_token.webhook_tokens.is_empty());

        // During a rotation both tokens work; blanks in the list are no tokens.
        let rotating = WebhookSecrets::parse(&format!(
            r#"{{"routing_key":"{KEY}","webhook_token":["new-token"," ","old-token"]}}"#
        ))
        .unwrap();
        assert_eq!(rotating.webhook_tokens.len(), 2);
        let typo = WebhookSecrets::parse(&format!(
            r#"{{"routing_key":"{KEY}","webhook_token":["new-token", 5, null]}}"#
        ))
        .expect("a non-string token is skipped, the routing key still read");
        assert!(typo.accepts_token("new-token") && typo.webhook_tokens.len() == 1);
        for (presented, accepted) in [
            ("new-token", true),
            ("old-token", true),
            ("", false),
            ("other", false),
        ] {
            assert_eq!(rotating.accepts_token(presented), accepted, "{presented}");
        }
    }

    #[test]
    fn malformed_secrets_never_echo_values() {
        let cases = [
            String::new(),
            "has space".to_owned(),
            "k".repeat(65),
            r#"{"webhook_token":"supersecret-token"}"#.to_owned(),
            r#"{"routing_key": 12345678}"#.to_owned(),
            r#"{"routing_key":"supersecret-token!"}"#.to_owned(),
            format!(r#"{{"routing_key":"{KEY}","routes":{{"../x":"{KEY}"}}}}"#),
            format!(r#"{{"routing_key":"{KEY}","routes":{{"ok":"supersecret-token"}}}}"#),
            format!(r#"{{"routing_key":"{KEY}", "webhook_token": "supersecret-token""#),
            format!(r#"{{"routing_key":"{KEY}", "webhook_token": 7}}"#),
        ];
        for value in cases {
            match WebhookSecrets::parse(&value) {
                Err(SecretError::Malformed(why)) => {
                    assert!(!why.contains("supersecret"), "{why}");
                    assert!(!why.contains(KEY), "{why}");
                }
                other => panic!("{value:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn debug_output_is_redacted() {
        let secrets = WebhookSecrets::parse(&format!(
            r#"{{"routing_key":"{KEY}","webhook_token":"supersecret","routes":{{"a":"{KEY}"}}}}"#
        ))
        .unwrap();
        let printed = format!("{secrets:?}");
        assert!(
            !printed.contains(KEY) && !printed.contains("supersecret"),
            "{printed}"
        );
    }

    #[test]
    fn token_comparison() {
        let token = WebhookToken::new("s3cret").unwrap();
        for (presented, expected) in [
            ("s3cret", true),
            ("s3cre", false),
            ("s3crett", false),
            ("S3CRET", false),
            ("", false),
        ] {
            assert_eq!(token.matches(presented), expected, "{presented}");
        }
    }

    #[test]
    fn route_names() {
        for (name, valid) in [
            ("payments", true),
            ("team-a_1", true),
            ("", false),
            ("..", false),
            ("a/b", false),
            ("a%2Fb", false),
            ("ü", false),
        ] {
            assert_eq!(is_valid_route_name(name), valid, "{name}");
        }
        assert!(!is_valid_route_name(&"a".repeat(65)));
    }

    struct Counting(std::sync::atomic::AtomicU32);
    impl SecretSource for Counting {
        async fn fetch(&self) -> Result<WebhookSecrets, SecretError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            if n == 2 {
                return Err(SecretError::Unavailable("down".into()));
            }
            WebhookSecrets::parse(KEY)
        }
    }

    #[tokio::test]
    async fn cache_ttl_forced_refresh_and_stale_on_error() {
        let cached = SecretCache::new(
            Counting(Default::default()),
            Duration::from_secs(300),
            Duration::from_secs(60),
        );
        let later = || Instant::now() + Duration::from_secs(5);
        cached.get(later()).await.unwrap();
        cached.get(later()).await.unwrap();
        assert_eq!(cached.fetch_count(), 1, "served from cache within the TTL");

        // TTL zero: every get fetches. The source fails on its third fetch.
        let cache = SecretCache::new(
            Counting(Default::default()),
            Duration::ZERO,
            Duration::from_secs(60),
        );
        cache.get(later()).await.unwrap();
        assert!(cache.refresh_after_mismatch(later()).await.is_some());
        assert!(
            cache.refresh_after_mismatch(later()).await.is_none(),
            "once a minute"
        );
        assert_eq!(cache.fetch_count(), 2);
        assert!(
            cache.get(later()).await.is_ok(),
            "stale value served when the fetch fails"
        );
        assert_eq!(cache.fetch_count(), 3);
        assert!(cache.get(later()).await.is_ok());
        assert_eq!(
            cache.fetch_count(),
            3,
            "after a failed refresh the stale value is served without asking again at once"
        );
        assert!(
            cache.refresh(later()).await.is_some(),
            "after a refused key: not rate-limited"
        );
        assert_eq!(cache.fetch_count(), 4);
    }
}
