//! What the control plane checks of a certificate before it is stored, beyond the shared
//! structural validation: the chain and key parse, the key matches the leaf, the leaf is
//! currently valid. It also computes the output-only `not_after`, and keeps private keys
//! write-only: a write may leave the key out to keep the stored one (an exported file applied
//! again), and everything the API returns has keys blanked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gateway_proto::kind::{Kind, resource_ref};
use gateway_proto::v1::{Certificate, Config, FieldViolation};
use gateway_proto::validate::{pem_certificates, pem_private_key};
use rustls::sign::CertifiedKey;

use crate::error::ApiError;

/// Fills in the keys a write left out (from `before`, when the chain is unchanged), then checks
/// and annotates every certificate that differs from `before`.
pub fn prepare(before: &Config, after: &mut Config, now: SystemTime) -> Result<(), ApiError> {
    let mut violations = Vec::new();
    for certificate in &mut after.certificates {
        let stored = before
            .certificates
            .iter()
            .find(|c| c.name == certificate.name);
        if certificate.private_key_pem.trim().is_empty()
            && let Some(stored) =
                stored.filter(|s| s.certificate_pem == certificate.certificate_pem)
        {
            certificate.private_key_pem = stored.private_key_pem.clone();
        }
        if stored == Some(&*certificate) {
            continue;
        }
        match check(certificate, now) {
            Ok(not_after) => certificate.not_after = not_after,
            Err((field, reason)) => violations.push(FieldViolation {
                resource: resource_ref(Kind::Certificate, &certificate.name),
                field: field.into(),
                reason,
            }),
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(violations))
    }
}

/// Checks one certificate; on success returns its leaf's `notAfter` as RFC 3339.
pub fn check(certificate: &Certificate, now: SystemTime) -> Result<String, (&'static str, String)> {
    if certificate.private_key_pem.trim().is_empty() {
        return Err((
            "private_key_pem",
            "a PEM private key is required (it may be left out only to keep the stored key of an unchanged chain)".into(),
        ));
    }
    let chain =
        pem_certificates(&certificate.certificate_pem).map_err(|e| ("certificate_pem", e))?;
    let key = pem_private_key(&certificate.private_key_pem).map_err(|e| ("private_key_pem", e))?;
    let (not_before, not_after) = validity(&chain[0]).ok_or_else(|| {
        (
            "certificate_pem",
            "the leaf certificate is not valid X.509 DER".to_string(),
        )
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => (
            "private_key_pem",
            "the private key does not match the certificate".to_string(),
        ),
        other => (
            "private_key_pem",
            format!("the key cannot sign with this certificate: {other}"),
        ),
    })?;
    let not_after_text = humantime::format_rfc3339_seconds(not_after).to_string();
    if not_after <= now {
        return Err((
            "certificate_pem",
            format!("the certificate expired at {not_after_text}"),
        ));
    }
    if not_before > now {
        return Err((
            "certificate_pem",
            format!(
                "the certificate is not valid before {}",
                humantime::format_rfc3339_seconds(not_before)
            ),
        ));
    }
    Ok(not_after_text)
}

/// The leaf's `notAfter` as RFC 3339, if the chain parses.
pub fn not_after(certificate_pem: &str) -> Option<String> {
    let chain = pem_certificates(certificate_pem).ok()?;
    let (_, not_after) = validity(chain.first()?)?;
    Some(humantime::format_rfc3339_seconds(not_after).to_string())
}

/// The leaf's validity period, read from its DER (RFC 5280 §4.1):
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
/// signature, issuer, validity SEQUENCE { notBefore Time, notAfter Time }, … }, … }`.
fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (certificate, _) = element(der, 0x30)?;
    let (tbs, _) = element(certificate, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = skip(rest)?;
    }
    rest = skip(rest)?; // serialNumber
    rest = skip(rest)?; // signature
    rest = skip(rest)?; // issuer
    let (validity, _) = element(rest, 0x30)?;
    let (not_before, rest) = time(validity)?;
    let (not_after, _) = time(rest)?;
    Some((not_before, not_after))
}

/// The content of the DER element at the start of `input`, which must have `tag`, and what
/// follows it.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    header(input)
}

fn skip(input: &[u8]) -> Option<&[u8]> {
    header(input).map(|(_, rest)| rest)
}

fn header(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let first = *input.get(1)?;
    let (length, start) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let mut length = 0usize;
        for byte in input.get(2..2 + count)? {
            length = (length << 8) | usize::from(*byte);
        }
        (length, 2 + count)
    };
    let end = start.checked_add(length)?;
    Some((input.get(start..end)?, input.get(end..)?))
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(input: &[u8]) -> Option<(SystemTime, &[u8])> {
    let tag = *input.first()?;
    let (content, rest) = header(input)?;
    let text = std::str::from_utf8(content).ok()?.strip_suffix('Z')?;
    let (year, rest_text) = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: i64 = text.get(0..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        (0x18, 14) => (text.get(0..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let field =
        |range: std::ops::Range<usize>| -> Option<i64> { rest_text.get(range)?.parse().ok() };
    let (month, day) = (field(0..2)?, field(2..4)?);
    let (hour, minute, second) = (field(4..6)?, field(6..8)?, field(8..10)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    let time = if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?)
    } else {
        UNIX_EPOCH - Duration::from_secs(u64::try_from(-seconds).ok()?)
    };
    Some((time, rest))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
pub(crate) mod tests;
