//! The roofline chart of a kernel plan as SVG: each kernel's modelled FLOP/s against its
//! arithmetic intensity, under the target's Cube compute roof and HBM bandwidth roof.

use std::fmt::Write;

use cubevec_ir::DType;
use cubevec_ir::target::Target;
use cubevec_passes::partition::PartitionReport;

/// Chart size and margins, in SVG user units.
const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 560.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 70.0;

/// Log-log axes mapping (FLOP/byte, FLOP/s) to chart coordinates.
struct Axes {
    x_decades: (f64, f64),
    y_decades: (f64, f64),
}

impl Axes {
    fn x(&self, intensity: f64) -> f64 {
        let (lo, hi) = self.x_decades;
        LEFT + (intensity.log10() - lo) / (hi - lo) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, flops: f64) -> f64 {
        let (lo, hi) = self.y_decades;
        HEIGHT - BOTTOM - (flops.log10() - lo) / (hi - lo) * (HEIGHT - TOP - BOTTOM)
    }
}

/// Renders the chart. Kernels without FLOPs (pure data movement) are left out: they have no
/// point on a roofline.
pub fn roofline_svg(plan: &PartitionReport, target: &Target) -> String {
    let peak = target.peak_cube_flops(DType::BF16).unwrap_or(1e12);
    let bandwidth = target.memory.hbm_gbps * 1e9;
    let points: Vec<(&str, f64, f64)> = plan
        .kernels
        .iter()
        .filter(|k| k.flops > 0.0 && k.bytes > 0.0 && k.modeled_time_us > 0.0)
        .map(|k| {
            let intensity = k.flops / k.bytes;
            let achieved = k.flops / (k.modeled_time_us * 1e-6);
            (k.name.as_str(), intensity, achieved)
        })
        .collect();
    let ridge = peak / bandwidth;
    let min_x = points.iter().map(|p| p.1).fold(ridge, f64::min);
    let max_x = points.iter().map(|p| p.1).fold(ridge, f64::max);
    let min_y = points.iter().map(|p| p.2).fold(bandwidth * min_x, f64::min);
    let axes = Axes {
        x_decades: (min_x.log10().floor() - 1.0, max_x.log10().ceil() + 1.0),
        y_decades: (min_y.log10().floor(), peak.log10().ceil() + 0.5),
    };

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="16">Roofline of {} kernels on {} (modelled)</text>"#,
        WIDTH / 2.0,
        points.len(),
        escape(&plan.target)
    );
    grid(&mut svg, &axes);
    // The roofs: bandwidth × intensity up to the ridge, then the compute peak.
    let (x0, x1) = (10f64.powf(axes.x_decades.0), 10f64.powf(axes.x_decades.1));
    let start = (x0, (bandwidth * x0).max(10f64.powf(axes.y_decades.0)));
    let _ = writeln!(
        svg,
        r##"<polyline fill="none" stroke="#c0392b" stroke-width="2" points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}"/>"##,
        axes.x(start.0),
        axes.y(start.1),
        axes.x(ridge),
        axes.y(peak),
        axes.x(x1),
        axes.y(peak)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" fill="#c0392b">Cube bf16 peak {:.0} TFLOP/s</text>"##,
        axes.x(ridge) + 8.0,
        axes.y(peak) - 8.0,
        peak / 1e12
    );
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" fill="#c0392b">HBM {:.0} GB/s</text>"##,
        axes.x(start.0) + 8.0,
        axes.y(start.1) - 8.0,
        bandwidth / 1e9
    );
    for (name, intensity, achieved) in &points {
        let (cx, cy) = (axes.x(*intensity), axes.y(*achieved));
        let _ = writeln!(
            svg,
            r##"<circle cx="{cx:.1}" cy="{cy:.1}" r="4" fill="#2c7fb8"><title>{}: {:.2} FLOP/byte, {:.2} TFLOP/s</title></circle>"##,
            escape(name),
            intensity,
            achieved / 1e12
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
            cx + 6.0,
            cy + 4.0,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Axis lines, decade ticks and labels.
fn grid(svg: &mut String, axes: &Axes) {
    let (bottom, right) = (HEIGHT - BOTTOM, WIDTH - RIGHT);
    for d in axes.x_decades.0 as i32..=axes.x_decades.1 as i32 {
        let x = axes.x(10f64.powi(d));
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom}" stroke="#e5e5e5"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">1e{d}</text>"##,
            bottom + 18.0
        );
    }
    for d in axes.y_decades.0 as i32..=axes.y_decades.1.floor() as i32 {
        let y = axes.y(10f64.powi(d));
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">1e{d}</text>"##,
            LEFT - 8.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{:.1}" height="{:.1}" fill="none" stroke="#333"/>"##,
        right - LEFT,
        bottom - TOP
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">arithmetic intensity (FLOP/byte)</text>"#,
        (LEFT + right) / 2.0,
        HEIGHT - 20.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(24 {:.1}) rotate(-90)" text-anchor="middle">modelled FLOP/s</text>"#,
        (TOP + bottom) / 2.0
    );
}

/// Escapes text for SVG content and attributes.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
