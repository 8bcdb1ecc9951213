//! Compiling a model for a target in one call, with every artefact kept in memory.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use cubevec_backend_ascend::emit_project;
use cubevec_ir::shape::DimBindings;
use cubevec_ir::target::Target;
use cubevec_passes::optimize::OptimizeOptions;
use cubevec_passes::partition::Lowerings;

use crate::compiled::Compilation;
use crate::{CompiledModel, Error, Model};

/// What [`Compiler::compile`] does besides lowering to kernels.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// Run the e-graph optimiser before planning kernels (default: yes).
    pub optimize: bool,
    /// The optimiser's options; user rewrite rules go into
    /// [`OptimizeOptions::extra_rules`].
    pub optimizer: OptimizeOptions,
    /// Sizes of the graph's symbolic dimensions (`batch`, `seq`, …): kernels are generated for
    /// bound shapes (default: none bound, which suits graphs with static shapes).
    pub bindings: DimBindings,
    /// User lowerings, asked for every node before the built-in ones.
    pub lowerings: Lowerings,
    /// Emit the AscendC project (kernels, host program, build files, manifest) into memory
    /// (default: yes).
    pub emit_ascendc: bool,
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions {
            optimize: true,
            optimizer: OptimizeOptions::default(),
            bindings: DimBindings::new(),
            lowerings: Lowerings::new(),
            emit_ascendc: true,
        }
    }
}

/// Compiles models for one target: optimise, plan tiled kernels, emit AscendC.
///
/// ```
/// use cubevec::ir::target::Target;
/// use cubevec::{CompileOptions, Compiler, Engine, Model};
/// use std::collections::HashMap;
///
/// let model = Model::load("tests/fixtures/models/mixtral")?;
/// let options = CompileOptions {
///     bindings: [("batch".to_string(), 2), ("seq".to_string(), 7)].into(),
///     ..CompileOptions::default()
/// };
/// let compiled = Compiler::new(Target::by_name("ascend910b2")?)
///     .options(options)
///     .compile(&model)?;
/// // The artefacts, in memory: the optimised graph, the kernels and their modelled cost, and
/// // the AscendC sources.
/// assert!(compiled.optimize_report().is_some_and(|r| r.ops_after["moe"] == 2));
/// assert!(compiled.report().total_modeled_time_us > 0.0);
/// let project = compiled.ascend_project().expect("emitted");
/// assert!(project.files.keys().any(|path| path.starts_with("kernels/")));
///
/// // And the program runs: the CPU back end against the reference interpreter.
/// let ids = cubevec::ir::npy::read_npy("tests/fixtures/models/mixtral/input_ids.npy".as_ref())?;
/// let inputs = HashMap::from([("input_ids".to_string(), ids)]);
/// let logits = &compiled.run(Engine::Cpu, &inputs)?[0].1;
/// let want = &model.run_reference(&inputs)?[0].1;
/// let scale = want.to_f32_vec().iter().fold(1f32, |m, v| m.max(v.abs()));
/// for (got, want) in logits.to_f32_vec().iter().zip(want.to_f32_vec()) {
///     assert!((got - want).abs() <= 1e-4 * scale);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Compiler {
    target: Target,
    options: CompileOptions,
}

impl Compiler {
    /// A compiler for `target` with the default [`CompileOptions`].
    pub fn new(target: Target) -> Compiler {
        Compiler {
            target,
            options: CompileOptions::default(),
        }
    }

    /// The compiler with `options`.
    pub fn options(self, options: CompileOptions) -> Compiler {
        Compiler { options, ..self }
    }

    /// The target kernels are tiled for.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Optimises `model` (unless disabled), lowers it to kernels for the target with the
    /// options' dimension sizes and lowerings, and emits the AscendC project (unless
    /// disabled). The result holds every artefact and the time each phase took.
    pub fn compile<'m>(&self, model: &'m Model) -> Result<CompiledModel<'m>, Error> {
        let mut timings: Vec<(&'static str, Duration)> = Vec::new();
        let mut timed = |name, start: Instant| timings.push((name, start.elapsed()));
        let (lowered, optimize_report) = if self.options.optimize {
            let start = Instant::now();
            let (optimized, report) = model.optimize(&self.options.optimizer)?;
            timed("optimise", start);
            (Cow::Owned(optimized), Some(report))
        } else {
            (Cow::Borrowed(model), None)
        };
        let start = Instant::now();
        let (partition, report) = lowered.plan_kernels_with(
            &self.target,
            &self.options.bindings,
            &self.options.lowerings,
        )?;
        timed("plan kernels", start);
        let project = if self.options.emit_ascendc {
            let start = Instant::now();
            let project = emit_project(&partition.program, &self.target)?;
            timed("emit", start);
            Some(project)
        } else {
            None
        };
        Ok(CompiledModel::new(Compilation {
            model: lowered,
            target: self.target.clone(),
            bindings: self.options.bindings.clone(),
            partition,
            report,
            optimize_report,
            project,
            timings,
        }))
    }
}
