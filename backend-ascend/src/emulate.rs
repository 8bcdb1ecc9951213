//! Building an emitted project with the host C++ compiler against the AscendC CPU emulation
//! and running it.
//!
//! [`build_and_run`] writes the emulation headers into a temporary directory, compiles the
//! project's single emulation unit (`emulate.cpp`: every kernel, its emulated launch and the
//! unchanged host program, which includes the emulated `acl/acl.h`) with
//! `g++ -std=c++17 -O1 -Wall -Werror -pthread`, runs the program on an input and an output
//! directory, and checks that every output file of the manifest was written. Nothing is cached:
//! the build lives in a temporary directory that is removed afterwards.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::emit::{EMULATION_UNIT_PATH, MANIFEST_PATH, Manifest};
use crate::headers::{EmulatorError, write_emulator_headers};

/// Lines of compiler or program output kept in an error.
const EXCERPT_LINES: usize = 40;

/// How to build and run.
#[derive(Clone, Debug)]
pub struct EmulateOptions {
    /// The C++17 compiler (`g++`).
    pub compiler: PathBuf,
    /// Optimisation flag (`-O1`: the emulation is compiled in full, higher levels cost more
    /// compile time than they save).
    pub optimization: String,
    /// Wall-clock limit of the run; the program is killed after it.
    pub timeout: Duration,
}

impl Default for EmulateOptions {
    fn default() -> EmulateOptions {
        EmulateOptions {
            compiler: PathBuf::from("g++"),
            optimization: "-O1".into(),
            timeout: Duration::from_secs(600),
        }
    }
}

/// A successful emulated run.
#[derive(Clone, Debug)]
pub struct EmulationRun {
    /// The output files, in manifest order.
    pub outputs: Vec<PathBuf>,
    /// What the program wrote to standard error (empty for a clean run).
    pub log: String,
    /// Time spent compiling.
    pub compile_time: Duration,
    /// Time spent running.
    pub run_time: Duration,
}

/// Why an emulated run failed.
#[derive(Debug, thiserror::Error)]
pub enum EmulateError {
    /// A file or directory could not be read, written or created.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `manifest.json` is missing or malformed.
    #[error("{path}: not a cubevec manifest: {source}")]
    Manifest {
        /// The manifest path.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The emulation headers could not be written.
    #[error(transparent)]
    Headers(#[from] EmulatorError),
    /// The compiler could not be started.
    #[error("cannot run the C++ compiler `{compiler}`: {source}")]
    CompilerMissing {
        /// The compiler.
        compiler: String,
        /// The spawn error.
        source: std::io::Error,
    },
    /// The project does not compile.
    #[error("`{compiler}` failed on {unit}:\n{excerpt}")]
    Compile {
        /// The compiler.
        compiler: String,
        /// The translation unit.
        unit: PathBuf,
        /// The first lines of the compiler's diagnostics.
        excerpt: String,
    },
    /// A kernel broke a rule the emulation checks (unsynchronised pipes, misaligned or
    /// out-of-bounds accesses, bad parameters, unpaired flags, …).
    #[error("kernel `{kernel}` ({core}) failed an emulator check (exit code {code}): {message}")]
    Check {
        /// The kernel's IR name (or its symbol when the manifest does not list it).
        kernel: String,
        /// The core that failed, e.g. `AIV 3`.
        core: String,
        /// The emulator's exit code (one per class of check).
        code: i32,
        /// The failing call and what is wrong.
        message: String,
    },
    /// The host program failed outside any kernel (a missing or short input file, an ACL
    /// error) or crashed.
    #[error("the host program failed ({status}):\n{excerpt}")]
    Host {
        /// Exit status as text.
        status: String,
        /// The last lines of its standard error.
        excerpt: String,
    },
    /// The program ran longer than the time limit.
    #[error("the program did not finish within {0:?}")]
    Timeout(Duration),
    /// The program exited successfully without writing an output of the manifest.
    #[error("output {file} was not written (expected {bytes} bytes)")]
    MissingOutput {
        /// The file.
        file: PathBuf,
        /// Its expected size.
        bytes: u64,
    },
}

/// Builds the emitted project in `project_dir` for the CPU emulation and runs it, reading inputs
/// and constants from `inputs_dir` and writing outputs into `outputs_dir` (created if needed),
/// with [`EmulateOptions::default`].
pub fn build_and_run(
    project_dir: &Path,
    inputs_dir: &Path,
    outputs_dir: &Path,
) -> Result<EmulationRun, EmulateError> {
    build_and_run_with(
        project_dir,
        inputs_dir,
        outputs_dir,
        &EmulateOptions::default(),
    )
}

/// [`build_and_run`] with explicit options.
pub fn build_and_run_with(
    project_dir: &Path,
    inputs_dir: &Path,
    outputs_dir: &Path,
    options: &EmulateOptions,
) -> Result<EmulationRun, EmulateError> {
    let manifest_path = project_dir.join(MANIFEST_PATH);
    let text = std::fs::read(&manifest_path).map_err(|source| EmulateError::Io {
        path: manifest_path.clone(),
        source,
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|source| EmulateError::Manifest {
            path: manifest_path,
            source,
        })?;
    let build = tempfile::Builder::new()
        .prefix("cubevec-emulate-")
        .tempdir()
        .map_err(|source| EmulateError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let include = build.path().join("include");
    std::fs::create_dir_all(&include).map_err(|source| EmulateError::Io {
        path: include.clone(),
        source,
    })?;
    write_emulator_headers(&include)?;
    let unit = project_dir.join(EMULATION_UNIT_PATH);
    let program = build.path().join("program");
    let started = Instant::now();
    let compile = Command::new(&options.compiler)
        .args([
            "-std=c++17",
            &options.optimization,
            "-Wall",
            "-Werror",
            "-pthread",
            "-I",
        ])
        .arg(&include)
        .arg(&unit)
        .arg("-o")
        .arg(&program)
        .output()
        .map_err(|source| EmulateError::CompilerMissing {
            compiler: options.compiler.display().to_string(),
            source,
        })?;
    let compile_time = started.elapsed();
    if !compile.status.success() {
        return Err(EmulateError::Compile {
            compiler: options.compiler.display().to_string(),
            unit,
            excerpt: head(&String::from_utf8_lossy(&compile.stderr)),
        });
    }
    std::fs::create_dir_all(outputs_dir).map_err(|source| EmulateError::Io {
        path: outputs_dir.to_path_buf(),
        source,
    })?;
    let started = Instant::now();
    let (status, log) = run(
        &program,
        inputs_dir,
        outputs_dir,
        build.path(),
        options.timeout,
    )?;
    let run_time = started.elapsed();
    if !status.success() {
        return Err(failure(&manifest, status, &log));
    }
    let mut outputs = Vec::new();
    for o in &manifest.outputs {
        let file = outputs_dir.join(&o.file);
        let written = std::fs::metadata(&file).map(|m| m.len()).ok();
        if written != Some(o.bytes) {
            return Err(EmulateError::MissingOutput {
                file,
                bytes: o.bytes,
            });
        }
        outputs.push(file);
    }
    Ok(EmulationRun {
        outputs,
        log,
        compile_time,
        run_time,
    })
}

/// Runs `program INPUTS OUTPUTS` with its output in files of `scratch` (no pipe can fill up),
/// killing it after `timeout`; returns its status and standard error.
fn run(
    program: &Path,
    inputs: &Path,
    outputs: &Path,
    scratch: &Path,
    timeout: Duration,
) -> Result<(ExitStatus, String), EmulateError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EmulateError::Io { path, source }
    };
    let out_path = scratch.join("stdout.txt");
    let err_path = scratch.join("stderr.txt");
    let stdout = std::fs::File::create(&out_path).map_err(io(&out_path))?;
    let stderr = std::fs::File::create(&err_path).map_err(io(&err_path))?;
    let mut child = Command::new(program)
        .arg(inputs)
        .arg(outputs)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(io(program))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io(program))? {
            break status;
        }
        if started.elapsed() > timeout {
            // The program is ours and still running; a failed kill means it just exited.
            let _ = child.kill();
            let _ = child.wait();
            return Err(EmulateError::Timeout(timeout));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut log = String::new();
    std::fs::File::open(&err_path)
        .and_then(|mut f| f.read_to_string(&mut log))
        .map_err(io(&err_path))?;
    Ok((status, log))
}

/// The error for a failed run: an emulator check (with the kernel named by the failing core's
/// context line) or a host failure.
fn failure(manifest: &Manifest, status: ExitStatus, log: &str) -> EmulateError {
    let mut context = None;
    for line in log.lines() {
        let Some(rest) = line.strip_prefix("ascendc-emu: ") else {
            continue;
        };
        if let Some(ctx) = rest.strip_prefix("in kernel ") {
            context = Some(ctx.to_string());
            continue;
        }
        let (symbol, core) = context
            .as_deref()
            .and_then(|c| c.split_once(", "))
            .map_or(("?", "?"), |(s, c)| (s, c));
        let kernel = manifest
            .kernels
            .iter()
            .find(|k| k.symbol == symbol)
            .map_or(symbol, |k| k.name.as_str());
        return EmulateError::Check {
            kernel: kernel.to_string(),
            core: core.to_string(),
            code: status.code().unwrap_or(-1),
            message: rest.to_string(),
        };
    }
    EmulateError::Host {
        status: status.to_string(),
        excerpt: tail(log),
    }
}

/// The first lines of `text`.
fn head(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[..lines.len().min(EXCERPT_LINES)].join("\n");
    if lines.len() > EXCERPT_LINES {
        out.push_str(&format!("\n… {} more lines", lines.len() - EXCERPT_LINES));
    }
    out
}

/// The last lines of `text`.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(EXCERPT_LINES)..].join("\n")
}
