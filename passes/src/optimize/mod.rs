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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use cubevec_ir::graph::{Graph, Initializer, Node, ValueId, WeightData};
use cubevec_ir::verify::{VerifyError, verify, verify_replayed};
use egg::{BackoffScheduler, Runner};

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
    /// Fewest nodes in a segment (smaller pieces between cuts are merged).
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
pub fn optimize(
    graph: &Graph,
    options: &OptimizeOptions,
) -> Result<(Graph, OptimizeReport), OptimizeError> {
    let cost = RooflineCost {
        symbols: options.cost_symbols.clone(),
        default_symbol: options.default_symbol,
        ..RooflineCost::default()
    };
    optimize_with_cost(graph, options, &cost)
}

/// Optimises `graph`, extracting by `cost`.
pub fn optimize_with_cost(
    graph: &Graph,
    options: &OptimizeOptions,
    cost: &dyn CostModel,
) -> Result<(Graph, OptimizeReport), OptimizeError> {
    let mut report = OptimizeReport {
        ops_before: report::op_counts(graph),
        ..OptimizeReport::default()
    };
    let start = Instant::now();
    // The full check of the input runs only if the output fails to verify (to tell whose fault
    // it is); up front, only what the optimiser itself relies on is checked.
    let order = match (well_formed(graph), graph.topological_order()) {
        (true, Ok(order)) => order,
        _ => return Err(OptimizeError::Input(Box::new(input_error(graph)))),
    };
    let constants = template::small_constants(graph, options.fold_limit);
    let forms = index_form::graph_forms(graph, &order, &constants);
    let segments = template::split(graph, &order, options.min_segment_nodes, &constants);
    report.add_time("segment", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let (template_of, firsts) = if options.reuse_templates {
        template::templates(graph, &segments, &forms)
    } else {
        ((0..segments.len()).collect(), (0..segments.len()).collect())
    };
    report.segments = segments.len();
    report.templates = firsts.len();
    report.add_time("templates", start.elapsed().as_secs_f64());

    let mut programs = Vec::with_capacity(firsts.len());
    for &first in &firsts {
        programs.push(optimize_segment(
            graph,
            &segments[first],
            &forms,
            options,
            cost,
            &mut report,
        )?);
    }

    let start = Instant::now();
    let (optimised, instances) = assemble(
        graph,
        &segments,
        &template_of,
        &programs,
        options.fold_limit,
    )?;
    report.add_time("rebuild", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let (optimised, instances) = compact(optimised, instances);
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
    if let Err(e) = verify_replayed(&optimised, &replayed) {
        return Err(match verify(graph) {
            Err(input) => OptimizeError::Input(Box::new(input)),
            Ok(()) => OptimizeError::Output(Box::new(e)),
        });
    }
    report.add_time("verify", start.elapsed().as_secs_f64());
    let start = Instant::now();
    report.ops_after = report::op_counts(&optimised);
    report.cost_before = graph_cost(graph, cost);
    report.cost_after = graph_cost(&optimised, cost);
    report.add_time("report", start.elapsed().as_secs_f64());
    Ok((optimised, report))
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
    forms: &[Option<index_form::IndexForm>],
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

/// Fresh value names `{prefix}{n}` that no value of the input graph has.
struct FreshNames {
    prefix: &'static str,
    taken: HashSet<String>,
    next: u64,
}

impl FreshNames {
    fn new(graph: &Graph, prefix: &'static str) -> FreshNames {
        let taken = graph
            .values
            .iter()
            .filter(|v| v.name.starts_with(prefix))
            .map(|v| v.name.clone())
            .collect();
        FreshNames {
            prefix,
            taken,
            next: 0,
        }
    }

    fn next(&mut self) -> String {
        loop {
            let name = format!("{}{}", self.prefix, self.next);
            self.next += 1;
            if !self.taken.contains(&name) {
                return name;
            }
        }
    }
}

/// Builds the optimised graph: the input graph's inputs and weights, then every segment's
/// program instantiated with that segment's parameters. A result equal to a value of the segment
/// takes over that value (id, name, type); other results get fresh values. A node computing the
/// same op on the same values as an earlier one is not repeated (common subexpressions across
/// segments, such as per-layer copies of a rotary table). Values left without a definition are
/// dropped by [`compact`]. Also returns, for each node, the template and program node it
/// instantiates.
fn assemble(
    graph: &Graph,
    segments: &[Segment],
    template_of: &[usize],
    programs: &[Program],
    fold_limit: usize,
) -> Result<(Graph, Vec<(usize, usize)>), OptimizeError> {
    let mut out = Graph {
        name: graph.name.clone(),
        values: graph.values.clone(),
        nodes: Vec::with_capacity(graph.nodes.len()),
        inputs: graph.inputs.clone(),
        initializers: graph.initializers.clone(),
        outputs: Vec::with_capacity(graph.outputs.len()),
    };
    let mut map: Vec<Option<ValueId>> = vec![None; graph.values.len()];
    for &v in &graph.inputs {
        map[v.index()] = Some(v);
    }
    for init in &graph.initializers {
        map[init.value.index()] = Some(init.value);
    }
    let mut constants: BTreeMap<ConstTensor, ValueId> =
        template::small_constants(graph, fold_limit)
            .into_iter()
            .map(|(v, c)| (c, v))
            .collect();
    let mut fresh_values = FreshNames::new(graph, "%opt");
    let mut fresh_constants = FreshNames::new(graph, "%const");
    let mut computed: HashMap<(cubevec_ir::Op, Vec<Option<ValueId>>), Vec<ValueId>> =
        HashMap::new();
    let mut instances = Vec::with_capacity(graph.nodes.len());
    for (s, seg) in segments.iter().enumerate() {
        let program = &programs[template_of[s]];
        let params: Vec<Option<ValueId>> = seg.params.iter().map(|v| map[v.index()]).collect();
        let mut results: Vec<Vec<ValueId>> = Vec::with_capacity(program.nodes.len());
        let mut operand =
            |operand: &Operand, results: &[Vec<ValueId>], out: &mut Graph| match operand {
                Operand::Absent => None,
                Operand::Param(i) => params.get(*i as usize).copied().flatten(),
                Operand::Node { node, output } => results
                    .get(*node)
                    .and_then(|r| r.get(*output as usize))
                    .copied(),
                Operand::Const(c) => Some(*constants.entry(c.clone()).or_insert_with(|| {
                    out.add_initializer(
                        fresh_constants.next(),
                        c.ty(),
                        WeightData::Inline(c.bytes.clone()),
                    )
                })),
            };
        for (k, pn) in program.nodes.iter().enumerate() {
            let name = match pn.origin.and_then(|p| seg.nodes.get(p)) {
                Some(&n) => graph.node(n).name.clone(),
                None => format!("optimized.{}", pn.op.name()),
            };
            let inputs: Vec<Option<ValueId>> = pn
                .inputs
                .iter()
                .map(|o| operand(o, &results, &mut out))
                .collect();
            // The same op on the same values is computed once (across segments too).
            let key = (pn.op.clone(), inputs);
            if let Some(existing) = computed.get(&key) {
                results.push(existing.clone());
                continue;
            }
            let outputs: Vec<ValueId> = pn
                .types
                .iter()
                .zip(&pn.takes_over)
                .map(|(ty, takes)| {
                    match takes.and_then(|(p, o)| {
                        seg.nodes.get(p).and_then(|&n| graph.node(n).outputs.get(o))
                    }) {
                        Some(&v) => v,
                        None => out.add_value(fresh_values.next(), ty.clone()),
                    }
                })
                .collect();
            out.add_node(Node {
                name,
                op: key.0.clone(),
                inputs: key.1.clone(),
                outputs: outputs.clone(),
            });
            computed.insert(key, outputs.clone());
            instances.push((template_of[s], k));
            results.push(outputs);
        }
        for (k, o) in program.outputs.iter().enumerate() {
            let value = operand(o, &results, &mut out);
            if let Some(&v) = seg.outputs.get(k) {
                map[v.index()] = value;
            }
        }
    }
    for &v in &graph.outputs {
        let value =
            map[v.index()].ok_or_else(|| OptimizeError::LostOutput(graph.value(v).name.clone()))?;
        out.outputs.push(value);
    }
    Ok((out, instances))
}

/// Drops nodes whose results nothing needs (values exported for another segment's context and
/// not used in the end), then initializers and values nothing refers to, and renumbers the
/// values. Nodes are in topological order, so one backward sweep finds what is live. `tags` (one
/// per node) are kept for the nodes kept.
fn compact<T>(mut graph: Graph, mut tags: Vec<T>) -> (Graph, Vec<T>) {
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
    let mut index = 0;
    graph.nodes.retain(|_| {
        index += 1;
        keep[index - 1]
    });
    let mut index = 0;
    tags.retain(|_| {
        index += 1;
        keep[index - 1]
    });
    for &v in &graph.inputs {
        used[v.index()] = true;
    }
    for node in &graph.nodes {
        for &v in &node.outputs {
            used[v.index()] = true;
        }
    }
    let mut new_id = vec![ValueId(u32::MAX); graph.values.len()];
    let mut values = Vec::new();
    for (i, value) in graph.values.into_iter().enumerate() {
        if used[i] {
            new_id[i] = ValueId(values.len() as u32);
            values.push(value);
        }
    }
    let remap = |v: ValueId| new_id[v.index()];
    let graph = Graph {
        name: graph.name,
        values,
        nodes: graph
            .nodes
            .into_iter()
            .map(|n| Node {
                name: n.name,
                op: n.op,
                inputs: n.inputs.into_iter().map(|v| v.map(remap)).collect(),
                outputs: n.outputs.into_iter().map(remap).collect(),
            })
            .collect(),
        inputs: graph.inputs.into_iter().map(remap).collect(),
        initializers: graph
            .initializers
            .into_iter()
            .filter(|i| used[i.value.index()])
            .map(|i| Initializer {
                value: remap(i.value),
                data: i.data,
            })
            .collect(),
        outputs: graph.outputs.into_iter().map(remap).collect(),
    };
    (graph, tags)
}
