//! An indenting writer for generated source text.

/// Lines of generated code with the current indentation (four spaces per level).
#[derive(Debug, Default)]
pub(crate) struct Code {
    text: String,
    depth: usize,
}

impl Code {
    /// An empty text.
    pub(crate) fn new() -> Code {
        Code::default()
    }

    /// One line at the current indentation (an empty `line` gives an empty line).
    pub(crate) fn line(&mut self, line: impl AsRef<str>) {
        let line = line.as_ref();
        if !line.is_empty() {
            for _ in 0..self.depth {
                self.text.push_str("    ");
            }
            self.text.push_str(line);
        }
        self.text.push('\n');
    }

    /// `head {` and one level deeper.
    pub(crate) fn open(&mut self, head: impl AsRef<str>) {
        let head = head.as_ref();
        self.line(if head.is_empty() {
            "{".to_string()
        } else {
            format!("{head} {{")
        });
        self.depth += 1;
    }

    /// `}` (followed by `tail`) one level up.
    pub(crate) fn close(&mut self, tail: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.line(format!("}}{tail}"));
    }

    /// The finished text.
    pub(crate) fn finish(self) -> String {
        self.text
    }
}
