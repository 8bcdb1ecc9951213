//! The e-graph optimiser: graph rewrites by equality saturation with `egg`, extraction by an
//! Ascend-flavoured cost model, per-layer templates so a deep model costs about one layer.
//!
//! [`optimize`] splits the graph into segments at the residual stream ([`template`]), optimises
//! each distinct segment once — convert to an e-graph ([`convert`]), saturate with the selected
//! rule families ([`rules`]) under node and iteration limits with a backoff scheduler, extract
//! the cheapest program with a DAG-aware greedy extractor ([`extract`]) under the cost model
//! ([`cost`]) — and instantiates the optimised program for every segment with the same
//! signature, substituting that segment's weights. Every e-class carries its types
//! ([`analysis`]); a rewrite that merges classes of different types is reported as an unsound
//! rule instead of producing a graph. Index computations (positions, masks, gather indices) also
//! carry what they hold as a function of the coordinates ([`index_form`], derived on the whole
//! graph so segments know their parameters), which rules use to prove, for example, that a mask
//! is causal. The result is verified before it is returned.

pub mod analysis;
pub mod convert;
pub mod cost;
pub mod custom;
pub mod extract;
pub mod index_form;
pub mod language;
pub mod report;
pub mod rules;
pub mod template;

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use cubevec_ir::graph::{Graph, Node, NodeId, ValueId, WeightData};
use cubevec_ir::verify::{Rewrite, VerifyError, verify, verify_rewritten};
use egg::{BackoffScheduler, Runner};
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

use cost::graph_cost_keyed;
pub use cost::{CostModel, RooflineCost, graph_cost};
pub use custom::CustomRules;
pub use language::ConstTensor;
pub use report::{OptimizeReport, PhaseTime};
pub use rules::RuleFamily;

use convert::{Operand, Program};
use template::Segment;

/// Options of [`optimize`].
#[derive(Clone, Debug)]
pub struct OptimizeOptions {
    /// Most e-nodes in one template's e-graph before saturation stops.
    pub node_limit: usize,
    /// Most saturation iterations per template.
    pub iter_limit: usize,
    /// The rule families to run.
    pub rules: Vec<RuleFamily>,
    /// Largest constant (in elements) carried by value and produced by folding.
    pub fold_limit: usize,
    /// Fewest nodes in a segment, but for a short piece between repeating ones (shorter pieces
    /// between cuts are merged with a neighbour that does not repeat).
    pub min_segment_nodes: usize,
    /// Optimise identical segments once and replay the result.
    pub reuse_templates: bool,
    /// Sizes assumed for symbolic dimensions when costing (`seq`, `batch`).
    pub cost_symbols: BTreeMap<String, u64>,
    /// Size assumed for any other symbol.
    pub default_symbol: u64,
    /// User rules, run after the selected families' rules ([`custom`]).
    pub extra_rules: CustomRules,
}

impl Default for OptimizeOptions {
    fn default() -> OptimizeOptions {
        OptimizeOptions {
            node_limit: 20_000,
            iter_limit: 12,
            rules: RuleFamily::ALL.to_vec(),
            fold_limit: 4096,
            min_segment_nodes: 16,
            reuse_templates: true,
            cost_symbols: BTreeMap::new(),
            default_symbol: 1,
            extra_rules: CustomRules::new(),
        }
    }
}

/// Why optimisation failed.
#[derive(Debug, thiserror::Error)]
pub enum OptimizeError {
    /// The input graph does not verify.
    #[error("input graph: {0}")]
    Input(Box<VerifyError>),
    /// A rule merged e-classes of different types.
    #[error("unsound rewrite by rule `{rule}` in segment starting at {segment}: {detail}")]
    Unsound {
        /// The rule.
        rule: String,
        /// The segment's first node.
        segment: String,
        /// The types involved.
        detail: String,
    },
    /// A node's types could not be inferred in the e-graph.
    #[error("ill-typed node from `{rule}` in segment starting at {segment}: {detail}")]
    IllTyped {
        /// The rule, or `graph conversion`.
        rule: String,
        /// The segment's first node.
        segment: String,
        /// What inference reported.
        detail: String,
    },
    /// A graph output was not computed by the optimised program (an extraction bug).
    #[error("graph output `{0}` is not computed by the optimised graph")]
    LostOutput(String),
    /// The optimised graph does not verify.
    #[error("optimised graph: {0}")]
    Output(Box<VerifyError>),
}

/// Optimises `graph` with the analytic [`RooflineCost`] (symbols sized per `options`).
///
/// `graph` must verify ([`verify`]; every graph a frontend returns does). Up front only what the
/// optimiser indexes by is checked; of the result, everything the rewrite could have broken
/// ([`verify_rewritten`]). The graph is rewritten in place: its weights are not copied, so the
/// time grows with the distinct layers (saturation) and the nodes (rebuilding), not the weights.
pub fn optimize(
    graph: Graph,
    options: &OptimizeOptions,
) -> Result<(Graph, OptimizeReport), OptimizeError> {
    let cost = RooflineCost {
        symbols: options.cost_symbols.clone(),
        default_symbol: options.default_symbol,
        ..RooflineCost::default()
    };
    optimize_with_cost(graph, options, &cost)
}

/// [`optimize`], extracting by `cost`.
pub fn optimize_with_cost(
    mut graph: Graph,
    options: &OptimizeOptions,
    cost: &dyn CostModel,
) -> Result<(Graph, OptimizeReport), OptimizeError> {
    let start = Instant::now();
    let order = match (well_formed(&graph), graph.topological_order()) {
        (true, Ok(order)) => order,
        _ => return Err(OptimizeError::Input(Box::new(input_error(&graph)))),
    };
    let input_check_s = start.elapsed().as_secs_f64();
    let mut report = OptimizeReport::default();
    let start = Instant::now();
    let constants = template::small_constants(&graph, options.fold_limit);
    let forms = index_form::graph_forms(&graph, &order, &constants);
    let segments = template::split(&graph, &order, options.min_segment_nodes, &constants);
    report.add_time("segment", input_check_s + start.elapsed().as_secs_f64());
    let start = Instant::now();
    let (template_of, firsts) = if options.reuse_templates {
        template::templates(&graph, &segments, &forms)
    } else {
        ((0..segments.len()).collect(), (0..segments.len()).collect())
    };
    report.segments = segments.len();
    report.templates = firsts.len();
    report.add_time("templates", start.elapsed().as_secs_f64());
    let start = Instant::now();
    // Nodes at the same place of segments with the same template have the same types.
    let mut place = vec![None; graph.nodes.len()];
    for (seg, &t) in segments.iter().zip(&template_of) {
        for (i, node) in seg.nodes.iter().enumerate() {
            place[node.index()] = Some((t, i));
        }
    }
    report.ops_before = report::op_counts(&graph);
    report.cost_before = graph_cost_keyed(&graph, cost, |n| place[n]);
    let report_before = start.elapsed().as_secs_f64();

    let mut programs = Vec::with_capacity(firsts.len());
    for &first in &firsts {
        programs.push(optimize_segment(
            &graph,
            &segments[first],
            &forms,
            options,
            cost,
            &mut report,
        )?);
    }

    let start = Instant::now();
    let kept_values = graph.values.len();
    let kept_initializers = graph.initializers.len();
    let instances = rebuild(&mut graph, &segments, &template_of, &programs, &constants)?;
    report.add_time("rebuild", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let (instances, (new_values, new_initializers)) =
        compact(&mut graph, instances, (kept_values, kept_initializers));
    report.add_time("compact", start.elapsed().as_secs_f64());
    let start = Instant::now();
    // The first remaining instance of each program node is type-checked; the others replay it.
    let mut checked: Vec<Vec<bool>> = programs
        .iter()
        .map(|p| vec![false; p.nodes.len()])
        .collect();
    let replayed: Vec<bool> = instances
        .iter()
        .map(|&(t, k)| std::mem::replace(&mut checked[t][k], true))
        .collect();
    let rewrite = Rewrite {
        new_values,
        new_initializers,
        replayed: &replayed,
    };
    verify_rewritten(&graph, &rewrite).map_err(|e| OptimizeError::Output(Box::new(e)))?;
    report.add_time("verify", start.elapsed().as_secs_f64());
    let start = Instant::now();
    report.ops_after = report::op_counts(&graph);
    report.cost_after = graph_cost_keyed(&graph, cost, |n| instances.get(n).copied());
    report.add_time("report", report_before + start.elapsed().as_secs_f64());
    Ok((graph, report))
}

/// Whether every value id the graph mentions exists and every node has as many results as its
/// op defines (what segmentation and conversion index by).
fn well_formed(graph: &Graph) -> bool {
    let n = graph.values.len();
    let ok = |v: &ValueId| v.index() < n;
    graph.inputs.iter().all(ok)
        && graph.outputs.iter().all(ok)
        && graph.initializers.iter().all(|i| ok(&i.value))
        && graph.nodes.iter().all(|node| {
            node.inputs.iter().flatten().all(ok)
                && node.outputs.iter().all(ok)
                && node.outputs.len() == node.op.num_outputs()
        })
}

/// The verifier's complaint about an input graph the optimiser cannot use.
fn input_error(graph: &Graph) -> VerifyError {
    match verify(graph) {
        Err(e) => e,
        // The verifier accepts every graph that is well formed and acyclic.
        Ok(()) => VerifyError::NoOutputs {
            graph: graph.name.clone(),
        },
    }
}

/// Saturates and extracts one template segment.
fn optimize_segment(
    graph: &Graph,
    seg: &Segment,
    forms: &index_form::IndexForms,
    options: &OptimizeOptions,
    cost: &dyn CostModel,
    report: &mut OptimizeReport,
) -> Result<Program, OptimizeError> {
    let segment_name = seg
        .nodes
        .first()
        .map(|&n| graph.describe_node(n))
        .unwrap_or_default();
    let start = Instant::now();
    let mut seg_eg = convert::to_egraph(graph, seg, forms);
    if let Some((rule, detail)) = seg_eg.egraph.analysis.ill_typed.first() {
        return Err(OptimizeError::IllTyped {
            rule: rule.clone(),
            segment: segment_name,
            detail: detail.clone(),
        });
    }
    let mut selected = rules::rules(&options.rules, options.fold_limit);
    selected.extend(options.extra_rules.boxed());
    let rewrites = rules::rewrites(selected);
    let egraph = std::mem::take(&mut seg_eg.egraph);
    let runner: Runner<_, _, ()> = Runner::default()
        .with_egraph(egraph)
        .with_iter_limit(options.iter_limit)
        .with_node_limit(options.node_limit)
        .with_time_limit(Duration::from_secs(24 * 3600))
        .with_scheduler(BackoffScheduler::default())
        .run(&rewrites);
    for iteration in &runner.iterations {
        for (rule, n) in &iteration.applied {
            *report.rules_fired.entry(rule.to_string()).or_insert(0) += n;
        }
    }
    report.iterations += runner.iterations.len();
    let reason = match &runner.stop_reason {
        Some(r) => format!("{r:?}"),
        None => "none".to_string(),
    };
    *report.stop_reasons.entry(reason).or_insert(0) += 1;
    seg_eg.egraph = runner.egraph;
    let analysis = &seg_eg.egraph.analysis;
    if let Some((rule, detail)) = analysis.unsound_merges.first() {
        return Err(OptimizeError::Unsound {
            rule: rule.clone(),
            segment: segment_name,
            detail: detail.clone(),
        });
    }
    if let Some((rule, detail)) = analysis.ill_typed.first() {
        return Err(OptimizeError::IllTyped {
            rule: rule.clone(),
            segment: segment_name,
            detail: detail.clone(),
        });
    }
    let nodes = seg_eg.egraph.total_number_of_nodes();
    report.egraph_nodes += nodes;
    report.egraph_classes += seg_eg.egraph.number_of_classes();
    report.largest_egraph_nodes = report.largest_egraph_nodes.max(nodes);
    report.add_time("saturate", start.elapsed().as_secs_f64());

    let start = Instant::now();
    let program = extract::extract(&seg_eg.egraph, &seg_eg.roots, cost)
        .and_then(|selection| convert::to_program(&seg_eg, &selection));
    report.add_time("extract", start.elapsed().as_secs_f64());
    Ok(match program {
        Some(p) => p,
        None => {
            report.kept_unoptimised += 1;
            convert::identity_program(graph, seg)
        }
    })
}

/// Fresh names for the values (`%opt{n}`) and constants (`%const{n}`) a rebuild adds, none of
/// which a value of the graph had. The numbers the graph's names already use with either prefix
/// are collected in one pass when the first fresh name is needed.
#[derive(Default)]
struct FreshNames {
    /// The numbers taken after `%opt` and after `%const`.
    taken: Option<[FxHashSet<u64>; 2]>,
    values: u64,
    constants: u64,
}

impl FreshNames {
    const PREFIXES: [&'static str; 2] = ["%opt", "%const"];

    fn value(&mut self, graph: &Graph) -> String {
        self.next(graph, false)
    }

    fn constant(&mut self, graph: &Graph) -> String {
        self.next(graph, true)
    }

    fn next(&mut self, graph: &Graph, constant: bool) -> String {
        let taken = self.taken.get_or_insert_with(|| {
            let mut taken = [FxHashSet::default(), FxHashSet::default()];
            for v in &graph.values {
                for (prefix, numbers) in Self::PREFIXES.iter().zip(&mut taken) {
                    if let Some(n) = v.name.strip_prefix(prefix).and_then(canonical_number) {
                        numbers.insert(n);
                    }
                }
            }
            taken
        });
        let (taken, next) = match constant {
            true => (&taken[1], &mut self.constants),
            false => (&taken[0], &mut self.values),
        };
        while taken.contains(next) {
            *next += 1;
        }
        *next += 1;
        format!("{}{}", Self::PREFIXES[usize::from(constant)], *next - 1)
    }
}

/// The number `digits` writes as `format!` would (no sign, no leading zero).
fn canonical_number(digits: &str) -> Option<u64> {
    let canonical =
        digits == "0" || (digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0'));
    canonical.then(|| digits.parse().ok()).flatten()
}

/// The input graph's nodes during [`rebuild`]: each is moved into the new graph when a program
/// node reproduces it unchanged, and read in place otherwise.
struct OldNodes {
    nodes: Vec<Option<Node>>,
    /// Where each moved node went in the new graph.
    moved_to: Vec<usize>,
}

impl OldNodes {
    fn new(nodes: Vec<Node>) -> OldNodes {
        OldNodes {
            moved_to: vec![usize::MAX; nodes.len()],
            nodes: nodes.into_iter().map(Some).collect(),
        }
    }

    /// Node `n`, wherever it is now.
    fn get<'a>(&'a self, graph: &'a Graph, n: NodeId) -> &'a Node {
        match &self.nodes[n.index()] {
            Some(node) => node,
            None => &graph.nodes[self.moved_to[n.index()]],
        }
    }

    /// Moves node `n` to the end of the new graph.
    fn move_into(&mut self, graph: &mut Graph, n: NodeId) -> Option<usize> {
        let node = self.nodes[n.index()].take()?;
        self.moved_to[n.index()] = graph.nodes.len();
        graph.nodes.push(node);
        Some(graph.nodes.len() - 1)
    }
}

/// For each node of `program`, whether it is the segment node it came from as it stands: the
/// same op, taking over every result of that node in order (then, where its operands resolve to
/// the node's own operands, the node itself is kept). `nodes` are the template's segment nodes.
fn unchanged_nodes(
    program: &Program,
    nodes: &[NodeId],
    old: &OldNodes,
    graph: &Graph,
) -> Vec<bool> {
    (program.nodes.iter())
        .map(|pn| {
            let Some((p, &node)) = pn.origin.and_then(|p| Some((p, nodes.get(p)?))) else {
                return false;
            };
            let original = old.get(graph, node);
            original.op == pn.op
                && pn.takes_over.len() == original.outputs.len()
                && (pn.takes_over.iter().enumerate()).all(|(o, t)| *t == Some((p, o)))
        })
        .collect()
}

/// Replaces the graph's nodes by every segment's program instantiated with that segment's
/// parameters. A result equal to a value of the segment takes over that value (id, name, type);
/// other results get fresh values, appended. A program node that is its original node with the
/// same operands keeps that node (moved, not copied: most nodes of most layers). A node computing
/// the same op on the same values as an earlier one is not repeated (common subexpressions across
/// segments, such as per-layer copies of a rotary table). Values left without a definition are
/// dropped by [`compact`]. Returns, for each node, the template and program node it instantiates.
fn rebuild(
    graph: &mut Graph,
    segments: &[Segment],
    template_of: &[usize],
    programs: &[Program],
    constants: &FxHashMap<ValueId, ConstTensor>,
) -> Result<Vec<(usize, usize)>, OptimizeError> {
    let mut old = OldNodes::new(std::mem::take(&mut graph.nodes));
    graph.nodes.reserve(old.nodes.len());
    // Segment outputs by the value they replace; values no node defined stand for themselves.
    let mut map: Vec<Option<ValueId>> = vec![None; graph.values.len()];
    let mut node_result = vec![false; graph.values.len()];
    for node in old.nodes.iter().flatten() {
        for &v in &node.outputs {
            node_result[v.index()] = true;
        }
    }
    let mapped = |map: &[Option<ValueId>], v: ValueId| match node_result[v.index()] {
        true => map[v.index()],
        false => Some(v),
    };
    // Equal constants share the initializer with the lowest id.
    let mut by_id: Vec<(&ValueId, &ConstTensor)> = constants.iter().collect();
    by_id.sort_unstable_by_key(|&(v, _)| *v);
    let mut constants: BTreeMap<ConstTensor, ValueId> = BTreeMap::new();
    for (&v, c) in by_id {
        constants.entry(c.clone()).or_insert(v);
    }
    let mut fresh = FreshNames::default();
    // Nodes by a hash of their op and operands: the newest node with each hash, and for each
    // node the one before it with the same hash.
    let mut newest_with_hash: FxHashMap<u64, usize> = FxHashMap::default();
    newest_with_hash.reserve(old.nodes.len());
    let mut older_with_hash: Vec<Option<usize>> = Vec::with_capacity(old.nodes.len());
    let mut instances = Vec::with_capacity(old.nodes.len());
    // Per template, which program nodes may keep their original node (found on first use).
    let mut unchanged: Vec<Option<Vec<bool>>> = vec![None; programs.len()];
    // Per program node, the hash of its op.
    let op_hashes: Vec<Vec<u64>> = (programs.iter())
        .map(|p| {
            (p.nodes.iter())
                .map(|pn| FxBuildHasher.hash_one(&pn.op))
                .collect()
        })
        .collect();
    let mut params: Vec<Option<ValueId>> = Vec::new();
    let mut inputs: Vec<Option<ValueId>> = Vec::new();
    // The graph node computing each program node of the current segment.
    let mut computed_by: Vec<usize> = Vec::new();
    for (s, seg) in segments.iter().enumerate() {
        let t = template_of[s];
        let program = &programs[t];
        let unchanged =
            unchanged[t].get_or_insert_with(|| unchanged_nodes(program, &seg.nodes, &old, graph));
        let op_hashes = &op_hashes[t];
        params.clear();
        params.extend(seg.params.iter().map(|&v| mapped(&map, v)));
        computed_by.clear();
        let mut operand = |operand: &Operand,
                           computed_by: &[usize],
                           graph: &mut Graph,
                           fresh: &mut FreshNames| {
            match operand {
                Operand::Absent => None,
                Operand::Param(i) => params.get(*i as usize).copied().flatten(),
                Operand::Node { node, output } => computed_by
                    .get(*node)
                    .and_then(|&n| graph.nodes[n].outputs.get(*output as usize))
                    .copied(),
                Operand::Const(c) => Some(match constants.get(c) {
                    Some(&v) => v,
                    None => {
                        let name = fresh.constant(graph);
                        let v = graph.add_initializer(
                            name,
                            c.ty(),
                            WeightData::Inline(c.bytes.clone()),
                        );
                        constants.insert(c.clone(), v);
                        v
                    }
                }),
            }
        };
        for (k, pn) in program.nodes.iter().enumerate() {
            inputs.clear();
            for o in &pn.inputs {
                inputs.push(operand(o, &computed_by, graph, &mut fresh));
            }
            // The same op on the same values is computed once (across segments too).
            let hash = FxBuildHasher.hash_one((op_hashes[k], &inputs));
            let mut same = newest_with_hash.get(&hash).copied();
            while let Some(n) = same {
                let node = &graph.nodes[n];
                if node.op == pn.op && node.inputs == inputs {
                    break;
                }
                same = older_with_hash[n];
            }
            if let Some(existing) = same {
                computed_by.push(existing);
                continue;
            }
            let original = pn.origin.and_then(|p| seg.nodes.get(p)).copied();
            let kept = match original {
                Some(n) if unchanged[k] && old.get(graph, n).inputs == inputs => {
                    old.move_into(graph, n)
                }
                _ => None,
            };
            let index = match kept {
                Some(index) => index,
                None => {
                    let name = match original {
                        Some(n) => old.get(graph, n).name.clone(),
                        None => format!("optimized.{}", pn.op.name()),
                    };
                    let mut outputs = Vec::with_capacity(pn.types.len());
                    for (ty, takes) in pn.types.iter().zip(&pn.takes_over) {
                        let taken = takes.and_then(|(p, o)| {
                            let n = *seg.nodes.get(p)?;
                            old.get(graph, n).outputs.get(o).copied()
                        });
                        outputs.push(match taken {
                            Some(v) => v,
                            None => {
                                let name = fresh.value(graph);
                                graph.add_value(name, ty.clone())
                            }
                        });
                    }
                    graph.add_node(Node {
                        name,
                        op: pn.op.clone(),
                        inputs: inputs.clone(),
                        outputs,
                    });
                    graph.nodes.len() - 1
                }
            };
            older_with_hash.push(newest_with_hash.insert(hash, index));
            instances.push((t, k));
            computed_by.push(index);
        }
        for (k, o) in program.outputs.iter().enumerate() {
            let value = operand(o, &computed_by, graph, &mut fresh);
            if let Some(&v) = seg.outputs.get(k) {
                map[v.index()] = value;
            }
        }
    }
    let outputs = std::mem::take(&mut graph.outputs);
    for v in outputs {
        let value = mapped(&map, v)
            .ok_or_else(|| OptimizeError::LostOutput(graph.value(v).name.clone()))?;
        graph.outputs.push(value);
    }
    Ok(instances)
}

/// Drops nodes whose results nothing needs (values exported for another segment's context and
/// not used in the end), then initializers and values nothing refers to, and renumbers the
/// values, all in place ([`Graph::retain_values`]). Nodes are in topological order, so one
/// backward sweep finds what is live. `tags` (one per node) are kept for the nodes kept.
/// `appended` is the first value and initializer index the rebuild appended; returned is where
/// those that remain start.
fn compact<T>(
    graph: &mut Graph,
    mut tags: Vec<T>,
    appended: (usize, usize),
) -> (Vec<T>, (usize, usize)) {
    let mut used = vec![false; graph.values.len()];
    for &v in &graph.outputs {
        used[v.index()] = true;
    }
    let mut keep = vec![false; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate().rev() {
        if node.outputs.iter().any(|v| used[v.index()]) {
            keep[i] = true;
            for &v in node.inputs.iter().flatten() {
                used[v.index()] = true;
            }
        }
    }
    graph.retain_nodes(&keep);
    let mut kept = keep.iter();
    tags.retain(|_| kept.next().copied().unwrap_or(false));
    for &v in &graph.inputs {
        used[v.index()] = true;
    }
    for node in &graph.nodes {
        for &v in &node.outputs {
            used[v.index()] = true;
        }
    }
    let initializers_left = (graph.initializers[..appended.1].iter())
        .filter(|init| used[init.value.index()])
        .count();
    let values_left = used[..appended.0].iter().filter(|u| **u).count();
    graph.retain_values(&used);
    (tags, (values_left, initializers_left))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cubevec_ir::graph::TensorType;
    use cubevec_ir::{DType, Shape};

    #[test]
    fn numbers_count_only_as_format_writes_them() {
        assert_eq!(canonical_number("0"), Some(0));
        assert_eq!(canonical_number("12"), Some(12));
        assert_eq!(canonical_number("012"), None);
        assert_eq!(canonical_number("00"), None);
        assert_eq!(canonical_number(""), None);
        assert_eq!(canonical_number("+1"), None);
        assert_eq!(canonical_number("1a"), None);
    }

    #[test]
    fn fresh_names_skip_the_graphs_names() {
        let mut graph = Graph::default();
        let ty = TensorType::new(DType::F32, Shape::known(&[1]));
        for name in ["%opt0", "%opt2", "%opt01", "%const0", "opt1"] {
            graph.add_value(name, ty.clone());
        }
        let mut fresh = FreshNames::default();
        let values: Vec<String> = (0..3).map(|_| fresh.value(&graph)).collect();
        assert_eq!(values, ["%opt1", "%opt3", "%opt4"]);
        assert_eq!(fresh.constant(&graph), "%const1");
        assert_eq!(fresh.constant(&graph), "%const2");
    }
}
