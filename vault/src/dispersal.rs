//! k-of-n dispersal: one object becomes `n` shards, any `k` of which rebuild
//! it, while any `k − 1` of them reveal neither the key nor any plaintext.
//!
//! The scheme is AONT-RS (Resch & Plank, FAST 2011): the object is encrypted
//! under a fresh random key, the key is hidden by an all-or-nothing transform
//! (XOR with a hash of all the ciphertext), and ciphertext and hidden key
//! are cut into `k` data pieces plus `n − k` parity pieces by a systematic
//! Reed–Solomon code. Whoever holds fewer than `k` shards lacks part of the
//! ciphertext, so cannot compute the hash, so cannot unmask the key. Nothing
//! here needs the key to repair a shard: missing pieces are rebuilt from the
//! Reed–Solomon code alone.
//!
//! # Format, versions 1 and 2
//!
//! All integers are big-endian. Let `L` be the object's length, `S` the
//! segment size (1 MiB by default), `id` the object's 16-byte identifier.
//!
//! 1. **Key.** `K` = 32 random bytes, never stored.
//! 2. **Segments.** The plaintext is cut into `m = max(1, ⌈L / S⌉)`
//!    segments of `S` bytes (the last one shorter, possibly empty).
//!    Segment `i` is encrypted with AES-256-GCM under `K`, nonce = 4 zero
//!    bytes ‖ `i` as u64, associated data =
//!    `"caliop-dispersal"` ‖ version (u8) ‖ k (u8) ‖ n (u8) ‖ S (u32) ‖ id ‖
//!    L (u64) ‖ i (u32) ‖ m (u32), giving `C_i` = ciphertext ‖ 16-byte tag.
//! 3. **Pieces.** Each `C_i` is cut into `k` pieces of `p = ⌈len / k⌉`
//!    bytes rounded up to an even number (zero padding at the end), and
//!    `n − k` parity pieces of the same length are computed with the
//!    systematic Reed–Solomon code over GF(2¹⁶) of Leopard-RS (implemented
//!    by the `reed-solomon-simd` crate, version 3): pieces `0..k` are the
//!    data, pieces `k..n` the code's recovery shards `0..n−k`. The body of
//!    shard `j` is its header (below) ‖ piece `j` of `C_0` ‖ … ‖ piece `j`
//!    of `C_{m−1}`.
//!
//!    Version 2 differs only in this code: the systematic Reed–Solomon
//!    code over GF(2⁸) of the `reed-solomon-erasure` crate, version 6
//!    (Vandermonde-derived, `galois_8`), whose decoder costs microseconds
//!    on a mail-sized object where Leopard's costs a fixed ~0.35 ms.
//!    Objects shorter than [`SMALL_OBJECT`] are written in version 2,
//!    larger ones in version 1 (Leopard encodes large blocks faster).
//! 4. **All-or-nothing transform.** `P_j` = BLAKE3 of the body of data
//!    shard `j` (for `j < k`); `h` = BLAKE3 in key-derivation mode with
//!    context `"caliop dispersal v1 all-or-nothing"` over
//!    `P_0 ‖ … ‖ P_{k−1}`; the key block `B = K ⊕ h` (32 bytes). `h`
//!    depends on every byte of ciphertext (the data shards are the
//!    ciphertext), and any `k − 1` shards leave at least one data shard
//!    undetermined, so they cannot give `h`, nor `K`. (Hashing the shard
//!    bodies rather than the ciphertext lets the manifest hashes below and
//!    `h` share one pass over the bytes.)
//! 5. **Shard `j`** = its body ‖ piece `j` of `B` (cut and coded as in 3).
//!    Header, 48 bytes: magic `"CALIOPDS"`, version (1 or 2), k, n, j (one byte
//!    each), S (u32), id (16 bytes), L (u64), 8 zero bytes.
//! 6. **Manifest.** The BLAKE3 hash of each whole shard is kept in the
//!    database next to the site that holds it; a shard whose hash differs is
//!    discarded before decoding.
//!
//! Decoding takes any `k` shards with identical headers (but for `j`),
//! restores the data pieces of every segment and of `B`, recomputes `h`
//! from the data shards' bodies, unmasks `K` and opens every segment; a
//! wrong piece anywhere yields a wrong `K` and no segment authenticates.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use reed_solomon_erasure::galois_8::ReedSolomon as Galois8;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use std::sync::Arc;

use crate::VaultError;

/// Leopard-RS over GF(2¹⁶) (`reed-solomon-simd`).
pub const VERSION: u8 = 1;
/// Vandermonde RS over GF(2⁸) (`reed-solomon-erasure`), for small objects.
pub const VERSION_SMALL: u8 = 2;
/// Objects below this many bytes are written in [`VERSION_SMALL`]: there a
/// degraded read costs tens of microseconds instead of Leopard's fixed
/// ~0.35 ms, and above it Leopard encodes and decodes faster
/// (`caliop bench vault` measures both sides of it).
pub const SMALL_OBJECT: usize = 256 * 1024;
pub const MAGIC: &[u8; 8] = b"CALIOPDS";
pub const HEADER_LEN: usize = 48;
/// Plaintext bytes per segment.
pub const SEGMENT_SIZE: u32 = 1 << 20;
/// Most shards per object.
pub const MAX_SHARDS: u8 = 32;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const AONT_CONTEXT: &str = "caliop dispersal v1 all-or-nothing";

fn error(message: impl Into<String>) -> VaultError {
    VaultError::Dispersal(message.into())
}

/// Redundancy: any `k` of `n` shards rebuild an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    k: u8,
    n: u8,
}

impl Params {
    /// `2 ≤ k < n ≤ 32`: one shard alone must never be enough, and at least
    /// one shard may be lost.
    pub fn new(k: u8, n: u8) -> Result<Params, VaultError> {
        if k < 2 {
            return Err(error(format!(
                "k = {k}: at least 2 shards must be needed to read an object"
            )));
        }
        if n <= k {
            return Err(error(format!(
                "{k}-of-{n}: n must exceed k, or losing one shard loses the object"
            )));
        }
        if n > MAX_SHARDS {
            return Err(error(format!(
                "n = {n}: at most {MAX_SHARDS} shards per object"
            )));
        }
        Ok(Params { k, n })
    }

    pub fn k(self) -> u8 {
        self.k
    }

    pub fn n(self) -> u8 {
        self.n
    }

    fn parity(self) -> usize {
        usize::from(self.n - self.k)
    }
}

impl std::fmt::Display for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-of-{}", self.k, self.n)
    }
}

/// What every shard of one object says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// [`VERSION`] or [`VERSION_SMALL`]: which Reed–Solomon code.
    pub version: u8,
    pub params: Params,
    pub index: u8,
    pub segment_size: u32,
    pub object_id: [u8; 16],
    pub length: u64,
}

impl Header {
    pub fn parse(shard: &[u8]) -> Result<Header, VaultError> {
        let h = shard
            .get(..HEADER_LEN)
            .ok_or_else(|| error("shard shorter than its header"))?;
        if &h[..8] != MAGIC {
            return Err(error("not a Caliop shard"));
        }
        if h[8] != VERSION && h[8] != VERSION_SMALL {
            return Err(error(format!(
                "shard format version {} is not supported",
                h[8]
            )));
        }
        let params = Params::new(h[9], h[10])?;
        let index = h[11];
        if index >= params.n {
            return Err(error(format!(
                "shard index {index} out of range for {params}"
            )));
        }
        if h[40..48].iter().any(|&b| b != 0) {
            return Err(error("reserved header bytes are not zero"));
        }
        let segment_size = u32::from_be_bytes(h[12..16].try_into().unwrap_or_default());
        if segment_size == 0 {
            return Err(error("segment size 0"));
        }
        Ok(Header {
            version: h[8],
            params,
            index,
            segment_size,
            object_id: h[16..32].try_into().unwrap_or_default(),
            length: u64::from_be_bytes(h[32..40].try_into().unwrap_or_default()),
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[self.version, self.params.k, self.params.n, self.index]);
        out.extend_from_slice(&self.segment_size.to_be_bytes());
        out.extend_from_slice(&self.object_id);
        out.extend_from_slice(&self.length.to_be_bytes());
        out.extend_from_slice(&[0; 8]);
    }

    fn segments(&self) -> u64 {
        self.length.div_ceil(u64::from(self.segment_size)).max(1)
    }

    /// Ciphertext length of each segment, then of the key block.
    fn blocks(&self) -> impl Iterator<Item = usize> + '_ {
        let m = self.segments();
        let s = u64::from(self.segment_size);
        (0..m)
            .map(move |i| (self.length - i * s).min(s) as usize + TAG_LEN)
            .chain(std::iter::once(KEY_LEN))
    }

    /// The size of every shard of this object, in closed form: a header read
    /// from a damaged or hostile shard may claim 2^64 bytes, which summing
    /// block by block would take hours to refute. Saturates instead of
    /// overflowing (no real shard is that long, so it never matches).
    pub fn shard_len(&self) -> usize {
        let k = self.params.k;
        let s = u64::from(self.segment_size);
        let (full, rest) = (self.length / s, self.length % s);
        let piece = |len: u64| {
            usize::try_from(len)
                .map(|len| piece_len(len.saturating_add(TAG_LEN), k))
                .unwrap_or(usize::MAX)
        };
        let full_pieces = usize::try_from(full)
            .ok()
            .and_then(|n| n.checked_mul(piece(s)))
            .unwrap_or(usize::MAX);
        // A last short segment, or the one empty segment of an empty object.
        let last = if rest > 0 || self.length == 0 {
            piece(rest)
        } else {
            0
        };
        HEADER_LEN
            .saturating_add(full_pieces)
            .saturating_add(last)
            .saturating_add(piece_len(KEY_LEN, k))
    }

    fn aad(&self, segment: u64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(b"caliop-dispersal");
        aad.extend_from_slice(&[self.version, self.params.k, self.params.n]);
        aad.extend_from_slice(&self.segment_size.to_be_bytes());
        aad.extend_from_slice(&self.object_id);
        aad.extend_from_slice(&self.length.to_be_bytes());
        aad.extend_from_slice(&(segment as u32).to_be_bytes());
        aad.extend_from_slice(&(self.segments() as u32).to_be_bytes());
        aad
    }

    fn same_object(&self, other: &Header) -> bool {
        Header { index: 0, ..*self } == Header { index: 0, ..*other }
    }
}

/// Bytes of one piece of a block of `len` bytes.
fn piece_len(len: usize, k: u8) -> usize {
    let p = len.div_ceil(usize::from(k));
    p + (p & 1)
}

fn nonce(segment: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&segment.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// The shard's hash, as the manifest keeps it.
pub fn hash(shard: &[u8]) -> [u8; 32] {
    *blake3::hash(shard).as_bytes()
}

/// Cuts `plaintext` into `params.n()` shards, shard `j` at position `j`.
pub fn encode(
    object_id: [u8; 16],
    params: Params,
    plaintext: &[u8],
) -> Result<Vec<Vec<u8>>, VaultError> {
    encode_with_segments(object_id, params, SEGMENT_SIZE, plaintext)
}

/// [`encode`], with every shard's [`hash`] computed on the way (each piece
/// is hashed while it is in cache, in the same pass that the all-or-nothing
/// transform needs).
pub fn encode_hashed(
    object_id: [u8; 16],
    params: Params,
    plaintext: &[u8],
) -> Result<Vec<(Vec<u8>, [u8; 32])>, VaultError> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| error("no randomness"))?;
    let (shards, hashes) = encode_keyed(key, object_id, params, SEGMENT_SIZE, plaintext)?;
    Ok(shards.into_iter().zip(hashes).collect())
}

/// [`encode`] with another segment size (tests use small ones).
pub fn encode_with_segments(
    object_id: [u8; 16],
    params: Params,
    segment_size: u32,
    plaintext: &[u8],
) -> Result<Vec<Vec<u8>>, VaultError> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| error("no randomness"))?;
    Ok(encode_keyed(key, object_id, params, segment_size, plaintext)?.0)
}

thread_local! {
    /// The segment being encrypted, kept per thread: a fresh megabyte per
    /// object would cost page faults rather than work.
    static BLOCK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn encode_keyed(
    mut key: [u8; KEY_LEN],
    object_id: [u8; 16],
    params: Params,
    segment_size: u32,
    plaintext: &[u8],
) -> Result<(Vec<Vec<u8>>, Vec<[u8; 32]>), VaultError> {
    if segment_size == 0 {
        return Err(error("segment size 0"));
    }
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).map_err(|_| error("bad key"))?);
    let header = Header {
        version: if plaintext.len() < SMALL_OBJECT {
            VERSION_SMALL
        } else {
            VERSION
        },
        params,
        index: 0,
        segment_size,
        object_id,
        length: plaintext.len() as u64,
    };
    let shard_len = header.shard_len();
    let mut hashers: Vec<blake3::Hasher> = Vec::with_capacity(usize::from(params.n));
    let mut shards: Vec<Vec<u8>> = (0..params.n)
        .map(|index| {
            let mut shard = Vec::with_capacity(shard_len);
            Header { index, ..header }.write(&mut shard);
            let mut hasher = blake3::Hasher::new();
            hasher.update(&shard);
            hashers.push(hasher);
            shard
        })
        .collect();
    let mut coder = Coder::new(header.version, params);
    BLOCK.with(|block| -> Result<(), VaultError> {
        let mut block = block.borrow_mut();
        let segments: Box<dyn Iterator<Item = &[u8]>> = if plaintext.is_empty() {
            Box::new(std::iter::once(&[][..]))
        } else {
            Box::new(plaintext.chunks(segment_size as usize))
        };
        for (i, segment) in segments.enumerate() {
            block.clear();
            block.extend_from_slice(segment);
            let tag = aead
                .seal_in_place_separate_tag(
                    nonce(i as u64),
                    Aad::from(header.aad(i as u64)),
                    &mut block,
                )
                .map_err(|_| error("encryption failed"))?;
            block.extend_from_slice(tag.as_ref());
            coder.spread(&block, &mut shards, Some(&mut hashers[..]))?;
        }
        Ok(())
    })?;
    let mut masked = aont(
        hashers[..usize::from(params.k)]
            .iter()
            .map(|h| *h.finalize().as_bytes()),
    );
    masked.iter_mut().zip(key).for_each(|(m, k)| *m ^= k);
    key.fill(0);
    coder.spread(&masked, &mut shards, Some(&mut hashers[..]))?;
    debug_assert!(shards.iter().all(|s| s.len() == shard_len));
    Ok((
        shards,
        hashers.iter().map(|h| *h.finalize().as_bytes()).collect(),
    ))
}

/// `h` of the all-or-nothing transform, from the data shards' body hashes.
fn aont(bodies: impl Iterator<Item = [u8; 32]>) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(AONT_CONTEXT);
    for body in bodies {
        h.update(&body);
    }
    *h.finalize().as_bytes()
}

/// Checks a shard against the manifest hash in one pass, and returns the
/// hash of its body (what decoding needs) when it matches.
pub fn check(shard: &[u8], expected: &[u8; 32]) -> Option<[u8; 32]> {
    let header = Header::parse(shard).ok()?;
    if shard.len() != header.shard_len() {
        return None;
    }
    let body = shard.len() - piece_len(KEY_LEN, header.params.k);
    let mut h = blake3::Hasher::new();
    h.update(&shard[..body]);
    let body_hash = *h.finalize().as_bytes();
    h.update(&shard[body..]);
    (h.finalize().as_bytes() == expected).then_some(body_hash)
}

/// The GF(2⁸) code of version 2 for `params`, made once per process:
/// making one builds and inverts its matrix.
fn small_code(params: Params) -> Result<Arc<Galois8>, VaultError> {
    static CODES: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<Params, Arc<Galois8>>>,
    > = std::sync::OnceLock::new();
    let mut codes = CODES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(code) = codes.get(&params) {
        return Ok(code.clone());
    }
    let code = Arc::new(
        Galois8::new(usize::from(params.k), params.parity())
            .map_err(|e| error(format!("Reed–Solomon: {e:?}")))?,
    );
    codes.insert(params, code.clone());
    Ok(code)
}

/// Reed–Solomon over the pieces of one block at a time.
struct Coder {
    version: u8,
    params: Params,
    encoder: Option<ReedSolomonEncoder>,
    padded: Vec<u8>,
}

thread_local! {
    /// An encoder kept per thread: making one allocates its work space,
    /// which costs more than encoding a mail-sized object.
    static ENCODER: std::cell::RefCell<Option<ReedSolomonEncoder>> = const { std::cell::RefCell::new(None) };
}

impl Coder {
    fn new(version: u8, params: Params) -> Coder {
        let encoder = ENCODER.with(|cached| cached.borrow_mut().take());
        Coder {
            version,
            params,
            encoder,
            padded: Vec::new(),
        }
    }

    fn encoder(&mut self, piece: usize) -> Result<&mut ReedSolomonEncoder, VaultError> {
        let (k, parity) = (usize::from(self.params.k), self.params.parity());
        let rs = |e: reed_solomon_simd::Error| error(format!("Reed–Solomon: {e}"));
        match &mut self.encoder {
            Some(encoder) => encoder.reset(k, parity, piece).map_err(rs)?,
            slot @ None => *slot = Some(ReedSolomonEncoder::new(k, parity, piece).map_err(rs)?),
        }
        Ok(self.encoder.as_mut().expect("just set"))
    }

    /// Appends piece `j` of `block` to shard `j`, parity included, and feeds
    /// each piece to its shard's hash while it is still in cache.
    fn spread(
        &mut self,
        block: &[u8],
        shards: &mut [Vec<u8>],
        mut hashers: Option<&mut [blake3::Hasher]>,
    ) -> Result<(), VaultError> {
        let k = usize::from(self.params.k);
        let piece = piece_len(block.len(), self.params.k);
        // Whole pieces are read from the block itself; only the tail is padded.
        let whole = (block.len() / piece).min(k);
        let mut tail = std::mem::take(&mut self.padded);
        tail.clear();
        tail.extend_from_slice(&block[whole * piece..]);
        tail.resize(piece * (k - whole), 0);
        let pieces = block[..whole * piece]
            .chunks_exact(piece)
            .chain(tail.chunks_exact(piece));
        if self.version == VERSION_SMALL {
            let data: Vec<&[u8]> = pieces.collect();
            let mut parity = vec![vec![0u8; piece]; self.params.parity()];
            small_code(self.params)?
                .encode_sep(&data, &mut parity)
                .map_err(|e| error(format!("Reed–Solomon: {e:?}")))?;
            for (j, piece) in data
                .into_iter()
                .chain(parity.iter().map(Vec::as_slice))
                .enumerate()
            {
                shards[j].extend_from_slice(piece);
                if let Some(h) = hashers.as_deref_mut() {
                    h[j].update(piece);
                }
            }
            self.padded = tail;
            return Ok(());
        }
        let rs = |e: reed_solomon_simd::Error| error(format!("Reed–Solomon: {e}"));
        let encoder = self.encoder(piece)?;
        for (j, data) in pieces.enumerate() {
            encoder.add_original_shard(data).map_err(rs)?;
            shards[j].extend_from_slice(data);
            if let Some(h) = hashers.as_deref_mut() {
                h[j].update(data);
            }
        }
        let result = encoder.encode().map_err(rs)?;
        for (j, recovery) in result.recovery_iter().enumerate() {
            shards[k + j].extend_from_slice(recovery);
            if let Some(h) = hashers.as_deref_mut() {
                h[k + j].update(recovery);
            }
        }
        drop(result);
        self.padded = tail;
        Ok(())
    }
}

impl Drop for Coder {
    fn drop(&mut self) {
        if let Some(encoder) = self.encoder.take() {
            ENCODER.with(|cached| *cached.borrow_mut() = Some(encoder));
        }
    }
}

/// Checks that `shards` are at least `k` distinct shards of one object
/// (`object_id` when given) and returns their header and the shards by index.
fn gather<'a>(
    object_id: Option<[u8; 16]>,
    shards: &[&'a [u8]],
) -> Result<(Header, Vec<Option<&'a [u8]>>), VaultError> {
    let first = Header::parse(shards.first().ok_or_else(|| error("no shard"))?)?;
    if object_id.is_some_and(|id| id != first.object_id) {
        return Err(error("the shards belong to another object"));
    }
    let mut by_index: Vec<Option<&[u8]>> = vec![None; usize::from(first.params.n)];
    for shard in shards {
        let header = Header::parse(shard)?;
        if !header.same_object(&first) {
            return Err(error("the shards do not belong to the same object"));
        }
        if shard.len() != first.shard_len() {
            return Err(error(format!(
                "shard {} has {} bytes, {} expected",
                header.index,
                shard.len(),
                first.shard_len()
            )));
        }
        by_index[usize::from(header.index)] = Some(shard);
    }
    let present = by_index.iter().filter(|s| s.is_some()).count();
    if present < usize::from(first.params.k) {
        return Err(error(format!(
            "{present} distinct shards, {} needed",
            first.params.k
        )));
    }
    Ok((first, by_index))
}

/// The data pieces of one block (`offset` into each shard, `piece` bytes).
/// Borrowed where the data shard is present, restored from parity otherwise.
fn data_pieces<'a>(
    header: &Header,
    by_index: &[Option<&'a [u8]>],
    offset: usize,
    piece: usize,
    decoder: &mut Option<ReedSolomonDecoder>,
) -> Result<Vec<std::borrow::Cow<'a, [u8]>>, VaultError> {
    use std::borrow::Cow;
    let k = usize::from(header.params.k);
    let at = |s: &'a [u8]| &s[offset..offset + piece];
    if by_index[..k].iter().all(Option::is_some) {
        return Ok(by_index[..k]
            .iter()
            .map(|s| Cow::Borrowed(at(s.expect("checked"))))
            .collect());
    }
    if header.version == VERSION_SMALL {
        let mut all: Vec<Option<Vec<u8>>> =
            by_index.iter().map(|s| s.map(|s| at(s).to_vec())).collect();
        small_code(header.params)?
            .reconstruct_data(&mut all)
            .map_err(|e| error(format!("Reed–Solomon: {e:?}")))?;
        return (0..k)
            .map(|j| match (by_index[j], all[j].take()) {
                (Some(shard), _) => Ok(Cow::Borrowed(at(shard))),
                (None, Some(data)) => Ok(Cow::Owned(data)),
                (None, None) => Err(error(format!("piece {j} could not be restored"))),
            })
            .collect();
    }
    let rs = |e: reed_solomon_simd::Error| error(format!("Reed–Solomon: {e}"));
    let parity = header.params.parity();
    let decoder = match decoder {
        Some(d) => {
            d.reset(k, parity, piece).map_err(rs)?;
            d
        }
        slot @ None => slot.insert(ReedSolomonDecoder::new(k, parity, piece).map_err(rs)?),
    };
    for (j, shard) in by_index.iter().enumerate() {
        if let Some(shard) = shard {
            if j < k {
                decoder.add_original_shard(j, at(shard)).map_err(rs)?;
            } else {
                decoder.add_recovery_shard(j - k, at(shard)).map_err(rs)?;
            }
        }
    }
    let result = decoder.decode().map_err(rs)?;
    let mut restored: Vec<Option<Vec<u8>>> = vec![None; k];
    for (j, data) in result.restored_original_iter() {
        restored[j] = Some(data.to_vec());
    }
    drop(result);
    (0..k)
        .map(|j| match (by_index[j], restored[j].take()) {
            (Some(shard), _) => Ok(Cow::Borrowed(at(shard))),
            (None, Some(data)) => Ok(Cow::Owned(data)),
            (None, None) => Err(error(format!("piece {j} could not be restored"))),
        })
        .collect()
}

/// Rebuilds the object from at least `k` shards whose hashes were checked.
pub fn decode(object_id: [u8; 16], shards: &[&[u8]]) -> Result<Vec<u8>, VaultError> {
    decode_inner(object_id, shards, &[])
}

/// [`decode`] for shards that went through [`check`], with the body hashes
/// it returned (so no shard is hashed twice).
pub fn decode_checked(
    object_id: [u8; 16],
    shards: &[(&[u8], [u8; 32])],
) -> Result<Vec<u8>, VaultError> {
    let (bytes, bodies): (Vec<&[u8]>, Vec<[u8; 32]>) = shards.iter().copied().unzip();
    decode_inner(object_id, &bytes, &bodies)
}

fn decode_inner(
    object_id: [u8; 16],
    shards: &[&[u8]],
    bodies: &[[u8; 32]],
) -> Result<Vec<u8>, VaultError> {
    let (header, by_index) = gather(Some(object_id), shards)?;
    let k = usize::from(header.params.k);
    let body_len = header.shard_len() - piece_len(KEY_LEN, header.params.k);
    // The body hash of every data shard: given, hashed here, or (for a
    // data shard restored from parity) hashed as its pieces are restored.
    let mut body_hashes: Vec<Option<[u8; 32]>> = vec![None; k];
    for (i, shard) in shards.iter().enumerate() {
        let index = usize::from(shard[11]);
        if index < k {
            body_hashes[index] = Some(match bodies.get(i) {
                Some(given) => *given,
                None => *blake3::hash(&shard[..body_len]).as_bytes(),
            });
        }
    }
    let mut restoring: Vec<Option<blake3::Hasher>> = (0..k)
        .map(|j| {
            body_hashes[j].is_none().then(|| {
                let mut head = Vec::with_capacity(HEADER_LEN);
                Header {
                    index: j as u8,
                    ..header
                }
                .write(&mut head);
                let mut h = blake3::Hasher::new();
                h.update(&head);
                h
            })
        })
        .collect();
    let blocks: Vec<usize> = header.blocks().collect();
    // Pass 1: the ciphertext, in place where the plaintext will be.
    let mut out = Vec::with_capacity(header.length as usize + TAG_LEN);
    let mut ends = Vec::with_capacity(blocks.len());
    let mut decoder = None;
    let mut offset = HEADER_LEN;
    let mut masked = [0u8; KEY_LEN];
    for (b, &len) in blocks.iter().enumerate() {
        let last = b + 1 == blocks.len();
        let piece = piece_len(len, header.params.k);
        let pieces = data_pieces(&header, &by_index, offset, piece, &mut decoder)?;
        let mut left = len;
        for (j, p) in pieces.iter().enumerate() {
            if !last && let Some(h) = &mut restoring[j] {
                h.update(p);
            }
            let take = left.min(piece);
            if last {
                masked[len - left..len - left + take].copy_from_slice(&p[..take]);
            } else {
                out.extend_from_slice(&p[..take]);
            }
            left -= take;
        }
        if !last {
            ends.push(out.len());
        }
        offset += piece;
    }
    for (j, h) in restoring.iter().enumerate() {
        if let Some(h) = h {
            body_hashes[j] = Some(*h.finalize().as_bytes());
        }
    }
    let mut key = aont(body_hashes.iter().map(|h| h.unwrap_or_default()));
    key.iter_mut().zip(masked).for_each(|(k, m)| *k ^= m);
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).map_err(|_| error("bad key"))?);
    key.fill(0);
    // Pass 2: open each segment where it lies, then close the tag gaps.
    let mut plain_end = 0;
    let mut start = 0;
    for (i, &end) in ends.iter().enumerate() {
        let opened = aead
            .open_in_place(
                nonce(i as u64),
                Aad::from(header.aad(i as u64)),
                &mut out[start..end],
            )
            .map_err(|_| error("the object does not authenticate: a shard is wrong or missing"))?
            .len();
        out.copy_within(start..start + opened, plain_end);
        plain_end += opened;
        start = end;
    }
    out.truncate(plain_end);
    Ok(out)
}

/// Rebuilds shard `index` from at least `k` others, without the key: the
/// Reed–Solomon code alone restores it.
pub fn rebuild(shards: &[&[u8]], index: u8) -> Result<Vec<u8>, VaultError> {
    let (header, by_index) = gather(None, shards)?;
    if index >= header.params.n {
        return Err(error(format!(
            "shard index {index} out of range for {}",
            header.params
        )));
    }
    if let Some(shard) = by_index[usize::from(index)] {
        return Ok(shard.to_vec());
    }
    let mut out = Vec::with_capacity(header.shard_len());
    Header { index, ..header }.write(&mut out);
    let k = usize::from(header.params.k);
    let mut decoder = None;
    let mut coder = Coder::new(header.version, header.params);
    let mut scratch: Vec<Vec<u8>> = vec![Vec::new(); usize::from(header.params.n)];
    let mut offset = HEADER_LEN;
    for len in header.blocks() {
        let piece = piece_len(len, header.params.k);
        let pieces = data_pieces(&header, &by_index, offset, piece, &mut decoder)?;
        if usize::from(index) < k {
            out.extend_from_slice(&pieces[usize::from(index)]);
        } else {
            let block: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
            scratch.iter_mut().for_each(Vec::clear);
            coder.spread(&block, &mut scratch, None)?;
            out.extend_from_slice(&scratch[usize::from(index)]);
        }
        offset += piece;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u8) -> [u8; 16] {
        [n; 16]
    }

    /// Every subset of `n` of size `size`, as bit masks.
    fn subsets(n: u8, size: u32) -> impl Iterator<Item = u32> {
        (0u32..(1 << n)).filter(move |m| m.count_ones() == size)
    }

    fn pick(shards: &[Vec<u8>], mask: u32) -> Vec<&[u8]> {
        shards
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, s)| s.as_slice())
            .collect()
    }

    /// A cheap deterministic generator, so failures reproduce.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    const MARKER: &[u8] = b"CALIOP-PLAINTEXT-MARKER-4f1c";

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn params() -> impl Strategy<Value = Params> {
        prop::sample::select(vec![(2u8, 3u8), (3, 5), (2, 4), (4, 6), (3, 4)])
            .prop_map(|(k, n)| Params::new(k, n).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// For random objects, segment sizes and redundancies: every subset
        /// of `k` shards rebuilds the object exactly; every subset of `k − 1`
        /// fails; no shard contains the plaintext marker.
        #[test]
        fn any_k_shards_rebuild_any_object_and_k_minus_1_do_not(
            params in params(),
            segment in 32u32..1500,
            body in prop::collection::vec(any::<u8>(), 0..4000),
            marker_at in any::<prop::sample::Index>(),
        ) {
            let mut object = body;
            if object.len() >= MARKER.len() {
                let at = marker_at.index(object.len() - MARKER.len() + 1);
                object[at..at + MARKER.len()].copy_from_slice(MARKER);
            }
            let shards = encode_with_segments(id(1), params, segment, &object).unwrap();
            prop_assert_eq!(shards.len(), usize::from(params.n()));
            if object.len() >= MARKER.len() {
                prop_assert!(shards.iter().all(|s| !contains(s, MARKER)), "plaintext marker in a shard");
            }
            for mask in subsets(params.n(), u32::from(params.k())) {
                prop_assert_eq!(&decode(id(1), &pick(&shards, mask)).unwrap(), &object, "mask {:b}", mask);
            }
            for mask in subsets(params.n(), u32::from(params.k()) - 1) {
                prop_assert!(decode(id(1), &pick(&shards, mask)).is_err(), "k−1 shards decoded");
            }
        }

        /// A flipped bit anywhere in a shard changes its hash, and `check`
        /// (what reads use) turns the shard away.
        #[test]
        fn a_flipped_bit_anywhere_is_caught(
            params in params(),
            body in prop::collection::vec(any::<u8>(), 0..3000),
            which in any::<prop::sample::Index>(),
            bit in any::<prop::sample::Index>(),
        ) {
            let encoded = encode_hashed(id(2), params, &body).unwrap();
            let (shard, hash_) = &encoded[which.index(encoded.len())];
            let mut bad = shard.clone();
            let bit = bit.index(bad.len() * 8);
            bad[bit / 8] ^= 1 << (bit % 8);
            prop_assert_ne!(hash(&bad), *hash_);
            prop_assert!(check(&bad, hash_).is_none());
            prop_assert!(check(shard, hash_).is_some());
        }
    }

    #[test]
    fn shard_length_in_closed_form_is_the_sum_of_its_blocks() {
        for (k, n) in [(2, 3), (3, 5), (4, 7)] {
            for segment_size in [1u32, 7, 64, 1000] {
                for length in [0u64, 1, 6, 7, 8, 63, 64, 65, 999, 1000, 1001, 4096] {
                    let header = Header {
                        version: VERSION,
                        params: Params::new(k, n).unwrap(),
                        index: 0,
                        segment_size,
                        object_id: [0; 16],
                        length,
                    };
                    let summed =
                        HEADER_LEN + header.blocks().map(|len| piece_len(len, k)).sum::<usize>();
                    assert_eq!(
                        header.shard_len(),
                        summed,
                        "k={k} segment={segment_size} length={length}"
                    );
                }
            }
        }
    }

    /// A damaged header that claims an object of 2^64 bytes in 1-byte
    /// segments is refused at once, not after summing 2^64 blocks.
    #[test]
    fn a_header_claiming_an_enormous_object_is_refused_at_once() {
        let params = Params::new(2, 3).unwrap();
        let shards = encode(id(3), params, b"small").unwrap();
        let mut bad = shards[0].clone();
        bad[12..16].copy_from_slice(&1u32.to_be_bytes());
        bad[32..40].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(check(&bad, &hash(&bad)).is_none());
        assert!(decode(id(3), &[&bad, &shards[1]]).is_err());
    }

    #[test]
    fn the_key_appears_in_no_shard_and_k_minus_1_shards_with_a_guess_fail() {
        let params = Params::new(3, 5).unwrap();
        let object = b"a secret letter ".repeat(200);
        let key: [u8; 32] = std::array::from_fn(|i| 0xA0 ^ i as u8);
        let (shards, _) = encode_keyed(key, id(1), params, 1024, &object).unwrap();
        for shard in &shards {
            assert!(!contains(shard, &key[..8]), "key bytes in a shard");
            assert!(!contains(shard, &key[24..]), "key bytes in a shard");
            assert!(!contains(shard, b"secret letter"), "plaintext in a shard");
        }
        // k − 1 real shards, and a zero-filled guess for a missing one.
        for mask in subsets(5, 2) {
            let mut chosen: Vec<Vec<u8>> = pick(&shards, mask).iter().map(|s| s.to_vec()).collect();
            let missing = (0..5u8).find(|j| mask & (1 << j) == 0).unwrap();
            let mut guess = vec![0u8; chosen[0].len()];
            guess[..HEADER_LEN].copy_from_slice(&chosen[0][..HEADER_LEN]);
            guess[11] = missing;
            chosen.push(guess);
            let refs: Vec<&[u8]> = chosen.iter().map(Vec::as_slice).collect();
            assert!(
                decode(id(1), &refs).is_err(),
                "k−1 real shards and a guess decoded"
            );
        }
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_hash_and_by_decoding() {
        let params = Params::new(2, 3).unwrap();
        let object = Lcg(3).bytes(5000);
        let shards = encode_with_segments(id(2), params, 1024, &object).unwrap();
        let hashes: Vec<[u8; 32]> = shards.iter().map(|s| hash(s)).collect();
        let mut rng = Lcg(11);
        for j in 0..3 {
            for _ in 0..20 {
                let mut bad = shards[j].clone();
                let bit = (rng.next() as usize) % (bad.len() * 8);
                bad[bit / 8] ^= 1 << (bit % 8);
                assert_ne!(
                    hash(&bad),
                    hashes[j],
                    "the manifest hash misses a flipped bit"
                );
                // Decoding with the bad shard fails (never returns wrong bytes).
                let other = (j + 1) % 3;
                if let Ok(decoded) = decode(id(2), &[&bad, &shards[other]]) {
                    assert_eq!(decoded, object, "a flipped bit gave different plaintext");
                }
            }
        }
    }

    #[test]
    fn rebuilt_shards_are_identical_to_the_lost_ones() {
        let params = Params::new(3, 5).unwrap();
        let object = Lcg(5).bytes(10_000);
        let shards = encode_with_segments(id(3), params, 4096, &object).unwrap();
        for lost in 0..5u8 {
            for mask in subsets(5, 3).filter(|m| m & (1 << lost) == 0) {
                let rebuilt = rebuild(&pick(&shards, mask), lost).unwrap();
                assert_eq!(
                    rebuilt,
                    shards[usize::from(lost)],
                    "shard {lost} from {mask:b}"
                );
            }
        }
    }

    /// Small objects take the GF(2⁸) code, large ones Leopard's; each
    /// decodes from every `k` shards and rebuilds every lost shard, and a
    /// shard relabelled with the other code's version does not decode.
    #[test]
    fn each_code_serves_its_sizes_and_a_relabelled_shard_is_refused() {
        for (length, version) in [
            (4096, VERSION_SMALL),
            (SMALL_OBJECT - 1, VERSION_SMALL),
            (SMALL_OBJECT, VERSION),
            (SMALL_OBJECT + 70_001, VERSION),
        ] {
            let object = Lcg(length as u64).bytes(length);
            for (k, n) in [(2u8, 3u8), (3, 5)] {
                let params = Params::new(k, n).unwrap();
                let shards = encode_with_segments(id(9), params, 100_000, &object).unwrap();
                assert_eq!(
                    Header::parse(&shards[0]).unwrap().version,
                    version,
                    "{length} B"
                );
                for mask in subsets(n, u32::from(k)) {
                    assert_eq!(
                        decode(id(9), &pick(&shards, mask)).unwrap(),
                        object,
                        "{length} B, {mask:b}"
                    );
                }
                let lost = n - 1;
                let others: Vec<&[u8]> =
                    shards[..usize::from(k)].iter().map(Vec::as_slice).collect();
                assert_eq!(rebuild(&others, lost).unwrap(), shards[usize::from(lost)]);
                let relabelled: Vec<Vec<u8>> = shards
                    .iter()
                    .map(|s| {
                        let mut s = s.clone();
                        s[8] = if version == VERSION {
                            VERSION_SMALL
                        } else {
                            VERSION
                        };
                        s
                    })
                    .collect();
                // Without the first data shard the other code is asked to restore it.
                let degraded: Vec<&[u8]> = relabelled[1..=usize::from(k)]
                    .iter()
                    .map(Vec::as_slice)
                    .collect();
                assert!(decode(id(9), &degraded).is_err(), "{length} B relabelled");
            }
        }
    }

    #[test]
    fn shards_of_another_object_or_format_are_refused() {
        let params = Params::new(2, 3).unwrap();
        let a = encode(id(4), params, b"first").unwrap();
        let b = encode(id(5), params, b"first").unwrap();
        assert!(decode(id(4), &[&a[0], &b[1]]).is_err());
        assert!(
            decode(id(5), &[&a[0], &a[1]]).is_err(),
            "asked for another id"
        );
        let mut future = a[0].clone();
        future[8] = 3;
        assert!(Header::parse(&future).is_err());
        assert!(Params::new(1, 3).is_err());
        assert!(Params::new(3, 3).is_err());
        assert!(Params::new(3, 40).is_err());
    }

    #[test]
    fn hashes_computed_on_the_way_are_the_shards_hashes_and_check_agrees() {
        for len in [0, 5, 4096, 3 << 20] {
            let object = Lcg(len as u64).bytes(len);
            let encoded = encode_hashed(id(9), Params::new(3, 5).unwrap(), &object).unwrap();
            let mut checked = Vec::new();
            for (shard, h) in &encoded {
                assert_eq!(hash(shard), *h, "len {len}");
                let body = check(shard, h).expect("a shard passes its own hash");
                let mut bad = *h;
                bad[0] ^= 1;
                assert!(check(shard, &bad).is_none());
                checked.push((shard.as_slice(), body));
            }
            // Parity and data mixed, with the body hashes check gave.
            let pick = [&checked[4], &checked[1], &checked[3]].map(|c| *c);
            assert_eq!(decode_checked(id(9), &pick).unwrap(), object, "len {len}");
        }
    }

    #[test]
    fn the_same_object_encrypts_differently_each_time() {
        let params = Params::new(2, 3).unwrap();
        let a = encode(id(6), params, b"same bytes").unwrap();
        let b = encode(id(6), params, b"same bytes").unwrap();
        assert_ne!(
            a[0][HEADER_LEN..],
            b[0][HEADER_LEN..],
            "a fresh key per object"
        );
        assert_eq!(a[0][..HEADER_LEN], b[0][..HEADER_LEN]);
    }
}
