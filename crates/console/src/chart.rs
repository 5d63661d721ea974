//! A stacked bar chart drawn as SVG on the server: one bar per time bucket, one colour per
//! series (model), an axis with a few round ticks. No script, no library.

use maud::{html, Markup};

/// Colours for series, in order (distinguishable, AA contrast against white for the legend).
pub const PALETTE: &[&str] = &[
    "#0b5cad", "#b54708", "#1a7f37", "#8e24aa", "#c2185b", "#00695c", "#5d4037", "#455a64",
];

/// One bar: its label and its value per series (in the series' order).
pub struct Bar {
    pub label: String,
    pub values: Vec<f64>,
}

/// A round step for an axis reaching `max` in about four ticks.
fn step(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let unit = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|u| u * magnitude >= raw)
        .unwrap_or(10.0);
    unit * magnitude
}

/// The chart of `bars` over `series`, values formatted by `format` on the axis.
pub fn stacked(
    title: &str,
    series: &[String],
    bars: &[Bar],
    format: impl Fn(f64) -> String,
) -> Markup {
    let (width, height, left, bottom, top) = (720.0, 260.0, 64.0, 28.0, 10.0);
    let plot_w = width - left - 10.0;
    let plot_h = height - bottom - top;
    let max = bars
        .iter()
        .map(|b| b.values.iter().sum::<f64>())
        .fold(0.0, f64::max);
    let step = step(max);
    let ticks = if max > 0.0 {
        (max / step).ceil() as usize
    } else {
        1
    };
    let top_value = step * ticks as f64;
    let slot = plot_w / bars.len().max(1) as f64;
    let bar_w = (slot * 0.7).max(1.0);
    let y = |v: f64| top + plot_h - v / top_value * plot_h;
    let every = (bars.len() / 8).max(1);
    // Each bar's segments, bottom up: (x, y, height, colour, tooltip).
    let mut segments = Vec::new();
    for (i, bar) in bars.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut base = 0.0;
        for (s, value) in bar.values.iter().enumerate() {
            if *value > 0.0 {
                let (y0, y1) = (y(base), y(base + value));
                let name = series.get(s).map_or("", String::as_str);
                segments.push((
                    x,
                    y1,
                    (y0 - y1).max(0.5),
                    PALETTE[s % PALETTE.len()],
                    format!("{}: {name} {}", bar.label, format(*value)),
                ));
            }
            base += value;
        }
    }
    html! {
        svg.chart viewBox=(format!("0 0 {width} {height}")) role="img" aria-label=(title) {
            title { (title) }
            @for t in 0..=ticks {
                @let value = step * t as f64;
                line x1=(left) x2=(width - 10.0) y1=(y(value)) y2=(y(value)) stroke="#e1e4e8" {}
                text x=(left - 6.0) y=(y(value) + 4.0) text-anchor="end" font-size="11" fill="#4d5561" { (format(value)) }
            }
            @for (x, top_y, h, colour, tip) in &segments {
                rect x=(x) y=(top_y) width=(bar_w) height=(h) fill=(colour) { title { (tip) } }
            }
            @for (i, bar) in bars.iter().enumerate() {
                @if i % every == 0 {
                    text x=(left + slot * i as f64 + slot / 2.0) y=(height - 8.0) text-anchor="middle" font-size="11" fill="#4d5561" { (bar.label) }
                }
            }
        }
        ul.legend aria-label="Models" {
            @for (s, name) in series.iter().enumerate() {
                li {
                    svg width="12" height="12" aria-hidden="true" { rect width="12" height="12" rx="2" fill=(PALETTE[s % PALETTE.len()]) {} }
                    " " (name)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(step(0.0), 1.0);
        assert_eq!(step(100.0), 25.0);
        assert_eq!(step(7.0), 2.0);
        assert_eq!(step(0.013), 0.005);
    }
}
