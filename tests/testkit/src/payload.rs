//! Self-checking payloads and a small PRNG, shared by the bench's soak and the integration tests,
//! so that both verify messages the same way. Plain Rust, no dependencies.

/// FNV-1a of `bytes`.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The splitmix64 finaliser: a cheap, well-spread hash of one word.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// splitmix64: deterministic random numbers from a seed.
pub struct Rng(pub u64);

impl Rng {
    /// The next number. Not `Iterator::next`: the sequence never ends, so an `Option` would only
    /// be noise at every call.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Fills `buf` (at least 24 bytes) with a self-checking message: producer id, counter, a body
/// derived from both, and the FNV-1a of everything before it in the last 8 bytes.
pub fn make_payload(buf: &mut [u8], id: u64, k: u64) {
    let len = buf.len();
    assert!(len >= 24, "payloads are at least 24 bytes");
    buf[..8].copy_from_slice(&id.to_le_bytes());
    buf[8..16].copy_from_slice(&k.to_le_bytes());
    let mut x = mix(id ^ k.rotate_left(29));
    for chunk in buf[16..len - 8].chunks_mut(8) {
        x = mix(x);
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let sum = fnv(&buf[..len - 8]);
    buf[len - 8..].copy_from_slice(&sum.to_le_bytes());
}

/// Checks a message made by [`make_payload`]: its checksum, and every body byte against the
/// generator. Returns `(id, counter)` if it is whole.
pub fn check_payload(buf: &[u8]) -> Option<(u64, u64)> {
    let len = buf.len();
    if len < 24 || fnv(&buf[..len - 8]).to_le_bytes() != buf[len - 8..] {
        return None;
    }
    let id = u64::from_le_bytes(buf[..8].try_into().ok()?);
    let k = u64::from_le_bytes(buf[8..16].try_into().ok()?);
    let mut x = mix(id ^ k.rotate_left(29));
    let body_ok = buf[16..len - 8].chunks(8).all(|chunk| {
        x = mix(x);
        chunk == &x.to_le_bytes()[..chunk.len()]
    });
    body_ok.then_some((id, k))
}
