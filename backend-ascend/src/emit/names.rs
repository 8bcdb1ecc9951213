//! Identifiers, file names and string literals derived from names found in models.
//!
//! Model names (tensors, kernels, programs) are arbitrary text: quotes, newlines, `*/`, non-ASCII
//! letters. None of them reaches the emitted C++ or a file name unescaped: identifiers and file
//! stems are sanitised to `[A-Za-z0-9_]` and made unique by [`Idents`] and [`FileStems`], and
//! the original text appears only inside C string literals built by [`c_string_literal`].

use std::collections::BTreeSet;

/// Longest sanitised stem kept from a name (identifiers and file names stay short and portable).
const MAX_STEM: usize = 48;

/// `name` reduced to ASCII letters, digits and single underscores, without leading or trailing
/// underscores, at most 48 characters, never empty (`x` stands for a name with no usable
/// character). Different names may give the same stem; [`Idents`] and [`FileStems`] resolve that.
pub(crate) fn sanitize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        if out.len() == MAX_STEM {
            break;
        }
        out.push(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        out.push('x');
    }
    out
}

/// Unique C identifiers of one scope, handed out in request order (so output is deterministic).
#[derive(Debug, Default)]
pub(crate) struct Idents {
    used: BTreeSet<String>,
}

impl Idents {
    /// An empty scope.
    pub(crate) fn new() -> Idents {
        Idents::default()
    }

    /// Marks fixed identifiers of the emitted code as taken.
    pub(crate) fn reserve(&mut self, idents: &[&str]) {
        self.used.extend(idents.iter().map(|s| s.to_string()));
    }

    /// A fresh identifier `prefix` + the sanitised `name`, with `_2`, `_3`, … appended on a
    /// clash. `prefix` is a lowercase word ending in `_` (`v_`, `p_`), so the result is never a
    /// keyword, a macro-style name or reserved (no leading underscore, no `__`).
    pub(crate) fn fresh(&mut self, prefix: &str, name: &str) -> String {
        debug_assert!(
            prefix.ends_with('_') && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        );
        let base = format!("{prefix}{}", sanitize(name));
        let mut candidate = base.clone();
        let mut n = 2;
        while self.used.contains(&candidate) {
            candidate = format!("{base}_{n}");
            n += 1;
        }
        self.used.insert(candidate.clone());
        candidate
    }
}

/// Unique file stems, compared case-insensitively so that the files stay distinct on
/// case-insensitive file systems.
#[derive(Debug, Default)]
pub(crate) struct FileStems {
    used: BTreeSet<String>,
}

impl FileStems {
    /// No stems yet.
    pub(crate) fn new() -> FileStems {
        FileStems::default()
    }

    /// The sanitised `name`, with `_2`, `_3`, … appended when a stem that differs only in case
    /// is taken.
    pub(crate) fn fresh(&mut self, name: &str) -> String {
        let base = sanitize(name);
        let mut candidate = base.clone();
        let mut n = 2;
        while self.used.contains(&candidate.to_ascii_lowercase()) {
            candidate = format!("{base}_{n}");
            n += 1;
        }
        self.used.insert(candidate.to_ascii_lowercase());
        candidate
    }
}

/// `text` as a C/C++ string literal: quotes and backslashes escaped, `?` escaped (no trigraphs),
/// every other byte outside printable ASCII written as a three-digit octal escape.
pub(crate) fn c_string_literal(text: &str) -> String {
    let mut out = String::from("\"");
    for &b in text.as_bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'?' => out.push_str("\\?"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out.push('"');
    out
}

/// `text` made safe for a `//` comment: every character outside printable ASCII, the
/// backslash (a line splice at the end of a line) and `?` (trigraphs such as `??/`) become `.`.
pub(crate) fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\\' | '?' => '.',
            ' '..='~' => c,
            _ => '.',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitised_names_are_identifier_stems() {
        assert_eq!(sanitize("layer.0/attn"), "layer_0_attn");
        assert_eq!(sanitize("__x__"), "x");
        assert_eq!(sanitize("\"*/\n"), "x");
        assert_eq!(sanitize("Größe"), "Gr_e");
        assert_eq!(sanitize(&"a".repeat(100)).len(), MAX_STEM);
    }

    #[test]
    fn identifiers_and_stems_are_unique() {
        let mut ids = Idents::new();
        ids.reserve(&["v_a"]);
        assert_eq!(ids.fresh("v_", "a"), "v_a_2");
        assert_eq!(ids.fresh("v_", "a.b"), "v_a_b");
        assert_eq!(ids.fresh("v_", "a_b"), "v_a_b_2");
        let mut stems = FileStems::new();
        assert_eq!(stems.fresh("X"), "X");
        assert_eq!(stems.fresh("x"), "x_2");
    }

    #[test]
    fn string_literals_escape_everything_dangerous() {
        assert_eq!(
            c_string_literal("a\"b\\c\n*/??=é"),
            "\"a\\\"b\\\\c\\n*/\\?\\?=\\303\\251\""
        );
        assert_eq!(comment_text("a\nb\\??/"), "a.b.../");
    }
}
