//! Human units on the command line and in workload files: sizes like `4KiB`
//! or `1GiB`, durations like `250ms` or `2s`. Code keeps plain integers whose
//! names carry the unit (`block_size_bytes`, `duration_ms`); only this module
//! turns text into them and back.

use std::time::Duration;

/// Parses a byte size: a plain number, or one with a suffix B, K/KiB, M/MiB,
/// G/GiB (binary), kB/MB/GB (decimal).
pub fn parse_size_bytes(text: &str) -> Result<u64, String> {
    let (value, suffix) = split_number(text, "size", "4KiB or 1GiB")?;
    let scale: u64 = match suffix {
        "" | "B" | "b" => 1,
        "K" | "k" | "KiB" | "Ki" => 1 << 10,
        "M" | "m" | "MiB" | "Mi" => 1 << 20,
        "G" | "g" | "GiB" | "Gi" => 1 << 30,
        "T" | "TiB" | "Ti" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "size {text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB)"
            ))
        }
    };
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes.fract() != 0.0 {
        return Err(format!("size {text:?} is not a whole number of bytes"));
    }
    Ok(bytes as u64)
}

/// Parses a duration: a number with ns, us, ms, s or m; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (value, suffix) = split_number(text, "duration", "500ms or 2s")?;
    let scale_s = match suffix {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        other => {
            return Err(format!(
                "duration {text:?}: unknown unit {other:?} (use ms, s, m)"
            ))
        }
    };
    Duration::try_from_secs_f64(value * scale_s).map_err(|e| format!("duration {text:?}: {e}"))
}

/// Splits `text` into its leading number and its (trimmed) unit suffix.
fn split_number<'a>(text: &'a str, what: &str, example: &str) -> Result<(f64, &'a str), String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let value = number
        .parse()
        .map_err(|_| format!("{what} {text:?}: expected a number like {example}"))?;
    Ok((value, suffix.trim()))
}

/// Formats a size the way `parse_size_bytes` reads it, in the largest exact binary unit.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (scale, unit) in UNITS {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{}{unit}", bytes / scale);
        }
    }
    format!("{bytes}B")
}

/// Formats a duration compactly: `250ms`, `2s`, `1.5s`.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1e3;
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        let s = ms / 1e3;
        if s.fract() == 0.0 {
            format!("{s:.0}s")
        } else {
            format!("{s:.1}s")
        }
    }
}

/// Formats a latency in microseconds for a table cell: one decimal below 100,
/// whole microseconds up to 100 ms, then milliseconds.
pub fn format_latency_us(latency_us: f64) -> String {
    if latency_us < 100.0 {
        format!("{latency_us:.1}")
    } else if latency_us < 100_000.0 {
        format!("{latency_us:.0}")
    } else {
        format!("{:.0}ms", latency_us / 1e3)
    }
}

/// Seconds since the epoch as `YYYYMMDD-HHMMSS` (UTC), for output directory names.
pub fn utc_stamp(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let secs = unix_s % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_size_bytes("4KiB"), Ok(4096));
        assert_eq!(parse_size_bytes("4k"), Ok(4096));
        assert_eq!(parse_size_bytes("128KiB"), Ok(131_072));
        assert_eq!(parse_size_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size_bytes("0.5MiB"), Ok(512 << 10));
        assert_eq!(parse_size_bytes("256"), Ok(256));
        assert_eq!(parse_size_bytes("256B"), Ok(256));
        assert_eq!(parse_size_bytes("2MB"), Ok(2_000_000));
        assert!(parse_size_bytes("4 parsecs").is_err());
        assert!(parse_size_bytes("KiB").is_err());
        assert!(parse_size_bytes("0.3B").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 fortnights").is_err());
    }

    #[test]
    fn sizes_and_durations_format_back() {
        assert_eq!(format_size(4096), "4KiB");
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(format_size(256), "256B");
        assert_eq!(format_size(6144), "6KiB");
        assert_eq!(format_size(1500), "1500B");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn latencies_format_for_tables() {
        assert_eq!(format_latency_us(41.23), "41.2");
        assert_eq!(format_latency_us(1234.4), "1234");
        assert_eq!(format_latency_us(250_000.0), "250ms");
    }

    #[test]
    fn utc_stamps_are_civil_dates() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_700_000_000), "20231114-221320");
    }
}
