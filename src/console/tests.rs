//! The console parser and the stdin reader, in-process.

use super::*;

fn ok(line: &str) -> Command {
    match parse(line) {
        Some(Ok(command)) => command,
        other => panic!("{line:?} gave {other:?}"),
    }
}

fn err(line: &str) -> ParseError {
    match parse(line) {
        Some(Err(error)) => error,
        other => panic!("{line:?} gave {other:?}"),
    }
}

#[test]
fn parses_every_command() {
    let to = |id, text: &str| Command::To {
        id: ConnId(id),
        text: text.into(),
    };
    assert_eq!(ok("/to 7 hello there"), to(7, "hello there"));
    assert_eq!(ok("/to #7 hi"), to(7, "hi"));
    assert_eq!(ok("@12 hi  you"), to(12, "hi  you"));
    assert_eq!(
        ok("/all hello everyone"),
        Command::All("hello everyone".into())
    );
    assert_eq!(ok("just a reply"), Command::Reply("just a reply".into()));
    assert_eq!(ok("//etc/passwd"), Command::Reply("/etc/passwd".into()));
    assert_eq!(ok("/list"), Command::List);
    assert_eq!(ok("/kick 3"), Command::Kick(ConnId(3)));
    assert_eq!(ok("/kick #3"), Command::Kick(ConnId(3)));
    assert_eq!(ok("/quit"), Command::Quit);
    assert_eq!(ok("/help"), Command::Help);
    assert_eq!(ok("/stats"), Command::Stats);
    let ban = |target, minutes| Command::Ban { target, minutes };
    let block = |text: &str| text.parse::<Cidr>().unwrap();
    assert_eq!(ok("/ban 3"), ban(BanTarget::Client(ConnId(3)), None));
    assert_eq!(
        ok("/ban #3 10"),
        ban(BanTarget::Client(ConnId(3)), Some(10))
    );
    assert_eq!(
        ok("/ban 10.0.0.0/8  60"),
        ban(BanTarget::Block(block("10.0.0.0/8")), Some(60))
    );
    assert_eq!(
        ok("/ban 2001:db8::1"),
        ban(BanTarget::Block(block("2001:db8::1")), None)
    );
    assert_eq!(ok("/bans"), Command::Bans);
    assert_eq!(ok("/unban 10.0.0.0/8"), Command::Unban(block("10.0.0.0/8")));
}

#[test]
fn the_editor_reads_sticky_and_following_targets() {
    let typed = |line| match parse_typed(line) {
        Some(Ok(command)) => command,
        other => panic!("{line:?} gave {other:?}"),
    };
    assert_eq!(typed("/to 5"), Command::Stick(ConnId(5)));
    assert_eq!(typed("/to #5 "), Command::Stick(ConnId(5)));
    assert_eq!(typed("/to"), Command::Follow);
    assert_eq!(typed(" /last "), Command::Follow);
    assert_eq!(
        typed("/to 5 hi"),
        Command::To {
            id: ConnId(5),
            text: "hi".into()
        }
    );
    assert_eq!(typed("hello"), Command::Reply("hello".into()));
    assert!(matches!(
        parse_typed("/to x"),
        Some(Err(ParseError::BadId { .. }))
    ));
    // Into a pipe, as ever.
    assert!(matches!(
        parse("/to 5"),
        Some(Err(ParseError::NoText { .. }))
    ));
    assert!(matches!(
        parse("/last"),
        Some(Err(ParseError::UnknownCommand(_)))
    ));
}

#[test]
fn blank_lines_do_nothing() {
    assert_eq!(parse(""), None);
    assert_eq!(parse("   \t"), None);
}

#[test]
fn mistakes_are_errors() {
    assert_eq!(
        err("/frobnicate"),
        ParseError::UnknownCommand("/frobnicate".into())
    );
    assert!(matches!(err("/to x hi"), ParseError::BadId { .. }));
    assert!(matches!(err("/to 7"), ParseError::NoText { .. }));
    assert!(matches!(err("@7"), ParseError::NoText { .. }));
    assert!(matches!(err("@ hi"), ParseError::BadId { .. }));
    assert!(matches!(
        err("/to 99999999999999999999999 hi"),
        ParseError::BadId { .. }
    ));
    assert!(matches!(err("/kick"), ParseError::BadId { .. }));
    assert!(matches!(err("/kick 1 2"), ParseError::BadId { .. }));
    assert!(matches!(err("/all"), ParseError::NoText { .. }));
    assert!(matches!(err("/"), ParseError::UnknownCommand(_)));
    // Each of these, between the bars, is a mistake in /ban, /bans or /unban.
    let usage_mistakes = "/ban|/ban nowhere|/ban 10.0.0.0/33|/ban 3 0|/ban 3 -1|/ban 3 ten|\
        /ban 3 99999999999|/ban 3 10 more|/unban|/unban 3|/unban 10.0.0.0/8 10|/bans all";
    for line in usage_mistakes.split('|') {
        assert!(matches!(err(line), ParseError::Usage { .. }), "{line}");
    }
}

#[test]
fn reads_lines_and_drops_overlong_ones_whole() {
    let long = "x".repeat(MAX_CONSOLE_LINE as usize + 10);
    let input = format!("/to 1 hi\r\n{long}tail\nafter\nno newline");
    let mut stdin = io::BufReader::with_capacity(1000, input.as_bytes());
    let mut line = Vec::new();
    let mut next = || match read_line(&mut stdin, &mut line) {
        Ok(Some(ConsoleInput::Line(text))) => Some(text),
        Ok(Some(ConsoleInput::TooLong)) => Some("<too long>".to_owned()),
        Ok(Some(_)) | Ok(None) | Err(_) => None,
    };
    let lines: Vec<String> = std::iter::from_fn(&mut next).collect();
    assert_eq!(lines, ["/to 1 hi", "<too long>", "after", "no newline"]);
}

#[test]
fn never_panics_on_odd_input() {
    for line in [
        "@",
        "/",
        "//",
        "/to",
        "/to ",
        "@-1 x",
        "/kick -1",
        "/to 1\u{0} x",
        "/ü",
        "@٣ x",
    ] {
        let _ = parse(line);
    }
}
