//! Per-e-class facts: result types (from [`cubevec_ir::infer::infer_types`]), whether the class
//! depends on weights and constants only, and what index-valued results hold
//! ([`super::index_form`]).
//!
//! Merging two e-classes whose types differ means a rewrite rule claimed that two tensors of
//! different shape or dtype are equal: the rule is unsound. The merge keeps the first class's
//! facts and records the disagreement (with the rule being applied), and the optimiser reports it
//! as an error instead of producing a graph.

use cubevec_ir::graph::TensorType;
use cubevec_ir::infer::infer_types;
use egg::{Analysis, DidMerge, EGraph, Id};

use super::index_form::{self, IndexForm};
use super::language::{TensorNode, TensorOp};

/// The e-graph type of the optimiser.
pub type TensorEGraph = EGraph<TensorNode, TensorAnalysis>;

/// What is known about an e-class.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassData {
    /// The result types: one for a tensor, several for a tuple node, none for an absent operand
    /// (or when inference failed, which is recorded).
    pub types: Vec<TensorType>,
    /// Whether the class is a tuple (a `Split`/`TopK` result read through projections).
    pub tuple: bool,
    /// Whether the value depends on weights and constants only, so it can be computed once
    /// when the model is loaded and costs nothing per run.
    pub weight_only: bool,
    /// What each result holds, when it is an index computation [`index_form`] can follow (one
    /// entry per type).
    pub forms: Vec<Option<IndexForm>>,
}

impl ClassData {
    /// The index form of a non-tuple class.
    pub fn form(&self) -> Option<&IndexForm> {
        match self.forms.as_slice() {
            [Some(f)] if !self.tuple => Some(f),
            _ => None,
        }
    }

    /// The single tensor type of a non-tuple class.
    pub fn tensor(&self) -> Option<&TensorType> {
        match self.types.as_slice() {
            [ty] if !self.tuple => Some(ty),
            _ => None,
        }
    }
}

/// The analysis: parameter types of the segment, and the problems found while the e-graph grows.
#[derive(Debug, Default)]
pub struct TensorAnalysis {
    /// Types of the segment's parameters, by [`TensorOp::Param`] index.
    pub params: Vec<TensorType>,
    /// Index forms of the segment's parameters, by [`TensorOp::Param`] index.
    pub param_forms: Vec<Option<IndexForm>>,
    /// The rule whose rewrite is being applied (set by the rule adapter around each union).
    pub current_rule: Option<&'static str>,
    /// Merges of classes with different types: `(rule, description)`.
    pub unsound_merges: Vec<(String, String)>,
    /// Nodes whose types could not be inferred: `(rule, description)`.
    pub ill_typed: Vec<(String, String)>,
}

impl TensorAnalysis {
    /// An analysis for a segment with these parameter types and index forms.
    pub fn new(params: Vec<TensorType>, param_forms: Vec<Option<IndexForm>>) -> TensorAnalysis {
        TensorAnalysis {
            params,
            param_forms,
            ..TensorAnalysis::default()
        }
    }

    fn rule_name(&self) -> String {
        self.current_rule.unwrap_or("graph conversion").to_string()
    }
}

impl Analysis<TensorNode> for TensorAnalysis {
    type Data = ClassData;

    fn make(egraph: &mut TensorEGraph, enode: &TensorNode, _id: Id) -> ClassData {
        let child = |i: usize| &egraph[enode.children[i]].data;
        let weight_only = enode.children.iter().all(|&c| egraph[c].data.weight_only);
        let failed = |egraph: &mut TensorEGraph, why: String| {
            let rule = egraph.analysis.rule_name();
            egraph.analysis.ill_typed.push((rule, why));
            ClassData {
                types: Vec::new(),
                tuple: false,
                weight_only,
                forms: Vec::new(),
            }
        };
        match &enode.op {
            TensorOp::Param { index, weight } => {
                match egraph.analysis.params.get(*index as usize) {
                    Some(ty) => ClassData {
                        types: vec![ty.clone()],
                        tuple: false,
                        weight_only: *weight,
                        forms: vec![
                            egraph
                                .analysis
                                .param_forms
                                .get(*index as usize)
                                .cloned()
                                .flatten(),
                        ],
                    },
                    None => failed(egraph, format!("parameter {index} has no type")),
                }
            }
            TensorOp::Const(c) => ClassData {
                types: vec![c.ty()],
                tuple: false,
                weight_only: true,
                forms: vec![index_form::of_constant(c)],
            },
            TensorOp::Absent => ClassData {
                types: Vec::new(),
                tuple: false,
                weight_only: true,
                forms: Vec::new(),
            },
            TensorOp::Get(i) => {
                let source = child(0);
                match source.types.get(*i as usize) {
                    Some(ty) if source.tuple => ClassData {
                        types: vec![ty.clone()],
                        tuple: false,
                        weight_only,
                        forms: vec![source.forms.get(*i as usize).cloned().flatten()],
                    },
                    _ => failed(
                        egraph,
                        format!("projection {i} of a value that has no result {i}"),
                    ),
                }
            }
            TensorOp::Op(op) => {
                let inputs: Vec<Option<&TensorType>> = enode
                    .children
                    .iter()
                    .map(|&c| egraph[c].data.tensor())
                    .collect();
                match infer_types(op, &inputs) {
                    Ok(types) => {
                        let forms: Vec<Option<&IndexForm>> = enode
                            .children
                            .iter()
                            .map(|&c| egraph[c].data.form())
                            .collect();
                        ClassData {
                            tuple: op.num_outputs() > 1,
                            forms: index_form::transfer(op, &forms, &inputs, &types),
                            types,
                            weight_only,
                        }
                    }
                    Err(e) => failed(egraph, format!("{}: {e}", op.name())),
                }
            }
        }
    }

    fn merge(&mut self, a: &mut ClassData, b: ClassData) -> DidMerge {
        if a.types != b.types || a.tuple != b.tuple {
            let show = |d: &ClassData| {
                d.types
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let rule = self.rule_name();
            self.unsound_merges.push((
                rule,
                format!(
                    "merged a class of type ({}) with one of type ({})",
                    show(a),
                    show(&b)
                ),
            ));
        }
        let mut a_gains = !a.weight_only && b.weight_only;
        let mut b_gains = a.weight_only && !b.weight_only;
        a.weight_only |= b.weight_only;
        // Both forms state what the same tensor holds; a missing one is taken from the other.
        for (i, form) in b.forms.into_iter().enumerate() {
            match (a.forms.get_mut(i), form) {
                (Some(slot @ None), Some(f)) => {
                    *slot = Some(f);
                    a_gains = true;
                }
                (Some(Some(_)), None) => b_gains = true,
                (Some(Some(x)), Some(y)) if *x != y => b_gains = true,
                _ => {}
            }
        }
        DidMerge(a_gains, b_gains)
    }
}

#[cfg(test)]
mod tests {
    use cubevec_ir::graph::TensorType;
    use cubevec_ir::{DType, Shape};

    use super::*;

    #[test]
    fn merging_classes_of_different_types_is_recorded_with_the_rule() {
        let a = TensorType::new(DType::F32, Shape::known(&[2, 3]));
        let b = TensorType::new(DType::F32, Shape::known(&[3, 2]));
        let mut egraph = TensorEGraph::new(TensorAnalysis::new(vec![a.clone(), b, a], vec![]));
        let param = |index| {
            TensorNode::new(
                TensorOp::Param {
                    index,
                    weight: false,
                },
                Vec::new(),
            )
        };
        let (x, y, z) = (
            egraph.add(param(0)),
            egraph.add(param(1)),
            egraph.add(param(2)),
        );
        egraph.analysis.current_rule = Some("same-type");
        egraph.union(x, z);
        assert!(egraph.analysis.unsound_merges.is_empty());
        egraph.analysis.current_rule = Some("bad-rule");
        egraph.union(x, y);
        egraph.rebuild();
        let merges = &egraph.analysis.unsound_merges;
        assert_eq!(merges.len(), 1);
        assert_eq!(merges[0].0, "bad-rule");
        assert!(
            merges[0].1.contains("f32[2, 3]") && merges[0].1.contains("f32[3, 2]"),
            "{}",
            merges[0].1
        );
    }

    #[test]
    fn ill_typed_nodes_are_recorded() {
        let a = TensorType::new(DType::F32, Shape::known(&[2, 3]));
        let mut egraph = TensorEGraph::new(TensorAnalysis::new(vec![a], vec![]));
        let x = egraph.add(TensorNode::new(
            TensorOp::Param {
                index: 0,
                weight: true,
            },
            Vec::new(),
        ));
        let m = egraph.add(TensorNode::op(cubevec_ir::Op::MatMul, vec![x, x]));
        assert!(egraph[m].data.types.is_empty());
        assert!(egraph[x].data.weight_only);
        assert_eq!(egraph.analysis.ill_typed.len(), 1);
    }
}
