//! The one door: a request's path is made canonical, or refused, before anything classifies
//! it. Every later decision (endpoint, scope, limits, metering) and the path forwarded to a
//! provider come from the canonical form, so no spelling can be read one way by Tollgate and
//! another way by a provider (reqwest resolves dot segments, Starlette decodes `%63`, Tomcat
//! reads `..;`).
//!
//! Percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`, RFC 3986 §2.3) are decoded,
//! since every server reads them as the characters themselves; other escapes are kept, with
//! upper-case hex. A path is refused when any reader could take it for another path: dot
//! segments (raw, encoded, or with `;` parameters), empty segments (`//`, a trailing `/`),
//! `/` or `\` encoded, a raw `\`, an encoded `%` (double encoding), control characters,
//! non-ASCII, a malformed escape, or more than [`MAX_PATH_LEN`] bytes.

use std::borrow::Cow;

/// Longest path accepted, in bytes as received. OpenAI's longest paths (an id or two under a
/// group) are well under 200.
pub const MAX_PATH_LEN: usize = 2048;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("the path must start with `/`")]
    NotAbsolute,
    #[error("the path has a `.` or `..` segment")]
    DotSegment,
    #[error("the path has an empty segment (`//` or a trailing `/`)")]
    EmptySegment,
    #[error("the path has an encoded `/` or `\\`, or a `\\`")]
    Slash,
    #[error("the path has an encoded `%` (double encoding)")]
    DoubleEncoding,
    #[error("the path has a control or non-ASCII character")]
    Character,
    #[error("the path has a `%` that is not followed by two hex digits")]
    BadEscape,
}

/// The canonical form of `raw` (a request's path, without its query), borrowed when it is
/// already canonical (the usual case: no escapes).
pub fn canonicalize(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if !bytes.contains(&b'%') {
        // The usual case, in one pass: every byte plain, every segment sound.
        bytes.iter().try_for_each(|&b| plain(b))?;
        check_segments(raw)?;
        return Ok(Cow::Borrowed(raw));
    }
    let path = decode_unreserved(bytes)?;
    check_segments(&path)?;
    Ok(Cow::Owned(path))
}

/// A byte that may appear as itself in a canonical path: printable ASCII except `\`.
fn plain(byte: u8) -> Result<(), PathError> {
    match byte {
        b'\\' => Err(PathError::Slash),
        0x21..=0x7e => Ok(()),
        _ => Err(PathError::Character),
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn decode_unreserved(bytes: &[u8]) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte != b'%' {
            plain(byte)?;
            out.push(char::from(byte));
            i += 1;
            continue;
        }
        let (Some(high), Some(low)) = (
            bytes.get(i + 1).copied().and_then(hex_value),
            bytes.get(i + 2).copied().and_then(hex_value),
        ) else {
            return Err(PathError::BadEscape);
        };
        let decoded = high * 16 + low;
        match decoded {
            b'/' | b'\\' => return Err(PathError::Slash),
            b'%' => return Err(PathError::DoubleEncoding),
            0x00..=0x1f | 0x7f..=0xff => return Err(PathError::Character),
            b if is_unreserved(b) => out.push(char::from(b)),
            b => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        i += 3;
    }
    Ok(out)
}

/// Every `%XX` escape of `text` decoded (others left as they are); `None` when the result is
/// not UTF-8. For text that is read, never forwarded (a model id in a path).
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| {
                let high = hex_value(*bytes.get(i + 1)?)?;
                let low = hex_value(*bytes.get(i + 2)?)?;
                Some(high * 16 + low)
            })
            .flatten();
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn check_segments(path: &str) -> Result<(), PathError> {
    if path == "/" {
        return Ok(());
    }
    let bytes = path.as_bytes();
    let mut start = 1;
    while start <= bytes.len() {
        let end = memchr::memchr(b'/', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        check_segment(&bytes[start..end])?;
        start = end + 1;
    }
    Ok(())
}

/// One segment: not empty, and not a dot segment: `.`, `..`, or with parameters `..;x`
/// (servlet containers) or `..%3Bx` (one that decodes first).
fn check_segment(segment: &[u8]) -> Result<(), PathError> {
    let Some(rest) = segment.strip_prefix(b".") else {
        return if segment.is_empty() {
            Err(PathError::EmptySegment)
        } else {
            Ok(())
        };
    };
    let rest = rest.strip_prefix(b".").unwrap_or(rest);
    if rest.is_empty() || rest.starts_with(b";") || rest.starts_with(b"%3B") {
        return Err(PathError::DotSegment);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_pass_unchanged_and_borrowed() {
        for path in [
            "/",
            "/v1/chat/completions",
            "/v1/files/file-abc123/content",
            "/v1/models/ft:gpt-4o-mini:org:custom:AbC1",
            "/v1/models/meta-llama/Llama-3.1-8B",
            "/v1/files/a.b..c",
            "/v1/x/.hidden",
            "/v1/x/...",
        ] {
            let canonical = canonicalize(path);
            assert_eq!(canonical.as_deref(), Ok(path));
            assert!(matches!(canonical, Ok(Cow::Borrowed(_))), "{path}");
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept_in_upper_case() {
        for (raw, canonical) in [
            ("/v1/chat/%63ompletions", "/v1/chat/completions"),
            ("/v1/%63%68%61%74/completions", "/v1/chat/completions"),
            ("/v1/chat/completion%73", "/v1/chat/completions"),
            ("/v1/files/file%2Dabc%5F%7E", "/v1/files/file-abc_~"),
            ("/v1/files/a%3ab", "/v1/files/a%3Ab"),
            ("/v1/files/a%20b", "/v1/files/a%20b"),
            ("/v1/files/a%2e", "/v1/files/a."),
        ] {
            assert_eq!(canonicalize(raw).as_deref(), Ok(canonical), "{raw}");
        }
    }

    #[test]
    fn every_spelling_of_another_path_is_refused() {
        use PathError::*;
        for (raw, why) in [
            ("/v1/x/../chat/completions", DotSegment),
            ("/v1/../v1/chat/completions", DotSegment),
            ("/v1/embeddings/%2e%2e/chat/completions", DotSegment),
            ("/v1/embeddings/%2E%2E/chat/completions", DotSegment),
            ("/v1/embeddings/.%2E/chat/completions", DotSegment),
            ("/v1/chat/./completions", DotSegment),
            ("/v1/chat/completions/.", DotSegment),
            ("/v1/chat/completions/..", DotSegment),
            ("/v1/x/..;/chat/completions", DotSegment),
            ("/v1/x/..%3Bx/chat/completions", DotSegment),
            ("/v1/x/..%3b/chat/completions", DotSegment),
            ("/v1/x/.;a=b/chat", DotSegment),
            ("/v1//chat/completions", EmptySegment),
            ("/v1/chat/completions/", EmptySegment),
            ("//v1/chat/completions", EmptySegment),
            ("/v1/x/..%2fchat/completions", Slash),
            ("/v1/chat/completions%2f", Slash),
            ("/v1/chat/completions%2F", Slash),
            ("/v1/x/..\\chat/completions", Slash),
            ("/v1/x/..%5cchat/completions", Slash),
            ("/v1/x/%252e%252e/chat", DoubleEncoding),
            ("/v1/chat%00/completions", Character),
            ("/v1/chat%0a/completions", Character),
            ("/v1/chat%7f", Character),
            ("/v1/chat%c3%a9", Character),
            ("/v1/caf\u{e9}", Character),
            ("/v1/a b", Character),
            ("/v1/a\tb", Character),
            ("/v1/chat%2", BadEscape),
            ("/v1/chat%zz", BadEscape),
            ("v1/chat/completions", NotAbsolute),
            ("*", NotAbsolute),
            ("", NotAbsolute),
        ] {
            assert_eq!(canonicalize(raw), Err(why), "{raw:?}");
        }
        let long = format!("/v1/files/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(canonicalize(&long), Err(TooLong));
    }

    #[test]
    fn percent_decoding_reads_every_escape() {
        assert_eq!(
            percent_decode("ft%3Agpt%2f4o").as_deref(),
            Some("ft:gpt/4o")
        );
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("caf\u{e9}"));
        assert_eq!(percent_decode("%ff"), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Bytes a path is made of, dots, slashes, escapes and their pieces weighted up.
        fn piece() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => "[a-z0-9_-]{1,6}",
                2 => Just("/".to_owned()),
                2 => Just(".".to_owned()),
                1 => Just("..".to_owned()),
                1 => Just("\\".to_owned()),
                1 => Just(";".to_owned()),
                3 => (0u8..=255).prop_map(|b| format!("%{b:02x}")),
                1 => (0u8..=255).prop_map(|b| format!("%{b:02X}")),
                1 => Just("%".to_owned()),
                1 => any::<char>().prop_map(String::from),
            ]
        }

        fn path() -> impl Strategy<Value = String> {
            proptest::collection::vec(piece(), 0..24).prop_map(|p| format!("/{}", p.concat()))
        }

        /// What a lenient server makes of a path: every escape decoded, once.
        fn decoded(path: &str) -> Vec<u8> {
            let bytes = path.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' && i + 2 < bytes.len() {
                    if let (Some(h), Some(l)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                        out.push(h * 16 + l);
                        i += 3;
                        continue;
                    }
                }
                out.push(bytes[i]);
                i += 1;
            }
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4096))]

            /// Canonical output is a fixed point, and whatever a decoding server reads from it
            /// has the same segments: no dot segment, no empty one, no hidden separator.
            #[test]
            fn canonical_paths_mean_the_same_to_every_reader(raw in path()) {
                if let Ok(canonical) = canonicalize(&raw) {
                    let again = canonicalize(&canonical);
                    prop_assert_eq!(again.as_deref(), Ok(canonical.as_ref()));
                    prop_assert!(canonical.is_ascii());
                    let read = decoded(&canonical);
                    prop_assert!(!read.contains(&b'\\'));
                    prop_assert!(!read.iter().any(|b| b.is_ascii_control() || *b >= 0x80));
                    let ours: Vec<&str> = canonical.split('/').collect();
                    let theirs: Vec<&[u8]> = read.split(|b| *b == b'/').collect();
                    prop_assert_eq!(ours.len(), theirs.len(), "a decoding server sees other segments");
                    for segment in theirs.iter().skip(1) {
                        let name = segment.split(|b| *b == b';').next().unwrap_or(segment);
                        prop_assert!(!segment.is_empty() || canonical == "/");
                        prop_assert!(name != b"." && name != b"..");
                    }
                }
            }

            /// Decoding an unreserved escape never changes whether a path is accepted.
            #[test]
            fn encoded_and_plain_spellings_are_judged_alike(raw in "[a-z./]{1,16}") {
                let plain = format!("/{raw}");
                let encoded: String = plain
                    .chars()
                    .map(|c| if c == '.' || c.is_ascii_lowercase() { format!("%{:02x}", c as u8) } else { c.to_string() })
                    .collect();
                prop_assert_eq!(canonicalize(&plain).map(Cow::into_owned), canonicalize(&encoded).map(Cow::into_owned));
            }
        }
    }
}
