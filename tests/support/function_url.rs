//! The function served over HTTP on loopback, as its function URL serves it: each request
//! becomes the payload format 2.0 event Lambda builds, handled by the real `App::handle`,
//! and its answer becomes the HTTP response. For tools that call the deployed URL (make
//! setup's proof, PagerDuty's webhooks) where moto runs no function.

use super::request;
use guance_pagerduty::adapters::secret::SecretsManagerSource;
use guance_pagerduty::entry::app::App;
use guance_pagerduty::entry::app::Invocation;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct LocalFunctionUrl {
    pub url: String,
    server: JoinHandle<()>,
}

impl Drop for LocalFunctionUrl {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl LocalFunctionUrl {
    pub async fn start(app: App<SecretsManagerSource>) -> LocalFunctionUrl {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Arc::new(app);
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let app = Arc::clone(&app);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |incoming| {
                        let app = Arc::clone(&app);
                        async move { serve(&app, incoming).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        LocalFunctionUrl { url, server }
    }
}

async fn serve(
    app: &App<SecretsManagerSource>,
    incoming: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let method = incoming.method().to_string();
    let path = incoming.uri().path().to_owned();
    let query = incoming.uri().query().unwrap_or_default().to_owned();
    let headers: serde_json::Map<String, Value> = incoming
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), json!(v.to_str().ok()?))))
        .collect();
    let body = incoming
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let parameters: serde_json::Map<String, Value> = url_pairs(&query)
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (text, base64) = match std::str::from_utf8(&body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &body),
            true,
        ),
    };
    let event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": headers, "queryStringParameters": parameters,
        "requestContext": {"accountId": "anonymous", "apiId": "local", "domainName": "localhost",
                           "domainPrefix": "local", "requestId": "local", "routeKey": "$default",
                           "stage": "$default", "time": "", "timeEpoch": now_ms,
                           "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                    "sourceIp": "127.0.0.1", "userAgent": ""}},
        "body": text, "isBase64Encoded": base64,
    });
    let deadline = SystemTime::now() + Duration::from_secs(30);
    let invocation = Invocation::new(
        "local-function-url",
        deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
    );
    let answer = app.handle(request(&event), &invocation).await;
    let mut response = Response::builder().status(answer.status_code as u16);
    for (name, value) in answer.headers.iter() {
        response = response.header(name, value);
    }
    let body = match answer.body {
        Some(lambda_http::Body::Text(text)) => Bytes::from(text),
        Some(lambda_http::Body::Binary(bytes)) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    Ok(response.body(Full::new(body)).unwrap())
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://local/?{query}"))
        .map(|url| {
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}
