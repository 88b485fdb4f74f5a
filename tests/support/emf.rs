//! The CloudWatch Embedded Metric Format specification, as a checker: a line that passes
//! is one CloudWatch Logs turns into the metrics it declares.
//! https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html

use guance_pagerduty::adapters::metrics::is_valid_namespace;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// The units CloudWatch accepts (MetricDatum's StandardUnit).
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// One metric a line publishes: to this namespace, with this unit, under this dimension
/// set (keys in the order declared) with these values of them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Declared {
    pub namespace: String,
    pub metric: String,
    pub unit: String,
    pub dimensions: Vec<String>,
    pub values: Vec<String>,
    /// How many values the line gives the metric.
    pub samples: usize,
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{what} is not an object: {value}"))
}

fn only_members(map: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(extra) => Err(format!(
            "{what} has a member the specification does not define: {extra}"
        )),
        None => Ok(()),
    }
}

/// Checks `line` against the specification; returns what it declares.
pub fn validate(line: &str) -> Result<Vec<Declared>, String> {
    let root: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
    let root = object(&root, "the line")?;
    let aws = object(root.get("_aws").ok_or("no _aws member")?, "_aws")?;
    let timestamp = aws
        .get("Timestamp")
        .and_then(Value::as_u64)
        .ok_or("_aws.Timestamp is not a whole number of milliseconds")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    if timestamp.abs_diff(now) > 10 * 60 * 1000 {
        return Err(format!(
            "_aws.Timestamp {timestamp} is not now ({now}), in milliseconds"
        ));
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or("_aws.CloudWatchMetrics is not a non-empty array")?;
    let mut declared = Vec::new();
    for directive in directives {
        let directive = object(directive, "a MetricDirective")?;
        only_members(
            directive,
            &["Namespace", "Dimensions", "Metrics"],
            "a MetricDirective",
        )?;
        let namespace = directive
            .get("Namespace")
            .and_then(Value::as_str)
            .filter(|n| is_valid_namespace(n))
            .ok_or("Namespace is not a valid CloudWatch namespace")?;
        let sets = directive
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or("Dimensions is not an array")?;
        let mut dimension_sets = Vec::new();
        for set in sets {
            let keys = set.as_array().ok_or("a DimensionSet is not an array")?;
            if keys.len() > 30 {
                return Err(format!(
                    "a DimensionSet has {} keys, more than 30",
                    keys.len()
                ));
            }
            let mut names = Vec::new();
            let mut values = Vec::new();
            for key in keys {
                let key = key.as_str().ok_or("a dimension key is not a string")?;
                let value = root
                    .get(key)
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("dimension {key} has no string value in the line"))?;
                if value.is_empty() || value.len() > 1024 {
                    return Err(format!("dimension {key} has an empty or too long value"));
                }
                names.push(key.to_owned());
                values.push(value.to_owned());
            }
            dimension_sets.push((names, values));
        }
        let metrics = directive
            .get("Metrics")
            .and_then(Value::as_array)
            .filter(|m| (1..=100).contains(&m.len()))
            .ok_or("Metrics is not an array of 1 to 100 MetricDefinitions")?;
        let mut seen = Vec::new();
        for metric in metrics {
            let metric = object(metric, "a MetricDefinition")?;
            only_members(
                metric,
                &["Name", "Unit", "StorageResolution"],
                "a MetricDefinition",
            )?;
            let name = metric
                .get("Name")
                .and_then(Value::as_str)
                .filter(|n| (1..=255).contains(&n.len()))
                .ok_or("a MetricDefinition has no Name of 1 to 255 characters")?;
            if seen.contains(&name) {
                return Err(format!("metric {name} is declared twice in one directive"));
            }
            seen.push(name);
            let unit = match metric.get("Unit") {
                None => "None",
                Some(unit) => unit
                    .as_str()
                    .filter(|u| UNITS.contains(u))
                    .ok_or_else(|| format!("metric {name} has an invalid Unit {unit}"))?,
            };
            if let Some(resolution) = metric.get("StorageResolution") {
                if resolution != 1 && resolution != 60 {
                    return Err(format!("metric {name}: StorageResolution is 1 or 60"));
                }
            }
            let samples = match root.get(name) {
                Some(Value::Number(_)) => 1,
                Some(Value::Array(values))
                    if (1..=100).contains(&values.len()) && values.iter().all(Value::is_number) =>
                {
                    values.len()
                }
                other => {
                    return Err(format!(
                        "metric {name} has no number or array of 1 to 100 numbers in the line: {other:?}"
                    ))
                }
            };
            for (names, values) in &dimension_sets {
                declared.push(Declared {
                    namespace: namespace.to_owned(),
                    metric: name.to_owned(),
                    unit: unit.to_owned(),
                    dimensions: names.clone(),
                    values: values.clone(),
                    samples,
                });
            }
        }
    }
    Ok(declared)
}

/// The lines of `output` that declare metrics (have an `_aws` member).
pub fn metric_lines(output: &str) -> Vec<&str> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{') && l.contains("\"_aws\""))
        .collect()
}

/// `Events` per (Route, Outcome) over `lines`, each line checked against the
/// specification and to publish to `namespace`.
pub fn events(lines: &[&str], namespace: &str) -> BTreeMap<(String, String), u64> {
    let mut totals = BTreeMap::new();
    for line in lines {
        let declared = validate(line).unwrap_or_else(|e| panic!("not EMF: {e}"));
        assert!(
            declared.iter().all(|d| d.namespace == namespace),
            "not in {namespace}: {line}"
        );
        let line: Value = serde_json::from_str(line).unwrap();
        if let Some(events) = line["Events"].as_u64() {
            let key = (
                line["Route"].as_str().unwrap().to_owned(),
                line["Outcome"].as_str().unwrap().to_owned(),
            );
            *totals.entry(key).or_default() += events;
        }
    }
    totals
}

/// `RequestsRefused` per `Reason` over `lines`, each line checked against the
/// specification.
pub fn refused_requests(lines: &[&str]) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for line in lines {
        validate(line).unwrap_or_else(|e| panic!("not EMF: {e}"));
        let line: Value = serde_json::from_str(line).unwrap();
        if let Some(count) = line["RequestsRefused"].as_u64() {
            let reason = line["Reason"].as_str().unwrap().to_owned();
            *totals.entry(reason).or_default() += count;
        }
    }
    totals
}
