//! The graph verifier.
