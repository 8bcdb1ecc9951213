//! The verifier: a valid graph passes, and each broken invariant is reported with the node or
//! value at fault.

use std::sync::Arc;

use cubevec_ir::graph::{Node, WeightData};
use cubevec_ir::infer::InferError;
use cubevec_ir::op::UnaryOp;
use cubevec_ir::verify::{Rewrite, VerifyError, verify, verify_rewritten};
use cubevec_ir::{DType, Dim, Graph, NodeId, Op, Shape, TensorType, ValueId};

fn t(dtype: DType, dims: &[u64]) -> TensorType {
    TensorType::new(dtype, Shape::known(dims))
}

fn seq_by(n: u64) -> TensorType {
    TensorType::new(DType::F32, Shape(vec![Dim::sym("seq"), Dim::Known(n)]))
}

fn inline(bytes: usize) -> WeightData {
    WeightData::Inline(Arc::from(vec![0u8; bytes]))
}

/// `x: f32[seq, 4]`, `w: f32[4, 2]` → `y = matmul(x, w)` (node `proj`) → `relu(y)` (node `act`,
/// generated result name) → output.
fn valid_graph() -> Graph {
    let mut graph = Graph::new("mlp");
    let mut b = graph.builder();
    let x = b.add_input("x", seq_by(4)).unwrap();
    let w = b
        .add_initializer("w", t(DType::F32, &[4, 2]), inline(32))
        .unwrap();
    let y = b
        .add_op("proj", Op::MatMul, vec![Some(x), Some(w)], vec!["y".into()])
        .unwrap();
    let z = b
        .add_op("act", Op::Unary(UnaryOp::Relu), vec![Some(y[0])], vec![])
        .unwrap();
    b.add_output(z[0]).unwrap();
    graph
}

const X: ValueId = ValueId(0);
const Y: ValueId = ValueId(2);
const PROJ: usize = 0;
const ACT: usize = 1;

fn error_of(graph: &Graph) -> VerifyError {
    match verify(graph) {
        Ok(()) => panic!("graph `{}` verified", graph.name),
        Err(e) => e,
    }
}

#[test]
fn a_valid_graph_with_symbolic_dims_passes() {
    let graph = valid_graph();
    assert_eq!(verify(&graph), Ok(()));
    assert_eq!(graph.value(ValueId(3)).name, "act:0");
    assert_eq!(graph.value(ValueId(3)).ty, seq_by(2));
}

#[test]
fn a_graph_needs_an_output() {
    let mut graph = valid_graph();
    graph.outputs.clear();
    let e = error_of(&graph);
    assert_eq!(
        e,
        VerifyError::NoOutputs {
            graph: "mlp".into()
        }
    );
    assert_eq!(e.to_string(), "graph `mlp` has no outputs");
}

#[test]
fn operands_and_outputs_must_exist() {
    let mut graph = valid_graph();
    graph.nodes[PROJ].inputs[1] = Some(ValueId(99));
    let e = error_of(&graph);
    assert_eq!(
        e.to_string(),
        "node `proj` (matmul) operand 1 refers to value #99, which is not in the graph"
    );

    let mut graph = valid_graph();
    graph.outputs.push(ValueId(7));
    let e = error_of(&graph);
    assert_eq!(
        e,
        VerifyError::UnknownValue {
            user: "graph output 1".into(),
            value: ValueId(7)
        }
    );

    let mut graph = valid_graph();
    graph.nodes[ACT].outputs[0] = ValueId(5);
    assert!(
        error_of(&graph)
            .to_string()
            .starts_with("node `act` (relu) result 0 refers to value #5")
    );
}

#[test]
fn value_names_are_unique_and_non_empty() {
    let mut graph = valid_graph();
    graph.values[Y.index()].name = "x".into();
    let e = error_of(&graph);
    assert_eq!(
        e,
        VerifyError::DuplicateName {
            name: "x".into(),
            first: X,
            second: Y
        }
    );
    assert_eq!(e.to_string(), "values #0 and #2 are both named `x`");

    let mut graph = valid_graph();
    graph.values[Y.index()].name.clear();
    assert_eq!(error_of(&graph), VerifyError::EmptyName { value: Y });
}

#[test]
fn a_graph_input_cannot_be_a_node_result() {
    let mut graph = valid_graph();
    graph.inputs.push(Y);
    let e = error_of(&graph);
    assert_eq!(
        e.to_string(),
        "value `y` is defined twice: as graph input 1 and as result 0 of node `proj` (matmul)"
    );
}

#[test]
fn a_value_is_defined_at_most_once_by_nodes() {
    let mut graph = valid_graph();
    graph.nodes[ACT].outputs[0] = Y;
    // The act result is now defined by nothing, but the double definition is found first.
    let e = error_of(&graph);
    assert!(matches!(e, VerifyError::DefinedTwice { .. }), "{e:?}");
    assert!(
        e.to_string().contains("result 0 of node `act` (relu)"),
        "{e}"
    );
}

#[test]
fn every_value_is_defined() {
    let mut graph = valid_graph();
    let ghost = graph.add_value("ghost", seq_by(2));
    graph.nodes[ACT].inputs[0] = Some(ghost);
    let e = error_of(&graph);
    assert_eq!(
        e.to_string(),
        "value `ghost` is not a graph input, an initializer or a node result"
    );
}

#[test]
fn the_nodes_are_acyclic() {
    let mut graph = Graph::new("loop");
    let a = graph.add_value("a", t(DType::F32, &[2]));
    let b = graph.add_value("b", t(DType::F32, &[2]));
    for (name, input, output) in [("first", b, a), ("second", a, b)] {
        graph.add_node(Node {
            name: name.into(),
            op: Op::Unary(UnaryOp::Neg),
            inputs: vec![Some(input)],
            outputs: vec![output],
        });
    }
    graph.outputs.push(b);
    let e = error_of(&graph);
    assert_eq!(
        e,
        VerifyError::Cycle {
            node: "node `first` (neg)".into()
        }
    );
    assert_eq!(e.to_string(), "node `first` (neg) is on a dependency cycle");
}

#[test]
fn result_count_matches_the_op() {
    let mut graph = valid_graph();
    let out = graph.values[Y.index()].ty.clone();
    let extra = graph.add_value("extra", out);
    graph.nodes[PROJ].outputs.push(extra);
    let e = error_of(&graph);
    assert_eq!(
        e.to_string(),
        "node `proj` (matmul) has 2 results, its op gives 1"
    );
}

#[test]
fn operand_count_and_slots_are_checked() {
    let mut graph = valid_graph();
    graph.nodes[PROJ].inputs.pop();
    let e = error_of(&graph);
    assert_eq!(
        e,
        VerifyError::Operands {
            node: "node `proj` (matmul)".into(),
            error: InferError::OperandCount {
                op: "matmul",
                expected: "2".into(),
                got: 1
            }
        }
    );
    assert_eq!(
        e.to_string(),
        "node `proj` (matmul): matmul takes 2 operands, got 1"
    );

    let mut graph = valid_graph();
    graph.nodes[PROJ].inputs[0] = None;
    let e = error_of(&graph);
    assert_eq!(
        e.to_string(),
        "node `proj` (matmul): matmul operand 0 (`a`) is required but absent"
    );
}

#[test]
fn operand_types_are_checked() {
    let mut graph = valid_graph();
    graph.values[1].ty = t(DType::F32, &[3, 2]);
    let e = error_of(&graph);
    assert!(matches!(&e, VerifyError::Operands { node, .. } if node == "node `proj` (matmul)"));
    assert!(
        e.to_string()
            .contains("contraction size 3 does not match 4"),
        "{e}"
    );
}

#[test]
fn declared_result_types_equal_inferred_ones() {
    let mut graph = valid_graph();
    graph.values[Y.index()].ty = seq_by(3);
    let e = error_of(&graph);
    assert_eq!(
        e,
        VerifyError::ResultType {
            node: "node `proj` (matmul)".into(),
            output: 0,
            value: "value `y`".into(),
            declared: seq_by(3),
            inferred: seq_by(2),
        }
    );
    assert_eq!(
        e.to_string(),
        "node `proj` (matmul): result 0 (value `y`) is declared f32[seq, 3] but the op gives f32[seq, 2]"
    );

    let mut graph = valid_graph();
    graph.nodes[ACT].name.clear();
    let z = graph.nodes[ACT].outputs[0];
    graph.values[z.index()].ty.dtype = DType::F16;
    let e = error_of(&graph);
    assert!(e.to_string().starts_with("node #1 (relu): result 0"), "{e}");
    assert_eq!(graph.describe_node(NodeId(1)), "node #1 (relu)");
}

#[test]
fn initializer_sizes_match_their_types() {
    let mut graph = valid_graph();
    graph.initializers[0].data = inline(31);
    let e = error_of(&graph);
    assert_eq!(
        e.to_string(),
        "initializer value `w` of type f32[4, 2] has 31 bytes, expected 32"
    );

    let mut graph = valid_graph();
    graph.initializers[0].data = WeightData::file_slice("model.safetensors", 128, 16);
    assert!(matches!(
        error_of(&graph),
        VerifyError::InitializerSize {
            expected: 32,
            found: 16,
            ..
        }
    ));

    // No data to check.
    let mut graph = valid_graph();
    graph.initializers[0].data = WeightData::Absent;
    assert_eq!(verify(&graph), Ok(()));

    // Packed FP4 rounds up to whole bytes: 5 elements take 3 bytes.
    let mut graph = valid_graph();
    graph
        .builder()
        .add_initializer("codes", t(DType::F4E2M1, &[5]), inline(3))
        .unwrap();
    assert_eq!(verify(&graph), Ok(()));
    let mut graph = valid_graph();
    graph
        .builder()
        .add_initializer("codes", t(DType::F4E2M1, &[5]), inline(2))
        .unwrap();
    assert!(matches!(
        error_of(&graph),
        VerifyError::InitializerSize {
            expected: 3,
            found: 2,
            ..
        }
    ));

    // A symbolic shape has no fixed size.
    let mut graph = valid_graph();
    graph
        .builder()
        .add_initializer("table", seq_by(2), inline(8))
        .unwrap();
    assert_eq!(verify(&graph), Ok(()));
}

/// A rewrite of a verified graph is checked where it could have broken it: the names of its new
/// values, the sizes of its new initializers, every reference and definition, and the result
/// types of the nodes that are not replays; the names and sizes it kept are trusted.
#[test]
fn a_rewrite_is_checked_where_it_could_have_broken_the_graph() {
    let all_new = Rewrite {
        new_values: 0,
        new_initializers: 0,
        replayed: &[],
    };
    let mut graph = valid_graph();
    graph.initializers[0].data = inline(31);
    graph.values[3].name = "y".into();
    assert!(matches!(
        verify_rewritten(&graph, &all_new),
        Err(VerifyError::DuplicateName { .. })
    ));
    let kept = Rewrite {
        new_values: 4,
        new_initializers: 1,
        replayed: &[],
    };
    assert_eq!(verify_rewritten(&graph, &kept), Ok(()));
    let new_last_value = Rewrite {
        new_values: 2,
        ..kept
    };
    assert_eq!(
        verify_rewritten(&graph, &new_last_value),
        Err(VerifyError::DuplicateName {
            name: "y".into(),
            first: Y,
            second: ValueId(3)
        })
    );
    let new_initializer = Rewrite {
        new_initializers: 0,
        ..kept
    };
    assert!(matches!(
        verify_rewritten(&graph, &new_initializer),
        Err(VerifyError::InitializerSize { .. })
    ));

    // A replayed node's result types are not inferred again; its references are checked.
    let mut graph = valid_graph();
    let z = graph.nodes[ACT].outputs[0];
    graph.values[z.index()].ty.dtype = DType::F16;
    let replayed = Rewrite {
        replayed: &[false, true],
        ..kept
    };
    assert_eq!(verify_rewritten(&graph, &replayed), Ok(()));
    assert!(matches!(
        verify_rewritten(&graph, &kept),
        Err(VerifyError::ResultType { .. })
    ));
    graph.nodes[ACT].inputs[0] = Some(ValueId(99));
    assert!(matches!(
        verify_rewritten(&graph, &replayed),
        Err(VerifyError::UnknownValue { .. })
    ));
}
