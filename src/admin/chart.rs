//! Bar charts as inline SVG, drawn on the server: no script, no external library, no
//! CDN, and they print. Colours come from classes in `app.css` (the CSP forbids inline
//! styles).

use maud::{Markup, html};

use super::html::Text;

/// A vertical bar chart of `(label, value)`, labels under the bars.
pub fn bars(id: &str, caption: &str, data: &[(String, u64)]) -> Markup {
    const W: usize = 1000;
    const H: usize = 240;
    const TOP: usize = 20;
    const BOTTOM: usize = 40;
    let max = data.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let n = data.len().max(1);
    let slot = (W - 20) / n;
    let bar = (slot * 7 / 10).min(72);
    let plot = H - TOP - BOTTOM;
    let title_id = format!("{id}-title");
    html! {
        svg id=(id) class="chart" viewBox={ "0 0 " (W) " " (H) } width=(W) height=(H) role="img"
            aria-labelledby=(title_id) xmlns="http://www.w3.org/2000/svg" {
            title id=(title_id) { (caption) }
            // An empty element rather than `<line/>`: maud writes no self-closing tags,
            // and in SVG both parse to the same line.
            line class="axis" x1="10" y1=(H - BOTTOM) x2=(W - 10) y2=(H - BOTTOM) {}
            @for (i, (label, value)) in data.iter().enumerate() {
                @let h = (*value as usize * plot).div_ceil(max as usize);
                @let x = 10 + i * slot + (slot - bar) / 2;
                @let y = H - BOTTOM - h;
                @let cx = x + bar / 2;
                g class="bar" {
                    rect x=(x) y=(y) width=(bar) height=(h) { title { (Text(label)) ": " (value) } }
                    text class="value" x=(cx) y=(y.saturating_sub(4).max(12)) text-anchor="middle" {
                        (value)
                    }
                    text class="label" x=(cx) y=(H - BOTTOM + 16) text-anchor="middle" {
                        (Text(label))
                    }
                }
            }
        }
    }
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
        )
        .into_string();
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains(r#"height="0""#));
        assert!(svg.contains(r#"height="180""#), "{svg}");
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
    }

    #[test]
    fn an_empty_chart_is_still_a_chart() {
        assert!(bars("c", "Bans", &[]).into_string().starts_with("<svg"));
    }
}
