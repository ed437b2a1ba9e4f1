//! Credential parsing: what `read_credentials` makes of any `Authorization` header(s), against a
//! model written from the reference (one header of at most 1 100 bytes, `Basic` in any case,
//! standard base64 with all, part or none of its padding, UTF-8 without control characters, `EMAIL:SECRET`
//! split at the first colon, neither half empty). Shared by the property tests and the
//! `credentials` fuzz target.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use tokengate::data::proxy::credentials::{CredentialBuffer, CredentialError, read_credentials};

/// The reference's limit on an `Authorization` value, in bytes.
pub const MAX_HEADER_LEN: usize = 1100;

/// Fuzzer bytes as header values: the first byte picks how the rest is read, so that most runs
/// get past base64 instead of dying on random text.
pub fn values_from_bytes(data: &[u8]) -> Vec<Vec<u8>> {
    let Some((&mode, rest)) = data.split_first() else { return Vec::new() };
    match mode % 4 {
        // The rest is the decoded credentials: encoded here, padded or not.
        0 => vec![basic(rest, true)],
        1 => vec![basic(rest, false)],
        // The rest is one or more raw values, one per line.
        _ => rest.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect(),
    }
}

/// `Basic ` and the base64 of `raw`, with or without padding.
pub fn basic(raw: &[u8], padded: bool) -> Vec<u8> {
    let encoded = if padded { STANDARD.encode(raw) } else { STANDARD_NO_PAD.encode(raw) };
    format!("Basic {encoded}").into_bytes()
}

/// Reads `values` (those that are valid header values) as one request's `Authorization`
/// headers and checks the outcome against the model.
pub fn check(values: &[Vec<u8>]) {
    let headers = super::header_map(&AUTHORIZATION, values);
    let mut buffer = CredentialBuffer::new();
    let read = read_credentials(&headers, &mut buffer);
    let expected = expected(&headers);
    match (&read, &expected) {
        (Ok(credentials), Ok((email, secret))) => {
            assert_eq!((credentials.email, credentials.secret), (email.as_str(), secret.as_str()));
            // `Debug` shows the email and nothing else: never the secret.
            assert_eq!(format!("{credentials:?}"), format!("Credentials {{ email: {email:?}, .. }}"));
        }
        (Err(got), Err(want)) => assert_eq!(got, want, "{headers:?}"),
        _ => panic!("read {read:?}, the model says {expected:?}, for {headers:?}"),
    }
}

/// What the reference says the headers hold.
fn expected(headers: &HeaderMap) -> Result<(String, String), CredentialError> {
    let all: Vec<&HeaderValue> = headers.get_all(AUTHORIZATION).iter().collect();
    let value = match all.as_slice() {
        [] => return Err(CredentialError::Missing),
        [one] => one.as_bytes(),
        _ => return Err(CredentialError::Repeated),
    };
    if value.len() > MAX_HEADER_LEN {
        return Err(CredentialError::TooLong);
    }
    let value = value.trim_ascii();
    let space = value.iter().position(|b| *b == b' ').ok_or(CredentialError::NotBasic)?;
    if !value[..space].eq_ignore_ascii_case(b"basic") {
        return Err(CredentialError::NotBasic);
    }
    let encoded = value[space + 1..].trim_ascii();
    // Padding is optional: all of it, part of it (found by the fuzz target: `YW5reu1Ong=`) or
    // none, but never more than the length calls for.
    let unpadded = encoded.strip_suffix(b"=").map_or(encoded, |e| e.strip_suffix(b"=").unwrap_or(e));
    let padding = encoded.len() - unpadded.len();
    let decoded = if padding <= (4 - unpadded.len() % 4) % 4 { STANDARD_NO_PAD.decode(unpadded).ok() } else { None };
    let decoded = decoded.ok_or(CredentialError::BadBase64)?;
    let text = String::from_utf8(decoded).map_err(|_| CredentialError::NotUtf8)?;
    if text.chars().any(char::is_control) {
        return Err(CredentialError::ControlCharacter);
    }
    let (email, secret) = text.split_once(':').ok_or(CredentialError::NoColon)?;
    match (email.is_empty(), secret.is_empty()) {
        (true, _) => Err(CredentialError::EmptyUser),
        (_, true) => Err(CredentialError::EmptySecret),
        _ => Ok((email.to_owned(), secret.to_owned())),
    }
}
