//! JSON log lines, one object per line, as CloudWatch Logs Insights reads them best.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The filter: `RUST_LOG` if set, else Lambda's own `AWS_LAMBDA_LOG_LEVEL`, else `info`.
pub fn filter_from_env() -> EnvFilter {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok())
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "info".to_owned());
    EnvFilter::try_new(directives.to_ascii_lowercase()).unwrap_or_else(|_| EnvFilter::new("info"))
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
