//! Rewrite rules supplied by the user, run beside the built-in families.
//!
//! A user rule implements [`Rule`], the interface of the built-in rules: for each e-node it
//! inspects the e-graph through a [`Ctx`] (the ops of a class, its type, its constants) and
//! pushes [`Recipe`]s — new nodes over existing classes, each type-checked as it is built, and
//! the classes they equal. A recipe whose new nodes do not type-check is never added, and a
//! union of classes of different types stops optimisation with an error naming the rule, so a
//! wrong rule cannot silently produce a wrong graph.

use std::fmt;
use std::sync::Arc;

pub use super::rules::{Ctx, Recipe, Rule, Slot};
use super::rules::{RuleFamily, rules};
use crate::optimize::language::TensorNode;
pub use egg::Id;

/// A user rule's name is already taken by a built-in rule or an earlier user rule.
#[derive(Debug, thiserror::Error)]
#[error("a rewrite rule named `{0}` is already registered")]
pub struct DuplicateRule(pub String);

/// User rules in registration order, run after the built-in families' rules in every
/// saturation iteration.
#[derive(Clone, Default)]
pub struct CustomRules {
    rules: Vec<Arc<dyn Rule>>,
}

impl CustomRules {
    /// No user rules.
    pub fn new() -> CustomRules {
        CustomRules::default()
    }

    /// Registers `rule`. Its name is how the optimiser's report counts its rewrites, so it must
    /// differ from every built-in rule's and every other user rule's.
    pub fn add(&mut self, rule: impl Rule + 'static) -> Result<(), DuplicateRule> {
        let name = rule.name();
        let builtin = rules(&RuleFamily::ALL, 0);
        if builtin.iter().any(|r| r.name() == name) || self.names().any(|n| n == name) {
            return Err(DuplicateRule(name.to_string()));
        }
        self.rules.push(Arc::new(rule));
        Ok(())
    }

    /// Whether no rule is registered.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The names of the registered rules.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.rules.iter().map(|r| r.name())
    }

    /// The rules, ready to run beside the built-in ones.
    pub(crate) fn boxed(&self) -> Vec<Box<dyn Rule>> {
        self.rules
            .iter()
            .map(|r| Box::new(Shared(r.clone())) as Box<dyn Rule>)
            .collect()
    }
}

impl fmt::Debug for CustomRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// A registered rule, shared between the options and the rewrites of one saturation.
struct Shared(Arc<dyn Rule>);

impl Rule for Shared {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn find(&self, ctx: &Ctx<'_>, class: Id, node: &TensorNode, out: &mut Vec<Recipe>) {
        self.0.find(ctx, class, node, out);
    }

    fn find_all(&self, ctx: &Ctx<'_>, limit: usize, out: &mut Vec<Recipe>) {
        self.0.find_all(ctx, limit, out);
    }
}
