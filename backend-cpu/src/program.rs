//! Running a whole [`Program`]: its kernels compiled once, its launches issued in order over
//! one byte buffer per GM tensor.

use cubevec_ir::kernel::{ParamRole, Program};

use crate::error::CpuError;
use crate::kernel::CompiledKernel;

/// A program whose kernels are compiled.
pub struct CompiledProgram {
    pub(crate) program: Program,
    pub(crate) kernels: Vec<CompiledKernel>,
}

impl CompiledProgram {
    /// The program this was compiled from.
    pub fn program(&self) -> &Program {
        &self.program
    }
}

/// Runs every launch of `compiled` in order. `memory` holds one little-endian buffer per
/// program tensor, each exactly the tensor's size; inputs and constants are filled by the
/// caller, `OutputZeroed` parameters are zero-filled before their launch, and the outputs are
/// read back from their tensors' buffers afterwards. A parameter may view its tensor with a
/// different shape of the same size.
pub fn run_program(compiled: &CompiledProgram, memory: &mut [&mut [u8]]) -> Result<(), CpuError> {
    let program = &compiled.program;
    let argument = |message: String| CpuError::Argument {
        context: format!("program `{}`", program.name),
        message,
    };
    if memory.len() != program.tensors.len() {
        return Err(argument(format!(
            "{} buffers for {} tensors",
            memory.len(),
            program.tensors.len()
        )));
    }
    for (t, buf) in program.tensors.iter().zip(memory.iter()) {
        if buf.len() as u64 != t.bytes() {
            return Err(argument(format!(
                "tensor `{}` needs {} bytes, got {}",
                t.name,
                t.bytes(),
                buf.len()
            )));
        }
    }
    let ptrs: Vec<*mut u8> = memory.iter_mut().map(|b| b.as_mut_ptr()).collect();
    for launch in &program.launches {
        let kernel = &compiled.kernels[launch.kernel];
        let mut args = Vec::with_capacity(launch.args.len());
        for (param, tensor) in kernel.kernel().params.iter().zip(&launch.args) {
            let ptr = ptrs[tensor.index()];
            if param.role == ParamRole::OutputZeroed {
                // SAFETY: the pointer addresses the tensor's whole buffer (checked above).
                unsafe { ptr.write_bytes(0, program.tensor(*tensor).bytes() as usize) };
            }
            args.push(ptr);
        }
        // SAFETY: `Program::check` (run at compile time) matched every argument's dtype and
        // element count to its parameter, and the buffers were checked against the tensors'
        // sizes above; they stay borrowed for the whole call.
        unsafe { kernel.run_raw(&args)? };
    }
    Ok(())
}
