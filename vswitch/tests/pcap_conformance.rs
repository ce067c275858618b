//! Tier 2: every case under `tests/pcap/` replayed through the engine on pcap ports, compared
//! byte for byte with the frames `tests/pcap/gen_cases.py` crafted from the rules.

use std::path::PathBuf;
use vswitch::replay::Case;

fn cases_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/pcap")
}

#[test]
fn every_pcap_case_matches_byte_for_byte() {
    let cases = Case::load_all(&cases_root()).expect("cases load");
    assert!(cases.len() >= 25, "only {} cases found", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        match case.verify() {
            Ok(o) => println!(
                "pcap case {:<40} ok   ({} in, {} out, {} dropped)",
                case.name,
                o.frames_in(),
                o.frames_out(),
                o.drops()
            ),
            Err(why) => {
                println!("pcap case {:<40} FAIL\n{why}", case.name);
                failures.push(case.name.clone());
            }
        }
    }
    assert!(failures.is_empty(), "failing cases: {failures:?}");
    println!("{} pcap cases passed", cases.len());
}

#[test]
fn a_corrupted_expectation_fails_with_a_readable_diff() {
    let src = cases_root().join("routed_udp_pod_to_pod");
    let tmp = std::env::temp_dir().join(format!("vswitch-corrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, tmp.join(p.file_name().unwrap())).unwrap();
    }
    // Flip the TTL byte of pod2's first expected frame (pcap header 24 + record header 16 + 22).
    let expected = tmp.join("pod2.expected.pcap");
    let mut bytes = std::fs::read(&expected).unwrap();
    bytes[24 + 16 + 22] ^= 0xff;
    std::fs::write(&expected, bytes).unwrap();
    let result = Case::load(&tmp).unwrap().verify();
    std::fs::remove_dir_all(&tmp).unwrap();
    let why = result.expect_err("a corrupted expectation must fail");
    println!("{why}");
    assert!(why.contains("port pod2: frame 0"), "{why}");
    assert!(
        why.contains("first difference at byte 22 (IPv4 TTL)"),
        "{why}"
    );
}
