//! Which (producer, counter) pairs a consumer received, for the stress tests and the soak that
//! check that nothing is delivered twice and nothing a producer was told it dropped arrives.

use std::collections::HashMap;

/// One bit per counter, per producer id.
#[derive(Default)]
pub struct Delivered(HashMap<u64, Vec<u64>>);

impl Delivered {
    /// Marks counter `k` of producer `id` received.
    pub fn insert(&mut self, id: u64, k: u64) {
        let bits = self.0.entry(id).or_default();
        let word = (k / 64) as usize;
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        bits[word] |= 1 << (k % 64);
    }

    /// The producer ids of which anything was received.
    pub fn producers(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.keys().copied()
    }

    /// Whether counter `k` of producer `id` was received.
    pub fn contains(&self, id: u64, k: u64) -> bool {
        self.0
            .get(&id)
            .and_then(|b| b.get((k / 64) as usize))
            .is_some_and(|w| w & (1 << (k % 64)) != 0)
    }
}
