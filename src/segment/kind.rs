//! What every segment kind has in common above the header: one [`Options`] type (name,
//! permissions, type name, access, trust flags) and one generic create / open / open_or_create /
//! in_process over a per-kind [`Kind`] (docs/design.md, "Architecture").
//!
//! A kind supplies only what differs: its plan (the common [`Shape`] and its own shape), the
//! header words of its own that [`Kind::init`] writes into a new segment **before** the magic's
//! Release store publishes it (so no opener ever sees a half-initialised kind), what an opener
//! expects, and how it adopts a validated segment into its handle.

use crate::error::{Error, Result};
use crate::segment::payload::Payload;
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

/// Refuses a read-only segment ([`Error::ReadOnly`]).
pub(crate) fn writable(seg: &Segment) -> Result<()> {
    if seg.is_writable() {
        Ok(())
    } else {
        Err(Error::ReadOnly {
            name: seg.name().to_owned(),
        })
    }
}

/// Refuses a raw handle on a typed segment or the reverse ([`Error::TypeMismatch`]): a typed
/// open checked the type itself, a raw one accepts any, so producers check this much.
pub(crate) fn same_rawness<T: Payload>(seg: &Segment) -> Result<()> {
    let wanted = T::type_info(&seg.ty.name);
    if wanted.is_raw() == seg.ty.is_raw() {
        return Ok(());
    }
    Err(Error::TypeMismatch {
        name: seg.name().to_owned(),
        expected: wanted.to_string(),
        found: seg.ty.to_string(),
    })
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

/// The setters every builder shares, over its `opts: Options` field; `(typed)` adds the type
/// name of a kind that carries a message type.
macro_rules! option_setters {
    (typed) => {
        /// The type name recorded and checked for a typed segment (default
        /// `std::any::type_name`, which may differ between compiler versions: set a name of your
        /// own for segments shared by separately built programs).
        pub fn type_name(mut self, name: &str) -> Self {
            self.opts.type_name = Some(name.to_owned());
            self
        }

        pub(crate) fn type_info(&self) -> $crate::segment::header::TypeInfo {
            self.opts.type_info::<T>()
        }

        $crate::segment::kind::option_setters!();
    };
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

/// The four constructors every builder has, over the generic functions above. `$what` names
/// the kind in the docs ("bus"), `$config` lists the builder's own configuration errors,
/// `$open` the kind's own open errors, `$same` what `open_or_create` compares.
macro_rules! constructors {
    ($handle:ty, $what:literal, config: $config:literal, open: $open:literal, same: $same:literal) => {
        #[doc = concat!("Creates a new ", $what, "; fails with [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the name is taken.")]
        #[doc = ""]
        #[doc = "# Errors"]
        #[doc = ""]
        #[doc = concat!($config, " Any of the [errors of creating a segment](crate::Error#creating-a-segment).")]
        pub fn create(self) -> $crate::Result<$handle> {
            $crate::segment::kind::create(&self)
        }

        #[doc = concat!("Creates a ", $what, " that lives in this process's heap only: no name, no `/dev/shm`; for the threads of one process, and for tests.")]
        #[doc = ""]
        #[doc = "# Errors"]
        #[doc = ""]
        #[doc = $config]
        pub fn in_process(self) -> $crate::Result<$handle> {
            $crate::segment::kind::in_process(&self)
        }

        #[doc = concat!("Opens an existing ", $what, ", checking its type where it has one (raw builders accept any). Another kind of segment under the name is refused with [`Error::WrongKind`](crate::Error::WrongKind).")]
        #[doc = ""]
        #[doc = "# Errors"]
        #[doc = ""]
        #[doc = concat!("Any of the [errors of opening a segment](crate::Error#opening-a-segment), and ", $open)]
        pub fn open(self) -> $crate::Result<$handle> {
            $crate::segment::kind::open(&self)
        }

        #[doc = concat!("Opens the ", $what, " if it exists with the same ", $same, ", else creates it.")]
        #[doc = ""]
        #[doc = "# Errors"]
        #[doc = ""]
        #[doc = "Those of [`open`](Self::open) and [`create`](Self::create) (except `NotFound` and `AlreadyExists`, which a race between the two turns into another attempt), and [`Error::GeometryMismatch`](crate::Error::GeometryMismatch) if the existing segment differs from the one asked for."]
        pub fn open_or_create(self) -> $crate::Result<$handle> {
            $crate::segment::kind::open_or_create(&self)
        }
    };
}
pub(crate) use constructors;

/// A handle's shortcuts by name: `open`, `open_read_only` and `remove`. `$rw` and `$ro` say
/// what a read-write and a read-only handle of the kind can do.
macro_rules! by_name {
    ($builder:ident, $what:literal, read_write: $rw:literal, read_only: $ro:literal) => {
        #[doc = concat!("Opens an existing ", $what, " read-write (", $rw, "), accepting any type for reading.")]
        #[doc = ""]
        #[doc = "# Errors"]
        #[doc = ""]
        #[doc = concat!("Those of [`", stringify!($builder), "::open`].")]
        pub fn open(name: &str) -> $crate::Result<Self> {
            $builder::new(name).open()
        }

        #[doc = concat!("Opens an existing ", $what, " read-only (", $ro, "): the segment is mapped without write access.")]
        #[doc = ""]
        #[doc = "# Errors"]
        #[doc = ""]
        #[doc = concat!("Those of [`", stringify!($builder), "::open`].")]
        pub fn open_read_only(name: &str) -> $crate::Result<Self> {
            $builder::new(name).read_only().open()
        }

        #[doc = concat!("Removes a ", $what, " from `/dev/shm`. Processes that have it open keep their mapping.")]
        #[doc = ""]
        #[doc = "# Errors"]
        #[doc = ""]
        #[doc = "[`Error::InvalidName`](crate::Error::InvalidName); [`Error::NotFound`](crate::Error::NotFound) if there is no such object; [`Error::PermissionDenied`](crate::Error::PermissionDenied); [`Error::Io`](crate::Error::Io) for any other system error."]
        pub fn remove(name: &str) -> $crate::Result<()> {
            $crate::segment::remove(name)
        }
    };
}
pub(crate) use by_name;
