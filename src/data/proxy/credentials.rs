//! Reading `Authorization: Basic base64(EMAIL:TOKEN)` without trusting any of it.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderMap;
use http::header::AUTHORIZATION;
use zeroize::Zeroize;

/// Longer `Authorization` values are refused before decoding: `Basic `, and the base64 of the
/// longest credentials that can match (an email of 254 bytes, `:`, a secret of
/// [`crate::model::secret::MAX_SECRET_LEN`] bytes: 1 024 characters), with room for spaces.
/// Kept this tight because the decode buffer below is zeroed for every request.
const MAX_HEADER_LEN: usize = 1100;

/// Standard base64, padding optional: some clients leave it off.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why credentials could not be read. Every one of them becomes the same 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// No `Authorization` header.
    Missing,
    /// More than one `Authorization` header: which one an upstream would read is anyone's guess.
    Repeated,
    /// The header is longer than any real credentials, refused before decoding.
    TooLong,
    /// A scheme other than `Basic` (a bearer token, say).
    NotBasic,
    /// The credentials are not base64.
    BadBase64,
    /// The decoded credentials are not UTF-8.
    NotUtf8,
    /// No `:` between the email and the secret.
    NoColon,
    /// A control character in the email or the secret (it could forge log lines or headers).
    ControlCharacter,
    /// Nothing before the `:`.
    EmptyUser,
    /// Nothing after the `:`.
    EmptySecret,
}

impl CredentialError {
    /// The `reason` label of `tokengate_auth_failures_total` and of the log line.
    pub fn reason(self) -> &'static str {
        match self {
            CredentialError::Missing => "missing_credentials",
            CredentialError::Repeated => "repeated_authorization_header",
            CredentialError::TooLong => "credentials_too_long",
            CredentialError::NotBasic => "not_basic_auth",
            CredentialError::BadBase64 => "bad_base64",
            CredentialError::NotUtf8 => "not_utf8",
            CredentialError::NoColon => "no_colon",
            CredentialError::ControlCharacter => "control_character",
            CredentialError::EmptyUser => "empty_user",
            CredentialError::EmptySecret => "empty_secret",
        }
    }
}

/// Longest decoded credentials: what [`MAX_HEADER_LEN`] base64 characters decode to.
const MAX_DECODED_LEN: usize = MAX_HEADER_LEN / 4 * 3;

/// Scratch space the credentials are decoded into, on the stack: no allocation per request.
/// The part that was written is zeroed when the buffer is dropped.
pub struct CredentialBuffer {
    bytes: [u8; MAX_DECODED_LEN],
    used: usize,
}

impl CredentialBuffer {
    /// A zeroed buffer; one per request, on the stack.
    pub fn new() -> Self {
        CredentialBuffer { bytes: [0; MAX_DECODED_LEN], used: 0 }
    }
}

impl Default for CredentialBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for CredentialBuffer {
    fn drop(&mut self) {
        self.bytes[..self.used].zeroize();
    }
}

/// Decoded credentials, borrowed from a [`CredentialBuffer`]. `Debug` never shows the secret.
pub struct Credentials<'a> {
    /// The user name: the token owner's email, as presented (matched without case).
    pub email: &'a str,
    /// The token's secret, as presented; hashed and never logged.
    pub secret: &'a str,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("email", &self.email).finish_non_exhaustive()
    }
}

/// Reads the one `Authorization` header of a request, decoding into `buffer`.
pub fn read_credentials<'a>(
    headers: &HeaderMap,
    buffer: &'a mut CredentialBuffer,
) -> Result<Credentials<'a>, CredentialError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(CredentialError::Missing)?;
    if values.next().is_some() {
        return Err(CredentialError::Repeated);
    }
    let value = value.as_bytes();
    if value.len() > MAX_HEADER_LEN {
        return Err(CredentialError::TooLong);
    }
    let (scheme, encoded) = split_scheme(value).ok_or(CredentialError::NotBasic)?;
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(CredentialError::NotBasic);
    }
    let len = BASE64.decode_slice(encoded.trim_ascii(), &mut buffer.bytes).map_err(|_| CredentialError::BadBase64)?;
    buffer.used = len;
    let decoded = std::str::from_utf8(&buffer.bytes[..len]).map_err(|_| CredentialError::NotUtf8)?;
    if has_control_character(decoded) {
        return Err(CredentialError::ControlCharacter);
    }
    let (email, secret) = decoded.split_once(':').ok_or(CredentialError::NoColon)?;
    if email.is_empty() {
        return Err(CredentialError::EmptyUser);
    }
    if secret.is_empty() {
        return Err(CredentialError::EmptySecret);
    }
    Ok(Credentials { email, secret })
}

/// Control characters anywhere: ASCII ones by a byte scan, the C1 range only when the text
/// is not ASCII. The scan reads every byte without an early exit, which the compiler turns into
/// vector instructions: every request's credentials pass here, and valid ones have none.
fn has_control_character(text: &str) -> bool {
    let bytes = text.as_bytes();
    let ascii_control = bytes.iter().fold(false, |found, b| found | (*b < 0x20) | (*b == 0x7f));
    ascii_control || (!text.is_ascii() && text.chars().any(char::is_control))
}

fn split_scheme(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let value = value.trim_ascii();
    let space = value.iter().position(|b| *b == b' ')?;
    Some((&value[..space], &value[space + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    fn basic(raw: &[u8]) -> Vec<u8> {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw)).into_bytes()
    }

    #[test]
    fn reads_email_and_secret() {
        let mut buffer = CredentialBuffer::new();
        let creds = read_credentials(&headers(&[&basic(b"ann@example.com:tg_abc:def")]), &mut buffer).unwrap();
        assert_eq!((creds.email, creds.secret), ("ann@example.com", "tg_abc:def"));
        let mut buffer = CredentialBuffer::new();
        let creds = read_credentials(&headers(&[b"bAsIc YW5uOng"]), &mut buffer).unwrap();
        assert_eq!((creds.email, creds.secret), ("ann", "x"));
        assert!(!format!("{creds:?}").contains('x'));
        let mut buffer = CredentialBuffer::new();
        let creds = read_credentials(&headers(&[&basic("ann:é\u{85}".as_bytes())]), &mut buffer);
        assert_eq!(creds.unwrap_err(), CredentialError::ControlCharacter, "C1 controls too");
    }

    #[test]
    fn the_longest_credentials_that_can_match_are_read() {
        let email = format!("{}@example.com", "a".repeat(254 - "@example.com".len()));
        let secret = "s".repeat(crate::model::secret::MAX_SECRET_LEN);
        let mut header = basic(format!("{email}:{secret}").as_bytes());
        header.extend_from_slice(b"   ");
        let mut buffer = CredentialBuffer::new();
        let creds = read_credentials(&headers(&[&header]), &mut buffer).unwrap();
        assert_eq!((creds.email.len(), creds.secret.len()), (254, crate::model::secret::MAX_SECRET_LEN));
    }

    #[test]
    fn refuses_every_malformed_shape() {
        let cases: Vec<(Vec<Vec<u8>>, CredentialError)> = vec![
            (vec![], CredentialError::Missing),
            (vec![basic(b"a:b"), basic(b"a:b")], CredentialError::Repeated),
            (vec![b"Bearer abc".to_vec()], CredentialError::NotBasic),
            (vec![b"Basic".to_vec()], CredentialError::NotBasic),
            (vec![b"Basic !!!".to_vec()], CredentialError::BadBase64),
            (vec![basic(b"\xff\xfe:x")], CredentialError::NotUtf8),
            (vec![basic(b"no-colon")], CredentialError::NoColon),
            (vec![basic(b"a\x07b:x")], CredentialError::ControlCharacter),
            (vec![basic(b":secret")], CredentialError::EmptyUser),
            (vec![basic(b"ann@example.com:")], CredentialError::EmptySecret),
            (vec![basic(&vec![b'a'; 4096])], CredentialError::TooLong),
        ];
        for (values, expected) in cases {
            let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            assert_eq!(read_credentials(&headers(&refs), &mut CredentialBuffer::new()).unwrap_err(), expected);
        }
    }
}
