//! The demo provider's object store: files, uploads, batches, vector stores, fine-tuning jobs,
//! stored responses and chat completions, conversations, containers and evals, kept in memory
//! as one account at OpenAI keeps them (whoever calls sees everything, as through one shared
//! credential). Ids, cursor lists (`after`, `limit`, `order`, `has_more`), 404s in OpenAI's
//! words, batches that produce an output file and fine-tuning jobs that produce a result file,
//! so the gateway's tenancy can be exercised end to end.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use tollgate_core::objects::{query_pairs, ObjectKind};

/// Every object the provider keeps, by kind, in the order made.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    kept: Mutex<HashMap<ObjectKind, Vec<Value>>>,
    contents: Mutex<HashMap<String, Bytes>>,
    /// The files added to each vector store.
    store_files: Mutex<HashMap<String, Vec<Value>>>,
}

pub(crate) fn not_found(kind: ObjectKind, id: &str, param: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": {"message": format!("No such {} object: {id}", kind.noun()), "type": "invalid_request_error", "param": param, "code": null}})),
    )
        .into_response()
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})),
    )
        .into_response()
}

fn ok(value: Value) -> Response {
    Json(value).into_response()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn new_id(kind: ObjectKind) -> String {
    let prefix = match kind {
        ObjectKind::File => "file-",
        ObjectKind::Upload => "upload_",
        ObjectKind::Batch => "batch_",
        ObjectKind::VectorStore => "vs_",
        ObjectKind::FineTuningJob => "ftjob-",
        ObjectKind::Response => "resp_",
        ObjectKind::ChatCompletion => "chatcmpl-",
        ObjectKind::Conversation => "conv_",
        ObjectKind::Container => "cntr_",
        ObjectKind::Eval => "eval_",
    };
    format!("{prefix}{}", tollgate_core::ids::random_base62(24))
}

/// A list page as OpenAI writes it: `order` (newest first by default), `after`, `limit`.
fn page(all: &[Value], query: Option<&str>) -> Value {
    let pairs = query_pairs(query.unwrap_or(""));
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let limit = get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 10_000);
    let mut items: Vec<&Value> = all.iter().collect();
    if get("order").as_deref() != Some("asc") {
        items.reverse();
    }
    if let Some(purpose) = get("purpose") {
        items.retain(|o| o["purpose"] == purpose.as_str());
    }
    let start = match get("after") {
        Some(after) => items
            .iter()
            .position(|o| o["id"] == after.as_str())
            .map_or(items.len(), |i| i + 1),
        None => 0,
    };
    let rest = &items[start.min(items.len())..];
    let data: Vec<Value> = rest.iter().take(limit).map(|o| (*o).clone()).collect();
    json!({
        "object": "list",
        "first_id": data.first().map(|o| o["id"].clone()),
        "last_id": data.last().map(|o| o["id"].clone()),
        "has_more": rest.len() > limit,
        "data": data,
    })
}

/// The part of a multipart body named `name`: its file name and bytes.
fn multipart_part(content_type: &str, body: &[u8], name: &str) -> Option<(Option<String>, Bytes)> {
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut rest = text;
    while let Some(at) = memchr::memmem::find(rest, delimiter.as_bytes()) {
        rest = &rest[at + delimiter.len()..];
        let head_end = memchr::memmem::find(rest, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        let content = &rest[head_end + 4..];
        let end = memchr::memmem::find(content, format!("\r\n{delimiter}").as_bytes())
            .unwrap_or(content.len());
        if head.contains(&format!("name=\"{name}\"")) {
            let file_name = head
                .split("filename=\"")
                .nth(1)
                .and_then(|f| f.split('"').next())
                .map(str::to_owned);
            return Some((file_name, Bytes::copy_from_slice(&content[..end])));
        }
    }
    None
}

impl Objects {
    fn kept(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKind, Vec<Value>>> {
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn find(&self, kind: ObjectKind, id: &str) -> Option<Value> {
        self.kept()
            .get(&kind)?
            .iter()
            .find(|o| o["id"] == id)
            .cloned()
    }

    fn put(&self, kind: ObjectKind, object: Value) -> Value {
        let mut kept = self.kept();
        let all = kept.entry(kind).or_default();
        match all.iter_mut().find(|o| o["id"] == object["id"]) {
            Some(old) => *old = object.clone(),
            None => all.push(object.clone()),
        }
        object
    }

    fn remove(&self, kind: ObjectKind, id: &str) -> bool {
        let mut kept = self.kept();
        let Some(all) = kept.get_mut(&kind) else {
            return false;
        };
        let before = all.len();
        all.retain(|o| o["id"] != id);
        before != all.len()
    }

    fn file(&self, name: &str, purpose: &str, data: Bytes) -> Value {
        let id = new_id(ObjectKind::File);
        let file = json!({"id": id, "object": "file", "bytes": data.len(), "created_at": now(), "filename": name,
            "purpose": purpose, "status": "processed", "expires_at": null, "status_details": null});
        self.contents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, data);
        self.put(ObjectKind::File, file)
    }

    /// Keeps a stored response or chat completion the mock answered.
    pub(crate) fn keep(&self, kind: ObjectKind, object: Value) {
        self.put(kind, object);
    }

    /// Whether a response the request continues exists.
    pub(crate) fn has(&self, kind: ObjectKind, id: &str) -> bool {
        self.find(kind, id).is_some()
    }

    /// Answers a request for an object collection; `None` for any other path.
    pub(crate) fn serve(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        content_type: &str,
        body: &Bytes,
    ) -> Option<Response> {
        let (kind, rest) = ObjectKind::ALL.into_iter().find_map(|kind| {
            let rest = path.strip_prefix(kind.collection())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((kind, rest))
        })?;
        let segments: Vec<&str> = rest.split('/').skip(1).collect();
        let json_body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        Some(match (method.as_str(), segments.as_slice()) {
            ("GET", []) => {
                let all = self.kept().get(&kind).cloned().unwrap_or_default();
                ok(page(&all, query))
            }
            ("POST", []) => self.create(kind, content_type, body, &json_body),
            ("GET", [id]) => match self.find(kind, id) {
                Some(object) => ok(self.advance(kind, object)),
                None => not_found(kind, id, "id"),
            },
            ("DELETE", [id]) => {
                if self.remove(kind, id) {
                    ok(
                        json!({"id": id, "object": format!("{}.deleted", kind.as_str()), "deleted": true}),
                    )
                } else {
                    not_found(kind, id, "id")
                }
            }
            ("GET", [id, "content"]) if kind == ObjectKind::File => {
                let data = self
                    .contents
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(*id)
                    .cloned();
                match (self.find(kind, id), data) {
                    (Some(_), Some(data)) => (
                        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
                        data,
                    )
                        .into_response(),
                    _ => not_found(kind, id, "id"),
                }
            }
            (_, [id, ..]) if self.find(kind, id).is_none() => not_found(kind, id, "id"),
            ("POST", [id, "cancel"]) => {
                let mut object = self.find(kind, id)?;
                object["status"] = json!("cancelled");
                ok(self.put(kind, object))
            }
            ("POST", [id, "parts"]) if kind == ObjectKind::Upload => ok(
                json!({"id": format!("part_{}", tollgate_core::ids::random_base62(16)), "object": "upload.part", "created_at": now(), "upload_id": id}),
            ),
            ("POST", [id, "complete"]) if kind == ObjectKind::Upload => {
                let mut upload = self.find(kind, id)?;
                let name = upload["filename"].as_str().unwrap_or("upload").to_owned();
                let purpose = upload["purpose"].as_str().unwrap_or("batch").to_owned();
                let file = self.file(&name, &purpose, Bytes::new());
                upload["status"] = json!("completed");
                upload["file"] = file;
                ok(self.put(kind, upload))
            }
            ("POST", [id, "files"]) if kind == ObjectKind::VectorStore => {
                let file_id = json_body["file_id"].as_str().unwrap_or("");
                if !self.has(ObjectKind::File, file_id) {
                    return Some(not_found(ObjectKind::File, file_id, "file_id"));
                }
                let entry = json!({"id": file_id, "object": "vector_store.file", "created_at": now(), "vector_store_id": id, "status": "completed",
                    "usage_bytes": 0, "last_error": null});
                self.store_files
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry((*id).to_owned())
                    .or_default()
                    .push(entry.clone());
                ok(entry)
            }
            ("GET", [id, "files"]) if kind == ObjectKind::VectorStore => {
                let files = self
                    .store_files
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(*id)
                    .cloned()
                    .unwrap_or_default();
                ok(page(&files, query))
            }
            ("GET", [id, "input_items"]) if kind == ObjectKind::Response => ok(
                json!({"object": "list", "data": [], "first_id": null, "last_id": null, "has_more": false, "response_id": id}),
            ),
            ("POST", [id]) => {
                // Update (metadata, name, ...).
                let mut object = self.find(kind, id)?;
                if let (Value::Object(fields), Value::Object(changes)) = (&mut object, &json_body) {
                    for (name, value) in changes {
                        fields.insert(name.clone(), value.clone());
                    }
                }
                ok(self.put(kind, object))
            }
            (_, [_, ..]) => ok(json!({"object": "list", "data": [], "has_more": false})),
            _ => return None,
        })
    }

    /// A batch completes, and a fine-tuning job succeeds, the first time it is read after
    /// being made, producing its output file.
    fn advance(&self, kind: ObjectKind, mut object: Value) -> Value {
        match kind {
            ObjectKind::Batch if object["status"] == "validating" => {
                let input = object["input_file_id"].as_str().unwrap_or("").to_owned();
                let lines = self
                    .contents
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&input)
                    .cloned()
                    .unwrap_or_default();
                let mut output = String::new();
                let mut count = 0;
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    let request: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
                    count += 1;
                    output.push_str(&json!({"id": format!("batch_req_{count}"), "custom_id": request["custom_id"], "response": {"status_code": 200, "request_id": format!("req_{count}"),
                        "body": {"id": format!("chatcmpl-b{count}"), "object": "chat.completion", "model": request["body"]["model"], "choices": [{"index": 0, "message": {"role": "assistant", "content": "[simulated] batch answer"}, "finish_reason": "stop"}]}}, "error": null}).to_string());
                    output.push('\n');
                }
                let file = self.file("batch_output.jsonl", "batch_output", Bytes::from(output));
                object["status"] = json!("completed");
                object["output_file_id"] = file["id"].clone();
                object["completed_at"] = json!(now());
                object["request_counts"] = json!({"total": count, "completed": count, "failed": 0});
                self.put(kind, object)
            }
            ObjectKind::FineTuningJob if object["status"] == "validating_files" => {
                let file = self.file(
                    "step_metrics.csv",
                    "fine-tune-results",
                    Bytes::from_static(b"step,train_loss\n1,0.5\n"),
                );
                object["status"] = json!("succeeded");
                object["result_files"] = json!([file["id"]]);
                object["fine_tuned_model"] = json!(format!(
                    "ft:{}:tollgate-demo::{}",
                    object["model"].as_str().unwrap_or("model"),
                    tollgate_core::ids::random_base62(8)
                ));
                self.put(kind, object)
            }
            _ => object,
        }
    }

    fn create(
        &self,
        kind: ObjectKind,
        content_type: &str,
        body: &Bytes,
        json_body: &Value,
    ) -> Response {
        match kind {
            ObjectKind::File => {
                let Some((name, data)) = multipart_part(content_type, body, "file") else {
                    return bad_request("'file' is a required property");
                };
                let purpose = multipart_part(content_type, body, "purpose")
                    .map(|(_, p)| String::from_utf8_lossy(&p).into_owned())
                    .unwrap_or_else(|| "batch".into());
                ok(self.file(name.as_deref().unwrap_or("upload"), &purpose, data))
            }
            ObjectKind::Batch => {
                let input = json_body["input_file_id"].as_str().unwrap_or("");
                if !self.has(ObjectKind::File, input) {
                    return not_found(ObjectKind::File, input, "input_file_id");
                }
                ok(self.put(kind, json!({"id": new_id(kind), "object": "batch", "endpoint": json_body["endpoint"], "errors": null,
                    "input_file_id": input, "completion_window": json_body["completion_window"], "status": "validating",
                    "output_file_id": null, "error_file_id": null, "created_at": now(), "request_counts": {"total": 0, "completed": 0, "failed": 0},
                    "metadata": json_body["metadata"]})))
            }
            ObjectKind::FineTuningJob => {
                for field in ["training_file", "validation_file"] {
                    if let Some(file) = json_body[field].as_str() {
                        if !self.has(ObjectKind::File, file) {
                            return not_found(ObjectKind::File, file, field);
                        }
                    }
                }
                ok(self.put(kind, json!({"id": new_id(kind), "object": "fine_tuning.job", "model": json_body["model"], "created_at": now(),
                    "training_file": json_body["training_file"], "validation_file": json_body["validation_file"], "status": "validating_files",
                    "result_files": [], "fine_tuned_model": null, "hyperparameters": {"n_epochs": "auto"}})))
            }
            ObjectKind::VectorStore => {
                for file in json_body["file_ids"].as_array().into_iter().flatten() {
                    let file = file.as_str().unwrap_or("");
                    if !self.has(ObjectKind::File, file) {
                        return not_found(ObjectKind::File, file, "file_ids");
                    }
                }
                let files = json_body["file_ids"].as_array().map_or(0, Vec::len);
                ok(self.put(kind, json!({"id": new_id(kind), "object": "vector_store", "name": json_body["name"].as_str().unwrap_or(""), "created_at": now(),
                    "last_active_at": now(), "usage_bytes": 0, "expires_after": null, "expires_at": null, "status": "completed",
                    "file_counts": {"cancelled": 0, "completed": files, "failed": 0, "in_progress": 0, "total": files}, "metadata": json_body["metadata"]})))
            }
            ObjectKind::Upload => ok(self.put(kind, json!({"id": new_id(kind), "object": "upload", "filename": json_body["filename"],
                "purpose": json_body["purpose"], "bytes": json_body["bytes"], "status": "pending", "created_at": now(), "file": null}))),
            // Stored responses and chat completions are made by the model endpoints.
            ObjectKind::Response | ObjectKind::ChatCompletion => bad_request("Invalid URL"),
            ObjectKind::Conversation | ObjectKind::Container | ObjectKind::Eval => {
                let mut object = match json_body {
                    Value::Object(fields) => Value::Object(fields.clone()),
                    _ => json!({}),
                };
                object["id"] = json!(new_id(kind));
                object["object"] = json!(kind.as_str());
                object["created_at"] = json!(now());
                ok(self.put(kind, object))
            }
        }
    }
}
