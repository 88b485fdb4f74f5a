//! JSON log lines, one object per line, as CloudWatch Logs Insights reads them best.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// At TRACE the AWS SDK logs whole HTTP responses, and the GetSecretValue response is
/// the routing key and token. These directives are added after any the user sets and,
/// being more specific, win over them.
const NEVER_TRACE: &[&str] = &["aws_smithy_runtime::client::orchestrator::http=debug"];

/// The filter: `RUST_LOG` if set, else Lambda's own `AWS_LAMBDA_LOG_LEVEL`, else `info`.
pub fn filter_from_env() -> EnvFilter {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok())
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "info".to_owned());
    filter(&directives)
}

/// `directives` (as in `RUST_LOG`) with the SDK's secret-bearing logs kept out.
pub fn filter(directives: &str) -> EnvFilter {
    let directives = directives.to_ascii_lowercase();
    let safe = |d: &str| {
        std::iter::once(d)
            .chain(NEVER_TRACE.iter().copied())
            .collect::<Vec<_>>()
            .join(",")
    };
    EnvFilter::try_new(safe(&directives)).unwrap_or_else(|_| EnvFilter::new(safe("info")))
}

/// Installs the JSON subscriber writing to `writer`; the tests install it over a buffer
/// to read what the function logs.
pub fn install<W>(
    filter: EnvFilter,
    writer: W,
) -> Result<(), tracing_subscriber::util::TryInitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
        .try_init()
}
