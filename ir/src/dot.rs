//! Graphviz DOT export of a graph.
//!
//! Graph inputs are ellipses, weights grey boxes (with shape and dtype), op nodes rounded boxes
//! showing the op name, its attributes and the node name, and graph outputs plain labels. Every
//! operand is an edge from the value's producer to its consumer, labelled with the value's name
//! and type. The output is deterministic: it follows the order of the graph's lists.

use std::fmt::Write as _;

use crate::graph::{Definition, Graph, ValueId};
use crate::text::{attribute_texts, type_text};

/// Attribute values longer than this many characters are shortened in node labels.
const MAX_ATTRIBUTE_CHARS: usize = 48;

/// Renders `graph` as a Graphviz `digraph`.
pub fn to_dot(graph: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape(&graph.name));
    out.push_str("  rankdir=TB;\n");
    out.push_str("  node [fontname=\"monospace\", fontsize=10];\n");
    out.push_str("  edge [fontname=\"monospace\", fontsize=9];\n");

    for (i, &id) in graph.inputs.iter().enumerate() {
        let _ = writeln!(
            out,
            "  in{i} [shape=ellipse, label=\"{}\"];",
            label(&["input".to_string(), value_text(graph, id)])
        );
    }
    for (i, init) in graph.initializers.iter().enumerate() {
        let _ = writeln!(
            out,
            "  w{i} [shape=box, style=filled, fillcolor=lightgrey, label=\"{}\"];",
            label(&["weight".to_string(), value_text(graph, init.value)])
        );
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        let mut lines = vec![node.op.name().to_string()];
        for (name, value) in attribute_texts(&node.op) {
            lines.push(format!("{name} = {}", shorten(&value)));
        }
        if !node.name.is_empty() {
            lines.push(format!("@{}", node.name));
        }
        let _ = writeln!(
            out,
            "  n{i} [shape=box, style=rounded, label=\"{}\"];",
            label(&lines)
        );
    }

    let definitions = graph.definitions();
    let mut undefined: Vec<ValueId> = Vec::new();
    let mut source = |id: ValueId, out: &mut String| -> String {
        match definitions.get(id.index()).copied().flatten() {
            Some(Definition::Input(i)) => format!("in{i}"),
            Some(Definition::Initializer(i)) => format!("w{i}"),
            Some(Definition::Node { node, .. }) => format!("n{}", node.0),
            None => {
                if !undefined.contains(&id) {
                    undefined.push(id);
                    let _ = writeln!(
                        out,
                        "  u{} [shape=ellipse, style=dashed, label=\"{}\"];",
                        id.0,
                        label(&["undefined".to_string(), value_text(graph, id)])
                    );
                }
                format!("u{}", id.0)
            }
        }
    };
    for (i, node) in graph.nodes.iter().enumerate() {
        for id in node.inputs.iter().flatten() {
            let from = source(*id, &mut out);
            let _ = writeln!(
                out,
                "  {from} -> n{i} [label=\"{}\"];",
                label(&[value_text(graph, *id)])
            );
        }
    }
    for (i, &id) in graph.outputs.iter().enumerate() {
        let from = source(id, &mut out);
        let _ = writeln!(out, "  out{i} [shape=plaintext, label=\"output {i}\"];");
        let _ = writeln!(
            out,
            "  {from} -> out{i} [label=\"{}\"];",
            label(&[value_text(graph, id)])
        );
    }
    out.push_str("}\n");
    out
}

/// `%name: dtype[shape]`, or a marker for an id outside the graph.
fn value_text(graph: &Graph, id: ValueId) -> String {
    match graph.values.get(id.index()) {
        Some(v) => format!("%{}: {}", v.name, type_text(&v.ty)),
        None => format!("<invalid value #{}>", id.0),
    }
}

fn shorten(value: &str) -> String {
    if value.chars().count() <= MAX_ATTRIBUTE_CHARS {
        value.to_string()
    } else {
        let head: String = value.chars().take(MAX_ATTRIBUTE_CHARS - 3).collect();
        format!("{head}...")
    }
}

/// Lines escaped for a double-quoted DOT label, joined with DOT's `\n`.
fn label(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| escape(l))
        .collect::<Vec<_>>()
        .join("\\n")
}

/// Escapes text for a double-quoted DOT string: backslashes and quotes are escaped, line breaks
/// become `\n` and other control characters are dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::graph::{Node, TensorType, WeightData};
    use crate::op::{Op, UnaryOp};
    use crate::shape::{Dim, Shape};

    fn sample() -> Graph {
        let mut g = Graph::new("g \"quoted\"");
        let ty = TensorType::new(DType::F32, Shape(vec![Dim::sym("n"), Dim::Known(4)]));
        let x = g.add_input("x\\in", ty.clone());
        let w = g.add_initializer("w", ty.clone(), WeightData::Absent);
        let s = g.add_value("s", ty.clone());
        g.add_node(Node {
            name: "layer \"0\"".into(),
            op: Op::Binary(crate::op::BinaryOp::Add),
            inputs: vec![Some(x), Some(w)],
            outputs: vec![s],
        });
        let t = g.add_value("t", ty.clone());
        g.add_node(Node {
            name: String::new(),
            op: Op::Softmax { axis: -1 },
            inputs: vec![Some(s)],
            outputs: vec![t],
        });
        let u = g.add_value("u", ty);
        g.add_node(Node {
            name: String::new(),
            op: Op::Unary(UnaryOp::Exp),
            inputs: vec![Some(t)],
            outputs: vec![u],
        });
        g.outputs = vec![u, t];
        g
    }

    #[test]
    fn structure_and_escaping() {
        let dot = to_dot(&sample());
        assert!(dot.starts_with("digraph \"g \\\"quoted\\\"\" {\n"));
        assert!(dot.ends_with("}\n"));
        let node_lines = dot.lines().filter(|l| l.contains(" [shape=")).count();
        // 1 input, 1 weight, 3 op nodes, 2 outputs.
        assert_eq!(node_lines, 7);
        // 2 + 1 + 1 operand edges and 2 output edges.
        assert_eq!(dot.lines().filter(|l| l.contains(" -> ")).count(), 6);
        assert!(dot.contains("  in0 -> n0 [label=\"%x\\\\in: f32[n, 4]\"];"));
        assert!(dot.contains("  w0 -> n0 [label=\"%w: f32[n, 4]\"];"));
        assert!(dot.contains("label=\"add\\n@layer \\\"0\\\"\""));
        assert!(dot.contains("label=\"softmax\\naxis = -1\""));
        assert!(dot.contains("  n2 -> out0 "));
        assert!(dot.contains("  n1 -> out1 "));
        assert_eq!(dot, to_dot(&sample()));
    }

    #[test]
    fn undefined_operands_get_a_node() {
        let mut g = sample();
        let ghost = g.add_value("ghost", TensorType::new(DType::I64, Shape::scalar()));
        g.nodes[2].inputs.push(Some(ghost));
        let dot = to_dot(&g);
        assert!(
            dot.contains(
                "  u5 [shape=ellipse, style=dashed, label=\"undefined\\n%ghost: i64[]\"];"
            )
        );
        assert!(dot.contains("  u5 -> n2 "));
    }
}
