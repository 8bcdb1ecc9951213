//! Grouping the routed rows by expert: a counting sort of the `(token, slot)` pairs by expert id,
//! then a copy of every token's row to each of its `top_k` places.
//!
//! [`sort_kernel`] is one vector block doing scalar bookkeeping in UB: it counts the rows per
//! expert, writes the exclusive prefix sums (`i32 [experts + 1]`, the group offsets the grouped
//! GEMMs read) and the place of every pair in expert order (`i32 [tokens, top_k]`, stable:
//! ascending token within an expert). The ids stream through UB in chunks, so any token count
//! fits. It costs a few scalar instructions per pair and does not scale with cores.
//!
//! [`scatter_kernel`] copies the rows of `x` to their places on all AIVs: each token row is read
//! once and written `top_k` times (MTE2 → MTE3, double-buffered, no vector work).

use cubevec_ir::DType;
use cubevec_ir::kernel::{BufferPlanner, Kernel, ParamRole, Pipe, Stmt, VecArg, VecOp};
use cubevec_ir::target::Target;

use super::emit::{
    at0, c, for_, gm, let_, load_gm, load_ub, param, pitch, set, set_at, set_value, sync, tile, ub,
    ub_bytes, v, vop, wait, wait_at,
};
use crate::cost::Work;
use crate::lower::LowerError;
use crate::tile::build::block_trips;

/// Ids per chunk of the sort (64 KiB of `i32`).
pub const CHUNK: u64 = 16384;

/// The counting-sort kernel, streaming the ids in chunks of at most `max_chunk` (a multiple of
/// 8). Parameters: `ids i32 [pairs]` in, `offsets i32 [experts + 1]` and `places i32 [pairs]`
/// out, where `pairs = tokens · top_k`.
pub fn sort_kernel(
    name: &str,
    pairs: u64,
    experts: u64,
    max_chunk: u64,
    target: &Target,
) -> Result<(Kernel, Work), LowerError> {
    let chunk = pitch(pairs, DType::I32).min(max_chunk);
    let chunks = pairs.div_ceil(chunk);
    let ep = pitch(experts + 1, DType::I32);
    let params = vec![
        param("ids", DType::I32, vec![pairs], ParamRole::Input),
        param("offsets", DType::I32, vec![experts + 1], ParamRole::Output),
        param("places", DType::I32, vec![pairs], ParamRole::Output),
    ];
    let mut planner = BufferPlanner::new();
    let ids = planner.add(target, ub("ids", DType::I32, 1, chunk, 1));
    let places = planner.add(target, ub("places", DType::I32, 1, chunk, 1));
    let count = planner.add(target, ub("cursor", DType::I32, 1, ep, 1));
    let offsets = planner.add(target, ub("offsets", DType::I32, 1, ep, 1));
    let buffers = planner.finish();
    let used = 2 * ub_bytes(DType::I32, 1, chunk) + 2 * ub_bytes(DType::I32, 1, ep);
    if used > target.buffers.ub.usable_bytes() {
        return Err(LowerError::Unsupported(format!(
            "{name}: {experts} experts do not fit the sort's UB counters"
        )));
    }
    let load_chunk = || {
        let mut s = vec![
            let_("lo", v("ch").mul(c(chunk))),
            let_("len", c(pairs).sub(v("lo")).min(c(chunk))),
            wait(Pipe::S, Pipe::Mte2, 0),
            Stmt::CopyIn {
                dst: tile(ids, c(0), (c(0), c(0)), (c(1), v("len"))),
                src: gm(0, (c(0), v("lo")), (c(1), v("len"))),
            },
        ];
        s.extend(sync(Pipe::Mte2, Pipe::S, 0));
        s
    };
    let planned_id = v("lo").add(v("i")).rem(c(experts));

    let mut vector = vec![vop(
        VecOp::Duplicate,
        at0(count, c(0)),
        vec![VecArg::Imm(0.0)],
        c(experts),
    )];
    vector.extend(sync(Pipe::V, Pipe::S, 0));
    vector.push(set(Pipe::S, Pipe::Mte2, 0));
    // Pass 1: rows per expert.
    let mut pass1 = load_chunk();
    pass1.push(for_(
        "i",
        v("len"),
        false,
        vec![
            load_ub("e", at0(ids, v("i")), planned_id.clone()),
            load_ub("n", at0(count, v("e")), c(0)),
            set_value(at0(count, v("e")), VecArg::Scalar(v("n").add(c(1)))),
        ],
    ));
    pass1.push(set(Pipe::S, Pipe::Mte2, 0));
    vector.push(for_("ch", c(chunks), false, pass1));
    // Exclusive prefix sums; the counters become each expert's next free place.
    vector.push(set_value(at0(offsets, c(0)), VecArg::Imm(0.0)));
    vector.push(for_(
        "e",
        c(experts),
        false,
        vec![
            load_ub("a", at0(offsets, v("e")), c(0)),
            load_ub("n", at0(count, v("e")), c(0)),
            set_value(
                at0(offsets, v("e").add(c(1))),
                VecArg::Scalar(v("a").add(v("n"))),
            ),
            set_value(at0(count, v("e")), VecArg::Scalar(v("a"))),
        ],
    ));
    vector.extend(sync(Pipe::S, Pipe::Mte3, 1));
    vector.push(Stmt::CopyOut {
        dst: gm(1, (c(0), c(0)), (c(1), c(experts + 1))),
        src: tile(offsets, c(0), (c(0), c(0)), (c(1), c(experts + 1))),
    });
    vector.push(set(Pipe::Mte3, Pipe::S, 0));
    // Pass 2: the place of every pair.
    let mut pass2 = load_chunk();
    pass2.push(wait(Pipe::Mte3, Pipe::S, 0));
    pass2.push(for_(
        "i",
        v("len"),
        false,
        vec![
            load_ub("e", at0(ids, v("i")), planned_id),
            load_ub("p", at0(count, v("e")), v("lo").add(v("i"))),
            set_value(at0(count, v("e")), VecArg::Scalar(v("p").add(c(1)))),
            set_value(at0(places, v("i")), VecArg::Scalar(v("p"))),
        ],
    ));
    pass2.push(set(Pipe::S, Pipe::Mte2, 0));
    pass2.extend(sync(Pipe::S, Pipe::Mte3, 0));
    pass2.push(Stmt::CopyOut {
        dst: gm(2, (c(0), v("lo")), (c(1), v("len"))),
        src: tile(places, c(0), (c(0), c(0)), (c(1), v("len"))),
    });
    pass2.push(set(Pipe::Mte3, Pipe::S, 0));
    vector.push(for_("ch", c(chunks), false, pass2));
    vector.extend([wait(Pipe::S, Pipe::Mte2, 0), wait(Pipe::Mte3, Pipe::S, 0)]);

    let tiling = [
        ("chunk", chunk),
        ("chunks", chunks),
        ("experts", experts),
        ("scalar_bookkeeping", 1),
    ];
    let kernel = Kernel::vector(name, 1, params, buffers, vector, &tiling);
    let work = Work {
        flops: pairs as f64,
        bytes: (pairs * 12 + (experts + 1) * 4) as f64,
        cube: false,
        dtype: DType::F32,
    };
    Ok((kernel, work))
}

/// The row-scatter kernel. Parameters: `x [tokens, hidden]` and `places i32 [tokens, top_k]`
/// in, `rows [tokens · top_k, hidden]` out (`rows[places[t, j]] = x[t]`).
pub fn scatter_kernel(
    name: &str,
    tokens: u64,
    hidden: u64,
    top_k: u64,
    dtype: DType,
    target: &Target,
) -> Result<(Kernel, Work), LowerError> {
    let hp = pitch(hidden, dtype);
    let row_bytes = ub_bytes(dtype, 1, hp);
    let max_rows = target.buffers.ub.usable_bytes() / (2 * row_bytes);
    if max_rows == 0 {
        return Err(LowerError::Unsupported(format!(
            "{name}: a row of {hidden} elements does not fit UB twice"
        )));
    }
    let aiv = u64::from(target.cores.aiv);
    let rows = tokens.div_ceil(aiv).clamp(1, max_rows);
    let tiles = tokens.div_ceil(rows);
    let blocks = tiles.min(aiv);
    let params = vec![
        param("x", dtype, vec![tokens, hidden], ParamRole::Input),
        param("places", DType::I32, vec![tokens, top_k], ParamRole::Input),
        param(
            "rows",
            dtype,
            vec![tokens * top_k, hidden],
            ParamRole::Output,
        ),
    ];
    let mut planner = BufferPlanner::new();
    let xb = planner.add(target, ub("x", dtype, rows, hp, 2));
    let buffers = planner.finish();
    let h = || c(hidden);
    let body = vec![
        let_("tile", v("blk").add(v("t").mul(c(blocks)))),
        let_("t0", v("tile").mul(c(rows))),
        let_("rl", c(tokens).sub(v("t0")).min(c(rows))),
        let_("s", v("t").rem(c(2))),
        wait_at(Pipe::Mte3, Pipe::Mte2, v("s")),
        Stmt::CopyIn {
            dst: tile(xb, v("s"), (c(0), c(0)), (v("rl"), h())),
            src: gm(0, (v("t0"), c(0)), (v("rl"), h())),
        },
        set_at(Pipe::Mte2, Pipe::Mte3, v("s")),
        wait_at(Pipe::Mte2, Pipe::Mte3, v("s")),
        for_(
            "r",
            v("rl"),
            false,
            vec![for_(
                "j",
                c(top_k),
                false,
                vec![
                    let_("pair", v("t0").add(v("r")).mul(c(top_k)).add(v("j"))),
                    load_gm("p", 1, v("pair"), v("pair")),
                    Stmt::CopyOut {
                        dst: gm(2, (v("p"), c(0)), (c(1), h())),
                        src: tile(xb, v("s"), (v("r"), c(0)), (c(1), h())),
                    },
                ],
            )],
        ),
        set_at(Pipe::Mte3, Pipe::Mte2, v("s")),
    ];
    let mut vector = vec![
        set(Pipe::Mte3, Pipe::Mte2, 0),
        set(Pipe::Mte3, Pipe::Mte2, 1),
    ];
    let trips = block_trips(tiles, blocks);
    vector.push(for_("t", trips, true, body));
    vector.extend([
        wait(Pipe::Mte3, Pipe::Mte2, 0),
        wait(Pipe::Mte3, Pipe::Mte2, 1),
    ]);
    let tiling = [("tile_tokens", rows), ("tiles", tiles), ("top_k", top_k)];
    let kernel = Kernel::vector(name, blocks as u32, params, buffers, vector, &tiling);
    let eb = dtype.bits() as f64 / 8.0;
    let work = Work {
        flops: 0.0,
        bytes: (tokens * hidden) as f64 * eb * (1.0 + top_k as f64) + (tokens * top_k * 4) as f64,
        cube: false,
        dtype,
    };
    Ok((kernel, work))
}

#[cfg(test)]
mod tests {
    use cubevec_ir::kernel::{GmData, execute, verify};

    use super::*;

    /// Ids streamed in several chunks sort exactly like a stable counting sort, experts without
    /// rows included.
    #[test]
    fn chunked_counting_sort_is_stable_and_exact() {
        let target = Target::by_name("ascend910b2").expect("target");
        let (pairs, experts) = (50u64, 7u64);
        let ids: Vec<i64> = (0..pairs)
            .map(|i| ((i * i * 3 + 1) % 5) as i64 * 3 / 2)
            .collect();
        let (kernel, _) = sort_kernel("sort", pairs, experts, 16, &target).expect("kernel");
        assert_eq!(kernel.tiling.get("chunks"), Some(&4));
        verify(&kernel, &target).expect("verify");
        let mut params = vec![
            GmData::from_i64(DType::I32, &ids),
            GmData::zeros(DType::I32, experts as usize + 1),
            GmData::zeros(DType::I32, pairs as usize),
        ];
        execute(&kernel, &mut params).expect("execute");
        let mut offsets = vec![0i64; experts as usize + 1];
        for &e in &ids {
            offsets[e as usize + 1] += 1;
        }
        for e in 0..experts as usize {
            offsets[e + 1] += offsets[e];
        }
        let mut next = offsets.clone();
        let places: Vec<f64> = ids
            .iter()
            .map(|&e| {
                next[e as usize] += 1;
                (next[e as usize] - 1) as f64
            })
            .collect();
        let want: Vec<f64> = offsets.iter().map(|&o| o as f64).collect();
        assert!(want.windows(2).any(|w| w[0] == w[1]), "an expert is empty");
        assert_eq!(params[1].to_f64_vec(), want);
        assert_eq!(params[2].to_f64_vec(), places);
    }
}
