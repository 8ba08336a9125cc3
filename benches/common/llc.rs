//! The last-level cache's size, for benches that must stream their data
//! from DRAM (shared by `benches/lowp.rs` and `benches/matmul.rs`).

/// Bytes of the largest cache level sysfs lists for CPU 0.
pub fn llc_bytes() -> usize {
    let mut best = 0;
    for idx in 0..8 {
        let path = format!("/sys/devices/system/cpu/cpu0/cache/index{idx}/size");
        let Ok(s) = std::fs::read_to_string(path) else {
            continue;
        };
        let s = s.trim();
        let (num, mul) = match s.chars().last() {
            Some('K') => (&s[..s.len() - 1], 1 << 10),
            Some('M') => (&s[..s.len() - 1], 1 << 20),
            Some('G') => (&s[..s.len() - 1], 1 << 30),
            _ => (s, 1),
        };
        best = best.max(num.parse::<usize>().unwrap_or(0) * mul);
    }
    best
}
