//! `compile-model`: read a model, print its IR, or run it.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use cubevec::ir::kernel::{Program, TensorKind};
use cubevec::ir::shape::DimBindings;
use cubevec::ir::target::Target;
use cubevec::ir::{DType, Tensor, dot, npy, text};
use cubevec::{
    CompiledModel, Deployment, DeploymentOptions, Engine, LoadOptions, Model, OptimizeOptions,
    OptimizeReport, OutputDir, PartitionReport, Project, roofline_svg,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// mimalloc: the compiler builds and drops millions of small objects (graph values, e-nodes,
/// kernel statements), where it is about twice as fast as the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Compile Mixture-of-Experts models for Huawei Ascend NPUs, or run them on the CPU.
#[derive(Parser, Debug)]
#[command(name = "compile-model", version, about)]
struct Cli {
    /// The model: an ONNX file, a Hugging Face checkpoint directory, or a textual IR file (`.cvir`).
    model: PathBuf,

    /// Build a Hugging Face model from `config.json` alone (no weights are read; the result can
    /// be compiled but not run).
    #[arg(long)]
    shapes_only: bool,

    /// Compute a Hugging Face model's activations in this dtype instead of its checkpoint's
    /// (`f32` runs a bf16 or FP8 checkpoint at full precision).
    #[arg(long, value_name = "f32|f16|bf16", value_parser = parse_compute_dtype)]
    compute_dtype: Option<DType>,

    /// Print a representation of the model to standard output.
    #[arg(long, value_enum)]
    emit: Option<Emit>,

    /// Run the model on inputs given with `--input` and write its outputs to `--output-dir`.
    #[arg(long)]
    run: bool,

    /// With `--run`: use the reference interpreter (on the graph as read, or optimised with
    /// `--optimize`).
    #[arg(long, requires = "run", conflicts_with_all = ["kernel_reference", "emulate"])]
    reference: bool,

    /// With `--run`: lower to kernels for `--target` and execute them with the kernel IR
    /// reference executor (slow; checks every region and buffer stage).
    #[arg(long, requires = "run", conflicts_with = "emulate")]
    kernel_reference: bool,

    /// With `--run`: emit the AscendC project, build it with the system C++ compiler against
    /// cubevec's CPU emulation of the AscendC API, and run it.
    #[arg(long, requires = "run")]
    emulate: bool,

    /// Write the AscendC project for `--target` (kernels, host program, CMakeLists.txt,
    /// manifest.json and the constants' data files) into DIR, which appears whole or not at all.
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    out: Option<PathBuf>,

    /// Lower to kernels for `--target`, run them launch by launch beside the reference
    /// interpreter on the `--input`s (on the kernel IR reference executor, or on the CPU back
    /// end with `--target cpu`), and report the first launch whose result differs beyond the
    /// dtype's tolerance.
    #[arg(long)]
    verify: bool,

    /// Run the e-graph optimiser before running (`--emit optimized-ir` implies it).
    #[arg(long)]
    optimize: bool,

    /// Write a JSON report of what each phase did to FILE (and, with `--target`, a roofline
    /// chart of the kernels to FILE.svg), or print a summary to standard error.
    #[arg(long, value_name = "FILE.json", num_args = 0..=1, default_missing_value = "-")]
    report: Option<PathBuf>,

    /// A model input as `NAME=FILE.npy` (repeat for each input).
    #[arg(long = "input", value_name = "NAME=FILE.npy")]
    inputs: Vec<String>,

    /// Where `--run` writes one `NAME.npy` per model output (written whole or not at all).
    #[arg(long, value_name = "DIR", requires = "run")]
    output_dir: Option<PathBuf>,

    /// The device to plan kernels for: ascend910b1, ascend910b2, ascend910b3, ascend910b4 or
    /// ascend910c; or `cpu`, which runs the ascend910b2 schedule on the CPU back end (cranelift).
    #[arg(long, value_name = "TARGET")]
    target: Option<String>,

    /// Sequence length the symbolic `seq` dimension is specialised to when planning kernels.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    seq_len: u64,

    /// Batch size the symbolic `batch` dimension is specialised to when planning kernels.
    #[arg(long, value_name = "N", default_value_t = 1)]
    batch: u64,

    /// The size of another symbolic dimension when planning kernels, as `NAME=N` (repeatable).
    #[arg(long = "dim", value_name = "NAME=N")]
    dims: Vec<String>,

    /// Devices of `--target` the model is spread over in the memory estimate (routed experts
    /// sharded, the KV cache of `--batch` sequences of `--seq-len` positions split by
    /// sequence); default: the fewest that hold it
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    devices: Option<u32>,

    /// Context positions per sequence the KV cache holds in the memory estimate (default:
    /// `--seq-len`); decode time is modelled without a cache, as one token at seq=1
    #[arg(long, value_name = "N")]
    context: Option<u64>,

    /// Print nothing but errors.
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,

    /// Print more about each phase (the optimiser's rules, e-graph sizes and op counts).
    #[arg(short, long)]
    verbose: bool,
}

/// What `--emit` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Emit {
    /// The verified graph IR as read, in the textual form (large inline constants elided).
    Ir,
    /// The graph IR after the e-graph optimiser.
    OptimizedIr,
    /// The tiled kernels for `--target` (of the optimised graph with `--optimize`).
    KernelIr,
    /// The graph IR as a Graphviz DOT graph.
    Dot,
    /// The AscendC sources of the kernels for `--target` (`include/` and `kernels/` of the
    /// project), each after a `// ==== PATH ====` line, in path order.
    Ascendc,
}

/// The Ascend target whose tiled schedule `--target cpu` runs.
const CPU_SCHEDULE: &str = "ascend910b2";

/// Inline constants larger than this are elided when IR is printed for reading.
const ELIDE_INLINE_OVER: usize = 1024;

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal compiler error: {info}");
        eprintln!("note: this is a bug in cubevec; please report it with the command you ran");
    }));
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Library errors already quote their source in their message: print a cause only
            // when it adds something.
            let mut shown = err.to_string();
            eprintln!("error: {shown}");
            for cause in err.chain().skip(1) {
                let cause = cause.to_string();
                if !shown.contains(&cause) {
                    eprintln!("  caused by: {cause}");
                }
                shown = cause;
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    if cli.emit.is_none() && !cli.run && !cli.verify && cli.report.is_none() && cli.out.is_none() {
        bail!(
            "nothing to do: give `-o DIR`, `--emit`, `--report`, `--verify` or `--run --reference`"
        );
    }
    if !cli.inputs.is_empty() && !cli.run && !cli.verify {
        bail!("`--input` is for `--run` and `--verify`");
    }
    if (cli.kernel_reference || cli.verify || cli.emulate || cli.out.is_some())
        && cli.target.is_none()
    {
        bail!("kernels need `--target` (for example `--target ascend910b2`)");
    }
    if cli.verify && cli.inputs.is_empty() {
        bail!("`--verify` runs the model: give its inputs with `--input NAME=FILE.npy`");
    }
    if cli.shapes_only && cli.run {
        bail!("`--shapes-only` builds a model without weights, which cannot `--run`");
    }
    let options = LoadOptions {
        shapes_only: cli.shapes_only,
        compute_dtype: cli.compute_dtype,
    };
    let mut phases = Phases::new(cli.quiet);
    let read = phases.time("reading the model", "read", || {
        Model::load_with(&cli.model, &options)
    })?;
    // `cpu` runs the 910B2 schedule on the CPU back end.
    let target = match cli.target.as_deref() {
        Some("cpu") => Some(Target::by_name(CPU_SCHEDULE)?),
        Some(name) => Some(Target::by_name(name)?),
        None => None,
    };
    if let Some(emit @ (Emit::KernelIr | Emit::Ascendc)) = cli.emit
        && target.is_none()
    {
        let name = emit.to_possible_value().map(|v| v.get_name().to_string());
        bail!(
            "`--emit {}` needs `--target` (for example `--target ascend910b2`)",
            name.unwrap_or_default()
        );
    }
    let wants_optimized = cli.optimize || cli.emit == Some(Emit::OptimizedIr);
    let (model, report) = if wants_optimized {
        let (optimized, report) = phases.time("optimising", "optimise", || {
            read.optimize(&OptimizeOptions::default())
        })?;
        if cli.verbose {
            eprint!("{report}");
        }
        (optimized, Some(report))
    } else {
        (read.clone(), None)
    };
    // Runs on kernels specialise the symbolic dimensions to the inputs' sizes.
    let inputs = if cli.run || cli.verify {
        Some(read_inputs(&cli.inputs)?)
    } else {
        None
    };
    let runs_kernels = cli.kernel_reference
        || cli.verify
        || cli.emulate
        || (cli.run && cli.target.as_deref() == Some("cpu"));
    let bindings = match &inputs {
        Some(inputs) if runs_kernels => {
            model.check_input_names(inputs)?;
            model.bindings_for(inputs)?
        }
        _ => dim_bindings(cli)?,
    };
    // The decode plan (the summary's and the report's per-token decode time) needs only the
    // model, so it is planned on a second thread while the prefill program is.
    let wants_decode = !cli.quiet || cli.report.is_some();
    let decode_bindings = decode_bindings(&model, &bindings).filter(|_| wants_decode);
    let (compiled, decode) = match &target {
        Some(target) => std::thread::scope(|scope| {
            let decode = decode_bindings.as_ref().map(|decode_bindings| {
                scope.spawn(|| {
                    let start = Instant::now();
                    let plan = model.plan_kernels(target, decode_bindings);
                    (plan, start.elapsed())
                })
            });
            let compiled = phases.time("planning kernels", "plan kernels", || {
                model.compile(target, &bindings)
            });
            let decode = match decode.map(|thread| thread.join()) {
                Some(Ok((plan, elapsed))) => {
                    phases.done.push(("plan decode", elapsed));
                    Some(plan.map(|(_, report)| report))
                }
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                None => None,
            };
            (Some(compiled), decode)
        }),
        None => (None, None),
    };
    let compiled = compiled.transpose()?;
    let decode = decode.transpose()?;
    if let Some(emit) = cli.emit {
        let printed = match emit {
            Emit::Ascendc => match &compiled {
                Some(compiled) => {
                    let project = phases.time("emitting AscendC", "emit", || {
                        compiled.emit_ascend_project()
                    })?;
                    kernel_sources(&project)
                }
                None => String::new(),
            },
            Emit::KernelIr => compiled
                .as_ref()
                .map(|c| c.program().to_string())
                .unwrap_or_default(),
            Emit::Ir | Emit::OptimizedIr => {
                let shown = if emit == Emit::Ir { &read } else { &model };
                let options = text::PrintOptions {
                    elide_inline_over: Some(ELIDE_INLINE_OVER),
                };
                text::print_with(shown.graph(), &options)
            }
            Emit::Dot => dot::to_dot(model.graph()),
        };
        print_stdout(&printed)?;
    }
    let deployment = compiled.as_ref().map(|c| {
        Deployment::plan(
            c,
            &DeploymentOptions {
                devices: cli.devices,
                context: cli.context,
            },
        )
    });
    if let Some(path) = &cli.report {
        let plan = compiled.as_ref().map(|c| Plan {
            compiled: c,
            decode: decode.as_ref(),
            deployment: deployment.as_ref(),
        });
        write_report(path, report.as_ref(), plan.as_ref())?;
    }
    if let (Some(dir), Some(compiled)) = (&cli.out, &compiled) {
        let with_data = !cli.shapes_only;
        phases.time("writing the project", "write project", || {
            compiled.write_ascend_project(dir, with_data)
        })?;
        if !cli.quiet {
            eprintln!(
                "wrote the AscendC project for {} to {}",
                compiled.target().name,
                dir.display()
            );
        }
    }
    if cli.verify {
        let (Some(compiled), Some(inputs)) = (&compiled, &inputs) else {
            bail!("`--verify` needs `--target` and the model's `--input`s");
        };
        let (engine, engine_name) = if cli.target.as_deref() == Some("cpu") {
            (Engine::Cpu, "the CPU back end")
        } else {
            (Engine::KernelReference, "the kernel reference executor")
        };
        let found = phases.time("verifying launches", "verify", || {
            compiled.verify_on(engine, inputs)
        })?;
        match found {
            Some(m) => bail!(
                "launch {} (kernel `{}`) on {engine_name} differs from the reference interpreter on `{}`: element {} is {} where the interpreter gives {}",
                m.launch,
                m.kernel,
                m.value,
                m.index,
                m.got,
                m.expected
            ),
            None if !cli.quiet => eprintln!(
                "verified {} launches on {engine_name} against the reference interpreter",
                compiled.program().launches.len()
            ),
            None => {}
        }
    }
    if cli.run {
        let on_cpu = cli.target.as_deref() == Some("cpu");
        if !cli.reference && !cli.kernel_reference && !cli.emulate && !on_cpu {
            bail!(
                "`--run` needs an engine: `--reference` runs the reference interpreter, `--target cpu` the CPU back end, `--kernel-reference` the kernels, `--emulate` the emitted AscendC"
            );
        }
        let Some(output_dir) = &cli.output_dir else {
            bail!("`--run` needs `--output-dir DIR` for the outputs");
        };
        let inputs = inputs.unwrap_or_default();
        let outputs = if let Some(compiled) = compiled.as_ref().filter(|_| cli.emulate) {
            phases.time("building and running the emulation", "run", || {
                compiled.run_emulated(&inputs)
            })?
        } else if let Some(compiled) = compiled
            .as_ref()
            .filter(|_| cli.target.as_deref() == Some("cpu"))
        {
            phases.time("running on the CPU back end", "run", || {
                compiled.run(Engine::Cpu, &inputs)
            })?
        } else if let Some(compiled) = compiled.as_ref().filter(|_| cli.kernel_reference) {
            phases.time("running the kernels", "run", || {
                compiled.run(Engine::KernelReference, &inputs)
            })?
        } else {
            phases.time("running the interpreter", "run", || {
                model.run_reference(&inputs)
            })?
        };
        write_outputs(output_dir, &outputs)?;
        if !cli.quiet {
            eprintln!(
                "wrote {} output(s) to {}",
                outputs.len(),
                output_dir.display()
            );
        }
    }
    if !cli.quiet {
        let plan = compiled.as_ref().map(|c| Plan {
            compiled: c,
            decode: decode.as_ref(),
            deployment: deployment.as_ref(),
        });
        eprint!("{}", summary(&model, plan.as_ref(), &phases));
    }
    Ok(())
}

/// Wall time of each phase that ran, in order, and the progress shown while one runs.
struct Phases {
    done: Vec<(&'static str, Duration)>,
    /// Whether to show the running phase: not with `-q`, nor when standard error is not a
    /// terminal.
    draw: bool,
}

impl Phases {
    fn new(quiet: bool) -> Phases {
        Phases {
            done: Vec::new(),
            draw: !quiet && std::io::stderr().is_terminal(),
        }
    }

    /// Runs `phase`, showing a spinner with `doing` while it runs and recording its time as
    /// `name`.
    fn time<T>(&mut self, doing: &'static str, name: &'static str, phase: impl FnOnce() -> T) -> T {
        let bar = if self.draw {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        // The template is a literal that parses; the default style is the fallback.
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(doing);
        bar.enable_steady_tick(Duration::from_millis(100));
        let start = Instant::now();
        let result = phase();
        self.done.push((name, start.elapsed()));
        bar.finish_and_clear();
        result
    }
}

/// Writes `text` to standard output; a reader that stops early (`| head`) is not an error.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("writing to standard output")
        }
        _ => Ok(()),
    }
}

/// The printed AscendC sources of a project: headers and kernels, in path order.
fn kernel_sources(project: &Project) -> String {
    let mut text = String::new();
    for (path, bytes) in &project.files {
        if path.starts_with("include/") || path.starts_with("kernels/") {
            text += &format!("// ==== {path} ====\n{}", String::from_utf8_lossy(bytes));
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
    }
    text
}

/// The dimension that distinguishes prefill from decode.
const SEQ: &str = "seq";

/// The bindings of the same model planned for one token per sequence (`seq` = 1, other sizes
/// as given), when the graph has a `seq` dimension bound to more than 1.
fn decode_bindings(model: &Model, bindings: &DimBindings) -> Option<DimBindings> {
    let has_seq = (model.graph().values.iter())
        .any(|v| v.ty.shape.0.iter().any(|d| d.symbols().contains(&SEQ)));
    if !has_seq || bindings.get(SEQ).is_none_or(|&n| n <= 1) {
        return None;
    }
    let mut decode = bindings.clone();
    decode.insert(SEQ.to_string(), 1);
    Some(decode)
}

/// Bytes of a program's tensors of `kind`.
fn tensor_bytes(program: &Program, kind: TensorKind) -> u64 {
    program
        .tensors
        .iter()
        .filter(|t| t.kind == kind)
        .map(|t| t.bytes())
        .sum()
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// What planning produced, for the summary and the report.
struct Plan<'a, 'm> {
    compiled: &'a CompiledModel<'m>,
    /// The plan of one token per sequence, when the model has a `seq` dimension.
    decode: Option<&'a PartitionReport>,
    deployment: Option<&'a Deployment>,
}

/// Modelled time per token of prefill and decode.
#[derive(serde::Serialize)]
struct PerToken {
    /// Tokens in the prefill plan (`batch × seq`).
    prefill_tokens: u64,
    prefill_us: f64,
    /// Tokens in the decode plan (`batch`, one per sequence).
    decode_tokens: u64,
    decode_us: f64,
}

impl Plan<'_, '_> {
    fn per_token(&self) -> Option<PerToken> {
        let decode = self.decode?;
        let bindings = self.compiled.bindings();
        let batch = bindings.get("batch").copied().unwrap_or(1).max(1);
        let tokens = batch * bindings.get(SEQ).copied().unwrap_or(1);
        Some(PerToken {
            prefill_tokens: tokens,
            prefill_us: self.compiled.report().total_modeled_time_us / tokens as f64,
            decode_tokens: batch,
            decode_us: decode.total_modeled_time_us / batch as f64,
        })
    }
}

/// The closing summary: the model and its weights; the kernels by kind with their modelled
/// time, prefill and decode time per token and device memory; and the time of each phase.
fn summary(model: &Model, plan: Option<&Plan<'_, '_>>, phases: &Phases) -> String {
    let graph = model.graph();
    let weight_bytes: usize = graph
        .initializers
        .iter()
        .filter_map(|init| {
            let ty = &graph.value(init.value).ty;
            let count: u64 = ty.shape.as_known()?.iter().product();
            Some(ty.dtype.storage_bytes(count as usize))
        })
        .sum();
    let mut text = format!(
        "model `{}`: {} nodes, {} weights ({})\n",
        graph.name,
        graph.nodes.len(),
        graph.initializers.len(),
        mib(weight_bytes as f64)
    );
    if let Some(plan) = plan {
        let compiled = plan.compiled;
        let report = compiled.report();
        let bindings = compiled.bindings();
        let mut kinds = std::collections::BTreeMap::new();
        for k in &report.kernels {
            *kinds
                .entry(format!("{:?}", k.kind).to_lowercase())
                .or_insert(0) += 1;
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let mut dims: Vec<String> = bindings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        dims.sort();
        text += &format!(
            "kernels for {}: {} launches of {} distinct kernels ({}); modelled time {:.1} us for {}\n",
            report.target,
            report.kernels.len(),
            report.distinct_kernels,
            kinds.join(", "),
            report.total_modeled_time_us,
            dims.join(", ")
        );
        if let Some(t) = plan.per_token() {
            text += &format!(
                "modelled per token: prefill {:.2} us ({} tokens in {:.1} us), decode {:.2} us ({} at {SEQ}=1 in {:.1} us)\n",
                t.prefill_us,
                t.prefill_tokens,
                report.total_modeled_time_us,
                t.decode_us,
                if t.decode_tokens == 1 {
                    "1 token".to_string()
                } else {
                    format!("{} tokens", t.decode_tokens)
                },
                t.decode_us * t.decode_tokens as f64,
            );
        }
        let program = compiled.program();
        text += &format!(
            "device memory: weights and constants {}, activations {} (arena shared by {} of intermediates)\n",
            mib(tensor_bytes(program, TensorKind::Constant) as f64),
            mib(program.memory.arena_bytes as f64),
            mib(tensor_bytes(program, TensorKind::Intermediate) as f64)
        );
        if let Some(d) = plan.deployment {
            let kv = match d.kv_bytes_per_device {
                Some(bytes) => format!(
                    "KV cache {} ({} of {} sequence(s) x {} positions)",
                    mib(bytes as f64),
                    d.sequences.div_ceil(d.devices as u64),
                    d.sequences,
                    d.context
                ),
                None => "no KV cache described".to_string(),
            };
            text += &format!(
                "per device on {} x {} (experts sharded, attention data-parallel): weights {} (experts {} of {}), {kv}, activations {}; {} of {} HBM{}\n",
                d.devices,
                report.target,
                mib(d.weight_bytes_per_device as f64),
                mib(d.expert_weight_bytes as f64 / d.devices as f64),
                mib(d.expert_weight_bytes as f64),
                mib(d.activation_bytes as f64),
                mib(d.bytes_per_device as f64),
                mib(d.hbm_bytes as f64),
                if d.fits { "" } else { " (does not fit)" }
            );
        }
    }
    let times: Vec<String> = phases
        .done
        .iter()
        .map(|(name, d)| format!("{name} {:.1} ms", d.as_secs_f64() * 1e3))
        .collect();
    text += &format!("time: {}\n", times.join(", "));
    text
}

/// Writes the report as JSON to `path`, or as text to standard error when `path` is `-`.
fn write_report(
    path: &Path,
    optimize: Option<&OptimizeReport>,
    plan: Option<&Plan<'_, '_>>,
) -> anyhow::Result<()> {
    let kernels = plan.map(|p| p.compiled.report());
    if path == Path::new("-") {
        match optimize {
            Some(report) => eprint!("{report}"),
            None => eprintln!("nothing to report: no phase ran beyond reading the model"),
        }
        if let Some(plan) = kernels {
            eprintln!(
                "{} kernels for {}, modelled time {:.1} us",
                plan.kernels.len(),
                plan.target,
                plan.total_modeled_time_us
            );
        }
        return Ok(());
    }
    let json = serde_json::json!({
        "optimize": optimize,
        "target": kernels.map(|k| &k.target),
        "kernels": kernels.map(|k| &k.kernels),
        "total_modeled_time_us": kernels.map(|k| k.total_modeled_time_us),
        "per_token": plan.and_then(Plan::per_token),
        "deployment": plan.and_then(|p| p.deployment),
    });
    let text = serde_json::to_string_pretty(&json)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("writing the report to `{}`", path.display()))?;
    if let Some(plan) = plan {
        let chart = path.with_extension("svg");
        std::fs::write(
            &chart,
            roofline_svg(plan.compiled.report(), plan.compiled.target()),
        )
        .with_context(|| format!("writing the roofline chart to `{}`", chart.display()))?;
    }
    Ok(())
}

/// The sizes of symbolic dimensions: `batch` and `seq` from their flags, others from `--dim`.
fn dim_bindings(cli: &Cli) -> anyhow::Result<DimBindings> {
    let mut bindings = DimBindings::from([
        ("batch".to_string(), cli.batch),
        ("seq".to_string(), cli.seq_len),
    ]);
    for arg in &cli.dims {
        let parsed = arg
            .split_once('=')
            .and_then(|(name, n)| Some((name, n.parse::<u64>().ok()?)));
        let Some((name, size)) = parsed else {
            bail!("`--dim {arg}`: expected NAME=N with N a non-negative integer");
        };
        bindings.insert(name.to_string(), size);
    }
    Ok(bindings)
}

/// Reads `NAME=FILE.npy` arguments.
fn read_inputs(args: &[String]) -> anyhow::Result<HashMap<String, Tensor>> {
    let mut inputs = HashMap::new();
    for arg in args {
        let Some((name, file)) = arg.split_once('=') else {
            bail!("`--input {arg}`: expected NAME=FILE.npy");
        };
        let tensor = npy::read_npy(Path::new(file))
            .with_context(|| format!("reading input `{name}` from `{file}`"))?;
        if inputs.insert(name.to_string(), tensor).is_some() {
            bail!("input `{name}` is given twice");
        }
    }
    Ok(inputs)
}

/// Writes each output as `NAME.npy` into a directory that appears only when complete.
fn write_outputs(dir: &Path, outputs: &[(String, Tensor)]) -> anyhow::Result<()> {
    let staging = OutputDir::create(dir)
        .with_context(|| format!("creating output directory `{}`", dir.display()))?;
    for (name, tensor) in outputs {
        let file = format!("{}.npy", sanitize_file_name(name));
        npy::write_npy(&staging.path(&file), tensor)
            .with_context(|| format!("writing output `{name}`"))?;
    }
    staging
        .commit()
        .with_context(|| format!("moving outputs into `{}`", dir.display()))?;
    Ok(())
}

/// Makes an output name safe as a file name (ONNX names may contain `/` or `:`).
fn sanitize_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Parses `--compute-dtype`: one of the float types activations can be computed in.
fn parse_compute_dtype(text: &str) -> Result<DType, String> {
    match text.parse::<DType>() {
        Ok(d @ (DType::F32 | DType::F16 | DType::BF16)) => Ok(d),
        _ => Err(format!("`{text}` is not f32, f16 or bf16")),
    }
}
