//! The textual IR: a printer and a parser that round-trip a [`Graph`] exactly.
//!
//! `parse(&print(g)) == g` for every graph whose value names are unique and whose values are
//! each defined at most once (what the verifier requires anyway), and `print(&parse(s)?) == s`
//! for any printer output. Nothing is inferred: every value's type is written where it is
//! introduced. The syntax is described in `docs/ir.md`; in short:
//!
//! ```text
//! graph @tiny {
//!   input %ids: i64[batch, seq]
//!   weight %embed: bf16[256, 64] = external "model.safetensors" offset 1024 length 32768
//!   %h: bf16[batch, seq, 64] = gather(%embed, %ids) {axis = 0} @"model.embed"
//!   return %h
//! }
//! ```

mod error;
mod lexer;
mod ops;
mod parser;
mod printer;
mod syntax;

pub use error::{ParseError, ParseErrorKind};
pub(crate) use printer::{attribute_texts, type_text};

use crate::graph::Graph;

/// Options of [`print_with`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrintOptions {
    /// Print inline weights longer than this many bytes as `inline <N bytes elided>` (for
    /// display; such text does not parse back). `None` prints every byte.
    pub elide_inline_over: Option<usize>,
}

/// Prints a graph in the textual IR, every byte of inline weights included.
pub fn print(graph: &Graph) -> String {
    printer::print_graph(graph, &PrintOptions::default())
}

/// Prints a graph in the textual IR with options (e.g. eliding large inline constants).
pub fn print_with(graph: &Graph, options: &PrintOptions) -> String {
    printer::print_graph(graph, options)
}

/// Parses the textual IR into a graph. Never panics; the error carries the line and column.
pub fn parse(src: &str) -> Result<Graph, ParseError> {
    parser::parse_graph(src)
}
