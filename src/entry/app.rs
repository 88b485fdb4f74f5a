//! What every entry point shares: the application as wired once per container (`App`,
//! with queue mode's parts) and what an invocation brings (`Invocation`, its deadline).

use crate::adapters::delivery::{jittered, PagerDutyClient};
use crate::adapters::guance_openapi::GuanceOpenApi;
use crate::adapters::metrics::Metrics;
use crate::adapters::pagerduty_rest::PagerDutyRest;
use crate::adapters::queue::FifoQueue;
use crate::adapters::secret::{SecretCache, SecretSource, WebhookSecrets};
use crate::domain::translate::Settings;
use crate::entry::pagerduty_webhook::IncidentProgress;
use crate::error::AppError;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The parts of the application the entry points need, wired once per container.
pub struct App<S> {
    /// Queue mode; `None` delivers within the webhook's invocation.
    pub queue: Option<QueueMode>,
    pub settings: Settings,
    pub secrets: SecretCache<S>,
    pub pagerduty: PagerDutyClient,
    pub max_body_bytes: usize,
    pub allow_unauthenticated: bool,
    pub dry_run: bool,
    pub deadline_margin: Duration,
    pub default_budget: Duration,
    pub metrics: Metrics,
    pub two_way: TwoWay,
}

/// What two-way needs: PagerDuty's REST API, Guance's OpenAPI, and what this container
/// has done for each incident. Idle until the secret has `pagerduty_webhook_secrets`.
pub struct TwoWay {
    pub pagerduty_rest: PagerDutyRest,
    pub guance: GuanceOpenApi,
    pub progress: IncidentProgress,
}

/// What queue mode needs: the delivery queue, where refused events go, and how the
/// dispatcher paces retries.
pub struct QueueMode {
    pub queue: FifoQueue,
    pub dead_letters: Option<FifoQueue>,
    /// The PagerDuty client the dispatcher sends with: few attempts, since a record that
    /// fails waits in the queue rather than in the invocation.
    pub pagerduty: PagerDutyClient,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl QueueMode {
    /// The wait before a failing record is tried again: `retry_base` doubled for each
    /// receive, at most `retry_max`, with equal jitter so that lanes spread out.
    pub fn backoff(&self, receives: u32) -> Duration {
        let exponent = receives.saturating_sub(1).min(20);
        let full = self
            .retry_base
            .saturating_mul(1 << exponent)
            .min(self.retry_max);
        jittered(full)
    }

    /// The most one record may take within an invocation: its attempts and the waits
    /// between them.
    pub fn time_per_record(&self) -> Duration {
        let policy = self.pagerduty.policy();
        (policy.attempt_timeout + policy.max_delay) * policy.max_attempts
    }
}

/// What the handler needs from the Lambda context.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub deadline: Option<Instant>,
}

impl Invocation {
    /// `deadline_epoch_ms` is the Lambda deadline in milliseconds since the epoch. A value
    /// that cannot be one (0 from a bare runtime, or a duration such as the 600000 that
    /// `cargo lambda watch` sends) means no deadline is known; the handler then uses its
    /// local budget. Lambda never runs an invocation longer than 15 minutes, so nor is a
    /// deadline taken further away than that.
    pub fn new(request_id: impl Into<String>, deadline_epoch_ms: u64) -> Self {
        const EPOCH_MS_2001: u64 = 1_000_000_000_000;
        const LAMBDA_MAX: Duration = Duration::from_secs(900);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let deadline = (deadline_epoch_ms >= EPOCH_MS_2001).then(|| {
            let remaining = Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms));
            Instant::now() + remaining.min(LAMBDA_MAX)
        });
        Invocation {
            request_id: request_id.into(),
            deadline,
        }
    }
}

impl<S> App<S> {
    /// When an invocation's work must be done: the Lambda deadline less the margin kept
    /// to answer, or the local budget where the runtime gave no deadline.
    pub(crate) fn work_deadline(&self, invocation: &Invocation) -> Instant {
        match invocation.deadline {
            Some(deadline) => deadline
                .checked_sub(self.deadline_margin)
                .unwrap_or(deadline),
            None => Instant::now() + self.default_budget,
        }
    }
}

/// Whether the secret admits a caller, and the secrets read to decide it.
pub(crate) enum Admission {
    Admitted(Arc<WebhookSecrets>),
    Refused(Arc<WebhookSecrets>),
}

impl<S: SecretSource> App<S> {
    /// The secrets, and whether `admits` holds for them (a token, a signature). When it
    /// does not and `may_refresh`, the credential may just have been rotated: the secret
    /// is read again and asked again, at most once per interval (the cache's rule), so
    /// strangers cannot make the function hammer Secrets Manager. `credential` names what
    /// was checked, for the log.
    pub(crate) async fn admit(
        &self,
        deadline: Instant,
        credential: &str,
        may_refresh: bool,
        admits: impl Fn(&WebhookSecrets) -> bool,
    ) -> Result<Admission, AppError> {
        let secrets = self.secrets.get(deadline).await.map_err(|error| {
            tracing::error!(%error, "cannot read the secret");
            AppError::SecretUnavailable
        })?;
        if admits(&secrets) {
            return Ok(Admission::Admitted(secrets));
        }
        if may_refresh {
            if let Some(fresh) = self.secrets.refresh_after_mismatch(deadline).await {
                if admits(&fresh) {
                    tracing::info!(credential, "accepted after re-reading the secret (rotated)");
                    return Ok(Admission::Admitted(fresh));
                }
            }
        }
        Ok(Admission::Refused(secrets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_that_are_not_epoch_times_mean_no_deadline() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let remaining = |deadline_ms: u64| {
            Invocation::new("r", deadline_ms)
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()).as_secs())
        };
        assert_eq!(remaining(0), None, "no deadline from a bare runtime");
        assert_eq!(
            remaining(600_000),
            None,
            "cargo lambda watch sends a duration"
        );
        assert_eq!(remaining(now_ms + 30_500), Some(30));
        assert_eq!(
            remaining(now_ms - 5_000),
            Some(0),
            "a passed deadline leaves no time"
        );
        assert_eq!(
            remaining(now_ms + 3_600_000),
            Some(899),
            "capped at Lambda's 15 minutes"
        );
    }
}
