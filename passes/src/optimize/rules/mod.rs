//! Rewrite rules, one module per family, and the adapter that runs them in `egg`.
//!
//! A rule inspects the e-graph through a `Ctx` and describes what to add as a `Recipe`: new
//! nodes over existing e-classes, and the e-classes each result is equal to. Building a recipe
//! infers the type of every new node first, so a rule whose right-hand side would not type-check
//! adds nothing (the conditional-rewrite discipline); a recipe whose result type differs from the
//! class it is merged into is caught by the analysis as an unsound merge.
//!
//! Every rule is directional: no rule undoes another, and there is no general commutativity or
//! associativity (commuted operand orders are matched explicitly instead).

mod activation;
mod algebra;
mod attention;
mod fold;
mod layout;
mod matmul;
mod moe;
mod norm;
mod rope;
mod softmax;

use std::str::FromStr;
use std::sync::Mutex;

use cubevec_ir::Dim;
use cubevec_ir::graph::TensorType;
use cubevec_ir::infer::infer_types;
use cubevec_ir::op::{BinaryOp, Op};
use cubevec_ir::shape::normalize_axis;
use egg::{Applier, Id, PatternAst, Rewrite, SearchMatches, Searcher, Subst, Symbol, Var};
use serde::Serialize;

use super::analysis::{ClassData, TensorAnalysis, TensorEGraph};
use super::language::{ConstTensor, TensorNode, TensorOp};

/// A family of rules, selectable in [`super::OptimizeOptions::rules`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RuleFamily {
    /// Identities and simplifications (`x+0`, `x*1`, no-op casts/reshapes/transposes,
    /// transpose and reshape composition, exact cast chains).
    Algebra,
    /// Constant folding of small constant subgraphs.
    Fold,
    /// Layout folding: transposes into `Gemm` operand flags, `MatMul` by a transposed matrix
    /// into `Gemm`.
    Layout,
    /// RMSNorm recognition.
    Norm,
    /// SiLU and SwiGLU recognition.
    Activation,
    /// Softmax recognition.
    Softmax,
    /// Rotary embedding recognition.
    Rope,
    /// Attention recognition.
    Attention,
    /// Exported MoE subgraphs into the `Moe` op.
    Moe,
    /// Merging parallel matmuls and reordering matmul chains.
    MatMul,
}

impl RuleFamily {
    /// Every family.
    pub const ALL: [RuleFamily; 10] = [
        RuleFamily::Algebra,
        RuleFamily::Fold,
        RuleFamily::Layout,
        RuleFamily::Norm,
        RuleFamily::Activation,
        RuleFamily::Softmax,
        RuleFamily::Rope,
        RuleFamily::Attention,
        RuleFamily::Moe,
        RuleFamily::MatMul,
    ];
}

/// A rewrite rule over the tensor e-graph.
pub trait Rule: Send + Sync {
    /// The rule's name (reported with its match counts).
    fn name(&self) -> &'static str;

    /// Adds to `out` what to rewrite for e-node `node` of e-class `class`.
    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>);

    /// Adds every rewrite in the e-graph to `out`, stopping after `limit`; by default calls
    /// [`Rule::find`] on each e-node.
    fn find_all(&self, ctx: &Ctx<'_>, limit: usize, out: &mut Vec<Recipe>) {
        for class in ctx.egraph.classes() {
            for node in &class.nodes {
                if out.len() >= limit {
                    return;
                }
                self.find(ctx, class.id, node, out);
            }
        }
    }
}

/// The rules of the selected families, in a fixed order.
pub(crate) fn rules(families: &[RuleFamily], fold_limit: usize) -> Vec<Box<dyn Rule>> {
    let mut out: Vec<Box<dyn Rule>> = Vec::new();
    for family in RuleFamily::ALL {
        if !families.contains(&family) {
            continue;
        }
        match family {
            RuleFamily::Algebra => out.extend(algebra::rules()),
            RuleFamily::Fold => out.extend(fold::rules(fold_limit)),
            RuleFamily::Layout => out.extend(layout::rules()),
            RuleFamily::Norm => out.extend(norm::rules()),
            RuleFamily::Activation => out.extend(activation::rules()),
            RuleFamily::Softmax => out.extend(softmax::rules()),
            RuleFamily::Rope => out.extend(rope::rules()),
            RuleFamily::Attention => out.extend(attention::rules()),
            RuleFamily::Moe => out.extend(moe::rules()),
            RuleFamily::MatMul => out.extend(matmul::rules()),
        }
    }
    out
}

/// Read access to the e-graph for rules.
pub struct Ctx<'a> {
    /// The e-graph.
    pub egraph: &'a TensorEGraph,
}

impl<'a> Ctx<'a> {
    /// The facts of a class.
    pub fn data(&self, id: Id) -> &'a ClassData {
        &self.egraph[id].data
    }

    /// The tensor type of a (non-tuple) class.
    pub fn ty(&self, id: Id) -> Option<&'a TensorType> {
        self.egraph[id].data.tensor()
    }

    /// Whether two classes are the same (after union).
    pub fn same(&self, a: Id, b: Id) -> bool {
        self.egraph.find(a) == self.egraph.find(b)
    }

    /// The IR op nodes of a class: `(op, operands)`.
    pub fn ops(&self, id: Id) -> impl Iterator<Item = (&'a Op, &'a [Id])> + 'a {
        self.egraph[id]
            .nodes
            .iter()
            .filter_map(|n| n.ir_op().map(|op| (op, n.children.as_slice())))
    }

    /// The operands of every node of `id` with exactly this op.
    pub fn with_op(&self, id: Id, op: &Op) -> Vec<&'a [Id]> {
        self.ops(id)
            .filter(|(o, _)| *o == op)
            .map(|(_, c)| c)
            .collect()
    }

    /// The operand of every unary node of `id` with this op.
    pub fn unary(&self, id: Id, op: &Op) -> Vec<Id> {
        self.with_op(id, op)
            .into_iter()
            .filter_map(|c| c.first().copied())
            .collect()
    }

    /// The operand pairs of every binary node of `id` with this op, in both orders when
    /// `commuted` (for commutative ops such as `Add` and `Mul`).
    pub fn binary(&self, id: Id, op: BinaryOp, commuted: bool) -> Vec<(Id, Id)> {
        let mut out = Vec::new();
        for c in self.with_op(id, &Op::Binary(op)) {
            if let [a, b] = c {
                out.push((*a, *b));
                if commuted && !self.same(*a, *b) {
                    out.push((*b, *a));
                }
            }
        }
        out
    }

    /// A constant held by the class.
    pub fn constant(&self, id: Id) -> Option<&'a ConstTensor> {
        self.egraph[id].nodes.iter().find_map(|n| match &n.op {
            TensorOp::Const(c) => Some(c),
            _ => None,
        })
    }

    /// The value of a constant whose elements are all equal.
    pub fn splat(&self, id: Id) -> Option<f64> {
        self.constant(id).and_then(ConstTensor::splat_value)
    }

    /// Whether the class is an absent optional operand.
    pub fn is_absent(&self, id: Id) -> bool {
        self.egraph[id]
            .nodes
            .iter()
            .any(|n| n.op == TensorOp::Absent)
    }

    /// The rank of a tensor class.
    pub fn rank(&self, id: Id) -> Option<usize> {
        self.ty(id).map(|t| t.shape.rank())
    }

    /// Whether `axes` names exactly the last axis of class `id`.
    pub fn is_last_axis(&self, id: Id, axes: &[i64]) -> bool {
        match (axes, self.rank(id)) {
            ([a], Some(rank)) => rank > 0 && normalize_axis(*a, rank) == Some(rank - 1),
            _ => false,
        }
    }

    /// Every permutation of the last axis held by class `id` in the form
    /// `reshape(transpose(reshape(x, lead ++ [a, b]), swap of the last two axes), shape of x)`
    /// (how exports de-interleave rotary pairs when `b` is 2).
    pub fn last_axis_permutations(&self, id: Id) -> Vec<LastAxisPermutation<'a>> {
        let mut out = Vec::new();
        for (merge, operands) in self.ops(id) {
            let (Op::Reshape { shape: merged }, [swapped]) = (merge, operands) else {
                continue;
            };
            for (swap, operands) in self.ops(*swapped) {
                let (Op::Transpose { perm }, [pairs]) = (swap, operands) else {
                    continue;
                };
                if !swaps_last_two(perm) {
                    continue;
                }
                for (split, operands) in self.ops(*pairs) {
                    let (Op::Reshape { shape: split_shape }, [x]) = (split, operands) else {
                        continue;
                    };
                    let Some(x_ty) = self.ty(*x) else { continue };
                    let (Some((last, lead)), [.., Dim::Known(a), Dim::Known(b)]) =
                        (x_ty.shape.dims().split_last(), split_shape.as_slice())
                    else {
                        continue;
                    };
                    if *last == Dim::Known(a * b)
                        && split_shape[..split_shape.len() - 2] == *lead
                        && *merged == x_ty.shape.0
                    {
                        out.push(LastAxisPermutation {
                            x: *x,
                            pair: (*a, *b),
                            ops: [split, swap, merge],
                        });
                    }
                }
            }
        }
        out
    }

    /// The projections `(index, tuple operand, tuple op)` held by a class.
    pub fn projections(&self, id: Id) -> Vec<(u32, Id, &'a Op, &'a [Id])> {
        let mut out = Vec::new();
        for n in &self.egraph[id].nodes {
            if let (TensorOp::Get(i), [tuple]) = (&n.op, n.children.as_slice()) {
                for (op, operands) in self.ops(*tuple) {
                    out.push((*i, *tuple, op, operands));
                }
            }
        }
        out
    }
}

/// Whether `perm` swaps the last two axes and keeps the others.
fn swaps_last_two(perm: &[u64]) -> bool {
    let n = perm.len();
    n >= 2
        && perm[..n - 2]
            .iter()
            .enumerate()
            .all(|(i, &p)| p == i as u64)
        && perm[n - 2] == (n - 1) as u64
        && perm[n - 1] == (n - 2) as u64
}

/// A permutation of the last axis found by [`Ctx::last_axis_permutations`]: `x` viewed as
/// `[.., a, b]`, transposed and merged back (element `i·b + j` moves to `j·a + i`).
pub struct LastAxisPermutation<'a> {
    /// The permuted value.
    pub x: Id,
    /// `(a, b)`: the last axis split as `a` rows of `b`.
    pub pair: (u64, u64),
    /// The split reshape, the transpose and the merging reshape, in the order they apply.
    pub ops: [&'a Op; 3],
}

/// Where a recipe operand comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// An existing e-class.
    Class(Id),
    /// The recipe's `i`-th new node.
    New(usize),
}

/// New nodes to add and the e-classes their results are equal to.
#[derive(Clone, Debug, Default)]
pub struct Recipe {
    nodes: Vec<(TensorOp, Vec<Slot>)>,
    data: Vec<ClassData>,
    unions: Vec<(Id, Slot)>,
}

impl Recipe {
    /// An empty recipe.
    pub fn new() -> Recipe {
        Recipe::default()
    }

    fn slot_data<'a>(&'a self, ctx: &'a Ctx<'_>, slot: Slot) -> Option<&'a ClassData> {
        match slot {
            Slot::Class(id) => Some(ctx.data(id)),
            Slot::New(i) => self.data.get(i),
        }
    }

    /// The tensor type of a slot.
    pub fn ty<'a>(&'a self, ctx: &'a Ctx<'_>, slot: Slot) -> Option<&'a TensorType> {
        self.slot_data(ctx, slot).and_then(ClassData::tensor)
    }

    /// Adds an IR op over `inputs`; `None` when its types cannot be inferred.
    pub fn op(&mut self, ctx: &Ctx<'_>, op: Op, inputs: &[Slot]) -> Option<Slot> {
        let mut types = Vec::with_capacity(inputs.len());
        let mut weight_only = true;
        for &s in inputs {
            let data = self.slot_data(ctx, s)?;
            if data.tuple {
                return None;
            }
            weight_only &= data.weight_only;
            types.push(data.tensor());
        }
        let results = infer_types(&op, &types).ok()?;
        let tuple = op.num_outputs() > 1;
        self.push(
            TensorOp::Op(op),
            inputs.to_vec(),
            ClassData {
                types: results,
                tuple,
                weight_only,
                forms: Vec::new(),
            },
        )
    }

    /// Adds the projection of result `index` of a tuple slot.
    pub fn get(&mut self, ctx: &Ctx<'_>, tuple: Slot, index: u32) -> Option<Slot> {
        let data = self.slot_data(ctx, tuple)?;
        if !data.tuple {
            return None;
        }
        let ty = data.types.get(index as usize)?.clone();
        let weight_only = data.weight_only;
        self.push(
            TensorOp::Get(index),
            vec![tuple],
            ClassData {
                types: vec![ty],
                tuple: false,
                weight_only,
                forms: Vec::new(),
            },
        )
    }

    /// Adds a constant.
    pub fn constant(&mut self, value: ConstTensor) -> Slot {
        let ty = value.ty();
        let i = self.nodes.len();
        self.nodes.push((TensorOp::Const(value), Vec::new()));
        self.data.push(ClassData {
            types: vec![ty],
            tuple: false,
            weight_only: true,
            forms: Vec::new(),
        });
        Slot::New(i)
    }

    /// Adds an absent optional operand.
    pub fn absent(&mut self) -> Slot {
        let i = self.nodes.len();
        self.nodes.push((TensorOp::Absent, Vec::new()));
        self.data.push(ClassData {
            types: Vec::new(),
            tuple: false,
            weight_only: true,
            forms: Vec::new(),
        });
        Slot::New(i)
    }

    fn push(&mut self, op: TensorOp, inputs: Vec<Slot>, data: ClassData) -> Option<Slot> {
        let i = self.nodes.len();
        self.nodes.push((op, inputs));
        self.data.push(data);
        Some(Slot::New(i))
    }

    /// States that `class` equals `slot`.
    pub fn union(mut self, class: Id, slot: Slot) -> Recipe {
        self.unions.push((class, slot));
        self
    }

    /// Adds another equality to the recipe.
    pub fn also_union(&mut self, class: Id, slot: Slot) {
        self.unions.push((class, slot));
    }

    /// Adds the nodes and performs the unions; returns the classes that changed.
    fn apply(&self, egraph: &mut TensorEGraph) -> Vec<Id> {
        let mut ids: Vec<Id> = Vec::with_capacity(self.nodes.len());
        let resolve = |ids: &[Id], s: Slot| match s {
            Slot::Class(id) => id,
            Slot::New(i) => ids[i],
        };
        for (op, inputs) in &self.nodes {
            let children = inputs.iter().map(|&s| resolve(&ids, s)).collect();
            ids.push(egraph.add(TensorNode::new(op.clone(), children)));
        }
        let mut changed = Vec::new();
        for &(class, slot) in &self.unions {
            let target = resolve(&ids, slot);
            if egraph.union(class, target) {
                changed.push(egraph.find(class));
            }
        }
        changed
    }
}

/// Runs a [`Rule`] as an `egg` rewrite: the search phase records recipes (the substitution binds
/// `?recipe` to the recipe's index) and the apply phase adds them.
struct RuleAdapter {
    rule: Box<dyn Rule>,
    var: Var,
    pending: Mutex<Vec<Recipe>>,
}

impl Searcher<TensorNode, TensorAnalysis> for RuleAdapter {
    fn search_eclass_with_limit(
        &self,
        _egraph: &TensorEGraph,
        _eclass: Id,
        _limit: usize,
    ) -> Option<SearchMatches<'_, TensorNode>> {
        // Rules search the whole e-graph at once (see `search_with_limit`).
        None
    }

    fn search_with_limit(
        &self,
        egraph: &TensorEGraph,
        limit: usize,
    ) -> Vec<SearchMatches<'_, TensorNode>> {
        let ctx = Ctx { egraph };
        let mut recipes = Vec::new();
        self.rule.find_all(&ctx, limit, &mut recipes);
        recipes.retain(|r| !r.unions.is_empty());
        let matches = recipes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut subst = Subst::with_capacity(1);
                subst.insert(self.var, Id::from(i));
                SearchMatches {
                    eclass: r.unions[0].0,
                    substs: vec![subst],
                    ast: None,
                }
            })
            .collect();
        if let Ok(mut pending) = self.pending.lock() {
            *pending = recipes;
        }
        matches
    }

    fn vars(&self) -> Vec<Var> {
        vec![self.var]
    }
}

impl Applier<TensorNode, TensorAnalysis> for RuleAdapter {
    fn apply_one(
        &self,
        egraph: &mut TensorEGraph,
        _eclass: Id,
        subst: &Subst,
        _searcher_ast: Option<&PatternAst<TensorNode>>,
        _rule_name: Symbol,
    ) -> Vec<Id> {
        let Some(index) = subst.get(self.var).map(|&id| usize::from(id)) else {
            return Vec::new();
        };
        let recipe = match self.pending.lock() {
            Ok(pending) => pending.get(index).cloned(),
            Err(_) => None,
        };
        let Some(recipe) = recipe else {
            return Vec::new();
        };
        egraph.analysis.current_rule = Some(self.rule.name());
        let changed = recipe.apply(egraph);
        egraph.analysis.current_rule = None;
        changed
    }
}

/// The `egg` rewrites of the given rules.
pub(crate) fn rewrites(rules: Vec<Box<dyn Rule>>) -> Vec<Rewrite<TensorNode, TensorAnalysis>> {
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        let name = rule.name();
        // A literal variable name always parses.
        let Ok(var) = Var::from_str("?recipe") else {
            continue;
        };
        let adapter = std::sync::Arc::new(RuleAdapter {
            rule,
            var,
            pending: Mutex::new(Vec::new()),
        });
        if let Ok(rw) = Rewrite::new(name, SharedAdapter(adapter.clone()), SharedAdapter(adapter)) {
            out.push(rw);
        }
    }
    out
}

/// One adapter shared by the searcher and applier halves of a rewrite.
struct SharedAdapter(std::sync::Arc<RuleAdapter>);

impl Searcher<TensorNode, TensorAnalysis> for SharedAdapter {
    fn search_eclass_with_limit(
        &self,
        egraph: &TensorEGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, TensorNode>> {
        self.0.search_eclass_with_limit(egraph, eclass, limit)
    }

    fn search_with_limit(
        &self,
        egraph: &TensorEGraph,
        limit: usize,
    ) -> Vec<SearchMatches<'_, TensorNode>> {
        self.0.search_with_limit(egraph, limit)
    }

    fn vars(&self) -> Vec<Var> {
        Searcher::<TensorNode, TensorAnalysis>::vars(&*self.0)
    }
}

impl Applier<TensorNode, TensorAnalysis> for SharedAdapter {
    fn apply_one(
        &self,
        egraph: &mut TensorEGraph,
        eclass: Id,
        subst: &Subst,
        searcher_ast: Option<&PatternAst<TensorNode>>,
        rule_name: Symbol,
    ) -> Vec<Id> {
        self.0
            .apply_one(egraph, eclass, subst, searcher_ast, rule_name)
    }
}

/// `f32` bits of a value, for attributes stored as bits.
pub(crate) fn f32_bits(v: f64) -> u32 {
    (v as f32).to_bits()
}
