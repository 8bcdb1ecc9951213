//! Splitting a graph into segments and grouping identical segments into templates.
//!
//! A model is a stack of layers joined by the residual stream. Walking the nodes in topological
//! order, a *cut* is a point where a single input-dependent value is live (values that do not
//! depend on the graph inputs, such as weights and rotary tables, are passed to every segment as
//! parameters and do not count; values live across a large part of the graph count only between
//! uses a few nodes apart). Pieces shorter than a minimum number of nodes are merged with a
//! neighbour, unless that neighbour's ops repeat elsewhere (a layer), which then stays whole.
//!
//! Each segment gets a signature: its ops and attributes, how nodes connect, and the kind and
//! type of every parameter (weights by dtype and shape, not by identity; small inline constants
//! by value). Segments with equal signatures compute the same function of their parameters, so
//! one optimised program serves them all (DeepSeek-V3's 58 MoE layers are one template).

use cubevec_ir::Tensor;
use cubevec_ir::graph::{Definition, Graph, NodeId, ValueId, WeightData};
use rustc_hash::{FxHashMap, FxHasher};

use super::index_form::{IndexForm, IndexForms};
use super::language::ConstTensor;

/// What a segment parameter is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ParamKind {
    /// A value computed at run time (graph input or a result of another segment).
    Activation,
    /// A weight whose data is external, absent or large.
    Weight,
    /// A small inline constant, carried by value.
    Const(ConstTensor),
}

/// A contiguous run of nodes (in topological order) and the values crossing its boundary.
#[derive(Clone, Debug)]
pub struct Segment {
    /// The nodes, in topological order.
    pub nodes: Vec<NodeId>,
    /// Values read from outside, in order of first use.
    pub params: Vec<ValueId>,
    /// What each parameter is.
    pub kinds: Vec<ParamKind>,
    /// Values defined here and used later or returned by the graph (or needed as context by a
    /// later segment), in order of definition.
    pub outputs: Vec<ValueId>,
    /// How some activation parameters were computed from other parameters (a few levels of
    /// the producers before the segment), so rules can look through the segment boundary.
    pub context: Vec<ContextDef>,
}

/// A parameter's definition in terms of other parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ContextDef {
    /// The parameter defined.
    pub param: usize,
    /// Its op.
    pub op: cubevec_ir::Op,
    /// Its operands, as parameter indices (`None` for absent operands).
    pub inputs: Vec<Option<usize>>,
}

/// How many producer levels before a segment are given to it as context.
const CONTEXT_DEPTH: usize = 3;

/// The inline initializers small enough to carry by value, by value id.
pub fn small_constants(graph: &Graph, limit: usize) -> FxHashMap<ValueId, ConstTensor> {
    let mut out = FxHashMap::default();
    for init in &graph.initializers {
        let WeightData::Inline(bytes) = &init.data else {
            continue;
        };
        let ty = &graph.value(init.value).ty;
        let Some(dims) = ty.shape.as_known() else {
            continue;
        };
        let count: u64 = dims.iter().product();
        if count > limit as u64 {
            continue;
        }
        let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
        if let Ok(t) = Tensor::from_bytes(ty.dtype, shape, bytes.clone()) {
            out.insert(init.value, ConstTensor::from_tensor(&t));
        }
    }
    out
}

/// Splits `graph` (verified, so acyclic) into segments of at least `min_nodes` nodes.
pub fn split(
    graph: &Graph,
    order: &[NodeId],
    min_nodes: usize,
    constants: &FxHashMap<ValueId, ConstTensor>,
) -> Vec<Segment> {
    let n = order.len();
    let defs = graph.definitions();
    let mut position = vec![0usize; graph.nodes.len()];
    for (i, &node) in order.iter().enumerate() {
        position[node.index()] = i;
    }
    // Last position using each value (n for graph outputs).
    let mut last_use: Vec<Option<usize>> = vec![None; graph.values.len()];
    for (i, &node) in order.iter().enumerate() {
        for v in graph.node(node).inputs.iter().flatten() {
            let slot = &mut last_use[v.index()];
            *slot = Some(slot.map_or(i, |u| u.max(i)));
        }
    }
    for &v in &graph.outputs {
        last_use[v.index()] = Some(n);
    }
    // Whether each value depends on a graph input.
    let mut input_dependent = vec![false; graph.values.len()];
    for &v in &graph.inputs {
        input_dependent[v.index()] = true;
    }
    for &node in order {
        let node = graph.node(node);
        let dep = node
            .inputs
            .iter()
            .flatten()
            .any(|v| input_dependent[v.index()]);
        for &out in &node.outputs {
            input_dependent[out.index()] = dep;
        }
    }
    let long_span = (n / 4).max(4 * min_nodes.max(1));
    // live[b]: values live across boundary b (between positions b-1 and b).
    let mut delta = vec![0i64; n + 2];
    // Values live across a long span: where each was defined (the position before its first
    // boundary) and its uses, in order.
    let mut long: FxHashMap<ValueId, Vec<usize>> = FxHashMap::default();
    for (v, def) in defs.iter().enumerate() {
        let Some(last) = last_use[v] else { continue };
        if !input_dependent[v] {
            continue;
        }
        let first_boundary = match def {
            Some(Definition::Node { node, .. }) => position[node.index()] + 1,
            Some(Definition::Input(_)) => 1,
            _ => continue,
        };
        if first_boundary > last {
            continue;
        }
        if last - first_boundary > long_span {
            long.insert(ValueId(v as u32), vec![first_boundary - 1]);
            continue;
        }
        delta[first_boundary] += 1;
        delta[last + 1] -= 1;
    }
    // A long-lived value counts only across the short gaps between its uses: a position table
    // read by every layer does not hold the graph together, but a residual value read on both
    // sides of a boundary a few nodes apart (inside the RMSNorm that follows it) does.
    for (i, &node) in order.iter().enumerate() {
        for v in graph.node(node).inputs.iter().flatten() {
            if let Some(events) = long.get_mut(v)
                && events.last() != Some(&i)
            {
                events.push(i);
            }
        }
    }
    let gap = min_nodes.max(1);
    for events in long.values() {
        for pair in events.windows(2) {
            if pair[1] - pair[0] <= gap {
                delta[pair[0] + 1] += 1;
                delta[pair[1] + 1] -= 1;
            }
        }
    }
    let mut cuts = Vec::new();
    let mut live = 0i64;
    for (b, d) in delta.iter().enumerate().take(n) {
        live += d;
        if b > 0 && live == 1 {
            cuts.push(b);
        }
    }
    let ranges = group_pieces(graph, order, &cuts, min_nodes.max(1));
    let mut mark = vec![usize::MAX; graph.values.len()];
    let mut segments: Vec<Segment> = ranges
        .iter()
        .enumerate()
        .map(|(i, &(s, e))| {
            segment(
                graph,
                &order[s..e],
                &defs,
                &position,
                (s, e),
                &last_use,
                constants,
                (&mut mark, i),
            )
        })
        .collect();
    // Context: producers of activation parameters, whose values the producing segments export.
    let mut exported = vec![false; graph.values.len()];
    for seg in &mut segments {
        add_context(
            graph,
            seg,
            &defs,
            constants,
            &input_dependent,
            &mut exported,
        );
    }
    for (seg, &(s, e)) in segments.iter_mut().zip(&ranges) {
        seg.outputs = order[s..e]
            .iter()
            .flat_map(|&n| graph.node(n).outputs.iter().copied())
            .filter(|v| exported[v.index()] || last_use[v.index()].is_some_and(|u| u >= e))
            .collect();
    }
    segments
}

/// The kind of an external value.
fn kind_of(
    v: ValueId,
    defs: &[Option<Definition>],
    constants: &FxHashMap<ValueId, ConstTensor>,
) -> ParamKind {
    match defs.get(v.index()).copied().flatten() {
        Some(Definition::Initializer(_)) => match constants.get(&v) {
            Some(c) => ParamKind::Const(c.clone()),
            None => ParamKind::Weight,
        },
        _ => ParamKind::Activation,
    }
}

/// Groups the pieces between `cuts` into segment ranges (positions in `order`). A piece of at
/// least `min` nodes stands alone. A run of shorter pieces is cut into chunks of at least `min`
/// nodes; what is left (or a whole run shorter than `min`) joins the next piece, or else the one
/// before, unless that piece's ops repeat elsewhere in the graph: a layer is worth more as a
/// replay of its template than the short piece is as context, so then the short piece stands
/// alone (DeepSeek-V3's embedding, its dense MLPs between attention blocks, the final norm and
/// head).
fn group_pieces(
    graph: &Graph,
    order: &[NodeId],
    cuts: &[usize],
    min: usize,
) -> Vec<(usize, usize)> {
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &c in cuts.iter().chain(std::iter::once(&order.len())) {
        if c > start {
            pieces.push((start, c));
            start = c;
        }
    }
    let repeats = repeated_pieces(graph, order, &pieces);
    // Ranges so far, each with whether it is a piece whose ops repeat (kept whole).
    let mut ranges: Vec<((usize, usize), bool)> = Vec::new();
    // The run of short pieces not placed yet.
    let mut run: Option<(usize, usize)> = None;
    for (&piece, &repeated) in pieces.iter().zip(&repeats) {
        if piece.1 - piece.0 < min {
            let (s, _) = run.unwrap_or(piece);
            if piece.1 - s >= min {
                ranges.push(((s, piece.1), false));
                run = None;
            } else {
                run = Some((s, piece.1));
            }
            continue;
        }
        match run.take() {
            Some(short) if !repeated => ranges.push(((short.0, piece.1), false)),
            Some(short) => {
                place_short(&mut ranges, short);
                ranges.push((piece, true));
            }
            None => ranges.push((piece, repeated)),
        }
    }
    if let Some(short) = run {
        place_short(&mut ranges, short);
    }
    ranges.into_iter().map(|(range, _)| range).collect()
}

/// Appends the short range `short` to the last range unless that one repeats (or there is
/// none), in which case it becomes a range of its own.
fn place_short(ranges: &mut Vec<((usize, usize), bool)>, short: (usize, usize)) {
    match ranges.last_mut() {
        Some((last, false)) => last.1 = short.1,
        _ => ranges.push((short, false)),
    }
}

/// For each piece (positions in `order`), whether another piece has the same ops.
fn repeated_pieces(graph: &Graph, order: &[NodeId], pieces: &[(usize, usize)]) -> Vec<bool> {
    use std::hash::{Hash, Hasher};
    let ops = |(s, e): (usize, usize)| order[s..e].iter().map(|&n| &graph.node(n).op);
    let mut by_hash: FxHashMap<u64, Vec<usize>> = FxHashMap::default();
    let mut repeats = vec![false; pieces.len()];
    for (i, &piece) in pieces.iter().enumerate() {
        let mut hasher = FxHasher::default();
        for op in ops(piece) {
            op.hash(&mut hasher);
        }
        let same = by_hash.entry(hasher.finish()).or_default();
        if let Some(&j) = same.iter().find(|&&j| ops(pieces[j]).eq(ops(piece))) {
            repeats[i] = true;
            repeats[j] = true;
        } else {
            same.push(i);
        }
    }
    repeats
}

/// The index form of parameter `v` of kind `kind`: only constants and node results have forms,
/// so a weight's is not looked up.
pub fn param_form<'f>(
    forms: &'f IndexForms,
    v: ValueId,
    kind: &ParamKind,
) -> Option<&'f IndexForm> {
    match kind {
        ParamKind::Weight => None,
        _ => forms.get(&v),
    }
}

/// Adds up to [`CONTEXT_DEPTH`] levels of producers of the segment's activation parameters that
/// do not depend on the graph inputs (rotary tables, position-only masks), marking every value
/// that becomes a parameter this way as exported by its segment.
fn add_context(
    graph: &Graph,
    seg: &mut Segment,
    defs: &[Option<Definition>],
    constants: &FxHashMap<ValueId, ConstTensor>,
    input_dependent: &[bool],
    exported: &mut [bool],
) {
    let mut index: FxHashMap<ValueId, usize> = seg
        .params
        .iter()
        .enumerate()
        .map(|(i, &v)| (v, i))
        .collect();
    let mut frontier: Vec<usize> = (0..seg.params.len()).collect();
    for _ in 0..CONTEXT_DEPTH {
        let mut next = Vec::new();
        for p in frontier {
            if seg.kinds[p] != ParamKind::Activation || input_dependent[seg.params[p].index()] {
                continue;
            }
            let Some(Definition::Node { node, .. }) =
                defs.get(seg.params[p].index()).copied().flatten()
            else {
                continue;
            };
            let node = graph.node(node);
            if node.outputs.len() != 1 {
                continue;
            }
            let mut inputs = Vec::with_capacity(node.inputs.len());
            for &u in &node.inputs {
                inputs.push(u.map(|u| {
                    *index.entry(u).or_insert_with(|| {
                        seg.params.push(u);
                        seg.kinds.push(kind_of(u, defs, constants));
                        if matches!(
                            defs.get(u.index()).copied().flatten(),
                            Some(Definition::Node { .. })
                        ) {
                            exported[u.index()] = true;
                        }
                        next.push(seg.params.len() - 1);
                        seg.params.len() - 1
                    })
                }));
            }
            seg.context.push(ContextDef {
                param: p,
                op: node.op.clone(),
                inputs,
            });
        }
        frontier = next;
    }
}

/// The segment of the nodes at positions `start..end` of the order. `mark` is a scratch table
/// by value index with the segment's index `this`, which no entry holds on entry.
#[allow(clippy::too_many_arguments)]
fn segment(
    graph: &Graph,
    nodes: &[NodeId],
    defs: &[Option<Definition>],
    position: &[usize],
    (start, end): (usize, usize),
    last_use: &[Option<usize>],
    constants: &FxHashMap<ValueId, ConstTensor>,
    (mark, this): (&mut [usize], usize),
) -> Segment {
    let inside = |v: ValueId| match defs.get(v.index()).copied().flatten() {
        Some(Definition::Node { node, .. }) => (start..end).contains(&position[node.index()]),
        _ => false,
    };
    let mut params = Vec::new();
    let mut kinds = Vec::new();
    let mut outputs = Vec::new();
    for &node in nodes {
        let node = graph.node(node);
        for &v in node.inputs.iter().flatten() {
            if !inside(v) && mark[v.index()] != this {
                mark[v.index()] = this;
                params.push(v);
                kinds.push(kind_of(v, defs, constants));
            }
        }
        for &out in &node.outputs {
            if last_use[out.index()].is_some_and(|u| u >= end) {
                outputs.push(out);
            }
        }
    }
    Segment {
        nodes: nodes.to_vec(),
        params,
        kinds,
        outputs,
        context: Vec::new(),
    }
}

/// A reference from a node operand or a segment output: absent, a parameter, or a result of an
/// earlier node of the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Ref {
    Absent,
    Param(usize),
    Local(usize, usize),
}

/// The segment's structure with value ids replaced by positions, item by item. `slots` is a
/// scratch table indexed by value id, all [`Ref::Absent`] on entry and on return.
fn items<'g>(
    graph: &'g Graph,
    seg: &'g Segment,
    forms: &'g IndexForms,
    slots: &mut [Ref],
) -> Vec<Item<'g>> {
    let mut out = Vec::with_capacity(seg.params.len() + 4 * seg.nodes.len() + seg.outputs.len());
    for (i, (&v, kind)) in seg.params.iter().zip(&seg.kinds).enumerate() {
        slots[v.index()] = Ref::Param(i);
        out.push(Item::Param(
            kind,
            &graph.value(v).ty,
            param_form(forms, v, kind),
        ));
    }
    for def in &seg.context {
        out.push(Item::Node(&def.op, def.inputs.len()));
        out.push(Item::Ref(Ref::Param(def.param)));
        for &i in &def.inputs {
            out.push(Item::Ref(i.map_or(Ref::Absent, Ref::Param)));
        }
    }
    let resolve = |v: Option<ValueId>, slots: &[Ref]| v.map_or(Ref::Absent, |v| slots[v.index()]);
    for (i, &node) in seg.nodes.iter().enumerate() {
        let node = graph.node(node);
        out.push(Item::Node(&node.op, node.inputs.len()));
        for &v in &node.inputs {
            out.push(Item::Ref(resolve(v, slots)));
        }
        for (o, &v) in node.outputs.iter().enumerate() {
            slots[v.index()] = Ref::Local(i, o);
            out.push(Item::Result(&graph.value(v).ty));
        }
    }
    for &v in &seg.outputs {
        out.push(Item::Ref(resolve(Some(v), slots)));
    }
    for &v in &seg.params {
        slots[v.index()] = Ref::Absent;
    }
    for &node in &seg.nodes {
        for &v in &graph.node(node).outputs {
            slots[v.index()] = Ref::Absent;
        }
    }
    out
}

/// One element of a segment's structure: a parameter's kind, type and index form (what rules
/// may rely on), an op with its operand count, an operand, or the declared type of a result
/// (so that replayed programs declare the same types as the template's, see [`super::check`]).
#[derive(Debug, PartialEq)]
enum Item<'a> {
    Param(
        &'a ParamKind,
        &'a cubevec_ir::graph::TensorType,
        Option<&'a IndexForm>,
    ),
    Node(&'a cubevec_ir::Op, usize),
    Ref(Ref),
    Result(&'a cubevec_ir::graph::TensorType),
}

/// Hashes all but the parameters' types and forms and the results' shapes (their dtypes and
/// ranks only): shapes are costly to hash, and equal hashes are compared in full anyway.
impl std::hash::Hash for Item<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Item::Param(kind, _, _) => kind.hash(state),
            Item::Node(op, inputs) => (op, inputs).hash(state),
            Item::Ref(r) => r.hash(state),
            Item::Result(ty) => (ty.dtype, ty.shape.rank()).hash(state),
        }
    }
}

impl std::hash::Hash for ParamKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        if let ParamKind::Const(c) = self {
            c.hash(state);
        }
    }
}

/// Groups segments by structure: template index per segment, and the first segment of each
/// template. Parameters must also have the same index forms (`forms`), since rules rely on
/// them. Structures are hashed with [`FxHasher`] and compared in full.
pub fn templates(
    graph: &Graph,
    segments: &[Segment],
    forms: &IndexForms,
) -> (Vec<usize>, Vec<usize>) {
    use std::hash::{Hash, Hasher};
    let mut slots = vec![Ref::Absent; graph.values.len()];
    let mut by_hash: FxHashMap<u64, Vec<usize>> = FxHashMap::default();
    let mut structures: Vec<Vec<Item<'_>>> = Vec::new();
    let mut firsts: Vec<usize> = Vec::new();
    let mut of_segment = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        let structure = items(graph, seg, forms, &mut slots);
        let mut hasher = FxHasher::default();
        structure.hash(&mut hasher);
        let candidates = by_hash.entry(hasher.finish()).or_default();
        let t = match candidates
            .iter()
            .copied()
            .find(|&t| structures[t] == structure)
        {
            Some(t) => t,
            None => {
                candidates.push(firsts.len());
                firsts.push(i);
                structures.push(structure);
                firsts.len() - 1
            }
        };
        of_segment.push(t);
    }
    (of_segment, firsts)
}
