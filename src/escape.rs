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
/// speed ([`every_byte`]).
fn is_printable_ascii(bytes: &[u8]) -> bool {
    every_byte(bytes, is_printable)
}

/// Whether `ok` holds for every byte, at memory speed. Blocks of 32 bytes are checked without a
/// branch per byte, which the compiler turns into a few SIMD instructions (SSE2, in every x86-64),
/// in the manner of memchr; a tail shorter than a block is checked as one more block that overlaps
/// the last (checking a byte twice does no harm). A line of 32 to 64 bytes is two blocks with no
/// loop, and a shorter one two overlapping blocks of 16 or 8. Only lines under 8 bytes are checked
/// byte by byte. `ok` must be branch-free for the blocks to vectorize. Also the JSON escape check.
#[inline(always)]
pub fn every_byte(bytes: &[u8], ok: impl Fn(u8) -> bool + Copy) -> bool {
    // Every byte of a block, with no early exit, so that it vectorizes.
    let block = |block: &[u8]| block.iter().fold(true, |all, &b| all & ok(b));
    if bytes.len() > 64
        && let Some(last) = bytes.last_chunk::<32>()
    {
        let (blocks, _) = bytes.as_chunks::<32>();
        return blocks.iter().all(|b| block(b)) && block(last);
    }
    // A line of up to 64 bytes (the common chat line), as two blocks that may overlap, no loop.
    if let (Some(first), Some(last)) = (bytes.first_chunk::<32>(), bytes.last_chunk::<32>()) {
        return block(first) & block(last);
    }
    if let (Some(first), Some(last)) = (bytes.first_chunk::<16>(), bytes.last_chunk::<16>()) {
        return block(first) & block(last);
    }
    if let (Some(first), Some(last)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        return block(first) & block(last);
    }
    bytes.iter().all(|&b| ok(b))
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
mod tests;
