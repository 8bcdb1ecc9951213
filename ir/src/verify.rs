//! The graph verifier.
//!
//! [`verify`] checks, in this order, and reports the first problem found:
//! 1. the graph has at least one output;
//! 2. every value id used by an input, initializer, node or output exists;
//! 3. value names are non-empty and unique;
//! 4. every value is defined exactly once, as a graph input, an initializer or a node result
//!    (so a graph input is never also a node result);
//! 5. the nodes form a DAG;
//! 6. per node, in topological order: the result count is [`Op::num_outputs`](crate::op::Op),
//!    the operands fit the op ([`infer_types`]: operand count, optional slots, dtypes, shapes),
//!    and each declared result type equals the inferred one;
//! 7. an initializer of known shape holds exactly the dtype's storage size in bytes.
//!
//! Symbolic dimensions may appear anywhere.

use rustc_hash::FxHashMap;

use crate::graph::{Definition, Graph, NodeId, TensorType, ValueId, WeightData};
use crate::infer::{InferError, infer_types};

/// The first problem [`verify`] found; every variant names the node or value at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    /// The graph has no outputs.
    #[error("graph `{graph}` has no outputs")]
    NoOutputs {
        /// The graph's name.
        graph: String,
    },
    /// A value id refers past the end of the value table.
    #[error("{user} refers to value #{value}, which is not in the graph", value = .value.0)]
    UnknownValue {
        /// Who refers to it: `graph input 0`, `initializer 2`, `node `n` (add) operand 1`,
        /// `node `n` (add) result 0`, `graph output 0`.
        user: String,
        /// The id.
        value: ValueId,
    },
    /// A value has an empty name.
    #[error("value #{value} has an empty name", value = .value.0)]
    EmptyName {
        /// The value.
        value: ValueId,
    },
    /// Two values share a name.
    #[error("values #{first} and #{second} are both named `{name}`", first = .first.0, second = .second.0)]
    DuplicateName {
        /// The shared name.
        name: String,
        /// The first value with it.
        first: ValueId,
        /// The second value with it.
        second: ValueId,
    },
    /// A value is defined more than once.
    #[error("{value} is defined twice: as {first} and as {second}")]
    DefinedTwice {
        /// The value.
        value: String,
        /// Its first definition.
        first: String,
        /// Its second definition.
        second: String,
    },
    /// A value is defined by nothing.
    #[error("{value} is not a graph input, an initializer or a node result")]
    Undefined {
        /// The value.
        value: String,
    },
    /// The nodes depend on each other in a cycle.
    #[error("{node} is on a dependency cycle")]
    Cycle {
        /// A node on the cycle.
        node: String,
    },
    /// A node has the wrong number of results for its op.
    #[error("{node} has {found} results, its op gives {expected}")]
    ResultCount {
        /// The node.
        node: String,
        /// [`Op::num_outputs`](crate::op::Op::num_outputs).
        expected: usize,
        /// The number of results it lists.
        found: usize,
    },
    /// A node's operands do not fit its op.
    #[error("{node}: {error}")]
    Operands {
        /// The node.
        node: String,
        /// What inference reported.
        error: InferError,
    },
    /// A node result's declared type differs from the inferred one.
    #[error("{node}: result {output} ({value}) is declared {declared} but the op gives {inferred}")]
    ResultType {
        /// The node.
        node: String,
        /// Result position.
        output: usize,
        /// The result value.
        value: String,
        /// The type the value carries.
        declared: TensorType,
        /// The type inference gives.
        inferred: TensorType,
    },
    /// An initializer's byte count differs from its type's storage size.
    #[error("initializer {value} of type {ty} has {found} bytes, expected {expected}")]
    InitializerSize {
        /// The value.
        value: String,
        /// Its type.
        ty: TensorType,
        /// The storage size of the type.
        expected: u128,
        /// The bytes it has (inline) or claims (external).
        found: u128,
    },
}

/// Checks a graph; the first problem found, naming the node or value at fault.
pub fn verify(graph: &Graph) -> Result<(), VerifyError> {
    let everything_new = Rewrite {
        new_values: 0,
        new_initializers: 0,
        replayed: &[],
    };
    verify_rewritten(graph, &everything_new)
}

/// What a producer changed in a graph that verified, for [`verify_rewritten`].
#[derive(Clone, Copy, Debug)]
pub struct Rewrite<'a> {
    /// Values from this index on are new; those before kept their names and types.
    pub new_values: usize,
    /// Initializers from this index on are new; those before kept their data.
    pub new_initializers: usize,
    /// Node `i` stamps out a copy of an already checked node with operands and results of the
    /// same types where `replayed[i]` is set (missing entries are not set).
    pub replayed: &'a [bool],
}

/// Like [`verify`], for a graph rewritten from one that verified: its nodes may be new, values
/// and initializers may be appended, dropped or renumbered. What the rewrite could not break is
/// trusted: the names of the values it kept (new names are checked among themselves) and the
/// sizes of the initializers it kept. The result types of replayed nodes are not re-inferred
/// (their result count is still checked): type inference is a function of the op and the
/// operand types, so the first copy's check covers the others (the optimiser's replayed layer
/// templates). Everything else is checked on every node and value, so the cost is that of a
/// pass over the nodes and the value table, not of hashing every name.
pub fn verify_rewritten(graph: &Graph, rewrite: &Rewrite<'_>) -> Result<(), VerifyError> {
    if graph.outputs.is_empty() {
        return Err(VerifyError::NoOutputs {
            graph: graph.name.clone(),
        });
    }
    check_references(graph)?;
    check_names(graph, rewrite.new_values)?;
    check_definitions(graph)?;
    check_nodes(graph, rewrite.replayed)?;
    check_initializers(graph, rewrite.new_initializers)
}

/// Steps 5 and 6: the nodes form a DAG, and each node fits its op.
fn check_nodes(graph: &Graph, replayed: &[bool]) -> Result<(), VerifyError> {
    let order = graph
        .topological_order()
        .map_err(|node| VerifyError::Cycle {
            node: graph.describe_node(node),
        })?;
    for id in order {
        if replayed.get(id.index()).copied().unwrap_or(false) {
            check_result_count(graph, id)?;
        } else {
            check_node(graph, id)?;
        }
    }
    Ok(())
}

/// How a value is named in messages: ``value `name` `` or `value #id` when it has no name.
fn describe_value(graph: &Graph, id: ValueId) -> String {
    match graph.values.get(id.index()) {
        Some(v) if !v.name.is_empty() => format!("value `{}`", v.name),
        _ => format!("value #{}", id.0),
    }
}

fn check_references(graph: &Graph) -> Result<(), VerifyError> {
    let exists = |v: ValueId| v.index() < graph.values.len();
    let unknown = |user: String, value: ValueId| VerifyError::UnknownValue { user, value };
    for (i, &v) in graph.inputs.iter().enumerate() {
        if !exists(v) {
            return Err(unknown(format!("graph input {i}"), v));
        }
    }
    for (i, init) in graph.initializers.iter().enumerate() {
        if !exists(init.value) {
            return Err(unknown(format!("initializer {i}"), init.value));
        }
    }
    for (n, node) in graph.nodes.iter().enumerate() {
        let describe = || graph.describe_node(NodeId(n as u32));
        for (i, v) in node.inputs.iter().enumerate() {
            if let Some(v) = v
                && !exists(*v)
            {
                return Err(unknown(format!("{} operand {i}", describe()), *v));
            }
        }
        for (i, &v) in node.outputs.iter().enumerate() {
            if !exists(v) {
                return Err(unknown(format!("{} result {i}", describe()), v));
            }
        }
    }
    for (i, &v) in graph.outputs.iter().enumerate() {
        if !exists(v) {
            return Err(unknown(format!("graph output {i}"), v));
        }
    }
    Ok(())
}

/// Names are non-empty and unique among the values from index `from` on.
fn check_names(graph: &Graph, from: usize) -> Result<(), VerifyError> {
    let checked = graph.values.get(from..).unwrap_or_default();
    let mut seen: FxHashMap<&str, ValueId> =
        FxHashMap::with_capacity_and_hasher(checked.len(), Default::default());
    for (i, v) in checked.iter().enumerate() {
        let id = ValueId((from + i) as u32);
        if v.name.is_empty() {
            return Err(VerifyError::EmptyName { value: id });
        }
        if let Some(&first) = seen.get(v.name.as_str()) {
            return Err(VerifyError::DuplicateName {
                name: v.name.clone(),
                first,
                second: id,
            });
        }
        seen.insert(&v.name, id);
    }
    Ok(())
}

fn describe_definition(graph: &Graph, def: Definition) -> String {
    match def {
        Definition::Input(i) => format!("graph input {i}"),
        Definition::Initializer(i) => format!("initializer {i}"),
        Definition::Node { node, output } => {
            format!("result {output} of {}", graph.describe_node(node))
        }
    }
}

/// Every value is defined exactly once (a flag per value; the first definition of a value
/// defined twice is looked up again for the message).
fn check_definitions(graph: &Graph) -> Result<(), VerifyError> {
    let mut defined = vec![false; graph.values.len()];
    for (v, def) in graph.each_definition() {
        if std::mem::replace(&mut defined[v.index()], true) {
            let first = graph
                .each_definition()
                .find(|&(w, _)| w == v)
                .map_or(def, |(_, first)| first);
            return Err(VerifyError::DefinedTwice {
                value: describe_value(graph, v),
                first: describe_definition(graph, first),
                second: describe_definition(graph, def),
            });
        }
    }
    match defined.iter().position(|d| !d) {
        Some(i) => Err(VerifyError::Undefined {
            value: describe_value(graph, ValueId(i as u32)),
        }),
        None => Ok(()),
    }
}

fn check_result_count(graph: &Graph, id: NodeId) -> Result<(), VerifyError> {
    let node = graph.node(id);
    let expected = node.op.num_outputs();
    if node.outputs.len() != expected {
        return Err(VerifyError::ResultCount {
            node: graph.describe_node(id),
            expected,
            found: node.outputs.len(),
        });
    }
    Ok(())
}

fn check_node(graph: &Graph, id: NodeId) -> Result<(), VerifyError> {
    check_result_count(graph, id)?;
    let node = graph.node(id);
    let operands: Vec<Option<&TensorType>> = node
        .inputs
        .iter()
        .map(|v| v.map(|v| &graph.value(v).ty))
        .collect();
    let inferred = infer_types(&node.op, &operands).map_err(|error| VerifyError::Operands {
        node: graph.describe_node(id),
        error,
    })?;
    for (output, (&v, inferred)) in node.outputs.iter().zip(inferred).enumerate() {
        let declared = &graph.value(v).ty;
        if *declared != inferred {
            return Err(VerifyError::ResultType {
                node: graph.describe_node(id),
                output,
                value: describe_value(graph, v),
                declared: declared.clone(),
                inferred,
            });
        }
    }
    Ok(())
}

/// Initializers from index `from` on hold their dtype's storage size.
fn check_initializers(graph: &Graph, from: usize) -> Result<(), VerifyError> {
    for init in graph.initializers.get(from..).unwrap_or_default() {
        let ty = &graph.value(init.value).ty;
        let found = match &init.data {
            WeightData::Inline(bytes) => bytes.len() as u128,
            WeightData::External(slices) => slices.iter().map(|s| u128::from(s.length)).sum(),
            WeightData::Absent => continue,
        };
        let Some(dims) = ty.shape.as_known() else {
            continue;
        };
        let expected = dims
            .iter()
            .try_fold(1u128, |acc, &d| acc.checked_mul(u128::from(d)))
            .and_then(|numel| numel.checked_mul(ty.dtype.bits() as u128))
            .map(|bits| bits.div_ceil(8));
        if expected != Some(found) {
            return Err(VerifyError::InitializerSize {
                value: describe_value(graph, init.value),
                ty: ty.clone(),
                expected: expected.unwrap_or(u128::MAX),
                found,
            });
        }
    }
    Ok(())
}
