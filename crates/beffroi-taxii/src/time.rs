//! STIX and TAXII timestamps: RFC 3339 in UTC, `YYYY-MM-DDTHH:MM:SS[.s+]Z`.
//!
//! Times inside the crate are milliseconds since the Unix epoch. What the crate writes
//! always has exactly three fractional digits (the precision STIX requires for
//! `created` and `modified`); what it reads may have from zero to nine, and the part
//! below the millisecond is kept apart so that a comparison stays exact.

use std::fmt;

use serde::{Serialize, Serializer};
use thiserror::Error;

/// The first millisecond STIX can write: `0000-01-01T00:00:00.000Z`.
pub const MIN_MILLIS: i64 = -62_167_219_200_000;
/// The last millisecond STIX can write: `9999-12-31T23:59:59.999Z`.
pub const MAX_MILLIS: i64 = 253_402_300_799_999;

/// A time the crate writes: milliseconds since the Unix epoch, inside the four-digit
/// years STIX allows. Serialized as `YYYY-MM-DDTHH:MM:SS.sssZ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StixTime(i64);

impl StixTime {
    /// The time `millis` after the epoch, or `None` outside years 0000 to 9999.
    pub const fn from_millis(millis: i64) -> Option<StixTime> {
        if millis < MIN_MILLIS || millis > MAX_MILLIS {
            None
        } else {
            Some(StixTime(millis))
        }
    }

    pub const fn millis(self) -> i64 {
        self.0
    }
}

impl fmt::Display for StixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let of_day = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            of_day / 3600,
            (of_day / 60) % 60,
            of_day % 60
        )
    }
}

impl Serialize for StixTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A timestamp read from the wire, exact to the nanosecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadTime {
    /// Whole milliseconds since the epoch (the fraction below is in `sub_milli_nanos`).
    pub millis: i64,
    /// Nanoseconds past `millis`, 0 to 999 999.
    pub sub_milli_nanos: u32,
}

impl ReadTime {
    /// True when the time is a whole millisecond (what the crate stores).
    pub fn is_whole_milli(self) -> bool {
        self.sub_milli_nanos == 0
    }
}

/// Why a timestamp was refused: the byte where reading stopped and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("invalid timestamp at byte {at}: {reason} (expected YYYY-MM-DDTHH:MM:SS[.s+]Z in UTC)")]
pub struct TimestampError {
    pub at: usize,
    pub reason: &'static str,
}

fn fail<T>(at: usize, reason: &'static str) -> Result<T, TimestampError> {
    Err(TimestampError { at, reason })
}

fn digits(bytes: &[u8], at: usize, n: usize, what: &'static str) -> Result<u32, TimestampError> {
    let mut value = 0u32;
    for i in at..at + n {
        match bytes.get(i) {
            Some(b) if b.is_ascii_digit() => value = value * 10 + u32::from(b - b'0'),
            _ => return fail(i, what),
        }
    }
    Ok(value)
}

fn literal(
    bytes: &[u8],
    at: usize,
    expected: u8,
    what: &'static str,
) -> Result<(), TimestampError> {
    if bytes.get(at) == Some(&expected) {
        Ok(())
    } else {
        fail(at, what)
    }
}

/// Reads a STIX/TAXII timestamp. Only UTC with the `Z` suffix is accepted (STIX requires
/// it); up to nine fractional digits.
pub fn parse_timestamp(text: &str) -> Result<ReadTime, TimestampError> {
    let b = text.as_bytes();
    let year = digits(b, 0, 4, "a four-digit year")?;
    literal(b, 4, b'-', "'-' after the year")?;
    let month = digits(b, 5, 2, "a two-digit month")?;
    literal(b, 7, b'-', "'-' after the month")?;
    let day = digits(b, 8, 2, "a two-digit day")?;
    literal(b, 10, b'T', "'T' between date and time")?;
    let hour = digits(b, 11, 2, "two-digit hours")?;
    literal(b, 13, b':', "':' after the hours")?;
    let minute = digits(b, 14, 2, "two-digit minutes")?;
    literal(b, 16, b':', "':' after the minutes")?;
    let second = digits(b, 17, 2, "two-digit seconds")?;
    if !(1..=12).contains(&month) {
        return fail(5, "month out of 01-12");
    }
    if day == 0 || day > days_in_month(i64::from(year), month) {
        return fail(8, "day out of the month");
    }
    if hour > 23 {
        return fail(11, "hours out of 00-23");
    }
    if minute > 59 {
        return fail(14, "minutes out of 00-59");
    }
    if second > 59 {
        return fail(17, "seconds out of 00-59");
    }
    let mut at = 19;
    let mut nanos = 0u32;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while let Some(d) = b.get(at).filter(|d| d.is_ascii_digit()) {
            if at - start == 9 {
                return fail(at, "at most nine fractional digits");
            }
            nanos = nanos * 10 + u32::from(d - b'0');
            at += 1;
        }
        if at == start {
            return fail(at, "a digit after '.'");
        }
        for _ in (at - start)..9 {
            nanos *= 10;
        }
    }
    match b.get(at) {
        Some(b'Z') => {}
        Some(b'+' | b'-') => return fail(at, "UTC with 'Z', not an offset"),
        _ => return fail(at, "'Z' (UTC) at the end"),
    }
    if at + 1 != b.len() {
        return fail(at + 1, "nothing after 'Z'");
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Ok(ReadTime {
        millis: secs * 1000 + i64::from(nanos / 1_000_000),
        sub_milli_nanos: nanos % 1_000_000,
    })
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) of the day `days` after 1970-01-01, proleptic Gregorian calendar
/// (Howard Hinnant's civil-from-days method).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400;
    (if month <= 2 { year + 1 } else { year }, month, day)
}

/// Days from 1970-01-01 to (year, month, day): the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ms: i64) -> String {
        StixTime::from_millis(ms)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn writes_milliseconds_in_utc() {
        assert_eq!(text(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(text(1_795_694_400_123), "2026-11-26T12:00:00.123Z");
        assert_eq!(text(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(text(MIN_MILLIS), "0000-01-01T00:00:00.000Z");
        assert_eq!(text(MAX_MILLIS), "9999-12-31T23:59:59.999Z");
        assert_eq!(StixTime::from_millis(MAX_MILLIS + 1), None);
        assert_eq!(StixTime::from_millis(MIN_MILLIS - 1), None);
    }

    #[test]
    fn reads_what_it_writes_and_finer_fractions() {
        for ms in [0, 1_795_694_400_123, MIN_MILLIS, MAX_MILLIS, -1] {
            let read = parse_timestamp(&text(ms)).map(|t| t.millis);
            assert_eq!(read, Ok(ms));
        }
        assert_eq!(
            parse_timestamp("2016-11-02T12:34:34.12345Z"),
            Ok(ReadTime {
                millis: 1_478_090_074_123,
                sub_milli_nanos: 450_000
            })
        );
        assert_eq!(
            parse_timestamp("2016-11-02T12:34:34Z").map(|t| t.millis),
            Ok(1_478_090_074_000)
        );
    }

    #[test]
    fn refuses_with_the_byte_and_the_reason() {
        let at = |s: &str| parse_timestamp(s).err().map(|e| (e.at, e.reason));
        assert_eq!(at("2016-11-02T12:34:34+01:00").map(|e| e.0), Some(19));
        assert_eq!(at("2016-02-30T00:00:00Z").map(|e| e.0), Some(8));
        assert_eq!(at("2015-02-29T00:00:00Z").map(|e| e.0), Some(8));
        assert_eq!(at("2016-13-01T00:00:00Z").map(|e| e.0), Some(5));
        assert_eq!(at("2016-11-02 12:34:34Z").map(|e| e.0), Some(10));
        assert_eq!(at("2016-11-02T12:34:34.Z").map(|e| e.0), Some(20));
        assert_eq!(at("2016-11-02T12:34:34.0123456789Z").map(|e| e.0), Some(29));
        assert_eq!(at("2016-11-02T12:34:34Zx").map(|e| e.0), Some(20));
        assert_eq!(at("").map(|e| e.0), Some(0));
        assert_eq!(at("２０16").map(|e| e.0), Some(0));
    }
}
