//! Message types: raw bytes, or any plain-old-data type.

use crate::segment::header::TypeInfo;

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
