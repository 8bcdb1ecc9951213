//! Weights stacked from tensors stored apart.
//!
//! A checkpoint stores each routed expert's projection as a tensor of its own; the MoE op reads
//! them stacked, `[experts, out, in]`. The readers build the stack as a `concat` of the
//! per-expert weights, and [`merge_stacked_weights`] then turns every such `concat` into a single
//! weight whose data is the list of the pieces' file slices. The bytes are the same, read in the
//! same order; the graph keeps one value per stack instead of one per expert (DeepSeek-V3: about
//! 90,000 weights fewer), which every later phase walks.

use cubevec_ir::Op;
use cubevec_ir::graph::{Definition, Graph, Initializer, WeightData};

/// Replaces every `concat` along the first axis whose operands are all weights that nothing
/// else reads, of one kind (all in files, all inline or all absent), and each exactly its
/// elements' bytes, by one weight holding their data one after the other: the concat's result
/// becomes that weight, in the place of the first piece among the initializers, and the pieces
/// are dropped.
pub fn merge_stacked_weights(graph: &mut Graph) {
    let definitions = graph.definitions();
    let mut uses = vec![0u32; graph.values.len()];
    for v in graph.nodes.iter().flat_map(|n| n.inputs.iter().flatten()) {
        uses[v.index()] += 1;
    }
    for v in &graph.outputs {
        uses[v.index()] += 1;
    }
    // Per initializer: the merged weight it is the first piece of, or whether it is a piece.
    let mut first_piece_of: Vec<Option<Initializer>> = vec![None; graph.initializers.len()];
    let mut piece = vec![false; graph.initializers.len()];
    let mut keep_value = vec![true; graph.values.len()];
    let mut keep_node = vec![true; graph.nodes.len()];
    for (n, node) in graph.nodes.iter().enumerate() {
        let ([result], Op::Concat { axis }) = (node.outputs.as_slice(), &node.op) else {
            continue;
        };
        let rank = graph.value(*result).ty.shape.rank() as i64;
        if *axis != 0 && *axis != -rank {
            continue;
        }
        let pieces: Option<Vec<usize>> = (node.inputs.iter())
            .map(|v| match definitions[(*v)?.index()] {
                Some(Definition::Initializer(i)) if uses[(*v)?.index()] == 1 => Some(i),
                _ => None,
            })
            .collect();
        let Some(pieces) = pieces.filter(|p| p.len() > 1) else {
            continue;
        };
        let Some(data) = stacked_data(graph, &pieces) else {
            continue;
        };
        keep_node[n] = false;
        first_piece_of[pieces[0]] = Some(Initializer {
            value: *result,
            data,
        });
        for i in pieces {
            piece[i] = true;
            keep_value[graph.initializers[i].value.index()] = false;
        }
    }
    graph.retain_nodes(&keep_node);
    let initializers = std::mem::take(&mut graph.initializers);
    for ((init, merged), piece) in initializers.into_iter().zip(first_piece_of).zip(piece) {
        match (merged, piece) {
            (Some(merged), _) => graph.initializers.push(merged),
            (None, true) => {}
            (None, false) => graph.initializers.push(init),
        }
    }
    graph.retain_values(&keep_value);
}

/// The data of the initializers `pieces` one after the other, if they are of one kind and each
/// holds exactly its elements' bytes.
fn stacked_data(graph: &Graph, pieces: &[usize]) -> Option<WeightData> {
    let exact = pieces.iter().all(|&i| {
        let ty = &graph.value(graph.initializers[i].value).ty;
        ty.shape.as_known().is_some_and(|dims| {
            (dims.iter().product::<u64>() * ty.dtype.bits() as u64).is_multiple_of(8)
        })
    });
    if !exact {
        return None;
    }
    let data = || pieces.iter().map(|&i| &graph.initializers[i].data);
    match data().next()? {
        WeightData::External(_) => {
            let mut slices = Vec::new();
            for d in data() {
                let WeightData::External(s) = d else {
                    return None;
                };
                slices.extend(s.iter().cloned());
            }
            Some(WeightData::External(slices))
        }
        WeightData::Inline(_) => {
            let mut bytes = Vec::new();
            for d in data() {
                let WeightData::Inline(b) = d else {
                    return None;
                };
                bytes.extend_from_slice(b);
            }
            Some(WeightData::Inline(bytes.into()))
        }
        WeightData::Absent => data()
            .all(|d| *d == WeightData::Absent)
            .then_some(WeightData::Absent),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cubevec_ir::graph::FileSlice;
    use cubevec_ir::op::BinaryOp;
    use cubevec_ir::verify::verify;
    use cubevec_ir::{DType, Shape, TensorType, ValueId};

    use super::*;

    fn f32s(rows: u64) -> TensorType {
        TensorType::new(DType::F32, Shape::known(&[rows, 2]))
    }

    fn inline(bytes: &[u8]) -> WeightData {
        WeightData::Inline(Arc::from(bytes.to_vec()))
    }

    fn slice(offset: u64) -> WeightData {
        WeightData::file_slice("w.safetensors", offset, 8)
    }

    /// `x [rows, 2] + concat(pieces)` for `[1, 2]` f32 pieces of the given data, and another
    /// reader of the first piece when `first_read_again`.
    fn stack(pieces: Vec<WeightData>, first_read_again: bool) -> Graph {
        let mut graph = Graph::new("stack");
        let mut b = graph.builder();
        let rows = pieces.len() as u64;
        let x = b.add_input("x", f32s(rows)).unwrap();
        let ids: Vec<ValueId> = (pieces.into_iter().enumerate())
            .map(|(i, data)| b.add_initializer(format!("w{i}"), f32s(1), data).unwrap())
            .collect();
        let inputs = ids.iter().map(|&v| Some(v)).collect();
        let stacked = b
            .add_op("stack", Op::Concat { axis: 0 }, inputs, vec!["w".into()])
            .unwrap();
        let y = b
            .add_op(
                "add",
                Op::Binary(BinaryOp::Add),
                vec![Some(x), Some(stacked[0])],
                vec!["y".into()],
            )
            .unwrap();
        b.add_output(y[0]).unwrap();
        if first_read_again {
            let z = b
                .add_op(
                    "neg",
                    Op::Unary(cubevec_ir::op::UnaryOp::Neg),
                    vec![Some(ids[0])],
                    vec![],
                )
                .unwrap();
            b.add_output(z[0]).unwrap();
        }
        graph
    }

    /// The data of the weight named `name`.
    fn data_of<'g>(graph: &'g Graph, name: &str) -> Option<&'g WeightData> {
        let value = graph.value_by_name(name)?;
        (graph.initializers.iter())
            .find(|i| i.value == value)
            .map(|i| &i.data)
    }

    #[test]
    fn file_slices_become_one_weight() {
        let mut graph = stack(vec![slice(0), slice(64), slice(8)], false);
        merge_stacked_weights(&mut graph);
        verify(&graph).unwrap();
        assert!(
            !graph
                .nodes
                .iter()
                .any(|n| matches!(n.op, Op::Concat { .. }))
        );
        assert_eq!(graph.initializers.len(), 1);
        let offsets: Vec<u64> = match data_of(&graph, "w") {
            Some(WeightData::External(slices)) => slices.iter().map(|s| s.offset).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(offsets, [0, 64, 8]);
        assert_eq!(graph.values.len(), 3, "x, w and y are left");
    }

    #[test]
    fn inline_and_absent_pieces_merge_by_kind() {
        let mut graph = stack(vec![inline(&[1; 8]), inline(&[2; 8])], false);
        merge_stacked_weights(&mut graph);
        verify(&graph).unwrap();
        let expected: Vec<u8> = [[1u8; 8], [2; 8]].concat();
        assert_eq!(data_of(&graph, "w"), Some(&inline(&expected)));

        let mut graph = stack(vec![WeightData::Absent, WeightData::Absent], false);
        merge_stacked_weights(&mut graph);
        verify(&graph).unwrap();
        assert_eq!(data_of(&graph, "w"), Some(&WeightData::Absent));
    }

    #[test]
    fn mixed_or_shared_pieces_stay_a_concat() {
        for graph in [
            stack(vec![slice(0), inline(&[0; 8])], false),
            stack(vec![slice(0), WeightData::Absent], false),
            stack(vec![slice(0), slice(8)], true),
        ] {
            let mut merged = graph.clone();
            merge_stacked_weights(&mut merged);
            assert_eq!(merged, graph);
        }
    }

    #[test]
    fn slices_keep_their_files() {
        let piece = |path: &str| {
            WeightData::External(vec![FileSlice {
                path: path.into(),
                offset: 0,
                length: 8,
            }])
        };
        let mut graph = stack(vec![piece("a"), piece("b")], false);
        merge_stacked_weights(&mut graph);
        let paths: Vec<String> = match data_of(&graph, "w") {
            Some(WeightData::External(slices)) => (slices.iter())
                .map(|s| s.path.display().to_string())
                .collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(paths, ["a", "b"]);
    }
}
