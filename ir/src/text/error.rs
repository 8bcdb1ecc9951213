//! The error of the textual IR parser: a position and what is wrong there.

/// A parse failure at a 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {kind}")]
pub struct ParseError {
    /// Line of the offending token, from 1.
    pub line: usize,
    /// Column of the offending token's first character, from 1.
    pub column: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

impl ParseError {
    /// The message without the position.
    pub fn message(&self) -> String {
        self.kind.to_string()
    }
}

/// What went wrong while parsing the textual IR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// Characters that form no token.
    #[error("invalid character sequence `{0}`")]
    InvalidToken(String),
    /// A string literal (or quoted name) without its closing quote.
    #[error("unterminated string literal")]
    UnterminatedString,
    /// A backslash escape that is not one of `\\ \" \n \r \t \u{...}`.
    #[error("invalid escape sequence `{0}` in string literal")]
    InvalidEscape(String),
    /// A token other than the grammar allows here.
    #[error("expected {expected}, found {found}")]
    Unexpected {
        /// What the grammar allows.
        expected: String,
        /// The token found (or "end of input").
        found: String,
    },
    /// An op name that is not one of the IR's operations.
    #[error("unknown op `{0}`")]
    UnknownOp(String),
    /// An attribute the op (or routing mode, activation) does not have.
    #[error("unknown attribute `{attribute}` for `{owner}`")]
    UnknownAttribute {
        /// The op, routing mode or activation.
        owner: String,
        /// The attribute written.
        attribute: String,
    },
    /// A required attribute that was not written.
    #[error("missing attribute `{attribute}` for `{owner}`")]
    MissingAttribute {
        /// The op, routing mode or activation.
        owner: String,
        /// The attribute needed.
        attribute: String,
    },
    /// An attribute written twice in one attribute list.
    #[error("attribute `{0}` given twice")]
    DuplicateAttribute(String),
    /// An attribute value of the wrong kind or out of range.
    #[error("invalid value for attribute `{attribute}`: expected {expected}")]
    BadAttributeValue {
        /// The attribute.
        attribute: String,
        /// What the attribute takes.
        expected: String,
    },
    /// A value name defined (or declared) a second time.
    #[error("value `%{0}` is already defined")]
    DuplicateValue(String),
    /// A value name used before any definition or declaration.
    #[error("undefined value `%{0}`")]
    UndefinedValue(String),
    /// A definition whose type differs from the value's earlier `declare`.
    #[error("value `%{name}` is defined with type {defined} but was declared with type {declared}")]
    DeclarationMismatch {
        /// The value.
        name: String,
        /// The type at the declaration.
        declared: String,
        /// The type at the definition.
        defined: String,
    },
    /// A dtype name that is not one of the IR's dtypes.
    #[error("unknown dtype `{0}`")]
    UnknownDType(String),
    /// A malformed dimension expression.
    #[error("bad dimension expression: {0}")]
    BadDim(String),
    /// An integer literal that does not fit the type it is read as.
    #[error("integer `{text}` does not fit in {ty}")]
    IntegerOutOfRange {
        /// The literal as written.
        text: String,
        /// The Rust type it must fit.
        ty: &'static str,
    },
    /// A node whose result list does not match what the op produces.
    #[error("`{op}` produces {expected} result(s), but {found} are named")]
    ResultCount {
        /// The op.
        op: String,
        /// Results the op (with these attributes) has.
        expected: usize,
        /// Results written.
        found: usize,
    },
    /// A node with an operand count outside the op's arity.
    #[error("`{op}` takes {expected} operand(s), but {found} are given")]
    OperandCount {
        /// The op.
        op: String,
        /// The allowed count, e.g. `2` or `3 to 4` or `at least 1`.
        expected: String,
        /// Operands written (absent ones included).
        found: usize,
    },
    /// An inline weight whose bytes were replaced by `<N bytes elided>` when printing.
    #[error(
        "the bytes of inline weight `%{0}` were elided when this text was printed; \
         print the graph without elision to parse it back"
    )]
    ElidedInline(String),
    /// An expression nested deeper than the parser accepts.
    #[error("expression nested deeper than {0} levels")]
    NestingTooDeep(usize),
    /// Hex digits that do not form whole bytes.
    #[error("inline data must have an even number of hex digits")]
    OddHexDigits,
}
