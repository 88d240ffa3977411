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
