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
    let mut index = 0;
    graph.nodes.retain(|_| {
        index += 1;
        keep_node[index - 1]
    });
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
