//! Tokens of the textual IR, produced by a `logos` lexer, and the escaping of quoted strings.

use std::ops::Range;

use logos::Logos;

use super::error::ParseErrorKind;

/// The kind of a token; its text is the source slice of its span.
#[derive(Logos, Clone, Copy, Debug, PartialEq, Eq)]
#[logos(skip r"[ \t\r\n\f]+")]
#[logos(skip(r"//[^\n]*", allow_greedy = true))]
pub(crate) enum Tok {
    /// A bare word: keywords, op names, dtypes, symbols, enum values.
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*")]
    Ident,
    /// An unsigned decimal integer.
    #[regex(r"[0-9]+")]
    Int,
    /// A decimal float with a fraction or an exponent (`1.5`, `1e-5`).
    #[regex(r"[0-9]+\.[0-9]+([eE][+-]?[0-9]+)?")]
    #[regex(r"[0-9]+[eE][+-]?[0-9]+")]
    Float,
    /// `0x` followed by hex digits (possibly none).
    #[regex(r"0x[0-9a-fA-F]*")]
    Hex,
    /// A double-quoted string with backslash escapes.
    #[regex(r#""([^"\\]|\\.)*""#)]
    Str,
    /// `%name` with a bare name.
    #[regex(r"%[A-Za-z0-9_.]+")]
    ValueBare,
    /// `%"name"` with a quoted name.
    #[regex(r#"%"([^"\\]|\\.)*""#)]
    ValueQuoted,
    /// `@name` with a bare name.
    #[regex(r"@[A-Za-z0-9_.]+")]
    AtBare,
    /// `@"name"` with a quoted name.
    #[regex(r#"@"([^"\\]|\\.)*""#)]
    AtQuoted,
    /// `(`.
    #[token("(")]
    LParen,
    /// `)`.
    #[token(")")]
    RParen,
    /// `[`.
    #[token("[")]
    LBracket,
    /// `]`.
    #[token("]")]
    RBracket,
    /// `{`.
    #[token("{")]
    LBrace,
    /// `}`.
    #[token("}")]
    RBrace,
    /// `,`.
    #[token(",")]
    Comma,
    /// `:`.
    #[token(":")]
    Colon,
    /// `=`.
    #[token("=")]
    Equals,
    /// `+`.
    #[token("+")]
    Plus,
    /// `-`.
    #[token("-")]
    Minus,
    /// `*`.
    #[token("*")]
    Star,
    /// `/`.
    #[token("/")]
    Slash,
    /// `<`.
    #[token("<")]
    Less,
    /// `>`.
    #[token(">")]
    Greater,
}

/// A token, or the error for the characters that could not be lexed, with its byte span.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    /// The token kind, or why the characters form no token.
    pub kind: Result<Tok, ParseErrorKind>,
    /// Byte range in the source.
    pub span: Range<usize>,
}

/// Splits the whole source into tokens; lexing errors become error tokens the parser reports
/// when it reaches them, so errors come out in source order.
pub(crate) fn tokenize(src: &str) -> Vec<Token> {
    let mut lexer = Tok::lexer(src);
    let mut tokens = Vec::new();
    while let Some(result) = lexer.next() {
        let span = lexer.span();
        let kind = result.map_err(|()| {
            let rest = &src[span.start..];
            if rest.starts_with('"') || rest.starts_with("%\"") || rest.starts_with("@\"") {
                ParseErrorKind::UnterminatedString
            } else {
                ParseErrorKind::InvalidToken(lexer.slice().to_string())
            }
        });
        let stop = kind.is_err();
        tokens.push(Token { kind, span });
        if stop {
            break;
        }
    }
    tokens
}

/// Describes a token for an error message.
pub(crate) fn describe(tok: Tok, text: &str) -> String {
    match tok {
        Tok::Str | Tok::ValueQuoted | Tok::AtQuoted if text.chars().count() > 40 => {
            let head: String = text.chars().take(37).collect();
            format!("`{head}...`")
        }
        _ => format!("`{text}`"),
    }
}

/// Whether `name` can be written without quotes after `%` or `@`.
pub(crate) fn is_bare_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// Whether `word` is a bare identifier (`[A-Za-z_][A-Za-z0-9_]*`).
pub(crate) fn is_identifier(word: &str) -> bool {
    let mut bytes = word.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Writes `s` as a double-quoted string literal: `"` and `\` are escaped, so are control
/// characters (`\n`, `\r`, `\t`, others as `\u{..}`); everything else is written as is.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads back a literal written by [`quote`] (including its quotes); the error names the bad
/// escape.
pub(crate) fn unquote(literal: &str) -> Result<String, ParseErrorKind> {
    let inner = literal
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or(ParseErrorKind::UnterminatedString)?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let rest = chars.as_str();
                let decoded = rest
                    .strip_prefix('{')
                    .and_then(|r| r.find('}').map(|end| &r[..end]))
                    .filter(|hex| {
                        !hex.is_empty()
                            && hex.len() <= 6
                            && hex.bytes().all(|b| b.is_ascii_hexdigit())
                    })
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok().map(|v| (hex.len(), v)))
                    .and_then(|(len, v)| char::from_u32(v).map(|c| (len, c)));
                match decoded {
                    Some((len, c)) => {
                        out.push(c);
                        // Skip `{`, the digits and `}`.
                        chars = rest[len + 2..].chars();
                    }
                    None => {
                        let shown: String = rest.chars().take(8).collect();
                        return Err(ParseErrorKind::InvalidEscape(format!("\\u{shown}")));
                    }
                }
            }
            Some(other) => return Err(ParseErrorKind::InvalidEscape(format!("\\{other}"))),
            None => return Err(ParseErrorKind::InvalidEscape("\\".to_string())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        tokenize(src).into_iter().map(|t| t.kind.unwrap()).collect()
    }

    #[test]
    fn lexes_numbers_names_and_punctuation() {
        assert_eq!(
            kinds("%x: f32[seq-1] = 0x3f 1e-5 2.5 7 @\"a b\" // note"),
            vec![
                Tok::ValueBare,
                Tok::Colon,
                Tok::Ident,
                Tok::LBracket,
                Tok::Ident,
                Tok::Minus,
                Tok::Int,
                Tok::RBracket,
                Tok::Equals,
                Tok::Hex,
                Tok::Float,
                Tok::Float,
                Tok::Int,
                Tok::AtQuoted,
            ]
        );
    }

    #[test]
    fn quoting_round_trips() {
        for s in [
            "",
            "plain",
            "a \"b\" \\ c",
            "tab\tnl\ncr\r",
            "\u{1}\u{7f}é✓",
        ] {
            assert_eq!(unquote(&quote(s)).unwrap(), s);
        }
        assert_eq!(
            unquote(r#""\q""#),
            Err(ParseErrorKind::InvalidEscape("\\q".into()))
        );
        assert!(unquote(r#""\u{110000}""#).is_err());
        assert!(unquote(r#""\u{41""#).is_err());
    }

    #[test]
    fn unterminated_string_is_reported() {
        let tokens = tokenize("weight \"abc");
        assert_eq!(
            tokens.last().unwrap().kind,
            Err(ParseErrorKind::UnterminatedString)
        );
    }
}
