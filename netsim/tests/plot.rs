//! Plots and sweeps: every SVG parses as XML and shows what a planner needs
//! (a line per series, axis labels, region names), empty reports included.
#![allow(clippy::unwrap_used)] // tests: a failure is the test failing

use std::path::{Path, PathBuf};

use lsim_netsim::plot::{self, PlotError};
use lsim_netsim::report::ReceiverReport;
use lsim_netsim::sweep::{self, SweepPoint, SweepSpec};
use lsim_netsim::{RegionReport, RegionSample, Report, Sample, Scenario, Sim};
use quick_xml::events::Event;
use quick_xml::{Reader, XmlVersion};

/// What a test reads out of an SVG file.
struct Svg {
    /// Every text element's content, entities resolved.
    texts: Vec<String>,
    /// Every polyline as (stroke colour, number of points).
    polylines: Vec<(String, usize)>,
    /// Number of circle elements.
    circles: usize,
}

impl Svg {
    fn has_text(&self, want: &str) -> bool {
        self.texts.iter().any(|t| t == want)
    }

    /// Polylines with a point per sample: series lines, not legend glyphs or
    /// dashes (a dash is two points, three where it turns a corner).
    fn series_lines(&self) -> Vec<&(String, usize)> {
        self.polylines.iter().filter(|(_, n)| *n > 3).collect()
    }

    fn assert_text(&self, want: &str) {
        assert!(self.has_text(want), "no text {want:?} in {:?}", self.texts);
    }
}

/// Parses `path` as XML (nesting and end names checked) and collects texts and lines.
fn parse(path: &Path) -> Svg {
    let xml = std::fs::read_to_string(path).unwrap();
    let mut reader = Reader::from_str(&xml);
    let mut svg = Svg { texts: Vec::new(), polylines: Vec::new(), circles: 0 };
    let (mut depth, mut in_text, mut text, mut root) = (0usize, false, String::new(), None);
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("{}: not XML: {e}", path.display())) {
            Event::Start(e) => {
                let name = e.name().as_ref().to_string();
                root.get_or_insert(name.clone());
                depth += 1;
                if name == "text" {
                    in_text = true;
                    text.clear();
                }
            }
            Event::End(e) => {
                depth -= 1;
                if e.name().as_ref() == "text" {
                    in_text = false;
                    svg.texts.push(std::mem::take(&mut text).trim().to_string());
                }
            }
            Event::Empty(e) => {
                let name = e.name().as_ref().to_string();
                root.get_or_insert(name.clone());
                if name == "circle" {
                    svg.circles += 1;
                }
                if name == "polyline" {
                    let attr = |key: &str| {
                        e.attributes()
                            .map(|a| a.unwrap())
                            .find(|a| a.key.as_ref() == key)
                            .map(|a| a.normalized_value(XmlVersion::Implicit1_0).unwrap().into_owned())
                            .unwrap_or_default()
                    };
                    let points = attr("points").split_whitespace().count();
                    svg.polylines.push((attr("stroke"), points));
                }
            }
            Event::Text(t) if in_text => text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_text => text.push_str(match r.xml10_content().as_ref() {
                "amp" => "&",
                "lt" => "<",
                "gt" => ">",
                "quot" => "\"",
                "apos" => "'",
                other => panic!("unexpected entity {other}"),
            }),
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0, "{}: unclosed elements", path.display());
    assert_eq!(root.as_deref(), Some("svg"), "{}: root is not <svg>", path.display());
    svg
}

/// A fresh empty folder under the target dir for one test's output.
fn out_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plot").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A real run of a one-receiver scenario with everything the plots read
/// blanked: a skeleton, so that these tests keep compiling as `Report` and
/// `ReceiverReport` grow fields the plots do not read.
fn skeleton() -> (Report, ReceiverReport) {
    let tiny = Scenario::parse("name = \"empty\"\nreceivers = 1\n[workload]\nfile_bytes = 1000\n").unwrap();
    let mut r = Sim::new(tiny).unwrap().run();
    let rx = r.per_receiver[0].clone();
    r.delivered_all = false;
    r.receivers = 0;
    r.objects = 0;
    r.object_bytes = 0;
    r.completion_s = 0.0;
    r.goodput_mbps = 0.0;
    r.per_receiver.clear();
    r.regions.clear();
    r.samples.clear();
    (r, rx)
}

/// A report with no regions, samples or receivers, as the sim gave before it sampled.
fn empty_report() -> Report {
    skeleton().0
}

const REGIONS: [&str; 3] = ["hilltop", "valley & river", "harbour"];

/// Three regions, six receivers (one never finishes), a 1 MB file over 10 s sampled every 0.5 s.
fn synthetic_report() -> Report {
    let (empty, rx) = skeleton();
    let object_bytes = 1_000_000u64;
    let receivers = 6u32;
    let samples = (0..=20)
        .map(|i: u32| {
            let t_s = f64::from(i) * 0.5;
            let delivered = (object_bytes * u64::from(receivers)).min(u64::from(i) * 350_000);
            Sample {
                t_s,
                delivered_bytes: delivered,
                regions: (0..REGIONS.len() as u64)
                    .map(|r| RegionSample {
                        repair_packets: u64::from(i) * (5 + 3 * r) + u64::from(i * i) % 7,
                        nack_packets: u64::from(i) * (1 + r),
                        link_bytes_in: u64::from(i) * 40_000 * (r + 1),
                    })
                    .collect(),
            }
        })
        .collect();
    let done = [Some(4.2), Some(5.0), Some(6.5), Some(7.1), Some(8.8), None];
    Report {
        scenario: "synthetic".into(),
        delivered_all: false,
        receivers,
        objects: 1,
        object_bytes,
        completion_s: 10.0,
        goodput_mbps: 0.8,
        per_receiver: done
            .iter()
            .enumerate()
            .map(|(i, d)| ReceiverReport {
                node: i as u32 + 2,
                region: i as u32 % 3,
                completion_s: *d,
                verified: u32::from(d.is_some()),
                ..rx.clone()
            })
            .collect(),
        regions: REGIONS
            .iter()
            .map(|name| RegionReport { name: (*name).into(), receivers: 2, ..RegionReport::default() })
            .collect(),
        samples,
        ..empty
    }
}

fn file<'a>(files: &'a [PathBuf], name: &str) -> &'a Path {
    files.iter().find(|f| f.file_name().is_some_and(|n| n == name)).unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn goodput_plot_has_both_lines_and_plain_labels() {
    let dir = out_dir("goodput");
    let files = plot::render(&synthetic_report(), &dir).unwrap();
    assert_eq!(files.len(), 3);
    let svg = parse(file(&files, "goodput.svg"));
    for t in ["Time (s)", "Goodput per receiver (Mbit/s)", "Over each sampling interval", "Average since start"] {
        svg.assert_text(t);
    }
    let lines = svg.series_lines();
    assert_eq!(lines.len(), 2, "interval and average lines: {:?}", svg.polylines);
    // 21 samples: 20 intervals, and the average from the first non-zero time.
    assert!(lines.iter().all(|(_, n)| *n == 20), "{lines:?}");
}

#[test]
fn completion_plot_stops_short_of_one_for_a_receiver_that_never_finished() {
    let dir = out_dir("completion");
    let files = plot::render(&synthetic_report(), &dir).unwrap();
    let svg = parse(file(&files, "completion.svg"));
    for t in ["Time (s)", "Receivers done (fraction)", "5 of 6 finished; 1 never did", "Everyone done"] {
        svg.assert_text(t);
    }
    // One step line: start, two points per finished receiver, and the end.
    let lines = svg.series_lines();
    assert_eq!(lines.len(), 1, "{:?}", svg.polylines);
    assert_eq!(lines[0].1, 1 + 2 * 5 + 1);
}

#[test]
fn completion_plot_says_all_finished_when_they_did() {
    let mut report = synthetic_report();
    report.per_receiver[5].completion_s = Some(9.5);
    let files = plot::render(&report, &out_dir("completion-all")).unwrap();
    parse(file(&files, "completion.svg")).assert_text("All 6 receivers finished");
}

#[test]
fn repair_plot_names_every_region_and_draws_its_lines() {
    let dir = out_dir("repair");
    let files = plot::render(&synthetic_report(), &dir).unwrap();
    let svg = parse(file(&files, "repair.svg"));
    for t in ["Time (s)", "Packets per second", "Into the region (kbit/s)"] {
        svg.assert_text(t);
    }
    for region in REGIONS {
        for kind in ["repair packets", "NACK packets", "into region"] {
            svg.assert_text(&format!("{region}: {kind}"));
        }
    }
    // Solid lines: repair and link rate per region, each in the region's own colour.
    let lines = svg.series_lines();
    assert_eq!(lines.len(), 2 * REGIONS.len(), "{:?}", svg.polylines);
    let mut colours: Vec<&str> = lines.iter().map(|(c, _)| c.as_str()).collect();
    colours.sort_unstable();
    colours.dedup();
    assert_eq!(colours.len(), REGIONS.len());
    // Dashed NACK lines are many two-point segments in the same colours.
    for c in &colours {
        let dashes = svg.polylines.iter().filter(|(s, n)| s == c && *n <= 3).count();
        assert!(dashes > 10, "NACK dashes in {c}: {dashes}");
    }
}

#[test]
fn an_empty_report_gives_valid_plots_that_say_no_data() {
    let dir = out_dir("empty");
    let files = plot::render(&empty_report(), &dir).unwrap();
    assert_eq!(files.len(), 3);
    for f in &files {
        let svg = parse(f);
        svg.assert_text("No data in this report");
        svg.assert_text("Time (s)");
        assert!(svg.series_lines().is_empty(), "{}: {:?}", f.display(), svg.polylines);
    }
}

#[test]
fn samples_without_region_names_still_plot() {
    let mut report = synthetic_report();
    report.regions.clear();
    let files = plot::render(&report, &out_dir("unnamed")).unwrap();
    parse(file(&files, "repair.svg")).assert_text("region 2: NACK packets");
}

#[test]
fn an_unwritable_folder_is_reported_with_its_path() {
    let dir = out_dir("blocked");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    std::fs::write(&dir, "a file where the folder should be").unwrap();
    let err = plot::render(&synthetic_report(), &dir).unwrap_err();
    assert!(matches!(err, PlotError::Dir { .. }), "{err:?}");
    assert!(err.to_string().contains("blocked"), "{err}");
}

#[test]
fn sweep_lists_parse_and_bad_values_are_named() {
    let spec = SweepSpec::parse(Some("0, 0.05,0.1"), Some("2,4"), None).unwrap();
    assert_eq!(spec, SweepSpec { loss: vec![0.0, 0.05, 0.1], receivers: vec![2, 4], block_symbols: vec![] });
    let err = SweepSpec::parse(Some("0,1.5"), None, None).unwrap_err().to_string();
    assert!(err.contains("--loss") && err.contains("1.5"), "{err}");
    let err = SweepSpec::parse(None, Some("2,x"), None).unwrap_err().to_string();
    assert!(err.contains("--receivers") && err.contains("\"x\""), "{err}");
    assert!(SweepSpec::parse(None, None, Some("0")).is_err());
}

#[test]
fn a_small_sweep_delivers_everywhere_and_draws_its_surface() {
    let base = Scenario::parse(
        r#"
        name = "tiny"
        receivers = 2
        [workload]
        file_bytes = 20000
        "#,
    )
    .unwrap();
    let spec = SweepSpec { loss: vec![0.0, 0.1], receivers: vec![2, 4], block_symbols: vec![16] };
    let points = sweep::run(&base, &spec, 2).unwrap();
    assert_eq!(points.len(), 4);
    for p in &points {
        assert!(p.delivered_all, "{p:?}");
        assert_eq!(p.block_symbols, 16);
        assert!(p.goodput_mbps > 0.0 && p.completion_s > 0.0, "{p:?}");
    }
    let grid: Vec<(f64, u32)> = points.iter().map(|p| (p.loss, p.receivers)).collect();
    assert_eq!(grid, [(0.0, 2), (0.1, 2), (0.0, 4), (0.1, 4)]);
    // The same grid on one thread gives the same numbers.
    let serial = sweep::run(&base, &spec, 1).unwrap();
    assert_eq!(sweep::csv(&serial), sweep::csv(&points));

    let dir = out_dir("sweep");
    let files = plot::render_sweep(&points, &dir).unwrap();
    let svg = parse(file(&files, "sweep-16.svg"));
    let labels = ["Packet loss at each receiver (%)", "Goodput per receiver (Mbit/s)", "Completion time (s)"];
    for t in labels.into_iter().chain(["2 receivers", "4 receivers"]) {
        svg.assert_text(t);
    }
    assert!(!svg.has_text("Not delivered to every receiver"));
    assert_eq!(svg.circles, 8, "a marker per point in each of the two panels");
    let csv = std::fs::read_to_string(file(&files, "sweep.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines[0].starts_with("loss,receivers,block_symbols,"), "{csv}");
    assert!(lines[1..].iter().all(|l| l.ends_with(",true") && l.split(',').count() == 8), "{csv}");
}

#[test]
fn a_sweep_surface_marks_failed_points_and_splits_by_block_size() {
    let point = |loss: f64, receivers: u32, block_symbols: u16, delivered_all: bool| SweepPoint {
        loss,
        receivers,
        block_symbols,
        completion_s: 3.0,
        goodput_mbps: if delivered_all { 5.0 - loss * 10.0 } else { 0.0 },
        repair_per_source: loss * 2.0,
        medium_per_object_byte: 1.1,
        delivered_all,
    };
    let points = [point(0.0, 10, 32, true), point(0.2, 10, 32, false), point(0.0, 10, 64, true)];
    let dir = out_dir("sweep-failed");
    let files = plot::render_sweep(&points, &dir).unwrap();
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["sweep-32.svg", "sweep-64.svg", "sweep.csv"]);
    parse(&files[0]).assert_text("Not delivered to every receiver");
    assert!(!parse(&files[1]).has_text("Not delivered to every receiver"));
    // No points at all: only the CSV header.
    let files = plot::render_sweep(&[], &out_dir("sweep-none")).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap().lines().count(), 1);
}
