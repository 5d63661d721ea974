//! Projects are tenants at the provider. A project with a credential of its own is kept apart by
//! the provider; through a shared credential, this step keeps it apart with the ownership
//! ledger: every object a request names (path, query, JSON body) must be the caller's
//! project's, or the request gets OpenAI's 404 for it and nothing is forwarded; lists come back
//! holding only the project's objects, paging through the provider's list so that `limit` and
//! `has_more` stay truthful; a deletion drops the ledger's entry.

use crate::error::GatewayError;
use crate::ledger::Ledger;
use crate::request::auth::Principal;
use crate::request::meter::Makes;
use crate::upstream::{RequestBody, Upstream};
use axum::body::Body;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use tollgate_core::objects::{self, Named, ObjectKind, Plan};
use tollgate_core::{KeyId, OrgId, ProjectId};

/// Largest answer read whole to filter a list or read what a call made.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Most provider pages read to fill one filtered list page; past it the page is answered with
/// what was found and `has_more: true`.
const MAX_PAGES: usize = 50;

/// Provider page size while filtering (the most every OpenAI list takes).
const PAGE_SIZE: u32 = 100;

/// OpenAI's default list `limit`.
const DEFAULT_LIMIT: usize = 20;

/// The tenant a request acts for, when its provider credential is shared.
pub(crate) struct Tenant<'a> {
    pub ledger: &'a Ledger,
    pub provider: &'a str,
    pub org: &'a OrgId,
    pub project: &'a ProjectId,
    pub key: &'a KeyId,
}

impl<'a> Tenant<'a> {
    /// The tenant of `principal`'s requests to `upstream`; `None` when the project has a
    /// credential of its own there. A key of no project has no objects.
    pub(crate) fn of(
        principal: &'a Principal,
        upstream: &'a Upstream,
        ledger: &'a Ledger,
    ) -> Result<Option<Tenant<'a>>, GatewayError> {
        let project = principal.key.project_id();
        if !upstream.shares_credential(project) {
            return Ok(None);
        }
        Ok(Some(Tenant {
            ledger,
            provider: &upstream.settings.name,
            org: &principal.key.org_id,
            project: project.ok_or(GatewayError::NoProject)?,
            key: &principal.key.id,
        }))
    }

    /// Every named object must be the tenant's: the first that is not gets its 404.
    pub(crate) async fn check(&self, named: &[Named]) -> Result<(), GatewayError> {
        for name in named {
            let owns = self
                .ledger
                .owns(self.provider, name.kind, &name.id, (self.org, self.project))
                .await
                .map_err(|err| {
                    tracing::error!(error = %err, "the ownership ledger could not be read");
                    GatewayError::Internal
                })?;
            if !owns {
                return Err(GatewayError::NoSuchObject {
                    kind: name.kind,
                    id: name.id.clone(),
                    param: name.param.clone(),
                });
            }
        }
        Ok(())
    }

    /// Checks the objects a JSON body names (a body that names none is not parsed for it).
    pub(crate) async fn check_body(&self, raw: &Bytes) -> Result<(), GatewayError> {
        // Reading a large body takes milliseconds the serving thread's other connections
        // would wait: the blocking pool does it.
        let named = crate::tokens::by_size(raw, |raw| named_in(raw))
            .await
            .ok_or_else(|| GatewayError::InvalidJson("the body could not be parsed".into()))??;
        match named {
            Some(named) => self.check(&named).await,
            None => Ok(()),
        }
    }

    /// What the request's answer makes, for the meter to record.
    pub(crate) fn makes(&self, plan: &Plan) -> Option<Makes> {
        (plan.creates.is_some() || plan.yields_files).then(|| Makes {
            provider: self.provider.to_owned(),
            creates: plan.creates,
            yields_files: plan.yields_files,
        })
    }

    /// After the provider answered: a deletion drops the entry, a list is filtered.
    pub(crate) async fn answered(
        &self,
        plan: &Plan,
        list: ListRequest<'_>,
        reply: Response,
    ) -> Result<Response, GatewayError> {
        if !reply.status().is_success() {
            return Ok(reply);
        }
        if let Some(deleted) = &plan.deletes {
            if let Err(err) = self.ledger.forget(self.provider, &deleted.id).await {
                tracing::warn!(error = %err, "a deleted object's ledger entry could not be removed");
            }
        }
        if let Some(kind) = plan.lists {
            return self.filter_list(kind, list, reply).await;
        }
        if plan.creates.is_some() || plan.yields_files {
            return self.record_answer(plan, reply).await;
        }
        Ok(reply)
    }

    /// A call that made objects (an upload, a batch, a batch's output file): they are
    /// recorded in the store before the answer goes out, so that the project's next request,
    /// on any replica, and the admin API find them. (Its usage event carries them too, as a
    /// stored response's does; recording twice keeps one entry.)
    async fn record_answer(&self, plan: &Plan, reply: Response) -> Result<Response, GatewayError> {
        let (parts, body) = reply.into_parts();
        let stream = body
            .into_data_stream()
            .map(|piece| piece.map_err(std::io::Error::other))
            .boxed();
        let bytes = read_whole(stream, self.provider).await?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut made = Vec::new();
        if let Some(kind) = plan.creates {
            match value["id"].as_str().filter(|id| objects::is_object_id(id)) {
                Some(id) => made.push((kind, id.to_owned())),
                None => self.unrecorded(kind).await,
            }
        }
        if plan.yields_files {
            made.extend(
                objects::yielded_files(&value)
                    .into_iter()
                    .map(|id| (ObjectKind::File, id)),
            );
        }
        self.record(made, Some(self.key)).await;
        Ok(Response::from_parts(parts, Body::from(bytes)))
    }

    /// A create call the provider answered without an object id: the object (if there is
    /// one) cannot be recorded, so no key reaches it through Tollgate. Audited, for the
    /// operator to look at (the meter logs it too).
    async fn unrecorded(&self, kind: ObjectKind) {
        let entry = tollgate_store::AuditEntry {
            id: tollgate_core::AuditId::generate(),
            org_id: self.org.clone(),
            event_type: "provider_object.unrecorded".into(),
            actor: tollgate_store::Actor {
                kind: "api_key".into(),
                id: self.key.to_string(),
            },
            project_id: Some(self.project.clone()),
            resource_id: None,
            data: serde_json::json!({"provider": self.provider, "kind": kind.as_str(), "reason": "the provider answered a create call without an object id"}),
            created_at: now(),
        };
        if let Err(err) = self.ledger.audit(&entry).await {
            tracing::warn!(error = %err, "the unrecorded object could not be audited");
        }
    }

    /// Records objects as the tenant's, now.
    async fn record(&self, made: Vec<(ObjectKind, String)>, key: Option<&KeyId>) {
        if made.is_empty() {
            return;
        }
        let now = now();
        let records = made
            .into_iter()
            .map(|(kind, id)| tollgate_store::ProviderObject {
                provider: self.provider.to_owned(),
                object_id: id,
                kind,
                org_id: self.org.clone(),
                project_id: self.project.clone(),
                key_id: key.cloned(),
                created_at: now,
            })
            .collect();
        if let Err(err) = self.ledger.record_now(records).await {
            // The usage event still carries them to the store.
            tracing::warn!(error = %err, "objects a provider made could not be recorded at once");
        }
    }

    /// The first page of the provider's list is `reply`; further pages are asked for until the
    /// client's `limit` is filled (and one more found, for `has_more`), the provider has no
    /// more, or [`MAX_PAGES`] were read.
    async fn filter_list(
        &self,
        kind: ObjectKind,
        list: ListRequest<'_>,
        reply: Response,
    ) -> Result<Response, GatewayError> {
        let (mut parts, body) = reply.into_parts();
        let stream = body
            .into_data_stream()
            .map(|piece| piece.map_err(std::io::Error::other))
            .boxed();
        let mut page = read_json(stream, self.provider).await?;
        let limit = list.limit();
        let mut kept: Vec<Value> = Vec::new();
        let mut pages = 1;
        let more = loop {
            let data = page["data"].as_array().cloned().unwrap_or_default();
            let ids: Vec<&str> = data.iter().filter_map(|o| o["id"].as_str()).collect();
            let owned: std::collections::HashSet<String> = self
                .ledger
                .keep_owned(self.provider, kind, &ids, (self.org, self.project))
                .await
                .map_err(|err| {
                    tracing::error!(error = %err, "the ownership ledger could not be read");
                    GatewayError::Internal
                })?
                .into_iter()
                .map(str::to_owned)
                .collect();
            let last = data
                .last()
                .and_then(|o| o["id"].as_str())
                .map(str::to_owned);
            for object in data {
                if object["id"].as_str().is_some_and(|id| owned.contains(id)) {
                    self.record_yields(&object).await;
                    kept.push(object);
                }
            }
            let provider_has_more = page["has_more"].as_bool().unwrap_or(false);
            if kept.len() > limit || !provider_has_more {
                break false;
            }
            let Some(last) = last else { break false };
            if pages >= MAX_PAGES {
                break true;
            }
            pages += 1;
            page = list.next_page(&last).await?;
        };
        let has_more = more || kept.len() > limit;
        kept.truncate(limit);
        let mut answer = page_shell(page);
        answer["first_id"] = kept.first().map_or(Value::Null, |o| o["id"].clone());
        answer["last_id"] = kept.last().map_or(Value::Null, |o| o["id"].clone());
        answer["has_more"] = Value::Bool(has_more);
        answer["data"] = Value::Array(kept);
        let bytes = serde_json::to_vec(&answer).map_err(|_| GatewayError::Internal)?;
        parts.headers.remove(axum::http::header::CONTENT_LENGTH);
        parts.headers.remove(axum::http::header::CONTENT_ENCODING);
        Ok(Response::from_parts(parts, Body::from(bytes)))
    }

    /// Files a listed batch or fine-tuning job of the tenant's made are the tenant's too.
    async fn record_yields(&self, object: &Value) {
        let files = objects::yielded_files(object)
            .into_iter()
            .map(|id| (ObjectKind::File, id))
            .collect();
        self.record(files, None).await;
    }
}

fn now() -> tollgate_core::UnixTime {
    tollgate_core::UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    )
}

/// A list page with everything the provider sent but the fields the filter sets.
fn page_shell(page: Value) -> Value {
    match page {
        Value::Object(mut fields) => {
            fields.remove("data");
            Value::Object(fields)
        }
        _ => serde_json::json!({ "object": "list" }),
    }
}

/// What a list request needs to ask the provider for its next pages.
pub(crate) struct ListRequest<'a> {
    pub upstream: &'a Upstream,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: HeaderMap,
}

impl ListRequest<'_> {
    /// The client's `limit` (OpenAI's default when it gives none or an unreadable one).
    fn limit(&self) -> usize {
        objects::query_pairs(self.query.unwrap_or(""))
            .into_iter()
            .find(|(name, _)| name == "limit")
            .and_then(|(_, value)| value.parse::<usize>().ok())
            .filter(|&limit| limit > 0)
            .unwrap_or(DEFAULT_LIMIT)
    }

    /// The first page's path and query: the client's, with the provider's page size.
    pub(crate) fn first(path: &str, query: Option<&str>) -> String {
        let after = objects::query_pairs(query.unwrap_or(""))
            .into_iter()
            .find(|(name, _)| name == "after")
            .map(|(_, value)| value);
        format!(
            "{path}?{}",
            objects::with_page(query, PAGE_SIZE, after.as_deref())
        )
    }

    async fn next_page(&self, after: &str) -> Result<Value, GatewayError> {
        let path = format!(
            "{}?{}",
            self.path,
            objects::with_page(self.query, PAGE_SIZE, Some(after))
        );
        let response = self
            .upstream
            .send(Method::GET, &path, self.headers.clone(), RequestBody::Empty)
            .await?;
        if !response.status.is_success() {
            return Err(GatewayError::Upstream(
                crate::upstream::UpstreamError::Failed {
                    provider: self.upstream.settings.name.clone(),
                    reason: format!("it answered {} to a list's next page", response.status),
                },
            ));
        }
        read_json(response.body, &self.upstream.settings.name).await
    }
}

/// Reads an answer whole, up to [`MAX_ANSWER_BYTES`].
async fn read_whole(
    mut body: futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>,
    provider: &str,
) -> Result<Bytes, GatewayError> {
    let failed = |reason: String| {
        GatewayError::Upstream(crate::upstream::UpstreamError::Failed {
            provider: provider.to_owned(),
            reason,
        })
    };
    let mut whole = bytes::BytesMut::new();
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| failed(format!("its answer broke off: {e}")))?;
        if whole.len() + piece.len() > MAX_ANSWER_BYTES {
            return Err(failed(format!(
                "its answer is larger than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        whole.extend_from_slice(&piece);
    }
    Ok(whole.freeze())
}

/// Reads a JSON answer (a list page) whole.
async fn read_json(
    body: futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>,
    provider: &str,
) -> Result<Value, GatewayError> {
    let bytes = read_whole(body, provider).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        GatewayError::Upstream(crate::upstream::UpstreamError::Failed {
            provider: provider.to_owned(),
            reason: format!("its list is not JSON: {e}"),
        })
    })
}

/// Whether a request body is JSON (by its content type).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim_start().to_ascii_lowercase();
            v.starts_with("application/json") || v.contains("+json")
        })
}

/// The objects a JSON body names; `None` when it holds none of the fields that name one.
fn named_in(raw: &[u8]) -> Result<Option<Vec<Named>>, GatewayError> {
    if !objects::may_name_objects(raw) {
        return Ok(None);
    }
    let value: Value =
        serde_json::from_slice(raw).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    objects::body_references(&value)
        .map(Some)
        .map_err(GatewayError::MalformedObjectId)
}
