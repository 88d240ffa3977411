use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::limits::RATE_TABLE_GENERATION;
use super::*;

fn cidr(text: &str) -> Cidr {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} did not parse: {e}"))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn reads_blocks_and_bare_addresses() {
    assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
    assert_eq!(cidr("192.0.2.7").to_string(), "192.0.2.7/32");
    assert_eq!(cidr("2001:db8::/32").to_string(), "2001:db8::/32");
    assert_eq!(cidr("::1").to_string(), "::1/128");
    assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
    assert_eq!(cidr("::/0").to_string(), "::/0");
    // Host bits are cleared: the block is the one around the address.
    assert_eq!(cidr("10.1.2.3/16").to_string(), "10.1.0.0/16");
    assert_eq!(cidr("2001:db8::1/64").to_string(), "2001:db8::/64");
    // An IPv4-mapped block is the IPv4 block it stands for.
    assert_eq!(cidr("::ffff:192.0.2.0/120").to_string(), "192.0.2.0/24");
    assert_eq!(cidr("::ffff:192.0.2.9"), cidr("192.0.2.9"));
}

#[test]
fn rejects_malformed_blocks() {
    for (text, error) in [
        ("", CidrError::Address),
        ("nonsense", CidrError::Address),
        ("10.0.0/8", CidrError::Address),
        (" 10.0.0.0/8", CidrError::Address),
        ("10.0.0.0/", CidrError::Prefix),
        ("10.0.0.0/+8", CidrError::Prefix),
        ("10.0.0.0/-1", CidrError::Prefix),
        ("10.0.0.0/8/8", CidrError::Prefix),
        ("10.0.0.0/0008", CidrError::Prefix),
        ("10.0.0.0/33", CidrError::PrefixTooLong { max: 32 }),
        ("::/129", CidrError::PrefixTooLong { max: 128 }),
        ("::/999", CidrError::PrefixTooLong { max: 128 }),
        ("::/1000", CidrError::Prefix),
        ("[::1]", CidrError::Address),
        ("host.example", CidrError::Address),
    ] {
        assert_eq!(text.parse::<Cidr>(), Err(error), "{text:?}");
    }
}

#[test]
fn matches_ipv4_mapped_peers_with_ipv4_blocks() {
    let block = cidr("192.0.2.0/24");
    assert!(block.contains(ip("192.0.2.200")));
    assert!(block.contains(ip("::ffff:192.0.2.200")));
    assert!(!block.contains(ip("192.0.3.1")));
    assert!(!block.contains(ip("2001:db8::1")));
    assert!(!cidr("::/0").contains(ip("::ffff:192.0.2.1")));
    assert!(cidr("0.0.0.0/0").contains(ip("::ffff:192.0.2.1")));
    assert!(cidr("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
}

#[test]
fn follows_ncats_rule() {
    let open = Rules::default();
    assert!(open.admits(ip("203.0.113.1")));

    let deny_only = Rules {
        allow: vec![].into(),
        deny: vec![cidr("203.0.113.0/24")].into(),
    };
    assert!(!deny_only.admits(ip("203.0.113.1")));
    assert!(deny_only.admits(ip("198.51.100.1")));

    let both = Rules {
        allow: vec![cidr("10.0.0.0/8")].into(),
        deny: vec![cidr("10.6.6.6"), cidr("10.7.0.0/16"), cidr("2001:db8::/32")].into(),
    };
    assert!(
        !both.admits(ip("10.7.1.1")),
        "the second prefix length of the list"
    );
    assert!(both.admits(ip("10.1.1.1")), "in allow only: admitted");
    assert!(!both.admits(ip("10.6.6.6")), "in both: denied");
    assert!(
        !both.admits(ip("192.0.2.1")),
        "in none, with an allow given: refused"
    );
    assert!(!both.admits(ip("::ffff:10.6.6.6")), "the mapped form too");
}

#[test]
fn reads_rule_files_with_comments_and_blank_lines() {
    let text = "# the office\n10.0.0.0/8   # all of it\n\n   \n2001:db8::/32\n::1\n";
    let blocks = parse_list(text).unwrap();
    assert_eq!(
        blocks,
        [cidr("10.0.0.0/8"), cidr("2001:db8::/32"), cidr("::1")]
    );
    assert_eq!(parse_list("").unwrap(), []);

    let (line, entry, error) = parse_list("10.0.0.0/8\n# ok\n10.0.0.0/40 # typo\n").unwrap_err();
    assert_eq!((line, entry), (3, "10.0.0.0/40"));
    assert_eq!(error, CidrError::PrefixTooLong { max: 32 });
}

#[test]
fn names_the_file_and_line_of_a_bad_entry() {
    let dir = std::env::temp_dir().join(format!("chatd-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good");
    let bad = dir.join("bad");
    std::fs::write(&good, "192.0.2.0/24\n").unwrap();
    std::fs::write(&bad, "192.0.2.0/24\n\nnot-an-address\n").unwrap();
    let source = RuleSource {
        allow: vec![cidr("10.0.0.1")],
        deny: vec![],
        allow_file: Some(good.clone()),
        deny_file: None,
    };
    let rules = source.load().unwrap();
    assert_eq!(
        rules.allow.as_slice(),
        [cidr("10.0.0.1"), cidr("192.0.2.0/24")]
    );

    let source = RuleSource {
        deny_file: Some(bad.clone()),
        ..source
    };
    let error = source.load().unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "--deny-file {}:3: bad entry \"not-an-address\": not an IPv4 or IPv6 address",
            bad.display()
        )
    );
    let missing = RuleSource {
        allow_file: Some(dir.join("missing")),
        ..RuleSource::default()
    };
    let error = missing.load().unwrap_err().to_string();
    assert!(error.starts_with("--allow-file ") && error.contains("missing: cannot read: "));

    for (path, why) in [
        ("/dev/null", "not a regular file"),
        ("/", "not a regular file"),
    ] {
        let special = RuleSource {
            deny_file: Some(path.into()),
            ..RuleSource::default()
        };
        let error = special.load().unwrap_err().to_string();
        assert_eq!(error, format!("--deny-file {path}: cannot read: {why}"));
    }

    // A reload takes new rules whole, or keeps the old ones.
    let mut access = Access::new(source.clone(), Rules::default(), None, None);
    assert!(access.reload().unwrap().is_err());
    assert_eq!(access.rules, Rules::default());
    std::fs::write(&bad, "192.0.2.9\n").unwrap();
    let reloaded = access.reload().unwrap().unwrap();
    assert_eq!(reloaded.deny.as_slice(), [cidr("192.0.2.9")]);
    assert!(Access::default().reload().is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn counts_ipv6_clients_per_64() {
    assert_eq!(
        Cidr::bucket(ip("2001:db8:1:2:aaaa::1")),
        cidr("2001:db8:1:2::/64")
    );
    assert_eq!(Cidr::bucket(ip("::ffff:192.0.2.1")), cidr("192.0.2.1"));
    assert_eq!(Cidr::host(ip("2001:db8::5")), cidr("2001:db8::5/128"));
}

#[test]
fn limits_seated_connections_per_address() {
    let now = Instant::now();
    let mut access = Access::new(RuleSource::default(), Rules::default(), Some(2), None);
    let (a, b) = (ip("2001:db8::1"), ip("2001:db8::2"));
    access.seated(a);
    assert_eq!(access.check(b, now), Ok(()));
    access.seated(b);
    assert_eq!(
        access.check(ip("2001:db8::3"), now),
        Err(Refusal::PerIp),
        "same /64"
    );
    assert_eq!(
        access.check(ip("2001:db8:0:1::3"), now),
        Ok(()),
        "another /64"
    );
    assert_eq!(access.check(ip("192.0.2.1"), now), Ok(()));
    access.left(a);
    assert_eq!(access.check(ip("2001:db8::3"), now), Ok(()));
    // Leaving more often than seated (it cannot happen) does not underflow.
    access.left(a);
    access.left(a);
    access.left(b);
    assert_eq!(access.check(b, now), Ok(()));
}

#[test]
fn limits_the_connect_rate_and_reports_a_run_of_refusals_once() {
    let start = Instant::now();
    let mut access = Access::new(RuleSource::default(), Rules::default(), None, Some(3));
    let peer = ip("192.0.2.1");
    for _ in 0..3 {
        assert_eq!(access.check(peer, start), Ok(()));
    }
    let refused = |report| Err(Refusal::ConnectRate { report });
    assert_eq!(access.check(peer, start), refused(true));
    assert_eq!(access.check(peer, start), refused(false));
    assert_eq!(access.check(ip("::ffff:192.0.2.1"), start), refused(false));
    assert_eq!(
        access.check(ip("192.0.2.2"), start),
        Ok(()),
        "another address"
    );
    // One connection comes back every 20 s.
    let later = start + Duration::from_secs(19);
    assert_eq!(access.check(peer, later), refused(false));
    let later = start + Duration::from_secs(20);
    assert_eq!(access.check(peer, later), Ok(()));
    assert_eq!(access.check(peer, later), refused(true));
    // A minute's quiet gives the whole burst back, across rotations of the table.
    let much_later = later + Duration::from_secs(200);
    for _ in 0..3 {
        assert_eq!(access.check(peer, much_later), Ok(()));
    }
    assert_eq!(access.check(peer, much_later), refused(true));
    assert_eq!(
        access.refused(),
        [0, 0, 0, 6],
        "every refusal counted, reported or not"
    );
}

#[test]
fn keeps_the_rate_table_bounded_under_a_scan() {
    let now = Instant::now();
    let mut access = Access::new(RuleSource::default(), Rules::default(), None, Some(1));
    for n in 0..200_000u32 {
        let _ = access.check(IpAddr::V4(Ipv4Addr::from_bits(n)), now);
        let v6 = Ipv6Addr::from_bits(u128::from(n) << 64);
        let _ = access.check(IpAddr::V6(v6), now);
    }
    let rate = access.rate.as_ref().unwrap();
    assert!(rate.current.len() <= RATE_TABLE_GENERATION);
    assert!(rate.previous.len() <= RATE_TABLE_GENERATION);
    // The latest addresses are still counted.
    assert!(matches!(
        access.check(IpAddr::V4(Ipv4Addr::from_bits(199_999)), now),
        Err(Refusal::ConnectRate { .. })
    ));
}

#[test]
fn bans_expire_and_lift() {
    let now = Instant::now();
    let mut access = Access::new(RuleSource::default(), Rules::default(), None, None);
    let minute = Duration::from_secs(60);
    access.bans().add(cidr("192.0.2.0/24"), Some(now + minute));
    access.bans().add(cidr("2001:db8::/32"), None);
    assert_eq!(access.check(ip("192.0.2.9"), now), Err(Refusal::Banned));
    assert_eq!(
        access.check(ip("::ffff:192.0.2.9"), now),
        Err(Refusal::Banned)
    );
    assert_eq!(access.check(ip("2001:db8::9"), now), Err(Refusal::Banned));
    assert_eq!(access.check(ip("198.51.100.1"), now), Ok(()));
    // Banning the same block again replaces the ban.
    access
        .bans()
        .add(cidr("192.0.2.0/24"), Some(now + 2 * minute));
    assert_eq!(access.bans().current(now).len(), 2);
    assert_eq!(
        access.check(ip("192.0.2.9"), now + minute),
        Err(Refusal::Banned)
    );
    assert_eq!(access.check(ip("192.0.2.9"), now + 2 * minute), Ok(()));
    assert_eq!(access.bans().current(now + 2 * minute).len(), 1);
    assert!(access.bans().remove(cidr("2001:db8::/32")));
    assert!(!access.bans().remove(cidr("2001:db8::/32")));
    assert_eq!(access.check(ip("2001:db8::9"), now), Ok(()));
    // Deny rules come first.
    access.set_rules(Rules {
        allow: vec![].into(),
        deny: vec![cidr("198.51.100.0/24")].into(),
    });
    assert_eq!(access.check(ip("198.51.100.1"), now), Err(Refusal::Denied));
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|bits| IpAddr::V4(Ipv4Addr::from_bits(bits))),
        any::<u128>().prop_map(|bits| IpAddr::V6(Ipv6Addr::from_bits(bits))),
        // IPv4-mapped IPv6, the dual-stack listener's IPv4 peers.
        any::<u32>().prop_map(|bits| IpAddr::V6(Ipv4Addr::from_bits(bits).to_ipv6_mapped())),
    ]
}

proptest! {
    /// The index answers as a scan of the list would, whatever the blocks.
    #[test]
    fn blocks_match_as_a_scan_would(
        nets in proptest::collection::vec((any_ip(), 0u8..=128), 0..12),
        probes in proptest::collection::vec(any_ip(), 1..24),
    ) {
        let list: Vec<Cidr> = nets
            .into_iter()
            .map(|(addr, prefix)| Cidr::new(addr, prefix.min(max_prefix(addr))))
            .collect();
        let blocks = Blocks::from(list.clone());
        for ip in probes.into_iter().chain(list.iter().map(|c| c.net)) {
            prop_assert_eq!(blocks.contains(ip), list.iter().any(|c| c.contains(ip)), "{}", ip);
        }
    }

    /// Whatever the text, parsing gives a block or an error, never a panic; a block prints as
    /// text that reads back as the same block.
    #[test]
    fn parsing_never_panics_and_round_trips(text in "\\PC{0,48}") {
        if let Ok(block) = text.parse::<Cidr>() {
            prop_assert_eq!(block.to_string().parse::<Cidr>(), Ok(block));
        }
        let _ = parse_list(&text);
    }

    /// Text shaped like a CIDR, valid or nearly so: same as above, on the inputs that matter.
    #[test]
    fn cidr_shaped_text_round_trips(
        text in "[0-9a-fA-F:.]{0,40}(/[0-9+-]{0,4})?",
    ) {
        if let Ok(block) = text.parse::<Cidr>() {
            prop_assert_eq!(block.to_string().parse::<Cidr>(), Ok(block));
        }
    }

    /// Every block built from an address and a prefix prints and reads back as itself, contains
    /// the address it was built around, and its own network address.
    #[test]
    fn blocks_round_trip_and_contain_their_addresses(addr in any_ip(), prefix in 0u8..=128) {
        let prefix = prefix.min(max_prefix(addr));
        let text = format!("{addr}/{prefix}");
        let block: Cidr = text.parse().unwrap();
        prop_assert_eq!(block.to_string().parse::<Cidr>(), Ok(block));
        // A mapped address is IPv4 to every rule: an IPv6 block wider than /96 around it (such as
        // `::/0`) is an IPv6 block, and does not take it.
        let mapped = canonical(addr) != addr;
        prop_assert!(block.contains(addr) || (mapped && prefix < 96));
        prop_assert!(block.contains(block.net));
        prop_assert!(Cidr::host(addr).contains(addr));
        prop_assert!(Cidr::bucket(addr).contains(addr));
    }
}
