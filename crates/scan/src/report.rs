//! What a scan found, and how it is written: a table for people, JSON for scripts, SARIF 2.1.0
//! for code-scanning tools (GitHub code scanning accepts it as it is).
//!
//! The secret itself is never written: only its redacted form (`sk-proj-...abcd`), a
//! fingerprint (SHA-256 of the rule and the secret, for tracking one secret across scans
//! without revealing it) and, for a Tollgate key, its key id (which anyone holding the key can
//! compute, and nobody can turn back into it).

use crate::rules::{Check, Rule, RULES};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use tollgate_core::SecretKey;

/// Where a finding was committed, for history scans.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Commit {
    pub id: String,
    pub author: String,
    pub date: String,
}

/// One secret found.
#[derive(Clone)]
pub struct Finding {
    pub rule: &'static Rule,
    /// The file, relative to the scanned directory (with `/`), or as given for a file.
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub commit: Option<Commit>,
    secret: String,
}

impl std::fmt::Debug for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finding")
            .field("rule", &self.rule.id)
            .field("file", &self.file)
            .field("line", &self.line)
            .field("secret", &self.redacted())
            .finish_non_exhaustive()
    }
}

impl Finding {
    pub fn new(
        rule: &'static Rule,
        file: String,
        line: usize,
        column: usize,
        secret: &str,
    ) -> Finding {
        Finding {
            rule,
            file,
            line,
            column,
            commit: None,
            secret: secret.to_owned(),
        }
    }

    /// Whether this is a Tollgate key.
    pub fn is_tollgate_key(&self) -> bool {
        self.rule.check == Some(Check::TollgateChecksum)
    }

    /// A Tollgate key's id (`key_...`).
    pub fn key_id(&self) -> Option<String> {
        self.is_tollgate_key()
            .then(|| key_id_of(&self.secret))
            .flatten()
    }

    /// The secret as it may be shown: its type prefix and last four characters.
    pub fn redacted(&self) -> String {
        redact(self.rule, &self.secret)
    }

    /// SHA-256 of the rule and the secret, hex: the same secret gets the same fingerprint
    /// wherever it is found.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.rule.id.as_bytes());
        hasher.update(b"\0");
        hasher.update(self.secret.as_bytes());
        hasher
            .finalize()
            .iter()
            .take(16)
            .fold(String::new(), |mut out, b| {
                let _ = write!(out, "{b:02x}");
                out
            })
    }

    fn to_json(&self) -> Value {
        let mut value = json!({
            "rule_id": self.rule.id,
            "description": self.rule.description,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "secret": self.redacted(),
            "fingerprint": self.fingerprint(),
        });
        if let Some(id) = self.key_id() {
            value["key_id"] = json!(id);
        }
        if let Some(commit) = &self.commit {
            value["commit"] = json!(commit.id);
            value["author"] = json!(commit.author);
            value["date"] = json!(commit.date);
        }
        value
    }
}

/// `sk-proj-...abcd`: the secret's type prefix (what comes before its random part) and its last
/// four characters; never more than a third of the secret.
fn redact(rule: &Rule, secret: &str) -> String {
    if secret.len() < 12 || !secret.is_ascii() {
        return "*****".to_owned();
    }
    let after_dashes = |n: usize| {
        secret
            .match_indices('-')
            .nth(n - 1)
            .map_or(0, |(i, _)| i + 1)
    };
    let head = match rule.id {
        "tollgate-key" => after_dashes(2),
        "anthropic-api-key" => after_dashes(3),
        "openai-api-key" => {
            let tagged = ["proj-", "svcacct-", "admin-", "None-"]
                .iter()
                .any(|tag| secret[3..].starts_with(tag));
            after_dashes(if tagged { 2 } else { 1 })
        }
        _ => rule
            .keywords
            .iter()
            .filter(|k| secret.starts_with(*k))
            .map(|k| k.len())
            .max()
            .unwrap_or(0),
    }
    .min(secret.len() / 3);
    format!("{}...{}", &secret[..head], &secret[secret.len() - 4..])
}

/// The findings as a table, one per line, with a header; empty when none.
pub fn table(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return String::new();
    }
    let history = findings.iter().any(|f| f.commit.is_some());
    let rows: Vec<[String; 4]> = findings
        .iter()
        .map(|f| {
            let place = format!("{}:{}:{}", f.file, f.line, f.column);
            let commit = f
                .commit
                .as_ref()
                .map(|c| c.id.chars().take(12).collect())
                .unwrap_or_default();
            let mut secret = f.redacted();
            if let Some(id) = f.key_id() {
                secret = format!("{secret} ({id})");
            }
            [commit, place, f.rule.id.to_owned(), secret]
        })
        .collect();
    let width = |i: usize, title: &str| {
        rows.iter()
            .map(|r| r[i].len())
            .max()
            .unwrap_or(0)
            .max(title.len())
    };
    let (w0, w1, w2) = (
        width(0, "COMMIT"),
        width(1, "FILE:LINE:COLUMN"),
        width(2, "RULE"),
    );
    let mut out = String::new();
    let mut line = |cells: [&str; 4]| {
        if history {
            let _ = write!(out, "{:<w0$}  ", cells[0]);
        }
        let _ = writeln!(out, "{:<w1$}  {:<w2$}  {}", cells[1], cells[2], cells[3]);
    };
    line(["COMMIT", "FILE:LINE:COLUMN", "RULE", "SECRET"]);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3]]);
    }
    out
}

/// The findings as a JSON array.
pub fn json(findings: &[Finding]) -> String {
    let values: Vec<Value> = findings.iter().map(Finding::to_json).collect();
    serde_json::to_string_pretty(&values).unwrap_or_else(|_| "[]".into())
}

/// The findings as a SARIF 2.1.0 log with one run, every rule described.
pub fn sarif(findings: &[Finding], version: &str) -> String {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|rule| {
            json!({
                "id": rule.id,
                "name": rule.id,
                "shortDescription": {"text": rule.description},
                "fullDescription": {"text": format!("{} committed to source. Revoke it, then remove it from the code and from the history.", rule.description)},
                "help": {
                    "text": "Revoke the secret at its issuer (a Tollgate key: `tollgate keys revoke KEY_ID` or `tollgate scan --revoke`), give its users a new one, and keep secrets in environment variables or a secret store.",
                },
                "defaultConfiguration": {"level": "error"},
                "properties": {"tags": ["security", "secret"], "security-severity": "9.0"},
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let index = RULES.iter().position(|r| r.id == f.rule.id).unwrap_or(0);
            let mut message = format!("{} found: {}", f.rule.description, f.redacted());
            if let Some(commit) = &f.commit {
                let _ = write!(message, " (commit {})", commit.id);
            }
            let mut result = json!({
                "ruleId": f.rule.id,
                "ruleIndex": index,
                "level": "error",
                "message": {"text": message},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri(&f.file), "uriBaseId": "%SRCROOT%"},
                        "region": {
                            "startLine": f.line,
                            "startColumn": f.column,
                            "endColumn": f.column + f.secret.len(),
                        },
                    },
                }],
                "partialFingerprints": {"secretFingerprint/v1": f.fingerprint()},
            });
            if let Some(commit) = &f.commit {
                result["properties"] =
                    json!({"commit": commit.id, "author": commit.author, "date": commit.date});
            }
            result
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "tollgate scan",
                "informationUri": "https://github.com/tollgate/tollgate",
                "version": version,
                "rules": rules,
            }},
            "results": results,
            "columnKind": "unicodeCodePoints",
        }],
    });
    serde_json::to_string_pretty(&log).unwrap_or_default()
}

/// A relative path as a URI reference: each segment percent-encoded where it must be.
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A Tollgate key's id from its text, for tests and `--revoke`.
pub fn key_id_of(secret: &str) -> Option<String> {
    let prefix = secret.split('-').next()?;
    let format = tollgate_core::KeyFormat::new(prefix).ok()?;
    let parsed = format.parse(secret).ok()?;
    let key: SecretKey = parsed.secret;
    Some(key.id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::rule;

    #[test]
    fn redaction_shows_the_type_and_the_last_four_only() {
        let aws = rule("aws-access-key-id").unwrap();
        assert_eq!(redact(aws, "AKIAIOSFODNN7EXAMPLE"), "AKIA...MPLE");
        let openai = rule("openai-api-key").unwrap();
        assert_eq!(
            redact(
                openai,
                "sk-abcdefghij0123456789T3BlbkFJabcdefghij0123456789"
            ),
            "sk-...6789"
        );
        let project = "sk-proj-D_KM-abcdefghijabcdefghijabcdefghijabcdefghijT3BlbkFJabcdefghijabcdefghij-_OJl";
        assert_eq!(redact(openai, project), "sk-proj-..._OJl");
        let tollgate = rule("tollgate-key").unwrap();
        assert_eq!(
            redact(
                tollgate,
                "acme-svcacct-0123456789012345678901234567890123456789012345678"
            ),
            "acme-svcacct-...5678"
        );
        let slack = rule("slack-webhook-url").unwrap();
        let url = "hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX";
        assert_eq!(redact(slack, url), "hooks.slack.com...XXXX");
    }
}
