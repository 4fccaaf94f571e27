//! iceoryx2 in the same harness (feature `peers`).
