//! Token secrets: generation, the `tg_` format with its CRC32 checksum, the SHA-256 digest
//! that is all the database keeps, and the short display prefix.
//!
//! Format (the scheme GitHub uses, so secret scanners can recognise tokens and a mistyped
//! token fails before any lookup): `tg_` + 32 random bytes as 43 base62 characters + the CRC32
//! of everything before it as 6 base62 characters. Only tokens that look like ours have their
//! checksum checked; any other secret up to [`MAX_SECRET_LEN`] is simply hashed and looked
//! up, so imported or older tokens keep working.

use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What every secret minted here starts with.
pub const SECRET_PREFIX: &str = "tg_";
/// Presented secrets longer than this are refused without hashing.
pub const MAX_SECRET_LEN: usize = 512;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_CHARS: usize = 43; // 62^43 > 2^256
const CHECKSUM_CHARS: usize = 6; // 62^6 > 2^32
const SECRET_LEN: usize = SECRET_PREFIX.len() + RANDOM_CHARS + CHECKSUM_CHARS;
/// Random characters shown in the display prefix: enough to tell tokens apart and to match a
/// token found in a file, far too few to guess the rest.
const DISPLAY_RANDOM_CHARS: usize = 8;

/// A freshly minted secret. Shown once to its owner, then dropped (and zeroed).
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Mints a new secret from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut random = Zeroizing::new([0u8; 32]);
        getrandom::fill(random.as_mut())?;
        let mut text = String::with_capacity(SECRET_LEN);
        text.push_str(SECRET_PREFIX);
        text.push_str(&encode_base62(random.as_ref(), RANDOM_CHARS));
        let checksum = checksum_chars(crc32fast::hash(text.as_bytes()));
        text.extend(checksum.iter().map(|&b| char::from(b)));
        Ok(Secret(Zeroizing::new(text)))
    }

    /// The secret itself, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The digest stored for this secret and looked up when it is presented.
    pub fn digest(&self) -> TokenDigest {
        TokenDigest::of(&self.0)
    }

    /// The display prefix stored beside the digest.
    pub fn display_prefix(&self) -> String {
        display_prefix(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}…)", self.display_prefix())
    }
}

/// The prefix by which a secret is known after creation (`tg_` + 8 characters).
pub fn display_prefix(secret: &str) -> String {
    let end = SECRET_PREFIX.len() + DISPLAY_RANDOM_CHARS;
    if secret.starts_with(SECRET_PREFIX) && secret.len() >= end && secret.is_char_boundary(end) {
        secret[..end].to_owned()
    } else {
        secret.chars().take(DISPLAY_RANDOM_CHARS).collect()
    }
}

/// Why a presented secret was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretFormatError {
    /// An empty secret.
    Empty,
    /// Longer than [`MAX_SECRET_LEN`]: refused without hashing.
    TooLong,
    /// Shaped like one of ours, but the checksum does not match: a typo or a made-up token, refused
    /// without a lookup.
    BadChecksum,
}

/// Checks a presented secret's shape: not empty, not too long, and, when it looks like one
/// of ours, a matching checksum.
pub fn check_format(secret: &str) -> Result<(), SecretFormatError> {
    if secret.is_empty() {
        return Err(SecretFormatError::Empty);
    }
    if secret.len() > MAX_SECRET_LEN {
        return Err(SecretFormatError::TooLong);
    }
    if looks_minted_here(secret) {
        let (body, checksum) = secret.split_at(SECRET_LEN - CHECKSUM_CHARS);
        if checksum.as_bytes() != checksum_chars(crc32fast::hash(body.as_bytes())) {
            return Err(SecretFormatError::BadChecksum);
        }
    }
    Ok(())
}

fn looks_minted_here(secret: &str) -> bool {
    secret.len() == SECRET_LEN
        && secret.starts_with(SECRET_PREFIX)
        // Every byte is looked at, without stopping at the first odd one: so the compiler checks
        // many at once (`all` took ~50 ns per request, a sixth of the decision).
        && secret.as_bytes()[SECRET_PREFIX.len()..].iter().fold(true, |all, b| all & b.is_ascii_alphanumeric())
}

/// The SHA-256 of a secret: the index key and the only form the database stores.
/// Its `Debug` shows a few hex digits, never the whole digest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

/// The 32 bytes in one `write`, without the length prefix an array's `Hash` adds, so that the
/// index hashes the digest alone (see `data::index::IndexHashing`).
impl std::hash::Hash for TokenDigest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl TokenDigest {
    /// The digest of a presented or minted secret.
    pub fn of(secret: &str) -> Self {
        TokenDigest(Sha256::digest(secret.as_bytes()).into())
    }

    /// A digest as the database holds it; `None` unless it is exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(TokenDigest)
    }

    /// The 32 bytes, to store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// The CRC32 as exactly six base62 characters, without allocating (it is checked per request).
fn checksum_chars(mut crc: u32) -> [u8; CHECKSUM_CHARS] {
    let mut out = [b'0'; CHECKSUM_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    out
}

/// Big-endian base62 of `bytes`, left-padded with `0` to exactly `width` characters.
fn encode_base62(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while number.iter().any(|&b| b != 0) {
        // Long division of the big-endian number by 62.
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 62) as u8;
            remainder = value % 62;
        }
        digits.push(BASE62[remainder as usize]);
    }
    digits.resize(width.max(digits.len()), b'0');
    digits.reverse();
    digits.into_iter().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_secrets_have_the_documented_shape() {
        let secret = Secret::generate().unwrap();
        let text = secret.expose();
        assert_eq!(text.len(), 3 + 43 + 6);
        assert!(text.starts_with("tg_"));
        assert_eq!(check_format(text), Ok(()));
        assert_eq!(secret.display_prefix(), &text[..11]);
        assert_ne!(Secret::generate().unwrap().expose(), text);
    }

    #[test]
    fn a_typo_fails_the_checksum() {
        let secret = Secret::generate().unwrap();
        let mut typo = secret.expose().to_owned().into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(check_format(&typo), Err(SecretFormatError::BadChecksum));
    }

    #[test]
    fn foreign_secrets_are_accepted_up_to_the_bound() {
        assert_eq!(check_format("legacy-token-1234"), Ok(()));
        assert_eq!(check_format(""), Err(SecretFormatError::Empty));
        assert_eq!(check_format(&"x".repeat(MAX_SECRET_LEN + 1)), Err(SecretFormatError::TooLong));
    }

    #[test]
    fn base62_is_fixed_width_and_exact() {
        assert_eq!(encode_base62(&[0, 0], 3), "000");
        assert_eq!(encode_base62(&[0, 62], 2), "10");
        assert_eq!(encode_base62(&[255; 32], 43).len(), 43);
        let crc = 0xDEAD_BEEF_u32;
        assert_eq!(checksum_chars(crc).as_slice(), encode_base62(&crc.to_be_bytes(), 6).as_bytes());
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let secret = Secret::generate().unwrap();
        let shown = format!("{secret:?} {:?}", secret.digest());
        assert!(!shown.contains(&secret.expose()[11..]));
    }
}
