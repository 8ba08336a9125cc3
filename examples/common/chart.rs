//! The layer examples' SVG: one stacked bar per sequence length, each
//! stage's share of the prefill time.

/// `rows`: (N, per-stage durations); `names` label the stages in order.
pub fn stacked_shares(
    title: &str,
    names: &[&str],
    rows: &[(usize, Vec<std::time::Duration>)],
) -> String {
    let (w, h, m, legend) = (700.0, 440.0, 60.0, 170.0);
    let colors = [
        "#8c564b", "#1f77b4", "#17becf", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#e377c2",
    ];
    let bw = (w - 2.0 * m - legend) / rows.len().max(1) as f64;
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n<text x='{}' y='22' text-anchor='middle' font-size='14'>{title}: share of time per stage</text>\n",
        (w - legend) / 2.0
    );
    for (i, (n, stages)) in rows.iter().enumerate() {
        let x = m + i as f64 * bw;
        let mut y = h - m;
        let total: f64 = stages.iter().map(|d| d.as_secs_f64()).sum();
        for (j, d) in stages.iter().enumerate() {
            let hh = (h - 2.0 * m) * d.as_secs_f64() / total;
            y -= hh;
            s += &format!(
                "<rect x='{:.1}' y='{y:.1}' width='{:.1}' height='{hh:.1}' fill='{}'/>\n",
                x + 4.0,
                bw - 8.0,
                colors[j % colors.len()]
            );
        }
        s += &format!(
            "<text x='{:.1}' y='{}' text-anchor='middle'>{n}</text>\n<text x='{:.1}' y='{}' text-anchor='middle' font-size='10'>{:.0} ms</text>\n",
            x + bw / 2.0,
            h - m + 16.0,
            x + bw / 2.0,
            h - m + 30.0,
            total * 1e3
        );
    }
    for (j, name) in names.iter().enumerate() {
        let y = m + 20.0 * j as f64;
        s += &format!(
            "<rect x='{}' y='{y}' width='12' height='12' fill='{}'/><text x='{}' y='{}'>{name}</text>\n",
            w - m - legend + 10.0,
            colors[j % colors.len()],
            w - m - legend + 28.0,
            y + 10.0
        );
    }
    s += &format!(
        "<text x='{}' y='{}' text-anchor='middle'>tokens N (bar label: total time)</text>\n</svg>\n",
        (w - legend) / 2.0,
        h - 12.0
    );
    s
}
