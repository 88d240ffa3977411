//! The times at the head of a report line: `HH:MM:SS` (local) and RFC 3339 (UTC), written into a
//! small buffer without `fmt` or a time crate, and the local offset from UTC, read once.
//!
//! Deliberately not here: when a time is taken (the logger takes one per turn).

use std::time::{SystemTime, UNIX_EPOCH};

/// `HH:MM:SS` of `secs` (local seconds since the epoch) into `out`; its length.
pub fn clock(out: &mut [u8; 24], secs: i64) -> usize {
    let of_day = secs.rem_euclid(86_400);
    let [h0, h1] = two_digits(of_day / 3600);
    let [m0, m1] = two_digits(of_day / 60 % 60);
    let [s0, s1] = two_digits(of_day % 60);
    out[..8].copy_from_slice(&[h0, h1, b':', m0, m1, b':', s0, s1]);
    8
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of `since_epoch` (UTC) into `out`; its length.
pub fn rfc3339(out: &mut [u8; 24], since_epoch: std::time::Duration) -> usize {
    let secs = since_epoch.as_secs() as i64;
    let (year, month, day) = civil_date(secs.div_euclid(86_400));
    let mut time = [0u8; 24];
    clock(&mut time, secs);
    let millis = since_epoch.subsec_millis();
    let year = year.clamp(0, 9999);
    let [y0, y1] = two_digits(year / 100);
    let [y2, y3] = two_digits(year % 100);
    let [mo0, mo1] = two_digits(month);
    let [d0, d1] = two_digits(day);
    out[..11].copy_from_slice(&[y0, y1, y2, y3, b'-', mo0, mo1, b'-', d0, d1, b'T']);
    out[11..19].copy_from_slice(&time[..8]);
    let ms = [
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ];
    out[19..24].copy_from_slice(&ms);
    24
}

fn two_digits(n: i64) -> [u8; 2] {
    [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_date(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The local offset from UTC in seconds, read once while the process has one thread (later a
/// change of the zone, e.g. daylight saving, is not seen, as in simplelog); 0 if unknown.
pub fn local_utc_offset() -> i64 {
    let now: libc::time_t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as libc::time_t);
    // SAFETY: an all-zero `tm` is a valid value for localtime_r to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r writes only the `tm` we pass; both pointers live for the call.
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return 0;
    }
    tm.tm_gmtoff
}
