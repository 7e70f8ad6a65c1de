//! NGSI-LD DateTime values: RFC 3339 / ISO 8601 in UTC.
//!
//! Times inside the crate are milliseconds since the Unix epoch ([`Timestamp`]). What
//! the crate writes is always `YYYY-MM-DDTHH:MM:SS.sssZ`; what it reads may carry from
//! zero to nine fractional digits (kept to the millisecond, the rest dropped) and a `Z`
//! or a `±HH:MM` offset.

use std::fmt;

use serde::{Serialize, Serializer};
use thiserror::Error;

/// The first millisecond the crate writes: `0000-01-01T00:00:00.000Z`.
const MIN_MILLIS: i64 = -62_167_219_200_000;
/// The last millisecond the crate writes: `9999-12-31T23:59:59.999Z`.
const MAX_MILLIS: i64 = 253_402_300_799_999;

/// A point in time, milliseconds since the Unix epoch, inside years 0000 to 9999.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The time `millis` after the epoch, or `None` outside years 0000 to 9999.
    pub const fn from_millis(millis: i64) -> Option<Timestamp> {
        if millis < MIN_MILLIS || millis > MAX_MILLIS {
            None
        } else {
            Some(Timestamp(millis))
        }
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Reads an RFC 3339 date-time (`2026-03-01T08:00:00Z`, `…T08:00:00.5+01:00`).
    pub fn parse(text: &str) -> Result<Timestamp, TimestampError> {
        parse(text.as_bytes())
    }

    /// The `{"@type": "DateTime", "@value": "…"}` object NGSI-LD uses for a
    /// Property whose value is a date-time.
    pub fn json_ld_value(self) -> serde_json::Value {
        serde_json::json!({ "@type": "DateTime", "@value": self.to_string() })
    }
}

impl fmt::Display for Timestamp {
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

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Why a date-time was refused: the byte where reading stopped and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("invalid date-time at byte {at}: {reason} (expected YYYY-MM-DDTHH:MM:SS[.s]Z or ±HH:MM)")]
pub struct TimestampError {
    pub at: usize,
    pub reason: &'static str,
}

fn parse(b: &[u8]) -> Result<Timestamp, TimestampError> {
    let err = |at: usize, reason: &'static str| TimestampError { at, reason };
    let digits = |from: usize, n: usize| -> Result<i64, TimestampError> {
        let mut v = 0i64;
        for i in from..from + n {
            match b.get(i) {
                Some(c) if c.is_ascii_digit() => v = v * 10 + i64::from(c - b'0'),
                _ => return Err(err(i, "a digit")),
            }
        }
        Ok(v)
    };
    let expect = |at: usize, c: u8, reason: &'static str| -> Result<(), TimestampError> {
        if b.get(at) == Some(&c) {
            Ok(())
        } else {
            Err(err(at, reason))
        }
    };
    let year = digits(0, 4)?;
    expect(4, b'-', "'-' after the year")?;
    let month = digits(5, 2)?;
    expect(7, b'-', "'-' after the month")?;
    let day = digits(8, 2)?;
    match b.get(10) {
        Some(b'T') | Some(b't') => {}
        _ => return Err(err(10, "'T' between date and time")),
    }
    let hour = digits(11, 2)?;
    expect(13, b':', "':' after the hour")?;
    let minute = digits(14, 2)?;
    expect(16, b':', "':' after the minutes")?;
    let second = digits(17, 2)?;
    if !(1..=12).contains(&month) {
        return Err(err(5, "a month from 01 to 12"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(err(8, "a day that exists in that month"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(err(11, "a time from 00:00:00 to 23:59:59"));
    }
    let mut i = 19;
    let mut millis_part = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            if i - start < 3 {
                millis_part = millis_part * 10 + i64::from(c - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return Err(err(start, "one to nine fractional digits"));
        }
        for _ in n..3 {
            millis_part *= 10;
        }
    }
    let offset_minutes = match b.get(i) {
        Some(b'Z') | Some(b'z') => {
            i += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let h = digits(i + 1, 2)?;
            expect(i + 3, b':', "':' in the offset")?;
            let m = digits(i + 4, 2)?;
            if h > 23 || m > 59 {
                return Err(err(i, "an offset from -23:59 to +23:59"));
            }
            i += 6;
            let total = h * 60 + m;
            if sign == b'-' { -total } else { total }
        }
        _ => return Err(err(i, "'Z' or an offset")),
    };
    if i != b.len() {
        return Err(err(i, "the end of the date-time"));
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Timestamp::from_millis(secs * 1000 + millis_part).ok_or(err(0, "a year from 0000 to 9999"))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let t = Timestamp::parse("2026-03-01T08:15:30.25Z").expect("valid");
        assert_eq!(t.to_string(), "2026-03-01T08:15:30.250Z");
        assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
        let offset = Timestamp::parse("2026-03-01T09:15:30.250+01:00").expect("valid");
        assert_eq!(offset, t);
        assert_eq!(
            Timestamp::from_millis(0).map(|t| t.to_string()).as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
    }

    #[test]
    fn refuses_what_is_not_a_date_time() {
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-03-01 08:00:00Z",
            "2026-03-01T08:00:00",
            "2026-03-01T24:00:00Z",
            "2026-03-01T08:00:00.Z",
            "2026-03-01T08:00:00Zx",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }
}
