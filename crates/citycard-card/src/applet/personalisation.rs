//! Preparation and personalisation (SPEC §6.3, §6.5–§6.9): PREPARE, STORE
//! PREPARATION CERTIFICATE, GET CHALLENGE, EXTERNAL AUTHENTICATE, the secured
//! PUT DATA and ACTIVATE, and TERMINATE: the commands of the card's life
//! before and around issuance. The reader's side (PSO, GENERAL AUTHENTICATE)
//! stays in the parent module.

use alloc::vec::Vec;
use citycard_proto::cert::{Certificate, Role, FINGERPRINT_LEN};
use citycard_proto::consts::label;
use citycard_proto::crypto::{self};
use citycard_proto::dispatch::{Header, Outcome};
use citycard_proto::limits::{MAX_PERSONALISATION_DATA, MAX_STORED_ATTRIBUTES};
use citycard_proto::pers::{
    self, CardAuthAnswer, Prepare, SecureChannel, StationAuth, CHALLENGE_LEN,
};
use citycard_proto::record::{
    self, GroupRecord, StoredValue, SEED_LEN, TAG_ATTRIBUTE, TAG_RECORD, TAG_SALT_SEED,
};
use citycard_proto::tlv;
use citycard_proto::{consts::LifeCycle, date::Date, sw::StatusWord};
use p256::{PublicKey, SecretKey};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::state::{Anchor, GroupData, PersistentState, Personalisation, Preparation};
use crate::storage::Storage;

use super::*;

impl<S: Storage, R: CryptoRngCore> Applet<S, R> {
    /// PREPARE (spec §6.3): generates the attestation key; nothing written.
    pub(super) fn prepare(&mut self, header: Header, data: &[u8]) -> Outcome {
        header.expect_p1p2((0, 0))?;
        let prepare = Prepare::decode(data).map_err(|_| StatusWord::IncorrectData)?;
        let attestation_key = self.ops.generate(&mut self.rng);
        let answer = pers::encode_attestation_key(&attestation_key.public_key());
        self.volatile.preparing = Some(Preparing {
            prepare,
            attestation_key,
        });
        Ok(answer)
    }

    /// STORE PREPARATION CERTIFICATE (spec §6.3): W1, BLANK → PREPARED.
    pub(super) fn store_preparation_certificate(&mut self, header: Header, data: &[u8]) -> Outcome {
        header.expect_p1p2((0, 0))?;
        let bad = StatusWord::IncorrectData;
        let preparing = self.volatile.preparing.take().ok_or(bad)?;
        let cert = Certificate::decode(data).map_err(|_| bad)?;
        let body = cert.body();
        if body.role != Role::PreparedCard
            || body.public_key != preparing.attestation_key.public_key()
            || body.issuer != preparing.prepare.issuer
            || body.effective != preparing.prepare.date
        {
            return Err(bad);
        }
        let next = PersistentState {
            life_cycle: LifeCycle::Prepared,
            anchor: Some(Anchor {
                issuer: preparing.prepare.issuer.clone(),
                root: preparing.prepare.root,
            }),
            preparation: Some(Preparation {
                attestation_key: preparing.attestation_key,
                certificate: data.to_vec(),
            }),
            personalisation: None,
            card_date: Some(preparing.prepare.date),
            cache: Vec::new(),
        };
        self.commit(next)?;
        Ok(Vec::new())
    }

    pub(super) fn get_challenge(&mut self, header: Header, le: Option<usize>) -> Outcome {
        header.expect_p1p2((0, 0))?;
        if le != Some(CHALLENGE_LEN) {
            return Err(StatusWord::WrongLength);
        }
        let mut challenge = [0u8; CHALLENGE_LEN];
        self.ops.fill(&mut self.rng, &mut challenge);
        self.volatile.challenge = Some(challenge);
        Ok(challenge.to_vec())
    }

    pub(super) fn external_authenticate(&mut self, header: Header, data: &[u8]) -> Outcome {
        header.expect_p1p2((0, 0))?;
        // One attempt per challenge, whatever the outcome.
        let challenge = self.volatile.challenge.take();
        let result = self.try_external_authenticate(challenge, data);
        if result.is_err() {
            self.volatile.station = None;
            self.volatile.staging = None;
        }
        result
    }

    pub(super) fn try_external_authenticate(
        &mut self,
        challenge: Option<[u8; CHALLENGE_LEN]>,
        data: &[u8],
    ) -> Outcome {
        let deny = StatusWord::SecurityStatusNotSatisfied;
        let auth = StationAuth::decode(data).map_err(|_| deny)?;
        let state = self.persistent.state().ok_or(StatusWord::Unknown)?;
        let preparation = state.preparation.as_ref().ok_or(deny)?;
        let attestation_public = preparation.attestation_key.public_key();
        // Always one signature verification: with the station's key when a
        // fresh station session can authenticate, else with the card's own
        // attestation key (which cannot verify), so a refusal costs the same.
        let station_key = match (&self.volatile.station, challenge) {
            (Some(s), Some(_)) if s.channel.is_none() => Some(s.certificate.body().public_key),
            _ => None,
        };
        let challenge_bytes = challenge.unwrap_or([0; CHALLENGE_LEN]);
        let message = pers::station_auth_message(&challenge_bytes, &auth.ephemeral, auth.groups);
        let verified = self.ops.verify(
            &station_key.unwrap_or(attestation_public),
            &message,
            &auth.signature,
        );
        if !verified || station_key.is_none() {
            return Err(deny);
        }
        let station_ephemeral: PublicKey =
            crypto::decode_point(&auth.ephemeral).map_err(|_| deny)?;
        let attestation_key = preparation.attestation_key.clone();
        let certificate = preparation.certificate.clone();
        let life_cycle = state.life_cycle;
        let publics: Vec<PublicKey> = match life_cycle {
            LifeCycle::Prepared => {
                // Key generation on the card: the private keys never leave it.
                let keys: Vec<SecretKey> = (0..auth.groups)
                    .map(|_| self.ops.generate(&mut self.rng))
                    .collect();
                let mut pseudonym_key = Zeroizing::new([0u8; 16]);
                self.ops.fill(&mut self.rng, pseudonym_key.as_mut_slice());
                let publics = keys.iter().map(SecretKey::public_key).collect();
                let n = keys.len();
                self.volatile.staging = Some(Staging {
                    keys,
                    pseudonym_key,
                    records: (0..n).map(|_| None).collect(),
                    seeds: (0..n).map(|_| None).collect(),
                    values: Vec::new(),
                    plaintext_bytes: 0,
                });
                publics
            }
            _ => state
                .personalisation
                .as_ref()
                .map(|p| p.groups.iter().map(|g| g.card_key.public_key()).collect())
                .ok_or(deny)?,
        };
        let channel = SecureChannel::for_card(
            &mut self.ops,
            &attestation_key,
            &station_ephemeral,
            &challenge_bytes,
        );
        let sealed_keys = channel.seal_group_keys(&mut self.ops, &publics);
        if let Some(station) = self.volatile.station.as_mut() {
            station.channel = Some(channel);
        }
        Ok(CardAuthAnswer {
            preparation_certificate: certificate,
            sealed_keys,
        }
        .encode())
    }

    /// Decrypts a secured command; any failure ends the station session.
    pub(super) fn open_secured(
        &mut self,
        header: Header,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StatusWord> {
        let channel = self
            .volatile
            .station
            .as_mut()
            .and_then(|s| s.channel.as_mut());
        let opened = match channel {
            Some(channel) => channel.open(&mut self.ops, header.to_bytes(), data).ok(),
            None => None,
        };
        match opened {
            Some(plaintext) => Ok(Zeroizing::new(plaintext)),
            None => {
                self.volatile.station = None;
                self.volatile.staging = None;
                Err(StatusWord::SecurityStatusNotSatisfied)
            }
        }
    }

    pub(super) fn put_data(&mut self, header: Header, data: &[u8]) -> Outcome {
        header.expect_p1p2((0, 0))?;
        if self.volatile.staging.is_none() {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        let plaintext = self.open_secured(header, data)?;
        let staging = self
            .volatile
            .staging
            .as_mut()
            .ok_or(StatusWord::SecurityStatusNotSatisfied)?;
        if staging.plaintext_bytes + plaintext.len() > MAX_PERSONALISATION_DATA {
            return Err(StatusWord::NotEnoughMemory);
        }
        let fields = tlv::read_all(&plaintext).map_err(|_| StatusWord::IncorrectData)?;
        // Validate everything before staging anything: a bad command stages nothing.
        let groups = staging.keys.len();
        let mut records: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut seeds: Vec<(usize, [u8; SEED_LEN])> = Vec::new();
        let mut values: Vec<StoredValue> = Vec::new();
        for f in &fields {
            match f.tag {
                TAG_RECORD => {
                    let record =
                        GroupRecord::decode(f.raw).map_err(|_| StatusWord::IncorrectData)?;
                    let g = usize::from(record.body().group);
                    let taken = staging.records.get(g).is_none_or(Option::is_some)
                        || records.iter().any(|(h, _)| *h == g);
                    if g >= groups || taken {
                        return Err(StatusWord::IncorrectData);
                    }
                    records.push((g, f.raw.to_vec()));
                }
                TAG_SALT_SEED => {
                    let (g, seed) =
                        record::decode_salt_seed(f.value).map_err(|_| StatusWord::IncorrectData)?;
                    let g = usize::from(g);
                    let taken = staging.seeds.get(g).is_none_or(Option::is_some)
                        || seeds.iter().any(|(h, _)| *h == g);
                    if g >= groups || taken {
                        return Err(StatusWord::IncorrectData);
                    }
                    seeds.push((g, seed));
                }
                TAG_ATTRIBUTE => {
                    let value = StoredValue::decode_value(f.value)
                        .map_err(|_| StatusWord::IncorrectData)?;
                    let duplicate = staging
                        .values
                        .iter()
                        .chain(values.iter())
                        .any(|e| e.id == value.id);
                    if duplicate {
                        return Err(StatusWord::IncorrectData);
                    }
                    values.push(value);
                }
                _ => return Err(StatusWord::IncorrectData),
            }
        }
        if staging.values.len() + values.len() > MAX_STORED_ATTRIBUTES {
            return Err(StatusWord::NotEnoughMemory);
        }
        for (g, r) in records {
            if let Some(slot) = staging.records.get_mut(g) {
                *slot = Some(r);
            }
        }
        for (g, s) in seeds {
            if let Some(slot) = staging.seeds.get_mut(g) {
                *slot = Some(Zeroizing::new(s));
            }
        }
        staging.values.extend(values);
        staging.plaintext_bytes += plaintext.len();
        Ok(Vec::new())
    }

    /// The §6.8 checks of every staged group; the valid-from they share.
    pub(super) fn check_staging(&mut self) -> Result<Date, StatusWord> {
        let bad = StatusWord::IncorrectData;
        let deny = StatusWord::SecurityStatusNotSatisfied;
        let card_date = self
            .persistent
            .state()
            .and_then(|s| s.card_date)
            .ok_or(StatusWord::Unknown)?;
        let station = self.volatile.station.as_ref().ok_or(deny)?;
        let staging = self.volatile.staging.as_ref().ok_or(deny)?;
        let station_cert = &station.certificate;
        let station_fp: [u8; FINGERPRINT_LEN] = station_cert.fingerprint();
        let station_key = station_cert.body().public_key;
        let mut valid_from: Option<Date> = None;
        let mut checks = Vec::new();
        for (g, key) in staging.keys.iter().enumerate() {
            let record_bytes = staging.records.get(g).and_then(Option::as_ref).ok_or(bad)?;
            let seed = staging.seeds.get(g).and_then(Option::as_ref).ok_or(bad)?;
            let record = GroupRecord::decode(record_bytes).map_err(|_| bad)?;
            let body = record.body();
            let same_from = valid_from.is_none_or(|d| d == body.valid_from);
            valid_from = Some(body.valid_from);
            if usize::from(body.group) != g
                || body.card_key != key.public_key()
                || body.station_ref != record::station_reference(body.group, &station_fp)
                || body.valid_from < card_date.month_start()
                || !station_cert.is_valid_on(body.valid_from)
                || !body.lifetime_allowed()
                || !same_from
            {
                return Err(bad);
            }
            checks.push((record, **seed));
        }
        let values = staging.values.clone();
        for (record, seed) in checks {
            if !self
                .ops
                .verify(&station_key, record.signed_bytes(), record.signature())
            {
                return Err(bad);
            }
            for v in &values {
                let salt = self.ops.cmac(&seed, &[label::SALT, &[v.id.get()]]);
                let digest = self.ops.sha256(&[&[v.id.get()], &salt, &v.value]);
                let mut slot = [0u8; record::DIGEST_LEN];
                slot.copy_from_slice(digest.get(..record::DIGEST_LEN).ok_or(bad)?);
                if !record.body().has_slot(&slot) {
                    return Err(bad);
                }
            }
        }
        valid_from.ok_or(bad)
    }

    pub(super) fn activate(&mut self, header: Header, data: &[u8]) -> Outcome {
        header.expect_p1p2((0, 0))?;
        if self.volatile.staging.is_none() {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        let plaintext = self.open_secured(header, data)?;
        if !plaintext.is_empty() {
            return Err(StatusWord::IncorrectData);
        }
        let valid_from = self.check_staging()?;
        let staging = self
            .volatile
            .staging
            .take()
            .ok_or(StatusWord::SecurityStatusNotSatisfied)?;
        let mut values = staging.values;
        values.sort_by_key(|v| v.id);
        let mut groups = Vec::with_capacity(staging.keys.len());
        for ((key, record), seed) in staging
            .keys
            .into_iter()
            .zip(staging.records)
            .zip(staging.seeds)
        {
            groups.push(GroupData {
                card_key: key,
                seed: seed.ok_or(StatusWord::IncorrectData)?,
                record: record.ok_or(StatusWord::IncorrectData)?,
            });
        }
        let personalisation = Personalisation {
            groups,
            pseudonym_key: staging.pseudonym_key,
            values,
        };
        let mut next = self
            .persistent
            .state()
            .cloned()
            .ok_or(StatusWord::Unknown)?;
        next.card_date = Some(match next.card_date {
            Some(d) if d > valid_from => d,
            _ => valid_from,
        });
        next.life_cycle = LifeCycle::Issued;
        next.personalisation = Some(personalisation.clone());
        self.commit(next)?;
        // The issuance check value over what the card stored (spec §6.8).
        let records: Vec<&[u8]> = personalisation
            .groups
            .iter()
            .map(|g| g.record.as_slice())
            .collect();
        let channel = self
            .volatile
            .station
            .take()
            .and_then(|s| s.channel)
            .ok_or(StatusWord::SecurityStatusNotSatisfied)?;
        let check = pers::check_value(
            &mut self.ops,
            channel.mac_key(),
            &records,
            &personalisation.values,
        );
        Ok(channel.seal_answer(&mut self.ops, header.to_bytes(), &check))
    }

    pub(super) fn terminate(&mut self, header: Header, data: &[u8]) -> Outcome {
        header.expect_p1p2((0, 0))?;
        let plaintext = self.open_secured(header, data)?;
        if !plaintext.is_empty() {
            return Err(StatusWord::IncorrectData);
        }
        // Terminating wipes keys and personal data; only the state byte remains.
        let next = PersistentState {
            life_cycle: LifeCycle::Terminated,
            ..PersistentState::blank()
        };
        self.commit(next)?;
        self.volatile = Volatile {
            selected: true,
            ..Volatile::default()
        };
        Ok(Vec::new())
    }
}
