//! The textual form of a kernel: deterministic, one statement per line, for tests and review.

use std::fmt::{self, Write as _};

use super::stmt::{GmTile, ReduceKind, ScalarSrc, Slice, Stmt, Tile, VecArg};
use super::{BufId, Kernel};

/// Writes `kernel` in its textual form.
pub fn write_kernel(f: &mut fmt::Formatter<'_>, kernel: &Kernel) -> fmt::Result {
    writeln!(
        f,
        "kernel {} core={} blocks={}",
        kernel.name,
        kernel.core.name(),
        kernel.blocks
    )?;
    if !kernel.tiling.is_empty() {
        let facts: Vec<String> = kernel
            .tiling
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(f, "  tiling {}", facts.join(" "))?;
    }
    for (i, p) in kernel.params.iter().enumerate() {
        let dims: Vec<String> = p.shape.iter().map(u64::to_string).collect();
        writeln!(
            f,
            "  param {i} {}: {}[{}] {}",
            p.name,
            p.dtype,
            dims.join(", "),
            match p.role {
                super::ParamRole::Input => "in",
                super::ParamRole::Output => "out",
                super::ParamRole::OutputZeroed => "out_zeroed",
                super::ParamRole::Workspace => "workspace",
            }
        )?;
    }
    for (i, b) in kernel.buffers.iter().enumerate() {
        writeln!(
            f,
            "  buffer {i} {}: {} {}[{}, {}] {} x{} @{}",
            b.name,
            b.level.name(),
            b.dtype,
            b.rows,
            b.cols,
            b.layout.name(),
            b.stages,
            b.offset
        )?;
    }
    for (label, program) in [("cube", &kernel.cube), ("vector", &kernel.vector)] {
        if program.is_empty() {
            continue;
        }
        writeln!(f, "  {label} {{")?;
        let mut out = String::new();
        write_body(&mut out, kernel, program, 2);
        f.write_str(&out)?;
        writeln!(f, "  }}")?;
    }
    Ok(())
}

fn buf_name(kernel: &Kernel, id: BufId) -> String {
    kernel
        .buffer(id)
        .map_or_else(|| format!("buf{}", id.0), |b| b.name.clone())
}

fn tile(kernel: &Kernel, t: &Tile) -> String {
    format!(
        "{}[{}]({}, {}; {} x {})",
        buf_name(kernel, t.buf),
        t.stage,
        t.row,
        t.col,
        t.rows,
        t.cols
    )
}

fn gm(kernel: &Kernel, t: &GmTile) -> String {
    let name = kernel
        .params
        .get(t.param)
        .map_or_else(|| format!("param{}", t.param), |p| p.name.clone());
    let batch = if t.batch.as_const() == Some(0) {
        String::new()
    } else {
        format!("[{}]", t.batch)
    };
    format!(
        "{name}{batch}({}, {}; {} x {})",
        t.row, t.col, t.rows, t.cols
    )
}

fn slice(kernel: &Kernel, s: &Slice) -> String {
    format!("{}[{}]+{}", buf_name(kernel, s.buf), s.stage, s.offset)
}

fn vec_arg(kernel: &Kernel, arg: &VecArg) -> String {
    match arg {
        VecArg::Slice(s) => slice(kernel, s),
        VecArg::Imm(v) => format!("{v:?}"),
        VecArg::Element(s) => format!("elem {}", slice(kernel, s)),
        VecArg::Scalar(e) => format!("scalar {e}"),
    }
}

fn write_body(out: &mut String, kernel: &Kernel, body: &[Stmt], depth: usize) {
    for stmt in body {
        let pad = "  ".repeat(depth);
        // Writing to a String cannot fail.
        let _ = match stmt {
            Stmt::Let { var, value } => writeln!(out, "{pad}let {var} = {value}"),
            Stmt::For {
                var,
                extent,
                pipelined,
                body,
            } => {
                let _ = writeln!(
                    out,
                    "{pad}for {var} in 0..{extent}{} {{",
                    if *pipelined { " pipelined" } else { "" }
                );
                write_body(out, kernel, body, depth + 1);
                writeln!(out, "{pad}}}")
            }
            Stmt::CopyIn { dst, src } => writeln!(
                out,
                "{pad}copy_in {} <- {}",
                tile(kernel, dst),
                gm(kernel, src)
            ),
            Stmt::LoadL0 {
                dst,
                src,
                transpose,
            } => writeln!(
                out,
                "{pad}load_l0 {} <- {}{}",
                tile(kernel, dst),
                tile(kernel, src),
                if *transpose { " transpose" } else { "" }
            ),
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
            } => writeln!(
                out,
                "{pad}mmad {}[{c_stage}] {} {}[{a_stage}] * {}[{b_stage}] m={m} n={n} k={k}",
                buf_name(kernel, *c),
                match init.as_const() {
                    Some(0) => "+=".to_string(),
                    Some(_) => "=".to_string(),
                    None => format!("=(init {init})"),
                },
                buf_name(kernel, *a),
                buf_name(kernel, *b)
            ),
            Stmt::Fixpipe {
                dst,
                src,
                relu,
                atomic_add,
            } => writeln!(
                out,
                "{pad}fixpipe {} {} {}{}",
                gm(kernel, dst),
                if *atomic_add { "+=" } else { "<-" },
                tile(kernel, src),
                if *relu { " relu" } else { "" }
            ),
            Stmt::CopyOut { dst, src } => writeln!(
                out,
                "{pad}copy_out {} <- {}",
                gm(kernel, dst),
                tile(kernel, src)
            ),
            Stmt::Vector {
                op,
                dst,
                srcs,
                count,
            } => {
                let args: Vec<String> = srcs.iter().map(|a| vec_arg(kernel, a)).collect();
                writeln!(
                    out,
                    "{pad}{} {} <- {} n={count}",
                    op.mnemonic(),
                    slice(kernel, dst),
                    args.join(", ")
                )
            }
            Stmt::Reduce {
                kind,
                dst,
                src,
                count,
            } => writeln!(
                out,
                "{pad}{} {} <- {} n={count}",
                match kind {
                    ReduceKind::Sum => "ReduceSum",
                    ReduceKind::Max => "ReduceMax",
                    ReduceKind::MaxIndex => "ReduceMaxIndex",
                },
                slice(kernel, dst),
                slice(kernel, src)
            ),
            Stmt::LoadScalar { var, src, planned } => {
                let from = match src {
                    ScalarSrc::Gm { param, index } => format!(
                        "{}[{index}]",
                        kernel.params.get(*param).map_or("?", |p| p.name.as_str())
                    ),
                    ScalarSrc::Ub(s) => slice(kernel, s),
                };
                writeln!(out, "{pad}load_scalar {var} <- {from} planned={planned}")
            }
            Stmt::SetValue { dst, value } => writeln!(
                out,
                "{pad}set_value {} <- {}",
                slice(kernel, dst),
                vec_arg(kernel, value)
            ),
            Stmt::SetFlag { from, to, event } => {
                writeln!(out, "{pad}set_flag {}_{} #{event}", from.name(), to.name())
            }
            Stmt::WaitFlag { from, to, event } => {
                writeln!(out, "{pad}wait_flag {}_{} #{event}", from.name(), to.name())
            }
            Stmt::Barrier { pipe } => writeln!(out, "{pad}barrier {}", pipe.name()),
            Stmt::CrossCoreSet { pipe, flag } => {
                writeln!(out, "{pad}cross_core_set {} #{flag}", pipe.name())
            }
            Stmt::CrossCoreWait { flag } => writeln!(out, "{pad}cross_core_wait #{flag}"),
        };
    }
}

/// One statement on one line (a loop prints with its body), for error messages.
pub fn stmt_to_string(kernel: &Kernel, stmt: &Stmt) -> String {
    let mut out = String::new();
    write_body(&mut out, kernel, std::slice::from_ref(stmt), 0);
    out.trim_end().to_string()
}
