//! Base62 (`0-9A-Za-z`) encoding of fixed-width big-endian numbers, used by key bodies,
//! checksums and identifiers.

pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Value of one base62 digit, or `None` when the byte is not in the alphabet.
pub fn digit_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'Z' => Some(byte - b'A' + 10),
        b'a'..=b'z' => Some(byte - b'a' + 36),
        _ => None,
    }
}

/// Encodes `bytes` (a big-endian number) as exactly `width` base62 digits, zero-padded.
/// `width` must be large enough to hold the number (62^width > 256^bytes.len()).
pub fn encode_fixed(bytes: &[u8], width: usize) -> String {
    let mut number: Vec<u8> = bytes.to_vec();
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        // Divide the big-endian number by 62 in place, keeping the remainder.
        let mut remainder: u32 = 0;
        for byte in number.iter_mut() {
            let acc = (remainder << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            remainder = acc % 62;
        }
        *slot = ALPHABET[remainder as usize];
    }
    digits.into_iter().map(char::from).collect()
}

/// Encodes a `u32` as exactly 6 base62 digits (62^6 > 2^32).
pub fn encode_u32(value: u32) -> String {
    encode_fixed(&value.to_be_bytes(), 6)
}

/// Decodes base62 digits into a `u64`; `None` on a foreign character or overflow.
pub fn decode_u64(text: &str) -> Option<u64> {
    text.bytes().try_fold(0u64, |acc, byte| {
        let digit = u64::from(digit_value(byte)?);
        acc.checked_mul(62)?.checked_add(digit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u32_round_trips_at_the_edges() {
        for value in [0u32, 1, 61, 62, 3_844, u32::MAX - 1, u32::MAX] {
            let text = encode_u32(value);
            assert_eq!(text.len(), 6);
            assert_eq!(decode_u64(&text), Some(u64::from(value)));
        }
    }

    #[test]
    fn fixed_width_of_256_bits_fits_43_digits() {
        let max = encode_fixed(&[0xff; 32], 43);
        assert_eq!(max.len(), 43);
        assert_ne!(max.as_bytes()[0], b'0', "2^256-1 needs all 43 digits");
        assert_eq!(encode_fixed(&[0; 32], 43), "0".repeat(43));
    }

    #[test]
    fn rejects_foreign_characters() {
        assert_eq!(decode_u64("ab-c"), None);
        assert_eq!(digit_value(b'_'), None);
    }
}
