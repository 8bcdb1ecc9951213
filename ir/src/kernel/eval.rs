//! The reference executor of the kernel IR: runs a kernel (or a whole [`Program`]) on the CPU
//! over GM tensor contents, with the numerics of the Ascend hardware.
//!
//! Every core instance of a launch runs its program with real data: `LoadScalar` reads the
//! element (never the `planned` value), so data-dependent offsets and trip counts are followed
//! and every region is checked against its buffer or tensor with the values it really takes.
//!
//! Numerics:
//! * every element is stored as its bit pattern in its dtype (GM and on-chip alike);
//! * `Mmad` multiplies and accumulates in f32 (i32 for int8, wrapping), in `k` order;
//! * `Fixpipe` converts to the GM dtype rounding to nearest even, then applies ReLU;
//!   `atomic_add` adds into GM in f32 (integers: wrapping) and rounds the sum to the GM dtype;
//! * vector ops compute in f32 for float dtypes (16-bit operands are widened exactly) and round
//!   the result to nearest even in the operand dtype; integer ops compute exactly and wrap;
//!   scalar operands are first converted to the operand dtype;
//! * `Cast` is exact when widening and rounds to nearest even when narrowing (f32 → i32 too;
//!   integers saturate);
//! * `ReduceSum` adds in f32 in index order and rounds once; `ReduceMax` keeps the first maximum
//!   (NaN never compares greater); `MaxIndex` stores the index as the raw bits of the element
//!   type;
//! * `SetFlag`/`WaitFlag`/`Barrier` do nothing: statements take effect in issue order.
//!
//! On-chip buffers are stored logically, row-major `rows × cols` per stage (layouts only change
//! addresses). A stage starts zeroed but unwritten; reading an unwritten stage is an error. L1
//! copies zero-pad their columns to a whole fractal.
//!
//! Instances run one at a time, deterministically. Blocks run in order; inside a block of a MIX
//! kernel the AIC and its two AIVs (`blk` = `2·block + subblock`) take turns: the running
//! instance continues until it finishes or waits on a cross-core flag whose count is zero, then
//! the next runnable instance in the order AIC, AIV 0, AIV 1 (cyclically) takes over. When every
//! unfinished instance is blocked, the launch fails with a deadlock. Cross-core flags follow
//! `CrossCoreSetFlag` mode 2: an AIC set raises the flag on both AIVs, an AIV set raises it for
//! the AIC, and an AIC wait needs the flag raised by both AIVs.

use half::{bf16, f16};

use super::exec::BLOCK_VAR;
use super::expr::{Env, Expr};
use super::print::stmt_to_string;
use super::program::{Binding, Program, ProgramError, TensorId};
use super::stmt::{
    GmTile, ReduceKind, ScalarSrc, Slice, Stmt, Tile, VecArg, VecOp, mmad_accumulator,
};
use super::{BufId, Buffer, CoreType, Kernel, MemLevel, ParamRole, Side};
use crate::dtype::{self, DType};
use crate::tensor::Tensor;

/// Everything that can go wrong while executing kernels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// A statement failed (out-of-bounds region, unwritten stage, bad operands …).
    #[error("kernel `{kernel}`, {side} instance {instance}: `{stmt}`: {message}")]
    Stmt {
        /// Kernel name.
        kernel: String,
        /// `cube` or `vector`.
        side: &'static str,
        /// Core instance (its `GetBlockIdx()`).
        instance: u64,
        /// The statement (a loop is shown by its header).
        stmt: String,
        /// What is wrong.
        message: String,
    },
    /// Every unfinished instance of a MIX block waits on a cross-core flag nobody will set.
    #[error("kernel `{kernel}`, block {block}: deadlock: {waiting}")]
    Deadlock {
        /// Kernel name.
        kernel: String,
        /// The block.
        block: u64,
        /// Which instances wait on which flags.
        waiting: String,
    },
    /// The launch passes the wrong number of tensors.
    #[error("kernel `{kernel}`: {got} tensors for {expected} parameters")]
    Arity {
        /// Kernel name.
        kernel: String,
        /// Tensors given.
        got: usize,
        /// Parameters of the kernel.
        expected: usize,
    },
    /// A tensor bound to a parameter has the wrong dtype or size.
    #[error("kernel `{kernel}`, parameter `{param}`: {message}")]
    Binding {
        /// Kernel name.
        kernel: String,
        /// Parameter name.
        param: String,
        /// What is wrong.
        message: String,
    },
    /// The program is inconsistent.
    #[error(transparent)]
    Program(Box<ProgramError>),
    /// The memory does not match the program's tensors, or a tensor does not match its use.
    #[error("memory: {0}")]
    Memory(String),
    /// A launch of a program failed.
    #[error("launch {launch}: {source}")]
    Launch {
        /// Launch index.
        launch: usize,
        /// The failure.
        source: Box<EvalError>,
    },
}

/// Checks that `value` fits tensor `id` of `dtype` and `elements` (same dtype and count).
pub fn check_value(
    id: TensorId,
    dtype: DType,
    elements: usize,
    value: &Tensor,
) -> Result<(), EvalError> {
    if dtype != value.dtype() || elements != value.numel() {
        return Err(EvalError::Memory(format!(
            "tensor t{} is {dtype} x {elements}, the value is {} x {}",
            id.0,
            value.dtype(),
            value.numel()
        )));
    }
    Ok(())
}

/// The contents of one GM tensor: its dtype and the bit pattern of every element, flat
/// row-major. Values stored from numbers are rounded to the dtype (to nearest even; integers
/// saturate); integer elements are exact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GmData {
    dtype: DType,
    bits: Vec<u64>,
}

impl GmData {
    /// `len` zero elements.
    pub fn zeros(dtype: DType, len: usize) -> GmData {
        GmData {
            dtype,
            bits: vec![0; len],
        }
    }

    /// Elements rounded from `values`.
    pub fn from_f64(dtype: DType, values: &[f64]) -> GmData {
        GmData {
            dtype,
            bits: values.iter().map(|&v| encode(dtype, v)).collect(),
        }
    }

    /// Elements from integers (exact for integer dtypes, rounded for floats).
    pub fn from_i64(dtype: DType, values: &[i64]) -> GmData {
        GmData {
            dtype,
            bits: values.iter().map(|&v| encode_int(dtype, v)).collect(),
        }
    }

    /// The elements of a tensor (its shape is dropped).
    pub fn from_tensor(tensor: &Tensor) -> GmData {
        let dtype = tensor.dtype();
        let b = tensor.bytes();
        let n = tensor.numel();
        let bits = match dtype.bits() {
            4 => (0..n)
                .map(|i| {
                    let byte = b[i / 2];
                    u64::from(if i.is_multiple_of(2) {
                        byte & 0xF
                    } else {
                        byte >> 4
                    })
                })
                .collect(),
            8 => b.iter().map(|&x| u64::from(x)).collect(),
            16 => b
                .chunks_exact(2)
                .map(|c| u64::from(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            32 => b
                .chunks_exact(4)
                .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            _ => b
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        };
        GmData { dtype, bits }
    }

    /// The elements as a tensor of `shape` (whose element count must be [`GmData::len`]).
    pub fn to_tensor(&self, shape: Vec<usize>) -> Result<Tensor, EvalError> {
        let mut bytes = Vec::with_capacity(self.dtype.storage_bytes(self.bits.len()));
        match self.dtype.bits() {
            4 => {
                for pair in self.bits.chunks(2) {
                    let hi = pair.get(1).map_or(0, |&b| (b as u8 & 0xF) << 4);
                    bytes.push((pair[0] as u8 & 0xF) | hi);
                }
            }
            8 => bytes.extend(self.bits.iter().map(|&b| b as u8)),
            16 => self
                .bits
                .iter()
                .for_each(|&b| bytes.extend((b as u16).to_le_bytes())),
            32 => self
                .bits
                .iter()
                .for_each(|&b| bytes.extend((b as u32).to_le_bytes())),
            _ => self
                .bits
                .iter()
                .for_each(|&b| bytes.extend(b.to_le_bytes())),
        }
        Tensor::from_bytes(self.dtype, shape, bytes).map_err(|e| EvalError::Memory(e.to_string()))
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.bits.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    /// Element `i` as a number.
    pub fn get(&self, i: usize) -> f64 {
        decode(self.dtype, self.bits[i])
    }

    /// Every element as a number.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.bits.iter().map(|&b| decode(self.dtype, b)).collect()
    }
}

/// The value of the element of `dtype` with bit pattern `bits`.
fn decode(dtype: DType, bits: u64) -> f64 {
    match dtype {
        DType::F32 => f64::from(f32::from_bits(bits as u32)),
        DType::F16 => f16::from_bits(bits as u16).to_f64(),
        DType::BF16 => bf16::from_bits(bits as u16).to_f64(),
        DType::F8E4M3FN => f64::from(dtype::f8e4m3fn_to_f32(bits as u8)),
        DType::F8E5M2 => f64::from(dtype::f8e5m2_to_f32(bits as u8)),
        DType::E8M0 => f64::from(dtype::e8m0_to_f32(bits as u8)),
        DType::F4E2M1 => f64::from(dtype::f4e2m1_to_f32(bits as u8)),
        DType::I8 | DType::U8 | DType::Bool | DType::I32 | DType::I64 => {
            decode_int(dtype, bits) as f64
        }
    }
}

/// The integer value of an integer element (floats truncate).
fn decode_int(dtype: DType, bits: u64) -> i64 {
    match dtype {
        DType::I8 => i64::from(bits as u8 as i8),
        DType::U8 | DType::Bool => i64::from(bits as u8),
        DType::I32 => i64::from(bits as u32 as i32),
        DType::I64 => bits as i64,
        _ => decode(dtype, bits) as i64,
    }
}

/// The bit pattern of `value` in `dtype`: floats round to nearest even, integers round to
/// nearest even and saturate (NaN gives 0), `bool` is `value ≠ 0`.
fn encode(dtype: DType, value: f64) -> u64 {
    let int = |lo: f64, hi: f64| {
        if value.is_nan() {
            0
        } else {
            value.round_ties_even().clamp(lo, hi) as i64
        }
    };
    match dtype {
        DType::F32 => u64::from((value as f32).to_bits()),
        DType::F16 => u64::from(f16::from_f64(value).to_bits()),
        DType::BF16 => u64::from(bf16::from_f64(value).to_bits()),
        DType::F8E4M3FN => u64::from(dtype::f32_to_f8e4m3fn(value as f32)),
        DType::F8E5M2 => u64::from(dtype::f32_to_f8e5m2(value as f32)),
        DType::E8M0 => u64::from(dtype::f32_to_e8m0(value as f32)),
        DType::F4E2M1 => u64::from(dtype::f32_to_f4e2m1(value as f32)),
        DType::I8 => encode_int(dtype, int(-128.0, 127.0)),
        DType::U8 => encode_int(dtype, int(0.0, 255.0)),
        DType::I32 => encode_int(dtype, int(i32::MIN as f64, i32::MAX as f64)),
        DType::I64 => encode_int(dtype, int(i64::MIN as f64, i64::MAX as f64)),
        DType::Bool => u64::from(value != 0.0),
    }
}

/// The bit pattern of an integer in `dtype`: integer dtypes wrap (two's complement), floats
/// round to nearest even.
fn encode_int(dtype: DType, value: i64) -> u64 {
    match dtype {
        DType::I8 | DType::U8 => u64::from(value as u8),
        DType::I32 => u64::from(value as u32),
        DType::I64 => value as u64,
        DType::Bool => u64::from(value != 0),
        _ => encode(dtype, value as f64),
    }
}

/// What a scalar load of an element gives: the value of an integer, the bits of a float.
fn scalar_value(dtype: DType, bits: u64) -> i64 {
    if dtype.is_float() {
        bits as i64
    } else {
        decode_int(dtype, bits)
    }
}

/// The contents of every tensor of a [`Program`], indexed by [`TensorId`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramMemory {
    /// One entry per program tensor.
    pub tensors: Vec<GmData>,
}

impl ProgramMemory {
    /// Every tensor of `program`, zero-filled.
    pub fn new(program: &Program) -> ProgramMemory {
        ProgramMemory {
            tensors: program
                .tensors
                .iter()
                .map(|t| GmData::zeros(t.dtype, t.elements() as usize))
                .collect(),
        }
    }

    /// Fills tensor `id` with the elements of `value` (same dtype and element count).
    pub fn write(&mut self, id: TensorId, value: &Tensor) -> Result<(), EvalError> {
        let slot = self
            .tensors
            .get_mut(id.index())
            .ok_or_else(|| EvalError::Memory(format!("no tensor t{}", id.0)))?;
        check_value(id, slot.dtype, slot.len(), value)?;
        *slot = GmData::from_tensor(value);
        Ok(())
    }

    /// The tensor behind `binding`, with the binding's shape.
    pub fn read(&self, binding: &Binding) -> Result<Tensor, EvalError> {
        let data = self
            .tensors
            .get(binding.tensor.index())
            .ok_or_else(|| EvalError::Memory(format!("no tensor t{}", binding.tensor.0)))?;
        data.to_tensor(binding.shape.iter().map(|&d| d as usize).collect())
    }

    /// Runs launch `index` of `program` on this memory (for comparing launch by launch).
    pub fn run_launch(&mut self, program: &Program, index: usize) -> Result<(), EvalError> {
        let launch = program
            .launches
            .get(index)
            .ok_or_else(|| EvalError::Memory(format!("no launch {index}")))?;
        let kernel = &program.kernels[launch.kernel];
        let args: Vec<usize> = launch.args.iter().map(|a| a.index()).collect();
        launch_kernel(kernel, &mut self.tensors, &args).map_err(|e| EvalError::Launch {
            launch: index,
            source: Box::new(e),
        })
    }

    /// Runs every launch of `program` on this memory ([`run_program`]).
    pub fn run(&mut self, program: &Program) -> Result<(), EvalError> {
        run_program(program, &mut self.tensors)
    }
}

/// Runs the launches of `program` in order over `memory` (indexed by [`TensorId`]; inputs and
/// constants filled by the caller). Each launch binds its tensors to the kernel's parameters
/// (a parameter may view its tensor with another shape of the same size) and zero-fills the
/// `OutputZeroed` ones first.
pub fn run_program(program: &Program, memory: &mut [GmData]) -> Result<(), EvalError> {
    program
        .check()
        .map_err(|e| EvalError::Program(Box::new(e)))?;
    if memory.len() != program.tensors.len() {
        return Err(EvalError::Memory(format!(
            "{} tensors for a program of {}",
            memory.len(),
            program.tensors.len()
        )));
    }
    for (i, (data, t)) in memory.iter().zip(&program.tensors).enumerate() {
        if data.dtype != t.dtype || data.len() as u64 != t.elements() {
            return Err(EvalError::Memory(format!(
                "t{i} `{}` is {} x {} but holds {} x {}",
                t.name,
                t.dtype,
                t.elements(),
                data.dtype,
                data.len()
            )));
        }
    }
    for (index, launch) in program.launches.iter().enumerate() {
        let kernel = &program.kernels[launch.kernel];
        let args: Vec<usize> = launch.args.iter().map(|a| a.index()).collect();
        launch_kernel(kernel, memory, &args).map_err(|e| EvalError::Launch {
            launch: index,
            source: Box::new(e),
        })?;
    }
    Ok(())
}

/// Launches `kernel` with `params[i]` bound to parameter `i`: zero-fills the `OutputZeroed`
/// parameters, then runs every block.
pub fn execute(kernel: &Kernel, params: &mut [GmData]) -> Result<(), EvalError> {
    let args: Vec<usize> = (0..params.len()).collect();
    launch_kernel(kernel, params, &args)
}

/// Runs one launch with parameter `i` bound to `memory[args[i]]`.
fn launch_kernel(kernel: &Kernel, memory: &mut [GmData], args: &[usize]) -> Result<(), EvalError> {
    if args.len() != kernel.params.len() {
        return Err(EvalError::Arity {
            kernel: kernel.name.clone(),
            got: args.len(),
            expected: kernel.params.len(),
        });
    }
    for (p, &arg) in kernel.params.iter().zip(args) {
        let binding = |message: String| EvalError::Binding {
            kernel: kernel.name.clone(),
            param: p.name.clone(),
            message,
        };
        let data = memory
            .get(arg)
            .ok_or_else(|| binding(format!("no tensor {arg}")))?;
        let elements: u64 = p.shape.iter().product();
        if data.dtype != p.dtype || data.len() as u64 != elements {
            return Err(binding(format!(
                "needs {} x {elements}, the tensor is {} x {}",
                p.dtype,
                data.dtype,
                data.len()
            )));
        }
    }
    for (p, &arg) in kernel.params.iter().zip(args) {
        if p.role == ParamRole::OutputZeroed {
            memory[arg].bits.fill(0);
        }
    }
    let mut gm = Gm { memory, args };
    for block in 0..u64::from(kernel.blocks) {
        run_block(kernel, block, &mut gm)?;
    }
    Ok(())
}

/// The GM tensors of a launch, by parameter.
struct Gm<'a> {
    memory: &'a mut [GmData],
    args: &'a [usize],
}

impl Gm<'_> {
    fn data(&self, param: usize) -> &GmData {
        &self.memory[self.args[param]]
    }

    fn data_mut(&mut self, param: usize) -> &mut GmData {
        &mut self.memory[self.args[param]]
    }
}

/// Cross-core flag ids are 0..=10.
const CROSS_FLAGS: usize = 11;

/// Cross-core flag counts of one MIX block.
#[derive(Default)]
struct Cross {
    /// Raised by the AIC for each AIV.
    to_aiv: [[u32; CROSS_FLAGS]; 2],
    /// Raised by each AIV for the AIC.
    to_aic: [[u32; CROSS_FLAGS]; 2],
}

impl Cross {
    fn set(&mut self, side: Side, subblock: usize, flag: usize) {
        match side {
            Side::Cube => self.to_aiv.iter_mut().for_each(|f| f[flag] += 1),
            Side::Vector => self.to_aic[subblock][flag] += 1,
        }
    }

    fn ready(&self, side: Side, subblock: usize, flag: usize) -> bool {
        match side {
            Side::Cube => self.to_aic.iter().all(|f| f[flag] > 0),
            Side::Vector => self.to_aiv[subblock][flag] > 0,
        }
    }

    /// Consumes a flag that is [`Cross::ready`].
    fn take(&mut self, side: Side, subblock: usize, flag: usize) {
        match side {
            Side::Cube => self.to_aic.iter_mut().for_each(|f| f[flag] -= 1),
            Side::Vector => self.to_aiv[subblock][flag] -= 1,
        }
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Cube => "cube",
        Side::Vector => "vector",
    }
}

/// Runs the instances of one block to completion.
fn run_block(kernel: &Kernel, block: u64, gm: &mut Gm<'_>) -> Result<(), EvalError> {
    let mut instances = match kernel.core {
        CoreType::Aic => vec![Instance::new(kernel, Side::Cube, block, 0)],
        CoreType::Aiv => vec![Instance::new(kernel, Side::Vector, block, 0)],
        CoreType::Mix1To2 => vec![
            Instance::new(kernel, Side::Cube, block, 0),
            Instance::new(kernel, Side::Vector, 2 * block, 0),
            Instance::new(kernel, Side::Vector, 2 * block + 1, 1),
        ],
    };
    let mut cross = Cross::default();
    let count = instances.len();
    let mut done = vec![false; count];
    let mut waiting: Vec<Option<usize>> = vec![None; count];
    let mut current = 0;
    loop {
        match instances[current].run(gm, &mut cross)? {
            Status::Done => done[current] = true,
            Status::Blocked(flag) => waiting[current] = Some(flag),
        }
        if done.iter().all(|&d| d) {
            return Ok(());
        }
        let runnable = |i: usize| {
            !done[i]
                && waiting[i]
                    .is_none_or(|f| cross.ready(instances[i].side, instances[i].subblock, f))
        };
        let Some(next) = (1..=count)
            .map(|d| (current + d) % count)
            .find(|&i| runnable(i))
        else {
            let waits: Vec<String> = (0..count)
                .filter_map(|i| {
                    waiting[i].filter(|_| !done[i]).map(|f| {
                        format!(
                            "{} instance {} waits on cross-core flag #{f}",
                            side_name(instances[i].side),
                            instances[i].index
                        )
                    })
                })
                .collect();
            return Err(EvalError::Deadlock {
                kernel: kernel.name.clone(),
                block,
                waiting: waits.join(", "),
            });
        };
        waiting[next] = None;
        current = next;
    }
}

/// Why an instance stopped running.
enum Status {
    /// Its program ended.
    Done,
    /// It waits on this cross-core flag, whose count is zero.
    Blocked(usize),
}

/// A body being executed.
struct Frame<'k> {
    body: &'k [Stmt],
    /// Next statement.
    pc: usize,
    /// Variables bound in this body (by `let` or `LoadScalar`) and their previous values.
    lets: Vec<(String, Option<i64>)>,
    /// Set when the body is a loop's.
    lp: Option<Loop<'k>>,
}

/// The state of a running loop.
struct Loop<'k> {
    var: &'k str,
    iter: i64,
    trips: i64,
    previous: Option<i64>,
}

/// A rectangle of one buffer stage.
struct Rect {
    stage: usize,
    row: usize,
    col: usize,
    rows: usize,
    cols: usize,
}

/// A rectangle of a GM parameter: flat index of its first element and row pitch.
struct GmRect {
    base: usize,
    pitch: usize,
    rows: usize,
    cols: usize,
}

fn ev(e: &Expr, env: &Env, what: &str) -> Result<i64, String> {
    e.eval(env).map_err(|err| format!("{what}: {err}"))
}

/// A count that must be positive.
fn ev_count(e: &Expr, env: &Env) -> Result<usize, String> {
    let n = ev(e, env, "count")?;
    if n < 1 {
        return Err(format!("count {n} must be positive"));
    }
    Ok(n as usize)
}

/// The statement as shown in errors: its line, or the header of a loop.
fn describe(kernel: &Kernel, stmt: &Stmt) -> String {
    let text = stmt_to_string(kernel, stmt);
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches(" {")
        .to_string()
}

/// One core instance: its program state and its on-chip memory.
struct Instance<'k> {
    kernel: &'k Kernel,
    side: Side,
    /// `GetBlockIdx()` of the core.
    index: u64,
    /// Which AIV of the block (0 for the AIC and for vector kernels).
    subblock: usize,
    env: Env,
    frames: Vec<Frame<'k>>,
    /// Per buffer, per stage: the elements once written.
    bufs: Vec<Vec<Option<Vec<u64>>>>,
}

impl<'k> Instance<'k> {
    fn new(kernel: &'k Kernel, side: Side, index: u64, subblock: usize) -> Instance<'k> {
        let mut env = Env::new();
        env.insert(BLOCK_VAR, index as i64);
        Instance {
            kernel,
            side,
            index,
            subblock,
            env,
            frames: vec![Frame {
                body: kernel.program(side),
                pc: 0,
                lets: Vec::new(),
                lp: None,
            }],
            bufs: kernel
                .buffers
                .iter()
                .map(|b| vec![None; b.stages as usize])
                .collect(),
        }
    }

    /// Runs until the program ends or waits on a cross-core flag that is not raised.
    fn run(&mut self, gm: &mut Gm<'_>, cross: &mut Cross) -> Result<Status, EvalError> {
        loop {
            let Some(top) = self.frames.last() else {
                return Ok(Status::Done);
            };
            let (body, pc) = (top.body, top.pc);
            let Some(stmt) = body.get(pc) else {
                self.end_frame();
                continue;
            };
            let (kernel, side, instance) = (self.kernel, self.side, self.index);
            let fail = move |message: String| EvalError::Stmt {
                kernel: kernel.name.clone(),
                side: side_name(side),
                instance,
                stmt: describe(kernel, stmt),
                message,
            };
            if let Stmt::CrossCoreWait { flag } = stmt {
                let flag = self.cross_flag(*flag).map_err(fail)?;
                if !cross.ready(self.side, self.subblock, flag) {
                    return Ok(Status::Blocked(flag));
                }
            }
            if let Some(top) = self.frames.last_mut() {
                top.pc += 1;
            }
            self.step(stmt, gm, cross).map_err(fail)?;
        }
    }

    /// Leaves the innermost body: restores its bindings, then starts the next loop iteration
    /// or restores the loop variable.
    fn end_frame(&mut self) {
        let Some(frame) = self.frames.pop() else {
            return;
        };
        for (name, previous) in frame.lets.into_iter().rev() {
            self.env.restore(&name, previous);
        }
        if let Some(mut lp) = frame.lp {
            lp.iter += 1;
            if lp.iter < lp.trips {
                self.env.insert(lp.var, lp.iter);
                self.frames.push(Frame {
                    body: frame.body,
                    pc: 0,
                    lets: Vec::new(),
                    lp: Some(lp),
                });
            } else {
                self.env.restore(lp.var, lp.previous);
            }
        }
    }

    /// Binds `var` for the rest of the current body.
    fn bind(&mut self, var: &str, value: i64) {
        let previous = self.env.insert(var, value);
        if let Some(top) = self.frames.last_mut() {
            top.lets.push((var.to_string(), previous));
        }
    }

    fn cross_flag(&self, flag: u8) -> Result<usize, String> {
        if self.kernel.core != CoreType::Mix1To2 {
            return Err("cross-core flags need a MIX kernel".into());
        }
        if usize::from(flag) >= CROSS_FLAGS {
            return Err(format!("cross-core flag #{flag} outside 0..=10"));
        }
        Ok(usize::from(flag))
    }

    fn step(&mut self, stmt: &'k Stmt, gm: &mut Gm<'_>, cross: &mut Cross) -> Result<(), String> {
        match stmt {
            Stmt::Let { var, value } => {
                let v = ev(value, &self.env, "value")?;
                self.bind(var, v);
            }
            Stmt::LoadScalar { var, src, .. } => {
                let v = self.load_scalar(src, gm)?;
                self.bind(var, v);
            }
            Stmt::For {
                var, extent, body, ..
            } => {
                let trips = ev(extent, &self.env, "extent")?;
                if trips < 0 {
                    return Err(format!("negative trip count {trips}"));
                }
                if trips > 0 {
                    let previous = self.env.insert(var, 0);
                    self.frames.push(Frame {
                        body,
                        pc: 0,
                        lets: Vec::new(),
                        lp: Some(Loop {
                            var,
                            iter: 0,
                            trips,
                            previous,
                        }),
                    });
                }
            }
            Stmt::CopyIn { dst, src } => self.copy_in(dst, src, gm)?,
            Stmt::LoadL0 {
                dst,
                src,
                transpose,
            } => self.load_l0(dst, src, *transpose)?,
            Stmt::Mmad {
                c,
                c_stage,
                a,
                a_stage,
                b,
                b_stage,
                m,
                n,
                k,
                init,
            } => {
                let env = &self.env;
                let dims = (
                    ev_count(m, env).map_err(|e| format!("m: {e}"))?,
                    ev_count(n, env).map_err(|e| format!("n: {e}"))?,
                    ev_count(k, env).map_err(|e| format!("k: {e}"))?,
                );
                let init = ev(init, env, "init")? != 0;
                self.mmad([(*a, a_stage), (*b, b_stage), (*c, c_stage)], dims, init)?
            }
            Stmt::Fixpipe {
                dst,
                src,
                relu,
                atomic_add,
            } => self.fixpipe(dst, src, *relu, *atomic_add, gm)?,
            Stmt::CopyOut { dst, src } => self.copy_out(dst, src, gm)?,
            Stmt::Vector {
                op,
                dst,
                srcs,
                count,
            } => self.vector(*op, dst, srcs, count)?,
            Stmt::Reduce {
                kind,
                dst,
                src,
                count,
            } => self.reduce(*kind, dst, src, count)?,
            Stmt::SetValue { dst, value } => {
                let (buf, stage, offset) = self.slice(dst, 1)?;
                let bits = match value {
                    VecArg::Imm(x) => encode(buf.dtype, *x),
                    VecArg::Scalar(e) => encode_int(buf.dtype, ev(e, &self.env, "value")?),
                    _ => return Err("SetValue takes an immediate or a scalar expression".into()),
                };
                self.write(dst.buf, stage)[offset] = bits;
            }
            Stmt::SetFlag { .. } | Stmt::WaitFlag { .. } | Stmt::Barrier { .. } => {}
            Stmt::CrossCoreSet { flag, .. } => {
                let flag = self.cross_flag(*flag)?;
                cross.set(self.side, self.subblock, flag);
            }
            Stmt::CrossCoreWait { flag } => {
                // `run` only gets here once the flag is raised.
                let flag = self.cross_flag(*flag)?;
                cross.take(self.side, self.subblock, flag);
            }
        }
        Ok(())
    }

    /// A buffer of this instance's side.
    fn buffer(&self, id: BufId) -> Result<&'k Buffer, String> {
        let kernel: &'k Kernel = self.kernel;
        let b = kernel
            .buffer(id)
            .ok_or_else(|| format!("no buffer with id {}", id.0))?;
        if b.level.side() != Some(self.side) {
            return Err(format!(
                "buffer `{}` at {} is not reachable from the {} program",
                b.name,
                b.level.name(),
                side_name(self.side)
            ));
        }
        Ok(b)
    }

    fn stage_of(&self, buf: &Buffer, stage: &Expr) -> Result<usize, String> {
        let s = ev(stage, &self.env, "stage")?;
        if s < 0 || s as u64 >= buf.stages {
            return Err(format!(
                "stage {s} of `{}` outside 0..{}",
                buf.name, buf.stages
            ));
        }
        Ok(s as usize)
    }

    fn tile(&self, t: &Tile) -> Result<(&'k Buffer, Rect), String> {
        let buf = self.buffer(t.buf)?;
        let stage = self.stage_of(buf, &t.stage)?;
        let env = &self.env;
        let (row, col) = (ev(&t.row, env, "row")?, ev(&t.col, env, "column")?);
        let (rows, cols) = (ev(&t.rows, env, "rows")?, ev(&t.cols, env, "columns")?);
        if rows < 1 || cols < 1 || row < 0 || col < 0 {
            return Err(format!(
                "empty or negative region ({row}, {col}; {rows} x {cols}) of `{}`",
                buf.name
            ));
        }
        if (row + rows) as u64 > buf.rows || (col + cols) as u64 > buf.cols {
            return Err(format!(
                "region ({row}, {col}; {rows} x {cols}) exceeds `{}` of {} x {}",
                buf.name, buf.rows, buf.cols
            ));
        }
        Ok((
            buf,
            Rect {
                stage,
                row: row as usize,
                col: col as usize,
                rows: rows as usize,
                cols: cols as usize,
            },
        ))
    }

    fn gm_tile(&self, t: &GmTile) -> Result<GmRect, String> {
        let p = self
            .kernel
            .params
            .get(t.param)
            .ok_or_else(|| format!("no parameter {}", t.param))?;
        let (batches, rows, cols) = p.matrix_dims();
        let env = &self.env;
        let batch = ev(&t.batch, env, "batch")?;
        let (row, col) = (ev(&t.row, env, "row")?, ev(&t.col, env, "column")?);
        let (nr, nc) = (ev(&t.rows, env, "rows")?, ev(&t.cols, env, "columns")?);
        if nr < 1 || nc < 1 || row < 0 || col < 0 || batch < 0 {
            return Err(format!(
                "empty or negative region [{batch}]({row}, {col}; {nr} x {nc}) of `{}`",
                p.name
            ));
        }
        if batch as u64 >= batches || (row + nr) as u64 > rows || (col + nc) as u64 > cols {
            return Err(format!(
                "region [{batch}]({row}, {col}; {nr} x {nc}) exceeds `{}` of {batches} x {rows} x {cols}",
                p.name
            ));
        }
        Ok(GmRect {
            base: ((batch as u64 * rows + row as u64) * cols + col as u64) as usize,
            pitch: cols as usize,
            rows: nr as usize,
            cols: nc as usize,
        })
    }

    /// `count` elements of a UB stage: the buffer, the stage and the first element.
    fn slice(&self, s: &Slice, count: usize) -> Result<(&'k Buffer, usize, usize), String> {
        let buf = self.buffer(s.buf)?;
        if buf.level != MemLevel::Ub {
            return Err(format!("`{}` is not in UB", buf.name));
        }
        let stage = self.stage_of(buf, &s.stage)?;
        let offset = ev(&s.offset, &self.env, "offset")?;
        if offset < 0 || offset as u64 + count as u64 > buf.rows * buf.cols {
            return Err(format!(
                "elements {offset}..{} exceed `{}` of {} elements",
                offset + count as i64,
                buf.name,
                buf.rows * buf.cols
            ));
        }
        Ok((buf, stage, offset as usize))
    }

    /// The elements of a stage that has been written.
    fn read(&self, id: BufId, stage: usize) -> Result<&[u64], String> {
        self.bufs[id.0 as usize][stage].as_deref().ok_or_else(|| {
            format!(
                "stage {stage} of `{}` is read before it is written",
                self.kernel.buffers[id.0 as usize].name
            )
        })
    }

    /// The elements of a stage, for writing (zero-filled on first use).
    fn write(&mut self, id: BufId, stage: usize) -> &mut [u64] {
        let b = &self.kernel.buffers[id.0 as usize];
        self.bufs[id.0 as usize][stage].get_or_insert_with(|| vec![0; (b.rows * b.cols) as usize])
    }

    fn copy_in(&mut self, dst: &Tile, src: &GmTile, gm: &Gm<'_>) -> Result<(), String> {
        let (buf, r) = self.tile(dst)?;
        let g = self.gm_tile(src)?;
        let p = &self.kernel.params[src.param];
        if !matches!(buf.level, MemLevel::L1 | MemLevel::Ub) {
            return Err(format!(
                "GM copies go to L1 or UB, not {}",
                buf.level.name()
            ));
        }
        if (g.rows, g.cols) != (r.rows, r.cols) || p.dtype != buf.dtype {
            return Err(format!(
                "GM region {} x {} {} does not match the destination {} x {} {}",
                g.rows, g.cols, p.dtype, r.rows, r.cols, buf.dtype
            ));
        }
        // Nd2Nz fills the last fractal of each row with zeros.
        let end = if buf.level == MemLevel::L1 {
            let c0 = buf.fractal_cols() as usize;
            (r.col + r.cols).div_ceil(c0) * c0
        } else {
            r.col + r.cols
        }
        .min(buf.cols as usize);
        let pitch = buf.cols as usize;
        let data = &gm.data(src.param).bits;
        let stage = self.write(dst.buf, r.stage);
        for i in 0..r.rows {
            let from = g.base + i * g.pitch;
            let to = (r.row + i) * pitch;
            stage[to + r.col..to + r.col + r.cols].copy_from_slice(&data[from..from + r.cols]);
            stage[to + r.col + r.cols..to + end].fill(0);
        }
        Ok(())
    }

    fn load_l0(&mut self, dst: &Tile, src: &Tile, transpose: bool) -> Result<(), String> {
        let (sb, s) = self.tile(src)?;
        let (db, d) = self.tile(dst)?;
        if sb.level != MemLevel::L1 || !matches!(db.level, MemLevel::L0A | MemLevel::L0B) {
            return Err("LoadL0 moves L1 to L0A or L0B".into());
        }
        if sb.dtype != db.dtype {
            return Err("LoadL0 cannot convert types".into());
        }
        let expected = if transpose {
            (s.cols, s.rows)
        } else {
            (s.rows, s.cols)
        };
        if (d.rows, d.cols) != expected {
            return Err(format!(
                "destination {} x {} does not hold the source {} x {}{}",
                d.rows,
                d.cols,
                s.rows,
                s.cols,
                if transpose { " transposed" } else { "" }
            ));
        }
        let from = self.read(src.buf, s.stage)?;
        let sp = sb.cols as usize;
        let mut moved = Vec::with_capacity(d.rows * d.cols);
        for i in 0..d.rows {
            for j in 0..d.cols {
                let (si, sj) = if transpose { (j, i) } else { (i, j) };
                moved.push(from[(s.row + si) * sp + s.col + sj]);
            }
        }
        let dp = db.cols as usize;
        let to = self.write(dst.buf, d.stage);
        for (i, row) in moved.chunks_exact(d.cols).enumerate() {
            let at = (d.row + i) * dp + d.col;
            to[at..at + d.cols].copy_from_slice(row);
        }
        Ok(())
    }

    /// `c[m×n] = (init ? 0 : c) + a[m×k] · b[k×n]` on whole stages of L0A, L0B and L0C.
    fn mmad(
        &mut self,
        operands: [(BufId, &Expr); 3],
        (m, n, k): (usize, usize, usize),
        init: bool,
    ) -> Result<(), String> {
        let resolve = |(id, stage): (BufId, &Expr)| -> Result<(BufId, &'k Buffer, usize), String> {
            let buf = self.buffer(id)?;
            Ok((id, buf, self.stage_of(buf, stage)?))
        };
        let [a, b, c] = operands;
        let (a, ab, a_stage) = resolve(a)?;
        let (b, bb, b_stage) = resolve(b)?;
        let (c, cb, c_stage) = resolve(c)?;
        if ab.level != MemLevel::L0A || bb.level != MemLevel::L0B || cb.level != MemLevel::L0C {
            return Err("Mmad operands must be in L0A, L0B and L0C".into());
        }
        if ab.dtype != bb.dtype || mmad_accumulator(ab.dtype) != Some(cb.dtype) {
            return Err(format!(
                "no Mmad for {} × {} → {}",
                ab.dtype, bb.dtype, cb.dtype
            ));
        }
        let fits = |rows: usize, cols: usize, buf: &Buffer| {
            rows as u64 <= buf.rows && cols as u64 <= buf.cols
        };
        if !fits(m, k, ab) || !fits(k, n, bb) || !fits(m, n, cb) {
            return Err(format!("m={m} n={n} k={k} exceeds an operand buffer"));
        }
        let (ap, bp, cp) = (ab.cols as usize, bb.cols as usize, cb.cols as usize);
        let av = self.read(a, a_stage)?;
        let bv = self.read(b, b_stage)?;
        let old: Option<Vec<u64>> = if init {
            None
        } else {
            Some(self.read(c, c_stage)?.to_vec())
        };
        let mut result = Vec::with_capacity(m * n);
        if cb.dtype == DType::F32 {
            let a32: Vec<f32> = (0..m * k)
                .map(|x| decode(ab.dtype, av[x / k * ap + x % k]) as f32)
                .collect();
            let b32: Vec<f32> = (0..k * n)
                .map(|x| decode(bb.dtype, bv[x / n * bp + x % n]) as f32)
                .collect();
            for i in 0..m {
                let mut row: Vec<f32> = match &old {
                    Some(o) => (0..n)
                        .map(|j| f32::from_bits(o[i * cp + j] as u32))
                        .collect(),
                    None => vec![0.0; n],
                };
                for (p, &aik) in a32[i * k..(i + 1) * k].iter().enumerate() {
                    for (acc, &bkj) in row.iter_mut().zip(&b32[p * n..(p + 1) * n]) {
                        *acc += aik * bkj;
                    }
                }
                result.extend(row.into_iter().map(|v| u64::from(v.to_bits())));
            }
        } else {
            let ai: Vec<i64> = (0..m * k)
                .map(|x| decode_int(ab.dtype, av[x / k * ap + x % k]))
                .collect();
            let bi: Vec<i64> = (0..k * n)
                .map(|x| decode_int(bb.dtype, bv[x / n * bp + x % n]))
                .collect();
            for i in 0..m {
                let mut row: Vec<i32> = match &old {
                    Some(o) => (0..n).map(|j| o[i * cp + j] as u32 as i32).collect(),
                    None => vec![0; n],
                };
                for (p, &aik) in ai[i * k..(i + 1) * k].iter().enumerate() {
                    for (acc, &bkj) in row.iter_mut().zip(&bi[p * n..(p + 1) * n]) {
                        *acc = acc.wrapping_add((aik * bkj) as i32);
                    }
                }
                result.extend(row.into_iter().map(|v| u64::from(v as u32)));
            }
        }
        let to = self.write(c, c_stage);
        for (i, row) in result.chunks_exact(n).enumerate() {
            to[i * cp..i * cp + n].copy_from_slice(row);
        }
        Ok(())
    }

    fn fixpipe(
        &mut self,
        dst: &GmTile,
        src: &Tile,
        relu: bool,
        atomic_add: bool,
        gm: &mut Gm<'_>,
    ) -> Result<(), String> {
        let (cb, r) = self.tile(src)?;
        let g = self.gm_tile(dst)?;
        let p = &self.kernel.params[dst.param];
        if cb.level != MemLevel::L0C {
            return Err("Fixpipe reads L0C".into());
        }
        if (g.rows, g.cols) != (r.rows, r.cols) {
            return Err(format!(
                "GM region {} x {} differs from the L0C region {} x {}",
                g.rows, g.cols, r.rows, r.cols
            ));
        }
        if p.role == ParamRole::Input {
            return Err(format!("`{}` is an input", p.name));
        }
        let dt = p.dtype;
        let cp = cb.cols as usize;
        let acc = self.read(src.buf, r.stage)?;
        let out = &mut gm.data_mut(dst.param).bits;
        for i in 0..r.rows {
            for j in 0..r.cols {
                let v = decode(cb.dtype, acc[(r.row + i) * cp + r.col + j]);
                let mut x = decode(dt, encode(dt, v));
                if relu && x < 0.0 {
                    x = 0.0;
                }
                let at = g.base + i * g.pitch + j;
                out[at] = if !atomic_add {
                    encode(dt, x)
                } else if dt.is_float() {
                    encode(dt, f64::from(decode(dt, out[at]) as f32 + x as f32))
                } else {
                    encode_int(dt, decode_int(dt, out[at]).wrapping_add(x as i64))
                };
            }
        }
        Ok(())
    }

    fn copy_out(&mut self, dst: &GmTile, src: &Tile, gm: &mut Gm<'_>) -> Result<(), String> {
        let (ub, r) = self.tile(src)?;
        let g = self.gm_tile(dst)?;
        let p = &self.kernel.params[dst.param];
        if ub.level != MemLevel::Ub {
            return Err("CopyOut reads from UB".into());
        }
        if (g.rows, g.cols) != (r.rows, r.cols) || ub.dtype != p.dtype {
            return Err(format!(
                "UB region {} x {} {} does not match GM region {} x {} {}",
                r.rows, r.cols, ub.dtype, g.rows, g.cols, p.dtype
            ));
        }
        if p.role == ParamRole::Input {
            return Err(format!("`{}` is an input", p.name));
        }
        let pitch = ub.cols as usize;
        let from = self.read(src.buf, r.stage)?;
        let out = &mut gm.data_mut(dst.param).bits;
        for i in 0..r.rows {
            let at = (r.row + i) * pitch + r.col;
            let to = g.base + i * g.pitch;
            out[to..to + r.cols].copy_from_slice(&from[at..at + r.cols]);
        }
        Ok(())
    }

    /// The bits, in `dtype`, of a scalar operand.
    fn scalar_bits(&self, arg: &VecArg, dtype: DType) -> Result<u64, String> {
        match arg {
            VecArg::Imm(x) => Ok(encode(dtype, *x)),
            VecArg::Scalar(e) => Ok(encode_int(dtype, ev(e, &self.env, "scalar")?)),
            VecArg::Element(s) => {
                let (buf, stage, offset) = self.slice(s, 1)?;
                if buf.dtype != dtype {
                    return Err(format!(
                        "scalar operand type {} differs from {dtype}",
                        buf.dtype
                    ));
                }
                Ok(self.read(s.buf, stage)?[offset])
            }
            VecArg::Slice(_) => Err("a slice where a scalar is expected".into()),
        }
    }

    fn vector(
        &mut self,
        op: VecOp,
        dst: &Slice,
        srcs: &[VecArg],
        count: &Expr,
    ) -> Result<(), String> {
        let n = ev_count(count, &self.env)?;
        let (db, d_stage, d_off) = self.slice(dst, n)?;
        let dt = db.dtype;
        let kinds = op.operand_kinds();
        if kinds.len() != srcs.len() {
            return Err(format!(
                "{} takes {} operands, found {}",
                op.name(),
                kinds.len(),
                srcs.len()
            ));
        }
        // Operands in their bits; a scalar repeats. `src_dtype` is the type of the last run.
        let mut args: Vec<(Vec<u64>, bool)> = Vec::with_capacity(2);
        let mut src_dtype = dt;
        for (arg, &is_run) in srcs.iter().zip(kinds) {
            match (arg, is_run) {
                (VecArg::Slice(s), true) => {
                    let (b, stage, off) = self.slice(s, n)?;
                    if op != VecOp::Cast && b.dtype != dt {
                        return Err(format!(
                            "operand type {} differs from the result type {dt}",
                            b.dtype
                        ));
                    }
                    src_dtype = b.dtype;
                    args.push((self.read(s.buf, stage)?[off..off + n].to_vec(), true));
                }
                (VecArg::Slice(_), false) => {
                    return Err(format!("{} takes a scalar here", op.name()));
                }
                (_, true) => return Err(format!("{} takes a slice here", op.name())),
                (scalar, false) => args.push((vec![self.scalar_bits(scalar, dt)?], false)),
            }
        }
        let at = |a: usize, i: usize| {
            let (v, run) = &args[a];
            if *run { v[i] } else { v[0] }
        };
        let arity = args.len();
        let mut out = Vec::with_capacity(n);
        if op == VecOp::Cast {
            out.extend((0..n).map(|i| encode(dt, decode(src_dtype, at(0, i)))));
        } else if dt.is_float() {
            for i in 0..n {
                let a = decode(dt, at(0, i)) as f32;
                let b = if arity > 1 {
                    decode(dt, at(1, i)) as f32
                } else {
                    0.0
                };
                out.push(encode(dt, f64::from(float_op(op, a, b))));
            }
        } else {
            for i in 0..n {
                let a = decode_int(dt, at(0, i));
                let b = if arity > 1 {
                    decode_int(dt, at(1, i))
                } else {
                    0
                };
                out.push(encode_int(dt, int_op(op, a, b, dt)?));
            }
        }
        self.write(dst.buf, d_stage)[d_off..d_off + n].copy_from_slice(&out);
        Ok(())
    }

    fn reduce(
        &mut self,
        kind: ReduceKind,
        dst: &Slice,
        src: &Slice,
        count: &Expr,
    ) -> Result<(), String> {
        let n = ev_count(count, &self.env)?;
        let (sb, s_stage, s_off) = self.slice(src, n)?;
        let dst_len = if kind == ReduceKind::MaxIndex { 2 } else { 1 };
        let (db, d_stage, d_off) = self.slice(dst, dst_len)?;
        let t = sb.dtype;
        if db.dtype != t {
            return Err(format!("reduction of {t} into {}", db.dtype));
        }
        let vals = &self.read(src.buf, s_stage)?[s_off..s_off + n];
        let greater = |i: usize, j: usize| {
            if t.is_float() {
                decode(t, vals[i]) > decode(t, vals[j])
            } else {
                decode_int(t, vals[i]) > decode_int(t, vals[j])
            }
        };
        let best = (1..n).fold(0, |best, i| if greater(i, best) { i } else { best });
        let result = match kind {
            ReduceKind::Sum if t.is_float() => encode(
                t,
                f64::from(vals.iter().map(|&v| decode(t, v) as f32).sum::<f32>()),
            ),
            ReduceKind::Sum => encode_int(
                t,
                vals.iter()
                    .fold(0i64, |acc, &v| acc.wrapping_add(decode_int(t, v))),
            ),
            ReduceKind::Max | ReduceKind::MaxIndex => vals[best],
        };
        if kind == ReduceKind::MaxIndex && t.bits() < 64 && (best as u64) >> t.bits() != 0 {
            return Err(format!("index {best} does not fit the bits of {t}"));
        }
        let to = self.write(dst.buf, d_stage);
        to[d_off] = result;
        if kind == ReduceKind::MaxIndex {
            to[d_off + 1] = best as u64;
        }
        Ok(())
    }

    fn load_scalar(&self, src: &ScalarSrc, gm: &Gm<'_>) -> Result<i64, String> {
        match src {
            ScalarSrc::Gm { param, index } => {
                let p = self
                    .kernel
                    .params
                    .get(*param)
                    .ok_or_else(|| format!("no parameter {param}"))?;
                let i = ev(index, &self.env, "index")?;
                let data = gm.data(*param);
                if i < 0 || i as usize >= data.len() {
                    return Err(format!(
                        "element {i} outside `{}` of {} elements",
                        p.name,
                        data.len()
                    ));
                }
                Ok(scalar_value(p.dtype, data.bits[i as usize]))
            }
            ScalarSrc::Ub(s) => {
                let (buf, stage, offset) = self.slice(s, 1)?;
                Ok(scalar_value(buf.dtype, self.read(s.buf, stage)?[offset]))
            }
        }
    }
}

/// One float vector op in f32 (`b` is the second operand or the scalar; `Duplicate`'s scalar
/// is `a`; `Cast`'s conversion happens outside, the value passes unchanged).
fn float_op(op: VecOp, a: f32, b: f32) -> f32 {
    match op {
        VecOp::Add | VecOp::Adds => a + b,
        VecOp::Sub => a - b,
        VecOp::Mul | VecOp::Muls => a * b,
        VecOp::Div => a / b,
        VecOp::Max | VecOp::Maxs => a.max(b),
        VecOp::Min | VecOp::Mins => a.min(b),
        VecOp::Exp => a.exp(),
        VecOp::Ln => a.ln(),
        VecOp::Abs => a.abs(),
        VecOp::Sqrt => a.sqrt(),
        VecOp::Rsqrt => 1.0 / a.sqrt(),
        VecOp::Reciprocal => 1.0 / a,
        VecOp::Relu => a.max(0.0),
        VecOp::Duplicate | VecOp::Cast => a,
        VecOp::Floor => a.floor(),
        VecOp::Ceil => a.ceil(),
        VecOp::Rint => a.round_ties_even(),
    }
}

/// One integer vector op (wrapping); transcendental and division ops are not defined.
fn int_op(op: VecOp, a: i64, b: i64, dtype: DType) -> Result<i64, String> {
    Ok(match op {
        VecOp::Add | VecOp::Adds => a.wrapping_add(b),
        VecOp::Sub => a.wrapping_sub(b),
        VecOp::Mul | VecOp::Muls => a.wrapping_mul(b),
        VecOp::Max | VecOp::Maxs => a.max(b),
        VecOp::Min | VecOp::Mins => a.min(b),
        VecOp::Abs => a.wrapping_abs(),
        VecOp::Relu => a.max(0),
        VecOp::Duplicate | VecOp::Cast => a,
        VecOp::Div
        | VecOp::Exp
        | VecOp::Ln
        | VecOp::Sqrt
        | VecOp::Rsqrt
        | VecOp::Reciprocal
        | VecOp::Floor
        | VecOp::Ceil
        | VecOp::Rint => {
            return Err(format!("{} is not defined on {dtype}", op.mnemonic()));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{Layout, Param, Pipe};

    fn v(name: &str) -> Expr {
        Expr::var(name)
    }

    fn c(value: u64) -> Expr {
        Expr::c(value)
    }

    fn buffer(name: &str, level: MemLevel, dtype: DType, rows: u64, cols: u64) -> Buffer {
        let layout = match level {
            MemLevel::Ub => Layout::Nd,
            MemLevel::L0A => Layout::Zz,
            MemLevel::L0B => Layout::Zn,
            _ => Layout::Nz,
        };
        Buffer {
            name: name.into(),
            level,
            dtype,
            layout,
            rows,
            cols,
            stages: 2,
            offset: 0,
        }
    }

    fn param(name: &str, dtype: DType, shape: &[u64], role: ParamRole) -> Param {
        Param {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            role,
        }
    }

    fn vector_kernel(name: &str, blocks: u32, params: Vec<Param>, buffers: Vec<Buffer>) -> Kernel {
        Kernel {
            name: name.into(),
            core: CoreType::Aiv,
            blocks,
            params,
            buffers,
            cube: Vec::new(),
            vector: Vec::new(),
            tiling: Default::default(),
        }
    }

    fn tile(buf: u32, stage: Expr, at: (Expr, Expr), size: (Expr, Expr)) -> Tile {
        Tile {
            buf: BufId(buf),
            stage,
            row: at.0,
            col: at.1,
            rows: size.0,
            cols: size.1,
        }
    }

    fn gm(param: usize, at: (Expr, Expr), size: (Expr, Expr)) -> GmTile {
        GmTile {
            param,
            batch: c(0),
            row: at.0,
            col: at.1,
            rows: size.0,
            cols: size.1,
        }
    }

    fn slice(buf: u32, stage: Expr, offset: Expr) -> Slice {
        Slice {
            buf: BufId(buf),
            stage,
            offset,
        }
    }

    fn vec_op(op: VecOp, dst: Slice, srcs: Vec<VecArg>, count: Expr) -> Stmt {
        Stmt::Vector {
            op,
            dst,
            srcs,
            count,
        }
    }

    fn for_(var: &str, extent: Expr, body: Vec<Stmt>) -> Stmt {
        Stmt::For {
            var: var.into(),
            extent,
            pipelined: false,
            body,
        }
    }

    fn let_(var: &str, value: Expr) -> Stmt {
        Stmt::Let {
            var: var.into(),
            value,
        }
    }

    /// `out = x * 0.1 + 1.5` over 100 elements in tiles of 32 dealt to two blocks (the last tile
    /// has 4 elements), double-buffered.
    fn scale_shift(dtype: DType) -> Kernel {
        let mut k = vector_kernel(
            "scale_shift",
            2,
            vec![
                param("x", dtype, &[100], ParamRole::Input),
                param("out", dtype, &[100], ParamRole::Output),
            ],
            vec![buffer("buf", MemLevel::Ub, dtype, 1, 32)],
        );
        let run = || slice(0, v("s"), c(0));
        k.vector = vec![for_(
            "t",
            c(4).sub(v("blk")).add(c(1)).div(c(2)),
            vec![
                let_("off", v("blk").add(v("t").mul(c(2))).mul(c(32))),
                let_("n", c(100).sub(v("off")).min(c(32))),
                let_("s", v("t").rem(c(2))),
                Stmt::CopyIn {
                    dst: tile(0, v("s"), (c(0), c(0)), (c(1), v("n"))),
                    src: gm(0, (c(0), v("off")), (c(1), v("n"))),
                },
                Stmt::SetFlag {
                    from: Pipe::Mte2,
                    to: Pipe::V,
                    event: v("s"),
                },
                Stmt::WaitFlag {
                    from: Pipe::Mte2,
                    to: Pipe::V,
                    event: v("s"),
                },
                vec_op(
                    VecOp::Muls,
                    run(),
                    vec![VecArg::Slice(run()), VecArg::Imm(0.1)],
                    v("n"),
                ),
                vec_op(
                    VecOp::Adds,
                    run(),
                    vec![VecArg::Slice(run()), VecArg::Imm(1.5)],
                    v("n"),
                ),
                Stmt::CopyOut {
                    dst: gm(1, (c(0), v("off")), (c(1), v("n"))),
                    src: tile(0, v("s"), (c(0), c(0)), (c(1), v("n"))),
                },
            ],
        )];
        k
    }

    #[test]
    fn two_blocks_with_a_tail_round_like_the_hardware() {
        let xs: Vec<f64> = (0..100).map(|i| (i as f64 - 37.0) * 0.37).collect();
        for dtype in [DType::F32, DType::F16] {
            let mut params = [
                GmData::from_f64(dtype, &xs),
                GmData::from_f64(dtype, &[1e4; 100]),
            ];
            execute(&scale_shift(dtype), &mut params).expect("runs");
            for (i, &x) in xs.iter().enumerate() {
                let want = if dtype == DType::F32 {
                    f64::from(x as f32 * 0.1f32 + 1.5)
                } else {
                    let round = |v: f32| f16::from_f32(v).to_f32();
                    let y = round(round(x as f32) * round(0.1));
                    f64::from(round(y + 1.5))
                };
                assert_eq!(params[1].get(i), want, "{dtype} element {i}");
            }
        }
    }

    /// Gathers rows of `table` [5, 8] named by `idx` [3] into `out` [3, 8].
    fn gather() -> Kernel {
        let mut k = vector_kernel(
            "gather",
            1,
            vec![
                param("idx", DType::I32, &[3], ParamRole::Input),
                param("table", DType::F32, &[5, 8], ParamRole::Input),
                param("out", DType::F32, &[3, 8], ParamRole::Output),
            ],
            vec![buffer("row", MemLevel::Ub, DType::F32, 1, 8)],
        );
        k.vector = vec![for_(
            "i",
            c(3),
            vec![
                Stmt::LoadScalar {
                    var: "r".into(),
                    src: ScalarSrc::Gm {
                        param: 0,
                        index: v("i"),
                    },
                    planned: c(0),
                },
                Stmt::CopyIn {
                    dst: tile(0, c(0), (c(0), c(0)), (c(1), c(8))),
                    src: gm(1, (v("r"), c(0)), (c(1), c(8))),
                },
                Stmt::CopyOut {
                    dst: gm(2, (v("i"), c(0)), (c(1), c(8))),
                    src: tile(0, c(0), (c(0), c(0)), (c(1), c(8))),
                },
            ],
        )];
        k
    }

    fn gather_params(idx: &[i64]) -> [GmData; 3] {
        let table: Vec<f64> = (0..40).map(f64::from).collect();
        [
            GmData::from_i64(DType::I32, idx),
            GmData::from_f64(DType::F32, &table),
            GmData::zeros(DType::F32, 24),
        ]
    }

    #[test]
    fn scalar_loads_drive_a_gather() {
        let mut params = gather_params(&[4, 0, 2]);
        execute(&gather(), &mut params).expect("runs");
        let want: Vec<f64> = [4, 0, 2]
            .iter()
            .flat_map(|&r| (0..8).map(move |j| f64::from(r * 8 + j)))
            .collect();
        assert_eq!(params[2].to_f64_vec(), want);
    }

    #[test]
    fn a_data_dependent_region_outside_its_tensor_is_caught() {
        let mut params = gather_params(&[4, 7, 2]);
        let err = execute(&gather(), &mut params)
            .expect_err("row 7 of 5")
            .to_string();
        assert_eq!(
            err,
            "kernel `gather`, vector instance 0: `copy_in row[0](0, 0; 1 x 8) <- table(r, 0; 1 x 8)`: \
             region [0](7, 0; 1 x 8) exceeds `table` of 1 x 5 x 8"
        );
    }

    #[test]
    fn max_index_stores_the_first_maximum_in_the_element_bits() {
        let mut xs: Vec<f64> = (0..40).map(|i| f64::from((i * 7) % 11) - 5.0).collect();
        xs[13] = 9.5;
        xs[27] = 9.5;
        for dtype in [DType::F32, DType::F16] {
            let mut k = vector_kernel(
                "argmax",
                1,
                vec![
                    param("x", dtype, &[40], ParamRole::Input),
                    param("stats", dtype, &[16], ParamRole::Output),
                    param("ids", DType::I32, &[8], ParamRole::Output),
                ],
                vec![
                    buffer("xb", MemLevel::Ub, dtype, 1, 64),
                    buffer("st", MemLevel::Ub, dtype, 1, 16),
                    buffer("ib", MemLevel::Ub, DType::I32, 1, 8),
                ],
            );
            k.vector = vec![
                Stmt::CopyIn {
                    dst: tile(0, c(0), (c(0), c(0)), (c(1), c(40))),
                    src: gm(0, (c(0), c(0)), (c(1), c(40))),
                },
                Stmt::Reduce {
                    kind: ReduceKind::MaxIndex,
                    dst: slice(1, c(0), c(0)),
                    src: slice(0, c(0), c(0)),
                    count: c(40),
                },
                Stmt::LoadScalar {
                    var: "i".into(),
                    src: ScalarSrc::Ub(slice(1, c(0), c(1))),
                    planned: c(0),
                },
                Stmt::SetValue {
                    dst: slice(2, c(0), c(0)),
                    value: VecArg::Scalar(v("i")),
                },
                Stmt::SetValue {
                    dst: slice(2, c(0), c(1)),
                    value: VecArg::Scalar(v("i").mul(c(2)).add(c(1))),
                },
                Stmt::CopyOut {
                    dst: gm(1, (c(0), c(0)), (c(1), c(16))),
                    src: tile(1, c(0), (c(0), c(0)), (c(1), c(16))),
                },
                Stmt::CopyOut {
                    dst: gm(2, (c(0), c(0)), (c(1), c(8))),
                    src: tile(2, c(0), (c(0), c(0)), (c(1), c(8))),
                },
            ];
            let mut params = [
                GmData::from_f64(dtype, &xs),
                GmData::zeros(dtype, 16),
                GmData::zeros(DType::I32, 8),
            ];
            execute(&k, &mut params).expect("runs");
            assert_eq!(params[1].get(0), 9.5, "{dtype}");
            let index_bits = params[1].to_tensor(vec![16]).expect("tensor").bytes()
                [dtype.bits() / 8..dtype.bits() / 4]
                .to_vec();
            let mut want = 13u32.to_le_bytes().to_vec();
            want.truncate(dtype.bits() / 8);
            assert_eq!(index_bits, want, "{dtype}");
            assert_eq!(&params[2].to_f64_vec()[..2], &[13.0, 27.0]);
        }
    }

    #[test]
    fn reading_an_unwritten_stage_is_an_error() {
        let mut k = scale_shift(DType::F32);
        let Stmt::For { body, .. } = &mut k.vector[0] else {
            panic!("the loop")
        };
        body.retain(|s| !matches!(s, Stmt::CopyIn { .. }));
        let mut params = [
            GmData::zeros(DType::F32, 100),
            GmData::zeros(DType::F32, 100),
        ];
        let err = execute(&k, &mut params).expect_err("unwritten").to_string();
        assert_eq!(
            err,
            "kernel `scale_shift`, vector instance 0: `Muls buf[s]+0 <- buf[s]+0, 0.1 n=n`: \
             stage 0 of `buf` is read before it is written"
        );
    }

    /// A MIX kernel: the AIVs write `2·x` into a workspace, the AIC multiplies it by `b` once
    /// both have signalled, the AIVs add 1 to the product once the AIC has signalled.
    fn mix(signal: bool) -> Kernel {
        let f16 = DType::F16;
        let mut cube = vec![
            Stmt::CrossCoreWait { flag: 0 },
            Stmt::CopyIn {
                dst: tile(0, c(0), (c(0), c(0)), (c(16), c(16))),
                src: gm(2, (c(0), c(0)), (c(16), c(16))),
            },
            Stmt::CopyIn {
                dst: tile(1, c(0), (c(0), c(0)), (c(16), c(16))),
                src: gm(1, (c(0), c(0)), (c(16), c(16))),
            },
            Stmt::LoadL0 {
                dst: tile(2, c(0), (c(0), c(0)), (c(16), c(16))),
                src: tile(0, c(0), (c(0), c(0)), (c(16), c(16))),
                transpose: false,
            },
            Stmt::LoadL0 {
                dst: tile(3, c(0), (c(0), c(0)), (c(16), c(16))),
                src: tile(1, c(0), (c(0), c(0)), (c(16), c(16))),
                transpose: false,
            },
            Stmt::Mmad {
                c: BufId(4),
                c_stage: c(0),
                a: BufId(2),
                a_stage: c(0),
                b: BufId(3),
                b_stage: c(0),
                m: c(16),
                n: c(16),
                k: c(16),
                init: c(1),
            },
            Stmt::Fixpipe {
                dst: gm(3, (c(0), c(0)), (c(16), c(16))),
                src: tile(4, c(0), (c(0), c(0)), (c(16), c(16))),
                relu: false,
                atomic_add: false,
            },
            Stmt::CrossCoreSet {
                pipe: Pipe::Fix,
                flag: 1,
            },
        ];
        if !signal {
            cube.pop();
        }
        let half_rows = |buf: u32| tile(buf, c(0), (c(0), c(0)), (c(8), c(16)));
        let vector = vec![
            let_("row", v("blk").rem(c(2)).mul(c(8))),
            Stmt::CopyIn {
                dst: half_rows(5),
                src: gm(0, (v("row"), c(0)), (c(8), c(16))),
            },
            vec_op(
                VecOp::Muls,
                slice(5, c(0), c(0)),
                vec![VecArg::Slice(slice(5, c(0), c(0))), VecArg::Imm(2.0)],
                c(128),
            ),
            Stmt::CopyOut {
                dst: gm(2, (v("row"), c(0)), (c(8), c(16))),
                src: half_rows(5),
            },
            Stmt::CrossCoreSet {
                pipe: Pipe::Mte3,
                flag: 0,
            },
            Stmt::CrossCoreWait { flag: 1 },
            Stmt::CopyIn {
                dst: half_rows(6),
                src: gm(3, (v("row"), c(0)), (c(8), c(16))),
            },
            vec_op(
                VecOp::Adds,
                slice(6, c(0), c(0)),
                vec![VecArg::Slice(slice(6, c(0), c(0))), VecArg::Imm(1.0)],
                c(128),
            ),
            Stmt::CopyOut {
                dst: gm(4, (v("row"), c(0)), (c(8), c(16))),
                src: half_rows(6),
            },
        ];
        Kernel {
            name: "mix".into(),
            core: CoreType::Mix1To2,
            blocks: 1,
            params: vec![
                param("x", f16, &[16, 16], ParamRole::Input),
                param("b", f16, &[16, 16], ParamRole::Input),
                param("ws", f16, &[16, 16], ParamRole::Workspace),
                param("c", DType::F32, &[16, 16], ParamRole::Workspace),
                param("out", DType::F32, &[16, 16], ParamRole::Output),
            ],
            buffers: vec![
                buffer("l1a", MemLevel::L1, f16, 16, 16),
                buffer("l1b", MemLevel::L1, f16, 16, 16),
                buffer("l0a", MemLevel::L0A, f16, 16, 16),
                buffer("l0b", MemLevel::L0B, f16, 16, 16),
                buffer("l0c", MemLevel::L0C, DType::F32, 16, 16),
                buffer("ux", MemLevel::Ub, f16, 8, 16),
                buffer("uc", MemLevel::Ub, DType::F32, 8, 16),
            ],
            cube,
            vector,
            tiling: Default::default(),
        }
    }

    fn mix_params() -> (Vec<f64>, Vec<f64>, [GmData; 5]) {
        let x: Vec<f64> = (0..256)
            .map(|i| f64::from((i * 3 + i / 16) % 7) - 3.0)
            .collect();
        let b: Vec<f64> = (0..256)
            .map(|i| f64::from((i + 2 * (i / 16)) % 5) - 2.0)
            .collect();
        let params = [
            GmData::from_f64(DType::F16, &x),
            GmData::from_f64(DType::F16, &b),
            GmData::zeros(DType::F16, 256),
            GmData::zeros(DType::F32, 256),
            GmData::zeros(DType::F32, 256),
        ];
        (x, b, params)
    }

    #[test]
    fn cross_core_flags_order_the_cube_and_vector_instances() {
        let (x, b, mut params) = mix_params();
        execute(&mix(true), &mut params).expect("runs");
        for i in 0..16 {
            for j in 0..16 {
                let dot: f64 = (0..16).map(|p| 2.0 * x[i * 16 + p] * b[p * 16 + j]).sum();
                assert_eq!(params[4].get(i * 16 + j), dot + 1.0, "({i}, {j})");
            }
        }
    }

    #[test]
    fn a_missing_cross_core_set_is_a_deadlock() {
        let (_, _, mut params) = mix_params();
        let err = execute(&mix(false), &mut params)
            .expect_err("deadlock")
            .to_string();
        assert_eq!(
            err,
            "kernel `mix`, block 0: deadlock: vector instance 0 waits on cross-core flag #1, \
             vector instance 1 waits on cross-core flag #1"
        );
    }

    #[test]
    fn tensors_round_trip_and_values_round_on_store() {
        let t = Tensor::from_f32(DType::BF16, vec![2, 2], &[1.0, -2.5, 3.0e-3, 7.0]);
        let data = GmData::from_tensor(&t);
        assert_eq!(
            data.to_tensor(vec![4]).expect("same size"),
            t.reshaped(vec![4])
        );
        // 1 + 2^-8 is halfway between two bf16 values: ties to even.
        assert_eq!(
            GmData::from_f64(DType::BF16, &[1.0 + 1.0 / 256.0]).get(0),
            1.0
        );
        assert_eq!(
            GmData::from_f64(DType::I32, &[2.5, -3.5]).to_f64_vec(),
            [2.0, -4.0]
        );
        let big = GmData::from_i64(DType::I64, &[(1 << 60) + 1]);
        let back = big.to_tensor(vec![1]).expect("one element");
        assert_eq!(back.get_i64(0), (1 << 60) + 1);
        assert!(data.to_tensor(vec![3]).is_err());
    }
}
