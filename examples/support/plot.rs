//! Line charts as PNG files, for the examples: pure Rust (plotters' bitmap
//! backend) with the DejaVu Sans font embedded, so nothing is needed from the system.

use std::error::Error;
use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

static FONT: Once = Once::new();

/// Registers the embedded font under plotters' default family, once.
fn register_embedded_font() -> Result<(), Box<dyn Error>> {
    let mut result = Ok(());
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../data/fonts/DejaVuSans.ttf");
        result = register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "the embedded font did not load".into());
    });
    result
}

/// One named line.
pub struct Series<'a> {
    pub label: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// The colours of successive series.
const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Draws `series` on one pair of axes into the PNG at `path` (640×420),
/// with the legend where it covers no curve.
pub fn line_chart(
    path: &Path,
    title: &str,
    (x_label, y_label): (&str, &str),
    legend_at: SeriesLabelPosition,
    series: &[Series<'_>],
) -> Result<(), Box<dyn Error>> {
    register_embedded_font()?;
    let finite = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in finite {
        (x_min, x_max, y_min, y_max) = (x_min.min(x), x_max.max(x), y_min.min(y), y_max.max(y));
    }
    if x_min >= x_max {
        return Err(format!("{title}: nothing finite to plot").into());
    }
    let pad = ((y_max - y_min) * 0.08).max(0.05);
    let root = BitMapBackend::new(path, (640, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x_min..x_max, (y_min - pad)..(y_max + pad))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;
    for (s, colour) in series.iter().zip(COLOURS.iter().cycle()) {
        let colour = *colour;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied().filter(|(_, y)| y.is_finite()),
                colour.stroke_width(2),
            ))?
            .label(s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .position(legend_at)
        .draw()?;
    root.present()?;
    Ok(())
}
