//! A whole model as kernels: the GM tensors of a forward pass and the launches that fill them.
//!
//! A [`Program`] is what a back end turns into a runnable model: the host code of the AscendC
//! project allocates every [`GmTensor`] in device memory and issues the [`Launch`]es in order;
//! the CPU back end does the same with host buffers. Tensors are storage only (dtype and element
//! count); a kernel parameter may view one with any shape of the same size, which is how
//! reshapes cost nothing.

use std::fmt;

use super::{Kernel, ParamRole};
use crate::DType;

/// Index of a tensor in [`Program::tensors`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub u32);

impl TensorId {
    /// Position in [`Program::tensors`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where a GM tensor's contents come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TensorKind {
    /// A graph input, filled by the caller.
    Input,
    /// Computed once before the first launch from weights and bound shapes alone (weights,
    /// dequantised FP8 experts, stacked expert matrices, rope tables): the graph value of that
    /// name, evaluated by the caller.
    Constant,
    /// Written by a launch and read by later ones.
    Intermediate,
}

/// A dense row-major tensor in global memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GmTensor {
    /// A name unique in the program: the graph value it holds (or a name derived from the node
    /// that made it, for scratch tensors of multi-kernel lowerings).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape of the graph value it holds (kernels may view it with another shape).
    pub shape: Vec<u64>,
    /// Where its contents come from.
    pub kind: TensorKind,
}

impl GmTensor {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.dtype.storage_bytes(self.elements() as usize) as u64
    }
}

/// One kernel launch: `kernels[kernel]` with `args[i]` bound to its parameter `i`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Index in [`Program::kernels`].
    pub kernel: usize,
    /// One tensor per kernel parameter, in parameter order (a `Workspace` parameter gets a
    /// scratch tensor of its own).
    pub args: Vec<TensorId>,
}

/// A named view of a program tensor that the caller reads or writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Graph input or output name.
    pub name: String,
    /// The tensor behind it.
    pub tensor: TensorId,
    /// The shape the caller sees.
    pub shape: Vec<u64>,
}

/// A model lowered to kernels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Program {
    /// Model name.
    pub name: String,
    /// Every GM tensor.
    pub tensors: Vec<GmTensor>,
    /// Every distinct kernel.
    pub kernels: Vec<Kernel>,
    /// Launches, in execution order.
    pub launches: Vec<Launch>,
    /// Graph inputs, in graph order.
    pub inputs: Vec<Binding>,
    /// Graph outputs, in graph order.
    pub outputs: Vec<Binding>,
    /// Where the intermediate tensors live (empty: each in an allocation of its own).
    pub memory: MemoryPlan,
}

/// The placement of intermediate tensors in one shared device allocation, the arena: tensors
/// whose lifetimes (from the first launch that touches them to the last, or to the end for
/// graph outputs) do not overlap may share bytes. Inputs and constants are always allocated
/// on their own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Size of the arena in bytes.
    pub arena_bytes: u64,
    /// Byte offset in the arena of each tensor, by [`TensorId`]; `None` for a tensor allocated
    /// on its own. Empty when there is no plan.
    pub offsets: Vec<Option<u64>>,
}

impl MemoryPlan {
    /// The arena offset of `id`, if it lives there.
    pub fn offset(&self, id: TensorId) -> Option<u64> {
        self.offsets.get(id.index()).copied().flatten()
    }
}

/// An inconsistency between a program's launches, kernels and tensors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// A launch names a kernel or tensor that does not exist.
    #[error("launch {launch}: {what} does not exist")]
    Dangling {
        /// Launch index.
        launch: usize,
        /// What is missing.
        what: String,
    },
    /// A launch's arguments do not fit its kernel: wrong count, a dtype or size different from
    /// the parameter's, a write to an input or constant, or a read of a tensor nothing wrote.
    #[error("launch {launch} of `{kernel}`: {message}")]
    Launch {
        /// Launch index.
        launch: usize,
        /// Kernel name.
        kernel: String,
        /// What is wrong.
        message: String,
    },
    /// An output is never written.
    #[error("output `{0}` is never written")]
    UnwrittenOutput(String),
    /// The memory plan places a tensor outside the arena, or two tensors that are alive at
    /// the same time on overlapping bytes.
    #[error("memory plan: {0}")]
    Memory(String),
}

impl Program {
    /// The tensor with that id.
    pub fn tensor(&self, id: TensorId) -> &GmTensor {
        &self.tensors[id.index()]
    }

    /// Checks that every launch binds existing tensors of the right dtype and size to its
    /// kernel's parameters, never writes inputs or constants, reads only tensors written
    /// earlier (or inputs and constants), and that every output is written.
    pub fn check(&self) -> Result<(), ProgramError> {
        let mut written: Vec<bool> = self
            .tensors
            .iter()
            .map(|t| t.kind != TensorKind::Intermediate)
            .collect();
        for (index, launch) in self.launches.iter().enumerate() {
            let kernel = self
                .kernels
                .get(launch.kernel)
                .ok_or_else(|| ProgramError::Dangling {
                    launch: index,
                    what: format!("kernel {}", launch.kernel),
                })?;
            let fail = |message: String| ProgramError::Launch {
                launch: index,
                kernel: kernel.name.clone(),
                message,
            };
            if launch.args.len() != kernel.params.len() {
                return Err(fail(format!(
                    "{} arguments for {} parameters",
                    launch.args.len(),
                    kernel.params.len()
                )));
            }
            let mut writes = Vec::new();
            for (param, &arg) in kernel.params.iter().zip(&launch.args) {
                let tensor =
                    self.tensors
                        .get(arg.index())
                        .ok_or_else(|| ProgramError::Dangling {
                            launch: index,
                            what: format!("tensor {}", arg.0),
                        })?;
                let elements: u64 = param.shape.iter().product();
                if tensor.dtype != param.dtype || tensor.elements() != elements {
                    return Err(fail(format!(
                        "parameter `{}` is {} x {elements}, tensor `{}` is {} x {}",
                        param.name,
                        param.dtype,
                        tensor.name,
                        tensor.dtype,
                        tensor.elements()
                    )));
                }
                match param.role {
                    ParamRole::Input => {
                        if !written[arg.index()] {
                            return Err(fail(format!(
                                "reads `{}` before anything writes it",
                                tensor.name
                            )));
                        }
                    }
                    ParamRole::Output | ParamRole::OutputZeroed | ParamRole::Workspace => {
                        if tensor.kind != TensorKind::Intermediate {
                            return Err(fail(format!(
                                "writes `{}`, which is a model input or constant",
                                tensor.name
                            )));
                        }
                        writes.push(arg.index());
                    }
                }
            }
            for w in writes {
                written[w] = true;
            }
        }
        for out in &self.outputs {
            if !written.get(out.tensor.index()).copied().unwrap_or(false) {
                return Err(ProgramError::UnwrittenOutput(out.name.clone()));
            }
        }
        self.check_memory()
    }

    /// For every tensor, the first and last launch that touches it (the last is
    /// `launches.len()` for graph outputs, which the caller reads after the last launch);
    /// `None` for tensors no launch touches.
    pub fn lifetimes(&self) -> Vec<Option<(usize, usize)>> {
        let mut life: Vec<Option<(usize, usize)>> = vec![None; self.tensors.len()];
        for (index, launch) in self.launches.iter().enumerate() {
            for arg in &launch.args {
                if let Some(slot) = life.get_mut(arg.index()) {
                    *slot = Some(slot.map_or((index, index), |(first, _)| (first, index)));
                }
            }
        }
        for out in &self.outputs {
            if let Some(slot) = life.get_mut(out.tensor.index()) {
                let first = slot.map_or(self.launches.len(), |(first, _)| first);
                *slot = Some((first, self.launches.len()));
            }
        }
        life
    }

    /// Checks the memory plan: only intermediates in the arena, every one inside it, and no two
    /// with overlapping lifetimes on overlapping bytes.
    fn check_memory(&self) -> Result<(), ProgramError> {
        let plan = &self.memory;
        if plan.offsets.is_empty() {
            return Ok(());
        }
        if plan.offsets.len() != self.tensors.len() {
            return Err(ProgramError::Memory(format!(
                "{} offsets for {} tensors",
                plan.offsets.len(),
                self.tensors.len()
            )));
        }
        let life = self.lifetimes();
        let mut placed = Vec::new();
        for (i, (tensor, offset)) in self.tensors.iter().zip(&plan.offsets).enumerate() {
            let Some(offset) = *offset else { continue };
            if tensor.kind != TensorKind::Intermediate {
                return Err(ProgramError::Memory(format!(
                    "`{}` is a model input or constant but is placed in the arena",
                    tensor.name
                )));
            }
            if offset + tensor.bytes() > plan.arena_bytes {
                return Err(ProgramError::Memory(format!(
                    "`{}` ({} bytes at {offset}) ends past the {}-byte arena",
                    tensor.name,
                    tensor.bytes(),
                    plan.arena_bytes
                )));
            }
            if let Some(lifetime) = life[i] {
                placed.push((offset, offset + tensor.bytes(), lifetime, i));
            }
        }
        // Sweep in offset order: each tensor is compared with those starting before its end.
        placed.sort_unstable();
        for (n, &(start, end, (first, last), i)) in placed.iter().enumerate() {
            for &(other_start, _, (other_first, other_last), j) in &placed[n + 1..] {
                if other_start >= end {
                    break;
                }
                if other_start < end && first <= other_last && other_first <= last {
                    return Err(ProgramError::Memory(format!(
                        "`{}` and `{}` are alive together (launches {first}..={last} and \
                         {other_first}..={other_last}) but share bytes from {}",
                        self.tensors[i].name,
                        self.tensors[j].name,
                        start.max(other_start)
                    )));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Program {
    /// The launch sequence, one line per launch, then every kernel in full.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "program @{} {{", self.name)?;
        for (i, t) in self.tensors.iter().enumerate() {
            let kind = match t.kind {
                TensorKind::Input => "input",
                TensorKind::Constant => "const",
                TensorKind::Intermediate => "temp",
            };
            writeln!(f, "  t{i} {kind} {}{:?} \"{}\"", t.dtype, t.shape, t.name)?;
        }
        for launch in &self.launches {
            let args: Vec<String> = launch.args.iter().map(|a| format!("t{}", a.0)).collect();
            let name = self
                .kernels
                .get(launch.kernel)
                .map_or("?", |k| k.name.as_str());
            writeln!(f, "  launch {name}({})", args.join(", "))?;
        }
        for out in &self.outputs {
            writeln!(
                f,
                "  output \"{}\" = t{} {:?}",
                out.name, out.tensor.0, out.shape
            )?;
        }
        writeln!(f, "}}")?;
        for kernel in &self.kernels {
            writeln!(f)?;
            write!(f, "{kernel}")?;
        }
        Ok(())
    }
}
