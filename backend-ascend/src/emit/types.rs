//! The AscendC spellings of kernel IR types: element types, memory positions, pipes, events and
//! core types.

use cubevec_ir::DType;
use cubevec_ir::kernel::{CoreType, MemLevel, Pipe, VecOp};

/// The C++ element type of `dtype` in kernels and host code, `None` for packed sub-byte types.
/// FP8 and scale types are moved as raw bytes (`uint8_t`); booleans are bytes too.
pub(crate) fn cpp_type(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F32 => "float",
        DType::F16 => "half",
        DType::BF16 => "bfloat16_t",
        DType::I8 => "int8_t",
        DType::U8 | DType::Bool | DType::F8E4M3FN | DType::F8E5M2 | DType::E8M0 => "uint8_t",
        DType::I32 => "int32_t",
        DType::I64 => "int64_t",
        DType::F4E2M1 => return None,
    })
}

/// The unsigned integer type of the same width, used to read a float element's bits.
pub(crate) fn bits_type(dtype: DType) -> &'static str {
    match dtype.bits() {
        8 => "uint8_t",
        16 => "uint16_t",
        32 => "uint32_t",
        _ => "uint64_t",
    }
}

/// Bytes per element (whole-byte types only).
pub(crate) fn elem_bytes(dtype: DType) -> u64 {
    (dtype.bits() / 8).max(1) as u64
}

/// The `TPosition` and the identifier of the one pool buffer (`TBuf`) that holds all buffers of
/// an on-chip level; `None` for GM.
pub(crate) fn pool(level: MemLevel) -> Option<(&'static str, &'static str)> {
    Some(match level {
        MemLevel::Gm => return None,
        MemLevel::L1 => ("A1", "l1Pool"),
        MemLevel::L0A => ("A2", "l0aPool"),
        MemLevel::L0B => ("B2", "l0bPool"),
        MemLevel::L0C => ("CO1", "l0cPool"),
        MemLevel::Ub => ("VECCALC", "ubPool"),
        MemLevel::BiasTable => ("C2", "biasPool"),
    })
}

/// `pipe_t` spelling (`PIPE_MTE2`).
pub(crate) fn pipe_t(pipe: Pipe) -> String {
    format!("PIPE_{}", pipe.name())
}

/// The `HardEvent` enumerator for a flag between two pipes, if the AscendC enum has one.
pub(crate) fn hard_event(from: Pipe, to: Pipe) -> Option<String> {
    use Pipe::*;
    let known = matches!(
        (from, to),
        (Mte2, Mte1)
            | (Mte1, Mte2)
            | (Mte1, M)
            | (M, Mte1)
            | (Mte2, V)
            | (V, Mte2)
            | (Mte3, V)
            | (V, Mte3)
            | (M, V)
            | (V, M)
            | (V, V)
            | (Mte3, Mte1)
            | (Mte1, Mte3)
            | (Mte1, V)
            | (Mte2, M)
            | (M, Mte2)
            | (V, Mte1)
            | (M, Fix)
            | (Fix, M)
            | (Mte3, Mte2)
            | (Mte2, Mte3)
            | (S, V)
            | (V, S)
            | (S, Mte2)
            | (Mte2, S)
            | (S, Mte3)
            | (Mte3, S)
            | (Mte2, Fix)
            | (Fix, Mte2)
            | (Fix, S)
            | (Mte1, Fix)
            | (Fix, Mte1)
    );
    known.then(|| format!("AscendC::HardEvent::{}_{}", from.name(), to.name()))
}

/// The `KERNEL_TASK_TYPE_DEFAULT` argument of a core type.
pub(crate) fn kernel_type(core: CoreType) -> &'static str {
    match core {
        CoreType::Aic => "KERNEL_TYPE_AIC_ONLY",
        CoreType::Aiv => "KERNEL_TYPE_AIV_ONLY",
        CoreType::Mix1To2 => "KERNEL_TYPE_MIX_AIC_1_2",
    }
}

/// The emulator's `KernelType` enumerator of a core type.
pub(crate) fn emulator_kernel_type(core: CoreType) -> &'static str {
    match core {
        CoreType::Aic => "AscendC::emu::KernelType::AIC_ONLY",
        CoreType::Aiv => "AscendC::emu::KernelType::AIV_ONLY",
        CoreType::Mix1To2 => "AscendC::emu::KernelType::MIX_AIC_1_2",
    }
}

/// The `Fixpipe` conversion from an L0C accumulator type to a GM type.
pub(crate) fn quant_mode(acc: DType, out: DType) -> Option<&'static str> {
    match (acc, out) {
        (DType::F32, DType::F32) | (DType::I32, DType::I32) => Some("QuantMode_t::NoQuant"),
        (DType::F32, DType::F16) => Some("QuantMode_t::F322F16"),
        (DType::F32, DType::BF16) => Some("QuantMode_t::F322BF16"),
        _ => None,
    }
}

/// The `RoundMode` of the f32 → f32 `Cast` that [`VecOp::Floor`], [`VecOp::Ceil`] and
/// [`VecOp::Rint`] are; `None` for other ops.
pub(crate) fn integral_mode(op: VecOp) -> Option<&'static str> {
    match op {
        VecOp::Floor => Some("AscendC::RoundMode::CAST_FLOOR"),
        VecOp::Ceil => Some("AscendC::RoundMode::CAST_CEIL"),
        VecOp::Rint => Some("AscendC::RoundMode::CAST_RINT"),
        _ => None,
    }
}

/// The `RoundMode` of a `Cast` from `src` to `dst`: exact conversions use `CAST_NONE`, every
/// conversion that can lose precision rounds to nearest even (`CAST_RINT`).
pub(crate) fn cast_mode(src: DType, dst: DType) -> &'static str {
    let exact = matches!(
        (src, dst),
        (DType::F16 | DType::BF16, DType::F32) | (DType::I8 | DType::U8, DType::F16)
    );
    if exact {
        "AscendC::RoundMode::CAST_NONE"
    } else {
        "AscendC::RoundMode::CAST_RINT"
    }
}
