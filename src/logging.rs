//! JSON log lines, one object per line, as CloudWatch Logs Insights reads them best.

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;

/// Targets that log secrets at TRACE, and everything under them, capped at DEBUG
/// whatever is asked:
/// - The AWS SDK logs whole HTTP responses, and the GetSecretValue response is the
///   routing key and token (and SQS requests carry the queued event).
/// - `lambda_runtime` logs every raw invocation event ("raw JSON event received from
///   Lambda"): a function URL event holds `?token=` in `rawQueryString`.
/// - The HTTP stacks underneath (Runtime API client, hyper, reqwest) see the same bytes.
const NEVER_TRACE: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
    "hyper",
    "hyper_util",
    "reqwest",
];

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
/// secret-bearing targets kept at DEBUG or below: a directive naming one of them, or a
/// target inside one, is lowered; each of them gets its own directive at the level asked
/// for it, capped at DEBUG (in a filter the most specific target wins, so a bare `trace`
/// would otherwise reach them). Unreadable directives fall back to `info`.
pub fn filter(directives: &str) -> Targets {
    let capped = |target: &str| {
        NEVER_TRACE.iter().any(|cap| {
            target == *cap
                || target
                    .strip_prefix(cap)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
    };
    let lowered = directives.to_ascii_lowercase();
    let (asked, parts): (Targets, Vec<&str>) = match lowered.parse() {
        Ok(asked) => (asked, lowered.split(',').collect()),
        Err(_) => (Targets::new().with_default(Level::INFO), vec!["info"]),
    };
    let mut safe: Vec<String> = parts
        .iter()
        .map(|d| match d.split_once('=') {
            Some((target, level))
                if capped(target.trim()) && matches!(level.trim(), "trace" | "5") =>
            {
                format!("{}=debug", target.trim())
            }
            _ => (*d).to_owned(),
        })
        .collect();
    for cap in NEVER_TRACE {
        let named = parts
            .iter()
            .any(|d| d.split_once('=').is_some_and(|(t, _)| t.trim() == *cap));
        if !named {
            let level = [Level::DEBUG, Level::INFO, Level::WARN, Level::ERROR]
                .into_iter()
                .find(|level| asked.would_enable(cap, level))
                .map_or("off", |level| match level {
                    Level::ERROR => "error",
                    Level::WARN => "warn",
                    Level::INFO => "info",
                    _ => "debug",
                });
            safe.push(format!("{cap}={level}"));
        }
    }
    safe.join(",")
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(Level::INFO))
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

    #[test]
    fn secret_bearing_targets_stay_below_trace_whatever_is_asked() {
        let targets = [
            "aws_smithy_runtime::client::orchestrator::http",
            "lambda_runtime::layers::api_response",
            "lambda_runtime",
            "lambda_runtime_api_client",
            "lambda_http",
            "hyper::proto::h1::io",
        ];
        for directives in [
            "trace",
            "TRACE",
            "aws_smithy_runtime=trace",
            "info,aws_smithy_runtime::client=trace",
            "lambda_runtime=trace",
            "lambda_runtime::layers::api_response=trace",
            "lambda_runtime::layers=trace,hyper::proto=trace",
            "lambda_runtime::layers::api_response=5",
            "not a filter!!",
        ] {
            let f = filter(directives);
            for target in targets {
                assert!(
                    !f.would_enable(target, &Level::TRACE),
                    "{directives}: {target}"
                );
            }
        }
        let f = filter("debug");
        assert!(f.would_enable("guance_pagerduty::entry::handler", &Level::DEBUG));
        assert!(!f.would_enable("guance_pagerduty::entry::handler", &Level::TRACE));
        // The caps never raise a level: at info, the HTTP stacks stay quiet.
        for directives in ["info", "warn,lambda_runtime=info", "hyper=error,info"] {
            let f = filter(directives);
            for target in [
                "hyper_util::client::legacy::pool",
                "lambda_runtime",
                "hyper",
            ] {
                assert!(
                    !f.would_enable(target, &Level::DEBUG),
                    "{directives}: {target}"
                );
            }
        }
        assert!(!filter("hyper=error,info").would_enable("hyper", &Level::WARN));
        assert!(filter("debug").would_enable("lambda_runtime", &Level::DEBUG));
        assert!(filter("warn").would_enable("x", &Level::WARN));
        assert!(!filter("warn").would_enable("x", &Level::INFO));
        assert!(
            filter("garbage=!").would_enable("x", &Level::INFO),
            "falls back to info"
        );
    }
}
