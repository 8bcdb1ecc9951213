//! `manifest.json`: what an emitted project contains and how to run it — kernels, GM tensors,
//! the launch sequence, the input, constant and output files, workspace sizes and the target.
//! The host program is generated from the same [`Manifest`], so the two always agree.

use serde::{Deserialize, Serialize};

use cubevec_ir::kernel::{ParamRole, Program, TensorId, TensorKind};
use cubevec_ir::target::Target;

use super::names::FileStems;
use super::plan::KernelPlan;
use super::types::kernel_type;

/// Version of the manifest layout.
pub const MANIFEST_FORMAT: u32 = 1;

/// The description of an emitted project, serialised as `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version ([`MANIFEST_FORMAT`]).
    pub format: u32,
    /// The program (model) name, as given.
    pub program: String,
    /// The NPU the project is built for.
    pub target: ManifestTarget,
    /// Every distinct kernel, in program order.
    pub kernels: Vec<ManifestKernel>,
    /// Every GM tensor, in program order (launch arguments index this list).
    pub tensors: Vec<ManifestTensor>,
    /// The launches in execution order.
    pub launches: Vec<ManifestLaunch>,
    /// Files the host reads from its input directory for model inputs.
    pub inputs: Vec<ManifestFile>,
    /// Files the host reads from its input directory for constants (weights and tables).
    pub constants: Vec<ManifestFile>,
    /// Files the host writes to its output directory.
    pub outputs: Vec<ManifestFile>,
    /// Bytes of the system workspace passed as every kernel's `workspace` argument (cubevec
    /// kernels use none; the host passes a null pointer).
    pub system_workspace_bytes: u64,
    /// Bytes of the one allocation intermediate tensors share (see [`ManifestTensor::arena_offset`]).
    pub arena_bytes: u64,
    /// Bytes of device memory the host allocates for tensors: the arena plus every tensor
    /// allocated on its own.
    pub device_bytes: u64,
}

/// The target of a project.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestTarget {
    /// cubevec target name (`ascend910b2`).
    pub name: String,
    /// The CANN `SOC_VERSION` the CMake project passes to the kernel compiler.
    pub soc_version: String,
    /// `__NPU_ARCH__` of the cores.
    pub npu_arch: u32,
}

/// One kernel and its files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestKernel {
    /// The kernel IR name, as given.
    pub name: String,
    /// The C entry point.
    pub symbol: String,
    /// The AscendC source.
    pub source: String,
    /// The device launch file (kernel source plus `<<<>>>` launch).
    pub device_launch: String,
    /// The emulated launch file.
    pub emulated_launch: String,
    /// `aic`, `aiv` or `mix1:2`.
    pub core: String,
    /// The `KERNEL_TASK_TYPE_DEFAULT` value.
    pub kernel_type: String,
    /// `numBlocks` of its launches.
    pub blocks: u32,
    /// GM parameters in argument order.
    pub params: Vec<ManifestParam>,
    /// The IR's descriptive tiling facts.
    pub tiling: std::collections::BTreeMap<String, u64>,
}

/// One GM parameter of a kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestParam {
    /// Name, as given.
    pub name: String,
    /// Element type name (`bf16`).
    pub dtype: String,
    /// Shape the kernel views the tensor with.
    pub shape: Vec<u64>,
    /// `input`, `output`, `output_zeroed` or `workspace`.
    pub role: String,
}

/// One GM tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestTensor {
    /// Name, as given.
    pub name: String,
    /// Element type name.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// `input`, `constant` or `intermediate`.
    pub kind: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Byte offset in the arena, for intermediates that live there; `null` for a tensor
    /// allocated on its own.
    pub arena_offset: Option<u64>,
}

/// One launch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestLaunch {
    /// Index in [`Manifest::kernels`].
    pub kernel: usize,
    /// The kernel's entry point.
    pub symbol: String,
    /// Tensor index per parameter.
    pub args: Vec<usize>,
    /// Tensors filled with zeros right before the launch (`output_zeroed` parameters).
    pub zero_filled: Vec<usize>,
    /// The tensors bound to `workspace` parameters and their sizes.
    pub workspaces: Vec<ManifestWorkspace>,
}

/// A workspace tensor of a launch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestWorkspace {
    /// The parameter index.
    pub param: usize,
    /// The tensor index.
    pub tensor: usize,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A file the host reads or writes: raw little-endian elements, row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// The graph input, constant or output name, as given.
    pub name: String,
    /// The tensor index.
    pub tensor: usize,
    /// File name inside the input or output directory (sanitised, unique ignoring case).
    pub file: String,
    /// Element type name.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// Exact size in bytes.
    pub bytes: u64,
}

fn role_name(role: ParamRole) -> &'static str {
    match role {
        ParamRole::Input => "input",
        ParamRole::Output => "output",
        ParamRole::OutputZeroed => "output_zeroed",
        ParamRole::Workspace => "workspace",
    }
}

fn kind_name(kind: &TensorKind) -> &'static str {
    match kind {
        TensorKind::Input => "input",
        TensorKind::Constant => "constant",
        TensorKind::Intermediate => "intermediate",
    }
}

/// The manifest of `program` with the names of `plans`.
pub(crate) fn build_manifest(
    program: &Program,
    target: &Target,
    soc_version: &str,
    plans: &[KernelPlan],
) -> Manifest {
    let kernels = program
        .kernels
        .iter()
        .zip(plans)
        .map(|(k, plan)| ManifestKernel {
            name: k.name.clone(),
            symbol: plan.symbol.clone(),
            source: format!("kernels/{}.cpp", plan.stem),
            device_launch: format!("launch/{}.cpp", plan.stem),
            emulated_launch: format!("emulate/{}.cpp", plan.stem),
            core: k.core.name().to_string(),
            kernel_type: kernel_type(k.core).to_string(),
            blocks: k.blocks,
            params: k
                .params
                .iter()
                .map(|p| ManifestParam {
                    name: p.name.clone(),
                    dtype: p.dtype.name().to_string(),
                    shape: p.shape.clone(),
                    role: role_name(p.role).to_string(),
                })
                .collect(),
            tiling: k.tiling.clone(),
        })
        .collect();
    let tensors = program
        .tensors
        .iter()
        .enumerate()
        .map(|(i, t)| ManifestTensor {
            name: t.name.clone(),
            dtype: t.dtype.name().to_string(),
            shape: t.shape.clone(),
            kind: kind_name(&t.kind).to_string(),
            bytes: t.bytes(),
            arena_offset: program.memory.offset(TensorId(i as u32)),
        })
        .collect();
    let launches = program
        .launches
        .iter()
        .map(|l| {
            let params = &program.kernels[l.kernel].params;
            let with_role = |role: ParamRole| {
                params
                    .iter()
                    .zip(&l.args)
                    .enumerate()
                    .filter(move |(_, (p, _))| p.role == role)
            };
            ManifestLaunch {
                kernel: l.kernel,
                symbol: plans[l.kernel].symbol.clone(),
                args: l.args.iter().map(|a| a.index()).collect(),
                zero_filled: with_role(ParamRole::OutputZeroed)
                    .map(|(_, (_, t))| t.index())
                    .collect(),
                workspaces: with_role(ParamRole::Workspace)
                    .map(|(i, (_, t))| ManifestWorkspace {
                        param: i,
                        tensor: t.index(),
                        bytes: program.tensor(*t).bytes(),
                    })
                    .collect(),
            }
        })
        .collect();
    let mut input_files = FileStems::new();
    let file = |stems: &mut FileStems, name: &str, tensor: usize| {
        let t = &program.tensors[tensor];
        ManifestFile {
            name: name.to_string(),
            tensor,
            file: format!("{}.bin", stems.fresh(name)),
            dtype: t.dtype.name().to_string(),
            shape: t.shape.clone(),
            bytes: t.bytes(),
        }
    };
    let mut inputs = Vec::new();
    let mut constants = Vec::new();
    for (i, t) in program.tensors.iter().enumerate() {
        match t.kind {
            TensorKind::Input => {
                let name = program
                    .inputs
                    .iter()
                    .find(|b| b.tensor.index() == i)
                    .map_or(t.name.as_str(), |b| b.name.as_str());
                inputs.push(file(&mut input_files, name, i));
            }
            TensorKind::Constant => constants.push(file(&mut input_files, &t.name, i)),
            TensorKind::Intermediate => {}
        }
    }
    let mut output_files = FileStems::new();
    let outputs = program
        .outputs
        .iter()
        .map(|b| {
            let mut f = file(&mut output_files, &b.name, b.tensor.index());
            f.shape = b.shape.clone();
            f
        })
        .collect();
    Manifest {
        format: MANIFEST_FORMAT,
        program: program.name.clone(),
        target: ManifestTarget {
            name: target.name.clone(),
            soc_version: soc_version.to_string(),
            npu_arch: target.npu_arch,
        },
        kernels,
        tensors,
        launches,
        inputs,
        constants,
        outputs,
        system_workspace_bytes: 0,
        arena_bytes: program.memory.arena_bytes,
        device_bytes: program.memory.arena_bytes
            + program
                .tensors
                .iter()
                .enumerate()
                .filter(|&(i, _)| program.memory.offset(TensorId(i as u32)).is_none())
                .map(|(_, t)| t.bytes())
                .sum::<u64>(),
    }
}
