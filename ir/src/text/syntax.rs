//! Attribute and dimension expressions as parsed, before they are given a type, and their
//! conversion to the IR's attribute types.
//!
//! Attribute values and shape dimensions share one expression grammar (numbers, words, strings,
//! calls, lists, `+ - * /`); the op being built decides what each attribute must be and converts
//! the expression, so the errors name the attribute and point at the value.

use crate::dtype::DType;
use crate::shape::Dim;

use super::error::ParseErrorKind;

/// Deepest expression nesting the parser accepts (keeps recursion bounded on any input).
pub(crate) const MAX_DEPTH: usize = 128;

/// An error at a byte offset of the source; turned into a line and column at the end.
#[derive(Debug)]
pub(crate) struct Located {
    /// Byte offset of the offending token.
    pub offset: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

impl Located {
    /// An error at `offset`.
    pub fn new(offset: usize, kind: ParseErrorKind) -> Located {
        Located { offset, kind }
    }
}

/// Binary operators of dimension expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
}

/// A parsed expression with the byte offset it starts at.
#[derive(Clone, Debug)]
pub(crate) struct Syn {
    /// Byte offset of the expression's first token.
    pub offset: usize,
    /// Height of the expression tree (an atom is 1).
    pub depth: usize,
    /// The expression.
    pub kind: SynKind,
}

/// The forms of an expression.
#[derive(Clone, Debug)]
pub(crate) enum SynKind {
    /// A decimal integer, possibly negated; `digits` as written.
    Int { negative: bool, digits: String },
    /// A decimal float literal, possibly negated; `text` as written.
    Float { negative: bool, text: String },
    /// `0x...`: the hex digits.
    Hex(String),
    /// A bare word, possibly negated (only `-inf` is meaningful).
    Word { negative: bool, word: String },
    /// A string literal, unescaped.
    Str(String),
    /// `name(args)`.
    Call { name: String, args: Vec<Arg> },
    /// `[a, b, ...]`.
    List(Vec<Syn>),
    /// `lhs op rhs`.
    Binary {
        op: BinOp,
        lhs: Box<Syn>,
        rhs: Box<Syn>,
    },
}

/// One argument of a call: positional (`min(a, b)`) or named (`softmax_topk(normalize = true)`).
#[derive(Clone, Debug)]
pub(crate) struct Arg {
    /// The name and its offset, for a named argument.
    pub name: Option<(String, usize)>,
    /// The value.
    pub value: Syn,
}

impl Syn {
    /// An expression from its parts, rejecting trees deeper than [`MAX_DEPTH`].
    pub fn new(offset: usize, depth: usize, kind: SynKind) -> Result<Syn, Located> {
        if depth > MAX_DEPTH {
            return Err(Located::new(
                offset,
                ParseErrorKind::NestingTooDeep(MAX_DEPTH),
            ));
        }
        Ok(Syn {
            offset,
            depth,
            kind,
        })
    }

    /// The expression as written, for messages about small values.
    fn describe(&self) -> String {
        match &self.kind {
            SynKind::Int { negative, digits } => format!("{}{digits}", sign(*negative)),
            SynKind::Float { negative, text } => format!("{}{text}", sign(*negative)),
            SynKind::Word { negative, word } => format!("{}{word}", sign(*negative)),
            SynKind::Hex(h) => format!("0x{h}"),
            SynKind::Str(_) => "a string".to_string(),
            SynKind::Call { name, .. } => format!("{name}(...)"),
            SynKind::List(_) => "a list".to_string(),
            SynKind::Binary { .. } => "an expression".to_string(),
        }
    }

    fn bad(&self, attribute: &str, expected: &str) -> Located {
        Located::new(
            self.offset,
            ParseErrorKind::BadAttributeValue {
                attribute: attribute.to_string(),
                expected: expected.to_string(),
            },
        )
    }

    fn out_of_range(&self, ty: &'static str) -> Located {
        Located::new(
            self.offset,
            ParseErrorKind::IntegerOutOfRange {
                text: self.describe(),
                ty,
            },
        )
    }

    /// The value as a non-negative integer of at most `u64::MAX`.
    fn magnitude(&self, attribute: &str, expected: &str) -> Result<(bool, u64), Located> {
        match &self.kind {
            SynKind::Int { negative, digits } => digits
                .parse::<u64>()
                .map(|v| (*negative, v))
                .map_err(|_| self.out_of_range("u64")),
            _ => Err(self.bad(attribute, expected)),
        }
    }

    /// A signed 64-bit integer.
    pub fn to_i64(&self, attribute: &str) -> Result<i64, Located> {
        let (negative, magnitude) = self.magnitude(attribute, "an integer")?;
        let value = if negative {
            -i128::from(magnitude)
        } else {
            i128::from(magnitude)
        };
        i64::try_from(value).map_err(|_| self.out_of_range("i64"))
    }

    /// An unsigned 64-bit integer.
    pub fn to_u64(&self, attribute: &str) -> Result<u64, Located> {
        match self.magnitude(attribute, "a non-negative integer")? {
            (false, v) | (true, v @ 0) => Ok(v),
            (true, _) => Err(self.out_of_range("u64")),
        }
    }

    /// An unsigned 32-bit integer.
    pub fn to_u32(&self, attribute: &str) -> Result<u32, Located> {
        let v = self.to_u64(attribute)?;
        u32::try_from(v).map_err(|_| self.out_of_range("u32"))
    }

    /// `true` or `false`.
    pub fn to_bool(&self, attribute: &str) -> Result<bool, Located> {
        match &self.kind {
            SynKind::Word {
                negative: false,
                word,
            } if word == "true" => Ok(true),
            SynKind::Word {
                negative: false,
                word,
            } if word == "false" => Ok(false),
            _ => Err(self.bad(attribute, "`true` or `false`")),
        }
    }

    /// The bits of an `f32`: a decimal literal, `nan`, `inf`, `-inf` or `f32bits(0x...)`.
    pub fn to_f32_bits(&self, attribute: &str) -> Result<u32, Located> {
        const EXPECTED: &str = "a float (`1.5`, `1e-5`, `nan`, `inf`, `-inf`, `f32bits(0x...)`)";
        match &self.kind {
            SynKind::Int {
                negative,
                digits: text,
            }
            | SynKind::Float { negative, text } => format!("{}{text}", sign(*negative))
                .parse::<f32>()
                .map(f32::to_bits)
                .map_err(|_| self.bad(attribute, EXPECTED)),
            SynKind::Word { negative, word } => match (negative, word.as_str()) {
                (false, "nan") => Ok(f32::NAN.to_bits()),
                (false, "inf") => Ok(f32::INFINITY.to_bits()),
                (true, "inf") => Ok(f32::NEG_INFINITY.to_bits()),
                _ => Err(self.bad(attribute, EXPECTED)),
            },
            SynKind::Call { name, args } if name == "f32bits" => match args.as_slice() {
                [
                    Arg {
                        name: None,
                        value:
                            Syn {
                                kind: SynKind::Hex(hex),
                                ..
                            },
                    },
                ] if !hex.is_empty() && hex.len() <= 8 => u32::from_str_radix(hex, 16)
                    .map_err(|_| self.bad(attribute, "`f32bits(` with up to 8 hex digits `)`")),
                _ => Err(self.bad(attribute, "`f32bits(` with up to 8 hex digits `)`")),
            },
            _ => Err(self.bad(attribute, EXPECTED)),
        }
    }

    /// A bare word (an enum value), returned with its spelling.
    pub fn to_word(&self, attribute: &str, expected: &str) -> Result<&str, Located> {
        match &self.kind {
            SynKind::Word {
                negative: false,
                word,
            } => Ok(word),
            _ => Err(self.bad(attribute, expected)),
        }
    }

    /// A dtype name.
    pub fn to_dtype(&self, attribute: &str) -> Result<DType, Located> {
        let word = self.to_word(attribute, "a dtype")?;
        word.parse::<DType>()
            .map_err(|_| Located::new(self.offset, ParseErrorKind::UnknownDType(word.to_string())))
    }

    /// A string literal.
    pub fn to_string_literal(&self, attribute: &str) -> Result<String, Located> {
        match &self.kind {
            SynKind::Str(s) => Ok(s.clone()),
            _ => Err(self.bad(attribute, "a string literal")),
        }
    }

    /// A list whose elements are converted by `element`.
    pub fn to_list<T>(
        &self,
        attribute: &str,
        element: impl Fn(&Syn) -> Result<T, Located>,
    ) -> Result<Vec<T>, Located> {
        match &self.kind {
            SynKind::List(items) => items.iter().map(element).collect(),
            _ => Err(self.bad(attribute, "a list `[...]`")),
        }
    }

    /// A dimension expression, built as the exact tree written (no folding).
    pub fn to_dim(&self) -> Result<Dim, Located> {
        let bad = |message: String| Located::new(self.offset, ParseErrorKind::BadDim(message));
        match &self.kind {
            SynKind::Int {
                negative: false,
                digits,
            } => digits
                .parse::<u64>()
                .map(Dim::Known)
                .map_err(|_| self.out_of_range("u64")),
            SynKind::Int { negative: true, .. } | SynKind::Float { .. } => Err(bad(format!(
                "`{}` is not a size (sizes are non-negative integers)",
                self.describe()
            ))),
            SynKind::Word {
                negative: false,
                word,
            } => Ok(Dim::sym(word.as_str())),
            SynKind::Str(s) => Ok(Dim::sym(s.as_str())),
            SynKind::Binary { op, lhs, rhs } => {
                let (a, b) = (Box::new(lhs.to_dim()?), Box::new(rhs.to_dim()?));
                Ok(match op {
                    BinOp::Add => Dim::Add(a, b),
                    BinOp::Sub => Dim::Sub(a, b),
                    BinOp::Mul => Dim::Mul(a, b),
                    BinOp::Div => Dim::FloorDiv(a, b),
                })
            }
            SynKind::Call { name, args } => {
                let make: fn(Box<Dim>, Box<Dim>) -> Dim = match name.as_str() {
                    "ceildiv" => Dim::CeilDiv,
                    "min" => Dim::Min,
                    "max" => Dim::Max,
                    _ => {
                        return Err(bad(format!(
                            "unknown function `{name}` (expected `ceildiv`, `min` or `max`)"
                        )));
                    }
                };
                match args.as_slice() {
                    [
                        Arg {
                            name: None,
                            value: a,
                        },
                        Arg {
                            name: None,
                            value: b,
                        },
                    ] => Ok(make(Box::new(a.to_dim()?), Box::new(b.to_dim()?))),
                    _ => Err(bad(format!("`{name}` takes two positional operands"))),
                }
            }
            SynKind::Word { negative: true, .. } | SynKind::Hex(_) | SynKind::List(_) => {
                Err(bad(format!(
                    "expected a size, a symbol or an expression, found {}",
                    self.describe()
                )))
            }
        }
    }
}

fn sign(negative: bool) -> &'static str {
    if negative { "-" } else { "" }
}

/// One `name = value` of an attribute list, with the offset of the name.
#[derive(Clone, Debug)]
pub(crate) struct AttrItem {
    /// The attribute name.
    pub name: String,
    /// Byte offset of the name.
    pub offset: usize,
    /// The value.
    pub value: Syn,
}

/// The attributes of one op (or of a routing mode or activation), checked against the names the
/// owner knows and taken out one by one as the owner is built.
pub(crate) struct AttrSet {
    owner: String,
    offset: usize,
    items: Vec<AttrItem>,
}

impl AttrSet {
    /// The attribute list of `owner` (written at `offset`); fails on the first name not in
    /// `known`. Duplicates are rejected when the list is parsed.
    pub fn new(
        owner: &str,
        offset: usize,
        items: Vec<AttrItem>,
        known: &[&str],
    ) -> Result<AttrSet, Located> {
        if let Some(unknown) = items.iter().find(|i| !known.contains(&i.name.as_str())) {
            return Err(Located::new(
                unknown.offset,
                ParseErrorKind::UnknownAttribute {
                    owner: owner.to_string(),
                    attribute: unknown.name.clone(),
                },
            ));
        }
        Ok(AttrSet {
            owner: owner.to_string(),
            offset,
            items,
        })
    }

    /// The attributes of a call such as `softmax_topk(normalize = true)`; every argument must be
    /// named.
    pub fn from_call(
        attribute: &str,
        call: &Syn,
        name: &str,
        args: &[Arg],
        known: &[&str],
    ) -> Result<AttrSet, Located> {
        let mut items: Vec<AttrItem> = Vec::with_capacity(args.len());
        for arg in args {
            let Some((arg_name, offset)) = &arg.name else {
                return Err(call.bad(attribute, &format!("named arguments in `{name}(...)`")));
            };
            if items.iter().any(|i| i.name == *arg_name) {
                return Err(Located::new(
                    *offset,
                    ParseErrorKind::DuplicateAttribute(arg_name.clone()),
                ));
            }
            items.push(AttrItem {
                name: arg_name.clone(),
                offset: *offset,
                value: arg.value.clone(),
            });
        }
        AttrSet::new(name, call.offset, items, known)
    }

    /// The value of a required attribute.
    pub fn take(&mut self, name: &str) -> Result<Syn, Located> {
        self.take_opt(name).ok_or_else(|| {
            Located::new(
                self.offset,
                ParseErrorKind::MissingAttribute {
                    owner: self.owner.clone(),
                    attribute: name.to_string(),
                },
            )
        })
    }

    /// The value of an optional attribute.
    pub fn take_opt(&mut self, name: &str) -> Option<Syn> {
        let index = self.items.iter().position(|i| i.name == name)?;
        Some(self.items.swap_remove(index).value)
    }

    /// A required `i64` attribute.
    pub fn i64(&mut self, name: &str) -> Result<i64, Located> {
        self.take(name)?.to_i64(name)
    }

    /// A required `u64` attribute.
    pub fn u64(&mut self, name: &str) -> Result<u64, Located> {
        self.take(name)?.to_u64(name)
    }

    /// A required `u32` attribute.
    pub fn u32(&mut self, name: &str) -> Result<u32, Located> {
        self.take(name)?.to_u32(name)
    }

    /// A required `bool` attribute.
    pub fn bool(&mut self, name: &str) -> Result<bool, Located> {
        self.take(name)?.to_bool(name)
    }

    /// A required `f32` attribute, as bits.
    pub fn f32_bits(&mut self, name: &str) -> Result<u32, Located> {
        self.take(name)?.to_f32_bits(name)
    }

    /// An optional `f32` attribute, as bits.
    pub fn opt_f32_bits(&mut self, name: &str) -> Result<Option<u32>, Located> {
        self.take_opt(name)
            .map(|syn| syn.to_f32_bits(name))
            .transpose()
    }

    /// A required dtype attribute.
    pub fn dtype(&mut self, name: &str) -> Result<DType, Located> {
        self.take(name)?.to_dtype(name)
    }

    /// A required list of `i64`.
    pub fn i64_list(&mut self, name: &str) -> Result<Vec<i64>, Located> {
        self.take(name)?.to_list(name, |s| s.to_i64(name))
    }

    /// A required list of `u64`.
    pub fn u64_list(&mut self, name: &str) -> Result<Vec<u64>, Located> {
        self.take(name)?.to_list(name, |s| s.to_u64(name))
    }

    /// A required dimension.
    pub fn dim(&mut self, name: &str) -> Result<Dim, Located> {
        self.take(name)?.to_dim()
    }

    /// A required list of dimensions.
    pub fn dim_list(&mut self, name: &str) -> Result<Vec<Dim>, Located> {
        self.take(name)?.to_list(name, Syn::to_dim)
    }

    /// A required string attribute.
    pub fn string(&mut self, name: &str) -> Result<String, Located> {
        self.take(name)?.to_string_literal(name)
    }
}
