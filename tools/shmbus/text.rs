//! Turning untrusted bytes and strings into terminal-safe text, and small formatting helpers.
//!
//! Anything read from a segment (payloads, type names) or from `/dev/shm` (file names) may be
//! hostile: it must never reach the terminal as a control sequence. Text output escapes control
//! characters (C0, DEL, C1) and the Unicode bidirectional overrides; JSON output is pure ASCII.

use std::fmt::Write as _;
use std::io;
use std::time::Duration;

/// Whether a character must not reach a terminal as is: C0 and C1 controls, DEL, and the
/// bidirectional formatting characters (which can make text display in another order).
fn is_dangerous(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped_char(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// A string made safe for the terminal: dangerous characters become `\n`, `\x1b`, `\u{202e}`...
/// Backslashes stay as they are (for messages and names, which are not payloads).
pub(crate) fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_dangerous(c) {
            push_escaped_char(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Several lines made safe for the terminal: each line as [`sanitize`] makes it, the line
/// breaks kept.
pub(crate) fn sanitize_lines(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| match l.strip_suffix('\n') {
            Some(body) => sanitize(body) + "\n",
            None => sanitize(l),
        })
        .collect()
}

/// `n` followed by `word`, in the plural unless `n` is 1: `1 slot`, `8 slots`.
pub(crate) fn count(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Bytes from hexadecimal digits (either case; white space, ':' and '_' between bytes
/// allowed).
pub(crate) fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<char> = s
        .chars()
        .filter(|c| !(c.is_ascii_whitespace() || matches!(c, ':' | '_')))
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!(
            "{:?} has an odd number of hex digits ({}): an odd number of digits leaves half a \
             byte",
            sanitize(s),
            digits.len()
        ));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let hi = pair[0].to_digit(16);
            let lo = pair[1].to_digit(16);
            match (hi, lo) {
                (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                _ => Err(format!(
                    "{:?} is not hexadecimal: {:?}",
                    sanitize(s),
                    sanitize(&pair.iter().collect::<String>())
                )),
            }
        })
        .collect()
}

/// A count of at least 1 (`--repeat`, `--count`), with an error that says so in words.
pub(crate) fn at_least_one(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("expected a count of at least 1, got 0".into()),
        Err(_) => Err(format!("expected a whole number of at least 1, got {s:?}")),
    }
}

/// One of the `words` (each with its value), or else what `other` makes of `s`: how `--from
/// newest|oldest|SEQ` and `--rate original|max|N` are read.
pub(crate) fn word_or<T: Copy>(
    s: &str,
    words: &[(&str, T)],
    other: impl FnOnce(&str) -> Option<T>,
    expected: &str,
) -> Result<T, String> {
    match words.iter().find(|(w, _)| *w == s) {
        Some((_, v)) => Ok(*v),
        None => other(s).ok_or_else(|| format!("expected {expected}, got {s:?}")),
    }
}

/// A payload as one line of text: valid UTF-8 with dangerous characters escaped, backslashes
/// doubled (so that the escaping is unambiguous) and invalid bytes as `\xNN`.
pub(crate) fn escape_payload(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if is_dangerous(c) {
                push_escaped_char(&mut out, c);
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A serde_json formatter that writes only printable ASCII: every other character in a string
/// becomes a `\uXXXX` escape, so no JSON line can carry a terminal control sequence.
struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() && !c.is_ascii_control() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// `value` as one line of ASCII-only JSON.
pub(crate) fn json_line<T: serde::Serialize + ?Sized>(value: &T) -> String {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, AsciiFormatter);
    value
        .serialize(&mut ser)
        .expect("serialising plain data into a Vec cannot fail");
    String::from_utf8(buf).expect("AsciiFormatter writes ASCII only")
}

/// A payload that is valid JSON, as one line of ASCII-only JSON in its own key order; `None`
/// if it is not valid JSON. Valid JSON has control characters only as whitespace between
/// tokens (inside strings they must be escaped), so those become spaces; every non-ASCII
/// character, which can only sit inside a string, becomes a `\uXXXX` escape.
pub(crate) fn json_payload(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).ok()?;
    let s = std::str::from_utf8(bytes).ok()?.trim();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    Some(out)
}

/// A short human duration: `850ms`, `4.2s`, `3m12s`, `5h02m`, `3d04h`.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..=59 => format!("{:.1}s", d.as_secs_f64()),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A byte count with a binary unit: `512 B`, `4.0 KiB`, `1.5 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A rate with an SI prefix: `0`, `950`, `12.3k`, `4.56M`.
pub(crate) fn rate(v: f64) -> String {
    match v {
        v if v < 1000.0 => format!("{v:.0}"),
        v if v < 1e6 => format!("{:.1}k", v / 1e3),
        v if v < 1e9 => format!("{:.2}M", v / 1e6),
        v => format!("{:.2}G", v / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_escapes_controls_backslashes_bidi_and_bad_utf8() {
        assert_eq!(escape_payload(b"a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape_payload(b"tab\there\\"), "tab\\there\\\\");
        assert_eq!(
            escape_payload("x\u{202e}y\u{9b}".as_bytes()),
            "x\\u{202e}y\\u{9b}"
        );
        assert_eq!(escape_payload(b"\xff\xfeok"), "\\xff\\xfeok");
        assert_eq!(escape_payload("héllo".as_bytes()), "héllo");
    }

    #[test]
    fn json_lines_are_ascii_only() {
        let line = json_line(&serde_json::json!({ "s": "\u{1b}]0;x\u{7}\u{9b}\u{7f}é😀" }));
        assert!(line.bytes().all(|b| (0x20..0x7f).contains(&b)), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["s"], "\u{1b}]0;x\u{7}\u{9b}\u{7f}é😀");
    }

    #[test]
    fn json_payloads_keep_key_order_and_become_one_ascii_line() {
        let p =
            json_payload("{\"z\": 1,\n \"a\": \"\u{9b}\u{202e}\u{1f600}\"}\n".as_bytes()).unwrap();
        assert_eq!(p, r#"{"z": 1,  "a": "\u009b\u202e\ud83d\ude00"}"#);
        let back: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(back["a"], "\u{9b}\u{202e}\u{1f600}");
        assert_eq!(
            json_payload(b"{\"a\": \"raw\x1b\"}"),
            None,
            "raw control characters are not JSON"
        );
        assert_eq!(json_payload(b"not json"), None);
        assert_eq!(json_payload(b"\xff"), None);
    }

    #[test]
    fn hex_parses_both_cases_and_separators_and_refuses_odd_or_bad_digits() {
        assert_eq!(parse_hex("00ff10").unwrap(), [0, 255, 16]);
        assert_eq!(parse_hex("CA:FE be_ef").unwrap(), [0xca, 0xfe, 0xbe, 0xef]);
        assert_eq!(parse_hex("").unwrap(), Vec::<u8>::new());
        assert!(parse_hex("abc").unwrap_err().contains("odd number"));
        assert!(parse_hex("zz").unwrap_err().contains("not hexadecimal"));
    }

    #[test]
    fn counts_are_singular_only_for_one() {
        assert_eq!(count(1, "slot"), "1 slot");
        assert_eq!(count(0, "slot"), "0 slots");
        assert_eq!(count(8, "slot"), "8 slots");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_millis(4200)), "4.2s");
        assert_eq!(duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(
            duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d04h"
        );
    }
}
