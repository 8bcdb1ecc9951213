//! Lowerings supplied by the user, consulted before the built-in ones.
//!
//! A framework author whose model uses an op cubevec has no kernel for (or who wants another
//! kernel for an op it has) registers a function from the node's [`OpContext`] to a
//! [`Lowering`]. The partitioner asks every registered lowering in registration order; the
//! first that returns `Some` decides the node, and nodes no user lowering takes go to the
//! built-in dispatch.

use std::fmt;
use std::sync::Arc;

use crate::lower::{LowerError, Lowering, OpContext};

/// A user lowering: `Some` when it takes the node, `None` to leave it to the next one.
pub type LowerFn = dyn Fn(&OpContext) -> Option<Result<Lowering, LowerError>> + Send + Sync;

/// User lowerings in registration order (see the module documentation).
#[derive(Clone, Default)]
pub struct Lowerings {
    entries: Vec<(String, Arc<LowerFn>)>,
}

impl Lowerings {
    /// No user lowerings: every node goes to the built-in dispatch.
    pub fn new() -> Lowerings {
        Lowerings::default()
    }

    /// Registers `lower` under `name` (shown by `Debug` and in error messages). Lowerings
    /// registered earlier are asked first.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        lower: impl Fn(&OpContext) -> Option<Result<Lowering, LowerError>> + Send + Sync + 'static,
    ) {
        self.entries.push((name.into(), Arc::new(lower)));
    }

    /// Whether no lowering is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The names of the registered lowerings, in the order they are asked.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(name, _)| name.as_str())
    }

    /// The first registered lowering's answer for the node, or `None` when none takes it. A
    /// user lowering's error is prefixed with its name.
    pub fn lower(&self, ctx: &OpContext) -> Option<Result<Lowering, LowerError>> {
        self.entries.iter().find_map(|(name, lower)| {
            lower(ctx).map(|result| {
                result.map_err(|e| LowerError::Unsupported(format!("user lowering `{name}`: {e}")))
            })
        })
    }
}

impl fmt::Debug for Lowerings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
