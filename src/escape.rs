//! Safe text: client bytes made fit for a terminal, a log line and another client's screen.
//!
//! Pure and a leaf: no I/O, nothing of the crate's. The report lines and the room both escape here,
//! so the operator and the other members read exactly the same text.

use std::borrow::Cow;

/// Makes client bytes safe for a terminal and a log line. Valid UTF-8 is kept as it is, except that
/// control characters other than tab (C0, DEL, C1), the invisible format characters that can hide
/// or reorder text (see `is_unsafe`), the Unicode line and paragraph separators and the room's
/// server mark `◆` become `\xNN` or `\u{NNNN}`; invalid UTF-8 bytes become `\xNN`. The result never holds a newline or an escape
/// sequence, so a client can neither move the cursor nor forge a report line.
pub fn escape(bytes: &[u8]) -> Cow<'_, str> {
    if let Some(text) = plain(bytes) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    escape_into(&mut out, bytes);
    Cow::Owned(out)
}

/// Appends `bytes`, escaped as [`escape`] says, to `out`.
pub fn escape_into(out: &mut String, bytes: &[u8]) {
    if let Some(text) = plain(bytes) {
        out.push_str(text);
        return;
    }
    // The last character kept as it is, for the tags of a flag.
    let mut last = '\0';
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let flag_tag = TAGS.contains(&c) && (last == BLACK_FLAG || TAGS.contains(&last));
            if !is_unsafe(c) || flag_tag {
                out.push(c);
                last = c;
            } else if let Ok(byte @ ..0xa0) = u8::try_from(c) {
                // C0, DEL and C1 controls; from U+00A0 on, `\u{..}` (an escaped soft hyphen
                // must not read like the invalid byte 0xAD).
                push_hex_byte(out, byte);
                last = '\0';
            } else {
                last = '\0';
                out.push_str("\\u{");
                let code = c as u32;
                let digits = (32 - code.leading_zeros()).div_ceil(4);
                for shift in (0..digits).rev() {
                    out.push(char::from(HEX[(code >> (4 * shift) & 0xf) as usize]));
                }
                out.push('}');
            }
        }
        for &byte in chunk.invalid() {
            push_hex_byte(out, byte);
            last = '\0';
        }
    }
}

/// Appends `\xNN`.
fn push_hex_byte(out: &mut String, byte: u8) {
    out.push_str("\\x");
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0xf)]));
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as text if they need no escaping: printable ASCII and tabs (the common case, checked
/// eight bytes at a time), or valid UTF-8 without a character to escape.
fn plain(bytes: &[u8]) -> Option<&str> {
    if is_printable_ascii(bytes) {
        // SAFETY: every byte is below 0x80, and ASCII is valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.chars().any(is_unsafe)).then_some(text)
}

/// Whether every byte is in `0x20..=0x7e` or a tab. A word at a time: the classic bit tricks flag
/// a word holding a byte below 0x20 or above 0x7e, and only such a word is looked at byte by byte
/// (it may just hold a tab).
fn is_printable_ascii(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let printable = |b: &u8| (0x20..0x7f).contains(b) || *b == b'\t';
    let (words, rest) = bytes.as_chunks::<8>();
    for word in words {
        let w = u64::from_le_bytes(*word);
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let above_tilde = (w.wrapping_add(ONES) | w) & HIGH;
        if below_space | above_tilde != 0 && !word.iter().all(printable) {
            return false;
        }
    }
    rest.iter().all(printable)
}

/// What starts every line the server says in the `--relay` room; escaped in everything a client
/// sends, so no client's text can pass for a server line.
pub const SERVER_MARK: &str = "\u{25c6}";

/// Whether `c` is escaped: controls but tab, the line and paragraph separators, the room's server
/// mark, and the invisible format characters (Unicode category Cf) that can hide or reorder text:
/// bidi marks, embeddings, overrides and isolates, zero-width space, word joiner, BOM, soft
/// hyphen, invisible operators and the like. The zero-width joiner and non-joiner are kept (emoji
/// sequences such as 👨‍👩‍👧 and many scripts need them), and so are the tag characters of an emoji
/// flag (🏴 followed by tags), which `escape_into` lets through after a black flag.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c,
            '\u{2028}' | '\u{2029}' | '\u{25c6}'
            // Cf, as of Unicode 16, but U+200C and U+200D.
            | '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}'
            | '\u{890}'..='\u{891}' | '\u{8e2}' | '\u{180e}' | '\u{200b}' | '\u{200e}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}'
            | '\u{feff}' | '\u{fff9}'..='\u{fffb}' | '\u{110bd}' | '\u{110cd}'
            | '\u{13430}'..='\u{1343f}' | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0001}' | '\u{e0020}'..='\u{e007f}')
}

/// The tag characters: invisible, and kept only inside an emoji flag's tag sequence.
const TAGS: std::ops::RangeInclusive<char> = '\u{e0020}'..='\u{e007f}';
/// The black flag that starts an emoji tag sequence (🏴 and tags: the flags of England, Scotland,
/// Wales).
const BLACK_FLAG: char = '\u{1f3f4}';

/// What follows a message cut at `--max-line`: `... [+N bytes]`.
pub fn push_cut_marker(out: &mut String, dropped: usize) {
    use std::fmt::Write;
    let _ = write!(out, "... [+{dropped} bytes]");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_plain_and_unicode_text_borrowed() {
        for text in [
            "hello, world",
            "tab\there",
            "你好，世界",
            "emoji 🎉 and accents: café",
            "",
        ] {
            assert!(matches!(escape(text.as_bytes()), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn escapes_invisible_format_characters_but_keeps_emoji_sequences() {
        for (c, shown) in [
            ('\u{200b}', "\\u{200b}"),
            ('\u{200e}', "\\u{200e}"),
            ('\u{200f}', "\\u{200f}"),
            ('\u{61c}', "\\u{61c}"),
            ('\u{2060}', "\\u{2060}"),
            ('\u{feff}', "\\u{feff}"),
            ('\u{ad}', "\\u{ad}"),
            ('\u{e0041}', "\\u{e0041}"),
            ('\u{25c6}', "\\u{25c6}"),
        ] {
            assert_eq!(escape(format!("a{c}b").as_bytes()), format!("a{shown}b"));
        }
        let family = "👨\u{200d}👩\u{200d}👧";
        let england = "\u{1f3f4}\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}";
        for kept in [family, england, "🇫🇷", "ZWNJ: می\u{200c}خواهم"] {
            assert_eq!(escape(kept.as_bytes()), kept);
        }
        // Tags anywhere but after a flag are escaped.
        assert_eq!(escape("x\u{e0067}".as_bytes()), "x\\u{e0067}");
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(escape(b"\x1b[2J\x1b[H"), "\\x1b[2J\\x1b[H");
        assert_eq!(escape(b"a\rb\nc\0d\x7f"), "a\\x0db\\x0ac\\x00d\\x7f");
        assert_eq!(escape("c1:\u{85}\u{9b}".as_bytes()), "c1:\\x85\\x9b");
    }

    #[test]
    fn escapes_bidi_controls_and_line_separators() {
        assert_eq!(escape("abc\u{202e}def".as_bytes()), "abc\\u{202e}def");
        assert_eq!(
            escape("\u{2066}x\u{2069}".as_bytes()),
            "\\u{2066}x\\u{2069}"
        );
        assert_eq!(escape("a\u{2028}b".as_bytes()), "a\\u{2028}b");
    }

    #[test]
    fn escapes_invalid_utf8_bytes() {
        assert_eq!(escape(b"ok\xff\xfe"), "ok\\xff\\xfe");
        // Overlong encoding of '/' and a lone continuation byte.
        assert_eq!(escape(b"\xc0\xaf\x80"), "\\xc0\\xaf\\x80");
        // A truncated multi-byte sequence next to a valid one.
        assert_eq!(
            escape(
                "é".as_bytes()
                    .split_last()
                    .map(|(_, head)| head)
                    .unwrap_or_default()
            ),
            "\\xc3"
        );
    }

    #[test]
    fn printable_ascii_check_matches_the_plain_definition() {
        let printable = |b: u8| (0x20..0x7f).contains(&b) || b == b'\t';
        for b in 0..=255u8 {
            for at in 0..17 {
                let mut bytes = vec![b'a'; 17];
                bytes[at] = b;
                assert_eq!(
                    is_printable_ascii(&bytes),
                    printable(b),
                    "byte {b:#04x} at {at}"
                );
            }
        }
    }

    #[test]
    fn escaped_text_has_no_control_characters_for_any_byte() {
        for b in 0..=255u8 {
            let bytes = [b'x', b, b'y'];
            let text = escape(&bytes);
            assert!(!text.chars().any(is_unsafe), "byte {b:#04x} gave {text:?}");
        }
    }

    #[test]
    fn marks_a_cut() {
        let mut out = String::from("abc");
        push_cut_marker(&mut out, 12);
        assert_eq!(out, "abc... [+12 bytes]");
    }
}
