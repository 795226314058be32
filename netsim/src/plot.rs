//! Pictures of a run, as SVG files a field planner can open in a browser.
//!
//! Owns the drawing of a `Report` (goodput, completion, repair traffic) and
//! of a sweep's points. It reads reports and never runs anything; where a
//! report has nothing to show (no samples, no receivers) it still writes a
//! valid plot that says "no data", so a script never trips on a missing file.

use std::error::Error;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::element::ComposedElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use thiserror::Error;

use crate::report::{Report, Sample};
use crate::sweep::{self, SweepPoint};

/// Size of one plot in pixels: wide enough for a legend beside the lines.
const SIZE: (u32, u32) = (960, 540);
/// Size of the two-panel plots (repair, sweep).
const TALL: (u32, u32) = (960, 900);

/// Okabe–Ito colours: distinguishable by colour-blind readers and in greyscale print.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

/// A plot that could not be written.
#[derive(Debug, Error)]
pub enum PlotError {
    /// The output folder could not be created.
    #[error("cannot create plot folder {}: {source}", path.display())]
    Dir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A plot file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The drawing library refused the data.
    #[error("cannot draw {file}: {why}")]
    Draw {
        /// The plot's file name.
        file: String,
        /// The library's message.
        why: String,
    },
}

type Drawn = Result<(), Box<dyn Error>>;

/// Writes `goodput.svg`, `completion.svg` and `repair.svg` for `report` into
/// `dir` (created if missing) and returns their paths.
pub fn render(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    create_dir(dir)?;
    let goodput = write_svg(dir, "goodput.svg", SIZE, |area| draw_goodput(report, area))?;
    let completion = write_svg(dir, "completion.svg", SIZE, |area| draw_completion(report, area))?;
    let repair = write_svg(dir, "repair.svg", TALL, |area| draw_repair(report, area))?;
    Ok(vec![goodput, completion, repair])
}

/// Writes one `sweep-<K>.svg` per block size K (goodput and completion time
/// against loss, one line per receiver count) and `sweep.csv` with every
/// point, into `dir` (created if missing); returns the paths, CSV last.
pub fn render_sweep(points: &[SweepPoint], dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    create_dir(dir)?;
    let mut sizes: Vec<u16> = points.iter().map(|p| p.block_symbols).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut written = Vec::new();
    for k in sizes {
        let these: Vec<&SweepPoint> = points.iter().filter(|p| p.block_symbols == k).collect();
        let name = format!("sweep-{k}.svg");
        written.push(write_svg(dir, &name, TALL, |area| draw_sweep(k, &these, area))?);
    }
    let csv = dir.join("sweep.csv");
    fs::write(&csv, sweep::csv(points)).map_err(|source| PlotError::Write { path: csv.clone(), source })?;
    written.push(csv);
    Ok(written)
}

/// `render` for the command line: writes the plots and names them on stderr
/// (stdout stays clean for `--json`).
pub fn plot_cli(report: &Report, dir: &Path) -> Result<(), String> {
    let files = render(report, dir).map_err(|e| e.to_string())?;
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), PlotError> {
    fs::create_dir_all(dir).map_err(|source| PlotError::Dir { path: dir.to_path_buf(), source })
}

/// Draws into a string first so that a failed drawing leaves no half file.
fn write_svg(
    dir: &Path,
    name: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Drawn,
) -> Result<PathBuf, PlotError> {
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let drawn = area.fill(&WHITE).map_err(Box::from).and_then(|()| draw(&area));
        let presented = drawn.and_then(|()| area.present().map_err(Box::from));
        presented.map_err(|e| PlotError::Draw { file: name.to_string(), why: e.to_string() })?;
    }
    let path = dir.join(name);
    fs::write(&path, svg).map_err(|source| PlotError::Write { path: path.clone(), source })?;
    Ok(path)
}

/// Goodput per receiver: object bytes verified per interval between two
/// samples, shared out over the receivers, and the running average since
/// time zero (which ends at the report's goodput when all finish together).
fn draw_goodput(report: &Report, area: &DrawingArea<SVGBackend, Shift>) -> Drawn {
    let receivers = f64::from(report.receivers.max(1));
    let mbps = |bytes: u64, secs: f64| bytes as f64 * 8.0 / secs / 1e6 / receivers;
    let mut interval = Vec::new();
    let mut average = Vec::new();
    for pair in report.samples.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let dt = b.t_s - a.t_s;
        if dt > 0.0 {
            interval.push((b.t_s, mbps(b.delivered_bytes.saturating_sub(a.delivered_bytes), dt)));
        }
    }
    for s in &report.samples {
        if s.t_s > 0.0 {
            average.push((s.t_s, mbps(s.delivered_bytes, s.t_s)));
        }
    }
    let x_max = end_time(report);
    let y_max = interval.iter().chain(&average).map(|p| p.1).fold(0.0, f64::max);
    let title = format!("Goodput per receiver — {}", report.scenario);
    let axes = Axes { x: "Time (s)", x_max, y: "Goodput per receiver (Mbit/s)", y_max: room(y_max, 2) };
    let mut chart = frame(area, &title, 24, &axes)?;
    if interval.is_empty() && average.is_empty() {
        return no_data(area);
    }
    let blue = PALETTE[0];
    chart
        .draw_series(LineSeries::new(interval, blue.stroke_width(2)))?
        .label("Over each sampling interval")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], blue.stroke_width(2)));
    let orange = PALETTE[1];
    chart
        .draw_series(LineSeries::new(average, orange.stroke_width(3)))?
        .label("Average since start")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], orange.stroke_width(3)));
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// The fraction of receivers done by each time: a step up at each receiver's
/// completion. Receivers that never finished keep the curve below 1.0, and
/// the legend says how many they were.
fn draw_completion(report: &Report, area: &DrawingArea<SVGBackend, Shift>) -> Drawn {
    let total = report.per_receiver.len();
    let mut done: Vec<f64> = report.per_receiver.iter().filter_map(|r| r.completion_s).collect();
    done.sort_by(f64::total_cmp);
    let x_max = end_time(report).max(done.last().copied().unwrap_or(0.0) * 1.05);
    let title = format!("When receivers finished — {}", report.scenario);
    let axes = Axes { x: "Time (s)", x_max: nice_max(x_max), y: "Receivers done (fraction)", y_max: 1.05 };
    let mut chart = frame(area, &title, 24, &axes)?;
    if total == 0 {
        return no_data(area);
    }
    let mut steps = vec![(0.0, 0.0)];
    for (i, t) in done.iter().enumerate() {
        steps.push((*t, i as f64 / total as f64));
        steps.push((*t, (i + 1) as f64 / total as f64));
    }
    let reached = done.len() as f64 / total as f64;
    steps.push((x_max, reached));
    let never = total - done.len();
    let label = if never == 0 {
        format!("All {total} receivers finished")
    } else {
        format!("{} of {total} finished; {never} never did", done.len())
    };
    let blue = PALETTE[0];
    chart
        .draw_series(LineSeries::new(steps, blue.stroke_width(3)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], blue.stroke_width(3)));
    let grey = RGBColor(150, 150, 150);
    chart
        .draw_series(DashedLineSeries::new([(0.0, 1.0), (x_max, 1.0)], 6, 4, grey.stroke_width(1)))?
        .label("Everyone done")
        .legend(move |at| dashed_glyph(at, grey.stroke_width(1)));
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

/// Two panels sharing the time axis: repair and NACK packets per second in
/// each region (repair solid, NACK dashed, one colour per region), and the
/// data rate into each region over its link.
fn draw_repair(report: &Report, area: &DrawingArea<SVGBackend, Shift>) -> Drawn {
    let panels = area.split_evenly((2, 1));
    let x_max = end_time(report);
    let names = region_names(report);

    let repair: Vec<Vec<(f64, f64)>> =
        (0..names.len()).map(|r| rates(&report.samples, r, |s| s.repair_packets, 1.0)).collect();
    let nack: Vec<Vec<(f64, f64)>> =
        (0..names.len()).map(|r| rates(&report.samples, r, |s| s.nack_packets, 1.0)).collect();
    let y_max = repair.iter().chain(&nack).flatten().map(|p| p.1).fold(0.0, f64::max);
    let title = format!("Repair traffic by region — {}", report.scenario);
    let axes = Axes { x: "Time (s)", x_max, y: "Packets per second", y_max: room(y_max, 2 * names.len()) };
    let mut top = frame(&panels[0], &title, 24, &axes)?;
    if names.is_empty() || report.samples.len() < 2 {
        no_data(&panels[0])?;
    } else {
        for (r, name) in names.iter().enumerate().filter(|(r, _)| shown(report, *r)) {
            let c = PALETTE[r % PALETTE.len()];
            top.draw_series(LineSeries::new(repair[r].clone(), c.stroke_width(2)))?
                .label(format!("{name}: repair packets"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
            top.draw_series(DashedLineSeries::new(nack[r].clone(), 6, 4, c.stroke_width(2)))?
                .label(format!("{name}: NACK packets"))
                .legend(move |at| dashed_glyph(at, c.stroke_width(2)));
        }
        legend(&mut top, SeriesLabelPosition::UpperRight)?;
    }

    // Link bytes as kbit/s: planners size radio links in bits per second.
    let link: Vec<Vec<(f64, f64)>> =
        (0..names.len()).map(|r| rates(&report.samples, r, |s| s.link_bytes_in, 8.0 / 1e3)).collect();
    let y_max = link.iter().flatten().map(|p| p.1).fold(0.0, f64::max);
    let axes = Axes { x: "Time (s)", x_max, y: "Into the region (kbit/s)", y_max: room(y_max, names.len()) };
    let mut bottom = frame(&panels[1], "Data into each region over its link", 20, &axes)?;
    if names.is_empty() || report.samples.len() < 2 {
        return no_data(&panels[1]);
    }
    for (r, name) in names.iter().enumerate().filter(|(r, _)| shown(report, *r)) {
        let c = PALETTE[r % PALETTE.len()];
        bottom
            .draw_series(LineSeries::new(link[r].clone(), c.stroke_width(2)))?
            .label(format!("{name}: into region"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut bottom, SeriesLabelPosition::UpperRight)
}

/// Two panels for one block size, both against loss with a line per
/// receiver count: goodput, and the time until every receiver had
/// everything. Runs that did not deliver to everyone get a red cross so they
/// are not mistaken for slow successes.
fn draw_sweep(k: u16, points: &[&SweepPoint], area: &DrawingArea<SVGBackend, Shift>) -> Drawn {
    let panels = area.split_evenly((2, 1));
    let title = format!("Goodput against loss, blocks of {k} symbols");
    let goodput = |p: &SweepPoint| p.goodput_mbps;
    let corner = SeriesLabelPosition::UpperRight; // goodput falls with loss
    sweep_panel(points, &panels[0], &title, "Goodput per receiver (Mbit/s)", goodput, corner)?;
    let title = "Time until every receiver had everything";
    let corner = SeriesLabelPosition::UpperLeft; // completion time rises with loss
    sweep_panel(points, &panels[1], title, "Completion time (s)", |p| p.completion_s, corner)
}

fn sweep_panel(
    points: &[&SweepPoint],
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    y: &'static str,
    value: impl Fn(&SweepPoint) -> f64,
    corner: SeriesLabelPosition,
) -> Drawn {
    let value = |p: &SweepPoint| finite(value(p));
    let x_max = points.iter().map(|p| p.loss * 100.0).fold(0.0, f64::max);
    let y_max = points.iter().map(|p| value(p)).fold(0.0, f64::max);
    let axes = Axes { x: "Packet loss at each receiver (%)", x_max: nice_max(x_max), y, y_max: nice_max(y_max) };
    let mut chart = frame(area, title, 22, &axes)?;
    if points.is_empty() {
        return no_data(area);
    }
    let mut counts: Vec<u32> = points.iter().map(|p| p.receivers).collect();
    counts.sort_unstable();
    counts.dedup();
    for (i, n) in counts.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let mut line: Vec<(f64, f64)> =
            points.iter().filter(|p| p.receivers == *n).map(|p| (p.loss * 100.0, value(p))).collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(line.clone(), c.stroke_width(2)))?
            .label(format!("{n} receivers"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(line.into_iter().map(|p| Circle::new(p, 4, c.filled())))?;
    }
    let failed: Vec<(f64, f64)> =
        points.iter().filter(|p| !p.delivered_all).map(|p| (p.loss * 100.0, value(p))).collect();
    if !failed.is_empty() {
        let red = RGBColor(200, 0, 0);
        chart
            .draw_series(failed.into_iter().map(|p| Cross::new(p, 8, red.stroke_width(3))))?
            .label("Not delivered to every receiver")
            .legend(move |(x, y)| Cross::new((x + 10, y), 6, red.stroke_width(3)));
    }
    legend(&mut chart, corner)
}

/// The axes of one chart: labels in plain words, both starting at zero.
struct Axes {
    x: &'static str,
    x_max: f64,
    y: &'static str,
    y_max: f64,
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A titled chart with its grid and axis labels drawn, sized to be read on a laptop screen.
fn frame<'a, 'b>(
    area: &DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    title_size: u32,
    axes: &Axes,
) -> Result<Chart<'a, 'b>, Box<dyn Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", title_size))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..axes.x_max, 0.0..axes.y_max)?;
    chart
        .configure_mesh()
        .x_desc(axes.x)
        .y_desc(axes.y)
        .axis_desc_style(("sans-serif", 17))
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    Ok(chart)
}

/// Draws the legend in `corner`, picked per chart where its lines seldom are.
fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, corner: SeriesLabelPosition) -> Drawn {
    chart
        .configure_series_labels()
        .position(corner)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    Ok(())
}

/// A legend sample for a dashed line: two dashes.
type Px = (i32, i32);

fn dashed_glyph<DB: DrawingBackend>(
    at: Px,
    style: ShapeStyle,
) -> ComposedElement<Px, DB, PathElement<Px>, PathElement<Px>> {
    EmptyElement::at(at) + PathElement::new([(0, 0), (7, 0)], style) + PathElement::new([(13, 0), (20, 0)], style)
}

/// A centred note where the lines would be.
fn no_data(area: &DrawingArea<SVGBackend, Shift>) -> Drawn {
    let (w, h) = area.dim_in_pixel();
    let style =
        ("sans-serif", 28).into_font().color(&RGBColor(120, 120, 120)).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text("No data in this report", &style, (w as i32 / 2, h as i32 / 2))?;
    Ok(())
}

/// Per-second rate of a cumulative region counter between samples, times `scale`.
fn rates(
    samples: &[Sample],
    region: usize,
    count: impl Fn(&crate::report::RegionSample) -> u64,
    scale: f64,
) -> Vec<(f64, f64)> {
    samples
        .windows(2)
        .filter_map(|pair| {
            let (a, b) = (&pair[0], &pair[1]);
            let dt = b.t_s - a.t_s;
            let before = a.regions.get(region).map_or(0, &count);
            let after = b.regions.get(region)?;
            (dt > 0.0).then(|| (b.t_s, count(after).saturating_sub(before) as f64 / dt * scale))
        })
        .collect()
}

/// Whether a region has anything to show: the senders' own cell with no
/// receivers in it (a pure topology of regions) is left out.
fn shown(report: &Report, r: usize) -> bool {
    report.regions.get(r).is_none_or(|g| g.receivers > 0 || g.link_bytes_in > 0 || g.repairer.is_some())
}

/// Region names in report order; samples may carry regions the report does
/// not name (a sim mid-change), which get "region N".
fn region_names(report: &Report) -> Vec<String> {
    let sampled = report.samples.iter().map(|s| s.regions.len()).max().unwrap_or(0);
    (0..report.regions.len().max(sampled))
        .map(|i| report.regions.get(i).map_or_else(|| format!("region {i}"), |r| r.name.clone()))
        .collect()
}

/// The time axis ends at the last sample or the run's end, whichever is later.
fn end_time(report: &Report) -> f64 {
    let last = report.samples.last().map_or(0.0, |s| s.t_s);
    nice_max(last.max(report.completion_s))
}

/// An axis end a little above `v`, and 1 where there is nothing to show, so
/// that a range is never empty or infinite.
fn nice_max(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 { v * 1.05 } else { 1.0 }
}

/// An axis end with room on top for a legend of `entries` lines.
fn room(v: f64, entries: usize) -> f64 {
    nice_max(v) * (1.1 + 0.1 * entries.min(10) as f64)
}

fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}
