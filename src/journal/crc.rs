//! CRC-32C (Castagnoli), the checksum of every journal entry (docs/design.md §13).
//!
//! Table-driven, eight bytes per step ("slicing by 8"), tables built at compile time: a few dozen
//! lines instead of a dependency. On x86-64 with SSE4.2 (detected at run time) the `crc32`
//! instruction computes the same CRC several times faster. CRC-32C rather than the zlib CRC-32
//! because it is the one storage formats use (iSCSI, ext4 metadata, btrfs) and detects more
//! error patterns at these lengths; the reflected polynomial is 0x82F63B78.

const POLY: u32 = 0x82F6_3B78;

const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { c >> 1 ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut s = 1;
        while s < 8 {
            let prev = t[s - 1][i];
            t[s][i] = prev >> 8 ^ t[0][(prev & 0xFF) as usize];
            s += 1;
        }
        i += 1;
    }
    t
}

static TABLES: [[u32; 256]; 8] = tables();

/// A running CRC-32C.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Crc32c(u32);

impl Crc32c {
    pub(crate) fn new() -> Self {
        Crc32c(!0)
    }

    /// Adds words, each little-endian, then `bytes`: one feature test and one call for all.
    pub(crate) fn words_then(mut self, words: &[u64], bytes: &[u8]) -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: `words_sse42` only needs SSE4.2, which the CPU was just found to have.
            self.0 = unsafe { words_sse42(self.0, words, bytes) };
            return self;
        }
        for w in words {
            self.0 = update_table(self.0, &w.to_le_bytes());
        }
        self.0 = update_table(self.0, bytes);
        self
    }

    pub(crate) fn finish(self) -> u32 {
        !self.0
    }
}

/// The CRC register `c` after `bytes`, with the `crc32` instruction (the CRC-32C polynomial,
/// reflected, on the register as is: one instruction is one step of `update_table`).
///
/// # Safety
///
/// The CPU must support SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn update_sse42(c: u32, bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut chunks = bytes.chunks_exact(8);
    let mut c64 = u64::from(c);
    for w in &mut chunks {
        let word = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        // SAFETY: as in `words_sse42`: the caller promises SSE4.2.
        #[allow(unused_unsafe)]
        let next = unsafe { _mm_crc32_u64(c64, word) };
        c64 = next;
    }
    // The instruction leaves the high half zero.
    let mut c = c64 as u32;
    for &b in chunks.remainder() {
        // SAFETY: as above.
        #[allow(unused_unsafe)]
        let next = unsafe { _mm_crc32_u8(c, b) };
        c = next;
    }
    c
}

/// `update_sse42` of `words` (little-endian) and then of `bytes`.
///
/// # Safety
///
/// The CPU must support SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn words_sse42(c: u32, words: &[u64], bytes: &[u8]) -> u32 {
    use std::arch::x86_64::_mm_crc32_u64;
    let mut c64 = u64::from(c);
    for &w in words {
        // SAFETY: the caller promises SSE4.2, all the instruction needs (the intrinsic is an
        // unsafe fn before Rust 1.87, a safe one in a function with the feature since).
        #[allow(unused_unsafe)]
        let next = unsafe { _mm_crc32_u64(c64, w) };
        c64 = next;
    }
    // SAFETY: the caller promises SSE4.2, all `update_sse42` needs.
    unsafe { update_sse42(c64 as u32, bytes) }
}

/// The CRC register `c` after `bytes`, eight bytes a step through the tables.
fn update_table(mut c: u32, bytes: &[u8]) -> u32 {
    let t = &TABLES;
    let mut chunks = bytes.chunks_exact(8);
    for w in &mut chunks {
        let lo = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) ^ c;
        let hi = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
        c = t[7][(lo & 0xFF) as usize]
            ^ t[6][(lo >> 8 & 0xFF) as usize]
            ^ t[5][(lo >> 16 & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xFF) as usize]
            ^ t[2][(hi >> 8 & 0xFF) as usize]
            ^ t[1][(hi >> 16 & 0xFF) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        c = c >> 8 ^ t[0][((c ^ b as u32) & 0xFF) as usize];
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bit-at-a-time definition, to check the tables against.
    fn slow(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { c >> 1 ^ POLY } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn words_then_bytes_is_their_little_endian_bytes() {
        let words = [0x0102_0304_0506_0708u64, !0, 0];
        let mut flat = Vec::new();
        for w in words {
            flat.extend_from_slice(&w.to_le_bytes());
        }
        flat.extend_from_slice(b"tail");
        assert_eq!(
            Crc32c::new().words_then(&words, b"tail").finish(),
            slow(&flat)
        );
    }

    #[test]
    fn known_check_values() {
        // The standard check value of CRC-32C, and RFC 3720 (iSCSI) appendix B.4 vectors.
        assert_eq!(
            Crc32c::new().words_then(&[], b"123456789").finish(),
            0xE306_9283
        );
        assert_eq!(
            Crc32c::new().words_then(&[], &[0; 32]).finish(),
            0x8A91_36AA
        );
        assert_eq!(
            Crc32c::new().words_then(&[], &[0xFF; 32]).finish(),
            0x62A8_AB43
        );
        let inc: Vec<u8> = (0..32).collect();
        assert_eq!(Crc32c::new().words_then(&[], &inc).finish(), 0x46DD_794E);
        assert_eq!(Crc32c::new().finish(), 0);
    }

    #[test]
    fn slicing_matches_the_definition_at_every_length_and_split() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 151 + 7) as u8).collect();
        for len in 0..data.len() {
            let want = slow(&data[..len]);
            assert_eq!(
                Crc32c::new().words_then(&[], &data[..len]).finish(),
                want,
                "{len}"
            );
            let cut = len / 3;
            let split = !update_table(update_table(!0, &data[..cut]), &data[cut..len]);
            assert_eq!(split, want, "{len} split at {cut}");
            assert_eq!(!update_table(!0, &data[..len]), want, "table, {len}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_instruction_matches_the_tables() {
        if !std::arch::is_x86_feature_detected!("sse4.2") {
            return;
        }
        let data: Vec<u8> = (0..300u32).map(|i| (i * 151 + 7) as u8).collect();
        for len in 0..data.len() {
            for start in [0, !0, 0x1234_5678] {
                // SAFETY: SSE4.2 was detected above.
                let fast = unsafe { update_sse42(start, &data[..len]) };
                assert_eq!(
                    fast,
                    update_table(start, &data[..len]),
                    "{len} from {start:#x}"
                );
            }
        }
    }
}
