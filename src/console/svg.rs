//! Small line charts drawn on the server as inline SVG (no script, no inline
//! style: colours come from classes in `console.css` and presentation
//! attributes, which the strict CSP allows).
//!
//! Invariants:
//! - Every chart is an image with an accessible name (`role="img"`,
//!   `aria-label` and a `<title>`, both the caller's summary of the figures),
//!   escaped by maud like every other value.
//! - Coordinates are finite and inside the view box whatever the values: absent
//!   and non-finite points break the line, and values are scaled to the largest.

use maud::{html, Markup};

/// Width of the view box: one unit per point of a full ring.
const W: f64 = 360.0;
/// Height of the view box.
const H: f64 = 48.0;
/// Room kept above and below the line, so that its stroke is not cut.
const PAD: f64 = 2.0;

/// One line of a chart.
pub struct Line<'a> {
    /// Its class (its colour in `console.css`).
    pub class: &'static str,
    /// Its values, oldest first; `None` where there is no figure.
    pub values: &'a [Option<f64>],
}

/// A chart of `lines` over a window of `cap` points (the newest at the right
/// edge), named `label` for assistive technology.
pub fn chart(label: &str, cap: usize, lines: &[Line<'_>]) -> Markup {
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    html! {
        svg.chart viewBox={ "0 0 " (W) " " (H) } preserveAspectRatio="none"
            role="img" aria-label=(label) focusable="false" {
            title { (label) }
            line.axis x1="0" y1=(H - PAD) x2=(W) y2=(H - PAD) {}
            @for l in lines {
                @for seg in segments(l.values, cap, max) {
                    @if seg.len() == 1 {
                        circle class=(l.class) cx=(seg[0].0) cy=(seg[0].1) r="1.5" {}
                    } @else {
                        polyline class=(l.class) fill="none" vector-effect="non-scaling-stroke"
                            points=(points(&seg)) {}
                    }
                }
            }
        }
    }
}

/// The runs of present, finite values as view-box points.
fn segments(values: &[Option<f64>], cap: usize, max: f64) -> Vec<Vec<(String, String)>> {
    let cap = cap.max(values.len()).max(2);
    let offset = cap - values.len();
    let mut out: Vec<Vec<(String, String)>> = Vec::new();
    let mut run = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v.filter(|v| v.is_finite()) {
            Some(v) => {
                let x = W * (offset + i) as f64 / (cap - 1) as f64;
                let share = if max > 0.0 {
                    (v.max(0.0) / max).min(1.0)
                } else {
                    0.0
                };
                let y = H - PAD - share * (H - 2.0 * PAD);
                run.push((format!("{x:.1}"), format!("{y:.1}")));
            }
            None if !run.is_empty() => out.push(std::mem::take(&mut run)),
            None => {}
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

fn points(seg: &[(String, String)]) -> String {
    let mut s = String::new();
    for (i, (x, y)) in seg.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(x);
        s.push(',');
        s.push_str(y);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coords(svg: &str) -> Vec<f64> {
        let mut out = Vec::new();
        for part in svg.split("points=\"").skip(1) {
            let pts = &part[..part.find('"').unwrap()];
            for p in pts.split([' ', ',']) {
                out.push(p.parse::<f64>().unwrap());
            }
        }
        out
    }

    #[test]
    fn labels_are_escaped_and_name_the_image() {
        let s = chart("<script>&\"", 360, &[]).into_string();
        assert!(s.contains("role=\"img\""));
        assert!(
            s.contains("aria-label=\"&lt;script&gt;&amp;&quot;\""),
            "{s}"
        );
        assert!(
            s.contains("<title>&lt;script&gt;&amp;&quot;</title>"),
            "{s}"
        );
        assert!(!s.contains("<script>"));
    }

    #[test]
    fn an_empty_series_draws_only_the_axis() {
        let s = chart(
            "nothing",
            360,
            &[Line {
                class: "a",
                values: &[],
            }],
        )
        .into_string();
        assert!(!s.contains("polyline") && !s.contains("circle"), "{s}");
        let s = chart(
            "gaps",
            360,
            &[Line {
                class: "a",
                values: &[None, None],
            }],
        )
        .into_string();
        assert!(!s.contains("polyline"), "{s}");
    }

    #[test]
    fn huge_and_broken_values_stay_in_the_box() {
        let values = [
            Some(f64::MAX),
            Some(1.0),
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(-5.0),
            Some(0.0),
            None,
            Some(u64::MAX as f64),
        ];
        let s = chart(
            "big",
            4,
            &[Line {
                class: "a",
                values: &values,
            }],
        )
        .into_string();
        assert!(!s.contains("NaN") && !s.contains("inf"), "{s}");
        let c = coords(&s);
        assert!(!c.is_empty());
        for v in c {
            assert!(v.is_finite() && (0.0..=W).contains(&v), "{v} in {s}");
        }
        // The last point, alone after a gap, is drawn as a dot.
        assert!(s.contains("<circle"), "{s}");
    }

    #[test]
    fn the_newest_point_is_at_the_right_edge_and_the_largest_at_the_top() {
        let s = chart(
            "two",
            360,
            &[Line {
                class: "a",
                values: &[Some(0.0), Some(10.0)],
            }],
        )
        .into_string();
        assert_eq!(coords(&s), vec![359.0, H - PAD, W, PAD]);
    }
}
