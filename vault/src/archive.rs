//! Tenant archives: the one file a tenant's export writes and another
//! instance's import reads. Encrypted to a passphrase or an OpenPGP key,
//! authenticated end to end, streamed in bounded memory, and resumable from
//! the last checkpoint of an interrupted export.
//!
//! # Format, version 1
//!
//! ```text
//! archive = header frame* last-frame
//! header  = "CALIOP-ARCHIVE\n" ‖ version (u8, 1) ‖ JSON length (u32 BE) ‖ JSON
//! frame   = ciphertext length (u32 BE) ‖ generation (u32 BE) ‖ AES-256-GCM ciphertext ‖ 16-byte tag
//! ```
//!
//! The length counts the ciphertext and its tag, not the generation.
//!
//! The JSON header holds `created_at` (RFC 3339), the caller's `label`, and
//! `key`, how the random 32-byte file key is protected:
//!
//! - `{"protection": "argon2id", "m_cost_kib", "t_cost", "p_cost", "salt", "wrapped_key"}`:
//!   Argon2id of the passphrase over the 16-byte salt gives a key-encryption
//!   key; `wrapped_key` is nonce (12) ‖ AES-256-GCM(file key) ‖ tag, with the
//!   associated data `caliop-archive-key:v1`. Both binary fields are base64.
//! - `{"protection": "openpgp", "message"}`: the file key as an armored
//!   OpenPGP message to the recipient's key ([`crate::seal::encrypt`]), which
//!   GnuPG can open too.
//!
//! Frames follow the STREAM construction (as in age), with a generation
//! added: each run of a writer (the first, then one per resume) seals under
//! a generation of its own, 0 for the first. Frame `i` of generation `g` is
//! sealed under the file key with the nonce
//!
//! ```text
//! g (4 bytes BE) ‖ i (7 bytes BE) ‖ 1 on the last frame, 0 otherwise
//! ```
//!
//! and the associated data
//!
//! ```text
//! SHA-256(header bytes, magic to JSON) ‖ start (u64 BE) ‖ previous (u32 BE)
//! ```
//!
//! where `start` is the index of generation `g`'s first frame (where its run
//! resumed) and `previous` the generation of the frame before it (0 and 0
//! for the first run). The generation is thus authenticated although it
//! travels in clear. 7 bytes of counter allow 2^56 frames, and 4 bytes of
//! generation 2^32 runs: the writer refuses to go past either.
//!
//! A frame's plaintext is at most [`FRAME_SIZE`]; any frame may be shorter
//! (a checkpoint emits what it has) or empty. Their concatenation is a
//! sequence of records, kind (u8) ‖ length (u64 BE) ‖ bytes, which may span
//! frames.
//!
//! The reader wants frame counters 0, 1, 2, … and generations that never
//! decrease. A frame whose generation is higher than its predecessor's must
//! have been sealed with that frame's own index as `start` and the
//! predecessor's generation as `previous`; the frames after it in the same
//! generation, with the same pair. So the frames a reader accepts are those
//! of one chain of runs, each taking over exactly where the run it resumed
//! had checkpointed: a frame of an interrupted run's discarded tail (an
//! older generation, or a newer one that does not continue the frames
//! before it) fails, wherever it is spliced in.
//!
//! So a changed byte (header and generations included), a frame moved,
//! dropped or taken from another archive or another run fails a tag; a file
//! cut at a frame boundary lacks its last frame; bytes after the last frame
//! are refused. A tampered key field cannot be told from a wrong passphrase
//! or key, and reads as one. The reader authenticates the first frame
//! before it returns, so the label and date it shows are authenticated. A
//! header cannot make the reader allocate more than
//! [`KdfParams::MAX_M_COST_KIB`] for Argon2, 64 KiB of JSON, two frame
//! buffers and the current record (at most the caller's `max_record`).
//!
//! # Resuming
//!
//! After [`ArchiveWriter::checkpoint`], the caller syncs the file and keeps
//! the [`Checkpoint`] with the [`FileKey`] (sealed, e.g. with
//! [`crate::at_rest::MasterKey::seal_secret`]) and its own cursor. To resume
//! it truncates the file to [`Checkpoint::bytes_written`], seeks to its end
//! and calls [`ArchiveWriter::resume`], which seals under
//! [`Checkpoint::generation`] + 1. The frames of the discarded tail were
//! sealed under an older generation, so nothing the resumed run writes
//! reuses their nonces, whatever survives of them.
//!
//! That holds while a generation is given to one run only, so a caller that
//! may be interrupted again must, right after `resume` and before writing
//! any record, take a [`ArchiveWriter::checkpoint`], sync the file and keep
//! that checkpoint in place of the old one. That checkpoint seals an empty
//! frame under the new generation; should the run be interrupted before it
//! is kept, resuming again from the old checkpoint seals the same empty
//! frame, byte for byte, and nothing else was sealed under the generation.
//!
//! Error policy: every failure is an [`ArchiveError`] whose message is
//! written for the person running the import. After an error, a writer or
//! reader refuses further use: a writer so that no nonce is sealed twice, a
//! reader so that nothing unauthenticated follows an error.

use std::io::{Read, Write};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};

use crate::VaultError;

/// The first bytes of every archive.
pub const MAGIC: &[u8; 15] = b"CALIOP-ARCHIVE\n";
/// The format version this module writes and reads.
pub const VERSION: u8 = 1;
/// The most plaintext a frame carries.
pub const FRAME_SIZE: usize = 1 << 20;

const TAG_LEN: usize = 16;
const FILE_KEY_LEN: usize = 32;
const SALT_LEN: usize = 16;
/// A header holds a few hundred bytes; the cap bounds what a forged one costs.
const MAX_HEADER: usize = 64 * 1024;
const KEY_WRAP_AAD: &[u8] = b"caliop-archive-key:v1";
const RECORD_HEADER_LEN: usize = 9;
/// Frame counters fill 7 bytes of the nonce.
const MAX_FRAMES: u64 = 1 << 56;
/// A frame's clear framing: ciphertext length, generation.
const FRAME_HEADER_LEN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading or writing the archive failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("this file is not a Caliop archive")]
    NotAnArchive,
    #[error("this archive has format version {0}, which this version of Caliop cannot read")]
    UnsupportedVersion(u8),
    #[error("wrong passphrase: the archive's key does not open with it")]
    WrongPassphrase,
    #[error("wrong key: the archive was not encrypted to this OpenPGP key")]
    WrongKey,
    /// An archive sealed to a passphrase was given a key, or the other way round.
    #[error("this archive opens with {needs}, which was not given")]
    WrongUnlock { needs: &'static str },
    #[error("the archive was modified after it was written (frame {frame} does not authenticate)")]
    Tampered { frame: u64 },
    #[error(
        "the archive is incomplete: it ends before its last frame (was the export interrupted?)"
    )]
    Truncated,
    #[error("the archive has unexpected bytes after its end")]
    TrailingData,
    #[error("the archive holds a record of {size} bytes, more than the {max} bytes allowed")]
    RecordTooLarge { size: u64, max: u64 },
    #[error("the archive's header is invalid: {0}")]
    BadHeader(String),
    /// Authenticated content that is not a sequence of records: a writer's bug, not an attack.
    #[error("the archive's content is malformed: {0}")]
    BadRecord(String),
    #[error("key derivation parameters refused: {0}")]
    BadKdf(String),
    #[error("an earlier write to this archive failed; resume the export from its last checkpoint")]
    WriterFailed,
    #[error("an earlier error stopped reading this archive; nothing after it can be trusted")]
    ReaderFailed,
    #[error("encryption failed: {0}")]
    Crypto(String),
}

/// Argon2id costs for a passphrase-protected archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
}

impl KdfParams {
    /// The most memory a header may ask for: import stays within a known bound.
    pub const MAX_M_COST_KIB: u32 = 64 * 1024;
    pub const MAX_T_COST: u32 = 16;
    pub const MAX_P_COST: u32 = 16;
    /// What exports use: 64 MiB, 3 passes, 1 lane.
    pub const DEFAULT: KdfParams = KdfParams {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };

    /// Other costs, within the reader's bounds; small ones are for tests.
    pub fn new(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Result<KdfParams, ArchiveError> {
        Self::checked(m_cost_kib, t_cost, p_cost).map_err(ArchiveError::BadKdf)
    }

    fn checked(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Result<KdfParams, String> {
        if m_cost_kib > Self::MAX_M_COST_KIB
            || t_cost > Self::MAX_T_COST
            || p_cost > Self::MAX_P_COST
        {
            return Err(format!(
                "Argon2id m={m_cost_kib} KiB, t={t_cost}, p={p_cost} is over the limits (m={} KiB, t={}, p={})",
                Self::MAX_M_COST_KIB,
                Self::MAX_T_COST,
                Self::MAX_P_COST
            ));
        }
        argon2::Params::new(m_cost_kib, t_cost, p_cost, Some(FILE_KEY_LEN))
            .map_err(|e| format!("Argon2id: {e}"))?;
        Ok(KdfParams {
            m_cost_kib,
            t_cost,
            p_cost,
        })
    }

    fn derive_kek(
        &self,
        passphrase: &SecretString,
        salt: &[u8],
    ) -> Result<LessSafeKey, ArchiveError> {
        let params = argon2::Params::new(
            self.m_cost_kib,
            self.t_cost,
            self.p_cost,
            Some(FILE_KEY_LEN),
        )
        .map_err(|e| ArchiveError::BadKdf(format!("Argon2id: {e}")))?;
        let mut kek = Zeroizing::new([0u8; FILE_KEY_LEN]);
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password_into(passphrase.expose_secret().as_bytes(), salt, kek.as_mut())
            .map_err(|e| ArchiveError::Crypto(format!("Argon2id: {e}")))?;
        aead_key(kek.as_ref())
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Who can open an archive being written.
#[derive(Debug)]
pub enum Recipient {
    Passphrase {
        passphrase: SecretString,
        kdf: KdfParams,
    },
    OpenPgp {
        public_key_armored: String,
    },
}

impl Recipient {
    /// A passphrase with the default Argon2id costs.
    pub fn passphrase(passphrase: SecretString) -> Recipient {
        Recipient::Passphrase {
            passphrase,
            kdf: KdfParams::DEFAULT,
        }
    }
}

/// What opens an archive being read.
pub enum Unlock {
    Passphrase(SecretString),
    /// The recipient's armored secret key and the passphrase that unlocks it.
    OpenPgp {
        secret_key_armored: String,
        passphrase: SecretString,
    },
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unlock::Passphrase(_) => f.write_str("Unlock::Passphrase([REDACTED])"),
            Unlock::OpenPgp { .. } => f.write_str("Unlock::OpenPgp([REDACTED])"),
        }
    }
}

/// The random key an archive's frames are sealed under.
pub struct FileKey(SecretBox<[u8; FILE_KEY_LEN]>);

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKey([REDACTED])")
    }
}

impl FileKey {
    fn generate() -> Result<FileKey, ArchiveError> {
        let mut bytes = Box::new([0u8; FILE_KEY_LEN]);
        fill_random(bytes.as_mut())?;
        Ok(FileKey(SecretBox::new(bytes)))
    }

    /// The key's bytes, for a resume state that keeps them sealed.
    pub fn to_bytes(&self) -> Zeroizing<[u8; FILE_KEY_LEN]> {
        Zeroizing::new(*self.0.expose_secret())
    }

    /// A key kept by [`FileKey::to_bytes`]; refused unless 32 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<FileKey, ArchiveError> {
        let bytes: [u8; FILE_KEY_LEN] = bytes.try_into().map_err(|_| {
            ArchiveError::Crypto(format!(
                "a file key is {FILE_KEY_LEN} bytes, not {}",
                bytes.len()
            ))
        })?;
        Ok(FileKey(SecretBox::new(Box::new(bytes))))
    }

    /// The key carried in a header, where a wrong length is a bad header.
    fn from_header(bytes: &[u8]) -> Result<FileKey, ArchiveError> {
        FileKey::from_bytes(bytes)
            .map_err(|_| ArchiveError::BadHeader(format!("the file key is {} bytes", bytes.len())))
    }

    fn aead(&self) -> Result<LessSafeKey, ArchiveError> {
        aead_key(self.0.expose_secret())
    }
}

/// Where a writer stands after [`ArchiveWriter::checkpoint`]: enough, with
/// the [`FileKey`], to resume. Nothing in it is secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Frames in the file, all complete.
    pub frames_written: u64,
    /// The file's length up to the end of the last frame, header included.
    pub bytes_written: u64,
    /// SHA-256 of the header: every frame's associated data.
    pub header_digest: [u8; 32],
    /// The generation the writer sealed under, that of the last frame: a
    /// writer resumed from here seals under the next one.
    pub generation: u32,
}

#[derive(Serialize, Deserialize)]
struct Header {
    created_at: String,
    label: String,
    key: KeyProtection,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "protection", rename_all = "lowercase")]
enum KeyProtection {
    Argon2id {
        m_cost_kib: u32,
        t_cost: u32,
        p_cost: u32,
        salt: String,
        wrapped_key: String,
    },
    OpenPgp {
        message: String,
    },
}

impl KeyProtection {
    fn seal(recipient: &Recipient, key: &FileKey) -> Result<KeyProtection, ArchiveError> {
        match recipient {
            Recipient::Passphrase { passphrase, kdf } => {
                let mut salt = [0u8; SALT_LEN];
                fill_random(&mut salt)?;
                let mut nonce = [0u8; NONCE_LEN];
                fill_random(&mut nonce)?;
                let mut sealed = Vec::with_capacity(NONCE_LEN + FILE_KEY_LEN + TAG_LEN);
                sealed.extend_from_slice(&nonce);
                let mut body = Zeroizing::new(Vec::with_capacity(FILE_KEY_LEN + TAG_LEN));
                body.extend_from_slice(key.0.expose_secret());
                kdf.derive_kek(passphrase, &salt)?
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(KEY_WRAP_AAD),
                        &mut *body,
                    )
                    .map_err(|_| ArchiveError::Crypto("wrapping the file key failed".into()))?;
                sealed.extend_from_slice(&body);
                Ok(KeyProtection::Argon2id {
                    m_cost_kib: kdf.m_cost_kib,
                    t_cost: kdf.t_cost,
                    p_cost: kdf.p_cost,
                    salt: BASE64.encode(salt),
                    wrapped_key: BASE64.encode(sealed),
                })
            }
            Recipient::OpenPgp { public_key_armored } => {
                let message = crate::seal::encrypt(public_key_armored, key.0.expose_secret())
                    .map_err(|e| ArchiveError::Crypto(e.to_string()))?;
                Ok(KeyProtection::OpenPgp { message })
            }
        }
    }

    fn open(&self, unlock: &Unlock) -> Result<FileKey, ArchiveError> {
        match (self, unlock) {
            (
                KeyProtection::Argon2id {
                    m_cost_kib,
                    t_cost,
                    p_cost,
                    salt,
                    wrapped_key,
                },
                Unlock::Passphrase(passphrase),
            ) => {
                let kdf = KdfParams::checked(*m_cost_kib, *t_cost, *p_cost)
                    .map_err(ArchiveError::BadHeader)?;
                let salt = decode_base64("salt", salt)?;
                if salt.len() != SALT_LEN {
                    return Err(ArchiveError::BadHeader(format!(
                        "the salt is {} bytes, not {SALT_LEN}",
                        salt.len()
                    )));
                }
                let wrapped = decode_base64("wrapped_key", wrapped_key)?;
                if wrapped.len() != NONCE_LEN + FILE_KEY_LEN + TAG_LEN {
                    return Err(ArchiveError::BadHeader(format!(
                        "the wrapped key is {} bytes",
                        wrapped.len()
                    )));
                }
                let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
                let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| {
                    ArchiveError::BadHeader("the wrapped key's nonce is invalid".into())
                })?;
                let mut body = Zeroizing::new(sealed.to_vec());
                let plain = kdf
                    .derive_kek(passphrase, &salt)?
                    .open_in_place(nonce, Aad::from(KEY_WRAP_AAD), &mut body)
                    .map_err(|_| ArchiveError::WrongPassphrase)?;
                FileKey::from_header(plain)
            }
            (
                KeyProtection::OpenPgp { message },
                Unlock::OpenPgp {
                    secret_key_armored,
                    passphrase,
                },
            ) => {
                let plain = crate::seal::decrypt_at_most(
                    secret_key_armored,
                    passphrase.expose_secret(),
                    message,
                    FILE_KEY_LEN,
                )
                .map_err(|e| match e {
                    VaultError::NotARecipient => ArchiveError::WrongKey,
                    VaultError::WrongPassphrase => ArchiveError::WrongPassphrase,
                    other => ArchiveError::Crypto(other.to_string()),
                })?;
                FileKey::from_header(&Zeroizing::new(plain))
            }
            (KeyProtection::Argon2id { .. }, Unlock::OpenPgp { .. }) => {
                Err(ArchiveError::WrongUnlock {
                    needs: "a passphrase",
                })
            }
            (KeyProtection::OpenPgp { .. }, Unlock::Passphrase(_)) => {
                Err(ArchiveError::WrongUnlock {
                    needs: "an OpenPGP secret key",
                })
            }
        }
    }
}

/// Writes an archive: the header at once, then records as frames fill.
pub struct ArchiveWriter<W: Write> {
    out: W,
    key: LessSafeKey,
    header_digest: [u8; 32],
    /// The plaintext of the frame being filled; sealed in place, tag appended.
    frame: Vec<u8>,
    frames_written: u64,
    bytes_written: u64,
    /// What this run seals under; see the module doc.
    generation: Generation,
    failed: bool,
}

impl<W: Write> std::fmt::Debug for ArchiveWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("generation", &self.generation.number)
            .field("frames_written", &self.frames_written)
            .field("bytes_written", &self.bytes_written)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive to `recipient` under a fresh file key, returned so
    /// the caller can keep it for [`ArchiveWriter::resume`].
    pub fn create(
        mut out: W,
        recipient: &Recipient,
        label: &str,
    ) -> Result<(Self, FileKey), ArchiveError> {
        let file_key = FileKey::generate()?;
        let header = Header {
            created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            label: label.to_owned(),
            key: KeyProtection::seal(recipient, &file_key)?,
        };
        let json =
            serde_json::to_vec(&header).map_err(|e| ArchiveError::BadHeader(e.to_string()))?;
        if json.len() > MAX_HEADER {
            return Err(ArchiveError::BadHeader(format!(
                "{} bytes, more than the {MAX_HEADER} allowed",
                json.len()
            )));
        }
        let mut bytes = Vec::with_capacity(MAGIC.len() + 5 + json.len());
        bytes.extend_from_slice(MAGIC);
        bytes.push(VERSION);
        bytes.extend_from_slice(&(json.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&json);
        out.write_all(&bytes)?;
        let writer = ArchiveWriter {
            out,
            key: file_key.aead()?,
            header_digest: sha256(&[&bytes]),
            frame: Vec::with_capacity(FRAME_SIZE + TAG_LEN),
            frames_written: 0,
            bytes_written: bytes.len() as u64,
            generation: Generation::FIRST,
            failed: false,
        };
        Ok((writer, file_key))
    }

    /// Continues an archive from `at` under the generation after
    /// [`Checkpoint::generation`]; `out` must end where `at` says, at
    /// [`Checkpoint::bytes_written`]. Unless this run cannot be interrupted,
    /// take and keep a [`ArchiveWriter::checkpoint`] before writing a record
    /// (see the module doc): a generation must serve one run only.
    pub fn resume(out: W, key: &FileKey, at: &Checkpoint) -> Result<Self, ArchiveError> {
        let number = at.generation.checked_add(1).ok_or_else(|| {
            ArchiveError::Crypto(format!(
                "the archive has been resumed {} times, the most it can be",
                u32::MAX
            ))
        })?;
        if at.frames_written >= MAX_FRAMES {
            return Err(ArchiveError::Crypto(format!(
                "the archive already holds the most frames it can ({MAX_FRAMES})"
            )));
        }
        Ok(ArchiveWriter {
            out,
            key: key.aead()?,
            header_digest: at.header_digest,
            frame: Vec::with_capacity(FRAME_SIZE + TAG_LEN),
            frames_written: at.frames_written,
            bytes_written: at.bytes_written,
            generation: Generation {
                number,
                start: at.frames_written,
                previous: at.generation,
            },
            failed: false,
        })
    }

    pub fn header_digest(&self) -> [u8; 32] {
        self.header_digest
    }

    /// The output, to sync it after a checkpoint; bytes written to it
    /// directly would break the archive.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Appends one record; full frames go out as they fill.
    pub fn write_record(&mut self, kind: u8, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.usable()?;
        let mut head = [0u8; RECORD_HEADER_LEN];
        head[0] = kind;
        head[1..].copy_from_slice(&(bytes.len() as u64).to_be_bytes());
        self.push(&head)?;
        self.push(bytes)
    }

    /// Writes out what is buffered as a frame and flushes: every record
    /// written so far survives an interruption from here on. The first
    /// checkpoint of a run writes a frame even with nothing buffered, so
    /// that the checkpoint's generation is that of its last frame.
    pub fn checkpoint(&mut self) -> Result<Checkpoint, ArchiveError> {
        self.usable()?;
        if !self.frame.is_empty() || self.frames_written == self.generation.start {
            self.emit(false)?;
        }
        self.failed = true;
        self.out.flush()?;
        self.failed = false;
        Ok(Checkpoint {
            frames_written: self.frames_written,
            bytes_written: self.bytes_written,
            header_digest: self.header_digest,
            generation: self.generation.number,
        })
    }

    /// Writes the last frame and flushes; the archive is complete.
    pub fn finish(mut self) -> Result<W, ArchiveError> {
        self.usable()?;
        self.emit(true)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn usable(&self) -> Result<(), ArchiveError> {
        if self.failed {
            Err(ArchiveError::WriterFailed)
        } else {
            Ok(())
        }
    }

    fn push(&mut self, mut bytes: &[u8]) -> Result<(), ArchiveError> {
        while !bytes.is_empty() {
            let room = FRAME_SIZE - self.frame.len();
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.frame.extend_from_slice(now);
            bytes = rest;
            if self.frame.len() == FRAME_SIZE {
                self.emit(false)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, last: bool) -> Result<(), ArchiveError> {
        // Until the frame is out whole, the writer counts as failed: its
        // nonce may be spent, and must not seal other bytes.
        self.failed = true;
        if self.frames_written >= MAX_FRAMES {
            return Err(ArchiveError::Crypto(format!(
                "the archive holds the most frames it can ({MAX_FRAMES})"
            )));
        }
        let nonce = self.generation.nonce(self.frames_written, last);
        self.key
            .seal_in_place_append_tag(
                nonce,
                Aad::from(self.generation.aad(&self.header_digest)),
                &mut self.frame,
            )
            .map_err(|_| ArchiveError::Crypto("sealing a frame failed".into()))?;
        let len = self.frame.len() as u32;
        let mut framing = [0u8; FRAME_HEADER_LEN];
        framing[..4].copy_from_slice(&len.to_be_bytes());
        framing[4..].copy_from_slice(&self.generation.number.to_be_bytes());
        self.out.write_all(&framing)?;
        self.out.write_all(&self.frame)?;
        self.frame.clear();
        self.frames_written += 1;
        self.bytes_written += FRAME_HEADER_LEN as u64 + u64::from(len);
        self.failed = false;
        Ok(())
    }
}

/// Reads an archive record by record, authenticating each frame before
/// anything in it is returned.
pub struct ArchiveReader<R: Read> {
    input: R,
    key: LessSafeKey,
    header_digest: [u8; 32],
    label: String,
    created_at: DateTime<Utc>,
    max_record: u64,
    /// The current frame as read, then its plaintext.
    sealed: Vec<u8>,
    plain: Vec<u8>,
    /// How much of `plain` has been returned.
    consumed: usize,
    next_frame: u64,
    /// That of the last frame read, or the first run's before any.
    generation: Generation,
    /// The last frame has authenticated and nothing follows it.
    at_end: bool,
    failed: bool,
}

impl<R: Read> std::fmt::Debug for ArchiveReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveReader")
            .field("label", &self.label)
            .field("created_at", &self.created_at)
            .field("next_frame", &self.next_frame)
            .field("generation", &self.generation.number)
            .field("at_end", &self.at_end)
            .finish_non_exhaustive()
    }
}

impl<R: Read> ArchiveReader<R> {
    /// Reads the header, opens the file key and authenticates the first
    /// frame. Records longer than `max_record` bytes are refused.
    pub fn open(mut input: R, unlock: &Unlock, max_record: u64) -> Result<Self, ArchiveError> {
        let mut magic = [0u8; MAGIC.len()];
        if !read_full(&mut input, &mut magic)? || &magic != MAGIC {
            return Err(ArchiveError::NotAnArchive);
        }
        let mut version = [0u8; 1];
        if !read_full(&mut input, &mut version)? {
            return Err(ArchiveError::Truncated);
        }
        if version[0] != VERSION {
            return Err(ArchiveError::UnsupportedVersion(version[0]));
        }
        let mut len = [0u8; 4];
        if !read_full(&mut input, &mut len)? {
            return Err(ArchiveError::Truncated);
        }
        let json_len = u32::from_be_bytes(len) as usize;
        if json_len > MAX_HEADER {
            return Err(ArchiveError::BadHeader(format!(
                "{json_len} bytes, more than the {MAX_HEADER} allowed"
            )));
        }
        let mut json = vec![0u8; json_len];
        if !read_full(&mut input, &mut json)? {
            return Err(ArchiveError::Truncated);
        }
        let header: Header =
            serde_json::from_slice(&json).map_err(|e| ArchiveError::BadHeader(e.to_string()))?;
        let created_at = DateTime::parse_from_rfc3339(&header.created_at)
            .map_err(|e| ArchiveError::BadHeader(format!("created_at: {e}")))?
            .with_timezone(&Utc);
        let file_key = header.key.open(unlock)?;
        let mut reader = ArchiveReader {
            input,
            key: file_key.aead()?,
            header_digest: sha256(&[MAGIC, &version, &len, &json]),
            label: header.label,
            created_at,
            max_record,
            sealed: Vec::with_capacity(FRAME_SIZE + TAG_LEN),
            plain: Vec::with_capacity(FRAME_SIZE),
            consumed: 0,
            next_frame: 0,
            generation: Generation::FIRST,
            at_end: false,
            failed: false,
        };
        reader.read_frame()?;
        Ok(reader)
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// The next record, or `None` exactly at the archive's authenticated end.
    pub fn next_record(&mut self) -> Result<Option<(u8, Vec<u8>)>, ArchiveError> {
        if self.failed {
            return Err(ArchiveError::ReaderFailed);
        }
        let record = self.read_record();
        self.failed = record.is_err();
        record
    }

    fn read_record(&mut self) -> Result<Option<(u8, Vec<u8>)>, ArchiveError> {
        let mut head = [0u8; RECORD_HEADER_LEN];
        match self.fill(&mut head)? {
            0 => return Ok(None),
            RECORD_HEADER_LEN => {}
            _ => {
                return Err(ArchiveError::BadRecord(
                    "the last record's header is cut short".into(),
                ));
            }
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&head[1..]);
        let size = u64::from_be_bytes(size);
        let too_large = ArchiveError::RecordTooLarge {
            size,
            max: self.max_record,
        };
        if size > self.max_record {
            return Err(too_large);
        }
        let mut bytes = vec![0u8; usize::try_from(size).map_err(|_| too_large)?];
        if self.fill(&mut bytes)? != bytes.len() {
            return Err(ArchiveError::BadRecord(
                "the last record is cut short".into(),
            ));
        }
        Ok(Some((head[0], bytes)))
    }

    /// Fills `buf` from the decrypted stream; short only at its end.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ArchiveError> {
        let mut filled = 0;
        while filled < buf.len() {
            if self.consumed == self.plain.len() {
                if self.at_end {
                    break;
                }
                self.read_frame()?;
                continue;
            }
            let n = (buf.len() - filled).min(self.plain.len() - self.consumed);
            buf[filled..filled + n].copy_from_slice(&self.plain[self.consumed..self.consumed + n]);
            filled += n;
            self.consumed += n;
        }
        Ok(filled)
    }

    fn read_frame(&mut self) -> Result<(), ArchiveError> {
        let frame = self.next_frame;
        if frame >= MAX_FRAMES {
            return Err(ArchiveError::Tampered { frame });
        }
        let mut len = [0u8; 4];
        if !read_full(&mut self.input, &mut len)? {
            return Err(ArchiveError::Truncated);
        }
        let len = u32::from_be_bytes(len) as usize;
        if !(TAG_LEN..=FRAME_SIZE + TAG_LEN).contains(&len) {
            return Err(ArchiveError::Tampered { frame });
        }
        let mut number = [0u8; 4];
        if !read_full(&mut self.input, &mut number)? {
            return Err(ArchiveError::Truncated);
        }
        let number = u32::from_be_bytes(number);
        // A frame of an older run than the one before it: a discarded tail.
        let generation = match number.cmp(&self.generation.number) {
            std::cmp::Ordering::Less => return Err(ArchiveError::Tampered { frame }),
            std::cmp::Ordering::Equal => self.generation,
            // A run resumed here, from the run of the frame before.
            std::cmp::Ordering::Greater => Generation {
                number,
                start: frame,
                previous: self.generation.number,
            },
        };
        let aad = generation.aad(&self.header_digest);
        self.sealed.resize(len, 0);
        if !read_full(&mut self.input, &mut self.sealed)? {
            return Err(ArchiveError::Truncated);
        }
        let (ciphertext, tag) = self.sealed.split_at(len - TAG_LEN);
        self.plain.resize(ciphertext.len(), 0);
        // The flag is only known by trying; opening leaves the ciphertext
        // intact, so a failed first guess costs one more tag check.
        let mut opens = |last| {
            self.key
                .open_separate_gather(
                    generation.nonce(frame, last),
                    Aad::from(aad),
                    ciphertext,
                    tag,
                    &mut self.plain,
                )
                .is_ok()
        };
        let last = if opens(false) {
            false
        } else if opens(true) {
            true
        } else {
            return Err(ArchiveError::Tampered { frame });
        };
        self.next_frame = frame + 1;
        self.generation = generation;
        self.consumed = 0;
        if last {
            if !at_eof(&mut self.input)? {
                return Err(ArchiveError::TrailingData);
            }
            self.at_end = true;
        }
        Ok(())
    }
}

/// One run of a writer: the first, or one per resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Generation {
    number: u32,
    /// The index of the run's first frame.
    start: u64,
    /// The generation of the frame before `start` (0 for the first run).
    previous: u32,
}

impl Generation {
    const FIRST: Generation = Generation {
        number: 0,
        start: 0,
        previous: 0,
    };

    /// `number` (4 bytes) ‖ `counter` (7 bytes, below [`MAX_FRAMES`]) ‖ last flag.
    fn nonce(&self, counter: u64, last: bool) -> Nonce {
        debug_assert!(counter < MAX_FRAMES);
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.number.to_be_bytes());
        nonce[4..11].copy_from_slice(&counter.to_be_bytes()[1..]);
        nonce[11] = u8::from(last);
        Nonce::assume_unique_for_key(nonce)
    }

    /// The header's digest ‖ `start` ‖ `previous`: which run this one resumed, and where.
    fn aad(&self, header_digest: &[u8; 32]) -> [u8; 44] {
        let mut aad = [0u8; 44];
        aad[..32].copy_from_slice(header_digest);
        aad[32..40].copy_from_slice(&self.start.to_be_bytes());
        aad[40..].copy_from_slice(&self.previous.to_be_bytes());
        aad
    }
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey, ArchiveError> {
    let key = UnboundKey::new(&AES_256_GCM, bytes)
        .map_err(|_| ArchiveError::Crypto("bad AES-256 key".into()))?;
    Ok(LessSafeKey::new(key))
}

fn fill_random(bytes: &mut [u8]) -> Result<(), ArchiveError> {
    SystemRandom::new()
        .fill(bytes)
        .map_err(|_| ArchiveError::Crypto("no randomness".into()))
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = Context::new(&SHA256);
    for part in parts {
        context.update(part);
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(context.finish().as_ref());
    digest
}

fn decode_base64(field: &str, text: &str) -> Result<Vec<u8>, ArchiveError> {
    BASE64
        .decode(text)
        .map_err(|e| ArchiveError::BadHeader(format!("{field}: {e}")))
}

/// Reads exactly `buf.len()` bytes; `false` if the input ends first.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    match input.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn at_eof(input: &mut impl Read) -> std::io::Result<bool> {
    let mut probe = [0u8; 1];
    loop {
        match input.read(&mut probe) {
            Ok(n) => return Ok(n == 0),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom};
    use std::ops::Range;

    use super::*;
    use crate::openpgp::AccountKey;

    const LABEL: &str = "tenant-export";

    fn quick(passphrase: &str) -> Recipient {
        Recipient::Passphrase {
            passphrase: passphrase.into(),
            kdf: KdfParams::new(64, 1, 1).unwrap(),
        }
    }

    fn passphrase(passphrase: &str) -> Unlock {
        Unlock::Passphrase(passphrase.into())
    }

    fn write(recipient: &Recipient, records: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let (mut writer, _key) = ArchiveWriter::create(Vec::new(), recipient, LABEL).unwrap();
        for (kind, bytes) in records {
            writer.write_record(*kind, bytes).unwrap();
        }
        writer.finish().unwrap()
    }

    fn read_all(
        archive: &[u8],
        unlock: &Unlock,
        max_record: u64,
    ) -> Result<Vec<(u8, Vec<u8>)>, ArchiveError> {
        let mut reader = ArchiveReader::open(archive, unlock, max_record)?;
        let mut records = Vec::new();
        while let Some(record) = reader.next_record()? {
            records.push(record);
        }
        Ok(records)
    }

    /// Each frame's bytes (framing included) in a well-formed archive.
    fn frames(archive: &[u8]) -> Vec<Range<usize>> {
        let json_len = u32::from_be_bytes(archive[16..20].try_into().unwrap()) as usize;
        let mut at = 20 + json_len;
        let mut frames = Vec::new();
        while at < archive.len() {
            let len = u32::from_be_bytes(archive[at..at + 4].try_into().unwrap()) as usize;
            frames.push(at..at + FRAME_HEADER_LEN + len);
            at += FRAME_HEADER_LEN + len;
        }
        frames
    }

    /// Each frame's generation, from its clear framing.
    fn generations(archive: &[u8]) -> Vec<u32> {
        frames(archive)
            .iter()
            .map(|f| u32::from_be_bytes(archive[f.start + 4..f.start + 8].try_into().unwrap()))
            .collect()
    }

    /// `prefix` with `parts` of `from` appended, each a range of frames.
    fn spliced(prefix: &[u8], parts: &[(&[u8], Range<usize>)]) -> Vec<u8> {
        let mut out = prefix.to_vec();
        for (from, range) in parts {
            let spans = frames(from);
            out.extend_from_slice(&from[spans[range.start].start..spans[range.end - 1].end]);
        }
        out
    }

    /// An archive resumed once and its interrupted run's file, cut-off tail
    /// included: frames 0..3 before the checkpoint (generation 0), 3..5 the
    /// tail (generation 0), then 3..6 the resumed run's (generation 1, the
    /// first an empty frame from its own checkpoint).
    fn resumed_once() -> (Vec<u8>, Vec<u8>, Checkpoint, Vec<(u8, Vec<u8>)>) {
        let before = vec![(1, pattern(2 * FRAME_SIZE + 100, 1))];
        let (mut writer, key) = ArchiveWriter::create(Vec::new(), &quick("pass"), LABEL).unwrap();
        for (kind, bytes) in &before {
            writer.write_record(*kind, bytes).unwrap();
        }
        let checkpoint = writer.checkpoint().unwrap();
        assert_eq!((checkpoint.frames_written, checkpoint.generation), (3, 0));
        writer
            .write_record(2, &pattern(2 * FRAME_SIZE + 10, 99))
            .unwrap();
        let interrupted = writer.get_mut().clone();
        assert_eq!(frames(&interrupted).len(), 5);

        let prefix = interrupted[..checkpoint.bytes_written as usize].to_vec();
        let mut writer = ArchiveWriter::resume(prefix, &key, &checkpoint).unwrap();
        let again = writer.checkpoint().unwrap();
        assert_eq!(
            (again.frames_written, again.generation),
            (4, 1),
            "an empty frame under the new generation"
        );
        let after = vec![(3, pattern(FRAME_SIZE, 3)), (5, b"done".to_vec())];
        for (kind, bytes) in &after {
            writer.write_record(*kind, bytes).unwrap();
        }
        let archive = writer.finish().unwrap();
        assert_eq!(generations(&archive), [0, 0, 0, 1, 1, 1]);
        (
            archive,
            interrupted,
            checkpoint,
            before.into_iter().chain(after).collect(),
        )
    }

    /// Bytes that do not repeat with a period that divides a frame.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    /// Three full frames and a short last one.
    fn four_frames() -> (Vec<u8>, Vec<(u8, Vec<u8>)>) {
        let records = vec![(1, pattern(3 * FRAME_SIZE, 7)), (2, b"tail".to_vec())];
        let archive = write(&quick("pass"), &records);
        assert_eq!(frames(&archive).len(), 4);
        (archive, records)
    }

    #[test]
    fn records_round_trip_across_frames() {
        let mut records = vec![
            (0u8, Vec::new()),
            (9, pattern(FRAME_SIZE * 5 / 2, 1)),
            (3, Vec::new()),
        ];
        for i in 0..2000u32 {
            records.push(((i % 7) as u8, pattern(i as usize % 1500, i as u8)));
        }
        records.push((255, b"the last one".to_vec()));
        let archive = write(&quick("correct horse"), &records);

        assert!(frames(&archive).len() >= 4, "the big record spans frames");
        assert!(
            !archive.windows(12).any(|w| w == b"the last one"),
            "records are encrypted"
        );
        let text = String::from_utf8_lossy(&archive[..200]);
        assert!(
            text.starts_with("CALIOP-ARCHIVE\n\u{1}")
                && text.contains("\"protection\":\"argon2id\""),
            "{text}"
        );

        let reader =
            ArchiveReader::open(archive.as_slice(), &passphrase("correct horse"), 1 << 28).unwrap();
        assert_eq!(reader.label(), LABEL);
        let age = Utc::now() - reader.created_at();
        assert!(
            age.num_seconds().abs() < 60,
            "created just now, not {}",
            reader.created_at()
        );
        assert_eq!(
            read_all(&archive, &passphrase("correct horse"), 1 << 28).unwrap(),
            records
        );
    }

    #[test]
    fn an_empty_archive_has_no_records() {
        let archive = write(&quick("pass"), &[]);
        assert_eq!(frames(&archive).len(), 1);
        assert_eq!(
            read_all(&archive, &passphrase("pass"), 1024).unwrap(),
            vec![]
        );
    }

    #[test]
    fn an_interrupted_export_resumes_from_its_checkpoint() {
        let path = std::env::temp_dir().join(format!("caliop-archive-{}", uuid::Uuid::now_v7()));
        let before: Vec<(u8, Vec<u8>)> = (0..50u8)
            .map(|i| (1, pattern(30_000 + i as usize, i)))
            .collect();
        let (key, checkpoint) = {
            let file = std::fs::File::create(&path).unwrap();
            let (mut writer, key) = ArchiveWriter::create(file, &quick("pass"), LABEL).unwrap();
            for (kind, bytes) in &before {
                writer.write_record(*kind, bytes).unwrap();
            }
            let checkpoint = writer.checkpoint().unwrap();
            writer.get_mut().sync_data().unwrap();
            assert_eq!(checkpoint.header_digest, writer.header_digest());
            assert_eq!(
                checkpoint.bytes_written,
                writer.get_mut().metadata().unwrap().len()
            );
            // Work the interruption loses: some of it reaches the file.
            writer
                .write_record(2, &pattern(2 * FRAME_SIZE + 10, 99))
                .unwrap();
            (key.to_bytes(), checkpoint)
        };
        assert!(std::fs::metadata(&path).unwrap().len() > checkpoint.bytes_written);
        assert!(
            FileKey::from_bytes(&key[..31]).is_err(),
            "a kept key must be whole"
        );
        let interrupted = std::fs::read(&path).unwrap();
        assert!(matches!(
            read_all(&interrupted, &passphrase("pass"), 1 << 24),
            Err(ArchiveError::Truncated)
        ));

        let after: Vec<(u8, Vec<u8>)> = vec![
            (3, pattern(FRAME_SIZE + 5, 3)),
            (4, Vec::new()),
            (5, b"done".to_vec()),
        ];
        {
            let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(checkpoint.bytes_written).unwrap();
            file.seek(SeekFrom::End(0)).unwrap();
            let mut writer = ArchiveWriter::resume(
                file,
                &FileKey::from_bytes(key.as_slice()).unwrap(),
                &checkpoint,
            )
            .unwrap();
            for (kind, bytes) in &after {
                writer.write_record(*kind, bytes).unwrap();
            }
            writer.finish().unwrap();
        }
        let archive = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let expected: Vec<_> = before.into_iter().chain(after).collect();
        assert_eq!(
            read_all(&archive, &passphrase("pass"), 1 << 24).unwrap(),
            expected
        );

        // The resumed run sealed under a generation of its own, the cut-off tail's frames not.
        let (old, new) = (generations(&interrupted), generations(&archive));
        let kept = checkpoint.frames_written as usize;
        assert_eq!(checkpoint.generation, 0);
        assert!(old.len() > kept && new.len() > kept, "{old:?} {new:?}");
        assert_eq!(
            new[..kept],
            old[..kept],
            "the frames before the checkpoint stay"
        );
        assert!(old.iter().all(|&g| g == 0), "{old:?}");
        assert!(new[kept..].iter().all(|&g| g == 1), "{new:?}");
        assert_eq!(
            archive[..checkpoint.bytes_written as usize],
            interrupted[..checkpoint.bytes_written as usize]
        );
    }

    #[test]
    fn every_resume_seals_under_a_new_generation() {
        let (archive, _, _, records) = resumed_once();
        assert_eq!(
            read_all(&archive, &passphrase("pass"), 1 << 24).unwrap(),
            records
        );

        let (mut writer, key) = ArchiveWriter::create(Vec::new(), &quick("pass"), LABEL).unwrap();
        let mut expected = vec![(0, pattern(FRAME_SIZE + 1, 0))];
        writer.write_record(0, &expected[0].1).unwrap();
        let mut checkpoint = writer.checkpoint().unwrap();
        let mut file = writer.get_mut().clone();
        for run in 1..=3u8 {
            let mut writer = ArchiveWriter::resume(file, &key, &checkpoint).unwrap();
            assert_eq!(writer.checkpoint().unwrap().generation, u32::from(run));
            expected.push((run, pattern(FRAME_SIZE / 2, run)));
            writer
                .write_record(run, &expected.last().unwrap().1)
                .unwrap();
            checkpoint = writer.checkpoint().unwrap();
            file = if run < 3 {
                writer.get_mut().clone()
            } else {
                writer.finish().unwrap()
            };
        }
        assert_eq!(generations(&file), [0, 0, 1, 1, 2, 2, 3, 3, 3]);
        assert_eq!(
            read_all(&file, &passphrase("pass"), 1 << 24).unwrap(),
            expected
        );

        let exhausted = Checkpoint {
            generation: u32::MAX,
            ..checkpoint
        };
        let err = ArchiveWriter::resume(Vec::new(), &key, &exhausted).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Crypto(_)),
            "no generation after the last: {err:?}"
        );
    }

    #[test]
    fn a_run_that_only_checkpointed_is_followed() {
        // A run resumed and checkpointed (its empty frame), then interrupted
        // before any record: the next run resumes after its empty frame.
        let (mut writer, key) = ArchiveWriter::create(Vec::new(), &quick("pass"), LABEL).unwrap();
        writer.write_record(1, b"one").unwrap();
        let first = writer.checkpoint().unwrap();
        let mut writer = ArchiveWriter::resume(writer.get_mut().clone(), &key, &first).unwrap();
        let second = writer.checkpoint().unwrap();
        let mut writer = ArchiveWriter::resume(writer.get_mut().clone(), &key, &second).unwrap();
        writer.write_record(2, b"two").unwrap();
        let archive = writer.finish().unwrap();
        assert_eq!(generations(&archive), [0, 1, 2]);
        assert_eq!(
            read_all(&archive, &passphrase("pass"), 1024).unwrap(),
            vec![(1, b"one".to_vec()), (2, b"two".to_vec())]
        );
    }

    #[test]
    fn resuming_again_before_the_new_checkpoint_is_kept_seals_the_same_bytes() {
        // Interrupted between a resumed run's first checkpoint and keeping it:
        // the next run, from the same old checkpoint, writes exactly the same.
        let (mut writer, key) = ArchiveWriter::create(Vec::new(), &quick("pass"), LABEL).unwrap();
        writer.write_record(1, b"one").unwrap();
        let kept = writer.checkpoint().unwrap();
        let file = writer.get_mut().clone();
        let runs = [1, 2].map(|_| {
            let mut writer = ArchiveWriter::resume(file.clone(), &key, &kept).unwrap();
            let checkpoint = writer.checkpoint().unwrap();
            (writer.get_mut().clone(), checkpoint)
        });
        assert_eq!(runs[0], runs[1]);
        assert_eq!(runs[0].1.generation, 1);
        let [(file, checkpoint), _] = runs;
        let mut writer = ArchiveWriter::resume(file, &key, &checkpoint).unwrap();
        writer.write_record(2, b"two").unwrap();
        let archive = writer.finish().unwrap();
        assert_eq!(
            read_all(&archive, &passphrase("pass"), 1024).unwrap(),
            vec![(1, b"one".to_vec()), (2, b"two".to_vec())]
        );
    }

    #[test]
    fn a_cut_off_frame_of_an_older_generation_is_refused() {
        let (archive, interrupted, checkpoint, _) = resumed_once();
        let prefix = &archive[..checkpoint.bytes_written as usize];
        // The tail's frame 4 (generation 0) in place of the resumed run's frame 4, after its frame 3.
        let forged = spliced(
            prefix,
            &[(&archive, 3..4), (&interrupted, 4..5), (&archive, 5..6)],
        );
        assert_eq!(generations(&forged), [0, 0, 0, 1, 0, 1]);
        let err = read_all(&forged, &passphrase("pass"), 1 << 24).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Tampered { frame: 4 }),
            "{err:?}"
        );

        // The whole tail in place of the resumed run's first frames: the
        // generations do not go back, but the resumed run did not start at frame 5.
        let forged = spliced(prefix, &[(&interrupted, 3..5), (&archive, 5..6)]);
        assert_eq!(generations(&forged), [0, 0, 0, 0, 0, 1]);
        let err = read_all(&forged, &passphrase("pass"), 1 << 24).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Tampered { frame: 5 }),
            "{err:?}"
        );
    }

    #[test]
    fn a_tail_cannot_stand_in_for_a_later_run() {
        // Run 0 checkpoints after frame 1, writes frames 1..4 and is cut off;
        // run 1 resumes at frame 1, checkpoints after frame 3 and is cut off;
        // run 2 resumes at frame 3 and finishes. Run 0's frames 1..3 in place of
        // run 1's, followed by run 2's: no generation goes back, but run 2
        // continued run 1, not run 0.
        let (mut writer, key) = ArchiveWriter::create(Vec::new(), &quick("pass"), LABEL).unwrap();
        writer.write_record(0, b"zero").unwrap();
        let first = writer.checkpoint().unwrap();
        writer.write_record(9, &pattern(3 * FRAME_SIZE, 9)).unwrap();
        let run0 = writer.get_mut().clone();
        let mut writer =
            ArchiveWriter::resume(run0[..first.bytes_written as usize].to_vec(), &key, &first)
                .unwrap();
        writer.checkpoint().unwrap();
        writer
            .write_record(1, &pattern(FRAME_SIZE - 100, 1))
            .unwrap();
        let second = writer.checkpoint().unwrap();
        assert_eq!(second.frames_written, 3);
        let mut writer = ArchiveWriter::resume(writer.get_mut().clone(), &key, &second).unwrap();
        writer.checkpoint().unwrap();
        writer.write_record(2, b"two").unwrap();
        let archive = writer.finish().unwrap();
        assert_eq!(generations(&archive), [0, 1, 1, 2, 2]);
        assert_eq!(generations(&run0), [0, 0, 0, 0]);
        assert_eq!(
            read_all(&archive, &passphrase("pass"), 1 << 24)
                .unwrap()
                .len(),
            3
        );

        let prefix = &archive[..first.bytes_written as usize];
        let forged = spliced(prefix, &[(&run0, 1..3), (&archive, 3..5)]);
        let err = read_all(&forged, &passphrase("pass"), 1 << 24).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Tampered { frame: 3 }),
            "{err:?}"
        );
    }

    #[test]
    fn a_changed_generation_is_tampering() {
        let (archive, _) = four_frames();
        let at = frames(&archive)[2].start + 4;
        for forged_generation in [1u32, u32::MAX] {
            let mut forged = archive.clone();
            forged[at..at + 4].copy_from_slice(&forged_generation.to_be_bytes());
            let err = read_all(&forged, &passphrase("pass"), 1 << 24).unwrap_err();
            assert!(
                matches!(err, ArchiveError::Tampered { frame: 2 }),
                "{forged_generation}: {err:?}"
            );
        }

        let (archive, _, _, records) = resumed_once();
        assert_eq!(
            read_all(&archive, &passphrase("pass"), 1 << 24).unwrap(),
            records
        );
        for (frame, forged_generation) in [(3, 0u32), (3, 2), (4, 0), (4, 2), (5, 0), (0, 1)] {
            let at = frames(&archive)[frame].start + 4;
            let mut forged = archive.clone();
            forged[at..at + 4].copy_from_slice(&forged_generation.to_be_bytes());
            let err = read_all(&forged, &passphrase("pass"), 1 << 24).unwrap_err();
            assert!(
                matches!(err, ArchiveError::Tampered { frame: f } if f == frame as u64),
                "{frame} {forged_generation}: {err:?}"
            );
        }
    }

    #[test]
    fn a_checkpoint_keeps_its_generation() {
        let (_, _, checkpoint, _) = resumed_once();
        let json = serde_json::to_value(checkpoint).unwrap();
        assert_eq!(json["generation"], 0);
        let again = Checkpoint {
            generation: 7,
            ..checkpoint
        };
        let back: Checkpoint =
            serde_json::from_value(serde_json::to_value(again).unwrap()).unwrap();
        assert_eq!(back, again);
    }

    #[test]
    fn a_wrong_passphrase_is_named() {
        let archive = write(&quick("right"), &[(1, b"x".to_vec())]);
        let err = read_all(&archive, &passphrase("wrong"), 1024).unwrap_err();
        assert!(matches!(err, ArchiveError::WrongPassphrase), "{err:?}");
        assert_eq!(
            err.to_string(),
            "wrong passphrase: the archive's key does not open with it"
        );
        let err = read_all(
            &archive,
            &Unlock::OpenPgp {
                secret_key_armored: String::new(),
                passphrase: "right".into(),
            },
            1024,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "this archive opens with a passphrase, which was not given"
        );
    }

    #[test]
    fn archives_to_an_openpgp_key_open_only_with_it() {
        let bob = AccountKey::generate("Bob <bob@example.com>", "bob's passphrase").unwrap();
        assert_eq!(bob.fingerprint.len(), 40);
        assert!(
            bob.public_armored
                .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        );
        assert!(
            bob.secret_armored
                .starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----")
        );
        let eve = AccountKey::generate("Eve <eve@example.com>", "eve's passphrase").unwrap();
        let records = vec![(1, pattern(FRAME_SIZE + 1, 5)), (2, b"mailbox".to_vec())];
        let archive = write(
            &Recipient::OpenPgp {
                public_key_armored: bob.public_armored.clone(),
            },
            &records,
        );
        let header = String::from_utf8_lossy(&archive[..2000]);
        assert!(
            header.contains("\"protection\":\"openpgp\"")
                && header.contains("-----BEGIN PGP MESSAGE-----")
        );

        let unlock = |key: &AccountKey, passphrase: &str| Unlock::OpenPgp {
            secret_key_armored: key.secret_armored.clone(),
            passphrase: passphrase.into(),
        };
        assert_eq!(
            read_all(&archive, &unlock(&bob, "bob's passphrase"), 1 << 24).unwrap(),
            records
        );
        let err = read_all(&archive, &unlock(&eve, "eve's passphrase"), 1 << 24).unwrap_err();
        assert!(matches!(err, ArchiveError::WrongKey), "{err:?}");
        let err = read_all(&archive, &unlock(&bob, "eve's passphrase"), 1 << 24).unwrap_err();
        assert!(matches!(err, ArchiveError::WrongPassphrase), "{err:?}");
        let err = read_all(&archive, &passphrase("bob's passphrase"), 1 << 24).unwrap_err();
        assert!(
            matches!(
                err,
                ArchiveError::WrongUnlock {
                    needs: "an OpenPGP secret key"
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_flipped_byte_is_tampering() {
        let (archive, _) = four_frames();
        let mut flipped = archive.clone();
        flipped[frames(&archive)[2].start + 100] ^= 0x01;
        let err = read_all(&flipped, &passphrase("pass"), 1 << 24).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Tampered { frame: 2 }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the archive was modified after it was written (frame 2 does not authenticate)"
        );
    }

    #[test]
    fn the_header_is_authenticated() {
        let archive = write(&quick("pass"), &[(1, b"x".to_vec())]);
        let at = archive
            .windows(LABEL.len())
            .position(|w| w == LABEL.as_bytes())
            .unwrap();
        let mut relabelled = archive.clone();
        relabelled[at] = b'T';
        let err =
            ArchiveReader::open(relabelled.as_slice(), &passphrase("pass"), 1024).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Tampered { frame: 0 }),
            "{err:?}"
        );
    }

    #[test]
    fn a_missing_last_frame_is_truncation() {
        let (archive, _) = four_frames();
        let spans = frames(&archive);
        let err = read_all(&archive[..spans[3].start], &passphrase("pass"), 1 << 24).unwrap_err();
        assert!(matches!(err, ArchiveError::Truncated), "{err:?}");
        let err = read_all(
            &archive[..spans[1].start + 1000],
            &passphrase("pass"),
            1 << 24,
        )
        .unwrap_err();
        assert!(
            matches!(err, ArchiveError::Truncated),
            "cut inside a frame: {err:?}"
        );
        let err = read_all(&archive[..30], &passphrase("pass"), 1 << 24).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Truncated),
            "cut inside the header: {err:?}"
        );
    }

    #[test]
    fn swapped_frames_are_tampering() {
        let (archive, _) = four_frames();
        let spans = frames(&archive);
        let mut swapped = archive[..spans[0].start].to_vec();
        for i in [0, 2, 1, 3] {
            swapped.extend_from_slice(&archive[spans[i].clone()]);
        }
        assert_eq!(swapped.len(), archive.len());
        let err = read_all(&swapped, &passphrase("pass"), 1 << 24).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Tampered { frame: 1 }),
            "{err:?}"
        );
    }

    #[test]
    fn bytes_after_the_end_are_refused() {
        let (mut archive, _) = four_frames();
        archive.push(0);
        let err = read_all(&archive, &passphrase("pass"), 1 << 24).unwrap_err();
        assert!(matches!(err, ArchiveError::TrailingData), "{err:?}");
        let mut doubled = write(&quick("pass"), &[(1, b"x".to_vec())]);
        let whole = doubled.clone();
        doubled.extend_from_slice(&whole[frames(&whole)[0].clone()]);
        let err = read_all(&doubled, &passphrase("pass"), 1 << 24).unwrap_err();
        assert!(
            matches!(err, ArchiveError::TrailingData),
            "a replayed frame: {err:?}"
        );
    }

    #[test]
    fn records_over_the_limit_are_refused() {
        let archive = write(&quick("pass"), &[(1, vec![7; 1000])]);
        assert_eq!(
            read_all(&archive, &passphrase("pass"), 1000).unwrap(),
            vec![(1, vec![7; 1000])]
        );
        let err = read_all(&archive, &passphrase("pass"), 999).unwrap_err();
        assert!(
            matches!(
                err,
                ArchiveError::RecordTooLarge {
                    size: 1000,
                    max: 999
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn after_an_error_the_reader_stops() {
        let (archive, _) = four_frames();
        let mut flipped = archive.clone();
        flipped[frames(&archive)[1].start + 10] ^= 0x80;
        let mut reader =
            ArchiveReader::open(flipped.as_slice(), &passphrase("pass"), 1 << 24).unwrap();
        assert!(matches!(
            reader.next_record(),
            Err(ArchiveError::Tampered { frame: 1 })
        ));
        assert!(
            matches!(reader.next_record(), Err(ArchiveError::ReaderFailed)),
            "never None after an error"
        );
    }

    #[test]
    fn other_files_and_versions_are_refused() {
        let archive = write(&quick("pass"), &[]);
        let err = read_all(b"From: someone\r\n\r\nhello", &passphrase("pass"), 1024).unwrap_err();
        assert!(matches!(err, ArchiveError::NotAnArchive), "{err:?}");
        assert!(matches!(
            read_all(b"CALIOP", &passphrase("pass"), 1024),
            Err(ArchiveError::NotAnArchive)
        ));
        let mut future = archive.clone();
        future[MAGIC.len()] = 2;
        let err = read_all(&future, &passphrase("pass"), 1024).unwrap_err();
        assert!(
            matches!(err, ArchiveError::UnsupportedVersion(2)),
            "{err:?}"
        );
        let mut huge = archive.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            read_all(&huge, &passphrase("pass"), 1024),
            Err(ArchiveError::BadHeader(_))
        ));
    }

    #[test]
    fn a_header_cannot_ask_for_more_than_the_limits() {
        let archive = write(&quick("pass"), &[]);
        let json_len = u32::from_be_bytes(archive[16..20].try_into().unwrap()) as usize;
        let json = String::from_utf8(archive[20..20 + json_len].to_vec()).unwrap();
        let greedy = json.replace("\"m_cost_kib\":64,", "\"m_cost_kib\":4194304,");
        assert_ne!(greedy, json);
        let mut forged = archive[..16].to_vec();
        forged.extend_from_slice(&(greedy.len() as u32).to_be_bytes());
        forged.extend_from_slice(greedy.as_bytes());
        forged.extend_from_slice(&archive[20 + json_len..]);
        let err = read_all(&forged, &passphrase("pass"), 1024).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::BadHeader(m) if m.contains("over the limits")),
            "{err:?}"
        );
        assert!(KdfParams::new(KdfParams::MAX_M_COST_KIB + 1, 1, 1).is_err());
        assert!(KdfParams::new(64, 0, 1).is_err(), "Argon2 needs a pass");
    }

    #[test]
    fn a_frame_length_over_the_limit_is_refused_before_reading_it() {
        let (archive, _) = four_frames();
        let at = frames(&archive)[1].start;
        let mut forged = archive[..at].to_vec();
        forged.extend_from_slice(&((FRAME_SIZE + TAG_LEN + 1) as u32).to_be_bytes());
        let err = read_all(&forged, &passphrase("pass"), 1 << 24).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Tampered { frame: 1 }),
            "refused, not read as truncated: {err:?}"
        );
    }

    #[test]
    fn memory_stays_at_one_frame() {
        let (mut writer, _) = ArchiveWriter::create(Vec::new(), &quick("pass"), LABEL).unwrap();
        for i in 0..40u8 {
            writer
                .write_record(i, &pattern(FRAME_SIZE / 3 + i as usize, i))
                .unwrap();
            assert!(
                writer.frame.capacity() <= FRAME_SIZE + TAG_LEN,
                "{}",
                writer.frame.capacity()
            );
        }
        let archive = writer.finish().unwrap();
        let mut reader =
            ArchiveReader::open(archive.as_slice(), &passphrase("pass"), 1 << 24).unwrap();
        while reader.next_record().unwrap().is_some() {
            assert!(
                reader.sealed.capacity() <= FRAME_SIZE + TAG_LEN
                    && reader.plain.capacity() <= FRAME_SIZE + TAG_LEN
            );
        }
    }

    #[test]
    fn nothing_secret_is_printed() {
        let recipient = quick("hunter2-passphrase");
        let (writer, key) = ArchiveWriter::create(Vec::new(), &recipient, LABEL).unwrap();
        let key_hex: String = key.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let unlock = Unlock::OpenPgp {
            secret_key_armored: "SECRET KEY BLOCK".into(),
            passphrase: "hunter2-passphrase".into(),
        };
        let printed = format!(
            "{recipient:?} {key:?} {writer:?} {unlock:?} {:?}",
            passphrase("hunter2-passphrase")
        );
        assert!(
            !printed.contains("hunter2")
                && !printed.contains("SECRET KEY")
                && !printed.contains(&key_hex),
            "{printed}"
        );
        assert!(printed.contains("FileKey([REDACTED])"), "{printed}");
    }
}
