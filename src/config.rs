//! Configuration from the environment, validated once at cold start: a bad value stops
//! the function with a message naming the variable, rather than failing on every page.

use crate::adapters::delivery::{RetryPolicy, DEFAULT_EVENTS_URL};
use crate::adapters::metrics::{is_valid_namespace, DEFAULT_NAMESPACE};
use crate::adapters::pagerduty_rest::DEFAULT_API_URL;
use crate::domain::pagerduty::Severity;
use crate::domain::translate::{InfoEvents, Settings};
use std::fmt;
use std::time::Duration;

/// The largest request a function URL takes (6 MB): the default body limit, so that
/// nothing Lambda would deliver is refused by a smaller limit of ours.
const FUNCTION_URL_MAX_BODY_BYTES: u64 = 6 << 20;

/// Where the routing key and token come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretConfig {
    /// `PAGERDUTY_SECRET_ID`: a Secrets Manager secret name or ARN.
    SecretsManager { secret_id: String },
    /// `PAGERDUTY_ROUTING_KEY` and `WEBHOOK_TOKEN`, for local use without AWS. Kept as
    /// the raw text so that validation errors are reported by the secret module.
    Environment {
        routing_key: String,
        webhook_token: Option<String>,
    },
}

/// Queue mode: `DELIVERY_QUEUE_URL` names an SQS FIFO queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The delivery queue: the webhook puts events on it, the dispatcher takes them off.
    pub url: String,
    /// Where the dispatcher parks events PagerDuty refused for good (400), with its errors.
    pub dead_letter_url: Option<String>,
    /// The queue's `MaximumMessageSize`; a bigger event is shrunk to fit.
    pub max_message_bytes: usize,
    /// Backoff between deliveries of a failing record: `base` doubled per receive, with
    /// jitter, at most `max`; PagerDuty's `Retry-After` wins where it sent one.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Attempts per record within one dispatcher invocation, before the record waits in
    /// the queue.
    pub attempts_per_invocation: u32,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// `Some` in queue mode; `None` delivers directly, within the webhook's invocation.
    pub queue: Option<QueueConfig>,
    pub secret: SecretConfig,
    pub secret_ttl: Duration,
    pub allow_unauthenticated: bool,
    pub max_body_bytes: usize,
    pub events_url: String,
    /// PagerDuty's REST API (`PAGERDUTY_API_URL`), for two-way: where an incident's alerts
    /// are read. The alerts URL is built from it, never from a payload.
    pub api_url: String,
    pub settings: Settings,
    pub dry_run: bool,
    pub retry: RetryPolicy,
    /// Time kept free before the Lambda deadline, to answer the caller.
    pub deadline_margin: Duration,
    /// Retry budget when the invocation carries no deadline (local runs).
    pub default_budget: Duration,
    /// The CloudWatch namespace of the metric lines (`METRICS_NAMESPACE`).
    pub metrics_namespace: String,
}

// Hand-written so that the routing key and token given in the environment never print.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = match &self.secret {
            SecretConfig::SecretsManager { secret_id } => format!("SecretsManager({secret_id})"),
            SecretConfig::Environment { .. } => "Environment(redacted)".to_owned(),
        };
        f.debug_struct("Config")
            .field("secret", &secret)
            .field("queue", &self.queue)
            .field("secret_ttl", &self.secret_ttl)
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("events_url", &self.events_url)
            .field("api_url", &self.api_url)
            .field("settings", &self.settings)
            .field("dry_run", &self.dry_run)
            .field("retry", &self.retry)
            .field("deadline_margin", &self.deadline_margin)
            .field("metrics_namespace", &self.metrics_namespace)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration: {}: {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`; empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let secret = match (get("PAGERDUTY_SECRET_ID"), get("PAGERDUTY_ROUTING_KEY")) {
            (Some(secret_id), None) => SecretConfig::SecretsManager {
                secret_id: secret_id.trim().to_owned(),
            },
            (None, Some(routing_key)) => SecretConfig::Environment {
                routing_key,
                webhook_token: get("WEBHOOK_TOKEN"),
            },
            (Some(_), Some(_)) => {
                return Err(ConfigError {
                    variable: "PAGERDUTY_ROUTING_KEY",
                    problem: "set either PAGERDUTY_SECRET_ID or PAGERDUTY_ROUTING_KEY, not both"
                        .into(),
                })
            }
            (None, None) => {
                return Err(ConfigError {
                    variable: "PAGERDUTY_SECRET_ID",
                    problem: "not set: name the Secrets Manager secret holding the routing key \
                              (or set PAGERDUTY_ROUTING_KEY for local use)"
                        .into(),
                })
            }
        };
        if matches!(secret, SecretConfig::SecretsManager { .. }) && get("WEBHOOK_TOKEN").is_some() {
            return Err(ConfigError {
                variable: "WEBHOOK_TOKEN",
                problem: "with PAGERDUTY_SECRET_ID the token belongs in the secret's \
                          webhook_token field, not the environment"
                    .into(),
            });
        }

        let events_url = get("PAGERDUTY_EVENTS_URL").unwrap_or_else(|| DEFAULT_EVENTS_URL.into());
        let events_url = events_url.trim().to_owned();
        if !(events_url.starts_with("https://") || events_url.starts_with("http://"))
            || events_url.contains(char::is_whitespace)
        {
            return Err(ConfigError {
                variable: "PAGERDUTY_EVENTS_URL",
                problem: format!("{events_url:?} is not an http(s) URL"),
            });
        }

        let api_url = get("PAGERDUTY_API_URL").unwrap_or_else(|| DEFAULT_API_URL.into());
        let api_url = callable_url(&api_url).ok_or_else(|| ConfigError {
            variable: "PAGERDUTY_API_URL",
            problem: "must be an https URL (http only on a loopback address), with no query".into(),
        })?;

        let severity = |name: &'static str| -> Result<Severity, ConfigError> {
            get(name).map_or(Ok(Severity::Error), |v| {
                v.parse().map_err(|problem| ConfigError {
                    variable: name,
                    problem,
                })
            })
        };
        let info_events = match get("INFO_EVENTS").map(|v| v.trim().to_ascii_lowercase()) {
            None => InfoEvents::Send,
            Some(v) if v == "send" => InfoEvents::Send,
            Some(v) if v == "drop" => InfoEvents::Drop,
            Some(v) => {
                return Err(ConfigError {
                    variable: "INFO_EVENTS",
                    problem: format!("{v:?} is neither \"send\" nor \"drop\""),
                })
            }
        };
        let flag = |name: &'static str| -> Result<bool, ConfigError> {
            match get(name).map(|v| v.trim().to_ascii_lowercase()) {
                None => Ok(false),
                Some(v) if ["true", "1", "yes"].contains(&v.as_str()) => Ok(true),
                Some(v) if ["false", "0", "no"].contains(&v.as_str()) => Ok(false),
                Some(v) => Err(ConfigError {
                    variable: name,
                    problem: format!("{v:?} is not true or false"),
                }),
            }
        };
        let number = |name: &'static str, default: u64, range: std::ops::RangeInclusive<u64>| {
            let value = match get(name) {
                None => default,
                Some(v) => v.trim().parse::<u64>().map_err(|_| ConfigError {
                    variable: name,
                    problem: format!("{v:?} is not a whole number"),
                })?,
            };
            if range.contains(&value) {
                Ok(value)
            } else {
                Err(ConfigError {
                    variable: name,
                    problem: format!("{value} is outside {}..={}", range.start(), range.end()),
                })
            }
        };
        let millis = Duration::from_millis;
        let defaults = RetryPolicy::default();
        let queue_url = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match get(name).map(|v| v.trim().to_owned()) {
                None => Ok(None),
                Some(url)
                    if (url.starts_with("https://") || url.starts_with("http://"))
                        && url.ends_with(".fifo")
                        && !url.contains(char::is_whitespace) =>
                {
                    Ok(Some(url))
                }
                Some(url) => Err(ConfigError {
                    variable: name,
                    problem: format!(
                        "{url:?} is not the URL of an SQS FIFO queue (https://....fifo)"
                    ),
                }),
            }
        };
        let queue = match queue_url("DELIVERY_QUEUE_URL")? {
            None => None,
            Some(url) => Some(QueueConfig {
                url,
                dead_letter_url: queue_url("DEAD_LETTER_QUEUE_URL")?,
                max_message_bytes: number("QUEUE_MAX_MESSAGE_BYTES", 1_048_576, 16_384..=1_048_576)?
                    as usize,
                retry_base: Duration::from_secs(number("QUEUE_RETRY_BASE_SECONDS", 5, 1..=300)?),
                retry_max: Duration::from_secs(number("QUEUE_RETRY_MAX_SECONDS", 300, 1..=43_200)?),
                attempts_per_invocation: number("QUEUE_ATTEMPTS_PER_INVOCATION", 2, 1..=10)? as u32,
            }),
        };
        let metrics_namespace = get("METRICS_NAMESPACE")
            .map_or_else(|| DEFAULT_NAMESPACE.to_owned(), |v| v.trim().to_owned());
        if !is_valid_namespace(&metrics_namespace) {
            return Err(ConfigError {
                variable: "METRICS_NAMESPACE",
                problem: format!(
                    "{metrics_namespace:?} is not a CloudWatch namespace (1 to 255 letters, digits or .-_/#: and spaces, not starting with AWS/)"
                ),
            });
        }
        Ok(Config {
            metrics_namespace,
            queue,
            secret,
            secret_ttl: Duration::from_secs(number("SECRET_CACHE_TTL_SECONDS", 300, 0..=86_400)?),
            allow_unauthenticated: flag("ALLOW_UNAUTHENTICATED")?,
            max_body_bytes: number(
                "MAX_BODY_BYTES",
                FUNCTION_URL_MAX_BODY_BYTES,
                1024..=FUNCTION_URL_MAX_BODY_BYTES,
            )? as usize,
            events_url,
            api_url,
            settings: Settings {
                nodata_severity: severity("NODATA_SEVERITY")?,
                unknown_status_severity: severity("UNKNOWN_STATUS_SEVERITY")?,
                info_events,
            },
            dry_run: flag("DRY_RUN")?,
            retry: RetryPolicy {
                attempt_timeout: millis(number(
                    "PAGERDUTY_ATTEMPT_TIMEOUT_MS",
                    defaults.attempt_timeout.as_millis() as u64,
                    100..=60_000,
                )?),
                base_delay: millis(number(
                    "PAGERDUTY_RETRY_BASE_MS",
                    defaults.base_delay.as_millis() as u64,
                    1..=60_000,
                )?),
                max_delay: millis(number(
                    "PAGERDUTY_RETRY_MAX_MS",
                    defaults.max_delay.as_millis() as u64,
                    1..=300_000,
                )?),
                max_attempts: number(
                    "PAGERDUTY_MAX_ATTEMPTS",
                    u64::from(defaults.max_attempts),
                    1..=50,
                )? as u32,
            },
            // At least 200 ms: the answer itself, and the last SQS calls, must fit in it.
            deadline_margin: millis(number("DEADLINE_MARGIN_MS", 1000, 200..=60_000)?),
            default_budget: millis(number("LOCAL_DELIVERY_BUDGET_MS", 25_000, 100..=900_000)?),
        })
    }
}

/// Whether `url` is a URL an outside party may be called at: https, or http on a
/// loopback address (local runs and tests). Returns it without a trailing `/`.
pub fn callable_url(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url.trim()).ok()?;
    let host = parsed.host_str()?;
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let allowed = parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback);
    (allowed
        && parsed.query().is_none()
        && parsed.fragment().is_none()
        && parsed.username().is_empty()
        && parsed.password().is_none())
    .then(|| parsed.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn pagerduty_api_url() {
        let with = |url: &str| {
            config(&[
                ("PAGERDUTY_SECRET_ID", "guance-pagerduty"),
                ("PAGERDUTY_API_URL", url),
            ])
            .map(|c| c.api_url)
        };
        assert_eq!(
            config(&[("PAGERDUTY_SECRET_ID", "s")]).unwrap().api_url,
            DEFAULT_API_URL
        );
        assert_eq!(
            with("https://api.eu.pagerduty.com/").unwrap(),
            "https://api.eu.pagerduty.com"
        );
        assert_eq!(
            with("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        for refused in [
            "http://api.pagerduty.com",
            "ftp://api.pagerduty.com",
            "https://api.pagerduty.com/?x=1",
            "https://user:pw@api.pagerduty.com",
            "api.pagerduty.com",
        ] {
            let error = with(refused).unwrap_err();
            assert_eq!(error.variable, "PAGERDUTY_API_URL", "{refused}");
        }
    }

    #[test]
    fn defaults() {
        let c = config(&[("PAGERDUTY_SECRET_ID", "guance-pagerduty")]).unwrap();
        assert_eq!(
            c.secret,
            SecretConfig::SecretsManager {
                secret_id: "guance-pagerduty".into()
            }
        );
        assert_eq!(c.events_url, DEFAULT_EVENTS_URL);
        assert_eq!(c.secret_ttl, Duration::from_secs(300));
        assert_eq!(c.max_body_bytes, 6 << 20, "a function URL's own limit");
        assert_eq!(c.settings, Settings::default());
        assert!(!c.allow_unauthenticated && !c.dry_run);
        assert_eq!(c.retry, RetryPolicy::default());
        assert_eq!(c.queue, None, "direct delivery without DELIVERY_QUEUE_URL");
        assert_eq!(c.metrics_namespace, "guance-pagerduty");

        let q = config(&[
            ("PAGERDUTY_SECRET_ID", "s"),
            (
                "DELIVERY_QUEUE_URL",
                "https://sqs.eu-west-1.amazonaws.com/1/guance.fifo",
            ),
        ])
        .unwrap()
        .queue
        .unwrap();
        assert_eq!(q.max_message_bytes, 1_048_576);
        assert_eq!((q.retry_base.as_secs(), q.retry_max.as_secs()), (5, 300));
        assert_eq!(q.dead_letter_url, None);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let base = ("PAGERDUTY_SECRET_ID", "s");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "PAGERDUTY_SECRET_ID"),
            (
                &[base, ("PAGERDUTY_ROUTING_KEY", "k")],
                "PAGERDUTY_ROUTING_KEY",
            ),
            (&[base, ("WEBHOOK_TOKEN", "t")], "WEBHOOK_TOKEN"),
            (
                &[base, ("PAGERDUTY_EVENTS_URL", "events.pagerduty.com")],
                "PAGERDUTY_EVENTS_URL",
            ),
            (&[base, ("NODATA_SEVERITY", "high")], "NODATA_SEVERITY"),
            (
                &[base, ("UNKNOWN_STATUS_SEVERITY", "ok")],
                "UNKNOWN_STATUS_SEVERITY",
            ),
            (&[base, ("INFO_EVENTS", "maybe")], "INFO_EVENTS"),
            (&[base, ("DRY_RUN", "sure")], "DRY_RUN"),
            (
                &[
                    base,
                    (
                        "DELIVERY_QUEUE_URL",
                        "https://sqs.us-east-1.amazonaws.com/1/q",
                    ),
                ],
                "DELIVERY_QUEUE_URL",
            ),
            (
                &[
                    base,
                    (
                        "DELIVERY_QUEUE_URL",
                        "https://sqs.us-east-1.amazonaws.com/1/q.fifo",
                    ),
                    ("DEAD_LETTER_QUEUE_URL", "dlq.fifo"),
                ],
                "DEAD_LETTER_QUEUE_URL",
            ),
            (
                &[
                    base,
                    (
                        "DELIVERY_QUEUE_URL",
                        "https://sqs.us-east-1.amazonaws.com/1/q.fifo",
                    ),
                    ("QUEUE_MAX_MESSAGE_BYTES", "2000000"),
                ],
                "QUEUE_MAX_MESSAGE_BYTES",
            ),
            (
                &[base, ("ALLOW_UNAUTHENTICATED", "2")],
                "ALLOW_UNAUTHENTICATED",
            ),
            (
                &[base, ("SECRET_CACHE_TTL_SECONDS", "-1")],
                "SECRET_CACHE_TTL_SECONDS",
            ),
            (&[base, ("MAX_BODY_BYTES", "10")], "MAX_BODY_BYTES"),
            (
                &[base, ("METRICS_NAMESPACE", "AWS/Lambda")],
                "METRICS_NAMESPACE",
            ),
            (
                &[base, ("PAGERDUTY_MAX_ATTEMPTS", "0")],
                "PAGERDUTY_MAX_ATTEMPTS",
            ),
        ];
        for (vars, variable) in cases {
            let error = config(vars).unwrap_err();
            assert_eq!(error.variable, *variable, "{vars:?}");
            assert!(error.to_string().contains(variable));
        }
    }

    #[test]
    fn local_environment_secret_and_settings() {
        let c = config(&[
            ("PAGERDUTY_ROUTING_KEY", "abc"),
            ("WEBHOOK_TOKEN", "tok"),
            ("NODATA_SEVERITY", "Warning"),
            ("INFO_EVENTS", "DROP"),
            ("DRY_RUN", "true"),
            ("PAGERDUTY_EVENTS_URL", "http://127.0.0.1:9/v2/enqueue"),
        ])
        .unwrap();
        assert_eq!(c.settings.nodata_severity, Severity::Warning);
        assert_eq!(c.settings.info_events, InfoEvents::Drop);
        assert!(c.dry_run);
        let printed = format!("{c:?}");
        assert!(
            !printed.contains("abc") && !printed.contains("tok"),
            "{printed}"
        );
    }
}
