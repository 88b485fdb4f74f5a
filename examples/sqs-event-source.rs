//! A local stand-in for Lambda's SQS event source mapping, for `make demo`: long-polls a
//! FIFO queue (moto), invokes the function with each batch shaped exactly as Lambda
//! shapes an SQS event, deletes what the function did not report in
//! `batchItemFailures`, and deletes nothing when the invocation failed. A local tool,
//! not part of the product.
//!
//! Usage: `sqs-event-source <sqs endpoint> <queue url> <function invoke url>`

#[path = "../tests/support/event_source.rs"]
mod event_source;

use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, queue_url, invoke_url] = args.as_slice() else {
        eprintln!("usage: sqs-event-source <sqs endpoint> <queue url> <function invoke url>");
        std::process::exit(2);
    };

    let source =
        event_source::EventSource::new(event_source::local_client(endpoint), queue_url).await;
    let http = reqwest::Client::new();
    println!("event source mapping: polling {queue_url}");
    loop {
        let messages = source.receive(2).await;
        if messages.is_empty() {
            continue;
        }
        let payload = source.sqs_event(&messages);
        let answer = http
            .post(invoke_url)
            .header("content-type", "application/json")
            .body(payload.to_string())
            .timeout(Duration::from_secs(60))
            .send()
            .await;
        let response = match answer {
            Ok(answer) if answer.status().is_success() => answer
                .text()
                .await
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .filter(|r| r.get("batchItemFailures").is_some()),
            _ => None,
        };
        let deleted = source.settle(&messages, response.as_ref()).await;
        println!(
            "event source mapping: batch of {}, {} delivered, {} back to the queue",
            messages.len(),
            deleted,
            messages.len() - deleted
        );
        if response.is_none() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
