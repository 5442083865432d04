//! Loss curves as PNG line charts, drawn with `plotters`' bitmap backend.
//!
//! Text is rendered with `plotters`' `ab_glyph` feature from a font embedded in this crate
//! (`assets/DejaVuSans-subset.ttf`: DejaVu Sans cut down to printable ASCII, Bitstream Vera
//! licence in `assets/DejaVuSans-LICENSE.txt`), so no system font, fontconfig or FreeType is
//! needed: it works on a bare Debian machine. The PNG is encoded by the `image` crate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle, RGBColor};

/// The embedded font (a subset of DejaVu Sans: ASCII 0x20..=0x7E and `·×–−`).
pub const PLOT_FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");

/// Line colours, cycled over the series (Tableau 10).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Chart settings. `Default`: 800x500, linear y, title "loss", axes "step" / "loss".
#[derive(Clone, Debug, PartialEq)]
pub struct PlotOptions {
    pub width: u32,
    pub height: u32,
    /// Logarithmic y axis; points with a value `<= 0` are then left out.
    pub log_y: bool,
    /// Logarithmic x axis, likewise.
    pub log_x: bool,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            width: 800,
            height: 500,
            log_y: false,
            log_x: false,
            title: "loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
        }
    }
}

/// Why a plot could not be written.
#[derive(Debug)]
pub enum PlotError {
    /// No series has a point that can be drawn (finite, and positive for a log axis).
    NoData,
    /// Width or height is too small (< 64) or too large (> 16384).
    BadSize { width: u32, height: u32 },
    /// The embedded font did not load (should never happen).
    Font,
    /// `plotters` failed while drawing.
    Draw(String),
    /// Creating the parent folder failed.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Encoding or writing the PNG failed.
    Encode {
        path: PathBuf,
        source: image::ImageError,
    },
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlotError::NoData => write!(
                f,
                "nothing to plot: no finite (and, for a log axis, positive) points"
            ),
            PlotError::BadSize { width, height } => {
                write!(
                    f,
                    "plot size {width}x{height} is outside 64..=16384 pixels per side"
                )
            }
            PlotError::Font => write!(f, "the embedded plot font did not load"),
            PlotError::Draw(m) => write!(f, "drawing the plot failed: {m}"),
            PlotError::Io { path, source } => {
                write!(f, "cannot create {}: {source}", path.display())
            }
            PlotError::Encode { path, source } => {
                write!(f, "cannot write PNG {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for PlotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PlotError::Io { source, .. } => Some(source),
            PlotError::Encode { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn draw_err<E: fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// Registers [`PLOT_FONT`] under the generic family names once per process.
pub(crate) fn ensure_font() -> Result<(), PlotError> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        ["sans-serif", "serif", "monospace"]
            .iter()
            .all(|name| register_font(name, FontStyle::Normal, PLOT_FONT).is_ok())
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// Writes a PNG line chart of `series` (name, `(step, value)` points) with the default
/// [`PlotOptions`] except `log_y`.
pub fn save_loss_curve<S: AsRef<str>>(
    path: impl AsRef<Path>,
    series: &[(S, Vec<(f64, f64)>)],
    log_y: bool,
) -> Result<(), PlotError> {
    save_loss_curve_with(
        path,
        series,
        &PlotOptions {
            log_y,
            ..PlotOptions::default()
        },
    )
}

/// Writes a PNG line chart of `series`, one coloured line per series with a legend.
/// Non-finite points (and, with `log_y`, values `<= 0`) are skipped; a series left with no
/// point is still listed in the legend, one left with a single point is drawn as a dot.
pub fn save_loss_curve_with<S: AsRef<str>>(
    path: impl AsRef<Path>,
    series: &[(S, Vec<(f64, f64)>)],
    opts: &PlotOptions,
) -> Result<(), PlotError> {
    let path = path.as_ref();
    let buf = render_loss_curve(series, opts)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| PlotError::Io {
            path: parent.to_path_buf(),
            source: e,
        })?;
    }
    image::save_buffer_with_format(
        path,
        &buf,
        opts.width,
        opts.height,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| PlotError::Encode {
        path: path.to_path_buf(),
        source: e,
    })
}

/// The chart of [`save_loss_curve_with`] as `width * height` interleaved RGB8 pixels.
pub fn render_loss_curve<S: AsRef<str>>(
    series: &[(S, Vec<(f64, f64)>)],
    opts: &PlotOptions,
) -> Result<Vec<u8>, PlotError> {
    let (width, height) = (opts.width, opts.height);
    if !(64..=16384).contains(&width) || !(64..=16384).contains(&height) {
        return Err(PlotError::BadSize { width, height });
    }
    ensure_font()?;
    let keep = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!opts.log_y || y > 0.0) && (!opts.log_x || x > 0.0);
    let clean: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, pts)| (name.as_ref(), pts.iter().copied().filter(keep).collect()))
        .collect();
    let all = clean.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Err(PlotError::NoData);
    }
    if x1 - x0 < 1e-12 * x0.abs().max(1.0) {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        // Pad by ~5% of the span (in log space on a log axis, and at least a factor of 1.5).
        let log_pad = |a: f64, b: f64| ((b / a).ln() * 0.05).exp().max(1.5f64.sqrt());
        let (xl, yl) = (log_pad(x0, x1), log_pad(y0, y1));
        let ypad = ((y1 - y0) * 0.05).max(1e-9 * y1.abs().max(1.0));
        match (opts.log_x, opts.log_y) {
            (false, true) => draw_chart(&root, &clean, opts, x0..x1, (y0 / yl..y1 * yl).log_scale())?,
            (false, false) => draw_chart(&root, &clean, opts, x0..x1, (y0 - ypad)..(y1 + ypad))?,
            (true, true) => draw_chart(&root, &clean, opts, (x0 / xl..x1 * xl).log_scale(), (y0 / yl..y1 * yl).log_scale())?,
            (true, false) => draw_chart(&root, &clean, opts, (x0 / xl..x1 * xl).log_scale(), (y0 - ypad)..(y1 + ypad))?,
        }
        root.present().map_err(draw_err)?;
    }
    Ok(buf)
}

fn draw_chart<X, Y>(
    root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    series: &[(&str, Vec<(f64, f64)>)],
    opts: &PlotOptions,
    x_range: X,
    y_range: Y,
) -> Result<(), PlotError>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(&opts.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y_range)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc(opts.x_label.as_str())
        .y_desc(opts.y_label.as_str())
        .x_label_formatter(&|v| format_number(*v))
        .y_label_formatter(&|v| format_number(*v))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(draw_err)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let style = ShapeStyle {
            color: color.to_rgba(),
            filled: true,
            stroke_width: 2,
        };
        let drawn = chart
            .draw_series(LineSeries::new(pts.iter().copied(), style))
            .map_err(draw_err)?;
        drawn
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        if pts.len() == 1 {
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, style)))
                .map_err(draw_err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

/// Short tick labels: integers as such, otherwise 3 significant digits, scientific notation
/// for very large or small magnitudes.
pub(crate) fn format_number(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let digits = (2 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let s = format!("{v:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(n: usize, scale: f64) -> Vec<(f64, f64)> {
        (0..n)
            .map(|i| {
                (
                    i as f64 * 10.0,
                    scale * (1.0 + 3.0 * (-(i as f64) / 20.0).exp()),
                )
            })
            .collect()
    }

    #[test]
    fn writes_png_with_requested_size() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("plots/loss.png");
        let series = vec![("train", curve(100, 0.1)), ("eval", curve(10, 0.12))];
        save_loss_curve(&path, &series, false).unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!((img.width(), img.height()), (800, 500));
        let rgb = img.into_rgb8();
        // The first two series colours appear (lines), and so does dark text/axis.
        let has = |c: RGBColor| rgb.pixels().any(|p| p.0 == [c.0, c.1, c.2]);
        assert!(has(COLORS[0]) && has(COLORS[1]));
        assert!(rgb.pixels().any(|p| p.0.iter().all(|&v| v < 60)));
    }

    #[test]
    fn log_axis_custom_size_and_text() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log.png");
        let mut pts = curve(50, 1e-3);
        pts.push((500.0, 0.0)); // dropped on a log axis
        pts.push((510.0, f64::NAN)); // dropped always
        let opts = PlotOptions {
            width: 640,
            height: 360,
            log_y: true,
            title: "Loss (log)".into(),
            ..Default::default()
        };
        save_loss_curve_with(
            &path,
            &[
                ("mse".to_string(), pts),
                ("single".to_string(), vec![(3.0, 2e-3)]),
            ],
            &opts,
        )
        .unwrap();
        let img = image::open(&path).unwrap().into_rgb8();
        assert_eq!(img.dimensions(), (640, 360));
        // Text is drawn: the caption band (top 30 rows) has anti-aliased dark pixels.
        let dark_in_title = (0..30)
            .flat_map(|y| (0..640).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 128)
            .count();
        assert!(
            dark_in_title > 50,
            "caption not rendered ({dark_in_title} dark pixels)"
        );
    }

    #[test]
    fn errors() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.png");
        let empty: [(&str, Vec<(f64, f64)>); 1] = [("a", vec![])];
        assert!(matches!(
            save_loss_curve(&p, &empty, false),
            Err(PlotError::NoData)
        ));
        assert!(matches!(
            save_loss_curve(&p, &[("a", vec![(1.0, -1.0)])], true),
            Err(PlotError::NoData)
        ));
        let opts = PlotOptions {
            width: 10,
            ..Default::default()
        };
        assert!(matches!(
            save_loss_curve_with(&p, &[("a", curve(3, 1.0))], &opts),
            Err(PlotError::BadSize { .. })
        ));
        assert!(!p.exists());
        // Constant series and a single step still plot.
        save_loss_curve(&p, &[("flat", vec![(0.0, 1.0), (0.0, 1.0)])], false).unwrap();
        assert!(p.exists());
    }

    #[test]
    fn number_format() {
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(1500.0), "1500");
        assert_eq!(format_number(0.125), "0.125");
        assert_eq!(format_number(0.5), "0.5");
        assert_eq!(format_number(12.345), "12.3");
        assert_eq!(format_number(2e-5), "2.0e-5");
        assert_eq!(format_number(3e6), "3.0e6");
    }
}
