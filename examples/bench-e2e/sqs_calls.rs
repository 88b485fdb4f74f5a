//! A counting proxy in front of moto's SQS, for what queue mode costs in SQS calls: the
//! functions' `AWS_ENDPOINT_URL_SQS` points here, each request is passed on to moto as it
//! is, and its operation (`X-Amz-Target: AmazonSQS.<Operation>`) is counted. The local
//! event source mapping talks to moto directly: its calls are Lambda's, not the
//! function's.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

pub struct SqsCalls {
    pub endpoint: String,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl SqsCalls {
    /// Starts the proxy in front of `upstream` (moto's endpoint).
    pub async fn start(upstream: &str) -> SqsCalls {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let (shared, upstream) = (Arc::clone(&counts), upstream.to_owned());
        let client = reqwest::Client::new();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (counts, upstream, client) =
                    (Arc::clone(&shared), upstream.clone(), client.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let (counts, upstream, client) =
                            (Arc::clone(&counts), upstream.clone(), client.clone());
                        async move { forward(request, &upstream, &client, &counts).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        SqsCalls { endpoint, counts }
    }

    /// Calls so far, by operation.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().unwrap().clone()
    }
}

async fn forward(
    request: Request<Incoming>,
    upstream: &str,
    client: &reqwest::Client,
    counts: &Mutex<BTreeMap<String, u64>>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let operation = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map_or("unknown", |t| t.trim_start_matches("AmazonSQS."))
        .to_owned();
    *counts.lock().unwrap().entry(operation).or_default() += 1;
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = client.request(parts.method.clone(), format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing
        .body(body.to_vec())
        .send()
        .await
        .map_err(std::io::Error::other)?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != hyper::header::CONTENT_LENGTH && name != hyper::header::TRANSFER_ENCODING {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.map_err(std::io::Error::other)?;
    response
        .body(Full::new(bytes))
        .map_err(std::io::Error::other)
}
