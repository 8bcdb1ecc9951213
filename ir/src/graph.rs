//! The graph IR: values, nodes, weights, and the graph that owns them.
//!
//! Values and nodes live in arenas indexed by [`ValueId`] and [`NodeId`]; every value is defined
//! exactly once, as a graph input, an initializer (a weight) or a node result. The dependency
//! structure is a DAG, exposed as a petgraph graph by [`Graph::dependency_graph`] for ordering,
//! cycle checks and export.

use std::path::PathBuf;
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::dtype::DType;
use crate::op::Op;
use crate::shape::Shape;

/// The type of a value: element dtype and shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Shape, possibly symbolic.
    pub shape: Shape,
}

impl TensorType {
    /// A tensor type from its parts.
    pub fn new(dtype: DType, shape: Shape) -> TensorType {
        TensorType { dtype, shape }
    }
}

impl std::fmt::Display for TensorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

/// Index of a value in [`Graph::values`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Index of a node in [`Graph::nodes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl ValueId {
    /// The arena index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl NodeId {
    /// The arena index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A named, typed tensor value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// Unique name within the graph (the ONNX tensor name or a generated one).
    pub name: String,
    /// Dtype and shape.
    pub ty: TensorType,
}

/// One operation applied to values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The node's name from the source model (used in error messages); may be empty.
    pub name: String,
    /// The operation.
    pub op: Op,
    /// Operands; `None` marks an absent optional operand.
    pub inputs: Vec<Option<ValueId>>,
    /// Results, in the order the op defines them.
    pub outputs: Vec<ValueId>,
}

/// Where a weight's bytes are: in memory, or slices of files that are memory-mapped on use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightData {
    /// Little-endian element bytes held in memory (small constants, ONNX `raw_data`).
    Inline(Arc<[u8]>),
    /// Byte ranges of files (safetensors shards, ONNX external data), one after the other: one
    /// range for a tensor stored whole, several for one stacked from tensors stored apart (a MoE
    /// layer's per-expert weights). Nothing is read until the weight is used.
    External(Vec<FileSlice>),
    /// No data: the graph was built from shapes alone (`--shapes-only`) and cannot be run.
    Absent,
}

impl WeightData {
    /// The bytes `offset..offset + length` of the file at `path`.
    pub fn file_slice(path: impl Into<PathBuf>, offset: u64, length: u64) -> WeightData {
        WeightData::External(vec![FileSlice {
            path: path.into(),
            offset,
            length,
        }])
    }
}

/// A byte range of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSlice {
    /// The file, absolute or relative to the directory of the model being compiled.
    pub path: PathBuf,
    /// Byte offset of the first byte.
    pub offset: u64,
    /// Byte length.
    pub length: u64,
}

/// A constant tensor of the graph: a model weight or a folded constant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Initializer {
    /// The value it defines.
    pub value: ValueId,
    /// Its bytes.
    pub data: WeightData,
}

/// A tensor program: named inputs, weights, nodes and outputs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Graph {
    /// The graph's name.
    pub name: String,
    /// Every value, indexed by [`ValueId`].
    pub values: Vec<Value>,
    /// Every node, indexed by [`NodeId`], in a topological order once verified.
    pub nodes: Vec<Node>,
    /// Graph inputs, in order.
    pub inputs: Vec<ValueId>,
    /// Weights and constants, in order.
    pub initializers: Vec<Initializer>,
    /// Graph outputs, in order.
    pub outputs: Vec<ValueId>,
}

/// What defines a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Definition {
    /// The graph input at this position.
    Input(usize),
    /// The initializer at this position.
    Initializer(usize),
    /// Result `output` of this node.
    Node {
        /// The producing node.
        node: NodeId,
        /// Which of its results.
        output: usize,
    },
}

impl Graph {
    /// An empty graph with a name.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    /// Adds a value and returns its id.
    pub fn add_value(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(Value {
            name: name.into(),
            ty,
        });
        id
    }

    /// Adds a graph input.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let id = self.add_value(name, ty);
        self.inputs.push(id);
        id
    }

    /// Adds a weight or constant.
    pub fn add_initializer(
        &mut self,
        name: impl Into<String>,
        ty: TensorType,
        data: WeightData,
    ) -> ValueId {
        let value = self.add_value(name, ty);
        self.initializers.push(Initializer { value, data });
        value
    }

    /// Adds a node whose result values already exist.
    pub fn add_node(&mut self, node: Node) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(node);
        id
    }

    /// The value with this id.
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    /// The node with this id.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    /// The first value with this name.
    pub fn value_by_name(&self, name: &str) -> Option<ValueId> {
        self.values
            .iter()
            .position(|v| v.name == name)
            .map(|i| ValueId(i as u32))
    }

    /// Every definition of a value, in order: graph inputs, initializers, node results (a value
    /// defined twice appears twice).
    pub fn each_definition(&self) -> impl Iterator<Item = (ValueId, Definition)> + '_ {
        let inputs = (self.inputs.iter().enumerate()).map(|(i, &v)| (v, Definition::Input(i)));
        let initializers = (self.initializers.iter().enumerate())
            .map(|(i, init)| (init.value, Definition::Initializer(i)));
        let results = self.nodes.iter().enumerate().flat_map(|(n, node)| {
            node.outputs.iter().enumerate().map(move |(output, &v)| {
                let node = NodeId(n as u32);
                (v, Definition::Node { node, output })
            })
        });
        inputs.chain(initializers).chain(results)
    }

    /// What defines each value (`None` for a value nothing defines), indexed by [`ValueId`]. A
    /// value defined twice keeps its first definition; the verifier reports the second.
    pub fn definitions(&self) -> Vec<Option<Definition>> {
        let mut defs = vec![None; self.values.len()];
        for (v, d) in self.each_definition() {
            if let Some(slot) = defs.get_mut(v.index()) {
                slot.get_or_insert(d);
            }
        }
        defs
    }

    /// The node-to-node dependency DAG: one petgraph node per graph node (same index), an edge
    /// from producer to consumer labelled with the value passed.
    pub fn dependency_graph(&self) -> DiGraph<NodeId, ValueId> {
        let mut dag = DiGraph::with_capacity(self.nodes.len(), self.nodes.len() * 2);
        for n in 0..self.nodes.len() {
            dag.add_node(NodeId(n as u32));
        }
        let defs = self.definitions();
        for (n, node) in self.nodes.iter().enumerate() {
            for v in node.inputs.iter().flatten() {
                if let Some(Some(Definition::Node { node: producer, .. })) = defs.get(v.index()) {
                    dag.add_edge(NodeIndex::new(producer.index()), NodeIndex::new(n), *v);
                }
            }
        }
        dag
    }

    /// The nodes in a topological order (stable: among ready nodes the lowest id comes first), or
    /// the id of a node on a cycle.
    pub fn topological_order(&self) -> Result<Vec<NodeId>, NodeId> {
        if self.is_topologically_sorted() {
            // Kahn's algorithm taking the lowest ready id first returns such a list unchanged.
            return Ok((0..self.nodes.len()).map(|n| NodeId(n as u32)).collect());
        }
        let dag = self.dependency_graph();
        let mut indegree: Vec<usize> = dag
            .node_indices()
            .map(|n| {
                dag.neighbors_directed(n, petgraph::Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = indegree
            .iter()
            .enumerate()
            .filter(|(_, d)| **d == 0)
            .map(|(i, _)| std::cmp::Reverse(i))
            .collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(std::cmp::Reverse(n)) = ready.pop() {
            order.push(NodeId(n as u32));
            for succ in dag.neighbors_directed(NodeIndex::new(n), petgraph::Direction::Outgoing) {
                indegree[succ.index()] -= 1;
                if indegree[succ.index()] == 0 {
                    ready.push(std::cmp::Reverse(succ.index()));
                }
            }
        }
        if order.len() == self.nodes.len() {
            Ok(order)
        } else {
            let stuck = indegree.iter().position(|&d| d > 0).unwrap_or(0);
            Err(NodeId(stuck as u32))
        }
    }

    /// Drops the values whose `keep` entry (by index) is false, with their initializers, and
    /// renumbers the others in order wherever they are referred to. No node, graph input or
    /// graph output may refer to a dropped value.
    pub fn retain_values(&mut self, keep: &[bool]) {
        if keep.iter().all(|&k| k) {
            return;
        }
        let mut new_id = vec![ValueId(u32::MAX); self.values.len()];
        let kept = new_id.iter_mut().zip(keep).filter(|(_, keep)| **keep);
        for (next, (id, _)) in kept.enumerate() {
            *id = ValueId(next as u32);
        }
        let mut kept = keep.iter();
        self.values
            .retain(|_| kept.next().copied().unwrap_or(false));
        let remap = |v: &mut ValueId| *v = new_id[v.index()];
        for node in &mut self.nodes {
            node.inputs.iter_mut().flatten().for_each(remap);
            node.outputs.iter_mut().for_each(remap);
        }
        self.inputs.iter_mut().for_each(remap);
        self.outputs.iter_mut().for_each(remap);
        self.initializers.retain_mut(|init| {
            let kept = keep[init.value.index()];
            remap(&mut init.value);
            kept
        });
    }

    /// Drops the nodes whose `keep` entry (by index) is false.
    pub fn retain_nodes(&mut self, keep: &[bool]) {
        let mut kept = keep.iter();
        self.nodes.retain(|_| kept.next().copied().unwrap_or(false));
    }

    /// Whether every node reads only values defined by earlier nodes or not by nodes at all
    /// (the usual case, checked in one pass before sorting).
    fn is_topologically_sorted(&self) -> bool {
        let mut producer = vec![u32::MAX; self.values.len()];
        for (n, node) in self.nodes.iter().enumerate() {
            for &v in &node.outputs {
                if let Some(slot) = producer.get_mut(v.index()) {
                    *slot = (*slot).min(n as u32);
                }
            }
        }
        self.nodes.iter().enumerate().all(|(n, node)| {
            node.inputs.iter().flatten().all(|v| {
                producer
                    .get(v.index())
                    .is_none_or(|&p| p == u32::MAX || (p as usize) < n)
            })
        })
    }

    /// How to name a node in a message: its name, or `#index (op)` when it has none.
    pub fn describe_node(&self, id: NodeId) -> String {
        let node = self.node(id);
        if node.name.is_empty() {
            format!("node #{} ({})", id.0, node.op.name())
        } else {
            format!("node `{}` ({})", node.name, node.op.name())
        }
    }
}
