//! Converting a graph segment into an e-graph, and an extracted selection back into a program.

use rustc_hash::FxHashMap;

use cubevec_ir::Op;
use cubevec_ir::graph::{Graph, TensorType, ValueId};
use egg::{Id, Language};

use super::analysis::{TensorAnalysis, TensorEGraph};
use super::extract::Selection;
use super::index_form::IndexForms;
use super::language::{ConstTensor, TensorNode, TensorOp};
use super::template::{ParamKind, Segment, param_form};

/// An operand of a program node or a program result.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// Segment parameter `i`.
    Param(u32),
    /// A constant.
    Const(ConstTensor),
    /// An absent optional operand.
    Absent,
    /// Result `output` of program node `node`.
    Node {
        /// Index in [`Program::nodes`].
        node: usize,
        /// Which result.
        output: u32,
    },
}

/// One operation of a program.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramNode {
    /// The operation.
    pub op: Op,
    /// Its operands.
    pub inputs: Vec<Operand>,
    /// The position in the segment of the original node it is, if it is one (for naming).
    pub origin: Option<usize>,
    /// The type of each result.
    pub types: Vec<TensorType>,
    /// For each result equal to a value of the segment, that value as `(node position, result)`:
    /// the result takes over the value (its id and name) instead of creating a new one.
    pub takes_over: Vec<Option<(usize, usize)>>,
}

/// A segment's computation as a function of its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// Operations in a valid evaluation order.
    pub nodes: Vec<ProgramNode>,
    /// One operand per segment output.
    pub outputs: Vec<Operand>,
}

/// A segment's e-graph.
pub struct SegmentEGraph {
    /// The e-graph, rebuilt.
    pub egraph: TensorEGraph,
    /// The class of each segment output.
    pub roots: Vec<Id>,
    /// The original e-node of each segment node, by position.
    pub originals: Vec<TensorNode>,
    /// The class of each result of each segment node: `(class, node position, result)`.
    pub values: Vec<(Id, usize, usize)>,
}

/// Adds a segment to a fresh e-graph; `forms` are the index forms of the graph's values, of
/// which the parameters' are used.
pub fn to_egraph(graph: &Graph, seg: &Segment, forms: &IndexForms) -> SegmentEGraph {
    let types = seg
        .params
        .iter()
        .map(|&v| graph.value(v).ty.clone())
        .collect();
    let param_forms = seg
        .params
        .iter()
        .zip(&seg.kinds)
        .map(|(&v, kind)| param_form(forms, v, kind).cloned())
        .collect();
    let mut egraph = TensorEGraph::new(TensorAnalysis::new(types, param_forms));
    let mut classes: FxHashMap<ValueId, Id> = FxHashMap::default();
    for (i, (&v, kind)) in seg.params.iter().zip(&seg.kinds).enumerate() {
        let op = match kind {
            ParamKind::Const(c) => TensorOp::Const(c.clone()),
            ParamKind::Weight | ParamKind::Activation => TensorOp::Param {
                index: i as u32,
                weight: *kind == ParamKind::Weight,
            },
        };
        classes.insert(v, egraph.add(TensorNode::new(op, Vec::new())));
    }
    let absent = egraph.add(TensorNode::new(TensorOp::Absent, Vec::new()));
    for def in &seg.context {
        let param = |i: usize| seg.params.get(i).and_then(|v| classes.get(v)).copied();
        let children: Option<Vec<Id>> = def
            .inputs
            .iter()
            .map(|i| match i {
                None => Some(absent),
                Some(i) => param(*i),
            })
            .collect();
        if let (Some(children), Some(class)) = (children, param(def.param)) {
            let id = egraph.add(TensorNode::op(def.op.clone(), children));
            egraph.union(class, id);
        }
    }
    let mut originals = Vec::with_capacity(seg.nodes.len());
    let mut values = Vec::with_capacity(seg.nodes.len());
    for (position, &node_id) in seg.nodes.iter().enumerate() {
        let node = graph.node(node_id);
        let children = node
            .inputs
            .iter()
            .map(|v| match v {
                None => absent,
                Some(v) => classes.get(v).copied().unwrap_or(absent),
            })
            .collect();
        let enode = TensorNode::op(node.op.clone(), children);
        let id = egraph.add(enode.clone());
        originals.push(enode);
        if node.outputs.len() > 1 {
            for (i, &out) in node.outputs.iter().enumerate() {
                let get = egraph.add(TensorNode::new(TensorOp::Get(i as u32), vec![id]));
                classes.insert(out, get);
                values.push((get, position, i));
            }
        } else if let Some(&out) = node.outputs.first() {
            classes.insert(out, id);
            values.push((id, position, 0));
        }
    }
    egraph.rebuild();
    let roots = seg
        .outputs
        .iter()
        .map(|v| classes.get(v).copied().unwrap_or(absent))
        .collect();
    SegmentEGraph {
        egraph,
        roots,
        originals,
        values,
    }
}

/// The program a selection describes; `None` if the chosen nodes form a cycle or miss a class.
pub fn to_program(seg: &SegmentEGraph, selection: &Selection) -> Option<Program> {
    let egraph = &seg.egraph;
    let origin: FxHashMap<TensorNode, usize> = seg
        .originals
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone().map_children(|c| egraph.find(c)), i))
        .collect();
    let mut value_of: FxHashMap<Id, (usize, usize)> = FxHashMap::default();
    for &(class, position, output) in &seg.values {
        value_of
            .entry(egraph.find(class))
            .or_insert((position, output));
    }
    let mut nodes: Vec<ProgramNode> = Vec::new();
    // Class → operand (tensor classes) or node index (tuple classes).
    let mut done: FxHashMap<Id, Operand> = FxHashMap::default();
    let mut in_progress: std::collections::HashSet<Id> = std::collections::HashSet::new();
    let mut outputs = Vec::with_capacity(seg.roots.len());
    for &root in &seg.roots {
        let mut stack: Vec<(Id, bool)> = vec![(egraph.find(root), false)];
        while let Some((id, expanded)) = stack.pop() {
            if done.contains_key(&id) {
                continue;
            }
            let node = selection.node(egraph, id)?;
            if !expanded {
                if !in_progress.insert(id) {
                    return None;
                }
                stack.push((id, true));
                for &c in node.children.iter().rev() {
                    let c = egraph.find(c);
                    if !done.contains_key(&c) {
                        if in_progress.contains(&c) {
                            return None;
                        }
                        stack.push((c, false));
                    }
                }
                continue;
            }
            in_progress.remove(&id);
            let operand = match &node.op {
                TensorOp::Param { index, .. } => Operand::Param(*index),
                TensorOp::Const(c) => Operand::Const(c.clone()),
                TensorOp::Absent => Operand::Absent,
                TensorOp::Get(i) => match done.get(&egraph.find(*node.children.first()?))? {
                    Operand::Node { node, .. } => {
                        let slot = nodes.get_mut(*node)?.takes_over.get_mut(*i as usize)?;
                        if slot.is_none() {
                            *slot = value_of.get(&id).copied();
                        }
                        Operand::Node {
                            node: *node,
                            output: *i,
                        }
                    }
                    _ => return None,
                },
                TensorOp::Op(op) => {
                    let inputs = node
                        .children
                        .iter()
                        .map(|&c| done.get(&egraph.find(c)).cloned())
                        .collect::<Option<Vec<_>>>()?;
                    let data = &egraph[id].data;
                    let takes_over = if data.tuple {
                        vec![None; data.types.len()]
                    } else {
                        vec![value_of.get(&id).copied()]
                    };
                    nodes.push(ProgramNode {
                        op: op.clone(),
                        inputs,
                        origin: origin.get(node).copied(),
                        types: data.types.clone(),
                        takes_over,
                    });
                    Operand::Node {
                        node: nodes.len() - 1,
                        output: 0,
                    }
                }
            };
            done.insert(id, operand);
        }
        outputs.push(done.get(&egraph.find(root))?.clone());
    }
    Some(Program { nodes, outputs })
}

/// The segment as it is, as a program (used when optimisation finds nothing better or fails).
pub fn identity_program(graph: &Graph, seg: &Segment) -> Program {
    let mut operands: FxHashMap<ValueId, Operand> = FxHashMap::default();
    for (i, (&v, kind)) in seg.params.iter().zip(&seg.kinds).enumerate() {
        let operand = match kind {
            ParamKind::Const(c) => Operand::Const(c.clone()),
            _ => Operand::Param(i as u32),
        };
        operands.insert(v, operand);
    }
    let mut nodes = Vec::with_capacity(seg.nodes.len());
    for (p, &node_id) in seg.nodes.iter().enumerate() {
        let node = graph.node(node_id);
        let inputs = node
            .inputs
            .iter()
            .map(|v| match v {
                None => Operand::Absent,
                Some(v) => operands.get(v).cloned().unwrap_or(Operand::Absent),
            })
            .collect();
        nodes.push(ProgramNode {
            op: node.op.clone(),
            inputs,
            origin: Some(p),
            types: node
                .outputs
                .iter()
                .map(|&v| graph.value(v).ty.clone())
                .collect(),
            takes_over: (0..node.outputs.len()).map(|o| Some((p, o))).collect(),
        });
        for (o, &out) in node.outputs.iter().enumerate() {
            operands.insert(
                out,
                Operand::Node {
                    node: p,
                    output: o as u32,
                },
            );
        }
    }
    let outputs = seg
        .outputs
        .iter()
        .map(|v| operands.get(v).cloned().unwrap_or(Operand::Absent))
        .collect();
    Program { nodes, outputs }
}
