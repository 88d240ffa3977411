//! CIDR parsing on any text, as `--allow`, a rule file and `/ban` read it: a block or an error,
//! never a panic; a block prints as text that reads back as the same block, and contains its own
//! network address; a rule file gives blocks or the line of its first bad entry.

#![no_main]

use chatd::Cidr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(block) = text.parse::<Cidr>() {
        let again: Cidr = block.to_string().parse().expect("a block reads back");
        assert_eq!(again, block);
    }
    if let Err((line, _, _)) = chatd::parse_rule_list(&text) {
        assert!(line >= 1 && line <= text.lines().count());
    }
});
