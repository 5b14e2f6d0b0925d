//! The registry as an interface: what issuance, the officer's commands and
//! the revocation list need from it, whatever stores it. [`Registry`] (one
//! SQLite file) is today's implementation; another backend (e.g. a
//! PostgreSQL server for a city with many offices) implements the same
//! trait, and its contract is the one documented on [`Registry`]'s methods:
//! each mutating call is one transaction with its audit entry, durable
//! before it returns, and the database refuses what must never happen.

#[allow(unused_imports)]
use crate::prelude::*;

/// The issuance registry's operations (object safe: callers hold
/// `&mut dyn IssuanceRegistry`).
pub trait IssuanceRegistry {
    /// See [`Registry::for_each_audit_since`](crate::Registry::for_each_audit_since).
    fn for_each_audit_since(
        &self,
        since: i64,
        each: &mut dyn FnMut(AuditEntry) -> Result<()>,
    ) -> Result<u64>;
    /// See [`Registry::begin_intent`](crate::Registry::begin_intent).
    fn begin_intent(&mut self, n: &NewIssuance<'_>) -> Result<Intent>;
    /// See [`Registry::attach_card_key`](crate::Registry::attach_card_key).
    fn attach_card_key(
        &mut self,
        intent_id: i64,
        card_key: &[u8; 33],
        revocation_id: &[u8; 8],
        actor: &str,
    ) -> Result<()>;
    /// See [`Registry::attach_group_keys`](crate::Registry::attach_group_keys).
    fn attach_group_keys(&mut self, intent_id: i64, keys: &[[u8; 33]], actor: &str) -> Result<()>;
    /// See [`Registry::group_keys`](crate::Registry::group_keys).
    fn group_keys(&self, intent_id: i64) -> Result<Vec<[u8; 33]>>;
    /// See [`Registry::commit_issued`](crate::Registry::commit_issued).
    fn commit_issued(
        &mut self,
        intent_id: i64,
        card_key: &[u8; 33],
        revocation_id: &[u8; 8],
        actor: &str,
    ) -> Result<()>;
    /// See [`Registry::mark_spoiled`](crate::Registry::mark_spoiled).
    fn mark_spoiled(&mut self, intent_id: i64, reason: &str, actor: &str) -> Result<bool>;
    /// See [`Registry::open_intents`](crate::Registry::open_intents).
    fn open_intents(&self) -> Result<Vec<Intent>>;
    /// See [`Registry::batch_row_done`](crate::Registry::batch_row_done).
    fn batch_row_done(&self, batch_id: &str, row: u64) -> Result<Option<String>>;
    /// See [`Registry::next_card_number`](crate::Registry::next_card_number).
    fn next_card_number(&mut self, prefix: &str) -> Result<String>;
    /// See [`Registry::acquire_lease`](crate::Registry::acquire_lease).
    fn acquire_lease(&mut self, desk: &str, holder: &str, ttl_secs: i64) -> Result<Lease>;
    /// See [`Registry::renew_lease`](crate::Registry::renew_lease).
    fn renew_lease(&mut self, lease_id: &str, ttl_secs: i64) -> Result<i64>;
    /// See [`Registry::release_lease`](crate::Registry::release_lease).
    fn release_lease(&mut self, lease_id: &str) -> Result<()>;
    /// See [`Registry::take_over_intent`](crate::Registry::take_over_intent).
    fn take_over_intent(
        &mut self,
        intent_id: i64,
        from: Option<&str>,
        lease_id: &str,
    ) -> Result<bool>;
    /// See [`Registry::lease`](crate::Registry::lease).
    fn lease(&self, lease_id: &str) -> Result<Option<Lease>>;
    /// See [`Registry::active_leases`](crate::Registry::active_leases).
    fn active_leases(&self, at: i64) -> Result<Vec<Lease>>;
    /// See [`Registry::live_card_of`](crate::Registry::live_card_of).
    fn live_card_of(&self, resident_ref: &str) -> Result<Option<CardRecord>>;
    /// See [`Registry::card`](crate::Registry::card).
    fn card(&self, card_number: &str) -> Result<Option<CardRecord>>;
    /// See [`Registry::card_with_key`](crate::Registry::card_with_key).
    fn card_with_key(&self, card_key: &[u8; 33]) -> Result<Option<String>>;
    /// See [`Registry::resident_attributes`](crate::Registry::resident_attributes).
    fn resident_attributes(&self, resident_ref: &str) -> Result<Option<Attributes>>;
    /// See [`Registry::retained_until`](crate::Registry::retained_until).
    fn retained_until(&self, resident_ref: &str) -> Result<Option<i64>>;
    /// See [`Registry::residents_with_attributes`](crate::Registry::residents_with_attributes).
    fn residents_with_attributes(&self) -> Result<u64>;
    /// See [`Registry::purge_expired_attributes`](crate::Registry::purge_expired_attributes).
    fn purge_expired_attributes(&mut self, at: i64, actor: &str) -> Result<usize>;
    /// See [`Registry::forget_resident`](crate::Registry::forget_resident).
    fn forget_resident(&mut self, resident_ref: &str, actor: &str) -> Result<ForgetReport>;
    /// See [`Registry::revoke`](crate::Registry::revoke).
    fn revoke(&mut self, card_number: &str, reason: RevocationReason, actor: &str) -> Result<()>;
    /// See [`Registry::revoked`](crate::Registry::revoked).
    fn revoked(&self) -> Result<Vec<RevokedCard>>;
    /// See [`Registry::revocation_ids`](crate::Registry::revocation_ids).
    fn revocation_ids(&self) -> Result<Vec<[u8; 8]>>;
    /// See [`Registry::revocation_ids_for`](crate::Registry::revocation_ids_for).
    fn revocation_ids_for(&self, group: u8, as_of: Date) -> Result<Vec<[u8; 8]>>;
    /// See [`Registry::next_revocation_sequence`](crate::Registry::next_revocation_sequence).
    fn next_revocation_sequence(&mut self) -> Result<u32>;
    /// See [`Registry::record_action`](crate::Registry::record_action).
    fn record_action(&mut self, actor: &str, station: Option<&str>, action: &str) -> Result<()>;
    /// See [`Registry::audit_log`](crate::Registry::audit_log).
    fn audit_log(&self) -> Result<Vec<AuditEntry>>;
    /// See [`Registry::audit_since`](crate::Registry::audit_since).
    fn audit_since(&self, since: i64) -> Result<Vec<AuditEntry>>;
    /// See [`Registry::counts`](crate::Registry::counts).
    fn counts(&self) -> Result<Counts>;
    /// See [`Registry::counts_by_station`](crate::Registry::counts_by_station).
    fn counts_by_station(&self) -> Result<Vec<(String, Counts)>>;
}

impl IssuanceRegistry for Registry {
    fn for_each_audit_since(
        &self,
        since: i64,
        each: &mut dyn FnMut(AuditEntry) -> Result<()>,
    ) -> Result<u64> {
        Registry::for_each_audit_since(self, since, each)
    }

    fn begin_intent(&mut self, n: &NewIssuance<'_>) -> Result<Intent> {
        Registry::begin_intent(self, n)
    }

    fn attach_card_key(
        &mut self,
        intent_id: i64,
        card_key: &[u8; 33],
        revocation_id: &[u8; 8],
        actor: &str,
    ) -> Result<()> {
        Registry::attach_card_key(self, intent_id, card_key, revocation_id, actor)
    }

    fn attach_group_keys(&mut self, intent_id: i64, keys: &[[u8; 33]], actor: &str) -> Result<()> {
        Registry::attach_group_keys(self, intent_id, keys, actor)
    }

    fn group_keys(&self, intent_id: i64) -> Result<Vec<[u8; 33]>> {
        Registry::group_keys(self, intent_id)
    }

    fn commit_issued(
        &mut self,
        intent_id: i64,
        card_key: &[u8; 33],
        revocation_id: &[u8; 8],
        actor: &str,
    ) -> Result<()> {
        Registry::commit_issued(self, intent_id, card_key, revocation_id, actor)
    }

    fn mark_spoiled(&mut self, intent_id: i64, reason: &str, actor: &str) -> Result<bool> {
        Registry::mark_spoiled(self, intent_id, reason, actor)
    }

    fn open_intents(&self) -> Result<Vec<Intent>> {
        Registry::open_intents(self)
    }

    fn batch_row_done(&self, batch_id: &str, row: u64) -> Result<Option<String>> {
        Registry::batch_row_done(self, batch_id, row)
    }

    fn next_card_number(&mut self, prefix: &str) -> Result<String> {
        Registry::next_card_number(self, prefix)
    }

    fn acquire_lease(&mut self, desk: &str, holder: &str, ttl_secs: i64) -> Result<Lease> {
        Registry::acquire_lease(self, desk, holder, ttl_secs)
    }

    fn renew_lease(&mut self, lease_id: &str, ttl_secs: i64) -> Result<i64> {
        Registry::renew_lease(self, lease_id, ttl_secs)
    }

    fn release_lease(&mut self, lease_id: &str) -> Result<()> {
        Registry::release_lease(self, lease_id)
    }

    fn take_over_intent(
        &mut self,
        intent_id: i64,
        from: Option<&str>,
        lease_id: &str,
    ) -> Result<bool> {
        Registry::take_over_intent(self, intent_id, from, lease_id)
    }

    fn lease(&self, lease_id: &str) -> Result<Option<Lease>> {
        Registry::lease(self, lease_id)
    }

    fn active_leases(&self, at: i64) -> Result<Vec<Lease>> {
        Registry::active_leases(self, at)
    }

    fn live_card_of(&self, resident_ref: &str) -> Result<Option<CardRecord>> {
        Registry::live_card_of(self, resident_ref)
    }

    fn card(&self, card_number: &str) -> Result<Option<CardRecord>> {
        Registry::card(self, card_number)
    }

    fn card_with_key(&self, card_key: &[u8; 33]) -> Result<Option<String>> {
        Registry::card_with_key(self, card_key)
    }

    fn resident_attributes(&self, resident_ref: &str) -> Result<Option<Attributes>> {
        Registry::resident_attributes(self, resident_ref)
    }

    fn retained_until(&self, resident_ref: &str) -> Result<Option<i64>> {
        Registry::retained_until(self, resident_ref)
    }

    fn residents_with_attributes(&self) -> Result<u64> {
        Registry::residents_with_attributes(self)
    }

    fn purge_expired_attributes(&mut self, at: i64, actor: &str) -> Result<usize> {
        Registry::purge_expired_attributes(self, at, actor)
    }

    fn forget_resident(&mut self, resident_ref: &str, actor: &str) -> Result<ForgetReport> {
        Registry::forget_resident(self, resident_ref, actor)
    }

    fn revoke(&mut self, card_number: &str, reason: RevocationReason, actor: &str) -> Result<()> {
        Registry::revoke(self, card_number, reason, actor)
    }

    fn revoked(&self) -> Result<Vec<RevokedCard>> {
        Registry::revoked(self)
    }

    fn revocation_ids(&self) -> Result<Vec<[u8; 8]>> {
        Registry::revocation_ids(self)
    }

    fn revocation_ids_for(&self, group: u8, as_of: Date) -> Result<Vec<[u8; 8]>> {
        Registry::revocation_ids_for(self, group, as_of)
    }

    fn next_revocation_sequence(&mut self) -> Result<u32> {
        Registry::next_revocation_sequence(self)
    }

    fn record_action(&mut self, actor: &str, station: Option<&str>, action: &str) -> Result<()> {
        Registry::record_action(self, actor, station, action)
    }

    fn audit_log(&self) -> Result<Vec<AuditEntry>> {
        Registry::audit_log(self)
    }

    fn audit_since(&self, since: i64) -> Result<Vec<AuditEntry>> {
        Registry::audit_since(self, since)
    }

    fn counts(&self) -> Result<Counts> {
        Registry::counts(self)
    }

    fn counts_by_station(&self) -> Result<Vec<(String, Counts)>> {
        Registry::counts_by_station(self)
    }
}

/// A boxed registry is a registry (what `IssuerHome::registry` returns).
impl<T: IssuanceRegistry + ?Sized> IssuanceRegistry for Box<T> {
    fn for_each_audit_since(
        &self,
        since: i64,
        each: &mut dyn FnMut(AuditEntry) -> Result<()>,
    ) -> Result<u64> {
        (**self).for_each_audit_since(since, each)
    }

    fn begin_intent(&mut self, n: &NewIssuance<'_>) -> Result<Intent> {
        (**self).begin_intent(n)
    }

    fn attach_card_key(
        &mut self,
        intent_id: i64,
        card_key: &[u8; 33],
        revocation_id: &[u8; 8],
        actor: &str,
    ) -> Result<()> {
        (**self).attach_card_key(intent_id, card_key, revocation_id, actor)
    }

    fn attach_group_keys(&mut self, intent_id: i64, keys: &[[u8; 33]], actor: &str) -> Result<()> {
        (**self).attach_group_keys(intent_id, keys, actor)
    }

    fn group_keys(&self, intent_id: i64) -> Result<Vec<[u8; 33]>> {
        (**self).group_keys(intent_id)
    }

    fn commit_issued(
        &mut self,
        intent_id: i64,
        card_key: &[u8; 33],
        revocation_id: &[u8; 8],
        actor: &str,
    ) -> Result<()> {
        (**self).commit_issued(intent_id, card_key, revocation_id, actor)
    }

    fn mark_spoiled(&mut self, intent_id: i64, reason: &str, actor: &str) -> Result<bool> {
        (**self).mark_spoiled(intent_id, reason, actor)
    }

    fn open_intents(&self) -> Result<Vec<Intent>> {
        (**self).open_intents()
    }

    fn batch_row_done(&self, batch_id: &str, row: u64) -> Result<Option<String>> {
        (**self).batch_row_done(batch_id, row)
    }

    fn next_card_number(&mut self, prefix: &str) -> Result<String> {
        (**self).next_card_number(prefix)
    }

    fn acquire_lease(&mut self, desk: &str, holder: &str, ttl_secs: i64) -> Result<Lease> {
        (**self).acquire_lease(desk, holder, ttl_secs)
    }

    fn renew_lease(&mut self, lease_id: &str, ttl_secs: i64) -> Result<i64> {
        (**self).renew_lease(lease_id, ttl_secs)
    }

    fn release_lease(&mut self, lease_id: &str) -> Result<()> {
        (**self).release_lease(lease_id)
    }

    fn take_over_intent(
        &mut self,
        intent_id: i64,
        from: Option<&str>,
        lease_id: &str,
    ) -> Result<bool> {
        (**self).take_over_intent(intent_id, from, lease_id)
    }

    fn lease(&self, lease_id: &str) -> Result<Option<Lease>> {
        (**self).lease(lease_id)
    }

    fn active_leases(&self, at: i64) -> Result<Vec<Lease>> {
        (**self).active_leases(at)
    }

    fn live_card_of(&self, resident_ref: &str) -> Result<Option<CardRecord>> {
        (**self).live_card_of(resident_ref)
    }

    fn card(&self, card_number: &str) -> Result<Option<CardRecord>> {
        (**self).card(card_number)
    }

    fn card_with_key(&self, card_key: &[u8; 33]) -> Result<Option<String>> {
        (**self).card_with_key(card_key)
    }

    fn resident_attributes(&self, resident_ref: &str) -> Result<Option<Attributes>> {
        (**self).resident_attributes(resident_ref)
    }

    fn retained_until(&self, resident_ref: &str) -> Result<Option<i64>> {
        (**self).retained_until(resident_ref)
    }

    fn residents_with_attributes(&self) -> Result<u64> {
        (**self).residents_with_attributes()
    }

    fn purge_expired_attributes(&mut self, at: i64, actor: &str) -> Result<usize> {
        (**self).purge_expired_attributes(at, actor)
    }

    fn forget_resident(&mut self, resident_ref: &str, actor: &str) -> Result<ForgetReport> {
        (**self).forget_resident(resident_ref, actor)
    }

    fn revoke(&mut self, card_number: &str, reason: RevocationReason, actor: &str) -> Result<()> {
        (**self).revoke(card_number, reason, actor)
    }

    fn revoked(&self) -> Result<Vec<RevokedCard>> {
        (**self).revoked()
    }

    fn revocation_ids(&self) -> Result<Vec<[u8; 8]>> {
        (**self).revocation_ids()
    }

    fn revocation_ids_for(&self, group: u8, as_of: Date) -> Result<Vec<[u8; 8]>> {
        (**self).revocation_ids_for(group, as_of)
    }

    fn next_revocation_sequence(&mut self) -> Result<u32> {
        (**self).next_revocation_sequence()
    }

    fn record_action(&mut self, actor: &str, station: Option<&str>, action: &str) -> Result<()> {
        (**self).record_action(actor, station, action)
    }

    fn audit_log(&self) -> Result<Vec<AuditEntry>> {
        (**self).audit_log()
    }

    fn audit_since(&self, since: i64) -> Result<Vec<AuditEntry>> {
        (**self).audit_since(since)
    }

    fn counts(&self) -> Result<Counts> {
        (**self).counts()
    }

    fn counts_by_station(&self) -> Result<Vec<(String, Counts)>> {
        (**self).counts_by_station()
    }
}
