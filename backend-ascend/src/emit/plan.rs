//! The C names of every kernel of a program: file stem, entry symbol, tiling struct, launch
//! function, argument and tiling field identifiers. Chosen once, used by every emitted file.

use cubevec_ir::kernel::Program;

use super::names::{FileStems, Idents};

/// The names of one kernel across the emitted files.
#[derive(Debug, Clone)]
pub(crate) struct KernelPlan {
    /// File stem of `kernels/<stem>.cpp` and its launch files.
    pub(crate) stem: String,
    /// The `extern "C"` entry point: `cubevec_<stem>`.
    pub(crate) symbol: String,
    /// The tiling struct: `<symbol>_tiling`.
    pub(crate) tiling_struct: String,
    /// The host launch function: `<symbol>_launch`.
    pub(crate) launch_fn: String,
    /// Identifier of each GM argument (`p_<param>`).
    pub(crate) args: Vec<String>,
    /// Tiling field holding each parameter's element count (`n_<param>`).
    pub(crate) fields: Vec<String>,
}

/// Fixed names of the kernel argument list and the tiling struct.
const FIXED: &[&str] = &["workspace", "tiling", "blockNum"];

/// Names for every kernel of `program`, in kernel order. Stems are unique ignoring case.
pub(crate) fn plan_kernels(program: &Program) -> Vec<KernelPlan> {
    let mut stems = FileStems::new();
    program
        .kernels
        .iter()
        .map(|k| {
            let stem = stems.fresh(&k.name);
            let symbol = format!("cubevec_{stem}");
            let mut args = Idents::new();
            args.reserve(FIXED);
            let mut fields = Idents::new();
            fields.reserve(FIXED);
            KernelPlan {
                tiling_struct: format!("{symbol}_tiling"),
                launch_fn: format!("{symbol}_launch"),
                args: k.params.iter().map(|p| args.fresh("p_", &p.name)).collect(),
                fields: k
                    .params
                    .iter()
                    .map(|p| fields.fresh("n_", &p.name))
                    .collect(),
                stem,
                symbol,
            }
        })
        .collect()
}
