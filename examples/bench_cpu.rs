//! Times a model's forward pass on the CPU back end: compiles once (load, optimise, partition
//! for the 910B2 schedule, JIT), then runs the program `--warmup` times untimed and `--iters`
//! times timed, and prints a JSON line with the median and minimum in milliseconds. Used by
//! `scripts/bench-cpu`, which runs onnxruntime on the same ONNX file beside it.
//!
//!     cargo run --release --example bench_cpu -- MODEL --input NAME=FILE.npy [--iters N]
//!         [--warmup N] [--threads N] [--output FIRST_OUTPUT.npy]

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use cubevec::ir::npy;
use cubevec::ir::target::Target;
use cubevec::{Engine, Model, OptimizeOptions};

/// CPU time this process has used (all threads, exited ones included), in milliseconds, where
/// the system reports it (`/proc/self/stat`, clock ticks of 10 ms): on a busy machine it shows
/// the work a forward pass costs, which the wall clock does not.
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut model_path = None;
    let mut inputs = HashMap::new();
    let (mut warmup, mut iters) = (3usize, 10usize);
    let mut output = None;
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
            "--threads" => cubevec_backend_cpu::set_max_threads(value()?.parse()?),
            "--output" => output = Some(value()?),
            other if model_path.is_none() => model_path = Some(other.to_string()),
            other => bail!("unexpected argument `{other}`"),
        }
    }
    let model_path = model_path.context("usage: bench_cpu MODEL --input NAME=FILE.npy")?;
    let phase = Instant::now();
    let model = Model::load(&model_path)?;
    let load_ms = ms(phase);
    let phase = Instant::now();
    let model = model.optimize(&OptimizeOptions::default())?.0;
    let optimize_ms = ms(phase);
    let target = Target::by_name("ascend910b2")?;
    let bindings = model.bindings_for(&inputs)?;
    let phase = Instant::now();
    let compiled = model.compile(&target, &bindings)?;
    let plan_ms = ms(phase);
    let phase = Instant::now();
    let mut runner = compiled.cpu_runner(&inputs)?;
    let jit_ms = ms(phase);
    for _ in 0..warmup {
        runner.run()?;
    }
    let mut times = Vec::with_capacity(iters);
    let cpu_before = cpu_ms();
    for _ in 0..iters.max(1) {
        let start = Instant::now();
        runner.run()?;
        times.push(ms(start));
    }
    let cpu_per_run = cpu_before
        .zip(cpu_ms())
        .map(|(before, after)| (after - before) / times.len() as f64);
    if let Some(file) = output {
        let outputs = runner.outputs()?;
        let (_, first) = outputs.first().context("the model has no output")?;
        npy::write_npy(Path::new(&file), first)?;
    }
    times.sort_by(f64::total_cmp);
    let program = compiled.program();
    let kernels: Vec<_> = program
        .kernels
        .iter()
        .enumerate()
        .map(|(i, k)| {
            serde_json::json!({
                "name": k.name,
                "core": format!("{:?}", k.core),
                "blocks": k.blocks,
                "launches": program.launches.iter().filter(|l| l.kernel == i).count(),
                "tiling": k.tiling,
            })
        })
        .collect();
    let median = times[times.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "model": model_path,
            "engine": format!("{:?}", Engine::Cpu),
            "launches": compiled.program().launches.len(),
            "load_ms": load_ms,
            "optimize_ms": optimize_ms,
            "plan_ms": plan_ms,
            "jit_ms": jit_ms,
            "compile_ms": optimize_ms + plan_ms + jit_ms,
            "kernels": kernels,
            "median_ms": median,
            "min_ms": times[0],
            "cpu_ms_per_run": cpu_per_run,
        })
    );
    Ok(())
}
