//! Every kind of textual IR parse error, with the line and column it is reported at.

use std::sync::Arc;

use cubevec_ir::DType;
use cubevec_ir::graph::{Graph, TensorType, WeightData};
use cubevec_ir::shape::Shape;
use cubevec_ir::text::{self, ParseErrorKind, PrintOptions};

/// Parses a graph whose body is `body` (the header is line 1) and returns the error.
fn error(body: &str) -> text::ParseError {
    let src = format!("graph @g {{\n  input %x: f32[n, 4]\n{body}\n}}\n");
    match text::parse(&src) {
        Ok(g) => panic!("parsed without error: {g:?}"),
        Err(e) => e,
    }
}

fn assert_error(body: &str, expected: &str) {
    assert_eq!(error(body).to_string(), expected, "body: {body}");
}

#[test]
fn position_and_message_are_separate_fields() {
    let e = error("  %y: f32[n] = frob(%x)\n  return %y");
    assert_eq!((e.line, e.column), (3, 16));
    assert_eq!(e.kind, ParseErrorKind::UnknownOp("frob".into()));
    assert_eq!(e.message(), "unknown op `frob`");
}

#[test]
fn invalid_token() {
    assert_error(
        "  %y: f32[n] = relu(%x) $\n  return %y",
        "3:25: invalid character sequence `$`",
    );
}

#[test]
fn unterminated_string() {
    assert_error(
        "  weight %w: f32[4] = external \"a.bin offset 0 length 16",
        "3:32: unterminated string literal",
    );
}

#[test]
fn a_file_slice_list_cannot_end_in_a_comma() {
    assert_error(
        "  weight %w: f32[4] = external \"a.bin\" offset 0 length 8, \"b.bin\" offset 0 length 8,\n  return %x",
        "4:3: expected a quoted file path, found `return`",
    );
}

#[test]
fn invalid_escape() {
    assert_error(
        "  %y: f32[n, 4] = relu(%x) @\"bad \\q escape\"\n  return %y",
        "3:28: invalid escape sequence `\\q` in string literal",
    );
}

#[test]
fn unexpected_token() {
    assert_error(
        "  %y: f32[n 4] = relu(%x)",
        "3:13: expected `,` or `]` in the shape, found `4`",
    );
    assert_eq!(
        text::parse("graf @g {}").unwrap_err().to_string(),
        "1:1: expected `graph`, found `graf`"
    );
}

#[test]
fn missing_return_hits_end_of_input() {
    assert_eq!(
        text::parse("graph @g {\n  input %x: f32[]\n")
            .unwrap_err()
            .to_string(),
        "3:1: expected a statement (`input`, `weight`, `declare`, a node or `return`), \
         found end of input"
    );
}

#[test]
fn trailing_text_after_the_graph() {
    assert_eq!(
        text::parse("graph @g {\n  return\n}\ngraph")
            .unwrap_err()
            .to_string(),
        "4:1: expected end of input after the graph, found `graph`"
    );
}

#[test]
fn unknown_op() {
    assert_error(
        "  %y: f32[n, 4] = frobnicate(%x)",
        "3:19: unknown op `frobnicate`",
    );
}

#[test]
fn unknown_attribute() {
    assert_error(
        "  %y: f32[n, 4] = softmax(%x) {axis = 1, axes = 1}",
        "3:42: unknown attribute `axes` for `softmax`",
    );
    assert_error(
        "  %y: f32[n, 4] = moe(%x, %x, _, %x, %x) {top_k = 1, \
         routing = softmax_topk(normalise = true), activation = swiglu}",
        "3:77: unknown attribute `normalise` for `softmax_topk`",
    );
}

#[test]
fn missing_attribute() {
    assert_error(
        "  %v: f32[n, 2], %i: i64[n, 2] = topk(%x) {k = 2, axis = -1, largest = true}",
        "3:34: missing attribute `sorted` for `topk`",
    );
}

#[test]
fn duplicate_attribute() {
    assert_error(
        "  %y: f32[n, 4] = softmax(%x) {axis = 1, axis = 0}",
        "3:42: attribute `axis` given twice",
    );
}

#[test]
fn bad_attribute_value() {
    assert_error(
        "  %y: f32[n, 4] = softmax(%x) {axis = true}",
        "3:39: invalid value for attribute `axis`: expected an integer",
    );
    assert_error(
        "  %y: f32[n, 4] = scatter_nd(%x, %x, %x) {reduction = sum}",
        "3:55: invalid value for attribute `reduction`: expected one of `none`, `add`, `mul`, \
         `max`, `min`",
    );
}

#[test]
fn integer_out_of_range() {
    assert_error(
        "  %y: f32[n, 4] = softmax(%x) {axis = 9223372036854775808}",
        "3:39: integer `9223372036854775808` does not fit in i64",
    );
    assert_error(
        "  %y: f32[n, 4] = moe(%x, %x, _, %x, %x) {top_k = 4294967296, \
         routing = topk_softmax, activation = silu}",
        "3:51: integer `4294967296` does not fit in u32",
    );
}

#[test]
fn duplicate_value_name() {
    assert_error(
        "  %x: f32[n, 4] = relu(%x)",
        "3:3: value `%x` is already defined",
    );
    assert_error(
        "  declare %d: f32[]\n  declare %d: f32[]",
        "4:11: value `%d` is already defined",
    );
}

#[test]
fn undefined_value() {
    assert_error("  %y: f32[n, 4] = relu(%z)", "3:24: undefined value `%z`");
    assert_error("  return %nowhere", "3:10: undefined value `%nowhere`");
}

#[test]
fn declaration_mismatch() {
    assert_error(
        "  declare %y: f32[n]\n  %y: f32[n, 4] = relu(%x)",
        "4:3: value `%y` is defined with type f32[n, 4] but was declared with type f32[n]",
    );
}

#[test]
fn bad_dtype() {
    assert_error("  %y: f64[n, 4] = relu(%x)", "3:7: unknown dtype `f64`");
    assert_error(
        "  %y: f32[n, 4] = cast(%x) {to = float}",
        "3:34: unknown dtype `float`",
    );
}

#[test]
fn bad_dim_expression() {
    assert_error(
        "  %y: f32[n-(-1), 4] = relu(%x)",
        "3:14: bad dimension expression: `-1` is not a size (sizes are non-negative integers)",
    );
    assert_error(
        "  %y: f32[floor(n, 2), 4] = relu(%x)",
        "3:11: bad dimension expression: unknown function `floor` (expected `ceildiv`, `min` or \
         `max`)",
    );
    assert_error(
        "  %y: f32[min(n), 4] = relu(%x)",
        "3:11: bad dimension expression: `min` takes two positional operands",
    );
}

#[test]
fn wrong_number_of_results() {
    assert_error(
        "  %v: f32[n, 2] = topk(%x) {k = 2, axis = -1, largest = true, sorted = true}",
        "3:3: `topk` produces 2 result(s), but 1 are named",
    );
    assert_error(
        "  %a: f32[n, 2] = split(%x) {axis = 1, sizes = [2, 2]}",
        "3:3: `split` produces 2 result(s), but 1 are named",
    );
}

#[test]
fn wrong_number_of_operands() {
    assert_error(
        "  %y: f32[n, 4] = add(%x)",
        "3:19: `add` takes 2 operand(s), but 1 are given",
    );
    assert_error(
        "  %y: f32[n, 4] = clip(%x, _, _, _)",
        "3:19: `clip` takes 1 to 3 operand(s), but 4 are given",
    );
}

#[test]
fn elided_inline_weight() {
    let mut g = Graph::new("consts");
    g.add_initializer(
        "table",
        TensorType::new(DType::U8, Shape::known(&[8])),
        WeightData::Inline(Arc::from(vec![7u8; 8])),
    );
    let printed = text::print_with(
        &g,
        &PrintOptions {
            elide_inline_over: Some(4),
        },
    );
    assert_eq!(
        text::parse(&printed).unwrap_err().to_string(),
        "2:33: the bytes of inline weight `%table` were elided when this text was printed; \
         print the graph without elision to parse it back"
    );
}

#[test]
fn odd_number_of_hex_digits() {
    assert_error(
        "  weight %w: u8[2] = inline 0x123",
        "3:29: inline data must have an even number of hex digits",
    );
}

#[test]
fn nesting_too_deep() {
    let body = format!(
        "  %y: f32[{}n{}] = relu(%x)",
        "(".repeat(200),
        ")".repeat(200)
    );
    let e = error(&body);
    assert_eq!(e.line, 3);
    assert_eq!(e.message(), "expression nested deeper than 128 levels");
}
