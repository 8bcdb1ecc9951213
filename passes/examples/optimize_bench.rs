//! Optimisation time of the full DeepSeek-V3 graph (shapes only) against a single layer of it.
//!
//! ```text
//! cargo run --release -p cubevec-passes --example optimize_bench [CONFIG_DIR]
//! ```
//!
//! `CONFIG_DIR` holds a DeepSeek-V3 `config.json` (default: the repository's fixture). The single
//! layer is the same config with one (MoE) layer. Each graph is optimised fifty times, the two
//! alternating so that a busy spell of the machine slows both alike (each time a copy made before
//! the clock starts, since the optimiser rewrites its graph in place), and the fastest run of each
//! is reported, with the phase breakdown of that run (the time to drop the returned graph is not
//! counted). The allocator is mimalloc, as in `compile-model`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use cubevec_frontend::hf::{self, HfOptions};
use cubevec_ir::Graph;
use cubevec_passes::optimize::{OptimizeOptions, OptimizeReport, optimize};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The fastest run so far: its wall time and report.
type Best = Option<(f64, OptimizeReport)>;

/// Optimises `graph` once, keeping the run in `best` if it is the fastest.
fn time_optimize(graph: &Graph, best: &mut Best) -> Result<()> {
    let input = graph.clone();
    let start = Instant::now();
    let (optimised, report) = optimize(input, &OptimizeOptions::default())?;
    let seconds = start.elapsed().as_secs_f64();
    drop(optimised);
    if best.as_ref().is_none_or(|(b, _)| seconds < *b) {
        *best = Some((seconds, report));
    }
    Ok(())
}

fn load(dir: &Path) -> Result<Graph> {
    let options = HfOptions {
        shapes_only: true,
        compute_dtype: None,
    };
    hf::load(dir, options).with_context(|| format!("reading {}", dir.display()))
}

fn main() -> Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/configs/deepseek-v3")
        });
    let full = load(&dir)?;

    let config_text = std::fs::read_to_string(dir.join("config.json"))?;
    let mut config: serde_json::Value = serde_json::from_str(&config_text)?;
    config["num_hidden_layers"] = 1.into();
    config["first_k_dense_replace"] = 0.into();
    let single_dir = tempfile::tempdir()?;
    std::fs::write(
        single_dir.path().join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    let single = load(single_dir.path())?;

    let (mut full_best, mut single_best): (Best, Best) = (None, None);
    for _ in 0..50 {
        time_optimize(&full, &mut full_best)?;
        time_optimize(&single, &mut single_best)?;
    }
    let (full_s, full_report) = full_best.context("no run")?;
    let (single_s, single_report) = single_best.context("no run")?;
    println!(
        "== single MoE layer: {} nodes, {:.1} ms",
        single.nodes.len(),
        single_s * 1e3
    );
    print!("{single_report}");
    println!(
        "== full model: {} nodes, {:.1} ms",
        full.nodes.len(),
        full_s * 1e3
    );
    print!("{full_report}");
    println!(
        "full / single-layer optimisation time: {:.2}x ({:.1} ms / {:.1} ms)",
        full_s / single_s,
        full_s * 1e3,
        single_s * 1e3
    );
    Ok(())
}
