//! Verification of a PIV-profile card (`applet-spec/piv-profile.md` §5):
//! SELECT PIV, GET DATA `5FC101`, GENERAL AUTHENTICATE with key `9E` over a
//! fresh challenge. Entered from [`crate::verify`] when the card has no
//! citycard application.

use citycard_proto::piv::{self, CardAuthenticationCertificate, OID_CITYCARD_CARD_INFO};
use citycard_proto::{attr::AttributeId, attr::AttributeSet, sw::StatusWord};
use citycard_transport::{CardChannel, CardTransport};
use rand_core::CryptoRngCore;

use crate::verdict::{CardProfile, Genuine};
use crate::verify::{issuer_and_standing, send, Issued, Standing};
use crate::{Policy, Trust, Verdict};

/// The PIV procedure; `Err` carries an early verdict (as in [`crate::verify`]).
pub(crate) fn run<T: CardTransport>(
    channel: &mut CardChannel<T>,
    trust: &Trust,
    policy: &Policy,
    rng: &mut impl CryptoRngCore,
    requested: AttributeSet,
) -> Result<Verdict, Verdict> {
    // 1. SELECT PIV: anything but an Application Property Template is not ours.
    let answer = send(channel, &piv::select_command())?;
    if answer.sw != StatusWord::Success
        || piv::parse_application_property_template(&answer.data).is_err()
    {
        return Err(Verdict::NotACitycard);
    }
    // 2. The partner's own limits, enforced here because a PIV card cannot.
    check_partner(trust, policy, requested)?;
    // 3. The Card Authentication certificate.
    let certificate = read_certificate(channel)?;
    let body = certificate.body();
    // 4. The card proves it holds the certified key: a fresh challenge.
    prove_possession(channel, &body.card_key, rng)?;
    // 5–6. The issuer (station known, valid at issue, signature), then
    // validity, revocation, freshness: as for every profile.
    let standing = issuer_and_standing(
        trust,
        policy,
        Issued {
            station: &body.station,
            valid_from: body.valid_from,
            valid_to: body.valid_to,
            revocation_id: &certificate.revocation_id(),
        },
        |station| certificate.verify(station),
    )?;
    // 7. What the profile can say, limited to what was requested and granted.
    Ok(Verdict::Genuine(genuine(
        &certificate,
        requested,
        &standing,
    )))
}

/// Step 2: a PIV card has no reader authorisation, so the reader enforces
/// its own grants and credential dates, with the applet's verdicts.
fn check_partner(trust: &Trust, policy: &Policy, requested: AttributeSet) -> Result<(), Verdict> {
    let cert = trust.credential().certificate();
    let not_granted = requested.difference(cert.body().grants);
    if !not_granted.is_empty() {
        return Err(Verdict::Unauthorised { not_granted });
    }
    if !cert.is_valid_on(policy.today) {
        return Err(Verdict::CredentialExpired {
            effective: cert.body().effective,
            expiry: cert.body().expiry,
        });
    }
    Ok(())
}

/// Step 3: GET DATA `5FC101` and its citycard Card Authentication certificate.
fn read_certificate<T: CardTransport>(
    channel: &mut CardChannel<T>,
) -> Result<CardAuthenticationCertificate, Verdict> {
    let answer = send(
        channel,
        &piv::get_data_command(piv::OBJECT_CARD_AUTHENTICATION_CERTIFICATE),
    )?;
    match answer.sw {
        StatusWord::Success => {}
        // No certificate: a PIV card, but not one of ours (or not issued yet).
        StatusWord::FileNotFound | StatusWord::ReferencedDataNotFound => {
            return Err(Verdict::NotACitycard)
        }
        sw => {
            return Err(Verdict::Tampered {
                detail: format!("GET DATA 5FC101 answered {sw}"),
            })
        }
    }
    let der = piv::parse_data_object(&answer.data)
        .and_then(piv::parse_certificate_container)
        .map_err(|e| Verdict::Tampered {
            detail: format!("certificate container: {e}"),
        })?;
    match CardAuthenticationCertificate::decode(der) {
        Ok(c) => Ok(c),
        // Someone else's PIV certificate (no citycard extension) is simply
        // not a citycard; ours that does not decode has been tampered with.
        Err(_) if !contains(der, OID_CITYCARD_CARD_INFO) => Err(Verdict::NotACitycard),
        Err(e) => Err(Verdict::Tampered {
            detail: format!("card authentication certificate: {e}"),
        }),
    }
}

/// Step 4: key `9E` signs a fresh 32-byte challenge; anything else is a clone.
fn prove_possession<T: CardTransport>(
    channel: &mut CardChannel<T>,
    card_key: &p256::PublicKey,
    rng: &mut impl CryptoRngCore,
) -> Result<(), Verdict> {
    let mut challenge = [0u8; 32];
    rng.fill_bytes(&mut challenge);
    let answer = send(
        channel,
        &piv::sign_command(piv::SLOT_CARD_AUTHENTICATION, &challenge),
    )?;
    if answer.sw != StatusWord::Success {
        // No usable 9E key behind a certificate: not the certified card.
        return Err(Verdict::Clone);
    }
    let signature = piv::parse_signature(&answer.data).map_err(|e| Verdict::Tampered {
        detail: format!("card authentication answer: {e}"),
    })?;
    piv::verify_challenge(card_key, &challenge, &signature).map_err(|_| Verdict::Clone)
}

/// Step 7: card number, residence and the age predicates signed at issue,
/// as far as requested.
fn genuine(
    certificate: &CardAuthenticationCertificate,
    requested: AttributeSet,
    standing: &Standing,
) -> Genuine {
    let body = certificate.body();
    let mut attributes = Vec::new();
    if requested.contains(AttributeId::CARD_NUMBER) {
        attributes.push((
            AttributeId::CARD_NUMBER,
            body.card_number.clone().into_bytes(),
        ));
    }
    if requested.contains(AttributeId::RESIDENT) {
        attributes.push((AttributeId::RESIDENT, vec![1]));
    }
    attributes.sort_by_key(|(id, _)| *id);
    let card_number = requested
        .contains(AttributeId::CARD_NUMBER)
        .then(|| body.card_number.clone());
    let predicates = requested
        .iter()
        .filter(|id| id.age_threshold().is_some())
        .map(|id| (id, body.predicates.contains(id).then_some(true)))
        .collect();
    Genuine {
        attributes,
        pseudonym: None,
        predicates,
        card_number,
        expires: body.valid_to,
        revocation_age_secs: standing.revocation_age_secs,
        revocation_stale: standing.revocation_stale,
        profile: CardProfile::Piv,
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
