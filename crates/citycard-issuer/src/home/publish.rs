//! Revocation lists and trust bundles: signed, stored and exported per linkability group.

use std::fs;
use std::path::PathBuf;

use citycard_keys::{SecretSource, Signer};
use citycard_proto::revocation::{
    RevocationList, RevocationListBody, TrustBundle, TrustBundleBody,
};

use super::*;
use crate::error::IssuerError;
use citycard_files::{write_file, Overwrite};

impl IssuerHome {
    /// Signs and stores a new revocation list of linkability group 0 from
    /// the registry, as of `now_unix` ([`Self::publish_revocations_for`]).
    pub fn publish_revocations(
        &self,
        next_update_days: u32,
        secrets: &dyn SecretSource,
        now_unix: u64,
    ) -> Result<RevocationList, IssuerError> {
        self.publish_revocations_for(0, next_update_days, secrets, now_unix)
    }

    /// Sets the number of linkability groups issued on every card from now
    /// on (1 to 8, SPEC §5.3).
    pub fn set_groups(&mut self, groups: u8) -> Result<(), IssuerError> {
        if groups == 0 || usize::from(groups) > citycard_registry::MAX_GROUP_KEYS {
            return Err(IssuerError::Config(format!(
                "groups = {groups}: 1 to {} linkability groups",
                citycard_registry::MAX_GROUP_KEYS
            )));
        }
        let mut config = self.config.clone();
        config.groups = groups;
        self.save_config(config)
    }

    /// Signs and stores a new revocation list of linkability group `group`
    /// from the registry, as of `now_unix`: each card's revocation id of that
    /// group, for
    /// revoked cards and spoiled intents that carried a card key, pruned of
    /// cards that can no longer be valid
    /// ([`Registry::revocation_ids_for`](citycard_registry::Registry::revocation_ids_for)).
    pub fn publish_revocations_for(
        &self,
        group: u8,
        next_update_days: u32,
        secrets: &dyn SecretSource,
        now_unix: u64,
    ) -> Result<RevocationList, IssuerError> {
        if next_update_days == 0 || next_update_days > 366 {
            return Err(IssuerError::InvalidValidity(next_update_days));
        }
        check_group(group)?;
        let root = self.root_signer(secrets)?;
        self.publish_revocations_with(root.as_ref(), group, next_update_days, now_unix)
    }

    pub(super) fn publish_revocations_with(
        &self,
        root: &dyn Signer,
        group: u8,
        next_update_days: u32,
        now_unix: u64,
    ) -> Result<RevocationList, IssuerError> {
        let mut reg = self.registry()?;
        let revoked = reg.revocation_ids_for(group, date_of(now_unix)?)?;
        let sequence = reg.next_revocation_sequence()?;
        let body = RevocationListBody {
            issuer: self.config.issuer_id.clone(),
            group,
            sequence,
            issued_at: now_unix,
            next_update: now_unix.saturating_add(u64::from(next_update_days) * 86_400),
            revoked,
        };
        let tbs = body.to_be_signed()?;
        let list = RevocationList::assemble(&tbs, &root.sign(&tbs)?)?;
        list.verify(&self.root_public_key()?)?;
        write_file(
            &self.revocation_list_path(group),
            list.as_bytes(),
            Overwrite::Replace,
        )?;
        reg.record_action("issuer", None, "revocation-list-published")?;
        Ok(list)
    }

    /// Where the last revocation list of `group` is kept.
    pub(super) fn revocation_list_path(&self, group: u8) -> PathBuf {
        let name = match group {
            0 => "current.crl".to_string(),
            g => format!("current-group-{g}.crl"),
        };
        self.dir.join("revocation").join(name)
    }

    /// The last published revocation list of group 0, if any.
    pub fn current_revocations(&self) -> Result<Option<RevocationList>, IssuerError> {
        self.current_revocations_for(0)
    }

    /// The last published revocation list of `group`, if any.
    pub fn current_revocations_for(
        &self,
        group: u8,
    ) -> Result<Option<RevocationList>, IssuerError> {
        check_group(group)?;
        let path = self.revocation_list_path(group);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(RevocationList::decode(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IssuerError::io(&path, e)),
        }
    }

    /// [`Self::publish_for`] group 0.
    pub fn publish(
        &self,
        next_update_days: u32,
        secrets: &dyn SecretSource,
        now_unix: u64,
    ) -> Result<TrustBundle, IssuerError> {
        self.publish_for(0, next_update_days, secrets, now_unix)
    }

    /// The one step that tells a group's partners about revocations: signs
    /// a new revocation list of `group` ([`Self::publish_revocations_for`])
    /// and the trust bundle that carries it — the file the partners of that
    /// group (their credential names it) load.
    pub fn publish_for(
        &self,
        group: u8,
        next_update_days: u32,
        secrets: &dyn SecretSource,
        now_unix: u64,
    ) -> Result<TrustBundle, IssuerError> {
        if next_update_days == 0 || next_update_days > 366 {
            return Err(IssuerError::InvalidValidity(next_update_days));
        }
        check_group(group)?;
        let root = self.root_signer(secrets)?;
        let list =
            self.publish_revocations_with(root.as_ref(), group, next_update_days, now_unix)?;
        self.bundle_with(root.as_ref(), list, now_unix)
    }

    /// The trust bundle partners load: root key, station certificates and the
    /// last published revocation list (published now, for 7 days, if none
    /// exists), signed by the root.
    ///
    /// # Errors
    ///
    /// [`IssuerError::RevocationListOutdated`] when a card was revoked (or an
    /// intent with a key spoiled) after that list: use [`Self::publish`].
    pub fn export_trust(
        &self,
        secrets: &dyn SecretSource,
        now_unix: u64,
    ) -> Result<TrustBundle, IssuerError> {
        self.export_trust_for(0, secrets, now_unix)
    }

    /// [`Self::export_trust`] for the partners of linkability group `group`:
    /// the bundle carries that group's revocation list.
    pub fn export_trust_for(
        &self,
        group: u8,
        secrets: &dyn SecretSource,
        now_unix: u64,
    ) -> Result<TrustBundle, IssuerError> {
        let root = self.root_signer(secrets)?;
        let revocations = match self.current_revocations_for(group)? {
            Some(list) => {
                let wanted = self
                    .registry()?
                    .revocation_ids_for(list.body().group, date_of(now_unix)?)?;
                let missing = wanted.iter().filter(|id| !list.is_revoked(id)).count();
                if missing > 0 {
                    return Err(IssuerError::RevocationListOutdated {
                        sequence: list.body().sequence,
                        missing,
                    });
                }
                list
            }
            None => self.publish_revocations_with(root.as_ref(), group, 7, now_unix)?,
        };
        self.bundle_with(root.as_ref(), revocations, now_unix)
    }

    pub(super) fn bundle_with(
        &self,
        root: &dyn Signer,
        revocations: RevocationList,
        now_unix: u64,
    ) -> Result<TrustBundle, IssuerError> {
        let body = TrustBundleBody {
            issuer: self.config.issuer_id.clone(),
            group: revocations.body().group,
            root: self.root_public_key()?,
            issued_at: now_unix,
            stations: self.station_certificates()?,
            revocations,
        };
        let tbs = body.to_be_signed()?;
        let bundle = TrustBundle::assemble(&tbs, &root.sign(&tbs)?)?;
        bundle.verify()?;
        Ok(bundle)
    }
}
