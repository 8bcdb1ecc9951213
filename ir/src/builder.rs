//! Building graphs op by op, with result types from [`crate::infer`].
//!
//! A [`GraphBuilder`] borrows a [`Graph`] and keeps an index from value names to ids, so every
//! addition checks that its names are unique in O(1) expected time and [`GraphBuilder::add_op`]
//! costs O(1) amortised apart from inference, however large the graph. The index is built once,
//! by one pass over the graph's values, when the builder is created, and lives only as long as
//! the builder: [`Graph`] itself stays plain data (`Clone`, `PartialEq`, built directly by
//! parsers) with nothing hidden to keep in sync. Create one builder for a whole batch of
//! additions, not one per node.
//!
//! Results without an explicit name are named `{node_name}:{i}` (or `%{value id}` for an
//! unnamed node); if that name is taken, `_1`, `_2`, … is appended until it is free.

use std::collections::HashMap;

use crate::graph::{Graph, Node, TensorType, ValueId, WeightData};
use crate::infer::{InferError, infer_types};
use crate::op::Op;

/// Why a builder could not add to the graph. Errors about a node carry its description in the
/// form of [`Graph::describe_node`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BuildError {
    /// The op does not accept the operand types.
    #[error("{node}: {error}")]
    Infer {
        /// The node, as [`Graph::describe_node`] would name it.
        node: String,
        /// The op that was applied.
        op: Box<Op>,
        /// What inference reported.
        error: InferError,
    },
    /// An operand refers to a value the graph does not have.
    #[error("{node}: operand {index} refers to value #{value}, which is not in the graph", value = .value.0)]
    UnknownOperand {
        /// The node, as [`Graph::describe_node`] would name it.
        node: String,
        /// Operand position.
        index: usize,
        /// The missing value.
        value: ValueId,
    },
    /// The number of result names given differs from the op's result count.
    #[error("{node}: {given} result names given for {expected} results")]
    ResultNameCount {
        /// The node, as [`Graph::describe_node`] would name it.
        node: String,
        /// Names given.
        given: usize,
        /// [`Op::num_outputs`].
        expected: usize,
    },
    /// A requested value name is already in use.
    #[error("{owner}: value name `{name}` is already used by value #{existing}", existing = .existing.0)]
    DuplicateName {
        /// What asked for the name: a node description, `graph input` or `initializer`.
        owner: String,
        /// The name.
        name: String,
        /// The value that has it.
        existing: ValueId,
    },
    /// The same name is given to two results of one node.
    #[error("{node}: result name `{name}` is given twice")]
    RepeatedResultName {
        /// The node, as [`Graph::describe_node`] would name it.
        node: String,
        /// The name.
        name: String,
    },
    /// A graph output refers to a value the graph does not have.
    #[error("graph output refers to value #{value}, which is not in the graph", value = .0.0)]
    UnknownOutput(ValueId),
}

/// Adds inputs, initializers, nodes and outputs to a borrowed [`Graph`], inferring result types
/// and keeping value names unique (see the module documentation for the cost model).
#[derive(Debug)]
pub struct GraphBuilder<'g> {
    graph: &'g mut Graph,
    /// Every value name of the graph, to its (first) value.
    names: HashMap<String, ValueId>,
    /// For each generated base name that was taken, the next suffix to try.
    next_suffix: HashMap<String, u64>,
}

impl Graph {
    /// A builder adding to this graph; indexes the existing value names once.
    pub fn builder(&mut self) -> GraphBuilder<'_> {
        GraphBuilder::new(self)
    }
}

impl<'g> GraphBuilder<'g> {
    /// A builder adding to `graph`; indexes its value names (a name already used twice keeps
    /// its first value, and the verifier reports the duplicate).
    pub fn new(graph: &'g mut Graph) -> GraphBuilder<'g> {
        let mut names = HashMap::with_capacity(graph.values.len());
        for (i, v) in graph.values.iter().enumerate() {
            names.entry(v.name.clone()).or_insert(ValueId(i as u32));
        }
        GraphBuilder {
            graph,
            names,
            next_suffix: HashMap::new(),
        }
    }

    /// The graph built so far.
    pub fn graph(&self) -> &Graph {
        self.graph
    }

    /// The value with this name, if any.
    pub fn value_by_name(&self, name: &str) -> Option<ValueId> {
        self.names.get(name).copied()
    }

    /// Adds a graph input with a unique name.
    pub fn add_input(
        &mut self,
        name: impl Into<String>,
        ty: TensorType,
    ) -> Result<ValueId, BuildError> {
        let name = self.claim(name.into(), || "graph input".into())?;
        let id = self.graph.add_input(name.clone(), ty);
        self.names.insert(name, id);
        Ok(id)
    }

    /// Adds a weight or constant with a unique name.
    pub fn add_initializer(
        &mut self,
        name: impl Into<String>,
        ty: TensorType,
        data: WeightData,
    ) -> Result<ValueId, BuildError> {
        let name = self.claim(name.into(), || "initializer".into())?;
        let id = self.graph.add_initializer(name.clone(), ty, data);
        self.names.insert(name, id);
        Ok(id)
    }

    /// Adds a node applying `op` to `inputs`, infers its result types and creates the result
    /// values, named by `output_names` (must be unique in the graph), or generated unique names
    /// when `output_names` is empty. Returns the result value ids.
    ///
    /// Nothing is added when an error is returned.
    pub fn add_op(
        &mut self,
        node_name: &str,
        op: Op,
        inputs: Vec<Option<ValueId>>,
        output_names: Vec<String>,
    ) -> Result<Vec<ValueId>, BuildError> {
        let describe = || pending_node_description(self.graph, node_name, &op);
        let expected = op.num_outputs();
        if !output_names.is_empty() && output_names.len() != expected {
            return Err(BuildError::ResultNameCount {
                node: describe(),
                given: output_names.len(),
                expected,
            });
        }
        let mut types = Vec::with_capacity(inputs.len());
        for (index, slot) in inputs.iter().enumerate() {
            types.push(match slot {
                None => None,
                Some(v) => match self.graph.values.get(v.index()) {
                    Some(value) => Some(&value.ty),
                    None => {
                        return Err(BuildError::UnknownOperand {
                            node: describe(),
                            index,
                            value: *v,
                        });
                    }
                },
            });
        }
        let result_types = match infer_types(&op, &types) {
            Ok(t) => t,
            Err(error) => {
                return Err(BuildError::Infer {
                    node: describe(),
                    op: Box::new(op),
                    error,
                });
            }
        };
        for (i, name) in output_names.iter().enumerate() {
            if output_names[..i].contains(name) {
                return Err(BuildError::RepeatedResultName {
                    node: describe(),
                    name: name.clone(),
                });
            }
            if let Some(&existing) = self.names.get(name) {
                return Err(BuildError::DuplicateName {
                    owner: describe(),
                    name: name.clone(),
                    existing,
                });
            }
        }
        let mut outputs = Vec::with_capacity(result_types.len());
        let mut explicit = output_names.into_iter();
        for (i, ty) in result_types.into_iter().enumerate() {
            let name = match explicit.next() {
                Some(name) => name,
                None => self.fresh_name(node_name, i),
            };
            let id = self.graph.add_value(name.clone(), ty);
            self.names.insert(name, id);
            outputs.push(id);
        }
        self.graph.add_node(Node {
            name: node_name.to_string(),
            op,
            inputs,
            outputs: outputs.clone(),
        });
        Ok(outputs)
    }

    /// Marks a value as a graph output.
    pub fn add_output(&mut self, value: ValueId) -> Result<(), BuildError> {
        if value.index() >= self.graph.values.len() {
            return Err(BuildError::UnknownOutput(value));
        }
        self.graph.outputs.push(value);
        Ok(())
    }

    /// `name` if no value has it yet.
    fn claim(&self, name: String, owner: impl FnOnce() -> String) -> Result<String, BuildError> {
        match self.names.get(&name) {
            Some(&existing) => Err(BuildError::DuplicateName {
                owner: owner(),
                name,
                existing,
            }),
            None => Ok(name),
        }
    }

    /// A name for result `index` of a node that no value has yet. Suffixes continue from the
    /// last one used for the same base, so repeated node names cost O(1) amortised.
    fn fresh_name(&mut self, node_name: &str, index: usize) -> String {
        let base = if node_name.is_empty() {
            format!("%{}", self.graph.values.len())
        } else {
            format!("{node_name}:{index}")
        };
        if !self.names.contains_key(&base) {
            return base;
        }
        let next = self.next_suffix.entry(base.clone()).or_insert(1);
        loop {
            let candidate = format!("{base}_{next}");
            *next += 1;
            if !self.names.contains_key(&candidate) {
                return candidate;
            }
        }
    }
}

/// How [`Graph::describe_node`] will name a node about to be added to `graph`.
fn pending_node_description(graph: &Graph, node_name: &str, op: &Op) -> String {
    if node_name.is_empty() {
        format!("node #{} ({})", graph.nodes.len(), op.name())
    } else {
        format!("node `{node_name}` ({})", op.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::graph::NodeId;
    use crate::infer::InferError;
    use crate::op::{BinaryOp, UnaryOp};
    use crate::shape::{Dim, Shape};

    fn vector(n: u64) -> TensorType {
        TensorType::new(DType::F32, Shape::known(&[n]))
    }

    #[test]
    fn results_get_inferred_types_and_unique_generated_names() {
        let mut graph = Graph::new("g");
        let mut b = graph.builder();
        let x = b.add_input("x", vector(4)).unwrap();
        // Takes the name the first generated result would get.
        b.add_input("neg:0", vector(4)).unwrap();
        let neg = Op::Unary(UnaryOp::Neg);
        let first = b.add_op("neg", neg.clone(), vec![Some(x)], vec![]).unwrap();
        let second = b.add_op("neg", neg.clone(), vec![Some(x)], vec![]).unwrap();
        let unnamed = b.add_op("", neg, vec![Some(x)], vec![]).unwrap();
        let split = Op::Split {
            axis: 0,
            sizes: vec![Dim::Known(1), Dim::Known(3)],
        };
        let pieces = b
            .add_op(
                "parts",
                split,
                vec![Some(x)],
                vec!["head".into(), "tail".into()],
            )
            .unwrap();
        let names: Vec<&str> = [first[0], second[0], unnamed[0], pieces[0], pieces[1]]
            .iter()
            .map(|&v| graph.value(v).name.as_str())
            .collect();
        assert_eq!(names, ["neg:0_1", "neg:0_2", "%4", "head", "tail"]);
        assert_eq!(graph.value(pieces[1]).ty, vector(3));
        assert_eq!(graph.nodes.len(), 4);
        assert_eq!(graph.nodes[3].outputs, pieces);
    }

    #[test]
    fn errors_name_the_node_and_add_nothing() {
        let mut graph = Graph::new("g");
        let mut b = graph.builder();
        let x = b.add_input("x", vector(4)).unwrap();
        let y = b.add_input("y", vector(3)).unwrap();
        let before = b.graph().clone();
        let add = Op::Binary(BinaryOp::Add);

        let e = b
            .add_op("sum", add.clone(), vec![Some(x), Some(y)], vec![])
            .unwrap_err();
        assert!(matches!(
            &e,
            BuildError::Infer { node, error: InferError::Shape { index: 1, .. }, .. }
                if node == "node `sum` (add)"
        ));
        assert_eq!(
            e.to_string(),
            "node `sum` (add): add operand 1 (`b`) of shape [3]: does not broadcast with [4]"
        );
        let e = b
            .add_op("", add.clone(), vec![Some(x), Some(ValueId(9))], vec![])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "node #0 (add): operand 1 refers to value #9, which is not in the graph"
        );
        let e = b
            .add_op("sum", add.clone(), vec![Some(x), Some(x)], vec!["y".into()])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `sum` (add): value name `y` is already used by value #1"
        );
        let e = b
            .add_op(
                "sum",
                add,
                vec![Some(x), Some(x)],
                vec!["a".into(), "b".into()],
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `sum` (add): 2 result names given for 1 results"
        );
        let split = Op::Split {
            axis: 0,
            sizes: vec![Dim::Known(2), Dim::Known(2)],
        };
        let e = b
            .add_op("parts", split, vec![Some(x)], vec!["p".into(), "p".into()])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `parts` (split): result name `p` is given twice"
        );
        assert_eq!(*b.graph(), before);
        assert_eq!(
            b.add_output(ValueId(5)),
            Err(BuildError::UnknownOutput(ValueId(5)))
        );
        assert!(matches!(
            b.add_initializer("x", vector(1), WeightData::Absent),
            Err(BuildError::DuplicateName {
                existing: ValueId(0),
                ..
            })
        ));
    }

    #[test]
    fn the_description_matches_describe_node() {
        let mut graph = Graph::new("g");
        let x = graph.builder().add_input("x", vector(4)).unwrap();
        let relu = Op::Unary(UnaryOp::Relu);
        for (id, name) in [(0u32, ""), (1, "named")] {
            let pending = pending_node_description(&graph, name, &relu);
            graph
                .builder()
                .add_op(name, relu.clone(), vec![Some(x)], vec![])
                .unwrap();
            assert_eq!(graph.describe_node(NodeId(id)), pending);
        }
    }

    #[test]
    fn an_existing_graph_is_indexed() {
        let mut graph = Graph::new("g");
        graph.add_input("x", vector(2));
        let mut b = GraphBuilder::new(&mut graph);
        assert_eq!(b.value_by_name("x"), Some(ValueId(0)));
        assert!(matches!(
            b.add_input("x", vector(2)),
            Err(BuildError::DuplicateName { ref owner, .. }) if owner == "graph input"
        ));
    }

    #[test]
    fn a_long_chain_builds_in_linear_time() {
        // 100k nodes, half with generated names: quadratic name checks would take minutes.
        let mut graph = Graph::new("chain");
        let mut b = graph.builder();
        let mut v = b.add_input("x", vector(8)).unwrap();
        for i in 0..100_000 {
            let names = if i % 2 == 0 {
                vec![format!("v{i}")]
            } else {
                vec![]
            };
            v = b
                .add_op("neg", Op::Unary(UnaryOp::Neg), vec![Some(v)], names)
                .unwrap()[0];
        }
        b.add_output(v).unwrap();
        assert_eq!(graph.values.len(), 100_001);
        assert_eq!(graph.value(v).name, "neg:0_49999");
        assert_eq!(crate::verify::verify(&graph), Ok(()));
    }
}
