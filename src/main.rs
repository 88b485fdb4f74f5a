#![recursion_limit = "256"]
//! The Lambda entry point: wiring only. Configuration is read and checked here, once per
//! container; the clients built here are reused by every invocation.

use guance_pagerduty::adapters::delivery::{PagerDutyClient, RetryPolicy};
use guance_pagerduty::adapters::guance_openapi::GuanceOpenApi;
use guance_pagerduty::adapters::metrics::{self, Metrics};
use guance_pagerduty::adapters::pagerduty_rest::PagerDutyRest;
use guance_pagerduty::adapters::queue::FifoQueue;
use guance_pagerduty::adapters::secret::RoutingKey;
use guance_pagerduty::adapters::secret::{
    AnySecretSource, SecretCache, SecretsManagerSource, StaticSource, WebhookSecrets, WebhookToken,
};
use guance_pagerduty::config::{Config, SecretConfig};
use guance_pagerduty::entry::app::{App, Invocation, QueueMode, TwoWay};
use guance_pagerduty::entry::invocation::{classify, Answer, Incoming};
use guance_pagerduty::logging;
use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A wrong token forces the secret to be read again at most this often.
const FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    logging::install(logging::filter_from_env(), std::io::stdout)?;
    let config = Config::from_env().inspect_err(|error| {
        tracing::error!(%error, "invalid configuration; the function cannot start");
    })?;

    // Reads the environment and profile only; nothing is fetched until a client calls.
    let aws = aws_config::load_from_env().await;
    let source = match &config.secret {
        SecretConfig::SecretsManager { secret_id } => {
            let client = aws_sdk_secretsmanager::Client::new(&aws);
            AnySecretSource::SecretsManager(SecretsManagerSource::new(client, secret_id))
        }
        SecretConfig::Environment {
            routing_key,
            webhook_token,
        } => AnySecretSource::Static(StaticSource(WebhookSecrets {
            routing_key: RoutingKey::new(routing_key).inspect_err(|error| {
                tracing::error!(variable = "PAGERDUTY_ROUTING_KEY", %error, "invalid configuration");
            })?,
            webhook_tokens: webhook_token.as_deref().and_then(WebhookToken::new).into_iter().collect(),
            routes: Default::default(),
            two_way: None,
        })),
    };
    if config.allow_unauthenticated {
        tracing::warn!(
            "ALLOW_UNAUTHENTICATED=true: without a webhook_token anyone who knows the URL can page"
        );
    }
    if config.dry_run {
        tracing::warn!(
            "DRY_RUN=true: events are translated and logged, nothing is sent to PagerDuty"
        );
    }
    tracing::info!(config = ?config, "starting");

    // One HTTP client (one connection pool, one TLS configuration) for every party.
    let http = PagerDutyClient::http_client()?;
    let pagerduty = PagerDutyClient::new(http.clone(), config.events_url.clone(), config.retry);
    let queue = config.queue.as_ref().map(|queue| {
        let sqs = aws_sdk_sqs::Client::new(&aws);
        QueueMode {
            queue: FifoQueue::new(sqs.clone(), &queue.url, queue.max_message_bytes),
            dead_letters: queue
                .dead_letter_url
                .as_ref()
                .map(|url| FifoQueue::new(sqs.clone(), url, queue.max_message_bytes)),
            pagerduty: pagerduty.with_policy(RetryPolicy {
                max_attempts: queue.attempts_per_invocation,
                ..config.retry
            }),
            retry_base: queue.retry_base,
            retry_max: queue.retry_max,
        }
    });
    let app = App {
        queue,
        settings: config.settings,
        secrets: SecretCache::new(source, config.secret_ttl, FORCED_REFRESH_INTERVAL),
        pagerduty,
        max_body_bytes: config.max_body_bytes,
        allow_unauthenticated: config.allow_unauthenticated,
        dry_run: config.dry_run,
        deadline_margin: config.deadline_margin,
        default_budget: config.default_budget,
        metrics: Metrics::new(config.metrics_namespace, Arc::new(metrics::Stdout)),
        two_way: TwoWay {
            pagerduty_rest: PagerDutyRest::new(http.clone(), config.api_url),
            guance: GuanceOpenApi::new(http),
            progress: Default::default(),
        },
    };
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let invocation = Invocation::new(event.context.request_id, event.context.deadline);
        match classify(event.payload) {
            Ok(Incoming::FunctionUrl(request)) => Ok(Answer::FunctionUrl(Box::new(
                app.handle(*request, &invocation).await,
            ))),
            Ok(Incoming::Queue(batch)) => Ok(Answer::Queue(app.dispatch(batch, &invocation).await)),
            Err(unrecognized) => {
                tracing::error!(request_id = %invocation.request_id, error = %unrecognized, "invocation refused");
                Err(Diagnostic {
                    error_type: "UnrecognizedInvocation".into(),
                    error_message: unrecognized.to_string(),
                })
            }
        }
    }))
    .await
}
