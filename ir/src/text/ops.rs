//! How each op's attributes are written: the names the printer emits and the parser accepts, the
//! printed form of every attribute value, and the construction of an [`Op`] from parsed
//! attributes.

use crate::dtype::DType;
use crate::op::{BinaryOp, ExpertActivation, Op, ReduceOp, RoutingMode, ScatterReduction, UnaryOp};
use crate::shape::Dim;

use super::error::ParseErrorKind;
use super::syntax::{AttrItem, AttrSet, Located, Syn, SynKind};

/// The attribute names of every op other than the unary, binary and reduce families, in the
/// order they are printed.
const OP_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("clip", &[]),
    ("where", &[]),
    ("cast", &["to"]),
    ("matmul", &[]),
    ("gemm", &["alpha", "beta", "trans_a", "trans_b"]),
    ("softmax", &["axis"]),
    ("log_softmax", &["axis"]),
    ("rms_norm", &["axis", "epsilon"]),
    ("layer_norm", &["axis", "epsilon"]),
    ("topk", &["k", "axis", "largest", "sorted"]),
    ("gather", &["axis"]),
    ("gather_elements", &["axis"]),
    ("gather_nd", &["batch_dims"]),
    ("scatter_elements", &["axis", "reduction"]),
    ("scatter_nd", &["reduction"]),
    ("reshape", &["shape"]),
    ("transpose", &["perm"]),
    ("concat", &["axis"]),
    ("split", &["axis", "sizes"]),
    ("slice", &["axes", "starts", "ends", "steps"]),
    ("squeeze", &["axes"]),
    ("unsqueeze", &["axes"]),
    ("expand", &["shape"]),
    ("range", &["len"]),
    ("cumsum", &["axis", "exclusive", "reverse"]),
    ("argmax", &["axis", "keep_dims", "select_last_index"]),
    ("trilu", &["upper", "k"]),
    ("einsum", &["equation"]),
    ("dequantize", &["block", "to"]),
    ("swiglu", &["split", "limit"]),
    ("rope", &["interleaved"]),
    ("attention", &["scale", "causal"]),
    ("grouped_matmul", &[]),
    ("moe", &["top_k", "routing", "activation"]),
];

/// Attribute names of the reductions.
const REDUCE_ATTRIBUTES: &[&str] = &["axes", "keep_dims"];

/// Scatter reductions and their spelling.
const SCATTER_REDUCTIONS: [(ScatterReduction, &str); 5] = [
    (ScatterReduction::None, "none"),
    (ScatterReduction::Add, "add"),
    (ScatterReduction::Mul, "mul"),
    (ScatterReduction::Max, "max"),
    (ScatterReduction::Min, "min"),
];

/// An attribute value as the printer writes it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AttrValue {
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// `true` / `false`.
    Bool(bool),
    /// An `f32` given by its bits.
    Float(u32),
    /// A dtype name.
    DType(DType),
    /// `[1, -1]`.
    Ints(Vec<i64>),
    /// `[0, 2, 1]`.
    UInts(Vec<u64>),
    /// A dimension expression.
    Dim(Dim),
    /// `[seq, 64]`.
    Dims(Vec<Dim>),
    /// A quoted string.
    Str(String),
    /// A bare enum value (`add`, `swiglu`).
    Word(&'static str),
    /// An enum value with named parameters (`softmax_topk(normalize = true)`).
    Call(&'static str, Vec<(&'static str, AttrValue)>),
}

/// The attributes of `op` in printing order; `None` optional attributes are left out.
pub(crate) fn attributes(op: &Op) -> Vec<(&'static str, AttrValue)> {
    use AttrValue as A;
    match op {
        Op::Unary(_) | Op::Binary(_) | Op::Clip | Op::Where | Op::MatMul | Op::GroupedMatMul => {
            vec![]
        }
        Op::Cast { to } => vec![("to", A::DType(*to))],
        Op::Gemm {
            alpha_bits,
            beta_bits,
            trans_a,
            trans_b,
        } => vec![
            ("alpha", A::Float(*alpha_bits)),
            ("beta", A::Float(*beta_bits)),
            ("trans_a", A::Bool(*trans_a)),
            ("trans_b", A::Bool(*trans_b)),
        ],
        Op::Softmax { axis }
        | Op::LogSoftmax { axis }
        | Op::Gather { axis }
        | Op::GatherElements { axis }
        | Op::Concat { axis } => vec![("axis", A::Int(*axis))],
        Op::Reduce {
            axes, keep_dims, ..
        } => vec![
            ("axes", A::Ints(axes.clone())),
            ("keep_dims", A::Bool(*keep_dims)),
        ],
        Op::RmsNorm { axis, epsilon_bits } | Op::LayerNorm { axis, epsilon_bits } => vec![
            ("axis", A::Int(*axis)),
            ("epsilon", A::Float(*epsilon_bits)),
        ],
        Op::TopK {
            k,
            axis,
            largest,
            sorted,
        } => vec![
            ("k", A::UInt(*k)),
            ("axis", A::Int(*axis)),
            ("largest", A::Bool(*largest)),
            ("sorted", A::Bool(*sorted)),
        ],
        Op::GatherNd { batch_dims } => vec![("batch_dims", A::UInt(*batch_dims))],
        Op::ScatterElements { axis, reduction } => vec![
            ("axis", A::Int(*axis)),
            ("reduction", A::Word(scatter_reduction_name(*reduction))),
        ],
        Op::ScatterNd { reduction } => {
            vec![("reduction", A::Word(scatter_reduction_name(*reduction)))]
        }
        Op::Reshape { shape } | Op::Expand { shape } => vec![("shape", A::Dims(shape.clone()))],
        Op::Transpose { perm } => vec![("perm", A::UInts(perm.clone()))],
        Op::Split { axis, sizes } => {
            vec![("axis", A::Int(*axis)), ("sizes", A::Dims(sizes.clone()))]
        }
        Op::Slice {
            axes,
            starts,
            ends,
            steps,
        } => vec![
            ("axes", A::Ints(axes.clone())),
            ("starts", A::Ints(starts.clone())),
            ("ends", A::Ints(ends.clone())),
            ("steps", A::Ints(steps.clone())),
        ],
        Op::Squeeze { axes } | Op::Unsqueeze { axes } => vec![("axes", A::Ints(axes.clone()))],
        Op::Range { len } => vec![("len", A::Dim(len.clone()))],
        Op::CumSum {
            axis,
            exclusive,
            reverse,
        } => vec![
            ("axis", A::Int(*axis)),
            ("exclusive", A::Bool(*exclusive)),
            ("reverse", A::Bool(*reverse)),
        ],
        Op::ArgMax {
            axis,
            keep_dims,
            select_last_index,
        } => vec![
            ("axis", A::Int(*axis)),
            ("keep_dims", A::Bool(*keep_dims)),
            ("select_last_index", A::Bool(*select_last_index)),
        ],
        Op::Trilu { upper, k } => vec![("upper", A::Bool(*upper)), ("k", A::Int(*k))],
        Op::Einsum { equation } => vec![("equation", A::Str(equation.clone()))],
        Op::Dequantize { block, to } => {
            vec![("block", A::UInts(block.clone())), ("to", A::DType(*to))]
        }
        Op::SwiGlu { split, limit_bits } => {
            let mut attrs = vec![("split", A::Bool(*split))];
            if let Some(bits) = limit_bits {
                attrs.push(("limit", A::Float(*bits)));
            }
            attrs
        }
        Op::Rope { interleaved } => vec![("interleaved", A::Bool(*interleaved))],
        Op::Attention { scale_bits, causal } => vec![
            ("scale", A::Float(*scale_bits)),
            ("causal", A::Bool(*causal)),
        ],
        Op::Moe {
            top_k,
            routing,
            activation,
        } => vec![
            ("top_k", A::UInt(u64::from(*top_k))),
            ("routing", routing_value(routing)),
            ("activation", activation_value(activation)),
        ],
    }
}

fn scatter_reduction_name(reduction: ScatterReduction) -> &'static str {
    SCATTER_REDUCTIONS
        .iter()
        .find(|(r, _)| *r == reduction)
        .map_or("none", |(_, name)| name)
}

fn routing_value(routing: &RoutingMode) -> AttrValue {
    use AttrValue as A;
    match routing {
        RoutingMode::SoftmaxTopK { normalize } => {
            A::Call("softmax_topk", vec![("normalize", A::Bool(*normalize))])
        }
        RoutingMode::TopKSoftmax => A::Word("topk_softmax"),
        RoutingMode::SigmoidGroupLimited {
            n_group,
            topk_group,
            normalize,
            scaling_bits,
        } => A::Call(
            "sigmoid_group_limited",
            vec![
                ("n_group", A::UInt(u64::from(*n_group))),
                ("topk_group", A::UInt(u64::from(*topk_group))),
                ("normalize", A::Bool(*normalize)),
                ("scaling", A::Float(*scaling_bits)),
            ],
        ),
        RoutingMode::SqrtSoftplus {
            normalize,
            scaling_bits,
        } => A::Call(
            "sqrt_softplus",
            vec![
                ("normalize", A::Bool(*normalize)),
                ("scaling", A::Float(*scaling_bits)),
            ],
        ),
        RoutingMode::Hash {
            normalize,
            scaling_bits,
        } => A::Call(
            "hash",
            vec![
                ("normalize", A::Bool(*normalize)),
                ("scaling", A::Float(*scaling_bits)),
            ],
        ),
    }
}

fn activation_value(activation: &ExpertActivation) -> AttrValue {
    use AttrValue as A;
    match activation {
        ExpertActivation::SwiGlu => A::Word("swiglu"),
        ExpertActivation::SwiGluClamped { limit_bits } => {
            A::Call("swiglu_clamped", vec![("limit", A::Float(*limit_bits))])
        }
        ExpertActivation::Silu => A::Word("silu"),
        ExpertActivation::Gelu => A::Word("gelu"),
        ExpertActivation::Relu => A::Word("relu"),
    }
}

/// The attribute names the op called `name` takes, or `None` if no op has that name.
fn attribute_names(name: &str) -> Option<&'static [&'static str]> {
    if UnaryOp::ALL.iter().any(|u| Op::Unary(*u).name() == name)
        || BinaryOp::ALL.iter().any(|b| Op::Binary(*b).name() == name)
    {
        return Some(&[]);
    }
    if reduce_by_name(name).is_some() {
        return Some(REDUCE_ATTRIBUTES);
    }
    OP_ATTRIBUTES
        .iter()
        .find(|(op, _)| *op == name)
        .map(|(_, attrs)| *attrs)
}

fn reduce_by_name(name: &str) -> Option<ReduceOp> {
    ReduceOp::ALL.into_iter().find(|r| {
        Op::Reduce {
            op: *r,
            axes: Vec::new(),
            keep_dims: false,
        }
        .name()
            == name
    })
}

/// Builds the op called `name` (written at `offset`) from its attribute list.
pub(crate) fn build_op(name: &str, offset: usize, items: Vec<AttrItem>) -> Result<Op, Located> {
    let known = attribute_names(name)
        .ok_or_else(|| Located::new(offset, ParseErrorKind::UnknownOp(name.to_string())))?;
    let mut a = AttrSet::new(name, offset, items, known)?;
    if let Some(u) = UnaryOp::ALL
        .into_iter()
        .find(|u| Op::Unary(*u).name() == name)
    {
        return Ok(Op::Unary(u));
    }
    if let Some(b) = BinaryOp::ALL
        .into_iter()
        .find(|b| Op::Binary(*b).name() == name)
    {
        return Ok(Op::Binary(b));
    }
    if let Some(op) = reduce_by_name(name) {
        return Ok(Op::Reduce {
            op,
            axes: a.i64_list("axes")?,
            keep_dims: a.bool("keep_dims")?,
        });
    }
    Ok(match name {
        "clip" => Op::Clip,
        "where" => Op::Where,
        "cast" => Op::Cast { to: a.dtype("to")? },
        "matmul" => Op::MatMul,
        "gemm" => Op::Gemm {
            alpha_bits: a.f32_bits("alpha")?,
            beta_bits: a.f32_bits("beta")?,
            trans_a: a.bool("trans_a")?,
            trans_b: a.bool("trans_b")?,
        },
        "softmax" => Op::Softmax {
            axis: a.i64("axis")?,
        },
        "log_softmax" => Op::LogSoftmax {
            axis: a.i64("axis")?,
        },
        "rms_norm" => Op::RmsNorm {
            axis: a.i64("axis")?,
            epsilon_bits: a.f32_bits("epsilon")?,
        },
        "layer_norm" => Op::LayerNorm {
            axis: a.i64("axis")?,
            epsilon_bits: a.f32_bits("epsilon")?,
        },
        "topk" => Op::TopK {
            k: a.u64("k")?,
            axis: a.i64("axis")?,
            largest: a.bool("largest")?,
            sorted: a.bool("sorted")?,
        },
        "gather" => Op::Gather {
            axis: a.i64("axis")?,
        },
        "gather_elements" => Op::GatherElements {
            axis: a.i64("axis")?,
        },
        "gather_nd" => Op::GatherNd {
            batch_dims: a.u64("batch_dims")?,
        },
        "scatter_elements" => Op::ScatterElements {
            axis: a.i64("axis")?,
            reduction: scatter_reduction(&a.take("reduction")?)?,
        },
        "scatter_nd" => Op::ScatterNd {
            reduction: scatter_reduction(&a.take("reduction")?)?,
        },
        "reshape" => Op::Reshape {
            shape: a.dim_list("shape")?,
        },
        "transpose" => Op::Transpose {
            perm: a.u64_list("perm")?,
        },
        "concat" => Op::Concat {
            axis: a.i64("axis")?,
        },
        "split" => Op::Split {
            axis: a.i64("axis")?,
            sizes: a.dim_list("sizes")?,
        },
        "slice" => Op::Slice {
            axes: a.i64_list("axes")?,
            starts: a.i64_list("starts")?,
            ends: a.i64_list("ends")?,
            steps: a.i64_list("steps")?,
        },
        "squeeze" => Op::Squeeze {
            axes: a.i64_list("axes")?,
        },
        "unsqueeze" => Op::Unsqueeze {
            axes: a.i64_list("axes")?,
        },
        "expand" => Op::Expand {
            shape: a.dim_list("shape")?,
        },
        "range" => Op::Range { len: a.dim("len")? },
        "cumsum" => Op::CumSum {
            axis: a.i64("axis")?,
            exclusive: a.bool("exclusive")?,
            reverse: a.bool("reverse")?,
        },
        "argmax" => Op::ArgMax {
            axis: a.i64("axis")?,
            keep_dims: a.bool("keep_dims")?,
            select_last_index: a.bool("select_last_index")?,
        },
        "trilu" => Op::Trilu {
            upper: a.bool("upper")?,
            k: a.i64("k")?,
        },
        "einsum" => Op::Einsum {
            equation: a.string("equation")?,
        },
        "dequantize" => Op::Dequantize {
            block: a.u64_list("block")?,
            to: a.dtype("to")?,
        },
        "swiglu" => Op::SwiGlu {
            split: a.bool("split")?,
            limit_bits: a.opt_f32_bits("limit")?,
        },
        "rope" => Op::Rope {
            interleaved: a.bool("interleaved")?,
        },
        "attention" => Op::Attention {
            scale_bits: a.f32_bits("scale")?,
            causal: a.bool("causal")?,
        },
        "grouped_matmul" => Op::GroupedMatMul,
        "moe" => Op::Moe {
            top_k: a.u32("top_k")?,
            routing: routing(&a.take("routing")?)?,
            activation: activation(&a.take("activation")?)?,
        },
        _ => {
            return Err(Located::new(
                offset,
                ParseErrorKind::UnknownOp(name.to_string()),
            ));
        }
    })
}

fn scatter_reduction(syn: &Syn) -> Result<ScatterReduction, Located> {
    const EXPECTED: &str = "one of `none`, `add`, `mul`, `max`, `min`";
    let word = syn.to_word("reduction", EXPECTED)?;
    SCATTER_REDUCTIONS
        .iter()
        .find(|(_, name)| *name == word)
        .map(|(r, _)| *r)
        .ok_or_else(|| bad_value(syn, "reduction", EXPECTED))
}

fn bad_value(syn: &Syn, attribute: &str, expected: &str) -> Located {
    Located::new(
        syn.offset,
        ParseErrorKind::BadAttributeValue {
            attribute: attribute.to_string(),
            expected: expected.to_string(),
        },
    )
}

/// A routing mode or activation: its name and named parameters (none for a bare word).
fn enum_parts<'s>(
    syn: &'s Syn,
    attribute: &str,
    expected: &str,
) -> Result<(&'s str, &'s [super::syntax::Arg]), Located> {
    match &syn.kind {
        SynKind::Word {
            negative: false,
            word,
        } => Ok((word, &[])),
        SynKind::Call { name, args } => Ok((name, args)),
        _ => Err(bad_value(syn, attribute, expected)),
    }
}

fn routing(syn: &Syn) -> Result<RoutingMode, Located> {
    const EXPECTED: &str = "`softmax_topk(..)`, `topk_softmax`, `sigmoid_group_limited(..)`, \
                            `sqrt_softplus(..)` or `hash(..)`";
    let (name, args) = enum_parts(syn, "routing", EXPECTED)?;
    let known: &[&str] = match name {
        "softmax_topk" => &["normalize"],
        "topk_softmax" => &[],
        "sigmoid_group_limited" => &["n_group", "topk_group", "normalize", "scaling"],
        "sqrt_softplus" | "hash" => &["normalize", "scaling"],
        _ => return Err(bad_value(syn, "routing", EXPECTED)),
    };
    let mut a = AttrSet::from_call("routing", syn, name, args, known)?;
    Ok(match name {
        "softmax_topk" => RoutingMode::SoftmaxTopK {
            normalize: a.bool("normalize")?,
        },
        "topk_softmax" => RoutingMode::TopKSoftmax,
        "sigmoid_group_limited" => RoutingMode::SigmoidGroupLimited {
            n_group: a.u32("n_group")?,
            topk_group: a.u32("topk_group")?,
            normalize: a.bool("normalize")?,
            scaling_bits: a.f32_bits("scaling")?,
        },
        "sqrt_softplus" => RoutingMode::SqrtSoftplus {
            normalize: a.bool("normalize")?,
            scaling_bits: a.f32_bits("scaling")?,
        },
        _ => RoutingMode::Hash {
            normalize: a.bool("normalize")?,
            scaling_bits: a.f32_bits("scaling")?,
        },
    })
}

fn activation(syn: &Syn) -> Result<ExpertActivation, Located> {
    const EXPECTED: &str = "`swiglu`, `swiglu_clamped(limit = ..)`, `silu`, `gelu` or `relu`";
    let (name, args) = enum_parts(syn, "activation", EXPECTED)?;
    let known: &[&str] = match name {
        "swiglu_clamped" => &["limit"],
        "swiglu" | "silu" | "gelu" | "relu" => &[],
        _ => return Err(bad_value(syn, "activation", EXPECTED)),
    };
    let mut a = AttrSet::from_call("activation", syn, name, args, known)?;
    Ok(match name {
        "swiglu_clamped" => ExpertActivation::SwiGluClamped {
            limit_bits: a.f32_bits("limit")?,
        },
        "swiglu" => ExpertActivation::SwiGlu,
        "silu" => ExpertActivation::Silu,
        "gelu" => ExpertActivation::Gelu,
        _ => ExpertActivation::Relu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_names_are_unique() {
        let mut names: Vec<&str> = UnaryOp::ALL
            .iter()
            .map(|u| Op::Unary(*u).name())
            .chain(BinaryOp::ALL.iter().map(|b| Op::Binary(*b).name()))
            .chain(ReduceOp::ALL.iter().map(|r| {
                Op::Reduce {
                    op: *r,
                    axes: vec![],
                    keep_dims: false,
                }
                .name()
            }))
            .chain(OP_ATTRIBUTES.iter().map(|(n, _)| *n))
            .collect();
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), total);
        assert_eq!(total, 24 + 17 + 5 + OP_ATTRIBUTES.len());
    }

    #[test]
    fn printed_attributes_are_the_known_ones() {
        let ops = [
            Op::Gemm {
                alpha_bits: 0,
                beta_bits: 0,
                trans_a: false,
                trans_b: true,
            },
            Op::SwiGlu {
                split: true,
                limit_bits: Some(0),
            },
            Op::Reduce {
                op: ReduceOp::Prod,
                axes: vec![],
                keep_dims: true,
            },
            Op::Slice {
                axes: vec![],
                starts: vec![],
                ends: vec![],
                steps: vec![],
            },
        ];
        for op in ops {
            let printed: Vec<&str> = attributes(&op).iter().map(|(n, _)| *n).collect();
            assert_eq!(Some(printed.as_slice()), attribute_names(op.name()));
        }
    }
}
