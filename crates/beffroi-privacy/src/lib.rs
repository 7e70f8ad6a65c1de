//! Pseudonymisation by design: personal identifiers (plates, badges, MAC addresses, phone
//! numbers, names) are replaced by a keyed pseudonym before anything is stored or logged.
//!
//! - A pseudonym is `HMAC-SHA256(k, identifier kind ‖ 0 ‖ normalised value)`, truncated to
//!   100 bits and written `plate:3:…` (kind, key epoch, base32). Without the key it cannot
//!   be reversed by trying every plate (EDPB guidelines 01/2025: a plain hash can).
//! - The key belongs to one territory and one *epoch*; rotating starts a new epoch (new
//!   pseudonyms from then on), destroying an epoch's key makes its pseudonyms unlinkable
//!   for good: the same plate seen again gets an unrelated pseudonym, and the sealed values
//!   of that epoch can no longer be opened.
//! - The value behind a pseudonym is kept only *sealed* (ChaCha20-Poly1305 under a key
//!   derived from the epoch key), for purpose-bound unmasking.
//!
//! Pure: keys are handed in by the edge (`beffroi` keeps them in files apart from the
//! database).

mod pseudonym;
mod scrub;

pub use pseudonym::{
    EpochKey, PrivacyError, Pseudonym, Pseudonymiser, Sealed, normalise, parse_pseudonym,
};
pub use scrub::{Scrubbed, carries_identifier, scrub};
