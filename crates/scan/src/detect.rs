//! Finding secrets in a buffer.
//!
//! One Aho-Corasick automaton holds every rule's keywords and finds them in a single pass
//! (SIMD-accelerated for a handful of literals, as ripgrep's prefilter is); only a window around
//! each keyword is given to the rules that own it. Text without any keyword costs one pass of
//! the automaton and nothing else.

use crate::rules::{tollgate_key_start, Check, Rule, LONGEST, RULES};
use aho_corasick::{AhoCorasick, MatchKind};
use regex::bytes::Regex;

/// A secret in a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub rule: &'static Rule,
    /// Byte offsets of the secret in the buffer.
    pub start: usize,
    pub end: usize,
    /// 1-based line and column (in bytes) of the secret's start.
    pub line: usize,
    pub column: usize,
}

impl Hit {
    /// The secret's text (it is ASCII by every rule).
    pub fn text<'a>(&self, haystack: &'a [u8]) -> &'a str {
        std::str::from_utf8(&haystack[self.start..self.end]).unwrap_or("")
    }
}

/// The compiled rule set.
#[derive(Debug)]
pub struct Detector {
    keywords: AhoCorasick,
    /// For each keyword (by pattern index), the rule it belongs to.
    owner: Vec<usize>,
    regexes: Vec<Regex>,
}

/// Lines holding one of these are not reported.
const ALLOW_MARKERS: [&str; 2] = ["tollgate:allow", "gitleaks:allow"];

impl Detector {
    pub fn new() -> Detector {
        let mut keywords = Vec::new();
        let mut owner = Vec::new();
        for (i, rule) in RULES.iter().enumerate() {
            for keyword in rule.keywords {
                keywords.push(*keyword);
                owner.push(i);
            }
        }
        // The rule set is fixed and tested: building it cannot fail at run time.
        #[allow(clippy::expect_used)]
        let keywords = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&keywords)
            .expect("the keyword set builds");
        #[allow(clippy::expect_used)]
        let regexes = RULES
            .iter()
            .map(|rule| Regex::new(rule.pattern).expect("every rule compiles"))
            .collect();
        Detector {
            keywords,
            owner,
            regexes,
        }
    }

    /// Every secret in `haystack`, in order.
    pub fn find(&self, haystack: &[u8]) -> Vec<Hit> {
        let mut hits: Vec<Hit> = Vec::new();
        let mut seen: std::collections::HashSet<(usize, usize)> = Default::default();
        // Overlapping keywords (`-proj-` inside `sk-proj-...T3BlbkFJ`) each open a window.
        for keyword in self.keywords.find_overlapping_iter(haystack) {
            let index = self.owner[keyword.pattern().as_usize()];
            let rule = &RULES[index];
            let line_start =
                memchr::memrchr(b'\n', &haystack[..keyword.start()]).map_or(0, |i| i + 1);
            let line_end = memchr::memchr(b'\n', &haystack[keyword.end()..])
                .map_or(haystack.len(), |i| keyword.end() + i);
            let from = keyword.start().saturating_sub(LONGEST).max(line_start);
            let to = (keyword.end() + LONGEST).min(line_end);
            for found in self.regexes[index].find_iter(&haystack[from..to]) {
                let (mut start, end) = (from + found.start(), from + found.end());
                // Only matches that contain this keyword: others have their own window.
                if start > keyword.start() || end < keyword.end() {
                    continue;
                }
                let text = || std::str::from_utf8(&haystack[start..end]).unwrap_or("");
                match rule.check {
                    Some(Check::TollgateChecksum) => match tollgate_key_start(text()) {
                        Some(offset) => start += offset,
                        None => continue,
                    },
                    Some(Check::ClientTokenChecksum)
                        if tollgate_core::client_token::parse(text()).is_err() =>
                    {
                        continue;
                    }
                    Some(Check::ClientTokenChecksum) | None => {}
                }
                // A checksummed key needs no boundary before it: its checksum already says it
                // is one (and text such as `%20` or `\n` may run into it).
                if !stands_alone(haystack, start, end, rule.check.is_some()) {
                    continue;
                }
                if !seen.insert((start, index)) {
                    continue;
                }
                let line_text = &haystack[line_start..line_end];
                if ALLOW_MARKERS
                    .iter()
                    .any(|m| memchr::memmem::find(line_text, m.as_bytes()).is_some())
                {
                    continue;
                }
                hits.push(Hit {
                    rule,
                    start,
                    end,
                    line: 0,
                    // In characters (UTF-8 continuation bytes are not counted), as SARIF says.
                    column: haystack[line_start..start]
                        .iter()
                        .filter(|b| (**b & 0xC0) != 0x80)
                        .count()
                        + 1,
                });
            }
        }
        if hits.is_empty() {
            return hits;
        }
        hits.sort_by_key(|h| (h.start, h.rule.id));
        // A Tollgate key is not also some other kind of key.
        let tollgate: Vec<(usize, usize)> = hits
            .iter()
            .filter(|h| h.rule.check == Some(Check::TollgateChecksum))
            .map(|h| (h.start, h.end))
            .collect();
        hits.retain(|h| {
            h.rule.check.is_some() || !tollgate.iter().any(|(s, e)| h.start < *e && *s < h.end)
        });
        // Line numbers, counted once over the buffer.
        let mut line = 1;
        let mut counted = 0;
        for hit in &mut hits {
            line += memchr::memchr_iter(b'\n', &haystack[counted..hit.start]).count();
            counted = hit.start;
            hit.line = line;
        }
        hits
    }
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new()
    }
}

/// The secret is not part of a longer token: no letter, digit, `-` or `_` just after it, and
/// (unless `checked`) no letter or digit just before it, but for a percent-encoded byte
/// (`%20`) or an escape (`\n`), which text often puts right before a secret.
fn stands_alone(haystack: &[u8], start: usize, end: usize, checked: bool) -> bool {
    let escaped = (start >= 3
        && haystack[start - 3] == b'%'
        && haystack[start - 2].is_ascii_hexdigit()
        && haystack[start - 1].is_ascii_hexdigit())
        || (start >= 2 && haystack[start - 2] == b'\\');
    let before = !checked
        && !escaped
        && start
            .checked_sub(1)
            .map(|i| haystack[i])
            .is_some_and(|b| b.is_ascii_alphanumeric());
    let after = haystack
        .get(end)
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    !before && !after
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::{KeyFormat, KeyKind};

    fn ids(detector: &Detector, text: &str) -> Vec<(&'static str, usize, usize)> {
        detector
            .find(text.as_bytes())
            .iter()
            .map(|h| (h.rule.id, h.line, h.column))
            .collect()
    }

    #[test]
    fn client_tokens_are_found_by_their_checksum() {
        let detector = Detector::new();
        let token = tollgate_core::client_token::generate();
        let mut typo = token.expose().as_bytes().to_vec();
        typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap_or_default();
        let text = format!(
            "const token = \"{}\";\nconst old = \"{typo}\";\nweek_0123456789012345678901234567890123456789012345678\n",
            token.expose()
        );
        assert_eq!(
            ids(&detector, &text),
            vec![("tollgate-client-token", 1, 16)]
        );
    }

    #[test]
    fn each_rule_finds_its_kind_and_says_where() {
        let detector = Detector::new();
        let key = KeyFormat::default().generate(KeyKind::Project);
        let text = format!(
            "line one\nKEY = \"{}\"\nopenai = 'sk-abcdefghij0123456789T3BlbkFJabcdefghij0123456789'\n\
             aws=AKIAIOSFODNN7EXAMPLE gh=ghp_0123456789abcdefghij0123456789abcdef\n\
             google: AIzaSyA1234567890abcdefghijklmnopqrstuv\n\
             stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc\n\
             slack https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX\n\
             xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx\n",
            key.expose()
        );
        assert_eq!(
            ids(&detector, &text),
            vec![
                ("tollgate-key", 2, 8),
                ("openai-api-key", 3, 11),
                ("aws-access-key-id", 4, 5),
                ("github-token", 4, 29),
                ("google-api-key", 5, 9),
                ("stripe-secret-key", 6, 8),
                ("slack-webhook-url", 7, 15),
                ("slack-token", 8, 1),
            ]
        );
    }

    #[test]
    fn near_misses_are_not_secrets() {
        let detector = Detector::new();
        let key = KeyFormat::default().generate(KeyKind::Project);
        let key = key.expose();
        let mid = key.len() - 3;
        let swapped = if &key[mid..=mid] == "a" { "b" } else { "a" };
        let near = format!("{}{swapped}{}", &key[..mid], &key[mid + 1..]);
        let longer = format!("{key}x");
        let texts = [
            near.as_str(),
            longer.as_str(),
            &key[..key.len() - 1],
            "sk-proj-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVW",
            "sk-abcdefghij0123456789T3BlbkFabcdefghij0123456789",
            "AKIAIOSFODNN7EXAMPL",
            "XAKIAIOSFODNN7EXAMPLE",
            "ghp_tooshort",
            "the sk-proj- prefix and the T3BlbkFJ marker, in prose",
        ];
        for text in texts {
            assert_eq!(ids(&detector, text), vec![], "{text}");
        }
    }

    #[test]
    fn secrets_after_percent_encoding_or_an_escape_are_found_and_columns_count_characters() {
        let detector = Detector::new();
        let key = KeyFormat::default().generate(KeyKind::Project);
        let text = format!(
            "Bearer%20{k}\n\"x\\n{k}\" ?key%3DAKIAIOSFODNN7EXAMPLE\nhéllo {k}\n",
            k = key.expose()
        );
        let found = ids(&detector, &text);
        assert_eq!(
            found,
            vec![
                ("tollgate-key", 1, 10),
                ("tollgate-key", 2, 5),
                ("aws-access-key-id", 2, 71),
                ("tollgate-key", 3, 7),
            ],
            "{text}"
        );
    }

    #[test]
    fn an_allow_marker_silences_its_line_only() {
        let detector = Detector::new();
        let text = "a = 'AKIAIOSFODNN7EXAMPLE' # tollgate:allow\nb = 'AKIAIOSFODNN7EXAMPLE'\n";
        assert_eq!(ids(&detector, text), vec![("aws-access-key-id", 2, 6)]);
    }

    #[test]
    fn a_key_at_either_end_of_the_buffer_and_many_on_a_line_are_found() {
        let detector = Detector::new();
        let format = KeyFormat::default();
        let keys: Vec<String> = (0..3)
            .map(|_| format.generate(KeyKind::ServiceAccount).expose().to_owned())
            .collect();
        let text = keys.join(",");
        let found = detector.find(text.as_bytes());
        assert_eq!(found.len(), 3);
        for (hit, key) in found.iter().zip(&keys) {
            assert_eq!(hit.text(text.as_bytes()), key);
        }
    }
}
