//! The strided copy kernel behind every pure data-movement op.
//!
//! A copy is a list of [`CopyPart`]s, each moving, for every outer multi-index `o`, row `j` and
//! element `w` of a run,
//!
//! ```text
//! dst[dst_base + o·dst_strides + j·dst_pitch + w] = src[src_base + o·src_strides + row(j)·src_pitch + w]
//! ```
//!
//! where `row(j) = j`, or for a gather `(ids[j] + len) % len` read by the scalar unit. Each part
//! streams tiles of up to `rt` rows × `cw` run elements GM → UB (MTE2) → GM (MTE3) through one
//! double-buffered UB buffer; a strided tile is one `DataCopyPad` each way (the source rows at
//! their GM pitch), a gathered tile one `DataCopyPad` per row in and one out. Runs of one
//! element (transposes that move the last axis) put each element in its own 32-byte UB block,
//! which is what `DataCopyPad` does with one-element chunks, so element-wise reordering needs no
//! vector instruction. Work units (outer index × row tile × run chunk) are dealt round-robin
//! over the vector cores.

use cubevec_ir::DType;
use cubevec_ir::kernel::{BufId, BufferPlanner, Kernel, Param, ParamRole, Pipe, ScalarSrc, Stmt};
use cubevec_ir::target::Target;

use super::build::{
    bytes, c, costed, deal, digits, dot, fastest, for_, gm, handoff, let_, pitch, row_candidates,
    set, tile, ub, v, vector_work, wait,
};
use crate::cost::Work;
use crate::lower::{ArgRef, KernelCall, LowerError};

/// Most rows one `DataCopyPad` moves (`blockCount` ≤ 4095).
const MAX_BLOCKS: u64 = 4095;

/// One axis of a copy: its extent and its element strides in the source and the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Axis {
    /// Number of positions.
    pub extent: u64,
    /// Source stride in elements (0 broadcasts).
    pub src: u64,
    /// Destination stride in elements.
    pub dst: u64,
}

impl Axis {
    /// An axis.
    pub(crate) fn new(extent: u64, src: u64, dst: u64) -> Axis {
        Axis { extent, src, dst }
    }
}

/// Source rows chosen by an index tensor (a gather).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexRows {
    /// The parameter holding the integer ids, read flat: row `j` uses `ids[j]`.
    pub param: usize,
    /// Size of the indexed axis; negative ids count from its end.
    pub len: u64,
}

/// One strided copy between two parameters (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CopyPart {
    /// Source parameter.
    pub src: usize,
    /// Destination parameter.
    pub dst: usize,
    /// Outer axes, outermost first.
    pub outer: Vec<Axis>,
    /// The row axis: `extent` rows at pitches `src` and `dst`.
    pub rows: Axis,
    /// Contiguous elements per row.
    pub width: u64,
    /// First source element.
    pub src_base: u64,
    /// First destination element.
    pub dst_base: u64,
    /// Gathered rows instead of strided ones.
    pub index: Option<IndexRows>,
}

impl CopyPart {
    /// A part from arbitrary axes (outermost first): drops unit axes, merges axes that are
    /// contiguous in both tensors, takes the innermost axis as the run when it is contiguous in
    /// both (otherwise runs are single elements), and as the row axis the longest remaining
    /// axis that moves in the source and whose strides divide both tensors into whole rows
    /// (`src_elems`, `dst_elems` elements), so that each tensor can be viewed with that pitch.
    pub(crate) fn from_axes(
        (src, src_elems): (usize, u64),
        (dst, dst_elems): (usize, u64),
        axes: &[Axis],
        src_base: u64,
        dst_base: u64,
    ) -> CopyPart {
        let mut merged = coalesce(axes);
        let width = match merged.last() {
            Some(a) if a.src == 1 && a.dst == 1 => {
                let w = a.extent;
                merged.pop();
                w
            }
            _ => 1,
        };
        let row_axis = merged
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                a.src != 0 && src_elems.is_multiple_of(a.src) && dst_elems.is_multiple_of(a.dst)
            })
            .max_by_key(|(k, a)| (a.extent, *k))
            .map(|(k, _)| k);
        let rows = match row_axis {
            Some(k) => merged.remove(k),
            None => Axis::new(1, 0, 0),
        };
        CopyPart {
            src,
            dst,
            outer: merged,
            rows,
            width,
            src_base,
            dst_base,
            index: None,
        }
    }

    fn outer_units(&self) -> u64 {
        self.outer.iter().map(|a| a.extent).product()
    }

    fn elements(&self) -> u64 {
        self.outer_units() * self.rows.extent * self.width
    }
}

/// Drops unit axes and merges neighbours that are contiguous in both tensors.
fn coalesce(axes: &[Axis]) -> Vec<Axis> {
    let mut out: Vec<Axis> = Vec::new();
    for a in axes.iter().filter(|a| a.extent > 1) {
        if let Some(last) = out.last_mut()
            && last.src == a.src * a.extent
            && last.dst == a.dst * a.extent
        {
            last.extent *= a.extent;
            last.src = a.src;
            last.dst = a.dst;
            continue;
        }
        out.push(*a);
    }
    out
}

/// A GM tensor of a copy kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CopyParam {
    /// Parameter name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Elements.
    pub elements: u64,
    /// Read or written.
    pub role: ParamRole,
}

/// A copy kernel: its tensors and parts, all of one element type (index tensors aside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Copy {
    /// Kernel name.
    pub name: String,
    /// Element type of the moved data.
    pub dtype: DType,
    /// Parameters, in order.
    pub params: Vec<CopyParam>,
    /// Parts, in order.
    pub parts: Vec<CopyPart>,
}

impl Copy {
    /// The row pitch each parameter is viewed with: the pitch of the parts that move several
    /// rows of it at once, else the whole tensor as one row.
    fn views(&self) -> Result<Vec<u64>, LowerError> {
        let mut views: Vec<Option<u64>> = vec![None; self.params.len()];
        for part in &self.parts {
            let many = part.rows.extent > 1;
            let demands = [
                (part.src, part.rows.src, many || part.index.is_some()),
                (part.dst, part.rows.dst, many),
            ];
            for (param, p, demanded) in demands {
                if !demanded {
                    continue;
                }
                match views[param] {
                    Some(q) if q != p => {
                        return Err(LowerError::Unsupported(format!(
                            "copy `{}`: parameter `{}` is walked with pitches {q} and {p}",
                            self.name, self.params[param].name
                        )));
                    }
                    _ => views[param] = Some(p),
                }
            }
        }
        self.params
            .iter()
            .zip(views)
            .map(|(p, view)| {
                let pitch = view.unwrap_or(p.elements).max(1);
                if p.elements.is_multiple_of(pitch) {
                    Ok(pitch)
                } else {
                    Err(LowerError::Unsupported(format!(
                        "copy `{}`: {} elements of `{}` are not rows of {pitch}",
                        self.name, p.elements, p.name
                    )))
                }
            })
            .collect()
    }

    fn work(&self) -> Work {
        let moved: u64 = self.parts.iter().map(CopyPart::elements).sum();
        vector_work(0.0, 2.0 * bytes(moved, self.dtype) as f64, self.dtype)
    }
}

/// Builds the kernel with tiles of `rt` rows × `cw` run elements.
fn build(copy: &Copy, rt: u64, cw: u64, target: &Target) -> Result<Kernel, LowerError> {
    let views = copy.views()?;
    let params: Vec<Param> = copy
        .params
        .iter()
        .zip(&views)
        .map(|(p, &pitch)| Param {
            name: p.name.clone(),
            dtype: p.dtype,
            shape: vec![p.elements / pitch, pitch],
            role: p.role,
        })
        .collect();
    let mut planner = BufferPlanner::new();
    let buf = planner.add(target, ub("tile", copy.dtype, rt, pitch(cw, copy.dtype), 2));
    let buffers = planner.finish();

    let units: Vec<u64> = copy
        .parts
        .iter()
        .map(|p| p.outer_units() * p.rows.extent.div_ceil(rt) * p.width.div_ceil(cw))
        .collect();
    let total: u64 = units.iter().sum();
    let blocks = total.clamp(1, target.cores.aiv as u64);
    let mut vector = vec![
        set(Pipe::Mte3, Pipe::Mte2, c(0)),
        set(Pipe::Mte3, Pipe::Mte2, c(1)),
    ];
    let mut start = 0;
    for (part, &n_units) in copy.parts.iter().zip(&units) {
        if n_units > 0 {
            vector.push(part_loop(part, &views, buf, rt, cw, blocks, start, n_units));
        }
        start += n_units;
    }
    vector.push(wait(Pipe::Mte3, Pipe::Mte2, c(0)));
    vector.push(wait(Pipe::Mte3, Pipe::Mte2, c(1)));
    let tiling = [("tile_rows", rt), ("run_chunk", cw), ("units", total)];
    Ok(Kernel::vector(
        &copy.name,
        blocks as u32,
        params,
        buffers,
        vector,
        &tiling,
    ))
}

/// The round-robin loop over one part's work units.
#[allow(clippy::too_many_arguments)]
fn part_loop(
    part: &CopyPart,
    views: &[u64],
    buf: BufId,
    rt: u64,
    cw: u64,
    blocks: u64,
    start: u64,
    n_units: u64,
) -> Stmt {
    let nc = part.width.div_ceil(cw);
    let nj = part.rows.extent.div_ceil(rt);
    let (first, trips) = deal(n_units, blocks, start);
    let extents: Vec<u64> = part.outer.iter().map(|a| a.extent).collect();
    let d = digits(v("ou"), &extents);
    let src_strides: Vec<u64> = part.outer.iter().map(|a| a.src).collect();
    let dst_strides: Vec<u64> = part.outer.iter().map(|a| a.dst).collect();
    let (ps, pd) = (views[part.src], views[part.dst]);
    let mut body = vec![
        let_("u", first.add(v("t").mul(c(blocks)))),
        let_("cu", v("u").rem(c(nc))),
        let_("ju", v("u").div(c(nc)).rem(c(nj))),
        let_("ou", v("u").div(c(nc * nj))),
        let_("c0", v("cu").mul(c(cw))),
        let_("wl", c(part.width).sub(v("c0")).min(c(cw))),
        let_("j0", v("ju").mul(c(rt))),
        let_("n", c(part.rows.extent).sub(v("j0")).min(c(rt))),
        let_(
            "so",
            c(part.src_base).add(dot(&d, &src_strides)).add(v("c0")),
        ),
        let_(
            "do",
            c(part.dst_base)
                .add(dot(&d, &dst_strides))
                .add(v("j0").mul(c(part.rows.dst)))
                .add(v("c0")),
        ),
        let_("s", v("t").rem(c(2))),
        wait(Pipe::Mte3, Pipe::Mte2, v("s")),
    ];
    match part.index {
        None => {
            body.push(let_("sj", v("so").add(v("j0").mul(c(part.rows.src)))));
            body.push(Stmt::CopyIn {
                dst: tile(buf, v("s"), (c(0), c(0)), (v("n"), v("wl"))),
                src: gm(
                    part.src,
                    (v("sj").div(c(ps)), v("sj").rem(c(ps))),
                    (v("n"), v("wl")),
                ),
            });
        }
        Some(ix) => {
            let row = vec![
                Stmt::LoadScalar {
                    var: "id".into(),
                    src: ScalarSrc::Gm {
                        param: ix.param,
                        index: v("j0").add(v("k")),
                    },
                    planned: v("j0").add(v("k")).rem(c(ix.len)),
                },
                let_(
                    "sk",
                    v("so").add(v("id").add(c(ix.len)).rem(c(ix.len)).mul(c(part.rows.src))),
                ),
                Stmt::CopyIn {
                    dst: tile(buf, v("s"), (v("k"), c(0)), (c(1), v("wl"))),
                    src: gm(
                        part.src,
                        (v("sk").div(c(ps)), v("sk").rem(c(ps))),
                        (c(1), v("wl")),
                    ),
                },
            ];
            body.push(for_("k", v("n"), false, row));
        }
    }
    body.extend(handoff(Pipe::Mte2, Pipe::Mte3, v("s")));
    body.push(Stmt::CopyOut {
        dst: gm(
            part.dst,
            (v("do").div(c(pd)), v("do").rem(c(pd))),
            (v("n"), v("wl")),
        ),
        src: tile(buf, v("s"), (c(0), c(0)), (v("n"), v("wl"))),
    });
    body.push(set(Pipe::Mte3, Pipe::Mte2, v("s")));
    for_("t", trips, true, body)
}

/// Tiles `copy` (the largest tiles that fit half of UB, and splits that spread the rows over
/// the vector cores), keeps the fastest under the cost model, and binds it to `args`.
pub(crate) fn plan(
    copy: &Copy,
    args: Vec<ArgRef>,
    target: &Target,
) -> Result<KernelCall, LowerError> {
    if copy.parts.is_empty() {
        return Err(LowerError::Unsupported(format!(
            "copy `{}` moves nothing",
            copy.name
        )));
    }
    let half = target.buffers.ub.usable_bytes() / 2;
    let eb = bytes(1, copy.dtype).max(1);
    let block = pitch(1, copy.dtype);
    let widest = copy.parts.iter().map(|p| p.width).max().unwrap_or(1);
    let cap = (half / eb / block * block).max(block);
    let cw = widest.min(cap);
    let row_bytes = bytes(pitch(cw, copy.dtype), copy.dtype);
    let max_rows = (half / row_bytes).clamp(1, MAX_BLOCKS);
    let big = copy
        .parts
        .iter()
        .max_by_key(|p| p.elements())
        .expect("parts are not empty");
    let groups = big.outer_units() * big.width.div_ceil(cw);
    let work = copy.work();
    fastest(
        row_candidates(max_rows, big.rows.extent, groups, target.cores.aiv as u64)
            .into_iter()
            .map(|rt| {
                let kernel = build(copy, rt, cw, target)?;
                costed(kernel, args.clone(), target, &work)
            }),
        target,
    )
}
