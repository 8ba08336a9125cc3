//! Data-cache sizes of the core the process runs on, read once: x86 from
//! `cpuid` (leaf 4 on Intel, 0x8000_001D on AMD: the same "deterministic
//! cache parameters" layout), Linux on other architectures from
//! `/sys/devices/system/cpu/cpu0/cache`. What cannot be read falls back to
//! [`CacheSizes::FALLBACK`], the sizes the blocking constants were first
//! tuned on.

use std::sync::OnceLock;

/// Per-core data-cache sizes in bytes (L3: the whole cache, shared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSizes {
    /// Level-1 data cache of one core.
    pub l1d: usize,
    /// Level-2 cache of one core.
    pub l2: usize,
    /// Last-level cache (0 when there is none).
    pub l3: usize,
}

impl CacheSizes {
    /// 48 KiB L1d, 1 MiB L2, 32 MiB L3: an AVX-512 server core (Ice Lake /
    /// Zen 4 class), where the tile and block sizes were first measured.
    pub const FALLBACK: CacheSizes = CacheSizes {
        l1d: 48 << 10,
        l2: 1 << 20,
        l3: 32 << 20,
    };

    /// This core's caches, detected once per process (each level the
    /// hardware does not report keeps its [`CacheSizes::FALLBACK`] value).
    pub fn detect() -> CacheSizes {
        static SIZES: OnceLock<CacheSizes> = OnceLock::new();
        *SIZES.get_or_init(|| {
            let found = read();
            let or = |v: Option<usize>, f: usize| v.filter(|&v| v > 0).unwrap_or(f);
            CacheSizes {
                l1d: or(found[0], CacheSizes::FALLBACK.l1d),
                l2: or(found[1], CacheSizes::FALLBACK.l2),
                l3: or(found[2], CacheSizes::FALLBACK.l3),
            }
        })
    }
}

/// Whether the core is Intel's (`cpuid` vendor "GenuineIntel"), read once:
/// the matmul's choice between reading A in place and packing it measured
/// differently on Intel and AMD cores (see `matmul::tiles`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn intel() -> bool {
    static INTEL: OnceLock<bool> = OnceLock::new();
    *INTEL.get_or_init(|| {
        let v = std::arch::x86_64::__cpuid_count(0, 0);
        [v.ebx, v.edx, v.ecx] == [*b"Genu", *b"ineI", *b"ntel"].map(u32::from_le_bytes)
    })
}

/// Whether the core is Intel's (never, off x86-64).
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn intel() -> bool {
    false
}

/// Data/unified caches of levels 1–3 as reported by `cpuid`.
#[cfg(target_arch = "x86_64")]
fn read() -> [Option<usize>; 3] {
    use std::arch::x86_64::__cpuid_count;
    let mut out = [None; 3];
    // Vendor "AuthenticAMD"/"HygonGenuine" report their caches on
    // 0x8000_001D; Intel on 4. Both: EAX[4:0] type (0 = no more, 1 = data,
    // 3 = unified), EAX[7:5] level, EBX ways/partitions/line, ECX sets.
    let vendor = __cpuid_count(0, 0);
    let amd =
        vendor.ebx == u32::from_le_bytes(*b"Auth") || vendor.ebx == u32::from_le_bytes(*b"Hygo");
    let leaf = if amd { 0x8000_001D } else { 4 };
    let max = if amd {
        __cpuid_count(0x8000_0000, 0).eax
    } else {
        vendor.eax
    };
    if max < leaf {
        return out;
    }
    for sub in 0..16 {
        let r = __cpuid_count(leaf, sub);
        let kind = r.eax & 0x1f;
        if kind == 0 {
            break;
        }
        let level = ((r.eax >> 5) & 7) as usize;
        if (kind == 1 || kind == 3) && (1..=3).contains(&level) {
            let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
            let parts = ((r.ebx >> 12) & 0x3ff) as usize + 1;
            let line = (r.ebx & 0xfff) as usize + 1;
            let sets = r.ecx as usize + 1;
            out[level - 1] = Some(ways * parts * line * sets);
        }
    }
    out
}

/// Data/unified caches of levels 1–3 from Linux's sysfs (cpu0).
#[cfg(not(target_arch = "x86_64"))]
fn read() -> [Option<usize>; 3] {
    let mut out = [None; 3];
    for index in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{index}");
        let get = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
        let (Some(level), Some(kind), Some(size)) = (get("level"), get("type"), get("size")) else {
            continue;
        };
        let level: usize = level.trim().parse().unwrap_or(0);
        let kind = kind.trim();
        if !(1..=3).contains(&level) || kind == "Instruction" {
            continue;
        }
        out[level - 1] = parse_size(size.trim());
    }
    out
}

/// `"48K"`, `"2048K"`, `"32M"` or a plain byte count.
#[cfg(not(target_arch = "x86_64"))]
fn parse_size(s: &str) -> Option<usize> {
    let (num, mul) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>().ok().map(|n| n * mul)
}
