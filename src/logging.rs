//! JSON log lines, one object per line, as CloudWatch Logs Insights reads them best.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;

/// At TRACE the AWS SDK logs whole HTTP responses, and the GetSecretValue response is
/// the routing key and token. These directives are added after any the user sets and,
/// being more specific, win over them.
const NEVER_TRACE: &[&str] = &["aws_smithy_runtime::client::orchestrator::http=debug"];

/// The filter: `RUST_LOG` if set, else Lambda's own `AWS_LAMBDA_LOG_LEVEL`, else `info`.
pub fn filter_from_env() -> Targets {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| std::env::var("AWS_LAMBDA_LOG_LEVEL").ok())
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "info".to_owned());
    filter(&directives)
}

/// `directives` (`level` or `target=level`, comma-separated, as in `RUST_LOG`) with the
/// SDK's secret-bearing logs kept out; the most specific target wins. Unreadable
/// directives fall back to `info`.
pub fn filter(directives: &str) -> Targets {
    let directives = directives.to_ascii_lowercase();
    let safe = |d: &str| {
        std::iter::once(d)
            .chain(NEVER_TRACE.iter().copied())
            .collect::<Vec<_>>()
            .join(",")
    };
    safe(&directives)
        .parse()
        .or_else(|_| safe("info").parse())
        .unwrap_or_default()
}

/// Installs the JSON subscriber writing to `writer`; the tests install it over a buffer
/// to read what the function logs.
pub fn install<W>(filter: Targets, writer: W) -> Result<(), tracing_subscriber::util::TryInitError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_ansi(false)
        .with_writer(writer);
    tracing_subscriber::registry()
        .with(json)
        .with(filter)
        .try_init()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn the_sdk_wire_log_stays_below_trace_whatever_is_asked() {
        let wire = "aws_smithy_runtime::client::orchestrator::http";
        for directives in [
            "trace",
            "TRACE",
            "aws_smithy_runtime=trace",
            "info,aws_smithy_runtime::client=trace",
            "not a filter!!",
        ] {
            let f = filter(directives);
            assert!(!f.would_enable(wire, &Level::TRACE), "{directives}");
        }
        let f = filter("debug");
        assert!(f.would_enable("guance_pagerduty::handler", &Level::DEBUG));
        assert!(!f.would_enable("guance_pagerduty::handler", &Level::TRACE));
        assert!(filter("warn").would_enable("x", &Level::WARN));
        assert!(!filter("warn").would_enable("x", &Level::INFO));
        assert!(
            filter("garbage=!").would_enable("x", &Level::INFO),
            "falls back to info"
        );
    }
}
