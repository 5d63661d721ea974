//! A request's id (`req_` and 32 hex digits, as OpenAI's), made when its connection reads its
//! head and carried in its extensions to the handlers. A leaf.

/// The request's id, for handlers (from the request's extensions).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A fresh request id: `req_` and 32 hex digits, as OpenAI's. The first 12 digits are the
/// Unix time in milliseconds, so ids sort by time and the usage table's index grows at its end
/// instead of being rewritten all over; the other 20 come from a per-thread generator seeded
/// once from the OS (ids are not secrets, but stay unguessable enough not to collide).
pub(crate) fn new_request_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut seed = [0u8; 8];
            tollgate_core::ids::fill_random(&mut seed);
            u64::from_le_bytes(seed) | 1
        });
    }
    // splitmix64: two outputs give 128 bits, of which 80 are used.
    let next = || {
        STATE.with(|state| {
            let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    };
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // Written digit by digit: `format!` costs more than the rest of the id together.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(36);
    id.push_str("req_");
    for (value, digits) in [(millis, 12), (next(), 16), (next(), 4)] {
        for shift in (0..digits).rev() {
            id.push(char::from(HEX[((value >> (shift * 4)) & 0xf) as usize]));
        }
    }
    id
}
