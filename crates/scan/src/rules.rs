//! The rule set: what each kind of secret looks like.
//!
//! In the style of gitleaks: each rule has an id, keywords (literal strings every match
//! contains; the scanner looks only near them), a regular expression, and optionally a check
//! that the text found is really such a secret. Tollgate keys are recognised by their checksum,
//! so a random or mistyped string that looks like one is never reported.
//!
//! | id | what | recognised by |
//! |---|---|---|
//! | `tollgate-key` | Tollgate secret keys of any deployment prefix (`sk-proj-`, `sk-svcacct-`, `sk-admin-`, `acme-proj-`, ...) | prefix, 49 base62 characters, CRC32 checksum |
//! | `tollgate-client-token` | Tollgate client tokens (`ek_`, minted for browsers and apps, live at most a day) | `ek_`, 49 base62 characters, CRC32 checksum |
//! | `openai-api-key` | OpenAI keys (`sk-proj-`, `sk-svcacct-`, `sk-admin-`, legacy `sk-`) | the `T3BlbkFJ` marker every OpenAI key carries |
//! | `anthropic-api-key` | Anthropic API and admin keys | `sk-ant-api03-` / `sk-ant-admin01-`, 93 characters, `AA` |
//! | `google-api-key` | Google Cloud / Gemini API keys | `AIza` and 35 characters |
//! | `aws-access-key-id` | AWS access key ids | `AKIA`, `ASIA`, `ABIA`, `ACCA`, `A3T.` and 16 base32 characters |
//! | `github-token` | GitHub classic tokens | `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` and 36 characters |
//! | `github-fine-grained-token` | GitHub fine-grained tokens | `github_pat_` and 82 characters |
//! | `stripe-secret-key` | Stripe secret and restricted keys | `sk_`/`rk_`, `live`/`test`/`prod`, 10 to 99 characters |
//! | `slack-token` | Slack bot, user and app tokens | `xoxb-`, `xoxp-`, `xoxe-`, `xapp-` in their shapes |
//! | `slack-webhook-url` | Slack incoming webhooks | `hooks.slack.com/services/...` |
//!
//! A match must stand on its own: the character before it is not a letter or digit, and the
//! one after it is not a letter, digit, `-` or `_` (a longer token is not this one). A line
//! holding `tollgate:allow` (or gitleaks' `gitleaks:allow`) is not reported.

use tollgate_core::KeyFormat;

/// One kind of secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: &'static str,
    pub description: &'static str,
    /// Literal strings every match contains.
    pub keywords: &'static [&'static str],
    /// The expression a secret matches (the whole match is the secret).
    pub pattern: &'static str,
    /// A further check of a match; `None` means any match is reported.
    pub check: Option<Check>,
}

/// How a match is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A Tollgate key: the checksum of some trailing part of the match (its deployment prefix
    /// may have been run into by the text before it) holds.
    TollgateChecksum,
    /// A Tollgate client token (`ek_...`): its checksum holds.
    ClientTokenChecksum,
}

/// The longest secret any rule matches, in bytes (the scanner looks this far around a keyword).
pub const LONGEST: usize = 420;

pub const RULES: &[Rule] = &[
    Rule {
        id: "tollgate-key",
        description: "Tollgate secret key",
        keywords: &["-proj-", "-svcacct-", "-admin-"],
        pattern: r"[a-z0-9]{1,32}-(?:proj|svcacct|admin)-[A-Za-z0-9]{49}",
        check: Some(Check::TollgateChecksum),
    },
    Rule {
        id: "tollgate-client-token",
        description: "Tollgate client token (short-lived, minted for browsers and apps)",
        keywords: &["ek_"],
        pattern: r"ek_[A-Za-z0-9]{49}",
        check: Some(Check::ClientTokenChecksum),
    },
    Rule {
        id: "openai-api-key",
        description: "OpenAI API key",
        keywords: &["T3BlbkFJ"],
        pattern: r"sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,200}T3BlbkFJ[A-Za-z0-9_-]{20,200}",
        check: None,
    },
    Rule {
        id: "anthropic-api-key",
        description: "Anthropic API key",
        keywords: &["sk-ant-"],
        pattern: r"sk-ant-(?:api03|admin01)-[A-Za-z0-9_-]{93}AA",
        check: None,
    },
    Rule {
        id: "google-api-key",
        description: "Google API key",
        keywords: &["AIza"],
        pattern: r"AIza[0-9A-Za-z_-]{35}",
        check: None,
    },
    Rule {
        id: "aws-access-key-id",
        description: "AWS access key id",
        keywords: &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
        pattern: r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}",
        check: None,
    },
    Rule {
        id: "github-token",
        description: "GitHub token",
        keywords: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        pattern: r"gh[pousr]_[0-9A-Za-z]{36}",
        check: None,
    },
    Rule {
        id: "github-fine-grained-token",
        description: "GitHub fine-grained personal access token",
        keywords: &["github_pat_"],
        pattern: r"github_pat_[0-9A-Za-z_]{82}",
        check: None,
    },
    Rule {
        id: "stripe-secret-key",
        description: "Stripe secret or restricted key",
        keywords: &[
            "sk_live_", "sk_test_", "sk_prod_", "rk_live_", "rk_test_", "rk_prod_",
        ],
        pattern: r"[sr]k_(?:live|test|prod)_[0-9A-Za-z]{10,99}",
        check: None,
    },
    Rule {
        id: "slack-token",
        description: "Slack token",
        keywords: &["xoxb-", "xoxp-", "xoxe-", "xapp-"],
        pattern: r"xoxb-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24,34}|xox[pe]-[0-9]{10,13}-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{28,34}|xapp-[0-9]-[A-Z0-9]{9,12}-[0-9]{10,13}-[a-f0-9]{64}",
        check: None,
    },
    Rule {
        id: "slack-webhook-url",
        description: "Slack incoming webhook URL",
        keywords: &["hooks.slack.com"],
        pattern: r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{43,56}",
        check: None,
    },
];

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// Whether `text` (a `tollgate-key` match) ends in a real Tollgate key; returns where that key
/// starts in `text`. The match may have run into the text before the key (`xsk-proj-...`), so
/// each start within the deployment prefix is tried.
pub fn tollgate_key_start(text: &str) -> Option<usize> {
    let first_dash = text.find('-')?;
    (0..first_dash).find(|&start| {
        let candidate = &text[start..];
        let prefix = &candidate[..first_dash - start];
        KeyFormat::new(prefix)
            .ok()
            .is_some_and(|format| format.parse(candidate).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::KeyKind;

    #[test]
    fn every_rule_compiles_and_holds_its_keywords() {
        for rule in RULES {
            let regex = regex::Regex::new(rule.pattern).unwrap();
            assert!(!rule.keywords.is_empty(), "{}", rule.id);
            assert!(regex.captures_len() == 1, "{}: no groups", rule.id);
        }
    }

    #[test]
    fn a_tollgate_key_is_found_by_checksum_whatever_its_prefix_or_what_runs_into_it() {
        for prefix in ["sk", "acme", "x9"] {
            let format = KeyFormat::new(prefix).unwrap();
            for kind in KeyKind::ALL {
                let key = format.generate(kind);
                let key = key.expose();
                assert_eq!(tollgate_key_start(key), Some(0), "{key}");
                let joined = format!("xyz{key}");
                assert_eq!(tollgate_key_start(&joined), Some(3), "{joined}");
            }
        }
    }

    #[test]
    fn a_key_with_any_one_character_changed_is_not_a_key() {
        let key = KeyFormat::default().generate(KeyKind::Project);
        let key = key.expose();
        for i in "sk-proj-".len()..key.len() {
            let mut bytes = key.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(bytes).unwrap();
            assert_eq!(tollgate_key_start(&typo), None, "changed at {i}");
        }
    }
}
