//! Projects are tenants: what a request does to the objects a provider keeps (files, batches,
//! vector stores, stored responses, ...). A provider credential shared by several projects
//! sees every project's objects, so the gateway keeps an ownership ledger and asks this module,
//! for each request, which objects it names (each must be the caller's project's), whether it
//! creates one (recorded under the caller's project), lists a collection (filtered to the
//! project's) or deletes one (its entry goes). No I/O here: the gateway does the lookups.
//!
//! Objects are named in three places, all read here: the path (`/v1/files/{id}/content`), the
//! query (`?after=file-…`, `?file_id=…`) and the JSON body at any depth, under the field names
//! OpenAI's API gives references (`input_file_id`, `vector_store_ids`, `previous_response_id`,
//! `conversation`, ...). A value under such a name that is not an id is a 400, not a pass.

use serde_json::Value;

/// A kind of object a provider keeps for the account that created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    File,
    Upload,
    Batch,
    VectorStore,
    #[serde(rename = "fine_tuning.job")]
    FineTuningJob,
    Response,
    #[serde(rename = "chat.completion")]
    ChatCompletion,
    Conversation,
    Container,
    Eval,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 10] = [
        ObjectKind::File,
        ObjectKind::Upload,
        ObjectKind::Batch,
        ObjectKind::VectorStore,
        ObjectKind::FineTuningJob,
        ObjectKind::Response,
        ObjectKind::ChatCompletion,
        ObjectKind::Conversation,
        ObjectKind::Container,
        ObjectKind::Eval,
    ];

    /// The name stored and shown (OpenAI's `object` field where it has one).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::File => "file",
            ObjectKind::Upload => "upload",
            ObjectKind::Batch => "batch",
            ObjectKind::VectorStore => "vector_store",
            ObjectKind::FineTuningJob => "fine_tuning.job",
            ObjectKind::Response => "response",
            ObjectKind::ChatCompletion => "chat.completion",
            ObjectKind::Conversation => "conversation",
            ObjectKind::Container => "container",
            ObjectKind::Eval => "eval",
        }
    }

    pub fn parse(name: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// How OpenAI names the kind in its 404 ("No such File object: file-…").
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::File => "File",
            ObjectKind::Upload => "Upload",
            ObjectKind::Batch => "Batch",
            ObjectKind::VectorStore => "VectorStore",
            ObjectKind::FineTuningJob => "FineTuningJob",
            ObjectKind::Response => "Response",
            ObjectKind::ChatCompletion => "ChatCompletion",
            ObjectKind::Conversation => "Conversation",
            ObjectKind::Container => "Container",
            ObjectKind::Eval => "Eval",
        }
    }

    /// The collection's canonical path.
    pub fn collection(self) -> &'static str {
        match self {
            ObjectKind::File => "/v1/files",
            ObjectKind::Upload => "/v1/uploads",
            ObjectKind::Batch => "/v1/batches",
            ObjectKind::VectorStore => "/v1/vector_stores",
            ObjectKind::FineTuningJob => "/v1/fine_tuning/jobs",
            ObjectKind::Response => "/v1/responses",
            ObjectKind::ChatCompletion => "/v1/chat/completions",
            ObjectKind::Conversation => "/v1/conversations",
            ObjectKind::Container => "/v1/containers",
            ObjectKind::Eval => "/v1/evals",
        }
    }

    /// The kind OpenAI's ids of this shape name (`file-…`, `batch_…`), for ids given without a
    /// path (the CLI's `objects adopt`).
    pub fn of_id(id: &str) -> Option<ObjectKind> {
        const PREFIXES: [(&str, ObjectKind); 10] = [
            ("file-", ObjectKind::File),
            ("upload_", ObjectKind::Upload),
            ("batch_", ObjectKind::Batch),
            ("vs_", ObjectKind::VectorStore),
            ("ftjob-", ObjectKind::FineTuningJob),
            ("resp_", ObjectKind::Response),
            ("chatcmpl-", ObjectKind::ChatCompletion),
            ("conv_", ObjectKind::Conversation),
            ("cntr_", ObjectKind::Container),
            ("eval_", ObjectKind::Eval),
        ];
        PREFIXES
            .into_iter()
            .find(|(prefix, _)| id.starts_with(prefix))
            .map(|(_, kind)| kind)
    }

    /// Path segments under the collection that are operations, not ids.
    fn operations(self) -> &'static [&'static str] {
        match self {
            ObjectKind::Response => &["input_tokens", "compact"],
            _ => &[],
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest object id accepted.
pub const MAX_ID_LEN: usize = 256;

/// Whether `id` has the shape of a provider's object id: 1 to [`MAX_ID_LEN`] letters, digits
/// and `-_.:`. Anything else named where an id belongs is a 400.
pub fn is_object_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// An object a request names, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub kind: ObjectKind,
    pub id: String,
    /// Where it was named: `path`, a query parameter, or a body field's path (`tools[0].vector_store_ids`).
    pub param: String,
}

/// A request that names something where an id belongs that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Malformed {
    pub param: String,
    pub message: String,
}

impl Malformed {
    fn new(param: &str, message: String) -> Malformed {
        Malformed {
            param: param.to_owned(),
            message,
        }
    }
}

/// What a request does to provider-kept objects, from its method, canonical path and query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Objects it names: each must belong to the caller's project.
    pub named: Vec<Named>,
    /// It creates an object of this kind; the answer's `id` is recorded.
    pub creates: Option<ObjectKind>,
    /// It lists this collection: the answer is filtered to the caller's objects.
    pub lists: Option<ObjectKind>,
    /// It deletes this object: its entry goes when the provider confirms.
    pub deletes: Option<Named>,
    /// Its answer may name files the provider made for the named object (a batch's output,
    /// a fine-tuning job's results, a completed upload's file): they are recorded as the
    /// caller's.
    pub yields_files: bool,
}

impl Plan {
    /// Whether the request touches nothing a provider keeps per account.
    pub fn is_stateless(&self) -> bool {
        self.named.is_empty()
            && self.creates.is_none()
            && self.lists.is_none()
            && self.deletes.is_none()
            && !self.yields_files
    }
}

/// Reads a request's method (`GET`, `POST`, `DELETE`), canonical path and query.
pub fn plan(method: &str, path: &str, query: Option<&str>) -> Result<Plan, Malformed> {
    let mut plan = Plan::default();
    let collection = ObjectKind::ALL.into_iter().find_map(|kind| {
        let rest = path.strip_prefix(kind.collection())?;
        (rest.is_empty() || rest.starts_with('/')).then_some((kind, rest))
    });
    let mut top_level_list = None;
    if let Some((kind, rest)) = collection {
        let mut segments = rest.split('/').skip(1);
        match segments.next() {
            None | Some("") => match method {
                "GET" => {
                    plan.lists = Some(kind);
                    top_level_list = Some(kind);
                }
                // The metered endpoints (`/v1/responses`, `/v1/chat/completions`) create
                // too, decided by their bodies' `store`.
                "POST" => plan.creates = Some(kind),
                _ => {}
            },
            Some(op) if kind.operations().contains(&op) => {}
            Some(id) => {
                if !is_object_id(id) {
                    return Err(Malformed::new(
                        "id",
                        format!("Invalid {} id: it must be letters, digits, '-', '_', '.' or ':' (at most {MAX_ID_LEN}).", kind.noun()),
                    ));
                }
                let named = Named {
                    kind,
                    id: id.to_owned(),
                    param: "id".to_owned(),
                };
                let sub: Vec<&str> = segments.collect();
                if sub.is_empty() && method == "DELETE" {
                    plan.deletes = Some(named.clone());
                }
                plan.yields_files = match kind {
                    ObjectKind::Batch | ObjectKind::FineTuningJob => {
                        sub.is_empty() || sub == ["cancel"]
                    }
                    ObjectKind::Upload => sub == ["complete"],
                    _ => false,
                };
                plan.named.push(named);
            }
        }
    }
    for (name, value) in query_pairs(query.unwrap_or("")) {
        let kind = match (name.as_str(), top_level_list) {
            // A list's cursors are ids of the listed kind.
            ("after" | "before", Some(kind)) => Some(kind),
            (other, _) => reference_kind(other),
        };
        let Some(kind) = kind else { continue };
        if !is_object_id(&value) {
            return Err(Malformed::new(
                &name,
                format!("Invalid '{name}': expected a {} id.", kind.noun()),
            ));
        }
        plan.named.push(Named {
            kind,
            id: value,
            param: name,
        });
    }
    Ok(plan)
}

/// The kind a field or parameter of this name refers to, in OpenAI's API.
fn reference_kind(name: &str) -> Option<ObjectKind> {
    Some(match name {
        "file_id" | "file_ids" | "input_file_id" | "training_file" | "validation_file"
        | "output_file_id" | "error_file_id" => ObjectKind::File,
        "vector_store_id" | "vector_store_ids" => ObjectKind::VectorStore,
        "previous_response_id" | "response_id" => ObjectKind::Response,
        "conversation" | "conversation_id" => ObjectKind::Conversation,
        "container" | "container_id" => ObjectKind::Container,
        "batch_id" => ObjectKind::Batch,
        "upload_id" => ObjectKind::Upload,
        "eval_id" => ObjectKind::Eval,
        "fine_tuning_job_id" => ObjectKind::FineTuningJob,
        "completion_id" => ObjectKind::ChatCompletion,
        _ => return None,
    })
}

/// The field names [`body_references`] reads, quoted as they appear in JSON: a body holding
/// none of them names nothing and need not be parsed for it.
pub const REFERENCE_FIELDS: &[&str] = &[
    "\"file_id\"",
    "\"file_ids\"",
    "\"input_file_id\"",
    "\"training_file\"",
    "\"validation_file\"",
    "\"output_file_id\"",
    "\"error_file_id\"",
    "\"vector_store_id\"",
    "\"vector_store_ids\"",
    "\"previous_response_id\"",
    "\"response_id\"",
    "\"conversation\"",
    "\"conversation_id\"",
    "\"container\"",
    "\"container_id\"",
    "\"batch_id\"",
    "\"upload_id\"",
    "\"eval_id\"",
    "\"fine_tuning_job_id\"",
    "\"completion_id\"",
];

/// Whether a JSON body may name an object: it holds one of [`REFERENCE_FIELDS`]. A fast
/// test that lets most inference bodies skip the walk: one pass of an automaton built once
/// (a search per field read a body 20 times: a 29 MiB prompt held its serving thread 18.7 ms,
/// `bench/abuse.py`).
pub fn may_name_objects(body: &[u8]) -> bool {
    static FIELDS: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
        std::sync::LazyLock::new(|| aho_corasick::AhoCorasick::new(REFERENCE_FIELDS).ok());
    match &*FIELDS {
        Some(fields) => fields.is_match(body),
        // The automaton cannot fail to build from these literals; were it to, every body is
        // walked (never fewer checks).
        None => true,
    }
}

/// Deepest nesting walked in a body (serde_json refuses past 128 anyway).
const MAX_DEPTH: usize = 128;

/// The objects a JSON body names, at any depth.
pub fn body_references(body: &Value) -> Result<Vec<Named>, Malformed> {
    let mut found = Vec::new();
    walk(body, &mut String::new(), &mut found, 0)?;
    Ok(found)
}

fn walk(
    value: &Value,
    at: &mut String,
    found: &mut Vec<Named>,
    depth: usize,
) -> Result<(), Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed::new(
            at,
            "The request body is nested too deeply.".to_owned(),
        ));
    }
    match value {
        Value::Object(fields) => {
            for (name, inner) in fields {
                let len = at.len();
                if !at.is_empty() {
                    at.push('.');
                }
                at.push_str(name);
                if let Some(kind) = reference_kind(name) {
                    reference(kind, inner, at, found)?;
                }
                walk(inner, at, found, depth + 1)?;
                at.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                let len = at.len();
                at.push('[');
                at.push_str(&i.to_string());
                at.push(']');
                walk(inner, at, found, depth + 1)?;
                at.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// A value under a reference field: an id, a list of ids, `null` (absent), or (for
/// `conversation` and `container`) an object, whose `id` names one when it has it.
fn reference(
    kind: ObjectKind,
    value: &Value,
    at: &str,
    found: &mut Vec<Named>,
) -> Result<(), Malformed> {
    let mut one = |id: &Value, param: String| match id.as_str() {
        Some(id) if is_object_id(id) => {
            found.push(Named {
                kind,
                id: id.to_owned(),
                param,
            });
            Ok(())
        }
        _ => Err(Malformed::new(
            &param,
            format!("Invalid '{param}': expected a {} id.", kind.noun()),
        )),
    };
    match value {
        Value::Null => Ok(()),
        Value::String(_) => one(value, at.to_owned()),
        Value::Array(ids) => {
            for (i, id) in ids.iter().enumerate() {
                one(id, format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        // `conversation: {"id": …}`; `container: {"type": "auto", "file_ids": […]}` (the walk
        // reads its file ids).
        Value::Object(fields)
            if matches!(kind, ObjectKind::Conversation | ObjectKind::Container) =>
        {
            match fields.get("id") {
                Some(id) => one(id, format!("{at}.id")),
                None => Ok(()),
            }
        }
        _ => Err(Malformed::new(
            at,
            format!("Invalid '{at}': expected a {} id.", kind.noun()),
        )),
    }
}

/// The files a provider made for an object, named in its answer: a batch's `output_file_id`
/// and `error_file_id`, a fine-tuning job's `result_files`, a completed upload's `file.id`.
pub fn yielded_files(answer: &Value) -> Vec<String> {
    let mut files = Vec::new();
    let mut add = |v: &Value| {
        if let Some(id) = v.as_str().filter(|id| is_object_id(id)) {
            files.push(id.to_owned());
        }
    };
    add(&answer["output_file_id"]);
    add(&answer["error_file_id"]);
    add(&answer["file"]["id"]);
    if let Some(results) = answer["result_files"].as_array() {
        results.iter().for_each(&mut add);
    }
    files
}

/// The query's `name=value` pairs, percent-decoded (`+` as a space, as forms write it).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A query with its `limit` and `after` replaced (for paging through a provider's list);
/// every other parameter is kept as the client wrote it.
pub fn with_page(query: Option<&str>, limit: u32, after: Option<&str>) -> String {
    let mut out: Vec<String> = query
        .unwrap_or("")
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            !pair.is_empty() && decode(name) != "limit" && decode(name) != "after"
        })
        .map(str::to_owned)
        .collect();
    out.push(format!("limit={limit}"));
    if let Some(after) = after {
        // Ids are letters, digits and `-_.:`, all safe in a query.
        out.push(format!("after={after}"));
    }
    out.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(plan: &Plan) -> Vec<(ObjectKind, &str, &str)> {
        plan.named
            .iter()
            .map(|n| (n.kind, n.id.as_str(), n.param.as_str()))
            .collect()
    }

    #[test]
    fn every_kind_lists_creates_names_and_deletes_at_its_collection() {
        for kind in ObjectKind::ALL {
            let path = kind.collection();
            assert_eq!(plan("GET", path, None).unwrap().lists, Some(kind));
            assert_eq!(plan("POST", path, None).unwrap().creates, Some(kind));
            let one = plan("GET", &format!("{path}/x-1"), None).unwrap();
            assert_eq!(ids(&one), vec![(kind, "x-1", "id")]);
            assert!(one.deletes.is_none() && one.lists.is_none());
            let gone = plan("DELETE", &format!("{path}/x-1"), None).unwrap();
            assert_eq!(
                gone.deletes.map(|n| (n.kind, n.id)),
                Some((kind, "x-1".into()))
            );
            let nested = plan("DELETE", &format!("{path}/x-1/files/file-2"), None).unwrap();
            assert!(
                nested.deletes.is_none(),
                "deleting under an object deletes not it"
            );
            assert_eq!(ids(&nested), vec![(kind, "x-1", "id")]);
            assert_eq!(ObjectKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn stateless_groups_and_operations_name_nothing() {
        for (method, path) in [
            ("POST", "/v1/images/generations"),
            ("POST", "/v1/audio/speech"),
            ("POST", "/v1/moderations"),
            ("POST", "/v1/responses/input_tokens"),
        ] {
            assert!(plan(method, path, None).unwrap().is_stateless(), "{path}");
        }
    }

    #[test]
    fn answers_that_name_made_files_are_marked() {
        for (method, path, yields) in [
            ("GET", "/v1/batches/batch_1", true),
            ("POST", "/v1/batches/batch_1/cancel", true),
            ("GET", "/v1/fine_tuning/jobs/ftjob-1", true),
            ("GET", "/v1/fine_tuning/jobs/ftjob-1/events", false),
            ("POST", "/v1/uploads/upload_1/complete", true),
            ("POST", "/v1/uploads/upload_1/parts", false),
            ("GET", "/v1/files/file-1", false),
        ] {
            assert_eq!(
                plan(method, path, None).unwrap().yields_files,
                yields,
                "{path}"
            );
        }
        let batch = json!({"id": "batch_1", "output_file_id": "file-out", "error_file_id": null});
        assert_eq!(yielded_files(&batch), vec!["file-out"]);
        let job = json!({"result_files": ["file-r1", "file-r2"]});
        assert_eq!(yielded_files(&job), vec!["file-r1", "file-r2"]);
        let upload = json!({"status": "completed", "file": {"id": "file-u"}});
        assert_eq!(yielded_files(&upload), vec!["file-u"]);
        assert!(yielded_files(&json!({"output_file_id": "bad id"})).is_empty());
    }

    #[test]
    fn malformed_ids_in_paths_and_queries_are_refused() {
        for path in ["/v1/files/a b", "/v1/files/a%2Fb", "/v1/batches/a\"b"] {
            assert!(plan("GET", path, None).is_err(), "{path}");
        }
        let long = format!("/v1/files/{}", "a".repeat(MAX_ID_LEN + 1));
        assert!(plan("GET", &long, None).is_err());
        let err = plan("GET", "/v1/files", Some("after=a%20b")).unwrap_err();
        assert_eq!(err.param, "after");
    }

    #[test]
    fn queries_name_cursors_of_the_listed_kind_and_references_anywhere() {
        let list = plan(
            "GET",
            "/v1/files",
            Some("limit=2&after=file-9&purpose=batch"),
        )
        .unwrap();
        assert_eq!(ids(&list), vec![(ObjectKind::File, "file-9", "after")]);
        // A nested list's cursor is an id of its parent's children, not a ledger object.
        let nested = plan("GET", "/v1/vector_stores/vs_1/files", Some("after=file-3")).unwrap();
        assert_eq!(ids(&nested), vec![(ObjectKind::VectorStore, "vs_1", "id")]);
        let odd = plan("GET", "/v1/evals", Some("file_id=file-7&x%5Fy=1")).unwrap();
        assert!(ids(&odd).contains(&(ObjectKind::File, "file-7", "file_id")));
        let encoded = plan("GET", "/v1/images", Some("file%5Fid=file-8")).unwrap();
        assert_eq!(ids(&encoded), vec![(ObjectKind::File, "file-8", "file_id")]);
    }

    #[test]
    fn bodies_name_objects_at_any_depth() {
        let body = json!({
            "input_file_id": "file-in",
            "previous_response_id": "resp_1",
            "conversation": {"id": "conv_1"},
            "tools": [{"type": "file_search", "vector_store_ids": ["vs_1", "vs_2"]},
                      {"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["file-c"]}}],
            "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-x"}]}],
            "metadata": {"note": "file-not-a-reference"},
            "custom_id": "not-an-object",
        });
        let found: Vec<(ObjectKind, String, String)> = body_references(&body)
            .unwrap()
            .into_iter()
            .map(|n| (n.kind, n.id, n.param))
            .collect();
        for expected in [
            (ObjectKind::File, "file-in", "input_file_id"),
            (ObjectKind::Response, "resp_1", "previous_response_id"),
            (ObjectKind::Conversation, "conv_1", "conversation.id"),
            (
                ObjectKind::VectorStore,
                "vs_2",
                "tools[0].vector_store_ids[1]",
            ),
            (ObjectKind::File, "file-c", "tools[1].container.file_ids[0]"),
            (ObjectKind::File, "file-x", "input[0].content[0].file_id"),
        ] {
            assert!(
                found.contains(&(expected.0, expected.1.into(), expected.2.into())),
                "{expected:?} in {found:?}"
            );
        }
        assert_eq!(found.len(), 7, "{found:?}");
        assert!(may_name_objects(body.to_string().as_bytes()));
        assert!(!may_name_objects(
            br#"{"model":"m","messages":[{"role":"user","content":"file-1"}]}"#
        ));
    }

    #[test]
    fn reference_fields_that_hold_no_id_are_refused() {
        for body in [
            json!({"file_id": 12}),
            json!({"input_file_id": ""}),
            json!({"vector_store_ids": ["vs_1", {"id": "vs_2"}]}),
            json!({"messages": [{"content": [{"file": {"file_id": "../etc"}}]}]}),
            json!({"previous_response_id": {"id": "resp_1"}}),
        ] {
            assert!(body_references(&body).is_err(), "{body}");
        }
        assert!(body_references(&json!({"previous_response_id": null}))
            .unwrap()
            .is_empty());
        let err = body_references(&json!({"a": [{"training_file": 1}]})).unwrap_err();
        assert_eq!(err.param, "a[0].training_file");
    }

    #[test]
    fn every_reference_field_is_prefiltered() {
        for field in REFERENCE_FIELDS {
            let name = field.trim_matches('"');
            assert!(reference_kind(name).is_some(), "{name}");
            let body = format!("{{{field}:\"x-1\"}}");
            assert!(may_name_objects(body.as_bytes()), "{name}");
            // After a long text, too.
            let body = format!("{{\"text\":\"{}\",{field}:\"x-1\"}}", "a".repeat(100_000));
            assert!(
                may_name_objects(body.as_bytes()),
                "{name} after a long text"
            );
        }
        assert!(!may_name_objects(
            br#"{"file":"x","files":[],"id":"file-id","my_file_id":1}"#
        ));
    }

    #[test]
    fn paging_replaces_limit_and_after_only() {
        assert_eq!(
            with_page(
                Some("purpose=batch&limit=2&after=file-1&order=asc"),
                100,
                Some("file-5")
            ),
            "purpose=batch&order=asc&limit=100&after=file-5"
        );
        assert_eq!(with_page(None, 10, None), "limit=10");
        assert_eq!(with_page(Some("%6Cimit=3"), 10, None), "limit=10");
    }

    #[test]
    fn ids_of_known_shapes_name_their_kind() {
        assert_eq!(ObjectKind::of_id("file-abc"), Some(ObjectKind::File));
        assert_eq!(
            ObjectKind::of_id("ftjob-abc"),
            Some(ObjectKind::FineTuningJob)
        );
        assert_eq!(
            ObjectKind::of_id("chatcmpl-1"),
            Some(ObjectKind::ChatCompletion)
        );
        assert_eq!(ObjectKind::of_id("nope"), None);
    }
}
