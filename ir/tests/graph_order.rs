//! `Graph::topological_order`: a sorted node list comes back as it is, an unsorted one is sorted
//! taking the lowest ready id first, and a cycle names a node on it.

use cubevec_ir::graph::Node;
use cubevec_ir::op::UnaryOp;
use cubevec_ir::{DType, Graph, NodeId, Op, Shape, TensorType, ValueId};

/// A graph whose node `i` computes `values[outputs[i]] = neg(values[inputs[i]])`, over value 0
/// (a graph input) and `n` more values.
fn chain(n: usize, wiring: &[(usize, usize)]) -> Graph {
    let mut graph = Graph::new("chain");
    let ty = TensorType::new(DType::F32, Shape::known(&[2]));
    let x = graph.add_input("x", ty.clone());
    let values: Vec<ValueId> = std::iter::once(x)
        .chain((1..=n).map(|i| graph.add_value(format!("v{i}"), ty.clone())))
        .collect();
    for (i, &(input, output)) in wiring.iter().enumerate() {
        graph.add_node(Node {
            name: format!("n{i}"),
            op: Op::Unary(UnaryOp::Neg),
            inputs: vec![Some(values[input])],
            outputs: vec![values[output]],
        });
    }
    graph.outputs.push(values[n]);
    graph
}

fn ids(order: &[usize]) -> Vec<NodeId> {
    order.iter().map(|&n| NodeId(n as u32)).collect()
}

#[test]
fn a_sorted_node_list_is_its_own_order() {
    // x -> v1 -> v2, and x -> v3.
    let graph = chain(3, &[(0, 1), (1, 2), (0, 3)]);
    assert_eq!(graph.topological_order(), Ok(ids(&[0, 1, 2])));
}

#[test]
fn an_unsorted_node_list_is_sorted_lowest_ready_first() {
    // Node 0 reads v2, which node 2 computes from v1, which node 1 computes from x.
    let graph = chain(3, &[(2, 3), (0, 1), (1, 2)]);
    assert_eq!(graph.topological_order(), Ok(ids(&[1, 2, 0])));
}

#[test]
fn a_cycle_names_a_node_on_it() {
    let graph = chain(2, &[(2, 1), (1, 2)]);
    assert_eq!(graph.topological_order(), Err(NodeId(0)));
}
