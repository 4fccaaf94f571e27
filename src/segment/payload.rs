//! Message types: raw bytes, or any plain-old-data type.

use crate::segment::header::TypeInfo;
use crate::sync::{AtomicU64, Ordering};

/// Marker for buses that carry raw byte messages of any length up to the slot capacity.
#[derive(Debug)]
pub enum Raw {}

/// A message type a bus can carry: [`Raw`] bytes, or any [`bytemuck::Pod`] type with alignment
/// of at most 8.
pub trait Payload: 'static + sealed::Sealed {
    /// What a received message is viewed as (`[u8]` or the type itself).
    type View: ?Sized;
    /// The owned form the iterator yields (`Vec<u8>` or the type itself).
    type Owned;
    /// The fingerprint of this type, under the given name.
    fn type_info(name: &str) -> TypeInfo;
    /// The default type name (`std::any::type_name`).
    fn default_name() -> &'static str;
    /// Views received bytes; `None` if they cannot be this type (wrong length).
    fn view(bytes: &[u8]) -> Option<&Self::View>;
    /// The bytes of a view.
    fn bytes(view: &Self::View) -> &[u8];
    /// Copies a view out.
    fn to_owned(view: &Self::View) -> Self::Owned;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Raw {}
    impl<T: bytemuck::Pod> Sealed for T {}
}

impl Payload for Raw {
    type View = [u8];
    type Owned = Vec<u8>;

    fn type_info(_name: &str) -> TypeInfo {
        TypeInfo::raw()
    }

    fn default_name() -> &'static str {
        TypeInfo::RAW_NAME
    }

    fn view(bytes: &[u8]) -> Option<&[u8]> {
        Some(bytes)
    }

    fn bytes(view: &[u8]) -> &[u8] {
        view
    }

    fn to_owned(view: &[u8]) -> Vec<u8> {
        view.to_vec()
    }
}

impl<T: bytemuck::Pod> Payload for T {
    type View = T;
    type Owned = T;

    fn type_info(name: &str) -> TypeInfo {
        TypeInfo {
            name: name.to_owned(),
            size: size_of::<T>() as u32,
            align: align_of::<T>() as u32,
        }
    }

    fn default_name() -> &'static str {
        std::any::type_name::<T>()
    }

    fn view(bytes: &[u8]) -> Option<&T> {
        bytemuck::try_from_bytes(bytes).ok()
    }

    fn bytes(view: &T) -> &[u8] {
        bytemuck::bytes_of(view)
    }

    fn to_owned(view: &T) -> T {
        *view
    }
}

/// Stores `bytes` at byte `offset` of a payload laid out as words (`word(i)` is word `i`), one
/// atomic word store each (never a `&mut [u8]` into shared memory, docs/design.md §8). The bytes
/// of a word outside the write keep what the word held.
#[inline]
pub(crate) fn store_bytes<'a>(
    offset: usize,
    bytes: &[u8],
    mut word: impl FnMut(usize) -> &'a AtomicU64,
) {
    let (mut pos, mut rest) = (offset, bytes);
    while !rest.is_empty() {
        let w = word(pos / 8);
        let skip = pos % 8;
        let take = rest.len().min(8 - skip);
        let mut b = if skip == 0 && take == 8 {
            [0u8; 8]
        } else {
            w.load(Ordering::Relaxed).to_ne_bytes()
        };
        b[skip..skip + take].copy_from_slice(&rest[..take]);
        w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
        pos += take;
        rest = &rest[take..];
    }
}
