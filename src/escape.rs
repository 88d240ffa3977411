//! Safe text: client bytes made fit for a terminal, a log line and another client's screen.
//!
//! Pure and a leaf: no I/O, nothing of the crate's. The report lines and the room both escape here,
//! so the operator and the other members read exactly the same text.

use std::borrow::Cow;

/// Makes client bytes safe for a terminal and a log line. Valid UTF-8 is kept as it is, except that
/// control characters other than tab (C0, DEL, C1), the invisible format characters that can hide
/// or reorder text (see `is_unsafe`), the Unicode line and paragraph separators and the room's
/// server mark `◆` become `\xNN` or `\u{NNNN}`; invalid UTF-8 bytes become `\xNN`. The result
/// never holds a newline or an escape sequence, so a client cannot forge a report line nor move
/// the cursor but to the next tab stop (the operator's terminal counts tabs: `wrap.rs`).
pub fn escape(bytes: &[u8]) -> Cow<'_, str> {
    if let Some(text) = plain(bytes) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    escape_unplain(&mut out, bytes);
    Cow::Owned(out)
}

/// Appends `bytes`, escaped as [`escape`] says, to `out`: a `String`, or the byte buffer of a
/// report (the hot path escapes straight into the turn's output).
pub fn escape_into<T: TextBuf + ?Sized>(out: &mut T, bytes: &[u8]) {
    match plain(bytes) {
        Some(text) => out.push_text(text),
        None => escape_unplain(out, bytes),
    }
}

/// Appends `bytes`, escaped as [`escape`] says, to a large byte buffer (a turn's reports): plain
/// text is copied straight in; text to escape is escaped in `scratch`, which is small and stays in
/// the cache, and copied in at once, which measured faster than escaping a character at a time into
/// the large buffer.
#[inline]
pub fn escape_into_buffer(out: &mut Vec<u8>, scratch: &mut Vec<u8>, bytes: &[u8]) {
    match plain(bytes) {
        Some(text) => out.extend_from_slice(text.as_bytes()),
        None => {
            scratch.clear();
            escape_unplain(scratch, bytes);
            out.extend_from_slice(scratch);
        }
    }
}

/// Where escaped text can be appended: a `String`, or bytes that hold UTF-8 (escaped text always
/// is).
pub trait TextBuf {
    fn push_text(&mut self, text: &str);
    fn push_char(&mut self, c: char);
}

impl TextBuf for String {
    fn push_text(&mut self, text: &str) {
        self.push_str(text);
    }
    fn push_char(&mut self, c: char) {
        self.push(c);
    }
}

impl TextBuf for Vec<u8> {
    fn push_text(&mut self, text: &str) {
        self.extend_from_slice(text.as_bytes());
    }
    fn push_char(&mut self, c: char) {
        match u8::try_from(c) {
            Ok(byte) if byte.is_ascii() => self.push(byte),
            _ => self.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
}

/// The escaping proper, for bytes that [`plain`] turned down. Kept out of line: the common case
/// is plain text, and its caller stays small.
#[inline(never)]
fn escape_unplain<T: TextBuf + ?Sized>(out: &mut T, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        let text = chunk.valid();
        let mut chars = text.char_indices();
        while let Some((at, c)) = chars.next() {
            if c == BLACK_FLAG {
                // A flag's tag sequence is kept whole, as one emoji; anything else is escaped.
                let flag = flag_sequence(&text[at..]);
                out.push_text(flag);
                for _ in flag.chars().skip(1) {
                    chars.next();
                }
            } else if !is_unsafe(c) {
                out.push_char(c);
            } else if let Ok(byte @ ..0xa0) = u8::try_from(c) {
                // C0, DEL and C1 controls; from U+00A0 on, `\u{..}` (an escaped soft hyphen
                // must not read like the invalid byte 0xAD).
                push_hex_byte(out, byte);
            } else {
                out.push_text("\\u{");
                let code = c as u32;
                let digits = (32 - code.leading_zeros()).div_ceil(4);
                for shift in (0..digits).rev() {
                    out.push_char(char::from(HEX[(code >> (4 * shift) & 0xf) as usize]));
                }
                out.push_char('}');
            }
        }
        for &byte in chunk.invalid() {
            push_hex_byte(out, byte);
        }
    }
}

/// The black flag at the start of `text`, with the tags of an emoji flag after it if they are
/// one: one to six tag letters or digits and the cancel tag (🏴 + `gbeng` + cancel is England's
/// flag). Tags that are not such a sequence are left out, to be escaped: they would hide text.
fn flag_sequence(text: &str) -> &str {
    let flag = BLACK_FLAG.len_utf8();
    let mut end = flag;
    for (count, c) in text[flag..].chars().enumerate() {
        match c {
            CANCEL_TAG if count >= 1 => return &text[..end + c.len_utf8()],
            '\u{e0030}'..='\u{e0039}' | '\u{e0061}'..='\u{e007a}' if count < 6 => {
                end += c.len_utf8();
            }
            _ => break,
        }
    }
    &text[..flag]
}

/// Appends `\xNN`.
fn push_hex_byte<T: TextBuf + ?Sized>(out: &mut T, byte: u8) {
    out.push_text("\\x");
    out.push_char(char::from(HEX[usize::from(byte >> 4)]));
    out.push_char(char::from(HEX[usize::from(byte & 0xf)]));
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as text if they need no escaping: printable ASCII and tabs (the common case, checked a
/// block at a time), or valid UTF-8 without a character to escape.
fn plain(bytes: &[u8]) -> Option<&str> {
    if is_printable_ascii(bytes) {
        // SAFETY: every byte is below 0x80, and ASCII is valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    plain_unicode(bytes)
}

/// The non-ASCII half of [`plain`]: valid UTF-8 without a character that [`is_unsafe`] names.
/// `is_unsafe` is the one definition of what is escaped; this only finds it faster.
#[inline(never)]
fn plain_unicode(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.chars().any(is_unsafe)).then_some(text)
}

/// Whether every byte is in `0x20..=0x7e` or a tab: [`is_printable`] for every byte, at memory
/// speed. Blocks of 32 bytes are checked without a branch per byte, which the compiler turns into
/// a few SIMD instructions (SSE2, in every x86-64), in the manner of memchr; a tail shorter than a
/// block is checked as one more block that overlaps the last (checking a byte twice does no harm).
/// A line of 32 to 64 bytes is two blocks with no loop, and a shorter one two overlapping blocks of
/// 16 or 8. Only lines under 8 bytes are checked byte by byte.
fn is_printable_ascii(bytes: &[u8]) -> bool {
    if bytes.len() > 64
        && let Some(last) = bytes.last_chunk::<32>()
    {
        let (blocks, _) = bytes.as_chunks::<32>();
        return blocks.iter().all(all_printable) && all_printable(last);
    }
    // A line of up to 64 bytes (the common chat line), as two blocks that may overlap, no loop.
    if let (Some(first), Some(last)) = (bytes.first_chunk::<32>(), bytes.last_chunk::<32>()) {
        return all_printable(first) & all_printable(last);
    }
    if let (Some(first), Some(last)) = (bytes.first_chunk::<16>(), bytes.last_chunk::<16>()) {
        return all_printable(first) & all_printable(last);
    }
    if let (Some(first), Some(last)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        return all_printable(first) & all_printable(last);
    }
    bytes.iter().all(|&b| is_printable(b))
}

/// Whether every byte of a block is printable, with no early exit, so that it vectorizes.
#[inline(always)]
fn all_printable<const N: usize>(block: &[u8; N]) -> bool {
    block.iter().fold(true, |ok, &b| ok & is_printable(b))
}

/// The scalar definition: a byte in `0x20..=0x7e`, or a tab. Written without a branch: adding 1
/// maps `0x20..=0x7e` to `0x21..=0x7f`, the only values above 0x20 as signed bytes (DEL becomes
/// -128, bytes from 0x80 negative or zero).
#[inline(always)]
fn is_printable(b: u8) -> bool {
    (b.wrapping_add(1) as i8 > 0x20) | (b == b'\t')
}

/// What starts every line the server says in the `--relay` room; escaped in everything a client
/// sends, so no client's text can pass for a server line.
pub const SERVER_MARK: &str = "\u{25c6}";

/// Whether `c` is escaped: controls but tab, the line and paragraph separators, the room's server
/// mark and the diamonds that look like it, and the invisible format characters (Unicode category
/// Cf) that can hide or reorder text: bidi marks, embeddings, overrides and isolates, zero-width
/// space, word joiner, BOM, soft hyphen, tags, invisible operators and the like. The zero-width
/// joiner and non-joiner are kept (emoji sequences such as 👨‍👩‍👧 and many scripts need
/// them); the tags of an emoji flag's sequence are kept by `escape_unplain` (`flag_sequence`).
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c,
            '\u{2028}' | '\u{2029}'
            // The room's server mark and the diamonds that look like it.
            | '\u{25c6}' | '\u{25c8}' | '\u{2666}' | '\u{2b25}' | '\u{2b27}' | '\u{2b29}'
            | '\u{2bc1}'
            // Cf, as of Unicode 16, but U+200C and U+200D.
            | '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}'
            | '\u{890}'..='\u{891}' | '\u{8e2}' | '\u{180e}' | '\u{200b}' | '\u{200e}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}'
            | '\u{feff}' | '\u{fff9}'..='\u{fffb}' | '\u{110bd}' | '\u{110cd}'
            | '\u{13430}'..='\u{1343f}' | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0001}' | '\u{e0020}'..='\u{e007f}')
}

/// The black flag that starts an emoji tag sequence (🏴 and tags: the flags of England, Scotland,
/// Wales).
const BLACK_FLAG: char = '\u{1f3f4}';
/// What ends an emoji tag sequence.
const CANCEL_TAG: char = '\u{e007f}';

/// What follows a message cut at `--max-line`: `... [+N bytes]`.
pub fn push_cut_marker<T: TextBuf + ?Sized>(out: &mut T, dropped: usize) {
    out.push_text("... [+");
    let mut digits = [0u8; 20]; // usize::MAX has 20 digits
    let mut at = digits.len();
    let mut n = dropped;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push_char(char::from(d));
    }
    out.push_text(" bytes]");
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
        // Tags anywhere but in a flag's sequence are escaped: alone, after a flag but unended, too
        // long (hidden text), or after the cancel tag.
        assert_eq!(escape("x\u{e0067}".as_bytes()), "x\\u{e0067}");
        let hidden: String = "transfer"
            .chars()
            .map(|c| char::from_u32(0xe0000 + c as u32).unwrap())
            .collect();
        for smuggled in [
            format!("\u{1f3f4}{hidden}\u{e007f}"),
            format!("\u{1f3f4}{hidden}"),
            "\u{1f3f4}\u{e0067}\u{e0062}".to_string(),
            "\u{1f3f4}\u{e007f}".to_string(),
        ] {
            let shown = escape(smuggled.as_bytes());
            assert!(shown.starts_with('\u{1f3f4}'), "{shown}");
            assert!(
                !shown[4..]
                    .chars()
                    .any(|c| ('\u{e0000}'..='\u{e007f}').contains(&c)),
                "{shown}"
            );
        }
        assert_eq!(
            escape(format!("{england}{england} x").as_bytes()),
            format!("{england}{england} x")
        );
        // Diamonds that could pass for the room's server mark.
        for c in ['\u{2666}', '\u{2b25}', '\u{2bc1}', '\u{25c8}'] {
            assert_eq!(
                escape(c.to_string().as_bytes()),
                format!("\\u{{{:x}}}", c as u32)
            );
        }
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

    /// The scalar definition the fast checks must equal, written the plain way.
    fn printable_by_definition(bytes: &[u8]) -> bool {
        bytes
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) || b == b'\t')
    }

    /// [`plain`]'s definition: valid UTF-8 without a character to escape.
    fn plain_by_definition(bytes: &[u8]) -> Option<&str> {
        std::str::from_utf8(bytes)
            .ok()
            .filter(|text| !text.chars().any(is_unsafe))
    }

    #[test]
    fn printable_byte_matches_the_definition_for_every_byte() {
        for b in 0..=255u8 {
            assert_eq!(is_printable(b), printable_by_definition(&[b]), "{b:#04x}");
        }
    }

    /// Every length up to three blocks and a tail, with one odd byte at every place: each of the
    /// block, overlap and tail paths sees it.
    #[test]
    fn printable_ascii_check_matches_the_definition_at_every_length_and_place() {
        let odd = [
            0x00, 0x08, b'\t', b'\n', 0x1f, b' ', b'~', 0x7f, 0x80, 0x9f, 0xc3, 0xfe, 0xff,
        ];
        for len in 0..=100 {
            let clean = vec![b'a'; len];
            assert!(is_printable_ascii(&clean), "length {len}");
            for at in 0..len {
                for &b in &odd {
                    let mut bytes = clean.clone();
                    bytes[at] = b;
                    assert_eq!(
                        is_printable_ascii(&bytes),
                        printable_by_definition(&bytes),
                        "byte {b:#04x} at {at} of {len}"
                    );
                }
            }
        }
    }

    /// Bytes that are mostly printable, with now and then any byte: both answers come up often.
    fn mostly_printable() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![40 => 0x20u8..0x7f, 1 => Just(b'\t'), 1 => any::<u8>()],
            0..300,
        )
    }

    /// Mostly valid UTF-8, now and then a byte that may break it or need escaping.
    fn mostly_text() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<String>(),
            prop::collection::vec((any::<usize>(), any::<u8>()), 0..2),
        )
            .prop_map(|(text, changes)| {
                let mut bytes = text.into_bytes();
                for (at, b) in changes {
                    if !bytes.is_empty() {
                        let at = at % bytes.len();
                        bytes[at] = b;
                    }
                }
                bytes
            })
    }

    proptest! {
        /// The block-at-a-time check says what the byte-by-byte definition says.
        #[test]
        fn printable_ascii_check_equals_the_scalar_definition(bytes in mostly_printable()) {
            prop_assert_eq!(is_printable_ascii(&bytes), printable_by_definition(&bytes));
        }

        /// Same, on any bytes at all.
        #[test]
        fn printable_ascii_check_equals_the_scalar_definition_on_any_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..100),
        ) {
            prop_assert_eq!(is_printable_ascii(&bytes), printable_by_definition(&bytes));
        }

        /// `plain` (the fast ASCII check, then the UTF-8 one) equals its definition.
        #[test]
        fn plain_equals_its_definition(bytes in prop_oneof![mostly_printable(), mostly_text()]) {
            prop_assert_eq!(plain(&bytes), plain_by_definition(&bytes));
        }

        /// Escaping into bytes (the reports' buffer) and into a `String` gives the same text.
        #[test]
        fn escaping_into_bytes_equals_escaping_into_a_string(
            bytes in prop_oneof![mostly_printable(), mostly_text()],
            dropped in any::<usize>(),
        ) {
            let (mut text, mut raw) = (String::new(), Vec::new());
            escape_into(&mut text, &bytes);
            escape_into(&mut raw, &bytes);
            push_cut_marker(&mut text, dropped);
            push_cut_marker(&mut raw, dropped);
            prop_assert_eq!(text.as_bytes(), &raw[..]);
            prop_assert_eq!(text, format!("{}... [+{dropped} bytes]", escape(&bytes)));
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
