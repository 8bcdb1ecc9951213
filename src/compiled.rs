//! A model lowered to kernels for one target and one set of dimension sizes, and running it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cubevec_backend_ascend::{Manifest, Project, emit_project, emulate};

use cubevec_ir::interp::{self, RunOptions};
use cubevec_ir::kernel::eval::{EvalError, ProgramMemory, check_value};
use cubevec_ir::kernel::{ParamRole, Program, TensorId};
use cubevec_ir::shape::DimBindings;
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Tensor};
use cubevec_passes::optimize::OptimizeReport;
use cubevec_passes::partition::{Lowerings, Partition, PartitionReport};

use crate::{Error, Model};

/// What executes the kernels of a compiled model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The kernel IR reference executor (`cubevec_ir::kernel::eval`): slow, simple, exact about
    /// every region and stage.
    KernelReference,
    /// The CPU back end: every kernel compiled to native code with cranelift, blocks on threads.
    Cpu,
}

/// A program compiled for the CPU back end with its inputs and constants in memory, ready to
/// run repeatedly (for benchmarks).
pub struct CpuRunner {
    compiled: cubevec_backend_cpu::CompiledProgram,
    memory: Vec<Vec<u8>>,
}

impl CpuRunner {
    /// Runs every launch once.
    pub fn run(&mut self) -> Result<(), Error> {
        let mut views: Vec<&mut [u8]> = self.memory.iter_mut().map(Vec::as_mut_slice).collect();
        cubevec_backend_cpu::run_program(&self.compiled, &mut views)?;
        Ok(())
    }

    /// The outputs, in graph output order.
    pub fn outputs(&self) -> Result<Vec<(String, Tensor)>, Error> {
        let program = self.compiled.program();
        program
            .outputs
            .iter()
            .map(|b| {
                let t = program.tensor(b.tensor);
                let shape = b.shape.iter().map(|&d| d as usize).collect();
                let tensor =
                    Tensor::from_bytes(t.dtype, shape, self.memory[b.tensor.index()].clone())
                        .map_err(|e| Error::Inputs(format!("output `{}`: {e}", b.name)))?;
                Ok((b.name.clone(), tensor))
            })
            .collect()
    }
}

/// The CPU back end running single launches on a [`ProgramMemory`], for launch-by-launch
/// verification: each distinct kernel is compiled once, on first use.
struct CpuLaunches<'a> {
    backend: cubevec_backend_cpu::CpuBackend,
    program: &'a Program,
    kernels: Vec<Option<cubevec_backend_cpu::CompiledKernel>>,
}

impl<'a> CpuLaunches<'a> {
    fn new(compiled: &'a CompiledModel<'_>) -> Result<CpuLaunches<'a>, Error> {
        let program = compiled.program();
        Ok(CpuLaunches {
            backend: cubevec_backend_cpu::CpuBackend::new(compiled.target())?,
            program,
            kernels: program.kernels.iter().map(|_| None).collect(),
        })
    }

    /// Runs launch `index` on copies of its tensors and stores what it wrote back into
    /// `memory` (every parameter gets its own buffer, so aliased arguments need no care).
    fn run(&mut self, memory: &mut ProgramMemory, index: usize) -> Result<(), Error> {
        let launch = &self.program.launches[index];
        let slot = &mut self.kernels[launch.kernel];
        let kernel = match slot {
            Some(kernel) => kernel,
            None => slot.insert(
                self.backend
                    .compile_kernel(&self.program.kernels[launch.kernel])?,
            ),
        };
        let mut buffers = launch
            .args
            .iter()
            .map(|&arg| {
                let len = memory.tensors[arg.index()].len();
                let tensor = memory.tensors[arg.index()].to_tensor(vec![len])?;
                Ok(tensor.bytes().to_vec())
            })
            .collect::<Result<Vec<Vec<u8>>, Error>>()?;
        let mut views: Vec<&mut [u8]> = buffers.iter_mut().map(Vec::as_mut_slice).collect();
        kernel.run(&mut views)?;
        for ((param, &arg), bytes) in kernel.kernel().params.iter().zip(&launch.args).zip(buffers) {
            if param.role == ParamRole::Input {
                continue;
            }
            let t = self.program.tensor(arg);
            let tensor = Tensor::from_bytes(t.dtype, vec![t.elements() as usize], bytes)
                .map_err(|e| Error::Inputs(format!("tensor `{}`: {e}", t.name)))?;
            memory.write(arg, &tensor)?;
        }
        Ok(())
    }
}

/// A model lowered to a [`Program`] of kernels tiled for one target, with its symbolic
/// dimensions bound: made by [`Model::compile`] (kernels only) or [`crate::Compiler::compile`]
/// (with the optimised graph, the emitted AscendC project and phase times).
#[derive(Clone, Debug)]
pub struct CompiledModel<'m> {
    inner: Compilation<'m>,
}

/// Everything a compilation produced.
#[derive(Clone, Debug)]
pub(crate) struct Compilation<'m> {
    /// The model whose graph was lowered (the optimised one when the optimiser ran).
    pub model: Cow<'m, Model>,
    pub target: Target,
    pub bindings: DimBindings,
    pub partition: Partition,
    pub report: PartitionReport,
    pub optimize_report: Option<OptimizeReport>,
    pub project: Option<Project>,
    pub timings: Vec<(&'static str, Duration)>,
}

/// Where a compiled model and the reference interpreter first disagree.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// Launch index.
    pub launch: usize,
    /// Kernel name.
    pub kernel: String,
    /// The graph value whose contents differ.
    pub value: String,
    /// Element index of the largest difference.
    pub index: usize,
    /// The kernel's element.
    pub got: f64,
    /// The interpreter's element.
    pub expected: f64,
}

impl Model {
    /// Lowers the model to kernels for `target` with its symbolic dimensions bound by
    /// `bindings`.
    ///
    /// ```
    /// use cubevec::ir::target::Target;
    /// use cubevec::ir::{DType, Tensor};
    /// use cubevec::{Engine, Model};
    /// use std::collections::HashMap;
    ///
    /// let model = Model::from_ir_text(
    ///     "graph @g {\n  input %x: f32[tokens, 64]\n  %y: f32[tokens, 64] = exp(%x)\n  return %y\n}\n",
    /// )?;
    /// let bindings = [("tokens".to_string(), 16)].into();
    /// let compiled = model.compile(&Target::by_name("ascend910b2")?, &bindings)?;
    /// assert_eq!(compiled.program().launches.len(), 1);
    /// let x = Tensor::from_f32(DType::F32, vec![16, 64], &vec![0.5; 16 * 64]);
    /// let inputs = HashMap::from([("x".to_string(), x)]);
    /// let y = &compiled.run(Engine::KernelReference, &inputs)?[0].1;
    /// assert!((y.to_f32_vec()[0] - 0.5f32.exp()).abs() < 1e-6);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compile(
        &self,
        target: &Target,
        bindings: &DimBindings,
    ) -> Result<CompiledModel<'_>, Error> {
        self.compile_with(target, bindings, &Lowerings::new())
    }

    /// [`Model::compile`] with user lowerings, asked for every node before the built-in ones
    /// (see [`crate::Compiler`] for the whole pipeline).
    pub fn compile_with(
        &self,
        target: &Target,
        bindings: &DimBindings,
        lowerings: &Lowerings,
    ) -> Result<CompiledModel<'_>, Error> {
        let (partition, report) = self.plan_kernels_with(target, bindings, lowerings)?;
        Ok(CompiledModel::new(Compilation {
            model: Cow::Borrowed(self),
            target: target.clone(),
            bindings: bindings.clone(),
            partition,
            report,
            optimize_report: None,
            project: None,
            timings: Vec::new(),
        }))
    }

    /// The sizes of the symbolic dimensions that `inputs` give the graph inputs.
    pub fn bindings_for(&self, inputs: &HashMap<String, Tensor>) -> Result<DimBindings, Error> {
        Ok(interp::bind_inputs(self.graph(), inputs)?)
    }
}

impl<'m> CompiledModel<'m> {
    pub(crate) fn new(inner: Compilation<'m>) -> CompiledModel<'m> {
        CompiledModel { inner }
    }

    /// The model whose graph was lowered: the optimised model when the optimiser ran.
    pub fn model(&self) -> &Model {
        &self.inner.model
    }

    /// The program of launches.
    pub fn program(&self) -> &Program {
        &self.inner.partition.program
    }

    /// The partition: the program and the plan of each launch.
    pub fn partition(&self) -> &Partition {
        &self.inner.partition
    }

    /// The per-launch cost report.
    pub fn report(&self) -> &PartitionReport {
        &self.inner.report
    }

    /// What the optimiser did, when it ran ([`crate::Compiler`] with
    /// [`crate::CompileOptions::optimize`]).
    pub fn optimize_report(&self) -> Option<&OptimizeReport> {
        self.inner.optimize_report.as_ref()
    }

    /// The emitted AscendC project in memory (path → contents), when
    /// [`crate::Compiler`] emitted it.
    pub fn ascend_project(&self) -> Option<&Project> {
        self.inner.project.as_ref()
    }

    /// The AscendC project: the one emitted during compilation, or emitted now.
    pub fn emit_ascend_project(&self) -> Result<Cow<'_, Project>, Error> {
        Ok(match &self.inner.project {
            Some(project) => Cow::Borrowed(project),
            None => Cow::Owned(emit_project(self.program(), self.target())?),
        })
    }

    /// How long each phase of [`crate::Compiler::compile`] took, in order (empty for
    /// [`Model::compile`]).
    pub fn timings(&self) -> &[(&'static str, Duration)] {
        &self.inner.timings
    }

    /// The target the kernels are tiled for.
    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    /// The dimension sizes the kernels are specialised to.
    pub fn bindings(&self) -> &DimBindings {
        &self.inner.bindings
    }

    /// Runs the program on `inputs` (by graph-input name) with `engine`; returns `(output name,
    /// tensor)` pairs in graph output order.
    pub fn run(
        &self,
        engine: Engine,
        inputs: &HashMap<String, Tensor>,
    ) -> Result<Vec<(String, Tensor)>, Error> {
        match engine {
            Engine::KernelReference => {
                let mut memory = self.prepared_memory(inputs)?;
                memory.run(self.program())?;
                self.read_outputs(&memory)
            }
            Engine::Cpu => {
                let mut runner = self.cpu_runner(inputs)?;
                runner.run()?;
                runner.outputs()
            }
        }
    }

    /// Compiles every kernel with the CPU back end and fills a memory with the inputs and
    /// constants.
    pub fn cpu_runner(&self, inputs: &HashMap<String, Tensor>) -> Result<CpuRunner, Error> {
        let backend = cubevec_backend_cpu::CpuBackend::new(self.target())?;
        let compiled = backend.compile_program(self.program())?;
        let memory = self.prepared_bytes(inputs)?;
        Ok(CpuRunner { compiled, memory })
    }

    /// Runs the program launch by launch with the kernel reference executor beside the graph
    /// interpreter ([`CompiledModel::verify_on`] with [`Engine::KernelReference`]).
    pub fn verify(&self, inputs: &HashMap<String, Tensor>) -> Result<Option<Mismatch>, Error> {
        self.verify_on(Engine::KernelReference, inputs)
    }

    /// Runs the program launch by launch on `engine` beside the graph interpreter, each launch
    /// on the interpreter's values of its operands, and returns the first launch whose result
    /// differs from the interpreter's value beyond its dtype's tolerance ([`tolerance`],
    /// relative to the value's largest magnitude), or `None` when every launch agrees.
    ///
    /// ```
    /// use cubevec::ir::target::Target;
    /// use cubevec::ir::{DType, Tensor};
    /// use cubevec::{Engine, Model};
    /// use std::collections::HashMap;
    ///
    /// let model = Model::load("tests/fixtures/ir/swiglu_mlp.cvir")?;
    /// let x = cubevec::ir::npy::read_npy("tests/fixtures/ir/swiglu_mlp.x.npy".as_ref())?;
    /// let inputs = HashMap::from([("x".to_string(), x)]);
    /// let bindings = model.bindings_for(&inputs)?;
    /// let compiled = model.compile(&Target::by_name("ascend910b2")?, &bindings)?;
    /// assert_eq!(compiled.verify_on(Engine::Cpu, &inputs)?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify_on(
        &self,
        engine: Engine,
        inputs: &HashMap<String, Tensor>,
    ) -> Result<Option<Mismatch>, Error> {
        match engine {
            Engine::KernelReference => {
                let program = self.program();
                self.compare_launches(inputs, |memory, index| {
                    Ok(memory.run_launch(program, index)?)
                })
            }
            Engine::Cpu => {
                let mut launcher = CpuLaunches::new(self)?;
                self.compare_launches(inputs, |memory, index| launcher.run(memory, index))
            }
        }
    }

    /// The comparison behind [`CompiledModel::verify_on`]: `run_launch` executes one launch on
    /// the memory.
    fn compare_launches(
        &self,
        inputs: &HashMap<String, Tensor>,
        mut run_launch: impl FnMut(&mut ProgramMemory, usize) -> Result<(), Error>,
    ) -> Result<Option<Mismatch>, Error> {
        let graph = self.model().graph();
        let options = RunOptions {
            weight_dir: self.model().weight_dir().map(Into::into),
        };
        let expected = interp::run_all(graph, inputs, &options)?;
        let program = self.program();
        let mut memory = self.prepared_memory(inputs)?;
        let expected_of = |tensor: &str| {
            graph
                .value_by_name(tensor)
                .and_then(|v| expected[v.index()].as_ref())
        };
        for (index, launch) in program.launches.iter().enumerate() {
            let kernel = &program.kernels[launch.kernel];
            // Each launch reads the interpreter's values, so a difference is this kernel's own,
            // not rounding carried from earlier launches.
            for (param, &arg) in kernel.params.iter().zip(&launch.args) {
                if param.role == ParamRole::Input
                    && let Some(want) = expected_of(&program.tensor(arg).name)
                {
                    memory.write(arg, want)?;
                }
            }
            run_launch(&mut memory, index)?;
            for (param, &arg) in kernel.params.iter().zip(&launch.args) {
                if param.role == ParamRole::Input {
                    continue;
                }
                let tensor = program.tensor(arg);
                let Some(want) = expected_of(&tensor.name) else {
                    continue;
                };
                let got = memory.tensors[arg.index()].to_f64_vec();
                let tolerance = tolerance(tensor.dtype);
                if let Some(m) = first_difference(&got, &want.to_f64_vec(), tolerance) {
                    return Ok(Some(Mismatch {
                        launch: index,
                        kernel: kernel.name.clone(),
                        value: tensor.name.clone(),
                        index: m.0,
                        got: m.1,
                        expected: m.2,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Writes the AscendC project (kernels, host program, `CMakeLists.txt`, `manifest.json`) into
    /// `dir`, which appears whole or not at all. With `with_constants`, the constants' contents
    /// go into `dir/data/` as the raw files the manifest names (the model's weights must be
    /// available: not a shapes-only model).
    pub fn write_ascend_project(&self, dir: &Path, with_constants: bool) -> Result<(), Error> {
        let project = self.emit_ascend_project()?;
        let staging = crate::OutputDir::create(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        project
            .write_into(&staging.path(""))
            .map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        if with_constants {
            let manifest = manifest_of(&project)?;
            let data = staging.path(DATA_DIR);
            self.write_constant_files(&manifest, &data)?;
        }
        staging.commit().map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(())
    }

    /// Emits the AscendC project, builds it with the system C++ compiler against the in-repo
    /// AscendC emulation, runs it on `inputs`, and returns the outputs in graph output order.
    pub fn run_emulated(
        &self,
        inputs: &HashMap<String, Tensor>,
    ) -> Result<Vec<(String, Tensor)>, Error> {
        self.check_bindings(inputs)?;
        let project = self.emit_ascend_project()?;
        let manifest = manifest_of(&project)?;
        let scratch = tempfile::Builder::new()
            .prefix("cubevec-run-")
            .tempdir()
            .map_err(|source| Error::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let io = |path: PathBuf| move |source| Error::Io { path, source };
        let project_dir = scratch.path().join("project");
        let data_dir = scratch.path().join("data");
        let out_dir = scratch.path().join("outputs");
        project
            .write_into(&project_dir)
            .map_err(io(project_dir.clone()))?;
        self.write_constant_files(&manifest, &data_dir)?;
        for file in &manifest.inputs {
            let tensor = inputs
                .get(&file.name)
                .ok_or_else(|| Error::Inputs(format!("input `{}` was not given", file.name)))?;
            let path = data_dir.join(&file.file);
            std::fs::write(&path, tensor.bytes()).map_err(io(path.clone()))?;
        }
        let run = emulate::build_and_run(&project_dir, &data_dir, &out_dir)?;
        manifest
            .outputs
            .iter()
            .zip(&run.outputs)
            .map(|(file, path)| {
                let bytes = std::fs::read(path).map_err(io(path.clone()))?;
                let dtype = self.program().tensor(TensorId(file.tensor as u32)).dtype;
                let shape = file.shape.iter().map(|&d| d as usize).collect();
                let tensor = Tensor::from_bytes(dtype, shape, bytes).map_err(|e| {
                    Error::Inputs(format!("output `{}` of the emulated run: {e}", file.name))
                })?;
                Ok((file.name.clone(), tensor))
            })
            .collect()
    }

    /// Writes every constant as the raw file the manifest names, into `dir`.
    fn write_constant_files(&self, manifest: &Manifest, dir: &Path) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let constants: HashMap<TensorId, Tensor> = self
            .model()
            .constants(&self.inner.partition, &self.inner.bindings)?
            .into_iter()
            .collect();
        for file in &manifest.constants {
            let tensor = constants
                .get(&TensorId(file.tensor as u32))
                .ok_or_else(|| Error::Inputs(format!("constant `{}` has no value", file.name)))?;
            let path = dir.join(&file.file);
            std::fs::write(&path, tensor.bytes()).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Fails when `inputs` give a dimension another size than the program was compiled for.
    fn check_bindings(&self, inputs: &HashMap<String, Tensor>) -> Result<(), Error> {
        self.model().check_input_names(inputs)?;
        let given = self.model().bindings_for(inputs)?;
        for (symbol, size) in &given {
            if let Some(&compiled) = self.inner.bindings.get(symbol)
                && compiled != *size
            {
                return Err(Error::Inputs(format!(
                    "the inputs give `{symbol}` = {size}, but the model was compiled for {compiled}"
                )));
            }
        }
        Ok(())
    }

    /// Memory with the inputs and constants filled in.
    fn prepared_memory(&self, inputs: &HashMap<String, Tensor>) -> Result<ProgramMemory, Error> {
        let mut memory = ProgramMemory::new(self.program());
        self.initial_values(inputs, |id, value| Ok(memory.write(id, value)?))?;
        Ok(memory)
    }

    /// Each program tensor's bytes in its storage layout with the inputs and constants filled
    /// in and zeros elsewhere: the CPU back end's memory, made without the reference executor's
    /// element-per-`u64` [`ProgramMemory`] (four times a bf16 model's weights).
    fn prepared_bytes(&self, inputs: &HashMap<String, Tensor>) -> Result<Vec<Vec<u8>>, Error> {
        let program = self.program();
        let mut memory: Vec<Vec<u8>> = (program.tensors.iter())
            .map(|t| vec![0; t.dtype.storage_bytes(t.elements() as usize)])
            .collect();
        self.initial_values(inputs, |id, value| {
            let t = (program.tensors.get(id.index()))
                .ok_or_else(|| EvalError::Memory(format!("no tensor t{}", id.0)))?;
            check_value(id, t.dtype, t.elements() as usize, value)?;
            memory[id.index()].copy_from_slice(value.bytes());
            Ok(())
        })?;
        Ok(memory)
    }

    /// Checks `inputs` against the bindings and calls `write` with each program input's value
    /// and each constant's, which is all a run starts from.
    fn initial_values(
        &self,
        inputs: &HashMap<String, Tensor>,
        mut write: impl FnMut(TensorId, &Tensor) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.check_bindings(inputs)?;
        for binding in &self.program().inputs {
            let tensor = inputs
                .get(&binding.name)
                .ok_or_else(|| Error::Inputs(format!("input `{}` was not given", binding.name)))?;
            write(binding.tensor, tensor)?;
        }
        for (id, tensor) in self
            .model()
            .constants(&self.inner.partition, &self.inner.bindings)?
        {
            write(id, &tensor)?;
        }
        Ok(())
    }

    fn read_outputs(&self, memory: &ProgramMemory) -> Result<Vec<(String, Tensor)>, Error> {
        self.program()
            .outputs
            .iter()
            .map(|b| Ok((b.name.clone(), memory.read(b)?)))
            .collect()
    }
}

/// The largest difference [`CompiledModel::verify`] accepts for a value of `dtype`, relative to
/// the value's largest magnitude: a few units in the last place of its storage, since kernels
/// and the interpreter may round at different steps (f32 accumulation order, bf16 stores).
pub fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-4,
        DType::F16 => 1e-2,
        DType::BF16 => 3e-2,
        _ if dtype.is_float() => 1e-1,
        _ => 0.0,
    }
}

/// Where `-o DIR` puts the constants' raw files.
pub const DATA_DIR: &str = "data";

fn manifest_of(project: &cubevec_backend_ascend::Project) -> Result<Manifest, Error> {
    project
        .manifest()
        .map_err(|e| Error::Inputs(format!("the emitted manifest does not parse: {e}")))
}

/// The element with the largest difference, if it exceeds `tolerance` times the largest
/// magnitude of `want` (at least 1): `(index, got, want)`.
fn first_difference(got: &[f64], want: &[f64], tolerance: f64) -> Option<(usize, f64, f64)> {
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let mut worst: Option<(usize, f64)> = None;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let d = if g.is_nan() || w.is_nan() {
            if g.is_nan() && w.is_nan() {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (g - w).abs()
        };
        if worst.is_none_or(|(_, wd)| d > wd) {
            worst = Some((i, d));
        }
    }
    let (i, d) = worst?;
    (d > tolerance * scale).then(|| (i, got[i], want[i]))
}

#[cfg(test)]
mod tests {
    use super::first_difference;

    #[test]
    fn differences_are_measured_against_the_largest_magnitude() {
        let want = [100.0, 1.0, -3.0];
        assert_eq!(first_difference(&[100.5, 1.0, -3.0], &want, 1e-2), None);
        assert_eq!(
            first_difference(&[100.0, 3.0, -3.0], &want, 1e-2),
            Some((1, 3.0, 1.0))
        );
        let (index, got, expected) =
            first_difference(&[100.0, 1.0, f64::NAN], &want, 1e-2).expect("a NaN differs");
        assert_eq!((index, expected), (2, -3.0));
        assert!(got.is_nan());
        assert_eq!(first_difference(&[f64::NAN], &[f64::NAN], 1e-2), None);
    }
}
