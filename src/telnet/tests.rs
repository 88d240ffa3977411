use proptest::prelude::*;

use super::*;

/// Filters `chunks` one after the other: the text kept, the answers, and whether it was
/// interrupted.
fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<u8>, bool) {
    let mut telnet = Telnet::default();
    let (mut text, mut answers) = (Vec::new(), Vec::new());
    for chunk in chunks {
        let mut data = chunk.to_vec();
        let (lead, kept) = telnet.filter(&mut data, &mut answers);
        text.extend(lead);
        text.extend_from_slice(&data[..kept]);
    }
    (text, answers, telnet.interrupted())
}

fn text(chunks: &[&[u8]]) -> Vec<u8> {
    run(chunks).0
}

fn answers(chunks: &[&[u8]]) -> Vec<u8> {
    run(chunks).1
}

const DO_BINARY: &[u8] = &[IAC, DO, BINARY];
const WILL_TM: &[u8] = &[IAC, WILL, TIMING_MARK];

#[test]
fn text_without_0xff_passes_untouched_and_unanswered() {
    let sent = "hello 中文 😀 ✓\r\n\0\r".as_bytes();
    assert_eq!(run(&[sent]), (sent.to_vec(), Vec::new(), false));
}

/// What inetutils telnet sent for `✓` (E2 9C 93) and `七` (E4 B8 83), typed before binary mode,
/// as probed: the replaced byte is put back, the timing mark answered.
#[test]
fn a_replacing_command_inside_utf8_is_the_byte_it_replaced() {
    let check = |sent: &[u8], shown: &str| {
        let (text, answers, interrupted) = run(&[sent]);
        assert_eq!(String::from_utf8_lossy(&text), shown);
        assert_eq!(answers, [DO_BINARY, WILL_TM].concat());
        assert!(!interrupted);
    };
    check(b"\xe2\xff\xf3\xff\xfd\x06\x93\r\n", "✓\n");
    check(b"\xe4\xb8\xff\xf4\xff\xfd\x06\r\n", "七\n");
    check(b"\xc3\xff\xf5\xff\xfd\x06\r\n", "Ï\n");
    check(b"\xc3\xff\xed\xff\xfd\x06\r\n", "Ú\n");
    check(b"\xc3\xff\xf3\xff\xfd\x06\r\n", "Ü\n");
}

#[test]
fn the_byte_before_a_command_in_an_earlier_read_still_counts() {
    assert_eq!(
        text(&[b"\xe2", b"\xff\xf3", b"\xff\xfd", b"\x06\x93"]),
        "✓".as_bytes()
    );
    assert_eq!(
        text(&[b"ab\xe4\xb8", b"\xff\xf4\xff\xfd\x06"]),
        "ab七".as_bytes()
    );
}

#[test]
fn ctrl_c_outside_utf8_interrupts_and_is_answered() {
    let (text, answers, interrupted) = run(&[b"bye\r\n\xff\xf4\xff\xfd\x06after\r\n"]);
    assert_eq!(text, b"bye\r\n"); // Its first command comes after: any client's CR LF.
    assert_eq!(answers, [DO_BINARY, WILL_TM].concat());
    assert!(interrupted);
    // A command after a whole character is outside it.
    assert!(run(&["七".as_bytes(), b"\xff\xf4"]).2);
}

#[test]
fn other_keys_outside_utf8_are_stripped() {
    assert_eq!(text(&[b"a\xff\xf3b\xff\xedc\xff\xf5d\xff\xf1e"]), b"abcde");
}

#[test]
fn iac_iac_is_a_literal_0xff_and_a_stray_iac_is_text() {
    assert_eq!(
        run(&[b"a\xff\xffb"]),
        (b"a\xffb".to_vec(), Vec::new(), false)
    );
    // 0xFF followed by a byte that is no command (below 236): both are text, nothing answered.
    assert_eq!(run(&[b"x\xff\nok\xff"]).0, b"x\xff\nok");
    assert_eq!(run(&[b"x\xff\nok\xff", b"b"]).0, b"x\xff\nok\xffb");
}

#[test]
fn subnegotiation_is_stripped_even_across_reads() {
    let sent: &[u8] = b"a\xff\xfa\x18\x00xterm\xff\xff\xff\xf0b";
    for cut in 0..=sent.len() {
        assert_eq!(text(&[&sent[..cut], &sent[cut..]]), b"ab", "cut at {cut}");
    }
}

#[test]
fn a_subnegotiation_that_never_ends_is_given_up() {
    let mut sent = b"\xff\xfa\x18".to_vec();
    sent.extend(std::iter::repeat_n(b'x', SB_MAX));
    sent.extend_from_slice(b"hello\r\n");
    assert_eq!(text(&[&sent]), b"hello\n");
}

#[test]
fn options_are_refused_but_timing_mark_and_binary_input() {
    // DO ECHO, WILL NAWS, DO BINARY, DO TM, WONT X, DONT Y.
    let sent: &[u8] = b"\xff\xfd\x01\xff\xfb\x1f\xff\xfd\x00\xff\xfd\x06\xff\xfc\x05\xff\xfe\x07";
    let expected: &[u8] = b"\xff\xfd\x00\xff\xfc\x01\xff\xfe\x1f\xff\xfc\x00\xff\xfb\x06";
    assert_eq!(answers(&[sent]), expected);
}

#[test]
fn binary_is_asked_for_once_and_its_answers_are_not_answered() {
    // The client's first command, then its WILL BINARY (agreeing); then each change of its mind
    // is agreed to once (RFC 1143), a repeat not at all.
    let agree: &[u8] = b"\xff\xf1\xff\xfb\x00";
    assert_eq!(answers(&[agree]), DO_BINARY);
    let later: &[u8] = b"\xff\xfc\x00\xff\xfb\x00\xff\xfb\x00\xff\xfc\x00";
    let expected: &[u8] = b"\xff\xfe\x00\xff\xfd\x00\xff\xfe\x00";
    assert_eq!(answers(&[agree, later]), [DO_BINARY, expected].concat());
}

#[test]
fn a_telnet_client_ends_lines_nvt_style() {
    let nop: &[u8] = b"\xff\xf1";
    assert_eq!(text(&[nop, b"a\r\0b\rc\r\nd\ne"]), b"a\nb\nc\nd\ne");
    // A CR at the end of one read and its LF or NUL at the start of the next: one line end.
    assert_eq!(text(&[nop, b"a\r", b"\nb\r", b"\0c"]), b"a\nb\nc");
    // Before its first command it is any client: the decoder handles CR LF.
    assert_eq!(text(&[b"a\r\0b\r", nop, b"\nc"]), b"a\r\0b\r\nc");
}

proptest! {
    /// Any bytes, split into reads anywhere: no panic, never more text than bytes, the same text,
    /// answers and interruption as read whole, and answers bounded by the input.
    #[test]
    fn filtering_ignores_how_reads_are_split(
        stream in prop::collection::vec(
            prop_oneof![
                4 => any::<u8>(),
                2 => Just(IAC),
                1 => 236u8..=254,
                1 => prop::sample::select(vec![0u8, 6, b'\r', b'\n', 0xE2, 0x9C, 0x93]),
            ],
            0..300,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let whole = run(&[&stream]);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain([stream.len()]) {
            chunks.push(&stream[start..cut]);
            start = cut;
        }
        prop_assert_eq!(run(&chunks), whole.clone());
        prop_assert!(whole.0.len() <= stream.len());
        prop_assert!(whole.1.len() <= stream.len() + 3);
        if !stream.contains(&IAC) {
            prop_assert_eq!(whole, (stream, Vec::new(), false));
        }
    }
}
