//! Compiles the XDP programs in `bpf/` with clang (`-target bpf`) into OUT_DIR.
//! Needs clang and the kernel UAPI headers (Debian: clang, linux-libc-dev); no libbpf.

use std::{env, path::PathBuf, process::Command};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("BPF_CLANG").unwrap_or_else(|_| "clang".into());
    // asm/types.h lives in the multiarch include dir on Debian; -target bpf does not search it.
    let multiarch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86_64-linux-gnu",
        Ok("aarch64") => "aarch64-linux-gnu",
        Ok(other) => panic!("no BPF build setup for target arch {other}"),
        Err(_) => panic!("cargo sets CARGO_CFG_TARGET_ARCH"),
    };
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
    for prog in ["port", "uplink"] {
        let src = format!("bpf/{prog}.c");
        let obj = out.join(format!("{prog}.o"));
        let status = Command::new(&clang)
            .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
            .arg(format!("-I/usr/include/{multiarch}"))
            .args(["-c", &src, "-o"])
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run {clang}: {e} (apt-get install clang linux-libc-dev)")
            });
        assert!(status.success(), "clang failed to build {src}");
    }
}
