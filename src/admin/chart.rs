//! Bar charts as inline SVG, drawn on the server: no script, no external library, no
//! CDN, and they print. Colours come from classes in `app.css` (the CSP forbids inline
//! styles).

use super::html::esc;

/// A vertical bar chart of `(label, value)`, labels under the bars.
pub fn bars(id: &str, caption: &str, data: &[(String, u64)]) -> String {
    const W: usize = 1000;
    const H: usize = 240;
    const TOP: usize = 20;
    const BOTTOM: usize = 40;
    let max = data.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let n = data.len().max(1);
    let slot = (W - 20) / n;
    let bar = (slot * 7 / 10).min(72);
    let plot = H - TOP - BOTTOM;
    let mut svg = format!(
        r#"<svg id="{id}" class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-labelledby="{id}-title" xmlns="http://www.w3.org/2000/svg"><title id="{id}-title">{caption}</title>"#,
        id = esc(id),
        caption = esc(caption)
    );
    svg.push_str(&format!(
        r#"<line class="axis" x1="10" y1="{y}" x2="{x2}" y2="{y}"/>"#,
        y = H - BOTTOM,
        x2 = W - 10
    ));
    for (i, (label, value)) in data.iter().enumerate() {
        let h = (*value as usize * plot).div_ceil(max as usize);
        let x = 10 + i * slot + (slot - bar) / 2;
        let y = H - BOTTOM - h;
        svg.push_str(&format!(
            r#"<g class="bar"><rect x="{x}" y="{y}" width="{bar}" height="{h}"><title>{label}: {value}</title></rect><text class="value" x="{cx}" y="{ty}" text-anchor="middle">{value}</text><text class="label" x="{cx}" y="{ly}" text-anchor="middle">{label}</text></g>"#,
            cx = x + bar / 2,
            ty = y.saturating_sub(4).max(12),
            ly = H - BOTTOM + 16,
            label = esc(label),
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_and_escape_labels() {
        let svg = bars(
            "c",
            "Bans",
            &[("<b>".into(), 0), ("b".into(), 5), ("c".into(), 10)],
        );
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains(r#"height="0""#));
        assert!(svg.contains(r#"height="180""#), "{svg}");
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
    }

    #[test]
    fn an_empty_chart_is_still_a_chart() {
        assert!(bars("c", "Bans", &[]).starts_with("<svg"));
    }
}
