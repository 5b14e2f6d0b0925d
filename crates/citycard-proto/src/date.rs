//! Calendar dates as the card and certificates carry them.
//!
//! Encoding (spec §5.1): 4 bytes, year as big-endian u16, month 1–12, day
//! 1–31 (valid for the month). Byte order makes byte-wise comparison equal to
//! chronological comparison.

use core::fmt;

use crate::error::{Error, Result};

/// A proleptic Gregorian calendar date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

const fn is_leap(year: u16) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

const fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl Date {
    /// A date, if it exists in the calendar (years 1900–9999).
    pub const fn new(year: u16, month: u8, day: u8) -> Result<Self> {
        if year < 1900 || year > 9999 || day == 0 || day > days_in_month(year, month) {
            return Err(Error::BadDate);
        }
        Ok(Self { year, month, day })
    }

    /// Year.
    pub const fn year(self) -> u16 {
        self.year
    }
    /// Month (1–12).
    pub const fn month(self) -> u8 {
        self.month
    }
    /// Day of month.
    pub const fn day(self) -> u8 {
        self.day
    }

    /// The 4-byte wire encoding.
    pub const fn to_bytes(self) -> [u8; 4] {
        let y = self.year.to_be_bytes();
        [y[0], y[1], self.month, self.day]
    }

    /// Decodes the 4-byte wire encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        match bytes {
            [y0, y1, m, d] => Self::new(u16::from_be_bytes([*y0, *y1]), *m, *d),
            _ => Err(Error::BadDate),
        }
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse_iso(text: &str) -> Result<Self> {
        let b = text.as_bytes();
        let digits = |s: &[u8]| -> Result<u16> {
            if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
                return Err(Error::BadDate);
            }
            Ok(s.iter().fold(0u16, |a, d| {
                a.saturating_mul(10).saturating_add(u16::from(d - b'0'))
            }))
        };
        match (
            b.get(..4),
            b.get(4),
            b.get(5..7),
            b.get(7),
            b.get(8..),
            b.len(),
        ) {
            (Some(y), Some(b'-'), Some(m), Some(b'-'), Some(d), 10) => {
                Self::new(digits(y)?, digits(m)? as u8, digits(d)? as u8)
            }
            _ => Err(Error::BadDate),
        }
    }

    /// Whole years from `self` (a birth date) to `on`; 0 if `on` is earlier.
    /// Someone born on 29 February has their birthday on 1 March in non-leap years.
    pub fn years_until(self, on: Date) -> u16 {
        if on < self {
            return 0;
        }
        let mut years = on.year - self.year;
        if (on.month, on.day) < (self.month, self.day) {
            years -= 1;
        }
        years
    }

    /// The first day of this date's month (`month_start` in spec §5.1).
    pub const fn month_start(self) -> Self {
        Self {
            year: self.year,
            month: self.month,
            day: 1,
        }
    }

    /// Days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: Date) -> i64 {
        later.days_since_epoch() - self.days_since_epoch()
    }

    /// The date `days` days later (saturating at 9999-12-31).
    pub fn add_days(self, mut days: u32) -> Self {
        let mut d = self;
        while days > 0 {
            let dim = days_in_month(d.year, d.month);
            let left_in_month = u32::from(dim - d.day);
            if days <= left_in_month {
                d.day += days as u8;
                break;
            }
            days -= left_in_month + 1;
            d.day = 1;
            if d.month == 12 {
                if d.year == 9999 {
                    return Self {
                        year: 9999,
                        month: 12,
                        day: 31,
                    };
                }
                d.month = 1;
                d.year += 1;
            } else {
                d.month += 1;
            }
        }
        d
    }

    /// Days since 1970-01-01 (negative before), for arithmetic on the host.
    pub fn days_since_epoch(self) -> i64 {
        // Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01, if within the supported range.
    pub fn from_days_since_epoch(days: i64) -> Result<Self> {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let year = u16::try_from(y).map_err(|_| Error::BadDate)?;
        Self::new(year, m as u8, d as u8)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_calendar() {
        assert!(Date::new(2024, 2, 29).is_ok());
        assert!(Date::new(2023, 2, 29).is_err());
        assert!(Date::new(2023, 13, 1).is_err());
        assert!(Date::new(2023, 4, 31).is_err());
        assert!(Date::parse_iso("2023-04-3").is_err());
        assert_eq!(
            Date::parse_iso("2008-06-15").unwrap(),
            Date::new(2008, 6, 15).unwrap()
        );
    }

    #[test]
    fn ages_count_birthdays() {
        let born = Date::new(2008, 6, 15).unwrap();
        assert_eq!(born.years_until(Date::new(2026, 6, 14).unwrap()), 17);
        assert_eq!(born.years_until(Date::new(2026, 6, 15).unwrap()), 18);
        let leap = Date::new(2008, 2, 29).unwrap();
        assert_eq!(leap.years_until(Date::new(2026, 2, 28).unwrap()), 17);
        assert_eq!(leap.years_until(Date::new(2026, 3, 1).unwrap()), 18);
    }

    #[test]
    fn epoch_days_round_trip_and_order_matches_bytes() {
        for days in [-25_567, -1, 0, 1, 19_000, 20_000, 2_932_896] {
            let d = Date::from_days_since_epoch(days).unwrap();
            assert_eq!(d.days_since_epoch(), days);
        }
        let a = Date::new(1999, 12, 31).unwrap();
        let b = a.add_days(1);
        assert_eq!(b, Date::new(2000, 1, 1).unwrap());
        assert!(a.to_bytes() < b.to_bytes());
        assert_eq!(a.add_days(366), Date::new(2000, 12, 31).unwrap());
    }
}
