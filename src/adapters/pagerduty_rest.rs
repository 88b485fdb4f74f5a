//! PagerDuty's REST API, for two-way: the alerts of an incident a person resolved
//! (`GET /incidents/{id}/alerts`, CONTRACT.md section 6). The URL is built from
//! `PAGERDUTY_API_URL` and the incident id, never taken from a payload.

use crate::adapters::secret::Credential;
use crate::adapters::{bounded_call, HttpAnswer};
use serde_json::Value;
use std::time::{Duration, Instant};

/// PagerDuty's REST API; EU accounts use `https://api.eu.pagerduty.com`.
pub const DEFAULT_API_URL: &str = "https://api.pagerduty.com";
/// PagerDuty's largest page.
pub const PAGE_LIMIT: usize = 100;
/// One page takes PagerDuty well under a second; longer is a stall.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Used when PagerDuty's 429 names no Retry-After of its own.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// One page of an incident's alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsPage {
    pub alerts: Vec<Value>,
    /// Whether another page follows (never after an empty one).
    pub more: bool,
}

/// Why PagerDuty's REST API could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertsError {
    /// 429, 5xx, a timeout or no connection: PagerDuty's retry of the delivery can help.
    Unavailable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// 401 or 403: the API key is wrong or lacks the right. A fixed secret mends it, so
    /// the delivery is retried too.
    KeyRefused { status: u16 },
    /// Any other answer (404: no such incident in this account): a retry cannot mend it.
    Refused { status: u16, message: String },
}

impl std::fmt::Display for AlertsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AlertsError::Unavailable { reason, .. } => {
                write!(f, "PagerDuty's REST API is unavailable: {reason}")
            }
            AlertsError::KeyRefused { status } => write!(
                f,
                "PagerDuty's REST API refused pagerduty_api_token (HTTP {status})"
            ),
            AlertsError::Refused { status, message } => {
                write!(f, "PagerDuty's REST API answered HTTP {status}: {message}")
            }
        }
    }
}

/// The client; one per container.
#[derive(Clone)]
pub struct PagerDutyRest {
    http: reqwest::Client,
    api_url: String,
}

impl PagerDutyRest {
    /// `api_url` is checked at cold start (https, or http on loopback).
    pub fn new(http: reqwest::Client, api_url: impl Into<String>) -> Self {
        PagerDutyRest {
            http,
            api_url: api_url.into(),
        }
    }

    /// One page of `incident_id`'s alerts, from `offset`, by `deadline`: the alerts and
    /// whether more follow. `incident_id` must be a PagerDuty id (letters and digits).
    pub async fn alerts_page(
        &self,
        token: &Credential,
        incident_id: &str,
        offset: usize,
        deadline: Instant,
    ) -> Result<AlertsPage, AlertsError> {
        let mut url = self.url(&["incidents", incident_id, "alerts"])?;
        url.query_pairs_mut()
            .append_pair("limit", &PAGE_LIMIT.to_string())
            .append_pair("offset", &offset.to_string());
        let page = self.page(token, url, deadline).await?;
        match page.get("alerts").and_then(Value::as_array) {
            Some(alerts) => Ok(AlertsPage {
                more: page["more"].as_bool().unwrap_or(false) && !alerts.is_empty(),
                alerts: alerts.clone(),
            }),
            // A 2xx that is not the list: a proxy's page, or a fault; a retry may mend it.
            None => Err(AlertsError::Unavailable {
                reason: "the answer is not a list of alerts".into(),
                retry_after: None,
            }),
        }
    }

    /// The id of an open (triggered or acknowledged) incident other than `resolved`
    /// holding an alert whose `alert_key` is `dedup_key`, if any: the same Guance object
    /// paging again. The incident just resolved is left out whatever its listed status:
    /// PagerDuty's list may not show the resolve yet.
    pub async fn open_incident_for_key(
        &self,
        token: &Credential,
        dedup_key: &str,
        resolved: &str,
        deadline: Instant,
    ) -> Result<Option<String>, AlertsError> {
        let mut url = self.url(&["incidents"])?;
        url.query_pairs_mut()
            .append_pair("incident_key", dedup_key)
            .append_pair("statuses[]", "triggered")
            .append_pair("statuses[]", "acknowledged")
            // Without it the list covers a recent window only.
            .append_pair("date_range", "all")
            .append_pair("limit", &PAGE_LIMIT.to_string());
        let page = self.page(token, url, deadline).await?;
        match page.get("incidents").and_then(Value::as_array) {
            Some(incidents) => Ok(incidents
                .iter()
                .filter(|i| i["id"].as_str() != Some(resolved))
                .filter(|i| i["status"].as_str() != Some("resolved"))
                .find_map(|i| i["id"].as_str().map(str::to_owned))),
            None => Err(AlertsError::Unavailable {
                reason: "the answer is not a list of incidents".into(),
                retry_after: None,
            }),
        }
    }

    fn url(&self, segments: &[&str]) -> Result<reqwest::Url, AlertsError> {
        let mut url = reqwest::Url::parse(&self.api_url).map_err(|_| AlertsError::Refused {
            status: 0,
            message: "PAGERDUTY_API_URL is not a URL".into(),
        })?;
        url.path_segments_mut()
            .map_err(|()| AlertsError::Refused {
                status: 0,
                message: "PAGERDUTY_API_URL cannot take a path".into(),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn page(
        &self,
        token: &Credential,
        url: reqwest::Url,
        deadline: Instant,
    ) -> Result<Value, AlertsError> {
        let request = self
            .http
            .get(url)
            .header("authorization", format!("Token token={}", token.expose()))
            .header("accept", "application/vnd.pagerduty+json;version=2");
        let HttpAnswer {
            status,
            retry_after,
            body,
        } = bounded_call(request, deadline, CALL_TIMEOUT)
            .await
            .map_err(|reason| AlertsError::Unavailable {
                reason,
                retry_after: None,
            })?;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match status {
            200..=299 => Ok(json),
            429 => Err(AlertsError::Unavailable {
                reason: "HTTP 429 (rate limited)".into(),
                retry_after: Some(retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
            }),
            500..=599 => Err(AlertsError::Unavailable {
                reason: format!("HTTP {status}"),
                retry_after,
            }),
            401 | 403 => Err(AlertsError::KeyRefused { status }),
            _ => Err(AlertsError::Refused {
                status,
                // PagerDuty's own text is untrusted: cut short, never with the key in it.
                message: crate::domain::pagerduty::truncate_chars(
                    &json["error"]["message"]
                        .as_str()
                        .unwrap_or("no error message")
                        .replace(token.expose(), "<redacted>"),
                    200,
                ),
            }),
        }
    }
}
