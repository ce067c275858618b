//! `vswitch-replay`: run pcap conformance cases through the engine and print a report.
//!
//! Usage: `vswitch-replay [CASES_DIR] [CASE...]` (default `tests/pcap`, every case). Exit code 0
//! when every case matches byte for byte, 1 when any differs, 2 when cases cannot be loaded.

use std::path::PathBuf;
use std::process::ExitCode;
use vswitch::replay::Case;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if let Some(a) = args.next() {
        if a == "-h" || a == "--help" {
            println!("usage: vswitch-replay [CASES_DIR] [CASE...]\n\nRuns each case's input pcaps through the vswitch pipeline on pcap ports and\ncompares every transmitted frame with the case's expected pcaps, byte for byte.");
            return ExitCode::SUCCESS;
        }
        return run(PathBuf::from(a), args.collect());
    }
    run(PathBuf::from("tests/pcap"), Vec::new())
}

fn run(root: PathBuf, only: Vec<String>) -> ExitCode {
    let cases = match Case::load_all(&root) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vswitch-replay: {e}");
            return ExitCode::from(2);
        }
    };
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|c| only.is_empty() || only.contains(&c.name))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    println!(
        "{:<36} {:>4} {:>4} {:>5}  result  what it proves",
        "case", "in", "out", "drops"
    );
    for case in &cases {
        match case.verify() {
            Ok(o) => {
                passed += 1;
                println!(
                    "{:<36} {:>4} {:>4} {:>5}  ok      {}",
                    case.name,
                    o.frames_in(),
                    o.frames_out(),
                    o.drops(),
                    case.description
                );
            }
            Err(why) => {
                failed += 1;
                println!(
                    "{:<36} {:>4} {:>4} {:>5}  FAIL    {}",
                    case.name, "-", "-", "-", case.description
                );
                for line in why.lines() {
                    println!("    {line}");
                }
            }
        }
    }
    println!("\n{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
