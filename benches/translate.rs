//! The pure core's cost per event: parse + translate + encode, as the handler runs it.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use guance_pagerduty::domain::guance::parse_body;
use guance_pagerduty::domain::translate::{translate, Outcome, Settings};
use serde_json::{json, Value};
use std::hint::black_box;

const EXAMPLE: &str = include_str!("../tests/fixtures/contract-example-alert.json");
const ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdefghijkl";

/// Everything the handler does to a body before the network: parse, translate, encode.
fn pipeline(body: &[u8], settings: &Settings) -> usize {
    let events = parse_body(body).expect("a valid body");
    events
        .iter()
        .map(|event| match translate(event, settings).outcome {
            Outcome::Send(e) => e.encode(ROUTING_KEY).expect("fits").len(),
            _ => 0,
        })
        .sum()
}

fn example() -> Value {
    serde_json::from_str(EXAMPLE).unwrap()
}

fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut big = example();
    // About 100 KB: a long message and a large custom field, as verbose monitors send.
    big["df_message"] = json!("磁盘使用率过高 disk usage high; ".repeat(2_300));
    big["df_meta"] =
        json!(json!({"alert_info": {"targets": vec!["ops-team@example.com"; 1_000]}}).to_string());
    let batch: Vec<Value> = (0..100)
        .map(|i| {
            let mut e = example();
            e["df_event_id"] = json!(format!("event-{i:032x}"));
            e["df_status"] = json!(if i % 2 == 0 { "critical" } else { "ok" });
            e
        })
        .collect();
    vec![
        ("contract_example", EXAMPLE.as_bytes().to_vec()),
        ("event_100kb", serde_json::to_vec(&big).unwrap()),
        ("array_of_100", serde_json::to_vec(&batch).unwrap()),
    ]
}

fn bench(c: &mut Criterion) {
    let settings = Settings::default();
    let mut group = c.benchmark_group("parse_translate_encode");
    for (name, body) in bodies() {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| b.iter(|| pipeline(black_box(&body), &settings)));
    }
    group.finish();

    // Translation alone, for the contract example already parsed.
    let event = parse_body(EXAMPLE.as_bytes()).unwrap().remove(0);
    c.bench_function("translate_only/contract_example", |b| {
        b.iter_batched(
            || &event,
            |e| translate(black_box(e), &settings),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
