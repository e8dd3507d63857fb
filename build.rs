//! Tells the tests which instruction-set levels the machine that builds them has, so
//! that a test of a level this CPU cannot run is reported as ignored, with the reason,
//! instead of passing silently (`tests/kernel_levels.rs`). The library itself detects
//! the CPU at run time and does not use these settings.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(adjoint_cpu_avx2, adjoint_cpu_avx512)");
    println!("cargo::rerun-if-changed=build.rs");
    let native = std::env::var("TARGET").ok() == std::env::var("HOST").ok();
    #[cfg(target_arch = "x86_64")]
    if native {
        let has = |feature: &str| match feature {
            "avx2" => is_x86_feature_detected!("avx2"),
            "fma" => is_x86_feature_detected!("fma"),
            "avx512f" => is_x86_feature_detected!("avx512f"),
            "avx512bw" => is_x86_feature_detected!("avx512bw"),
            "avx512dq" => is_x86_feature_detected!("avx512dq"),
            "avx512vl" => is_x86_feature_detected!("avx512vl"),
            _ => false,
        };
        let avx2 = has("avx2") && has("fma");
        if avx2 {
            println!("cargo::rustc-cfg=adjoint_cpu_avx2");
        }
        if avx2 && ["avx512f", "avx512bw", "avx512dq", "avx512vl"].iter().all(|f| has(f)) {
            println!("cargo::rustc-cfg=adjoint_cpu_avx512");
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = native;
}
