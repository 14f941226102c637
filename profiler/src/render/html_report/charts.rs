//! The report's SVG charts, drawn with `plotters`: stacked stage bars, grouped bars and
//! latency distributions (cumulative, log scale).
use plotters::{
    coord::{combinators::WithKeyPoints, types::RangedCoordi32},
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

/// Colours of series, in order.
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(0x3b, 0x6e, 0xa8),
    RGBColor(0xe0, 0x8e, 0x2b),
    RGBColor(0xd9, 0xc2, 0x3f),
    RGBColor(0x3f, 0x9e, 0x5a),
    RGBColor(0xb5, 0x4a, 0x7a),
    RGBColor(0x6d, 0x6d, 0x6d),
];

/// A chart's result: SVG text, or what went wrong.
pub type Svg = anyhow::Result<String>;

const FONT: &str = "sans-serif";

fn draw_err<E: std::error::Error + Send + Sync + 'static>(
    e: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow::anyhow!("cannot draw a chart: {e}")
}

/// Width of one name's slot on the x axis; bars are placed in integer thousandths of it.
const SLOT: i32 = 1000;

/// An x axis with one slot per name and a tick (the name) at each slot's centre.
fn slots(n: usize) -> WithKeyPoints<RangedCoordi32> {
    let n = n.max(1) as i32;
    (0..n * SLOT).with_key_points((0..n).map(|i| i * SLOT + SLOT / 2).collect())
}

/// The name of the slot whose centre is `v`.
fn slot_name(names: &[String], v: i32) -> String {
    if v.rem_euclid(SLOT) == SLOT / 2 {
        names.get((v / SLOT) as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// Largest value with head room above the bars for the legend, never zero.
fn top(values: impl Iterator<Item = f64>) -> f64 {
    let m = values.fold(0.0, f64::max);
    if m > 0.0 { m * 1.45 } else { 1.0 }
}

/// How a bar chart shows its series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One bar per name, the series stacked.
    Stacked,
    /// The series side by side, each bar with its value above it.
    Grouped,
}

/// Bar chart of `values[name][series]`, laid out as `layout` says; with `spread`
/// (`[name][series]` = (min, max)), each grouped bar gets a whisker over that range.
pub fn bar_chart(
    title: &str,
    y_desc: &str,
    names: &[String],
    series: &[&str],
    values: &[Vec<f64>],
    layout: Layout,
    spread: Option<&[Vec<(f64, f64)>]>,
) -> Svg {
    let mut svg = String::new();
    {
        let width = (220 + 150 * names.len() as u32).clamp(520, 1300);
        let root = SVGBackend::with_string(&mut svg, (width, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let ymax = match layout {
            Layout::Stacked => top(values.iter().map(|v| v.iter().sum())),
            Layout::Grouped => top(values
                .iter()
                .flatten()
                .copied()
                .chain(spread.into_iter().flatten().flatten().map(|r| r.1))),
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(slots(names.len()), 0f64..ymax)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(y_desc)
            .max_light_lines(0)
            .y_label_formatter(&|v| format_value(*v))
            .x_label_formatter(&|v| slot_name(names, *v))
            .label_style((FONT, 14))
            .draw()
            .map_err(draw_err)?;
        // Stacked bars fill 60% of a name's slot; grouped ones share 70% of it.
        let bar = match layout {
            Layout::Stacked => SLOT * 3 / 5,
            Layout::Grouped => SLOT * 7 / 10 / series.len().max(1) as i32,
        };
        for (s, name) in series.iter().enumerate() {
            let color = PALETTE[s % PALETTE.len()];
            // Left edge, bottom and top of bar `i` of this series.
            let place = |i: usize, v: &[f64]| match layout {
                Layout::Stacked => {
                    let y0: f64 = v[..s].iter().sum();
                    (i as i32 * SLOT + SLOT / 5, y0, y0 + v[s])
                }
                Layout::Grouped => (i as i32 * SLOT + SLOT * 3 / 20 + s as i32 * bar, 0.0, v[s]),
            };
            let width = if layout == Layout::Grouped {
                bar * 9 / 10
            } else {
                bar
            };
            let bars = values.iter().enumerate().map(|(i, v)| {
                let (x, y0, y1) = place(i, v);
                Rectangle::new([(x, y0), (x + width, y1)], color.filled())
            });
            chart
                .draw_series(bars)
                .map_err(draw_err)?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                });
            if let (Layout::Grouped, Some(spread)) = (layout, spread) {
                let whiskers = values.iter().enumerate().filter_map(|(i, v)| {
                    let (x, _, _) = place(i, v);
                    let (lo, hi) = *spread.get(i)?.get(s)?;
                    let mid = x + width / 2;
                    let cap = width / 4;
                    Some(PathElement::new(
                        vec![
                            (mid - cap, lo),
                            (mid + cap, lo),
                            (mid, lo),
                            (mid, hi),
                            (mid - cap, hi),
                            (mid + cap, hi),
                        ],
                        BLACK.stroke_width(1),
                    ))
                });
                chart.draw_series(whiskers).map_err(draw_err)?;
            }
            if layout == Layout::Grouped {
                let labels = values.iter().enumerate().map(|(i, v)| {
                    let (x, _, y1) = place(i, v);
                    // Above the whisker when there is one.
                    let y1 = spread
                        .and_then(|sp| sp.get(i)?.get(s).map(|r| r.1))
                        .map_or(y1, |hi| hi.max(y1));
                    Text::new(
                        format_value(v[s]),
                        (x + width / 2, y1),
                        (FONT, 12)
                            .into_font()
                            .color(&BLACK)
                            .pos(Pos::new(HPos::Center, VPos::Bottom)),
                    )
                });
                chart.draw_series(labels).map_err(draw_err)?;
            }
        }
        if series.len() > 1 {
            legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Draws the legend of a chart's series.
fn legend<'a, 'b: 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()
        .map_err(draw_err)
}

/// A number for a bar label: three significant digits.
pub fn format_value(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Cumulative distributions of per-call latencies (µs, log scale), one line per series.
pub fn latency_cdf(title: &str, series: &[(String, Vec<u64>)]) -> Svg {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let us = |ns: u64| (ns as f64 / 1_000.0).max(0.01);
        let all = series.iter().flat_map(|(_, v)| v.iter().copied());
        let (lo, hi) = all.fold((f64::MAX, 0f64), |(lo, hi), ns| {
            (lo.min(us(ns)), hi.max(us(ns)))
        });
        let (lo, hi) = if hi > 0.0 {
            (lo * 0.8, hi * 1.25)
        } else {
            (0.01, 1.0)
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.0)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("call latency, µs (log scale)")
            .y_desc("fraction of calls ≤ x")
            .max_light_lines(4)
            .x_label_formatter(&|v| format_value(*v))
            .label_style((FONT, 13))
            .draw()
            .map_err(draw_err)?;
        for (s, (name, values)) in series.iter().enumerate() {
            let color = PALETTE[s % PALETTE.len()];
            let mut v = values.clone();
            v.sort_unstable();
            let n = v.len();
            // At most about 400 points a line: every call up to that, evenly spaced ranks past it.
            let step = n.div_ceil(400).max(1);
            let points = (0..n)
                .filter(|i| i % step == 0 || *i == n - 1)
                .map(|i| (us(v[i]), (i + 1) as f64 / n as f64));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(draw_err)?
                .label(format!("{name} ({n} calls)"))
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_labels() {
        let names = vec!["blocking".to_string(), "epoll".to_string()];
        let s = bar_chart(
            "t",
            "µs",
            &names,
            &["wait", "copy"],
            &[vec![5.0, 1.0], vec![2.0, 1.0]],
            Layout::Stacked,
            None,
        )
        .expect("svg");
        assert!(
            s.starts_with("<svg") && s.contains("blocking") && s.contains("epoll"),
            "{s}"
        );
        let grouped = |spread| {
            bar_chart(
                "t",
                "GiB/s",
                &names,
                &["a", "b"],
                &[vec![1.5, 2.0], vec![0.5, 0.0]],
                Layout::Grouped,
                spread,
            )
            .expect("svg")
        };
        let ranges = [vec![(1.4, 1.6), (1.9, 2.1)], vec![(0.4, 0.6), (0.0, 0.0)]];
        let g = grouped(Some(&ranges));
        assert!(g.contains("1.50") && g.contains("blocking"), "{g}");
        // Two series of two bars: four whiskers (six points each), none without a spread.
        let whiskers = |svg: &str| {
            svg.split("<polyline")
                .skip(1)
                .filter(|p| {
                    p.split("points=\"")
                        .nth(1)
                        .map(|q| q.split('"').next().unwrap_or("").split_whitespace().count())
                        == Some(6)
                })
                .count()
        };
        assert_eq!(whiskers(&g), 4, "{g}");
        assert_eq!(whiskers(&grouped(None)), 0);
        let c = latency_cdf(
            "t",
            &[("recvfrom socket".into(), vec![1_000, 2_000, 5_000_000])],
        )
        .expect("svg");
        assert!(
            c.contains("recvfrom socket (3 calls)") && c.contains("<polyline"),
            "{c}"
        );
    }
}
