//! ISA detection, `TK_ISA` parsing and overriding. One test function, because
//! it changes the process environment.

use transformer_kernels::{Config, ISA_ENV, Isa, KernelError, Parallelism};

#[test]
fn detect_parse_and_env_override() {
    // Parsing.
    assert_eq!("scalar".parse::<Isa>().unwrap(), Isa::Scalar);
    assert_eq!(" AVX2 ".parse::<Isa>().unwrap(), Isa::Avx2);
    assert_eq!("avx512".parse::<Isa>().unwrap(), Isa::Avx512);
    assert_eq!("neon".parse::<Isa>().unwrap(), Isa::Neon);
    let e = "sse9".parse::<Isa>().unwrap_err();
    assert_eq!(
        e,
        KernelError::UnknownIsa {
            value: "sse9".into()
        }
    );
    assert!(e.to_string().contains("sse9"));
    for isa in Isa::ALL {
        assert_eq!(isa.name().parse::<Isa>().unwrap(), isa);
    }

    // Availability.
    let avail = Isa::available();
    assert_eq!(avail[0], Isa::Scalar);
    assert!(avail.iter().all(|i| i.is_available()));
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(
            avail.contains(&Isa::Avx2),
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        );
        assert_eq!(
            avail.contains(&Isa::Avx512),
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl")
        );
    }

    #[cfg(target_arch = "aarch64")]
    {
        // NEON is part of the aarch64 baseline: a build whose detection
        // fell back to scalar must fail here, not pass every test at the
        // scalar level.
        assert!(avail.contains(&Isa::Neon), "no Neon level: {avail:?}");
        assert_eq!(Isa::hardware_best(), Isa::Neon);
        assert!(!avail.contains(&Isa::Avx2) && !avail.contains(&Isa::Avx512));
    }

    // SAFETY: this binary has a single test, so nothing reads the
    // environment concurrently.
    unsafe { std::env::remove_var(ISA_ENV) };
    let best = Isa::hardware_best();
    assert_eq!(Isa::detect(), best);
    assert_eq!(*avail.last().unwrap(), best);
    assert_eq!(Config::default().isa, best);
    assert_eq!(Config::default().parallelism, Parallelism::Serial);

    for isa in &avail {
        unsafe { std::env::set_var(ISA_ENV, isa.name()) };
        assert_eq!(Isa::detect(), *isa, "TK_ISA={isa} lowers detect()");
        assert_eq!(Config::default().isa, *isa);
    }
    // An unavailable level or garbage is ignored by detect() and reported by
    // env_override().
    for bad in Isa::ALL.iter().filter(|i| !i.is_available()) {
        unsafe { std::env::set_var(ISA_ENV, bad.name()) };
        assert_eq!(Isa::detect(), best);
    }
    unsafe { std::env::set_var(ISA_ENV, "fastest") };
    assert_eq!(Isa::detect(), best);
    assert!(matches!(
        Isa::env_override(),
        Err(KernelError::UnknownIsa { .. })
    ));
    unsafe { std::env::remove_var(ISA_ENV) };
    assert_eq!(Isa::env_override(), Ok(None));

    assert_eq!(Parallelism::Serial.threads(), 1);
    assert_eq!(Parallelism::Threads(3).threads(), 3);
    assert!(Parallelism::Threads(0).threads() >= 1);
}

#[test]
fn unknown_isa_message_names_every_level() {
    let e = "avx1024".parse::<Isa>().unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("'avx1024'"), "{msg}");
    for isa in Isa::ALL {
        assert!(msg.contains(isa.name()), "{msg} lacks {}", isa.name());
    }
    assert!(msg.ends_with(" or avx512)"), "{msg}");
}
