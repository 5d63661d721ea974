//! OpenTelemetry traces: with `[tracing] otlp_endpoint`, each request's span reaches an
//! OTLP/HTTP collector (here a loopback receiver of OTLP JSON) with the HTTP and GenAI
//! attributes, named after its operation and model, whatever the log level; the spans still
//! queued at SIGTERM are sent before the process exits; the key's secret is never in them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use support::Deployment;

/// Accepts OTLP/HTTP posts on a loopback port; every body goes to the channel.
fn collector() -> (u16, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut head = String::new();
                    let mut line = String::new();
                    let mut length = 0usize;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap();
                            }
                        }
                        head.push_str(&line);
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let _ = tx.send((head, body));
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if reader.get_mut().write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

/// Every span in the OTLP JSON bodies, with its resource's attributes.
fn spans(bodies: &[Vec<u8>]) -> Vec<(Value, Value)> {
    let mut all = Vec::new();
    for body in bodies {
        let export: Value = serde_json::from_slice(body).unwrap();
        for resource in export["resourceSpans"].as_array().unwrap() {
            for scope in resource["scopeSpans"].as_array().unwrap() {
                for span in scope["spans"].as_array().unwrap() {
                    all.push((resource["resource"].clone(), span.clone()));
                }
            }
        }
    }
    all
}

/// An attribute's value, as OTLP JSON writes it (64-bit integers as strings).
fn attribute(attributes: &Value, key: &str) -> Value {
    attributes
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| {
            let value = &a["value"];
            if let Some(text) = value.get("stringValue") {
                text.clone()
            } else if let Some(int) = value.get("intValue") {
                json!(int
                    .as_str()
                    .map_or_else(|| int.as_i64().unwrap(), |s| s.parse::<i64>().unwrap()))
            } else if let Some(double) = value.get("doubleValue") {
                double.clone()
            } else {
                value.clone()
            }
        })
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn each_request_s_span_reaches_the_collector_with_genai_attributes() {
    let (port, received) = collector();
    let d = Deployment::new();
    std::fs::write(
        d.path("tollgate.toml"),
        format!("[tracing]\notlp_endpoint = \"http://127.0.0.1:{port}\"\notlp_protocol = \"http/json\"\nservice_name = \"edge-gateway\"\n"),
    )
    .unwrap();
    // Logs at warn: traces do not depend on the log level.
    let server = d.serve(&["--demo", "--log-level", "warn"]);
    let key = d
        .run(&["keys", "create", "--name", "traced", "--json"])
        .ok()
        .json();
    let secret = key["value"].as_str().unwrap();
    let reply: Value = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.base))
        .bearer_auth(secret)
        .json(
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "trace me"}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refused = reqwest::Client::new()
        .get(format!("{}/v1/models", server.base))
        .bearer_auth("sk-proj-not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // SIGTERM: the queued spans are sent before the process exits.
    assert_eq!(server.stop().code, 0);
    let posts: Vec<(String, Vec<u8>)> = received.try_iter().collect();
    assert!(!posts.is_empty(), "no spans reached the collector");
    assert!(
        posts[0].0.starts_with("POST /v1/traces HTTP/1.1"),
        "{}",
        posts[0].0
    );
    let bodies: Vec<Vec<u8>> = posts.into_iter().map(|(_, body)| body).collect();
    for body in &bodies {
        assert!(
            !String::from_utf8_lossy(body).contains(secret),
            "the key's secret left in a span"
        );
    }
    let spans = spans(&bodies);
    let (resource, chat) = spans
        .iter()
        .find(|(_, s)| s["name"] == "chat gpt-4o-mini")
        .unwrap_or_else(|| panic!("no chat span in {spans:?}"));
    assert_eq!(
        attribute(&resource["attributes"], "service.name"),
        "edge-gateway"
    );
    assert_eq!(chat["kind"], 3, "a client span: the call to the model");
    // Its parent is the request's server span, named after the method.
    let request = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s["spanId"] == chat["parentSpanId"])
        .unwrap_or_else(|| panic!("no parent span in {spans:?}"));
    assert_eq!(request["name"], "POST");
    assert_eq!(request["kind"], 2, "a server span");
    assert_eq!(request["traceId"], chat["traceId"]);
    assert_eq!(
        attribute(&request["attributes"], "http.response.status_code"),
        200
    );
    assert_eq!(attribute(&request["attributes"], "key_id"), key["id"]);
    let attributes = &chat["attributes"];
    assert_eq!(attribute(attributes, "gen_ai.operation.name"), "chat");
    assert_eq!(attribute(attributes, "gen_ai.request.model"), "gpt-4o-mini");
    assert_eq!(
        attribute(attributes, "gen_ai.response.model"),
        reply["model"]
    );
    assert_eq!(attribute(attributes, "gen_ai.provider.name"), "demo");
    assert_eq!(
        attribute(attributes, "gen_ai.usage.input_tokens"),
        reply["usage"]["prompt_tokens"]
    );
    assert_eq!(
        attribute(attributes, "gen_ai.usage.output_tokens"),
        reply["usage"]["completion_tokens"]
    );
    assert_eq!(attribute(attributes, "tollgate.status"), 200);
    assert!(attribute(attributes, "tollgate.cost_usd").as_f64().unwrap() > 0.0);
    // The refused request has its span too, without GenAI attributes.
    let refusal = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| attribute(&s["attributes"], "http.response.status_code") == 401)
        .unwrap_or_else(|| panic!("no span for the 401 in {spans:?}"));
    assert_eq!(
        attribute(&refusal["attributes"], "gen_ai.operation.name"),
        Value::Null
    );
}
