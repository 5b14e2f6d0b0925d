//! [`Policy`]: what a reader asks for and how strict it is.

use std::time::{SystemTime, UNIX_EPOCH};

use citycard_proto::{attr::AttributeSet, date::Date};

/// What to do when the revocation list is past its next update plus the grace
/// period (SPEC §5.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StalePolicy {
    /// Refuse the card: [`Verdict::RevocationListStale`](crate::Verdict::RevocationListStale).
    #[default]
    Reject,
    /// Accept an otherwise genuine card, with `revocation_stale: true` in the verdict.
    AcceptFlagged,
}

/// The reader's policy for one verification.
///
/// Build it with [`Policy::now`] or [`Policy::at`] and the `with_*` methods.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Attributes to ask for; `None` asks for everything the reader
    /// certificate grants. Asking for more than the grants gives
    /// [`Verdict::Unauthorised`](crate::Verdict::Unauthorised).
    pub requested: Option<AttributeSet>,
    /// Stale revocation list handling (default [`StalePolicy::Reject`]).
    pub stale: StalePolicy,
    /// Seconds after the list's next update during which it is still fresh (default 0).
    pub grace_secs: u64,
    /// The current time, Unix seconds (revocation list freshness).
    pub now_unix: u64,
    /// Today's date: sent to the card (reader certificate validity, age
    /// predicates) and checked against the card's validity. Derived from
    /// `now_unix` (UTC) unless set with [`Policy::with_today`].
    pub today: Date,
    /// Send the reader certificate (PSO) before every GENERAL AUTHENTICATE
    /// instead of relying on the card's cache: one more APDU, but the card's
    /// answer no longer tells an observer whether it met this reader before
    /// (SPEC §11, certificate cache probing).
    pub always_send_certificate: bool,
}

/// Days from 1970-01-01 to 9999-12-31, the last date [`Date`] represents.
const LAST_DAY: u64 = 2_932_896;

/// The UTC date of a Unix time (9999-12-31 for times beyond it).
#[allow(clippy::expect_used)] // 0..=LAST_DAY is exactly the representable range
fn date_of(unix: u64) -> Date {
    let days = (unix / 86_400).min(LAST_DAY) as i64;
    Date::from_days_since_epoch(days).expect("days within 1970-01-01..=9999-12-31")
}

impl Policy {
    /// The default policy at Unix time `now_unix`: everything granted,
    /// reject a stale list with no grace, use the certificate cache.
    pub fn at(now_unix: u64) -> Self {
        Self {
            requested: None,
            stale: StalePolicy::Reject,
            grace_secs: 0,
            now_unix,
            today: date_of(now_unix),
            always_send_certificate: false,
        }
    }

    /// The default policy at the system clock's current time.
    pub fn now() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self::at(now)
    }

    /// Asks for exactly these attributes.
    pub fn with_requested(mut self, requested: AttributeSet) -> Self {
        self.requested = Some(requested);
        self
    }

    /// Sets the stale-list policy and its grace period.
    pub fn with_stale(mut self, stale: StalePolicy, grace_secs: u64) -> Self {
        self.stale = stale;
        self.grace_secs = grace_secs;
        self
    }

    /// Sets the clock (and today's date, derived from it).
    pub fn with_now(mut self, now_unix: u64) -> Self {
        self.now_unix = now_unix;
        self.today = date_of(now_unix);
        self
    }

    /// Overrides today's date (tests, or a reader whose local date differs from UTC).
    pub fn with_today(mut self, today: Date) -> Self {
        self.today = today;
        self
    }

    /// See [`Policy::always_send_certificate`].
    pub fn with_always_send_certificate(mut self, on: bool) -> Self {
        self.always_send_certificate = on;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_follows_the_clock_in_utc() {
        assert_eq!(Policy::at(0).today, Date::new(1970, 1, 1).unwrap());
        // 2026-11-26 23:59:59 and 2026-11-27 00:00:00 UTC.
        assert_eq!(
            Policy::at(1_795_737_599).today,
            Date::new(2026, 11, 26).unwrap()
        );
        assert_eq!(
            Policy::at(1_795_737_600).today,
            Date::new(2026, 11, 27).unwrap()
        );
        assert_eq!(Policy::at(u64::MAX).today, Date::new(9999, 12, 31).unwrap());
        let p = Policy::at(0)
            .with_now(1_795_737_600)
            .with_stale(StalePolicy::AcceptFlagged, 60);
        assert_eq!(
            (p.today.day(), p.grace_secs, p.stale),
            (27, 60, StalePolicy::AcceptFlagged)
        );
        assert_eq!(p.requested, None);
        assert!(!p.always_send_certificate);
    }
}
