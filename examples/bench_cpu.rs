//! Times a model's forward pass on the CPU back end: compiles once (load, optimise, partition
//! for the 910B2 schedule, JIT), then runs the program `--warmup` times untimed and `--iters`
//! times timed, and prints a JSON line with the median and minimum in milliseconds. Used by
//! `scripts/bench-cpu`, which runs onnxruntime on the same ONNX file beside it.
//!
//!     cargo run --release --example bench_cpu -- MODEL --input NAME=FILE.npy [--iters N]
//!         [--warmup N] [--threads N] [--output FIRST_OUTPUT.npy]
//!
//! With `--fma-peak` instead of a model it prints the machine's f32 FMA throughput with 128-bit
//! vectors (the widest the pinned cranelift emits) on `--threads` threads at once: the bound on
//! any JIT-compiled GEMM here.

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

/// Steps of each thread's FMA chains in one measurement of [`fma128_peak_gflops`] (about 20 ms
/// at 3 GHz).
const FMA_STEPS: u64 = 10_000_000;
/// Measurements [`fma128_peak_gflops`] takes the best of (a busy machine slows some).
const FMA_MEASUREMENTS: usize = 7;

/// f32 FMA throughput with 128-bit vectors over `threads` threads running at once, GFLOP/s in
/// all (`None` without FMA).
fn fma128_peak_gflops(threads: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        let threads = threads.max(1);
        let flops = (threads as u64 * FMA_STEPS * FMA_CHAINS as u64 * 8) as f64;
        let measure = || {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    // SAFETY: the CPU has FMA (checked above).
                    s.spawn(|| std::hint::black_box(unsafe { fma128_chains(FMA_STEPS) }));
                }
            });
            flops / start.elapsed().as_secs_f64() / 1e9
        };
        return (0..FMA_MEASUREMENTS).map(|_| measure()).reduce(f64::max);
    }
    None
}

/// Independent accumulators of [`fma128_chains`]: enough to cover the FMA latency on both ports.
const FMA_CHAINS: usize = 12;

/// `steps` rounds of one 4-lane FMA on each of [`FMA_CHAINS`] accumulators; their sum.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn fma128_chains(steps: u64) -> f32 {
    use std::arch::x86_64::{_mm_add_ps, _mm_cvtss_f32, _mm_fmadd_ps, _mm_set1_ps};
    use std::hint::black_box;
    // Opaque starting values, so the chains are neither merged nor folded.
    let (b, c) = (
        _mm_set1_ps(black_box(1.0 - 1e-7)),
        _mm_set1_ps(black_box(1e-7)),
    );
    let mut acc: [_; FMA_CHAINS] = std::array::from_fn(|i| _mm_set1_ps(black_box(i as f32)));
    for _ in 0..steps {
        for a in acc.iter_mut() {
            *a = _mm_fmadd_ps(*a, b, c);
        }
    }
    let sum = acc
        .into_iter()
        .fold(_mm_set1_ps(0.0), |s, a| _mm_add_ps(s, a));
    _mm_cvtss_f32(sum)
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
    let (mut threads, mut fma_peak) = (0usize, false);
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
            "--threads" => threads = value()?.parse()?,
            "--fma-peak" => fma_peak = true,
            "--output" => output = Some(value()?),
            other if model_path.is_none() => model_path = Some(other.to_string()),
            other => bail!("unexpected argument `{other}`"),
        }
    }
    if fma_peak {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        println!(
            "{}",
            serde_json::json!({"threads": threads, "fma128_gflops": fma128_peak_gflops(threads)})
        );
        return Ok(());
    }
    cubevec_backend_cpu::set_max_threads(threads);
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
