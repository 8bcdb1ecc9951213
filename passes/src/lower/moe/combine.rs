//! The combine kernel: `out[t] = Σ_j weights[t, j] · y[places[t, j]]` on the vector cores.
//!
//! Tokens are dealt in tiles of rows to the AIVs. For each tile the weights and places are
//! copied to UB; for each token and slot the scalar unit reads the place, the expert output row
//! is copied in (double-buffered), scaled by the weight and added to the token's f32
//! accumulator. Binary ops with whole `[tokens, hidden]` operands fused after the MoE block (the
//! residual add) then apply to the tile, their operand rows copied in with the weights. The tile
//! is converted to the output dtype and written back in one copy.

use cubevec_ir::DType;
use cubevec_ir::kernel::{BufferPlanner, Kernel, ParamRole, Pipe, Stmt, VecArg, VecOp};
use cubevec_ir::target::Target;

use super::emit::{
    at, at0, binary, c, for_, gm, let_, load_ub, param, pitch, scalar_op, set, set_at, sync, tile,
    ub, ub_bytes, unary, v, vop, wait, wait_at,
};
use crate::cost::Work;
use crate::lower::LowerError;
use crate::tile::build::block_trips;

/// A binary op applied to the combined rows and a whole `[tokens, hidden]` operand of the output
/// dtype (a residual add), computed in f32 on the running value rounded to the output dtype, as
/// a separate kernel would compute it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AfterCombine {
    /// The vector instruction.
    pub op: VecOp,
    /// The combined rows are the op's first operand (`x - r`, not `r - x`).
    pub combined_first: bool,
}

/// Builds the combine kernel. Parameters: `y f32 [tokens · top_k, hidden]`, `weights f32
/// [tokens, top_k]`, `places i32 [tokens, top_k]` in, `out [tokens, hidden]` of `dtype` out,
/// then one `[tokens, hidden]` operand of `dtype` per op of `after`, applied in order.
pub fn kernel(
    name: &str,
    (tokens, hidden, top_k): (u64, u64, u64),
    dtype: DType,
    after: &[AfterCombine],
    target: &Target,
) -> Result<(Kernel, Work), LowerError> {
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(LowerError::Unsupported(format!(
            "{name}: MoE output dtype {dtype} (use f32, f16 or bf16)"
        )));
    }
    let hp = pitch(hidden, DType::BF16);
    let kp = pitch(top_k, DType::F32);
    let cast = dtype != DType::F32;
    let fixed = 2 * ub_bytes(DType::F32, 1, hp);
    let widened = cast && !after.is_empty();
    let per_row = ub_bytes(DType::F32, 1, hp)
        + if cast { ub_bytes(dtype, 1, hp) } else { 0 }
        + 2 * ub_bytes(DType::F32, 1, kp)
        + after.len() as u64 * ub_bytes(dtype, 1, hp)
        + if widened {
            ub_bytes(DType::F32, 1, hp)
        } else {
            0
        };
    let budget = target.buffers.ub.usable_bytes();
    if fixed + per_row > budget {
        return Err(LowerError::Unsupported(format!(
            "{name}: a row of {hidden} elements does not fit UB"
        )));
    }
    let aiv = u64::from(target.cores.aiv);
    let rows = tokens.div_ceil(aiv).clamp(1, (budget - fixed) / per_row);
    let tiles = tokens.div_ceil(rows);
    let blocks = tiles.min(aiv);
    let mut params = vec![
        param(
            "y",
            DType::F32,
            vec![tokens * top_k, hidden],
            ParamRole::Input,
        ),
        param("weights", DType::F32, vec![tokens, top_k], ParamRole::Input),
        param("places", DType::I32, vec![tokens, top_k], ParamRole::Input),
        param("out", dtype, vec![tokens, hidden], ParamRole::Output),
    ];
    params.extend((0..after.len()).map(|i| {
        param(
            &format!("operand{i}"),
            dtype,
            vec![tokens, hidden],
            ParamRole::Input,
        )
    }));
    let mut planner = BufferPlanner::new();
    let yb = planner.add(target, ub("y", DType::F32, 1, hp, 2));
    let acc = planner.add(target, ub("acc", DType::F32, rows, hp, 1));
    let ob = if cast {
        planner.add(target, ub("out", dtype, rows, hp, 1))
    } else {
        acc
    };
    let wb = planner.add(target, ub("w", DType::F32, rows, kp, 1));
    let pb = planner.add(target, ub("places", DType::I32, rows, kp, 1));
    let operand_bufs: Vec<_> = (0..after.len())
        .map(|i| planner.add(target, ub(&format!("operand{i}"), dtype, rows, hp, 1)))
        .collect();
    // The operands widened to f32, when they are narrower.
    let wide = widened.then(|| planner.add(target, ub("wide", DType::F32, rows, hp, 1)));
    let buffers = planner.finish();

    let h = || c(hidden);
    let slot = || v("r").mul(c(kp)).add(v("j"));
    let acc_row = || at0(acc, v("r").mul(c(hp)));
    let y_row = || at(yb, v("s"), c(0));
    let per_slot = vec![
        load_ub(
            "p",
            at0(pb, slot()),
            v("t0").add(v("r")).mul(c(top_k)).add(v("j")),
        ),
        let_("s", v("r").mul(c(top_k)).add(v("j")).rem(c(2))),
        wait_at(Pipe::V, Pipe::Mte2, v("s")),
        Stmt::CopyIn {
            dst: tile(yb, v("s"), (c(0), c(0)), (c(1), h())),
            src: gm(0, (v("p"), c(0)), (c(1), h())),
        },
        set_at(Pipe::Mte2, Pipe::V, v("s")),
        wait_at(Pipe::Mte2, Pipe::V, v("s")),
        scalar_op(
            VecOp::Muls,
            y_row(),
            y_row(),
            VecArg::Element(at0(wb, slot())),
            h(),
        ),
        binary(VecOp::Add, acc_row(), acc_row(), y_row(), h()),
        set_at(Pipe::V, Pipe::Mte2, v("s")),
    ];
    let per_token = vec![
        vop(VecOp::Duplicate, acc_row(), vec![VecArg::Imm(0.0)], h()),
        for_("j", c(top_k), false, per_slot),
    ];
    let mut body = vec![
        let_("tile", v("blk").add(v("t").mul(c(blocks)))),
        let_("t0", v("tile").mul(c(rows))),
        let_("rl", c(tokens).sub(v("t0")).min(c(rows))),
        wait(Pipe::V, Pipe::Mte2, 2),
        wait(Pipe::S, Pipe::Mte2, 0),
        Stmt::CopyIn {
            dst: tile(wb, c(0), (c(0), c(0)), (v("rl"), c(top_k))),
            src: gm(1, (v("t0"), c(0)), (v("rl"), c(top_k))),
        },
        Stmt::CopyIn {
            dst: tile(pb, c(0), (c(0), c(0)), (v("rl"), c(top_k))),
            src: gm(2, (v("t0"), c(0)), (v("rl"), c(top_k))),
        },
    ];
    for (i, &buf) in operand_bufs.iter().enumerate() {
        body.push(Stmt::CopyIn {
            dst: tile(buf, c(0), (c(0), c(0)), (v("rl"), h())),
            src: gm(4 + i, (v("t0"), c(0)), (v("rl"), h())),
        });
    }
    body.extend(sync(Pipe::Mte2, Pipe::V, 2));
    body.extend(sync(Pipe::Mte2, Pipe::S, 0));
    body.push(wait(Pipe::Mte3, Pipe::V, 0));
    body.push(for_("r", v("rl"), false, per_token));
    let whole = || v("rl").mul(c(hp));
    for (step, &buf) in after.iter().zip(&operand_bufs) {
        let operand = if let Some(wide) = wide {
            // Round the running value to the output dtype, as a separate kernel reads it.
            body.push(unary(VecOp::Cast, at0(ob, c(0)), at0(acc, c(0)), whole()));
            body.push(unary(VecOp::Cast, at0(acc, c(0)), at0(ob, c(0)), whole()));
            body.push(unary(VecOp::Cast, at0(wide, c(0)), at0(buf, c(0)), whole()));
            wide
        } else {
            buf
        };
        let (a, b) = if step.combined_first {
            (acc, operand)
        } else {
            (operand, acc)
        };
        body.push(binary(
            step.op,
            at0(acc, c(0)),
            at0(a, c(0)),
            at0(b, c(0)),
            whole(),
        ));
    }
    body.extend([set(Pipe::V, Pipe::Mte2, 2), set(Pipe::S, Pipe::Mte2, 0)]);
    if cast {
        body.push(unary(
            VecOp::Cast,
            at0(ob, c(0)),
            at0(acc, c(0)),
            v("rl").mul(c(hp)),
        ));
    }
    body.extend(sync(Pipe::V, Pipe::Mte3, 0));
    body.extend([
        Stmt::CopyOut {
            dst: gm(3, (v("t0"), c(0)), (v("rl"), h())),
            src: tile(ob, c(0), (c(0), c(0)), (v("rl"), h())),
        },
        set(Pipe::Mte3, Pipe::V, 0),
    ]);
    let mut vector = vec![
        set(Pipe::V, Pipe::Mte2, 0),
        set(Pipe::V, Pipe::Mte2, 1),
        set(Pipe::V, Pipe::Mte2, 2),
        set(Pipe::S, Pipe::Mte2, 0),
        set(Pipe::Mte3, Pipe::V, 0),
    ];
    let trips = block_trips(tiles, blocks);
    vector.push(for_("t", trips, false, body));
    vector.extend([
        wait(Pipe::V, Pipe::Mte2, 0),
        wait(Pipe::V, Pipe::Mte2, 1),
        wait(Pipe::V, Pipe::Mte2, 2),
        wait(Pipe::S, Pipe::Mte2, 0),
        wait(Pipe::Mte3, Pipe::V, 0),
    ]);
    let tiling = [("tile_tokens", rows), ("tiles", tiles), ("top_k", top_k)];
    let kernel = Kernel::vector(name, blocks as u32, params, buffers, vector, &tiling);
    let eb = dtype.bits() as f64 / 8.0;
    let operands = after.len() as u64;
    let work = Work {
        flops: (2 * top_k + operands) as f64 * (tokens * hidden) as f64,
        bytes: (tokens * top_k * hidden * 4 + tokens * top_k * 8) as f64
            + ((1 + operands) * tokens * hidden) as f64 * eb,
        cube: false,
        dtype: DType::F32,
    };
    Ok((kernel, work))
}
