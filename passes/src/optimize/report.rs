//! What an optimisation run did: time per phase, e-graph sizes, rules fired, op counts.

use std::collections::BTreeMap;
use std::fmt;

use cubevec_ir::Graph;
use rustc_hash::FxHashMap;
use serde::Serialize;

/// Time spent in one phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseTime {
    /// Phase name (`segment`, `saturate`, `extract`, `rebuild`, `verify`).
    pub phase: String,
    /// Seconds.
    pub seconds: f64,
}

/// The report of [`super::optimize`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OptimizeReport {
    /// Time per phase, in the order the phases ran.
    pub phases: Vec<PhaseTime>,
    /// Segments the graph was split into.
    pub segments: usize,
    /// Distinct segments optimised (the others replay a template).
    pub templates: usize,
    /// Templates whose extraction failed and which were kept as they were.
    pub kept_unoptimised: usize,
    /// E-nodes over all template e-graphs at the end of saturation.
    pub egraph_nodes: usize,
    /// E-classes over all template e-graphs at the end of saturation.
    pub egraph_classes: usize,
    /// E-nodes of the largest template e-graph.
    pub largest_egraph_nodes: usize,
    /// Saturation iterations over all templates.
    pub iterations: usize,
    /// Why saturation stopped, with how many templates stopped that way.
    pub stop_reasons: BTreeMap<String, usize>,
    /// Rewrites that changed the e-graph, per rule (over all templates).
    pub rules_fired: BTreeMap<String, usize>,
    /// Op counts of the input graph, by op name.
    pub ops_before: BTreeMap<String, usize>,
    /// Op counts of the output graph, by op name.
    pub ops_after: BTreeMap<String, usize>,
    /// Modelled run time of the input graph, seconds.
    pub cost_before: f64,
    /// Modelled run time of the output graph, seconds.
    pub cost_after: f64,
}

impl OptimizeReport {
    /// Total seconds over all phases.
    pub fn total_seconds(&self) -> f64 {
        self.phases.iter().map(|p| p.seconds).sum()
    }

    /// Adds time to a phase (creating it at the end if new).
    pub(crate) fn add_time(&mut self, phase: &str, seconds: f64) {
        match self.phases.iter_mut().find(|p| p.phase == phase) {
            Some(p) => p.seconds += seconds,
            None => self.phases.push(PhaseTime {
                phase: phase.to_string(),
                seconds,
            }),
        }
    }
}

/// Node counts per op name.
pub fn op_counts(graph: &Graph) -> BTreeMap<String, usize> {
    // Counted by the address of the static name (hashing two words, not the text); copies of
    // one name at different addresses are added up below.
    let mut counts: FxHashMap<(usize, usize), (&'static str, usize)> = FxHashMap::default();
    for node in &graph.nodes {
        let name = node.op.name();
        counts
            .entry((name.as_ptr() as usize, name.len()))
            .or_insert((name, 0))
            .1 += 1;
    }
    let mut out = BTreeMap::new();
    for (name, n) in counts.into_values() {
        *out.entry(name.to_string()).or_insert(0) += n;
    }
    out
}

impl fmt::Display for OptimizeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} segments, {} templates ({} kept), {} iterations",
            self.segments, self.templates, self.kept_unoptimised, self.iterations
        )?;
        writeln!(
            f,
            "e-graphs: {} nodes, {} classes (largest {} nodes)",
            self.egraph_nodes, self.egraph_classes, self.largest_egraph_nodes
        )?;
        for p in &self.phases {
            writeln!(f, "  {:<10} {:>9.3} ms", p.phase, p.seconds * 1e3)?;
        }
        writeln!(
            f,
            "  {:<10} {:>9.3} ms",
            "total",
            self.total_seconds() * 1e3
        )?;
        for (reason, n) in &self.stop_reasons {
            writeln!(f, "stopped: {reason} ×{n}")?;
        }
        for (rule, n) in &self.rules_fired {
            writeln!(f, "rule {rule}: {n}")?;
        }
        let mut names: Vec<&String> = self
            .ops_before
            .keys()
            .chain(self.ops_after.keys())
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            let before = self.ops_before.get(name).copied().unwrap_or(0);
            let after = self.ops_after.get(name).copied().unwrap_or(0);
            if before != after {
                writeln!(f, "op {name}: {before} -> {after}")?;
            }
        }
        writeln!(
            f,
            "modelled time: {:.3} ms -> {:.3} ms",
            self.cost_before * 1e3,
            self.cost_after * 1e3
        )
    }
}
