//! Times a model's forward pass on the CPU back end: compiles once (load, optimise, partition
//! for the 910B2 schedule, JIT), then runs the program `--warmup` times untimed and `--iters`
//! times timed, and prints a JSON line with the median and minimum in milliseconds. Used by
//! `scripts/bench-cpu`, which runs onnxruntime on the same ONNX file beside it.
//!
//!     cargo run --release --example bench_cpu -- MODEL --input NAME=FILE.npy [--iters N]

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use cubevec::ir::npy;
use cubevec::ir::target::Target;
use cubevec::{Engine, Model, OptimizeOptions};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut model_path = None;
    let mut inputs = HashMap::new();
    let (mut warmup, mut iters) = (3usize, 10usize);
    while let Some(arg) = args.next() {
        let mut value = || args.next().context("a flag is missing its value");
        match arg.as_str() {
            "--input" => {
                let spec = value()?;
                let (name, file) = spec.split_once('=').context("expected NAME=FILE.npy")?;
                inputs.insert(name.to_string(), npy::read_npy(Path::new(file))?);
            }
            "--warmup" => warmup = value()?.parse()?,
            "--iters" => iters = value()?.parse()?,
            "--threads" => {
                // The CPU back end runs blocks on every available core; the thread count is
                // accepted so the driver can pass the same flags to both engines.
                value()?;
            }
            other if model_path.is_none() => model_path = Some(other.to_string()),
            other => bail!("unexpected argument `{other}`"),
        }
    }
    let model_path = model_path.context("usage: bench_cpu MODEL --input NAME=FILE.npy")?;
    let model = Model::load(&model_path)?;
    let model = model.optimize(&OptimizeOptions::default())?.0;
    let target = Target::by_name("ascend910b2")?;
    let bindings = model.bindings_for(&inputs)?;
    let start = Instant::now();
    let compiled = model.compile(&target, &bindings)?;
    let runner = compiled.cpu_runner(&inputs)?;
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut runner = runner;
    for _ in 0..warmup {
        runner.run()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let start = Instant::now();
        runner.run()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "model": model_path,
            "engine": format!("{:?}", Engine::Cpu),
            "launches": compiled.program().launches.len(),
            "compile_ms": compile_ms,
            "median_ms": median,
            "min_ms": times[0],
        })
    );
    Ok(())
}
