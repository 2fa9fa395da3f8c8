//! Flat tables for the ledger's big indexes, and their byte-level snapshot encoding.
//!
//! A ledger of a million members keeps a million member states, a service record per
//! volunteer per occasion and a request id per journal entry. Hash maps of those cost a
//! 16-byte key plus the value plus load-factor slack per element, and decode from a snapshot
//! one insert (and one rehash) at a time. Here the values live in dense vectors in the order
//! they were added, and [`IdIndex`] maps an id to a position with 8-byte slots: the id's
//! hash with its low bits replaced by the position. The id itself is read back from the
//! dense vector only when the stored hash bits match, so a miss (a new request id, the
//! common case) touches one slot, and the table doubles in one sequential pass.
//!
//! Both serialise as flat little-endian byte strings ([`Flat`]), so restoring a snapshot
//! copies them rather than rebuilding them. Decoding is checked: a truncated or malformed
//! byte string is an error, and an index that points nowhere only ever misses, so a hostile
//! snapshot cannot make a lookup panic or loop.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The most slots an index has: a slot keeps the top `64 - bits` bits of its id's hash
/// beside the position (in the low `bits` bits), and a doubling must still find the next
/// bit of the hash there, which needs `bits` ≤ 32.
const MAX_BITS: u32 = 32;
/// The largest position an index can hold (about 3.2 × 10^9): three quarters of the most
/// slots, less one so that the position plus one stays below the slot count.
pub(crate) const MAX_POSITION: usize = (3 << 30) - 2;

fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// A fast, well-mixed 64-bit hash of a 128-bit id (sequential ids spread evenly).
pub(crate) fn hash_id(key: u128) -> u64 {
    let lo = key as u64;
    let hi = (key >> 64) as u64;
    let mixed = folded_multiply(lo ^ 0x243f_6a88_85a3_08d3, hi ^ 0x1319_8a2e_0370_7344);
    folded_multiply(mixed ^ 0xa409_3822_299f_31d0, 0x082e_fa98_ec4e_6c89)
}

/// An open-addressing (linear probing) index from 128-bit ids to positions in a dense
/// vector that holds the ids. Never shrinks; entries are never removed.
///
/// A table of `2^bits` slots keeps in each slot the id's hash with its low `bits` bits
/// replaced by the position plus one (zero is an empty slot). An id's first slot is the top
/// `bits` bits of its hash, so a slot's value alone says where it belongs, in this table and
/// in one twice the size: doubling is one pass over the old slots in order, writing the new
/// table nearly in order, without reading an id back. (Re-inserting every id by its hash
/// costs a cache miss per id; at each doubling of a journal of millions of entries that
/// stalled every write for up to a second.) The `64 - 2 × bits` stored hash bits beside the
/// first slot's tell almost all ids that start at the same slot apart, so a lookup reads an
/// id back, nearly always, only for the id it is looking for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IdIndex {
    /// Empty, or a power of two of slots, at most `2^MAX_BITS`.
    slots: Vec<u64>,
    len: usize,
}

impl IdIndex {
    /// How many ids are indexed.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The slot count's log2 (zero when empty).
    fn bits(&self) -> u32 {
        Self::bits_of(self.slots.len())
    }

    /// The log2 of a slot count (zero for none).
    fn bits_of(cap: usize) -> u32 {
        if cap == 0 {
            0
        } else {
            cap.trailing_zeros()
        }
    }

    /// The low `bits` bits of a slot, which hold the position plus one.
    fn low_mask(bits: u32) -> u64 {
        (1u64 << bits.min(MAX_BITS)) - 1
    }

    /// The slot for `hash` at `position` in a table of `2^bits` slots.
    fn value(hash: u64, position: usize, bits: u32) -> u64 {
        (hash & !Self::low_mask(bits)) | (position as u64 + 1)
    }

    /// The first slot to probe for a hash, or for a slot (they share the top bits), in a
    /// table of `2^bits` slots.
    fn home(hash: u64, bits: u32) -> usize {
        if bits == 0 {
            0
        } else {
            (hash >> (64 - bits)) as usize
        }
    }

    /// The fewest slots (a power of two, at least 16) that hold `count` ids at most three
    /// quarters full (so positions below `count`, plus one, fit in the low bits).
    fn capacity_for(count: usize) -> usize {
        let mut cap = 16;
        while count * 4 > cap * 3 {
            cap *= 2;
        }
        cap
    }

    /// The position of `key`, reading ids back with `key_at`.
    pub(crate) fn find(&self, key: u128, key_at: impl Fn(usize) -> Option<u128>) -> Option<usize> {
        self.probe(key, |position| key_at(position) == Some(key))
    }

    /// The first position, along `key`'s probe sequence, whose slot's stored hash bits
    /// match `key`'s and that `accept` takes; `None` at the first empty slot.
    #[inline(always)]
    fn probe(&self, key: u128, mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
        let cap = self.slots.len();
        if cap == 0 {
            return None;
        }
        let bits = self.bits();
        let low = Self::low_mask(bits);
        let hash = hash_id(key);
        let high = hash & !low;
        let mask = cap - 1;
        let mut i = Self::home(hash, bits);
        for _ in 0..cap {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            if slot & !low == high {
                let position = ((slot & low) - 1) as usize;
                if accept(position) {
                    return Some(position);
                }
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Builds the index over the ids at positions `0..count` (a later position of the same
    /// id wins) in an order that keeps memory access sequential: every id's slot value is
    /// computed in one pass, the values are radix-sorted by their first slot (stable, so
    /// positions of one first slot stay in order), and the slots are then filled front to
    /// back. Inserting a million random ids one by one costs a cache miss (and a TLB miss)
    /// each; this costs a few sequential passes.
    pub(crate) fn build(count: usize, key_at: impl Fn(usize) -> Option<u128>) -> IdIndex {
        let count = count.min(MAX_POSITION + 1);
        let cap = Self::capacity_for(count);
        let bits = cap.trailing_zeros();
        let mut values: Vec<u64> = (0..count)
            .filter_map(|position| Some(Self::value(hash_id(key_at(position)?), position, bits)))
            .collect();
        // Stable LSD radix sort on the top `bits` bits, eleven at a time.
        let mut spare = vec![0u64; values.len()];
        let mut shift = 64 - bits;
        while shift < 64 {
            let width = (64 - shift).min(11);
            let mask = (1u64 << width) - 1;
            let mut starts = vec![0usize; 1 << width];
            for &v in &values {
                starts[((v >> shift) & mask) as usize] += 1;
            }
            let mut sum = 0;
            for s in starts.iter_mut() {
                let c = *s;
                *s = sum;
                sum += c;
            }
            for &v in &values {
                let digit = ((v >> shift) & mask) as usize;
                if let Some(at) = starts.get_mut(digit) {
                    if let Some(out) = spare.get_mut(*at) {
                        *out = v;
                    }
                    *at += 1;
                }
            }
            std::mem::swap(&mut values, &mut spare);
            shift += width;
        }
        drop(spare);
        let mut index = IdIndex {
            slots: vec![0; cap],
            len: 0,
        };
        let low = Self::low_mask(bits);
        for value in values {
            let new = ((value & low) - 1) as usize;
            index.put(value, |old| {
                key_at(old).is_some() && key_at(old) == key_at(new)
            });
        }
        index
    }

    /// Starts loading the slot where a lookup of `key` starts (see [`prefetch`]), so that
    /// its cache line is on its way while the caller does other work and a later lookup
    /// hits the cache.
    pub(crate) fn touch(&self, key: u128) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[Self::home(hash_id(key), self.bits())], |slot| {
                *slot
            });
        }
    }

    /// The position a lookup of `key` would read back first: that of the first slot from
    /// its home whose stored hash bits match, without checking the id there. Only a hint
    /// for loading that item early (almost always it is the one `find` returns); `None`
    /// when the probe reaches an empty slot first.
    pub(crate) fn candidate(&self, key: u128) -> Option<usize> {
        self.probe(key, |_| true)
    }

    /// Points `key` at `position`, replacing the position it had (`key_at` reads the ids
    /// of slots whose stored hash bits match). Grows the table first if needed. Positions
    /// past [`MAX_POSITION`] are not indexed.
    pub(crate) fn insert(
        &mut self,
        key: u128,
        position: usize,
        key_at: impl Fn(usize) -> Option<u128>,
    ) {
        if position > MAX_POSITION {
            return;
        }
        // At most three quarters full (probes stay short and an empty slot always exists),
        // and more slots than the position plus one (it must fit in the low bits).
        let mut cap = self.slots.len().max(16);
        while (self.len + 1) * 4 > cap * 3 || position >= cap - 1 {
            cap *= 2;
        }
        if Self::bits_of(cap) > MAX_BITS {
            // Only a hostile snapshot's index, full of slots no id owns, gets here.
            return;
        }
        if cap != self.slots.len() {
            self.grow_to(cap);
        }
        let value = Self::value(hash_id(key), position, self.bits());
        self.put(value, |old| key_at(old) == Some(key));
    }

    /// Stores a slot value: in the first empty slot from its first slot on, or over the
    /// slot whose position `same` says holds the same id.
    fn put(&mut self, value: u64, same: impl Fn(usize) -> bool) {
        let cap = self.slots.len();
        let bits = self.bits();
        let low = Self::low_mask(bits);
        let mask = cap - 1;
        let mut i = Self::home(value, bits);
        for _ in 0..cap {
            let slot = self.slots[i];
            if slot == 0 {
                self.slots[i] = value;
                self.len += 1;
                return;
            }
            if slot & !low == value & !low && same(((slot & low) - 1) as usize) {
                self.slots[i] = value;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Moves every slot into a table of `cap` slots (a larger power of two), in one pass:
    /// each slot's first slot in the new table is its own top bits, and it gives the low
    /// hash bits the larger position field needs. Starting after an empty slot keeps every
    /// run of slots whole, so the new table is written nearly in order.
    fn grow_to(&mut self, cap: usize) {
        let bits = Self::bits_of(cap);
        debug_assert!(bits <= MAX_BITS && (self.slots.is_empty() || bits > self.bits()));
        let low = Self::low_mask(bits);
        let old_low = Self::low_mask(self.bits());
        let old = std::mem::replace(&mut self.slots, vec![0; cap]);
        let start = old.iter().position(|&slot| slot == 0).unwrap_or(0);
        let mask = cap - 1;
        for &slot in old[start..].iter().chain(&old[..start]) {
            if slot == 0 {
                continue;
            }
            let value = (slot & !low) | (slot & old_low);
            let mut i = Self::home(slot, bits);
            for _ in 0..cap {
                if self.slots[i] == 0 {
                    self.slots[i] = value;
                    break;
                }
                i = (i + 1) & mask;
            }
        }
    }

    /// The index over the ids at positions `0..count` (later positions win), one insert at
    /// a time, growing as it goes: what the bulk [`IdIndex::build`] must agree with.
    #[cfg(test)]
    pub(crate) fn one_by_one(count: usize, key_at: impl Fn(usize) -> Option<u128>) -> IdIndex {
        let mut index = IdIndex::default();
        for position in 0..count {
            if let Some(key) = key_at(position) {
                index.insert(key, position, &key_at);
            }
        }
        index
    }
}

impl Serialize for IdIndex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = Vec::with_capacity(self.slots.len() * 8);
        for slot in &self.slots {
            out.extend_from_slice(&slot.to_le_bytes());
        }
        serializer.serialize_bytes(&out)
    }
}

impl<'de> Deserialize<'de> for IdIndex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = deserializer.deserialize_bytes(BytesVisitor)?;
        let bytes = bytes.as_slice();
        if bytes.len() % 8 != 0 {
            return Err(de::Error::custom(
                "index: length is not a whole number of slots",
            ));
        }
        let slots: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        if !(slots.is_empty() || slots.len().is_power_of_two()) {
            return Err(de::Error::custom("index: slot count is not a power of two"));
        }
        let bits = IdIndex::bits_of(slots.len());
        if bits > MAX_BITS {
            return Err(de::Error::custom("index: too many slots"));
        }
        let low = IdIndex::low_mask(bits);
        let len = slots.iter().filter(|&&s| s != 0).count();
        if len * 4 > slots.len() * 3 || slots.iter().any(|&s| s != 0 && s & low == 0) {
            return Err(de::Error::custom("index: malformed slots"));
        }
        Ok(IdIndex { slots, len })
    }
}

/// Bytes from a deserializer: borrowed, owned, or (for self-describing formats) a sequence.
enum Bytes<'de> {
    Borrowed(&'de [u8]),
    Owned(Vec<u8>),
}

impl Bytes<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(b) => b,
            Bytes::Owned(b) => b,
        }
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }
    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        Ok(Bytes::Borrowed(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(Bytes::Owned(v.to_vec()))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        Ok(Bytes::Owned(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(Bytes::Owned(out))
    }
}

/// A cursor over snapshot bytes; every read is checked.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }
    fn remaining(&self) -> usize {
        self.bytes.len()
    }
}

/// A value with a compact byte encoding of its own, for [`flat`] vectors.
pub(crate) trait Flat: Sized {
    /// The fewest bytes a value takes (bounds the allocation for a claimed count).
    const MIN_BYTES: usize;
    /// The bytes [`Flat::put`] appends for this value, so a table's buffer is sized once
    /// instead of regrown (and copied) as it fills.
    fn encoded_len(&self) -> usize {
        Self::MIN_BYTES
    }
    /// Appends the value's bytes.
    fn put(&self, out: &mut Vec<u8>);
    /// Reads a value; `None` if the bytes are short or invalid.
    fn get(input: &mut Reader<'_>) -> Option<Self>;
}

/// `#[serde(with = "flat")]` for a `Vec<T: Flat>`: a count and the values' bytes, as one
/// byte string.
pub(crate) mod flat {
    use super::*;

    pub(crate) fn serialize<T: Flat, S: Serializer>(
        values: &[T],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serialize_iter(values.len(), values.iter(), serializer)
    }

    /// The flat form of `count` values given one by one (`values` yields them twice: once
    /// to size the buffer, once to fill it).
    pub(crate) fn serialize_iter<'a, T: Flat + 'a, S: Serializer>(
        count: usize,
        values: impl Iterator<Item = &'a T> + Clone,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let len = 8 + values.clone().map(Flat::encoded_len).sum::<usize>();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&(count as u64).to_le_bytes());
        for v in values {
            v.put(&mut out);
        }
        debug_assert_eq!(out.len(), len, "Flat::encoded_len disagrees with Flat::put");
        serializer.serialize_bytes(&out)
    }

    pub(crate) fn deserialize<'de, T: Flat, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<T>, D::Error> {
        let bytes = deserializer.deserialize_bytes(BytesVisitor)?;
        decode(bytes.as_slice()).ok_or_else(|| de::Error::custom("malformed flat table"))
    }

    pub(crate) fn decode<T: Flat>(bytes: &[u8]) -> Option<Vec<T>> {
        let mut out = Vec::new();
        decode_into(bytes, &mut out, Vec::reserve, Vec::push)?;
        Some(out)
    }

    /// Reads a flat table into `out`: `reserve` gets the (checked) count first, `push` every
    /// value in order. `None` if the bytes are not exactly a flat table.
    pub(crate) fn decode_into<T: Flat, O>(
        bytes: &[u8],
        out: &mut O,
        reserve: fn(&mut O, usize),
        push: fn(&mut O, T),
    ) -> Option<()> {
        let mut input = Reader { bytes };
        let count = usize::try_from(input.u64()?).ok()?;
        if count.checked_mul(T::MIN_BYTES.max(1))? > input.remaining() {
            return None;
        }
        reserve(out, count);
        for _ in 0..count {
            push(out, T::get(&mut input)?);
        }
        (input.remaining() == 0).then_some(())
    }

    /// The flat form for a [`Chunks`] table: the same bytes as for a vector of its values.
    pub(crate) mod chunks {
        use super::*;

        pub(crate) fn serialize<T: Flat, S: Serializer>(
            values: &Chunks<T>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            serialize_iter(values.len(), values.iter(), serializer)
        }

        pub(crate) fn deserialize<'de, T: Flat, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Chunks<T>, D::Error> {
            let bytes = deserializer.deserialize_bytes(BytesVisitor)?;
            let mut out = Chunks::default();
            decode_into(bytes.as_slice(), &mut out, |_, _| {}, Chunks::push)
                .ok_or_else(|| de::Error::custom("malformed flat table"))?;
            Ok(out)
        }
    }
}

/// A vector that grows a chunk at a time, for the tables that only ever grow (one value per
/// journal entry). One vector grows by doubling, and each doubling copies the whole table
/// into fresh memory: at ten million entries, hundreds of megabytes copied on the writer
/// thread while every till waits, and twice the memory for a moment. A new chunk is a
/// fresh allocation that nothing is copied into.
///
/// Every chunk but the last holds exactly [`CHUNK`] values, so a position is found with
/// a shift and a mask. Full chunks are shared between a table and its clones and copied
/// only when one side changes a value in them, so a copy of the ledger for a checkpoint
/// costs a pointer per chunk here instead of a copy of every entry's slot.
#[derive(Clone, Debug)]
pub(crate) struct Chunks<T> {
    /// Full chunks, each exactly `CHUNK` long, in order.
    full: Vec<Arc<Vec<T>>>,
    /// The chunk appends go into: shorter than `CHUNK`.
    tail: Vec<T>,
}

/// The log2 of [`CHUNK`]. The crate's unit tests use tiny chunks, so that their random
/// tables cross many chunk boundaries.
#[cfg(not(test))]
const CHUNK_BITS: u32 = 16;
#[cfg(test)]
const CHUNK_BITS: u32 = 2;

/// How many values a full [`Chunks`] chunk holds (1.5 MiB of request slots).
const CHUNK: usize = 1 << CHUNK_BITS;

impl<T> Default for Chunks<T> {
    fn default() -> Self {
        Chunks {
            full: Vec::new(),
            tail: Vec::new(),
        }
    }
}

impl<T> Chunks<T> {
    pub(crate) fn len(&self) -> usize {
        self.full.len() * CHUNK + self.tail.len()
    }

    pub(crate) fn get(&self, position: usize) -> Option<&T> {
        let chunk = position >> CHUNK_BITS;
        let within = position & (CHUNK - 1);
        match self.full.get(chunk) {
            Some(values) => values.get(within),
            None if chunk == self.full.len() => self.tail.get(within),
            None => None,
        }
    }

    pub(crate) fn push(&mut self, value: T) {
        debug_assert!(self.tail.len() < CHUNK);
        if self.tail.capacity() == 0 && !self.full.is_empty() {
            // Past the first chunk, each starts at its full size. The first grows as a
            // vector does, so that a small ledger (one of many programmes, or a test's)
            // does not take a whole chunk for a few entries.
            self.tail.reserve_exact(CHUNK);
        }
        self.tail.push(value);
        if self.tail.len() == CHUNK {
            // A full tail is shared from now on; moving it copies no values.
            self.full.push(Arc::new(std::mem::take(&mut self.tail)));
        }
    }

    /// Every value in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + Clone + '_ {
        self.full.iter().flat_map(|c| c.iter()).chain(&self.tail)
    }
}

impl<T: Clone> Chunks<T> {
    /// The value at `position`, to change: a full chunk is copied first if a clone shares
    /// it.
    pub(crate) fn get_mut(&mut self, position: usize) -> Option<&mut T> {
        let chunk = position >> CHUNK_BITS;
        let within = position & (CHUNK - 1);
        if chunk < self.full.len() {
            Arc::make_mut(&mut self.full[chunk]).get_mut(within)
        } else if chunk == self.full.len() {
            self.tail.get_mut(within)
        } else {
            None
        }
    }
}

/// Starts loading the cache line that holds `value`, without waiting for it.
///
/// On x86-64 this is a `prefetcht0`, which retires at once: the loads for a whole group of
/// lookups are then in flight while the group before is applied. A plain load used as a
/// hint instead holds up retirement until its miss returns, so the misses overlapped each
/// other but not the work. Elsewhere the hint is such a load, through `read`.
#[inline(always)]
pub(crate) fn prefetch<T, R>(value: &T, read: impl FnOnce(&T) -> R) {
    #[cfg(target_arch = "x86_64")]
    {
        let _ = read;
        safe_arch::prefetch_t0(value);
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::hint::black_box(read(value));
    }
}

/// Something kept in a [`Keyed`] table under a 128-bit id.
pub(crate) trait HasKey {
    fn key(&self) -> u128;
}

/// Values in insertion order with an [`IdIndex`] over their ids: lookup by id, or by
/// position (the `u32` the ledger keeps instead of the 16-byte id).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(serialize = "T: Flat", deserialize = "T: Flat"))]
pub(crate) struct Keyed<T> {
    #[serde(with = "flat")]
    items: Vec<T>,
    index: IdIndex,
}

impl<T> Default for Keyed<T> {
    fn default() -> Self {
        Keyed {
            items: Vec::new(),
            index: IdIndex::default(),
        }
    }
}

impl<T: HasKey> Keyed<T> {
    pub(crate) fn position(&self, key: u128) -> Option<usize> {
        let items = &self.items;
        self.index.find(key, |i| items.get(i).map(HasKey::key))
    }

    /// See [`IdIndex::touch`].
    pub(crate) fn touch(&self, key: u128) {
        self.index.touch(key);
    }

    /// The second step after [`Keyed::touch`]: once the index slot is loaded, starts
    /// loading the item it points at, which a lookup reads to confirm the id. Only a hint,
    /// like `touch`.
    pub(crate) fn touch_item(&self, key: u128) {
        if let Some(item) = self.index.candidate(key).and_then(|p| self.items.get(p)) {
            prefetch(item, HasKey::key);
        }
    }

    pub(crate) fn get(&self, key: u128) -> Option<&T> {
        self.position(key).and_then(|i| self.items.get(i))
    }

    pub(crate) fn get_mut(&mut self, key: u128) -> Option<&mut T> {
        let i = self.position(key)?;
        self.items.get_mut(i)
    }

    pub(crate) fn at(&self, position: usize) -> Option<&T> {
        self.items.get(position)
    }

    pub(crate) fn at_mut(&mut self, position: usize) -> Option<&mut T> {
        self.items.get_mut(position)
    }

    pub(crate) fn items(&self) -> &[T] {
        &self.items
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Adds a value, or replaces the one with the same id in place. Returns its position.
    pub(crate) fn upsert(&mut self, value: T) -> usize {
        let key = value.key();
        if let Some(i) = self.position(key) {
            self.items[i] = value;
            return i;
        }
        self.push(value)
    }

    /// Appends a value and points its id at it (a later value with the same id wins).
    pub(crate) fn push(&mut self, value: T) -> usize {
        let key = value.key();
        let position = self.items.len();
        self.items.push(value);
        let items = &self.items;
        self.index
            .insert(key, position, |i| items.get(i).map(HasKey::key));
        position
    }

    /// Rebuilds the index from the values (for a snapshot whose index has another layout).
    pub(crate) fn reindex(&mut self) {
        let items = &self.items;
        self.index = IdIndex::build(items.len(), |i| items.get(i).map(HasKey::key));
    }

    /// Whether the index covers the values (a check on a restored snapshot).
    pub(crate) fn consistent(&self) -> bool {
        self.index.len() <= self.items.len()
    }
}

/// Values appended in order (a value's position is its sequence number) with an
/// [`IdIndex`] that is brought up to date only when a lookup needs it: replaying a journal
/// appends without touching the index, and the first lookup afterwards builds it in one
/// sequential pass ([`IdIndex::build`]). The index is not part of the snapshot.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(serialize = "T: Flat", deserialize = "T: Flat"))]
pub(crate) struct Log<T> {
    #[serde(with = "flat::chunks")]
    items: Chunks<T>,
    #[serde(skip)]
    index: IdIndex,
    /// How many of `items` the index covers.
    #[serde(skip)]
    indexed: usize,
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Log {
            items: Chunks::default(),
            index: IdIndex::default(),
            indexed: 0,
        }
    }
}

impl<T: Clone> Log<T> {
    /// A copy of the values without the index (which is rebuilt on the copy's first
    /// lookup, as after a replay).
    pub(crate) fn clone_unindexed(&self) -> Self {
        Log {
            items: self.items.clone(),
            index: IdIndex::default(),
            indexed: 0,
        }
    }

    pub(crate) fn at_mut(&mut self, position: usize) -> Option<&mut T> {
        self.items.get_mut(position)
    }
}

impl<T: HasKey> Log<T> {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The value at `position`.
    pub(crate) fn get(&self, position: usize) -> Option<&T> {
        self.items.get(position)
    }

    /// Appends a value without indexing it yet.
    pub(crate) fn push(&mut self, value: T) {
        self.items.push(value);
    }

    /// Appends a value and indexes it at once if the index is up to date (the slot is
    /// usually in cache from the lookup that preceded it).
    pub(crate) fn push_indexed(&mut self, value: T) {
        let key = value.key();
        self.items.push(value);
        if self.indexed + 1 == self.items.len() {
            let items = &self.items;
            let position = items.len() - 1;
            self.index
                .insert(key, position, |i| items.get(i).map(HasKey::key));
            self.indexed = self.items.len();
        }
    }

    /// Brings the index up to date: a short backlog one insert at a time, a long one by a
    /// rebuild.
    pub(crate) fn index_all(&mut self) {
        let len = self.items.len();
        if self.indexed == len {
            return;
        }
        let items = &self.items;
        let key_at = |i: usize| items.get(i).map(HasKey::key);
        if (len - self.indexed) * 16 < len {
            for position in self.indexed..len {
                if let Some(key) = key_at(position) {
                    self.index.insert(key, position, key_at);
                }
            }
        } else {
            self.index = IdIndex::build(len, key_at);
        }
        self.indexed = len;
    }

    /// The position of `key`. Call [`Log::index_all`] first; values appended since are
    /// not found.
    pub(crate) fn position(&self, key: u128) -> Option<usize> {
        let items = &self.items;
        self.index.find(key, |i| items.get(i).map(HasKey::key))
    }

    /// See [`IdIndex::touch`].
    pub(crate) fn touch(&self, key: u128) {
        self.index.touch(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Clone, Debug, PartialEq)]
    struct Item(u128, u32);
    impl HasKey for Item {
        fn key(&self) -> u128 {
            self.0
        }
    }
    impl Flat for Item {
        const MIN_BYTES: usize = 20;
        fn put(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.0.to_le_bytes());
            out.extend_from_slice(&self.1.to_le_bytes());
        }
        fn get(input: &mut Reader<'_>) -> Option<Self> {
            Some(Item(u128::from_le_bytes(input.take()?), input.u32()?))
        }
    }

    /// A table in the flat form, as a vector and as chunks.
    #[derive(Serialize, Deserialize)]
    struct AsVector(#[serde(with = "flat")] Vec<Item>);
    #[derive(Serialize, Deserialize)]
    struct AsChunks(#[serde(with = "flat::chunks")] Chunks<Item>);

    proptest! {
        /// Pushes and upserts against a std HashMap of id to the last value.
        #[test]
        fn keyed_matches_a_hash_map(ops in prop::collection::vec((0u128..300, any::<u32>(), any::<bool>()), 0..2000)) {
            let mut table: Keyed<Item> = Keyed::default();
            let mut model: HashMap<u128, u32> = HashMap::new();
            for (key, value, upsert) in &ops {
                // Spread keys over the high bits too.
                let key = key.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
                if *upsert { table.upsert(Item(key, *value)); } else { table.push(Item(key, *value)); }
                model.insert(key, *value);
            }
            for (key, value) in &model {
                prop_assert_eq!(table.get(*key).map(|i| i.1), Some(*value));
            }
            prop_assert_eq!(table.get(12345).map(|i| i.1), model.get(&12345).copied());
            let bytes = postcard::to_allocvec(&table).unwrap();
            let back: Keyed<Item> = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&back.items, &table.items);
            prop_assert_eq!(&back.index, &table.index);
            let rebuilt = IdIndex::build(table.items.len(), |i| table.items.get(i).map(|x| x.0));
            for (key, value) in &model {
                let found = rebuilt.find(*key, |i| table.items.get(i).map(|x| x.0));
                prop_assert_eq!(found.map(|i| table.items[i].1), Some(*value));
            }
            // A restored table goes on growing: its slots move to larger tables by their
            // stored bits alone, and everything stays found.
            let mut back = back;
            for extra in 0..600u128 {
                let key = (extra + 1_000).wrapping_mul(0x2545_f491_4f6c_dd1d_9e37_79b9_7f4a_7c15);
                back.push(Item(key, extra as u32));
                model.insert(key, extra as u32);
            }
            for (key, value) in &model {
                prop_assert_eq!(back.get(*key).map(|i| i.1), Some(*value));
            }
        }

        /// The bulk build finds what one-by-one inserts find, and a log indexed lazily
        /// answers like a map.
        #[test]
        fn bulk_build_and_log_match_a_hash_map(keys in prop::collection::vec(0u128..500, 0..3000), split in 0usize..3000) {
            let keys: Vec<u128> = keys.iter().map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)).collect();
            let built = IdIndex::build(keys.len(), |i| keys.get(i).copied());
            let mut model: HashMap<u128, usize> = HashMap::new();
            for (i, k) in keys.iter().enumerate() {
                model.insert(*k, i);
            }
            prop_assert_eq!(built.len(), model.len());
            for (k, i) in &model {
                prop_assert_eq!(built.find(*k, |p| keys.get(p).copied()), Some(*i));
                // The hint for loading an id's item early points at an item that exists.
                prop_assert!(built.candidate(*k).is_some_and(|p| p < keys.len()));
            }
            prop_assert_eq!(IdIndex::default().candidate(7), None);
            // Inserting one by one doubles the table again and again on the way.
            let grown = IdIndex::one_by_one(keys.len(), |i| keys.get(i).copied());
            prop_assert_eq!(grown.len(), model.len());
            for (k, i) in &model {
                prop_assert_eq!(grown.find(*k, |p| keys.get(p).copied()), Some(*i));
            }
            prop_assert_eq!(grown.find(7, |p| keys.get(p).copied()), model.get(&7).copied());
            let mut log: Log<Item> = Log::default();
            for (i, k) in keys.iter().enumerate() {
                if i < split.min(keys.len()) { log.push(Item(*k, i as u32)); } else { log.index_all(); log.push_indexed(Item(*k, i as u32)); }
            }
            log.index_all();
            for (k, i) in &model {
                prop_assert_eq!(log.position(*k), Some(*i));
            }
            prop_assert_eq!(log.position(7), model.get(&7).copied());
        }

        /// A chunked table answers like a vector through pushes and changes, its clones
        /// never see later changes on either side, and its flat form is a vector's.
        #[test]
        fn chunks_match_a_vector(ops in prop::collection::vec((any::<u32>(), any::<u16>(), 0u8..4), 0..200)) {
            let mut table: Chunks<Item> = Chunks::default();
            let mut model: Vec<Item> = Vec::new();
            let mut clones: Vec<(Chunks<Item>, Vec<Item>)> = Vec::new();
            for (value, at, what) in &ops {
                let item = Item(u128::from(*value) << 64, *value);
                match what {
                    0 | 1 => {
                        table.push(item.clone());
                        model.push(item);
                    }
                    2 => {
                        let at = usize::from(*at) % (model.len() + 2);
                        let changed = table.get_mut(at).map(|v| *v = item.clone()).is_some();
                        prop_assert_eq!(changed, at < model.len());
                        if let Some(v) = model.get_mut(at) {
                            *v = item;
                        }
                    }
                    _ => clones.push((table.clone(), model.clone())),
                }
                prop_assert_eq!(table.len(), model.len());
            }
            for (i, v) in model.iter().enumerate() {
                prop_assert_eq!(table.get(i), Some(v));
            }
            prop_assert_eq!(table.get(model.len()), None);
            prop_assert_eq!(table.get(model.len() + CHUNK), None);
            prop_assert!(table.iter().eq(model.iter()));
            for (clone, then) in &clones {
                prop_assert_eq!(clone.len(), then.len());
                prop_assert!(clone.iter().eq(then.iter()));
            }
            let as_vector = postcard::to_allocvec(&AsVector(model.clone())).unwrap();
            let as_chunks = postcard::to_allocvec(&AsChunks(table)).unwrap();
            prop_assert_eq!(&as_chunks, &as_vector);
            let back: AsChunks = postcard::from_bytes(&as_vector).unwrap();
            prop_assert!(back.0.iter().eq(model.iter()));
            prop_assert_eq!(back.0.len(), model.len());
        }

        /// Any bytes either decode or are refused; lookups in what decodes never panic.
        #[test]
        fn hostile_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), key in any::<u128>()) {
            if let Ok(table) = postcard::from_bytes::<Keyed<Item>>(&bytes) {
                table.touch_item(key);
                let _ = table.get(key);
                let mut table = table;
                table.push(Item(key, 1));
                prop_assert_eq!(table.get(key).map(|i| i.1), Some(1));
            }
        }
    }

    /// An empty table (no slots at all) snapshots, restores, and takes its first id.
    #[test]
    fn an_empty_table_round_trips_and_grows() {
        let table: Keyed<Item> = Keyed::default();
        let bytes = postcard::to_allocvec(&table).unwrap();
        let mut back: Keyed<Item> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.get(5), None);
        back.push(Item(5, 1));
        assert_eq!(back.get(5).map(|i| i.1), Some(1));
        assert_eq!(IdIndex::build(0, |_| None).len(), 0);
    }

    #[test]
    fn corrupt_index_is_an_error() {
        let mut table: Keyed<Item> = Keyed::default();
        for k in 1..100u128 {
            table.push(Item(k, 0));
        }
        let bytes = postcard::to_allocvec(&table).unwrap();
        for cut in [1, 7, 100, bytes.len() - 1] {
            assert!(postcard::from_bytes::<Keyed<Item>>(&bytes[..cut]).is_err());
        }
        // A slot count that is not a power of two.
        let bad = (vec![Item(1, 1)], vec![1u8; 24]);
        let mut out = Vec::new();
        out.extend_from_slice(&1u64.to_le_bytes());
        bad.0[0].put(&mut out);
        let encoded =
            postcard::to_allocvec(&(serde_bytes_like(&out), serde_bytes_like(&bad.1))).unwrap();
        assert!(postcard::from_bytes::<Keyed<Item>>(&encoded).is_err());
    }

    struct ByteStr<'a>(&'a [u8]);
    impl Serialize for ByteStr<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    fn serde_bytes_like(b: &[u8]) -> ByteStr<'_> {
        ByteStr(b)
    }
}
