//! The bridge's wire format: one zenoh sample is one frame (docs/design.md §16).
//!
//! ```text
//!  byte  field (little-endian)
//!  ----  -------------------------------------------------------------------------------
//!     0  magic "SB" (2 bytes)
//!     2  version (1)
//!     3  kind: 1 data (a batch of messages), 2 loss (a range lost by the exporter),
//!        3 hello (no messages: the shape, and the next sequence the exporter will send)
//!     4  u32 count: messages in a data frame (at least 1); 0 in the other kinds
//!     8  u64 instance: the exporter's random id, new at every start (never 0)
//!    16  u64 source: the exported bus's identity (hash of its name and creation stamp)
//!    24  u64 seq: data, the first message's source sequence (the others follow, +1 each);
//!        loss, the first sequence lost; hello, the next sequence the exporter will send
//!    32  u64 lost: loss, how many sequences from `seq` on were lost (at least 1); else 0
//!    40  u64 slots of the exported bus (a power of two)
//!    48  u32 capacity of the exported bus's slots, in bytes
//!    52  u32 size of the message type (0: raw bytes)
//!    56  u32 alignment of the message type
//!    60  u16 length of the type name (at most 1024), then u16 producer mode (1 single, 2 multi)
//!    64  the type name (UTF-8), then for each of `count` messages: u32 length, its bytes
//! ```
//!
//! Decoding is strict: anything else (a short frame, an unknown kind or version, a message
//! longer than the capacity, a count that does not match the bytes, trailing bytes) is an error,
//! which the importer counts as a malformed frame.

use std::fmt;

/// The two magic bytes every frame starts with.
pub const MAGIC: [u8; 2] = *b"SB";
/// The format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of the fixed header, before the type name.
pub const HEADER_LEN: usize = 64;
/// The longest type name a frame may carry.
pub const MAX_TYPE_NAME: usize = 1024;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A batch of messages with consecutive source sequences.
    Data,
    /// A range of source sequences the exporter lost (it was lapped, or a producer died).
    Loss,
    /// The shape and the next sequence, with no messages.
    Hello,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Data => 1,
            Kind::Loss => 2,
            Kind::Hello => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Kind::Data),
            2 => Some(Kind::Loss),
            3 => Some(Kind::Hello),
            _ => None,
        }
    }
}

/// The exported bus's shape, carried in every frame so an importer can create its local bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Slot count (a power of two).
    pub slots: u64,
    /// Payload capacity of a slot, in bytes.
    pub capacity: u32,
    /// The message type's size (0 for raw bytes).
    pub type_size: u32,
    /// The message type's alignment.
    pub type_align: u32,
    /// The message type's name.
    pub type_name: String,
    /// Producer mode word: 1 single, 2 multi.
    pub mode: u16,
}

/// Who sent a frame and where in the source's sequence it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The exporter's instance id.
    pub instance: u64,
    /// The exported bus's identity.
    pub source: u64,
}

/// A decoded frame. Messages borrow the sample's bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What the frame carries.
    pub kind: Kind,
    /// Its sender.
    pub origin: Origin,
    /// See the layout: first message, first lost, or next to send.
    pub seq: u64,
    /// Loss frames: sequences lost from `seq` on.
    pub lost: u64,
    /// The exported bus's shape.
    pub shape: Shape,
    /// Data frames: the messages, in sequence order from `seq`.
    pub messages: Vec<&'a [u8]>,
}

/// Why a frame was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than its header, name or messages say.
    Truncated,
    /// Does not start with the magic bytes.
    BadMagic,
    /// A format version this build does not read.
    Version(u8),
    /// An unknown kind byte.
    Kind(u8),
    /// A field out of its range (named).
    Field(&'static str),
    /// A message longer than the shape's capacity.
    Oversized {
        /// The message's length.
        len: u32,
        /// The capacity the frame states.
        capacity: u32,
    },
    /// Bytes left over after the last message.
    Trailing(usize),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Truncated => write!(f, "truncated frame"),
            Malformed::BadMagic => write!(f, "not a shmbus-bridge frame (bad magic)"),
            Malformed::Version(v) => write!(f, "frame version {v} (this build reads {VERSION})"),
            Malformed::Kind(k) => write!(f, "unknown frame kind {k}"),
            Malformed::Field(name) => write!(f, "field {name} out of range"),
            Malformed::Oversized { len, capacity } => {
                write!(
                    f,
                    "message of {len} bytes in a frame of capacity {capacity}"
                )
            }
            Malformed::Trailing(n) => write!(f, "{n} bytes after the last message"),
        }
    }
}

/// Builds frames into one reusable buffer.
#[derive(Debug)]
pub struct Encoder {
    origin: Origin,
    shape: Shape,
    buf: Vec<u8>,
    /// Data frame being built: its first sequence and message count.
    first: u64,
    count: u32,
}

impl Encoder {
    /// An encoder for frames of `origin` about a bus of `shape`.
    pub fn new(origin: Origin, shape: Shape) -> Self {
        let mut shape = shape;
        // A name longer than the format allows is cut at a character boundary: it is only
        // informative (the importer publishes bytes), and the frame must stay decodable.
        if shape.type_name.len() > MAX_TYPE_NAME {
            let mut end = MAX_TYPE_NAME;
            while !shape.type_name.is_char_boundary(end) {
                end -= 1;
            }
            shape.type_name.truncate(end);
        }
        Encoder {
            origin,
            shape,
            buf: Vec::new(),
            first: 0,
            count: 0,
        }
    }

    /// Messages in the data frame being built.
    pub fn pending(&self) -> u32 {
        self.count
    }

    /// The sequence the next message must have to join the data frame being built.
    pub fn next_seq(&self) -> Option<u64> {
        (self.count > 0).then(|| self.first + u64::from(self.count))
    }

    /// Appends message `seq` to the data frame being built (its first message starts it). The
    /// caller flushes first when `seq` does not follow the pending messages.
    pub fn push(&mut self, seq: u64, bytes: &[u8]) {
        debug_assert!(self.next_seq().is_none_or(|n| n == seq));
        debug_assert!(bytes.len() <= self.shape.capacity as usize);
        if self.count == 0 {
            self.header(Kind::Data, seq, 0);
            self.first = seq;
        }
        self.count += 1;
        self.buf
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(bytes);
    }

    /// The finished data frame, if messages are pending; the encoder is then empty again.
    pub fn take_data(&mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        self.buf[4..8].copy_from_slice(&self.count.to_le_bytes());
        self.count = 0;
        Some(std::mem::take(&mut self.buf))
    }

    /// A loss frame: `lost` sequences from `first` on. Call with no data pending.
    pub fn loss(&mut self, first: u64, lost: u64) -> Vec<u8> {
        debug_assert_eq!(self.count, 0);
        self.header(Kind::Loss, first, lost);
        std::mem::take(&mut self.buf)
    }

    /// A hello frame: `next` is the sequence the exporter sends next. Call with no data pending.
    pub fn hello(&mut self, next: u64) -> Vec<u8> {
        debug_assert_eq!(self.count, 0);
        self.header(Kind::Hello, next, 0);
        std::mem::take(&mut self.buf)
    }

    fn header(&mut self, kind: Kind, seq: u64, lost: u64) {
        let s = &self.shape;
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(&MAGIC);
        b.push(VERSION);
        b.push(kind.byte());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&self.origin.instance.to_le_bytes());
        b.extend_from_slice(&self.origin.source.to_le_bytes());
        b.extend_from_slice(&seq.to_le_bytes());
        b.extend_from_slice(&lost.to_le_bytes());
        b.extend_from_slice(&s.slots.to_le_bytes());
        b.extend_from_slice(&s.capacity.to_le_bytes());
        b.extend_from_slice(&s.type_size.to_le_bytes());
        b.extend_from_slice(&s.type_align.to_le_bytes());
        b.extend_from_slice(&(s.type_name.len() as u16).to_le_bytes());
        b.extend_from_slice(&s.mode.to_le_bytes());
        debug_assert_eq!(b.len(), HEADER_LEN);
        b.extend_from_slice(s.type_name.as_bytes());
    }
}

/// Reads little-endian fields off the front of a byte slice, failing with `Truncated`.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        self.array().map(u64::from_le_bytes)
    }
}

/// Decodes one frame, checking every field. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Frame<'_>, Malformed> {
    let mut c = Cursor(bytes);
    if c.array::<2>()? != MAGIC {
        return Err(Malformed::BadMagic);
    }
    let [version] = c.array::<1>()?;
    if version != VERSION {
        return Err(Malformed::Version(version));
    }
    let [kind] = c.array::<1>()?;
    let kind = Kind::from_byte(kind).ok_or(Malformed::Kind(kind))?;
    let count = c.u32()?;
    let origin = Origin {
        instance: c.u64()?,
        source: c.u64()?,
    };
    let seq = c.u64()?;
    let lost = c.u64()?;
    let slots = c.u64()?;
    let capacity = c.u32()?;
    let type_size = c.u32()?;
    let type_align = c.u32()?;
    let name_len = c.u16()? as usize;
    let mode = c.u16()?;
    if origin.instance == 0 {
        return Err(Malformed::Field("instance"));
    }
    if !slots.is_power_of_two() {
        return Err(Malformed::Field("slots"));
    }
    if capacity == 0 {
        return Err(Malformed::Field("capacity"));
    }
    if !(1..=2).contains(&mode) {
        return Err(Malformed::Field("mode"));
    }
    if name_len > MAX_TYPE_NAME {
        return Err(Malformed::Field("type name length"));
    }
    let type_name = std::str::from_utf8(c.take(name_len)?)
        .map_err(|_| Malformed::Field("type name"))?
        .to_owned();
    match kind {
        Kind::Data if count == 0 => return Err(Malformed::Field("count")),
        Kind::Data if seq.checked_add(u64::from(count)).is_none() => {
            return Err(Malformed::Field("seq"))
        }
        Kind::Loss if lost == 0 || seq.checked_add(lost).is_none() => {
            return Err(Malformed::Field("lost"))
        }
        Kind::Loss | Kind::Hello if count != 0 => return Err(Malformed::Field("count")),
        Kind::Data | Kind::Hello if lost != 0 => return Err(Malformed::Field("lost")),
        _ => {}
    }
    // Each message takes at least its 4-byte length: a count the bytes cannot hold is refused
    // before anything is allocated for it.
    if count as usize > c.0.len() / 4 {
        return Err(Malformed::Truncated);
    }
    let mut messages = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = c.u32()?;
        if len > capacity {
            return Err(Malformed::Oversized { len, capacity });
        }
        messages.push(c.take(len as usize)?);
    }
    if !c.0.is_empty() {
        return Err(Malformed::Trailing(c.0.len()));
    }
    Ok(Frame {
        kind,
        origin,
        seq,
        lost,
        shape: Shape {
            slots,
            capacity,
            type_size,
            type_align,
            type_name,
            mode,
        },
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn origin() -> Origin {
        Origin {
            instance: 7,
            source: 99,
        }
    }

    fn shape() -> Shape {
        Shape {
            slots: 1024,
            capacity: 64,
            type_size: 0,
            type_align: 1,
            type_name: "bytes".into(),
            mode: 1,
        }
    }

    #[test]
    fn header_fields_sit_at_their_documented_offsets() {
        let mut e = Encoder::new(origin(), shape());
        let f = e.loss(0x1122, 5);
        assert_eq!(&f[0..2], b"SB");
        assert_eq!(f[2], VERSION);
        assert_eq!(f[3], 2);
        assert_eq!(u64::from_le_bytes(f[8..16].try_into().unwrap()), 7);
        assert_eq!(u64::from_le_bytes(f[16..24].try_into().unwrap()), 99);
        assert_eq!(u64::from_le_bytes(f[24..32].try_into().unwrap()), 0x1122);
        assert_eq!(u64::from_le_bytes(f[32..40].try_into().unwrap()), 5);
        assert_eq!(u64::from_le_bytes(f[40..48].try_into().unwrap()), 1024);
        assert_eq!(u32::from_le_bytes(f[48..52].try_into().unwrap()), 64);
        assert_eq!(u16::from_le_bytes(f[60..62].try_into().unwrap()), 5);
        assert_eq!(&f[HEADER_LEN..], b"bytes");
    }

    #[test]
    fn data_frame_round_trips_with_consecutive_sequences() {
        let mut e = Encoder::new(origin(), shape());
        e.push(10, b"a");
        e.push(11, b"");
        e.push(12, &[9u8; 64]);
        assert_eq!(e.next_seq(), Some(13));
        let bytes = e.take_data().expect("three messages pending");
        assert_eq!(e.pending(), 0);
        let f = decode(&bytes).expect("valid frame");
        assert_eq!((f.kind, f.seq, f.origin), (Kind::Data, 10, origin()));
        assert_eq!(f.messages, vec![&b"a"[..], &b""[..], &[9u8; 64][..]]);
        assert_eq!(f.shape, shape());
    }

    #[test]
    fn an_empty_encoder_yields_no_data_frame() {
        let mut e = Encoder::new(origin(), shape());
        assert!(e.take_data().is_none());
    }

    #[test]
    fn oversized_and_trailing_and_zero_fields_are_refused() {
        let mut e = Encoder::new(origin(), shape());
        e.push(0, b"abc");
        let good = e.take_data().unwrap();
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing), Err(Malformed::Trailing(1)));
        let mut big = good.clone();
        let at = HEADER_LEN + 5;
        big[at..at + 4].copy_from_slice(&65u32.to_le_bytes());
        assert_eq!(
            decode(&big),
            Err(Malformed::Oversized {
                len: 65,
                capacity: 64
            })
        );
        let mut no_instance = good.clone();
        no_instance[8..16].fill(0);
        assert_eq!(decode(&no_instance), Err(Malformed::Field("instance")));
        let mut slots = good.clone();
        slots[40..48].copy_from_slice(&1000u64.to_le_bytes());
        assert_eq!(decode(&slots), Err(Malformed::Field("slots")));
        let mut version = good.clone();
        version[2] = 9;
        assert_eq!(decode(&version), Err(Malformed::Version(9)));
        let mut kind = good;
        kind[3] = 0;
        assert_eq!(decode(&kind), Err(Malformed::Kind(0)));
        assert_eq!(decode(b"hello, zenoh"), Err(Malformed::BadMagic));
    }

    #[test]
    fn a_huge_count_is_refused_without_allocating_for_it() {
        let mut e = Encoder::new(origin(), shape());
        e.push(0, b"x");
        let mut f = e.take_data().unwrap();
        f[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&f), Err(Malformed::Truncated));
    }

    #[test]
    fn a_long_type_name_is_cut_to_a_decodable_length() {
        let mut s = shape();
        s.type_name = "é".repeat(MAX_TYPE_NAME);
        let mut e = Encoder::new(origin(), s);
        let f = e.hello(3);
        let d = decode(&f).expect("decodable");
        assert!(d.shape.type_name.len() <= MAX_TYPE_NAME);
        assert!(d.shape.type_name.chars().all(|c| c == 'é'));
    }

    fn arb_shape() -> impl Strategy<Value = Shape> {
        (
            0u32..20,
            1u32..512,
            any::<u32>(),
            any::<u32>(),
            "[a-z:]{0,40}",
            1u16..=2,
        )
            .prop_map(
                |(p, capacity, type_size, type_align, type_name, mode)| Shape {
                    slots: 1 << p,
                    capacity,
                    type_size,
                    type_align,
                    type_name,
                    mode,
                },
            )
    }

    proptest! {
        #[test]
        fn every_encoded_frame_decodes_to_what_was_encoded(
            shape in arb_shape(),
            instance in 1u64..,
            source in any::<u64>(),
            first in 0u64..u64::MAX / 2,
            lens in proptest::collection::vec(0usize..600, 0..20),
            lost in 1u64..1_000_000,
        ) {
            let o = Origin { instance, source };
            let mut e = Encoder::new(o, shape.clone());
            let msgs: Vec<Vec<u8>> = lens
                .iter()
                .enumerate()
                .map(|(i, &l)| vec![i as u8; l.min(shape.capacity as usize)])
                .collect();
            for (i, m) in msgs.iter().enumerate() {
                e.push(first + i as u64, m);
            }
            match e.take_data() {
                None => prop_assert!(msgs.is_empty()),
                Some(bytes) => {
                    let f = decode(&bytes).expect("encoded data decodes");
                    prop_assert_eq!((f.kind, f.origin, f.seq), (Kind::Data, o, first));
                    prop_assert_eq!(&f.shape, &shape);
                    let got: Vec<Vec<u8>> = f.messages.iter().map(|m| m.to_vec()).collect();
                    prop_assert_eq!(got, msgs);
                }
            }
            let loss = e.loss(first, lost);
            let f = decode(&loss).expect("loss decodes");
            prop_assert_eq!((f.kind, f.seq, f.lost), (Kind::Loss, first, lost));
            let hello = e.hello(first);
            let f = decode(&hello).expect("hello decodes");
            prop_assert_eq!((f.kind, f.seq, f.messages.len()), (Kind::Hello, first, 0));
        }

        #[test]
        fn every_truncation_of_a_valid_frame_is_refused(cut in 0usize..400) {
            let mut e = Encoder::new(origin(), shape());
            e.push(5, b"0123456789");
            e.push(6, &[1u8; 64]);
            let bytes = e.take_data().unwrap();
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(decode(&bytes[..cut]).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn flipped_bytes_of_a_valid_frame_never_panic_the_decoder(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let mut e = Encoder::new(origin(), shape());
            e.push(1, b"abcdefgh");
            e.push(2, b"ijkl");
            let mut bytes = e.take_data().unwrap();
            for (at, v) in flips {
                let n = bytes.len();
                bytes[at % n] ^= v;
            }
            if let Ok(f) = decode(&bytes) {
                prop_assert!(f.messages.iter().all(|m| m.len() <= f.shape.capacity as usize));
            }
        }
    }
}
