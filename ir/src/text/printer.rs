//! The printer of the textual IR.
//!
//! Statements are emitted so that the parser assigns every value, initializer and node the index
//! it has in the graph: inputs, weights and nodes keep their list orders and are interleaved by
//! the first value id each defines. Where that cannot reproduce the value order (a graph edited
//! by a pass, a value nothing defines), `declare` lines fix the ids before their definitions.

use std::fmt::Write as _;

use crate::graph::{Graph, TensorType, ValueId, WeightData};
use crate::shape::Dim;

use super::PrintOptions;
use super::lexer::{is_bare_name, is_identifier, quote};
use super::ops::{AttrValue, attributes};

/// Prints `graph` as text.
pub(crate) fn print_graph(graph: &Graph, options: &PrintOptions) -> String {
    let mut printer = Printer {
        graph,
        options,
        out: String::new(),
        assigned: 0,
    };
    printer.graph();
    printer.out
}

/// One statement of the body, by its position in the graph's lists.
#[derive(Clone, Copy)]
enum Statement {
    Input(usize),
    Weight(usize),
    Node(usize),
}

struct Printer<'g> {
    graph: &'g Graph,
    options: &'g PrintOptions,
    out: String,
    /// Value ids below this are already introduced in the text.
    assigned: usize,
}

impl Printer<'_> {
    fn graph(&mut self) {
        let _ = writeln!(self.out, "graph @{} {{", name_text(&self.graph.name));
        for statement in self.statement_order() {
            self.statement(statement);
        }
        self.declare_up_to(self.graph.values.len());
        self.out.push_str("  return");
        for (i, &id) in self.graph.outputs.iter().enumerate() {
            self.out.push_str(if i == 0 { " " } else { ", " });
            self.out.push_str(&self.value_ref(id));
        }
        self.out.push_str("\n}\n");
    }

    /// Inputs, weights and nodes merged by the smallest value id each statement defines.
    fn statement_order(&self) -> Vec<Statement> {
        let g = self.graph;
        let key = |s: Statement| -> (u64, u8) {
            match s {
                Statement::Input(i) => (u64::from(g.inputs[i].0), 0),
                Statement::Weight(i) => (u64::from(g.initializers[i].value.0), 1),
                Statement::Node(i) => (
                    g.nodes[i]
                        .outputs
                        .iter()
                        .map(|v| u64::from(v.0))
                        .min()
                        .unwrap_or(u64::MAX),
                    2,
                ),
            }
        };
        let (mut input, mut weight, mut node) = (0, 0, 0);
        let mut order = Vec::with_capacity(g.inputs.len() + g.initializers.len() + g.nodes.len());
        loop {
            let heads = [
                (input < g.inputs.len()).then_some(Statement::Input(input)),
                (weight < g.initializers.len()).then_some(Statement::Weight(weight)),
                (node < g.nodes.len()).then_some(Statement::Node(node)),
            ];
            let Some(next) = heads.into_iter().flatten().min_by_key(|s| key(*s)) else {
                return order;
            };
            match next {
                Statement::Input(_) => input += 1,
                Statement::Weight(_) => weight += 1,
                Statement::Node(_) => node += 1,
            }
            order.push(next);
        }
    }

    /// Emits `declare` lines so that every id below `end` is introduced.
    fn declare_up_to(&mut self, end: usize) {
        let end = end.min(self.graph.values.len());
        while self.assigned < end {
            let id = ValueId(self.assigned as u32);
            let line = format!(
                "  declare {}: {}\n",
                self.value_ref(id),
                type_text(&self.graph.values[id.index()].ty)
            );
            self.out.push_str(&line);
            self.assigned += 1;
        }
    }

    /// Makes sure the parser gives `defined` (in order) and `used` their ids: if the defined ids
    /// are not exactly the next ones, or a used id is not introduced yet, declare up to the
    /// largest of them first.
    fn prepare(&mut self, defined: &[ValueId], used: &[ValueId]) {
        let in_sequence = defined
            .iter()
            .enumerate()
            .all(|(i, v)| v.index() == self.assigned + i);
        let pending_use = used.iter().any(|v| v.index() >= self.assigned);
        if in_sequence && !pending_use {
            self.assigned += defined.len();
            return;
        }
        let largest = defined
            .iter()
            .chain(used)
            .map(|v| v.index() + 1)
            .max()
            .unwrap_or(0);
        self.declare_up_to(largest);
    }

    fn statement(&mut self, statement: Statement) {
        let g = self.graph;
        match statement {
            Statement::Input(i) => {
                let id = g.inputs[i];
                self.prepare(&[id], &[]);
                let line = format!("  input {}\n", self.typed_value(id));
                self.out.push_str(&line);
            }
            Statement::Weight(i) => {
                let init = &g.initializers[i];
                self.prepare(&[init.value], &[]);
                let data = match &init.data {
                    WeightData::Inline(bytes) => match self.options.elide_inline_over {
                        Some(limit) if bytes.len() > limit => {
                            format!("inline <{} bytes elided>", bytes.len())
                        }
                        _ => {
                            let mut hex = String::with_capacity(2 + 2 * bytes.len());
                            hex.push_str("inline 0x");
                            for b in bytes.iter() {
                                let _ = write!(hex, "{b:02x}");
                            }
                            hex
                        }
                    },
                    WeightData::External(slices) => {
                        let slices: Vec<String> = slices
                            .iter()
                            .map(|s| {
                                let path = quote(&s.path.to_string_lossy());
                                format!("{path} offset {} length {}", s.offset, s.length)
                            })
                            .collect();
                        format!("external {}", slices.join(", "))
                    }
                    WeightData::Absent => "absent".to_string(),
                };
                let line = format!("  weight {} = {data}\n", self.typed_value(init.value));
                self.out.push_str(&line);
            }
            Statement::Node(i) => {
                let node = &g.nodes[i];
                let used: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
                self.prepare(&node.outputs, &used);
                let mut line = String::from("  ");
                for (j, &out) in node.outputs.iter().enumerate() {
                    if j > 0 {
                        line.push_str(", ");
                    }
                    line.push_str(&self.typed_value(out));
                }
                if !node.outputs.is_empty() {
                    line.push_str(" = ");
                }
                line.push_str(node.op.name());
                line.push('(');
                for (j, input) in node.inputs.iter().enumerate() {
                    if j > 0 {
                        line.push_str(", ");
                    }
                    match input {
                        Some(v) => line.push_str(&self.value_ref(*v)),
                        None => line.push('_'),
                    }
                }
                line.push(')');
                let attrs = attributes(&node.op);
                if !attrs.is_empty() {
                    line.push_str(" {");
                    line.push_str(&attribute_list(&attrs));
                    line.push('}');
                }
                if !node.name.is_empty() {
                    line.push_str(" @");
                    line.push_str(&name_text(&node.name));
                }
                line.push('\n');
                self.out.push_str(&line);
            }
        }
    }

    /// `%name`, or a placeholder that does not parse for an id outside the graph.
    fn value_ref(&self, id: ValueId) -> String {
        match self.graph.values.get(id.index()) {
            Some(v) => format!("%{}", name_text(&v.name)),
            None => format!("%<invalid value #{}>", id.0),
        }
    }

    /// `%name: type`.
    fn typed_value(&self, id: ValueId) -> String {
        match self.graph.values.get(id.index()) {
            Some(v) => format!("%{}: {}", name_text(&v.name), type_text(&v.ty)),
            None => self.value_ref(id),
        }
    }
}

/// A name after `%` or `@`: bare when it only has letters, digits, `_` and `.`, else quoted.
fn name_text(name: &str) -> String {
    if is_bare_name(name) {
        name.to_string()
    } else {
        quote(name)
    }
}

/// `dtype[dims]`.
pub(crate) fn type_text(ty: &TensorType) -> String {
    let mut out = String::from(ty.dtype.name());
    out.push('[');
    for (i, d) in ty.shape.dims().iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_dim(&mut out, d);
    }
    out.push(']');
    out
}

/// Binding strength of a dimension when printed: atoms and calls 3, `*` and `/` 2, `+` and
/// `-` 1 (as [`Dim`]'s `Display`).
fn precedence(d: &Dim) -> u8 {
    match d {
        Dim::Add(..) | Dim::Sub(..) => 1,
        Dim::Mul(..) | Dim::FloorDiv(..) => 2,
        _ => 3,
    }
}

/// Writes a dimension exactly as [`Dim`]'s `Display` does, except that a symbol which is not a
/// plain identifier is quoted so that it reads back as the same symbol.
pub(crate) fn write_dim(out: &mut String, d: &Dim) {
    fn operand(out: &mut String, d: &Dim, min: u8) {
        if precedence(d) < min {
            out.push('(');
            write_dim(out, d);
            out.push(')');
        } else {
            write_dim(out, d);
        }
    }
    fn infix(out: &mut String, a: &Dim, op: char, b: &Dim, prec: u8) {
        operand(out, a, prec);
        out.push(op);
        operand(out, b, prec + 1);
    }
    fn call(out: &mut String, name: &str, a: &Dim, b: &Dim) {
        out.push_str(name);
        out.push('(');
        write_dim(out, a);
        out.push_str(", ");
        write_dim(out, b);
        out.push(')');
    }
    match d {
        Dim::Known(n) => {
            let _ = write!(out, "{n}");
        }
        Dim::Sym(s) if is_identifier(s) => out.push_str(s),
        Dim::Sym(s) => out.push_str(&quote(s)),
        Dim::Add(a, b) => infix(out, a, '+', b, 1),
        Dim::Sub(a, b) => infix(out, a, '-', b, 1),
        Dim::Mul(a, b) => infix(out, a, '*', b, 2),
        Dim::FloorDiv(a, b) => infix(out, a, '/', b, 2),
        Dim::CeilDiv(a, b) => call(out, "ceildiv", a, b),
        Dim::Min(a, b) => call(out, "min", a, b),
        Dim::Max(a, b) => call(out, "max", a, b),
    }
}

/// An `f32` given by its bits, as a literal that reads back to the same bits.
pub(crate) fn float_text(bits: u32) -> String {
    let v = f32::from_bits(bits);
    if v.is_nan() {
        if bits == f32::NAN.to_bits() {
            "nan".to_string()
        } else {
            format!("f32bits(0x{bits:08x})")
        }
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{v:?}")
    }
}

/// The attributes of `op` as `(name, printed value)` pairs, in printing order.
pub(crate) fn attribute_texts(op: &crate::op::Op) -> Vec<(&'static str, String)> {
    attributes(op)
        .iter()
        .map(|(name, value)| (*name, attr_text(value)))
        .collect()
}

/// `name = value, ...`.
fn attribute_list(attrs: &[(&str, AttrValue)]) -> String {
    attrs
        .iter()
        .map(|(name, value)| format!("{name} = {}", attr_text(value)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list<T>(items: &[T], item: impl Fn(&T) -> String) -> String {
    let inner: Vec<String> = items.iter().map(item).collect();
    format!("[{}]", inner.join(", "))
}

/// One attribute value.
fn attr_text(value: &AttrValue) -> String {
    match value {
        AttrValue::Int(i) => i.to_string(),
        AttrValue::UInt(u) => u.to_string(),
        AttrValue::Bool(b) => b.to_string(),
        AttrValue::Float(bits) => float_text(*bits),
        AttrValue::DType(d) => d.name().to_string(),
        AttrValue::Ints(v) => list(v, i64::to_string),
        AttrValue::UInts(v) => list(v, u64::to_string),
        AttrValue::Dim(d) => {
            let mut s = String::new();
            write_dim(&mut s, d);
            s
        }
        AttrValue::Dims(v) => list(v, |d| {
            let mut s = String::new();
            write_dim(&mut s, d);
            s
        }),
        AttrValue::Str(s) => quote(s),
        AttrValue::Word(w) => (*w).to_string(),
        AttrValue::Call(name, args) => format!("{name}({})", attribute_list(args)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_exactly() {
        assert_eq!(float_text(1.0f32.to_bits()), "1.0");
        assert_eq!(float_text(1e-5f32.to_bits()), "1e-5");
        assert_eq!(float_text((-0.0f32).to_bits()), "-0.0");
        assert_eq!(float_text(f32::NAN.to_bits()), "nan");
        assert_eq!(float_text(0x7fc0_0001), "f32bits(0x7fc00001)");
        assert_eq!(float_text(f32::NEG_INFINITY.to_bits()), "-inf");
    }

    #[test]
    fn dims_match_display_and_quote_odd_symbols() {
        let seq = Dim::sym("seq");
        let e = seq.add(&Dim::Known(1)).floor_div(&Dim::Known(2));
        let mut s = String::new();
        write_dim(&mut s, &e);
        assert_eq!(s, e.to_string());
        let mut s = String::new();
        write_dim(&mut s, &Dim::sym("a b").mul(&Dim::Known(2)));
        assert_eq!(s, "\"a b\"*2");
    }
}
