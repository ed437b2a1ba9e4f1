//! `read_credentials`: any bytes match the reference's model; well-formed credentials of any
//! email and secret come back exactly, in every spelling the reference allows; control
//! characters, a second header and over-long values are refused.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use tokengate::data::proxy::credentials::{CredentialBuffer, CredentialError, read_credentials};

use crate::check::credentials::{MAX_HEADER_LEN, basic, check};
use crate::strategies::cases;

/// An email as presented: no colon, no control character; often plausible, sometimes any text.
fn email() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9._%+-]{1,20}@[a-z0-9.-]{1,20}", "[^:\\p{Cc}]{1,40}"]
}

/// A secret as presented: no control character, colons allowed; up to the longest that fits.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof!["tg_[A-Za-z0-9_:]{1,60}", "[^\\p{Cc}]{1,60}", (600..900usize).prop_map(|n| "s".repeat(n)),]
}

/// A control character, ASCII or C1.
fn control() -> impl Strategy<Value = char> {
    prop_oneof![
        (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap()),
        Just('\u{7f}'),
        "\\p{Cc}".prop_map(|s| { s.chars().next().unwrap() })
    ]
}

/// `Basic` in any case, any number of spaces before the credentials, blanks around the value.
fn header(raw: &[u8], scheme: &str, padded: bool, spaces: usize, around: &str) -> Vec<u8> {
    let encoded = basic(raw, padded);
    let mut value = around.as_bytes().to_vec();
    value.extend_from_slice(scheme.as_bytes());
    value.extend(std::iter::repeat_n(b' ', spaces));
    value.extend_from_slice(&encoded["Basic ".len()..]);
    value.extend_from_slice(around.as_bytes());
    value
}

fn read(values: &[&[u8]]) -> Result<(String, String), CredentialError> {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
    }
    let mut buffer = CredentialBuffer::new();
    read_credentials(&headers, &mut buffer).map(|c| (c.email.to_owned(), c.secret.to_owned()))
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn any_bytes_read_as_the_reference_says(values in prop::collection::vec(
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            (any::<bool>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(p, raw)| basic(&raw, p)),
            "[bB][aA][sS][iI][cC][ \t]{0,3}[A-Za-z0-9+/=]{0,40}[ \t]{0,2}".prop_map(String::into_bytes),
        ],
        0..3,
    )) {
        check(&values);
    }

    #[test]
    fn well_formed_credentials_come_back_exactly(
        email in email(),
        secret in secret(),
        scheme in "[bB][aA][sS][iI][cC]",
        padded in any::<bool>(),
        spaces in 1..4usize,
        around in "[ \t]{0,2}",
    ) {
        let value = header(format!("{email}:{secret}").as_bytes(), &scheme, padded, spaces, &around);
        let expected = if value.len() <= MAX_HEADER_LEN { Ok((email, secret)) } else { Err(CredentialError::TooLong) };
        prop_assert_eq!(read(&[&value]), expected);
        check(&[value]);
    }

    #[test]
    fn control_characters_are_refused_anywhere(
        email in email(),
        secret in secret().prop_filter("fits", |s| s.len() < 700),
        control in control(),
        in_secret in any::<bool>(),
        at in any::<prop::sample::Index>(),
    ) {
        let (mut email, mut secret) = (email, secret);
        let target = if in_secret { &mut secret } else { &mut email };
        let boundaries: Vec<usize> = (0..=target.len()).filter(|i| target.is_char_boundary(*i)).collect();
        target.insert(*at.get(&boundaries), control);
        let value = basic(format!("{email}:{secret}").as_bytes(), true);
        prop_assert_eq!(read(&[&value]), Err(CredentialError::ControlCharacter));
    }

    #[test]
    fn a_second_authorization_header_is_refused(email in email(), secret in secret(), other in email()) {
        let first = basic(format!("{email}:{secret}").as_bytes(), true);
        let second = basic(format!("{other}:{secret}").as_bytes(), false);
        prop_assert_eq!(read(&[&first, &second]), Err(CredentialError::Repeated));
        prop_assert_eq!(read(&[&first, &first]), Err(CredentialError::Repeated));
    }

    #[test]
    fn over_long_values_are_refused_before_decoding(email in email(), secret in secret(), extra in 1..64usize) {
        // Valid credentials padded past the limit with blanks that would otherwise be trimmed.
        let mut value = basic(format!("{email}:{secret}").as_bytes(), true);
        let short = MAX_HEADER_LEN.saturating_sub(value.len());
        value.extend(std::iter::repeat_n(b' ', short + extra));
        prop_assert_eq!(read(&[&value]), Err(CredentialError::TooLong));
    }

    #[test]
    fn debug_never_shows_the_secret(email in email(), secret in "tg_[A-Za-z0-9_]{1,40}") {
        // The exact `Debug` text is checked by `check`; here, in so many words.
        prop_assume!(!email.contains(&secret));
        let value = basic(format!("{email}:{secret}").as_bytes(), true);
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, HeaderValue::from_bytes(&value).unwrap());
        let mut buffer = CredentialBuffer::new();
        let credentials = read_credentials(&headers, &mut buffer).unwrap();
        let shown = format!("{credentials:?} {credentials:#?}");
        prop_assert!(!shown.contains(&secret), "{}", shown);
        prop_assert!(shown.contains(&format!("{email:?}")), "{}", shown);
    }
}
