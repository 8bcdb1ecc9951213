//! The textual IR: printer and parser.
