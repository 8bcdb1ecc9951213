//! DAG-aware greedy extraction.
//!
//! Each e-class gets the node whose *set* of reachable costed classes is cheapest, where a set
//! counts every class once however many times it is reached (so a shared subgraph, such as one
//! wide matmul feeding several splits, is paid once). Classes are revisited whenever a child
//! becomes cheaper, until nothing improves. A node reaching its own class is never chosen, so
//! the selection is acyclic for each class on its own; the conversion back to a graph checks the
//! combination again. This is the greedy DAG heuristic, not an exact (ILP) extraction.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;

use cubevec_ir::graph::TensorType;
use egg::Id;

use super::analysis::TensorEGraph;
use super::cost::CostModel;
use super::language::{TensorNode, TensorOp};

/// The node chosen for each e-class reachable from the roots.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Canonical class id → index of the chosen node in the class.
    pub choice: HashMap<Id, usize>,
    /// The DAG cost of everything the roots need, in seconds.
    pub cost: f64,
}

impl Selection {
    /// The chosen node of a class.
    pub fn node<'a>(&self, egraph: &'a TensorEGraph, id: Id) -> Option<&'a TensorNode> {
        let id = egraph.find(id);
        self.choice.get(&id).and_then(|&n| egraph[id].nodes.get(n))
    }
}

/// A cost every operation node adds, so that among equally fast programs the one with fewer
/// nodes wins (free layout ops and weight-only nodes otherwise tie with their absence).
pub const NODE_COST: f64 = 1e-12;

/// The cost of one e-node: zero for leaves and projections, [`NODE_COST`] for ops computed from
/// weights alone, the cost model's estimate otherwise.
pub fn node_cost(egraph: &TensorEGraph, class: Id, node: &TensorNode, cost: &dyn CostModel) -> f64 {
    let data = &egraph[class].data;
    match &node.op {
        TensorOp::Op(_) if data.weight_only => NODE_COST,
        TensorOp::Op(op) => {
            let inputs: Vec<Option<&TensorType>> = node
                .children
                .iter()
                .map(|&c| egraph[c].data.tensor())
                .collect();
            let outputs: Vec<&TensorType> = data.types.iter().collect();
            NODE_COST + cost.op_cost(op, &inputs, &outputs)
        }
        _ => 0.0,
    }
}

#[derive(Clone)]
struct Best {
    total: f64,
    set: Rc<BTreeMap<usize, f64>>,
    node: usize,
}

/// Chooses a node for every class reachable from `roots`; `None` when some root has no
/// acyclic choice.
pub fn extract(egraph: &TensorEGraph, roots: &[Id], cost: &dyn CostModel) -> Option<Selection> {
    let mut ids: Vec<Id> = egraph.classes().map(|c| c.id).collect();
    ids.sort();
    let index: HashMap<Id, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let n = ids.len();
    let mut leaf_only = vec![true; n];
    let mut costs: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut parents: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    for (ci, &id) in ids.iter().enumerate() {
        for (ni, node) in egraph[id].nodes.iter().enumerate() {
            costs[ci].push(node_cost(egraph, id, node, cost));
            if !node.children.is_empty() {
                leaf_only[ci] = false;
            }
            for &child in &node.children {
                if let Some(&k) = index.get(&egraph.find(child)) {
                    parents[k].push((ci, ni));
                }
            }
        }
    }
    let mut best: Vec<Option<Best>> = vec![None; n];
    let mut queue: VecDeque<(usize, usize)> = VecDeque::new();
    let mut queued: std::collections::HashSet<(usize, usize)> = std::collections::HashSet::new();
    for (ci, &id) in ids.iter().enumerate() {
        for ni in 0..egraph[id].nodes.len() {
            queue.push_back((ci, ni));
            queued.insert((ci, ni));
        }
    }
    while let Some((ci, ni)) = queue.pop_front() {
        queued.remove(&(ci, ni));
        let node = &egraph[ids[ci]].nodes[ni];
        let mut child_bests = Vec::with_capacity(node.children.len());
        let mut ready = true;
        for &child in &node.children {
            match index
                .get(&egraph.find(child))
                .and_then(|&k| best[k].as_ref())
            {
                Some(b) => child_bests.push(b),
                None => {
                    ready = false;
                    break;
                }
            }
        }
        if !ready || child_bests.iter().any(|b| b.set.contains_key(&ci)) {
            continue;
        }
        let set = match child_bests.iter().max_by_key(|b| b.set.len()) {
            None => Rc::new(BTreeMap::new()),
            Some(largest) => {
                let mut merged = (*largest.set).clone();
                for b in &child_bests {
                    if !Rc::ptr_eq(&b.set, &largest.set) {
                        merged.extend(b.set.iter().map(|(&k, &v)| (k, v)));
                    }
                }
                Rc::new(merged)
            }
        };
        let set = if leaf_only[ci] {
            set
        } else {
            let mut s = (*set).clone();
            s.insert(ci, costs[ci][ni]);
            Rc::new(s)
        };
        let total: f64 = set.values().sum();
        let improves = match &best[ci] {
            None => true,
            Some(b) => total < b.total - NODE_COST / 2.0,
        };
        if improves {
            best[ci] = Some(Best {
                total,
                set,
                node: ni,
            });
            for &p in &parents[ci] {
                if queued.insert(p) {
                    queue.push_back(p);
                }
            }
        }
    }
    let mut total_set: BTreeMap<usize, f64> = BTreeMap::new();
    for &root in roots {
        let b = best[*index.get(&egraph.find(root))?].as_ref()?;
        total_set.extend(b.set.iter().map(|(&k, &v)| (k, v)));
    }
    let choice = ids
        .iter()
        .enumerate()
        .filter_map(|(ci, &id)| best[ci].as_ref().map(|b| (id, b.node)))
        .collect();
    Some(Selection {
        choice,
        cost: total_set.values().sum(),
    })
}
