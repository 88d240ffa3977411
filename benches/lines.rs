//! The per-line path on its own: framing, escaping and report formatting, in bytes/s and ns per
//! line, on ASCII, Chinese UTF-8 and hostile (control-heavy) input in 64-byte lines, and on ASCII
//! in 1 KiB lines.
//!
//! `cargo bench --bench lines`. The logger is the real one as for a pipe (the `TurnLogger`), with
//! nowhere to write, so what is measured is the making of the reports, not a disk.

use chatd::{Line, LineDecoder};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// 64 KiB of `len`-byte lines (`len - 1` bytes and a newline) made of `unit` repeated.
fn lines_of(unit: &str, len: usize) -> (Vec<u8>, u64) {
    let mut text = String::new();
    while text.len() < len - 1 {
        text.push_str(unit);
    }
    let mut line: Vec<u8> = text.as_bytes()[..text.floor_char_boundary(len - 1)].to_vec();
    line.resize(len - 1, b'.');
    line.push(b'\n');
    let count = 64 * 1024 / line.len();
    (line.repeat(count), count as u64)
}

fn per_line_path(c: &mut Criterion) {
    if let Err(e) = chatd::init_logging_nowhere() {
        panic!("cannot start the logger: {e}");
    }
    let label = chatd::label(
        chatd::Peer(([127, 0, 0, 1], 40000).into()),
        chatd::ConnId(7),
    );
    let inputs = [
        ("ascii", lines_of("hello, world ", 64)),
        ("chinese", lines_of("你好，世界", 64)),
        (
            "hostile",
            lines_of("\x1b[2J\u{202e}\x00\x7f\u{85}\u{ff}", 64),
        ),
        ("ascii", lines_of("hello, world ", 1024)),
    ];
    let mut group = c.benchmark_group("framing+escape+report");
    for (name, (bytes, lines)) in &inputs {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        let len = bytes.len() as u64 / lines;
        group.bench_function(format!("{name} ({lines} lines of {len} B)"), |b| {
            let mut decoder = LineDecoder::new(65536);
            b.iter(|| {
                // As the loop does: the reports of one read, then the end of the turn.
                let mut messages = chatd::report_messages();
                decoder.feed(bytes, |line: Line<'_>| {
                    messages.message(&label, line.text, line.dropped)
                });
                drop(messages);
                log::logger().flush();
            });
        });
    }
    group.finish();
}

criterion_group!(benches, per_line_path);
criterion_main!(benches);
