//! The recursive-descent parser of the textual IR.
//!
//! Value ids are assigned in the order names are first introduced (by `input`, `weight`,
//! `declare` or a node result), initializers in `weight` order, nodes in statement order: the
//! text fixes every index of the graph it describes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::graph::{FileSlice, Graph, Initializer, Node, TensorType, Value, ValueId, WeightData};
use crate::shape::Shape;

use super::error::{ParseError, ParseErrorKind};
use super::lexer::{Tok, Token, describe, tokenize, unquote};
use super::ops::build_op;
use super::syntax::{Arg, AttrItem, BinOp, Located, MAX_DEPTH, Syn, SynKind};

type PResult<T> = Result<T, Located>;

/// Parses a graph from its textual form.
pub(crate) fn parse_graph(src: &str) -> Result<Graph, ParseError> {
    let mut parser = Parser {
        src,
        tokens: tokenize(src),
        next: 0,
        graph: Graph::default(),
        names: HashMap::new(),
    };
    parser.graph().map_err(|e| {
        let (line, column) = line_column(src, e.offset);
        ParseError {
            line,
            column,
            kind: e.kind,
        }
    })?;
    Ok(parser.graph)
}

/// The 1-based line and column (in characters) of a byte offset.
fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// What a value name refers to so far.
struct Slot {
    id: ValueId,
    defined: bool,
}

/// A value name as written, with its offset.
struct NameRef {
    name: String,
    offset: usize,
}

struct Parser<'s> {
    src: &'s str,
    tokens: Vec<Token>,
    next: usize,
    graph: Graph,
    names: HashMap<String, Slot>,
}

impl Parser<'_> {
    // ---- tokens ----

    /// The next token's kind (`None` at the end); a lexing error is reported here.
    fn peek(&self) -> PResult<Option<Tok>> {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> PResult<Option<Tok>> {
        match self.tokens.get(self.next + ahead) {
            None => Ok(None),
            Some(Token { kind: Ok(t), .. }) => Ok(Some(*t)),
            Some(Token { kind: Err(e), span }) => Err(Located::new(span.start, e.clone())),
        }
    }

    /// Byte offset of the next token (the end of the source at the end).
    fn offset(&self) -> usize {
        self.tokens
            .get(self.next)
            .map_or(self.src.len(), |t| t.span.start)
    }

    /// Text of the next token.
    fn text(&self) -> &str {
        self.tokens
            .get(self.next)
            .and_then(|t| self.src.get(t.span.clone()))
            .unwrap_or("")
    }

    fn bump(&mut self) {
        self.next += 1;
    }

    /// The error for the next token when `expected` was wanted.
    fn unexpected(&self, expected: &str) -> Located {
        let found = match self.peek() {
            Err(e) => return e,
            Ok(None) => "end of input".to_string(),
            Ok(Some(t)) => describe(t, self.text()),
        };
        Located::new(
            self.offset(),
            ParseErrorKind::Unexpected {
                expected: expected.to_string(),
                found,
            },
        )
    }

    fn eat(&mut self, tok: Tok) -> PResult<bool> {
        if self.peek()? == Some(tok) {
            self.bump();
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn expect(&mut self, tok: Tok, expected: &str) -> PResult<()> {
        if self.eat(tok)? {
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn at_keyword(&self, word: &str) -> PResult<bool> {
        Ok(self.peek()? == Some(Tok::Ident) && self.text() == word)
    }

    fn expect_keyword(&mut self, word: &str) -> PResult<()> {
        if self.at_keyword(word)? {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{word}`")))
        }
    }

    fn expect_int<T: std::str::FromStr>(&mut self, what: &str, ty: &'static str) -> PResult<T> {
        if self.peek()? != Some(Tok::Int) {
            return Err(self.unexpected(what));
        }
        let offset = self.offset();
        let text = self.text().to_string();
        self.bump();
        text.parse::<T>()
            .map_err(|_| Located::new(offset, ParseErrorKind::IntegerOutOfRange { text, ty }))
    }

    /// A quoted literal's contents; the error points at the literal.
    fn unquoted(&self, literal: &str, offset: usize) -> PResult<String> {
        unquote(literal).map_err(|kind| Located::new(offset, kind))
    }

    // ---- names and types ----

    /// `@name` or `@"name"`.
    fn at_name(&mut self) -> PResult<String> {
        let offset = self.offset();
        let name = match self.peek()? {
            Some(Tok::AtBare) => self.text()[1..].to_string(),
            Some(Tok::AtQuoted) => self.unquoted(&self.text()[1..], offset)?,
            _ => return Err(self.unexpected("a name `@...`")),
        };
        self.bump();
        Ok(name)
    }

    /// `%name` or `%"name"`.
    fn value_name(&mut self) -> PResult<NameRef> {
        let offset = self.offset();
        let name = match self.peek()? {
            Some(Tok::ValueBare) => self.text()[1..].to_string(),
            Some(Tok::ValueQuoted) => self.unquoted(&self.text()[1..], offset)?,
            _ => return Err(self.unexpected("a value name `%...`")),
        };
        self.bump();
        Ok(NameRef { name, offset })
    }

    /// `dtype[dim, ...]`.
    fn tensor_type(&mut self) -> PResult<TensorType> {
        if self.peek()? != Some(Tok::Ident) {
            return Err(self.unexpected("a dtype"));
        }
        let offset = self.offset();
        let word = self.text().to_string();
        let dtype = word
            .parse()
            .map_err(|_| Located::new(offset, ParseErrorKind::UnknownDType(word)))?;
        self.bump();
        self.expect(Tok::LBracket, "`[` starting the shape")?;
        let mut dims = Vec::new();
        if !self.eat(Tok::RBracket)? {
            loop {
                dims.push(self.expr(0)?.to_dim()?);
                if self.eat(Tok::RBracket)? {
                    break;
                }
                self.expect(Tok::Comma, "`,` or `]` in the shape")?;
            }
        }
        Ok(TensorType::new(dtype, Shape(dims)))
    }

    /// `%name: type`.
    fn typed_name(&mut self) -> PResult<(NameRef, TensorType)> {
        let name = self.value_name()?;
        self.expect(Tok::Colon, "`:` and the value's type")?;
        let ty = self.tensor_type()?;
        Ok((name, ty))
    }

    // ---- values ----

    /// Introduces a new name (the next value id), for a declaration or a first definition.
    fn introduce(&mut self, name: &NameRef, ty: TensorType, defined: bool) -> PResult<ValueId> {
        if self.names.contains_key(&name.name) {
            return Err(Located::new(
                name.offset,
                ParseErrorKind::DuplicateValue(name.name.clone()),
            ));
        }
        let id = ValueId(self.graph.values.len() as u32);
        self.graph.values.push(Value {
            name: name.name.clone(),
            ty,
        });
        self.names.insert(name.name.clone(), Slot { id, defined });
        Ok(id)
    }

    /// Defines a value: a new one, or one declared earlier with the same type.
    fn define(&mut self, name: &NameRef, ty: TensorType) -> PResult<ValueId> {
        match self.names.get_mut(&name.name) {
            None => self.introduce(name, ty, true),
            Some(slot) if slot.defined => Err(Located::new(
                name.offset,
                ParseErrorKind::DuplicateValue(name.name.clone()),
            )),
            Some(slot) => {
                let declared = &self.graph.values[slot.id.index()].ty;
                if *declared != ty {
                    return Err(Located::new(
                        name.offset,
                        ParseErrorKind::DeclarationMismatch {
                            name: name.name.clone(),
                            declared: super::printer::type_text(declared),
                            defined: super::printer::type_text(&ty),
                        },
                    ));
                }
                slot.defined = true;
                Ok(slot.id)
            }
        }
    }

    /// A use of a value that must already be declared or defined.
    fn use_value(&mut self) -> PResult<ValueId> {
        let name = self.value_name()?;
        self.names
            .get(&name.name)
            .map(|slot| slot.id)
            .ok_or_else(|| Located::new(name.offset, ParseErrorKind::UndefinedValue(name.name)))
    }

    // ---- graph and statements ----

    fn graph(&mut self) -> PResult<()> {
        self.expect_keyword("graph")?;
        self.graph.name = self.at_name()?;
        self.expect(Tok::LBrace, "`{` opening the graph body")?;
        loop {
            match self.peek()? {
                Some(Tok::Ident) => match self.text() {
                    "input" => self.input()?,
                    "weight" => self.weight()?,
                    "declare" => self.declare()?,
                    "return" => break,
                    _ => self.node(Vec::new())?,
                },
                Some(Tok::ValueBare | Tok::ValueQuoted) => {
                    let results = self.results()?;
                    self.node(results)?;
                }
                _ => {
                    return Err(self.unexpected(
                        "a statement (`input`, `weight`, `declare`, a node or `return`)",
                    ));
                }
            }
        }
        self.bump();
        if self.peek()? != Some(Tok::RBrace) {
            loop {
                let id = self.use_value()?;
                self.graph.outputs.push(id);
                if !self.eat(Tok::Comma)? {
                    break;
                }
            }
        }
        self.expect(Tok::RBrace, "`}` closing the graph after `return`")?;
        if self.peek()?.is_some() {
            return Err(self.unexpected("end of input after the graph"));
        }
        Ok(())
    }

    /// `input %x: type`.
    fn input(&mut self) -> PResult<()> {
        self.bump();
        let (name, ty) = self.typed_name()?;
        let id = self.define(&name, ty)?;
        self.graph.inputs.push(id);
        Ok(())
    }

    /// `declare %x: type`.
    fn declare(&mut self) -> PResult<()> {
        self.bump();
        let (name, ty) = self.typed_name()?;
        self.introduce(&name, ty, false)?;
        Ok(())
    }

    /// `weight %x: type = inline 0x.. | external "path" offset N length M, ... | absent`.
    fn weight(&mut self) -> PResult<()> {
        self.bump();
        let (name, ty) = self.typed_name()?;
        self.expect(Tok::Equals, "`=` and the weight's data")?;
        let data = if self.at_keyword("inline")? {
            self.bump();
            self.inline_bytes(&name.name)?
        } else if self.at_keyword("external")? {
            self.bump();
            let mut slices = vec![self.file_slice()?];
            while self.eat(Tok::Comma)? {
                slices.push(self.file_slice()?);
            }
            WeightData::External(slices)
        } else if self.at_keyword("absent")? {
            self.bump();
            WeightData::Absent
        } else {
            return Err(self.unexpected("`inline`, `external` or `absent`"));
        };
        let value = self.define(&name, ty)?;
        self.graph.initializers.push(Initializer { value, data });
        Ok(())
    }

    /// `"path" offset N length M`.
    fn file_slice(&mut self) -> PResult<FileSlice> {
        if self.peek()? != Some(Tok::Str) {
            return Err(self.unexpected("a quoted file path"));
        }
        let path = self.unquoted(self.text(), self.offset())?;
        self.bump();
        self.expect_keyword("offset")?;
        let offset = self.expect_int("a byte offset", "u64")?;
        self.expect_keyword("length")?;
        let length = self.expect_int("a byte length", "u64")?;
        Ok(FileSlice {
            path: PathBuf::from(path),
            offset,
            length,
        })
    }

    /// The `0x...` bytes after `inline`.
    fn inline_bytes(&mut self, weight: &str) -> PResult<WeightData> {
        match self.peek()? {
            Some(Tok::Hex) => {
                let offset = self.offset();
                let digits = &self.text()[2..];
                if !digits.len().is_multiple_of(2) {
                    return Err(Located::new(offset, ParseErrorKind::OddHexDigits));
                }
                let bytes: Vec<u8> = digits
                    .as_bytes()
                    .chunks_exact(2)
                    .map(|pair| (hex_value(pair[0]) << 4) | hex_value(pair[1]))
                    .collect();
                self.bump();
                Ok(WeightData::Inline(Arc::from(bytes)))
            }
            Some(Tok::Less) => Err(Located::new(
                self.offset(),
                ParseErrorKind::ElidedInline(weight.to_string()),
            )),
            _ => Err(self.unexpected("hex bytes `0x...`")),
        }
    }

    /// `%a: type, %b: type =` before a node.
    fn results(&mut self) -> PResult<Vec<(NameRef, TensorType)>> {
        let mut results = vec![self.typed_name()?];
        while self.eat(Tok::Comma)? {
            results.push(self.typed_name()?);
        }
        self.expect(Tok::Equals, "`,` or `=` after the results")?;
        Ok(results)
    }

    /// `op(operands) {attributes} @name` with its already parsed results.
    fn node(&mut self, results: Vec<(NameRef, TensorType)>) -> PResult<()> {
        if self.peek()? != Some(Tok::Ident) {
            return Err(self.unexpected("an op name"));
        }
        let op_offset = self.offset();
        let op_name = self.text().to_string();
        self.bump();
        self.expect(Tok::LParen, "`(` and the operands")?;
        let mut inputs = Vec::new();
        if !self.eat(Tok::RParen)? {
            loop {
                if self.at_keyword("_")? {
                    self.bump();
                    inputs.push(None);
                } else {
                    inputs.push(Some(self.use_value()?));
                }
                if self.eat(Tok::RParen)? {
                    break;
                }
                self.expect(Tok::Comma, "`,` or `)` after an operand")?;
            }
        }
        let attributes = if self.peek()? == Some(Tok::LBrace) {
            self.attributes()?
        } else {
            Vec::new()
        };
        let op = build_op(&op_name, op_offset, attributes)?;
        let name = if matches!(self.peek()?, Some(Tok::AtBare | Tok::AtQuoted)) {
            self.at_name()?
        } else {
            String::new()
        };
        let (required, maximum) = op.arity();
        if inputs.len() < required || maximum.is_some_and(|m| inputs.len() > m) {
            let expected = match maximum {
                Some(m) if m == required => m.to_string(),
                Some(m) => format!("{required} to {m}"),
                None => format!("at least {required}"),
            };
            return Err(Located::new(
                op_offset,
                ParseErrorKind::OperandCount {
                    op: op_name,
                    expected,
                    found: inputs.len(),
                },
            ));
        }
        if results.len() != op.num_outputs() {
            return Err(Located::new(
                results.first().map_or(op_offset, |(r, _)| r.offset),
                ParseErrorKind::ResultCount {
                    op: op_name,
                    expected: op.num_outputs(),
                    found: results.len(),
                },
            ));
        }
        let mut outputs = Vec::with_capacity(results.len());
        for (result, ty) in results {
            outputs.push(self.define(&result, ty)?);
        }
        self.graph.nodes.push(Node {
            name,
            op,
            inputs,
            outputs,
        });
        Ok(())
    }

    /// `{name = value, ...}`.
    fn attributes(&mut self) -> PResult<Vec<AttrItem>> {
        self.bump();
        let mut items: Vec<AttrItem> = Vec::new();
        if self.eat(Tok::RBrace)? {
            return Ok(items);
        }
        loop {
            if self.peek()? != Some(Tok::Ident) {
                return Err(self.unexpected("an attribute name"));
            }
            let offset = self.offset();
            let name = self.text().to_string();
            if items.iter().any(|i| i.name == name) {
                return Err(Located::new(
                    offset,
                    ParseErrorKind::DuplicateAttribute(name),
                ));
            }
            self.bump();
            self.expect(Tok::Equals, "`=` after the attribute name")?;
            let value = self.expr(0)?;
            items.push(AttrItem {
                name,
                offset,
                value,
            });
            if self.eat(Tok::RBrace)? {
                return Ok(items);
            }
            self.expect(Tok::Comma, "`,` or `}` after an attribute")?;
        }
    }

    // ---- expressions ----

    /// `term (('+' | '-') term)*`, left-associative. `nesting` counts enclosing brackets.
    fn expr(&mut self, nesting: usize) -> PResult<Syn> {
        let mut lhs = self.term(nesting)?;
        loop {
            let op = match self.peek()? {
                Some(Tok::Plus) => BinOp::Add,
                Some(Tok::Minus) => BinOp::Sub,
                _ => return Ok(lhs),
            };
            self.bump();
            let rhs = self.term(nesting)?;
            lhs = binary(op, lhs, rhs)?;
        }
    }

    /// `primary (('*' | '/') primary)*`, left-associative.
    fn term(&mut self, nesting: usize) -> PResult<Syn> {
        let mut lhs = self.primary(nesting)?;
        loop {
            let op = match self.peek()? {
                Some(Tok::Star) => BinOp::Mul,
                Some(Tok::Slash) => BinOp::Div,
                _ => return Ok(lhs),
            };
            self.bump();
            let rhs = self.primary(nesting)?;
            lhs = binary(op, lhs, rhs)?;
        }
    }

    /// A literal, word, call, list, negated number or parenthesised expression.
    fn primary(&mut self, nesting: usize) -> PResult<Syn> {
        let offset = self.offset();
        if nesting > MAX_DEPTH {
            return Err(Located::new(
                offset,
                ParseErrorKind::NestingTooDeep(MAX_DEPTH),
            ));
        }
        let tok = match self.peek()? {
            Some(t) => t,
            None => return Err(self.unexpected("a value")),
        };
        let text = self.text().to_string();
        let atom = |kind| Syn::new(offset, 1, kind);
        match tok {
            Tok::Int => {
                self.bump();
                atom(SynKind::Int {
                    negative: false,
                    digits: text,
                })
            }
            Tok::Float => {
                self.bump();
                atom(SynKind::Float {
                    negative: false,
                    text,
                })
            }
            Tok::Hex => {
                self.bump();
                atom(SynKind::Hex(text[2..].to_string()))
            }
            Tok::Str => {
                let s = self.unquoted(&text, offset)?;
                self.bump();
                atom(SynKind::Str(s))
            }
            Tok::Minus => {
                self.bump();
                let negated = match self.peek()? {
                    Some(Tok::Int) => SynKind::Int {
                        negative: true,
                        digits: self.text().to_string(),
                    },
                    Some(Tok::Float) => SynKind::Float {
                        negative: true,
                        text: self.text().to_string(),
                    },
                    Some(Tok::Ident) if self.text() == "inf" => SynKind::Word {
                        negative: true,
                        word: "inf".to_string(),
                    },
                    _ => return Err(self.unexpected("a number or `inf` after `-`")),
                };
                self.bump();
                atom(negated)
            }
            Tok::Ident => {
                self.bump();
                if self.peek()? == Some(Tok::LParen) {
                    self.call(text, offset, nesting)
                } else {
                    atom(SynKind::Word {
                        negative: false,
                        word: text,
                    })
                }
            }
            Tok::LParen => {
                self.bump();
                let inner = self.expr(nesting + 1)?;
                self.expect(Tok::RParen, "`)` closing the parenthesis")?;
                Ok(inner)
            }
            Tok::LBracket => {
                self.bump();
                let mut items = Vec::new();
                if !self.eat(Tok::RBracket)? {
                    loop {
                        items.push(self.expr(nesting + 1)?);
                        if self.eat(Tok::RBracket)? {
                            break;
                        }
                        self.expect(Tok::Comma, "`,` or `]` in the list")?;
                    }
                }
                let depth = 1 + items.iter().map(|s| s.depth).max().unwrap_or(0);
                Syn::new(offset, depth, SynKind::List(items))
            }
            _ => Err(self.unexpected("a value")),
        }
    }

    /// `name(arg, name = arg, ...)` after the name.
    fn call(&mut self, name: String, offset: usize, nesting: usize) -> PResult<Syn> {
        self.bump();
        let mut args = Vec::new();
        if !self.eat(Tok::RParen)? {
            loop {
                let arg_name =
                    if self.peek()? == Some(Tok::Ident) && self.peek_at(1)? == Some(Tok::Equals) {
                        let arg_name = (self.text().to_string(), self.offset());
                        self.bump();
                        self.bump();
                        Some(arg_name)
                    } else {
                        None
                    };
                let value = self.expr(nesting + 1)?;
                args.push(Arg {
                    name: arg_name,
                    value,
                });
                if self.eat(Tok::RParen)? {
                    break;
                }
                self.expect(Tok::Comma, "`,` or `)` in the argument list")?;
            }
        }
        let depth = 1 + args.iter().map(|a| a.value.depth).max().unwrap_or(0);
        Syn::new(offset, depth, SynKind::Call { name, args })
    }
}

fn binary(op: BinOp, lhs: Syn, rhs: Syn) -> PResult<Syn> {
    let depth = 1 + lhs.depth.max(rhs.depth);
    Syn::new(
        lhs.offset,
        depth,
        SynKind::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        },
    )
}

/// The value of one ASCII hex digit (the lexer only lets hex digits through).
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit.wrapping_sub(b'A').wrapping_add(10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("ab\ncdé f", 0), (1, 1));
        assert_eq!(line_column("ab\ncdé f", 3), (2, 1));
        assert_eq!(line_column("ab\ncdé f", 8), (2, 5));
    }
}
