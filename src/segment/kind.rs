//! What every segment kind has in common above the header: one [`Options`] type (name,
//! permissions, type name, access, trust flags) and one generic create / open / open_or_create /
//! in_process over a per-kind [`Kind`] (docs/design.md, "Architecture").
//!
//! A kind supplies only what differs: its plan (the common [`Shape`] and its own shape), the
//! header words of its own that [`Kind::init`] writes into a new segment **before** the magic's
//! Release store publishes it (so no opener ever sees a half-initialised kind), what an opener
//! expects, and how it adopts a validated segment into its handle.

use crate::error::{Error, Result};
use crate::payload::Payload;
use crate::sync::AtomicU64;

use super::header::{TypeInfo, Wakeup};
use super::{Access, Expect, Plan, Segment, Shape, Trust};

/// The options every kind's builder carries.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub name: String,
    /// Permission bits of a created segment, applied exactly whatever the umask.
    pub permissions: u32,
    /// The type name recorded and checked for typed segments (`None`: the type's default).
    pub type_name: Option<String>,
    pub access: Access,
    pub trust: Trust,
}

impl Options {
    /// Defaults: mode `0o600`, read-write, the safe trust defaults (docs/design.md §1).
    pub(crate) fn new(name: &str) -> Self {
        Options {
            name: name.to_owned(),
            permissions: 0o600,
            type_name: None,
            access: Access::ReadWrite,
            trust: Trust::default(),
        }
    }

    /// The message type `T` under the name these options give it.
    pub(crate) fn type_info<T: Payload>(&self) -> TypeInfo {
        T::type_info(
            self.type_name
                .as_deref()
                .unwrap_or_else(|| T::default_name()),
        )
    }
}

/// The segment a builder would create: the common shape, the wake-up choice and the kind's own
/// shape (read once here and never re-read from shared memory).
pub(crate) struct Blueprint<O> {
    pub shape: Shape,
    pub wakeup: Wakeup,
    pub own: O,
}

impl<O> Blueprint<O> {
    /// A plan with the default wake-up choice.
    pub(crate) fn new(shape: Shape, own: O) -> Self {
        Blueprint {
            shape,
            wakeup: Wakeup::default(),
            own,
        }
    }
}

/// One segment kind, implemented by its builder.
pub(crate) trait Kind {
    /// What create and open give.
    type Handle;
    /// The kind's own shape, beside the common one.
    type Own;

    fn options(&self) -> &Options;

    /// Checks the builder's settings and says what to create.
    fn blueprint(&self) -> Result<Blueprint<Self::Own>>;

    /// Writes the kind's own words into a new segment, after the common header words and before
    /// the magic publishes it.
    fn init(&self, _own: &Self::Own, _words: &[AtomicU64]) {}

    /// What an opener requires of the common header.
    fn expect(&self) -> Expect;

    /// Turns a segment that passed the open pipeline (or was just created) into the handle,
    /// validating the kind's own words.
    fn adopt(&self, seg: Segment) -> Result<Self::Handle>;

    /// For `open_or_create`: `Some((found, wanted))` when an existing segment differs from the
    /// one asked for.
    fn differs(
        &self,
        wanted: &Blueprint<Self::Own>,
        found: &Self::Handle,
    ) -> Option<(String, String)>;
}

/// Creates a new segment of kind `K`; fails with [`Error::AlreadyExists`] if the name is taken.
pub(crate) fn create<K: Kind>(k: &K) -> Result<K::Handle> {
    let bp = k.blueprint()?;
    let o = k.options();
    let init = |words: &[AtomicU64]| k.init(&bp.own, words);
    let plan = Plan {
        shape: bp.shape.clone(),
        wakeup: bp.wakeup,
        init: &init,
    };
    k.adopt(Segment::create(&o.name, plan, o.permissions)?)
}

/// A segment of kind `K` in this process's heap only: no name, no `/dev/shm`.
pub(crate) fn in_process<K: Kind>(k: &K) -> Result<K::Handle> {
    let bp = k.blueprint()?;
    let init = |words: &[AtomicU64]| k.init(&bp.own, words);
    k.adopt(Segment::heap(Plan {
        shape: bp.shape.clone(),
        wakeup: bp.wakeup,
        init: &init,
    }))
}

/// Opens an existing segment of kind `K`: the open pipeline, then the kind's own checks.
pub(crate) fn open<K: Kind>(k: &K) -> Result<K::Handle> {
    let o = k.options();
    let seg = Segment::open_expecting(&o.name, o.access, o.trust, &k.expect())?;
    k.adopt(seg)
}

/// Opens the segment if it exists as asked, else creates it; a race between two of these turns
/// `NotFound` / `AlreadyExists` into another attempt.
pub(crate) fn open_or_create<K: Kind>(k: &K) -> Result<K::Handle> {
    let wanted = k.blueprint()?;
    loop {
        match open(k) {
            Ok(h) => {
                return match k.differs(&wanted, &h) {
                    Some((found, wanted)) => Err(Error::GeometryMismatch {
                        name: k.options().name.clone(),
                        found,
                        wanted,
                    }),
                    None => Ok(h),
                }
            }
            Err(Error::NotFound { .. }) => match create(k) {
                Err(Error::AlreadyExists { .. }) => continue,
                other => return other,
            },
            Err(e) => return Err(e),
        }
    }
}

/// The setters every builder shares, over its `opts: Options` field.
macro_rules! option_setters {
    () => {
        /// Permission bits of a created segment (default `0o600`), applied exactly, whatever the
        /// umask.
        pub fn permissions(mut self, mode: u32) -> Self {
            self.opts.permissions = mode;
            self
        }

        /// Open read-only (readers only; the segment is mapped without write access).
        pub fn read_only(mut self) -> Self {
            self.opts.access = $crate::segment::Access::ReadOnly;
            self
        }

        /// Accept a segment owned by another user.
        pub fn accept_other_owner(mut self) -> Self {
            self.opts.trust.other_owner = true;
            self
        }

        /// Accept a segment writable by group or others.
        pub fn accept_shared_write(mut self) -> Self {
            self.opts.trust.shared_write = true;
            self
        }
    };
}
pub(crate) use option_setters;
