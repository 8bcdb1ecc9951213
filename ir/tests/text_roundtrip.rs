//! Round trips of the textual IR: print → parse gives the identical graph and print → parse →
//! print the identical text, for a graph using every op, attribute variant, dtype, dim form and
//! weight kind; a hand-written text parsed field by field; random dimension trees; and random
//! or mutated text, which must never make the parser panic.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use cubevec_ir::DType;
use cubevec_ir::graph::{FileSlice, Graph, Node, TensorType, ValueId, WeightData};
use cubevec_ir::op::{
    BinaryOp, ExpertActivation, Op, ReduceOp, RoutingMode, ScatterReduction, UnaryOp,
};
use cubevec_ir::shape::{Dim, Shape};
use cubevec_ir::text::{self, PrintOptions};
use proptest::prelude::*;

/// Builds a graph through the public `Graph` API.
struct Builder {
    g: Graph,
}

impl Builder {
    fn value(&mut self, name: &str, dtype: DType, dims: Vec<Dim>) -> ValueId {
        self.g.add_value(name, TensorType::new(dtype, Shape(dims)))
    }

    /// Adds a node with fresh results of the given names and types.
    fn node(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<Option<ValueId>>,
        results: Vec<(&str, DType, Vec<Dim>)>,
    ) -> Vec<ValueId> {
        let outputs: Vec<ValueId> = results
            .into_iter()
            .map(|(n, d, dims)| self.value(n, d, dims))
            .collect();
        self.g.add_node(Node {
            name: name.to_string(),
            op,
            inputs,
            outputs: outputs.clone(),
        });
        outputs
    }

    /// A one-result node with an `f32[t, 8]` result.
    fn simple(&mut self, result: &str, op: Op, inputs: Vec<Option<ValueId>>) -> ValueId {
        self.node("", op, inputs, vec![(result, DType::F32, td())])[0]
    }
}

fn k(n: u64) -> Dim {
    Dim::Known(n)
}

fn s(name: &str) -> Dim {
    Dim::sym(name)
}

fn bx(d: Dim) -> Box<Dim> {
    Box::new(d)
}

/// `[t, 8]`.
fn td() -> Vec<Dim> {
    vec![s("t"), k(8)]
}

fn bits(v: f32) -> u32 {
    v.to_bits()
}

/// Tags naming every variant (and attribute enum variant) an op exercises. The matches are
/// exhaustive, so a new variant fails to compile here until the coverage graph includes it.
fn variant_tags(op: &Op) -> Vec<String> {
    let mut tags = vec![match op {
        Op::Unary(u) => format!(
            "unary:{}",
            match u {
                UnaryOp::Neg
                | UnaryOp::Abs
                | UnaryOp::Exp
                | UnaryOp::Log
                | UnaryOp::Sqrt
                | UnaryOp::Rsqrt
                | UnaryOp::Reciprocal
                | UnaryOp::Sin
                | UnaryOp::Cos
                | UnaryOp::Tanh
                | UnaryOp::Erf
                | UnaryOp::Sigmoid
                | UnaryOp::Relu
                | UnaryOp::Silu
                | UnaryOp::Gelu
                | UnaryOp::GeluTanh
                | UnaryOp::Softplus
                | UnaryOp::Floor
                | UnaryOp::Ceil
                | UnaryOp::Round
                | UnaryOp::Sign
                | UnaryOp::Not
                | UnaryOp::IsNaN
                | UnaryOp::IsInf => op.name(),
            }
        ),
        Op::Binary(b) => format!(
            "binary:{}",
            match b {
                BinaryOp::Add
                | BinaryOp::Sub
                | BinaryOp::Mul
                | BinaryOp::Div
                | BinaryOp::Pow
                | BinaryOp::Mod
                | BinaryOp::FMod
                | BinaryOp::Max
                | BinaryOp::Min
                | BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::LessOrEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterOrEqual
                | BinaryOp::And
                | BinaryOp::Or
                | BinaryOp::Xor => op.name(),
            }
        ),
        Op::Reduce { op: r, .. } => format!(
            "reduce:{}",
            match r {
                ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Max | ReduceOp::Min | ReduceOp::Prod => {
                    op.name()
                }
            }
        ),
        Op::Clip
        | Op::Where
        | Op::Cast { .. }
        | Op::MatMul
        | Op::Gemm { .. }
        | Op::Softmax { .. }
        | Op::LogSoftmax { .. }
        | Op::RmsNorm { .. }
        | Op::LayerNorm { .. }
        | Op::TopK { .. }
        | Op::Gather { .. }
        | Op::GatherElements { .. }
        | Op::GatherNd { .. }
        | Op::ScatterElements { .. }
        | Op::ScatterNd { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Concat { .. }
        | Op::Split { .. }
        | Op::Slice { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Expand { .. }
        | Op::Range { .. }
        | Op::CumSum { .. }
        | Op::ArgMax { .. }
        | Op::Trilu { .. }
        | Op::Einsum { .. }
        | Op::Dequantize { .. }
        | Op::SwiGlu { .. }
        | Op::Rope { .. }
        | Op::Attention { .. }
        | Op::GroupedMatMul
        | Op::Moe { .. } => op.name().to_string(),
    }];
    match op {
        Op::ScatterElements { reduction, .. } | Op::ScatterNd { reduction } => {
            tags.push(format!(
                "reduction:{}",
                match reduction {
                    ScatterReduction::None => "none",
                    ScatterReduction::Add => "add",
                    ScatterReduction::Mul => "mul",
                    ScatterReduction::Max => "max",
                    ScatterReduction::Min => "min",
                }
            ));
        }
        Op::Moe {
            routing,
            activation,
            ..
        } => {
            tags.push(format!(
                "routing:{}",
                match routing {
                    RoutingMode::SoftmaxTopK { .. } => "softmax_topk",
                    RoutingMode::TopKSoftmax => "topk_softmax",
                    RoutingMode::SigmoidGroupLimited { .. } => "sigmoid_group_limited",
                    RoutingMode::SqrtSoftplus { .. } => "sqrt_softplus",
                    RoutingMode::Hash { .. } => "hash",
                }
            ));
            tags.push(format!(
                "activation:{}",
                match activation {
                    ExpertActivation::SwiGlu => "swiglu",
                    ExpertActivation::SwiGluClamped { .. } => "swiglu_clamped",
                    ExpertActivation::Silu => "silu",
                    ExpertActivation::Gelu => "gelu",
                    ExpertActivation::Relu => "relu",
                }
            ));
        }
        _ => {}
    }
    tags
}

/// Tags of the variants a dimension tree uses.
fn dim_tags(d: &Dim, out: &mut BTreeSet<&'static str>) {
    let children = match d {
        Dim::Known(_) => {
            out.insert("known");
            return;
        }
        Dim::Sym(_) => {
            out.insert("sym");
            return;
        }
        Dim::Add(a, b) => ("add", a, b),
        Dim::Sub(a, b) => ("sub", a, b),
        Dim::Mul(a, b) => ("mul", a, b),
        Dim::FloorDiv(a, b) => ("floordiv", a, b),
        Dim::CeilDiv(a, b) => ("ceildiv", a, b),
        Dim::Min(a, b) => ("min", a, b),
        Dim::Max(a, b) => ("max", a, b),
    };
    out.insert(children.0);
    dim_tags(children.1, out);
    dim_tags(children.2, out);
}

/// A graph exercising every op, attribute variant, dtype, dim variant, weight kind, optional
/// operands absent and present, multi-result ops and names that need quoting.
fn coverage_graph() -> Graph {
    let mut b = Builder {
        g: Graph::new("coverage graph/v1 \"quoted\""),
    };
    let x = b.g.add_input("x", TensorType::new(DType::F32, Shape(td())));
    let y = b.g.add_input(
        "model.layers.0/attn:out",
        TensorType::new(DType::F32, Shape(td())),
    );
    let ids =
        b.g.add_input("ids", TensorType::new(DType::I64, Shape(vec![s("t")])));
    let flag = b.g.add_input("", TensorType::new(DType::Bool, Shape(td())));
    // Every dim variant, including trees the folding constructors would never build.
    let odd_dims = vec![
        Dim::Add(bx(s("seq")), bx(k(1))),
        Dim::Sub(bx(s("seq")), bx(Dim::Sub(bx(s("pad")), bx(k(1))))),
        Dim::Mul(bx(k(2)), bx(s("seq"))),
        Dim::FloorDiv(bx(Dim::Add(bx(s("seq")), bx(k(1)))), bx(k(2))),
        Dim::CeilDiv(bx(s("seq")), bx(k(128))),
        Dim::Min(bx(s("a")), bx(Dim::Max(bx(s("b")), bx(k(0))))),
        Dim::Mul(
            bx(Dim::Add(bx(k(1)), bx(k(2)))),
            bx(Dim::FloorDiv(bx(s("c")), bx(k(1)))),
        ),
        Dim::Sym("sym with space".into()),
        Dim::Sym("min".into()),
        Dim::sym(""),
        Dim::Known(u64::MAX),
    ];
    let odd = b.g.add_input(
        "odd\tname \"with\" \\ escapes\n",
        TensorType::new(DType::F16, Shape(odd_dims)),
    );
    let scalar_in =
        b.g.add_input("é✓", TensorType::new(DType::F32, Shape::scalar()));

    // Weights of every kind and every dtype.
    let mut weights = Vec::new();
    for (i, dtype) in DType::ALL.into_iter().enumerate() {
        let data = match i % 3 {
            0 => WeightData::Inline(Arc::from(vec![0x00, 0x7f, 0x80, 0xff, i as u8])),
            // Stacked from two shards, or one slice of one.
            1 => WeightData::External(
                (0..1 + i % 2)
                    .map(|part| FileSlice {
                        path: PathBuf::from(format!("shards/model-{:05}.safetensors", i + part)),
                        offset: 1024 * i as u64,
                        length: 4096,
                    })
                    .collect(),
            ),
            _ => WeightData::Absent,
        };
        weights.push(b.g.add_initializer(
            format!("w_{}", dtype.name()),
            TensorType::new(dtype, Shape(vec![k(4), k(4)])),
            data,
        ));
    }
    let empty = b.g.add_initializer(
        "empty",
        TensorType::new(DType::U8, Shape(vec![k(0)])),
        WeightData::Inline(Arc::from(Vec::<u8>::new())),
    );
    let quoted_path = b.g.add_initializer(
        "quoted path",
        TensorType::new(DType::BF16, Shape(vec![k(2)])),
        WeightData::file_slice("dir with space/we\"ird\\name.bin", 0, u64::MAX),
    );

    for (i, u) in UnaryOp::ALL.into_iter().enumerate() {
        b.simple(&format!("u{i}"), Op::Unary(u), vec![Some(x)]);
    }
    for (i, op) in BinaryOp::ALL.into_iter().enumerate() {
        b.simple(&format!("b{i}"), Op::Binary(op), vec![Some(x), Some(y)]);
    }
    for (i, op) in ReduceOp::ALL.into_iter().enumerate() {
        let axes = if i % 2 == 0 { vec![] } else { vec![0, -1] };
        b.simple(
            &format!("r{i}"),
            Op::Reduce {
                op,
                axes,
                keep_dims: i % 2 == 0,
            },
            vec![Some(x)],
        );
    }
    b.simple(
        "clip_all",
        Op::Clip,
        vec![Some(x), Some(scalar_in), Some(scalar_in)],
    );
    b.simple("clip_hi", Op::Clip, vec![Some(x), None, Some(scalar_in)]);
    b.simple("clip_x", Op::Clip, vec![Some(x)]);
    b.simple("where", Op::Where, vec![Some(flag), Some(x), Some(y)]);
    b.node(
        "cast node",
        Op::Cast {
            to: DType::F8E4M3FN,
        },
        vec![Some(x)],
        vec![("cast", DType::F8E4M3FN, td())],
    );
    b.simple("mm", Op::MatMul, vec![Some(x), Some(y)]);
    b.simple(
        "gemm_c",
        Op::Gemm {
            alpha_bits: bits(1.0),
            beta_bits: f32::NAN.to_bits(),
            trans_a: false,
            trans_b: true,
        },
        vec![Some(x), Some(y), Some(scalar_in)],
    );
    b.simple(
        "gemm",
        Op::Gemm {
            alpha_bits: 0x7fc0_0001,
            beta_bits: bits(-0.0),
            trans_a: true,
            trans_b: false,
        },
        vec![Some(x), Some(y), None],
    );
    b.simple("softmax", Op::Softmax { axis: -1 }, vec![Some(x)]);
    b.simple("log_softmax", Op::LogSoftmax { axis: 1 }, vec![Some(x)]);
    b.simple(
        "rms",
        Op::RmsNorm {
            axis: -1,
            epsilon_bits: bits(1e-6),
        },
        vec![Some(x), Some(weights[0])],
    );
    b.simple(
        "ln_bias",
        Op::LayerNorm {
            axis: -1,
            epsilon_bits: f32::from_bits(1).to_bits(),
        },
        vec![Some(x), Some(weights[0]), Some(weights[0])],
    );
    b.simple(
        "ln",
        Op::LayerNorm {
            axis: 1,
            epsilon_bits: f32::MAX.to_bits(),
        },
        vec![Some(x), Some(weights[0]), None],
    );
    b.node(
        "router topk",
        Op::TopK {
            k: 2,
            axis: -1,
            largest: true,
            sorted: false,
        },
        vec![Some(x)],
        vec![
            ("topv", DType::F32, vec![s("t"), k(2)]),
            ("topi", DType::I64, vec![s("t"), k(2)]),
        ],
    );
    b.simple(
        "gather",
        Op::Gather { axis: 0 },
        vec![Some(weights[0]), Some(ids)],
    );
    b.simple(
        "gather_el",
        Op::GatherElements { axis: -1 },
        vec![Some(x), Some(ids)],
    );
    b.simple(
        "gather_nd",
        Op::GatherNd { batch_dims: 1 },
        vec![Some(x), Some(ids)],
    );
    let reductions = [
        ScatterReduction::None,
        ScatterReduction::Add,
        ScatterReduction::Mul,
        ScatterReduction::Max,
        ScatterReduction::Min,
    ];
    for (i, reduction) in reductions.into_iter().enumerate() {
        let op = if i < 3 {
            Op::ScatterElements {
                axis: i as i64 - 1,
                reduction,
            }
        } else {
            Op::ScatterNd { reduction }
        };
        b.simple(
            &format!("scatter{i}"),
            op,
            vec![Some(x), Some(ids), Some(y)],
        );
    }
    b.simple(
        "reshape",
        Op::Reshape {
            shape: vec![Dim::Mul(bx(s("t")), bx(k(2))), k(4)],
        },
        vec![Some(x)],
    );
    b.simple(
        "transpose",
        Op::Transpose { perm: vec![1, 0] },
        vec![Some(x)],
    );
    b.simple(
        "concat",
        Op::Concat { axis: 0 },
        vec![Some(x), Some(y), Some(x)],
    );
    b.node(
        "split3",
        Op::Split {
            axis: 1,
            sizes: vec![k(2), k(2), Dim::Sub(bx(s("n")), bx(k(4)))],
        },
        vec![Some(x)],
        vec![
            ("part0", DType::F32, vec![s("t"), k(2)]),
            ("part1", DType::F32, vec![s("t"), k(2)]),
            (
                "part2",
                DType::F32,
                vec![s("t"), Dim::Sub(bx(s("n")), bx(k(4)))],
            ),
        ],
    );
    b.node(
        "split nothing",
        Op::Split {
            axis: 0,
            sizes: vec![],
        },
        vec![Some(x)],
        vec![],
    );
    b.simple(
        "slice",
        Op::Slice {
            axes: vec![0, -1],
            starts: vec![i64::MIN, 1],
            ends: vec![i64::MAX, -1],
            steps: vec![1, -2],
        },
        vec![Some(x)],
    );
    b.simple("squeeze", Op::Squeeze { axes: vec![0] }, vec![Some(x)]);
    b.simple(
        "unsqueeze",
        Op::Unsqueeze { axes: vec![-1, 0] },
        vec![Some(x)],
    );
    b.simple(
        "expand",
        Op::Expand {
            shape: vec![s("b"), Dim::CeilDiv(bx(s("t")), bx(k(64)))],
        },
        vec![Some(x)],
    );
    b.simple(
        "range",
        Op::Range {
            len: Dim::Max(bx(s("t")), bx(k(1))),
        },
        vec![Some(scalar_in), Some(scalar_in), Some(scalar_in)],
    );
    b.simple(
        "cumsum",
        Op::CumSum {
            axis: 0,
            exclusive: true,
            reverse: false,
        },
        vec![Some(x)],
    );
    b.simple(
        "argmax",
        Op::ArgMax {
            axis: -1,
            keep_dims: false,
            select_last_index: true,
        },
        vec![Some(x)],
    );
    b.simple(
        "trilu",
        Op::Trilu {
            upper: false,
            k: -3,
        },
        vec![Some(x)],
    );
    b.simple(
        "einsum",
        Op::Einsum {
            equation: "bij,bjk->bik \"odd\" \\".into(),
        },
        vec![Some(x), Some(y)],
    );
    b.simple(
        "dq",
        Op::Dequantize {
            block: vec![1, 32],
            to: DType::BF16,
        },
        vec![Some(weights[6]), Some(weights[5]), None],
    );
    b.simple(
        "dq_zp",
        Op::Dequantize {
            block: vec![],
            to: DType::F32,
        },
        vec![Some(weights[7]), Some(scalar_in), Some(weights[7])],
    );
    b.simple(
        "swiglu_split",
        Op::SwiGlu {
            split: true,
            limit_bits: None,
        },
        vec![Some(x)],
    );
    b.simple(
        "swiglu_pair",
        Op::SwiGlu {
            split: false,
            limit_bits: Some(bits(7.0)),
        },
        vec![Some(x), Some(y)],
    );
    b.simple(
        "rope",
        Op::Rope { interleaved: true },
        vec![Some(x), Some(y), Some(y)],
    );
    b.simple(
        "attn_mask",
        Op::Attention {
            scale_bits: bits(0.125),
            causal: false,
        },
        vec![Some(x), Some(y), Some(y), Some(flag)],
    );
    b.simple(
        "attn",
        Op::Attention {
            scale_bits: f32::INFINITY.to_bits(),
            causal: true,
        },
        vec![Some(x), Some(y), Some(y)],
    );
    b.simple(
        "gmm",
        Op::GroupedMatMul,
        vec![Some(x), Some(weights[0]), Some(ids)],
    );
    let routings = [
        RoutingMode::SoftmaxTopK { normalize: true },
        RoutingMode::TopKSoftmax,
        RoutingMode::SigmoidGroupLimited {
            n_group: 8,
            topk_group: 4,
            normalize: true,
            scaling_bits: bits(2.5),
        },
        RoutingMode::SqrtSoftplus {
            normalize: false,
            scaling_bits: bits(1.5),
        },
        RoutingMode::Hash {
            normalize: true,
            scaling_bits: f32::NEG_INFINITY.to_bits(),
        },
    ];
    let activations = [
        ExpertActivation::SwiGlu,
        ExpertActivation::SwiGluClamped {
            limit_bits: bits(10.0),
        },
        ExpertActivation::Silu,
        ExpertActivation::Gelu,
        ExpertActivation::Relu,
    ];
    let w = &weights;
    for (i, (routing, activation)) in routings.into_iter().zip(activations).enumerate() {
        let gate = activation.is_gated().then_some(w[2]);
        let inputs = match routing {
            RoutingMode::SigmoidGroupLimited { .. } | RoutingMode::SqrtSoftplus { .. } => {
                vec![Some(x), Some(y), gate, Some(w[2]), Some(w[2]), Some(w[3])]
            }
            RoutingMode::Hash { .. } => vec![
                Some(x),
                Some(y),
                gate,
                Some(w[2]),
                Some(w[2]),
                None,
                Some(ids),
                Some(w[10]),
            ],
            _ => vec![Some(x), Some(y), gate, Some(w[2]), Some(w[2])],
        };
        b.node(
            &format!("model.layers.{i}.mlp"),
            Op::Moe {
                top_k: 2 + i as u32,
                routing,
                activation,
            },
            inputs,
            vec![(&format!("moe{i}"), DType::BF16, td())],
        );
    }
    b.node(
        "",
        Op::Unary(UnaryOp::Neg),
        vec![Some(odd)],
        vec![("neg odd", DType::F16, b.g.value(odd).ty.shape.0.clone())],
    );
    let last = ValueId(b.g.values.len() as u32 - 1);
    b.g.outputs = vec![last, x, empty, quoted_path, last];
    b.g
}

fn assert_round_trip(g: &Graph) -> String {
    let printed = text::print(g);
    let parsed = match text::parse(&printed) {
        Ok(parsed) => parsed,
        Err(e) => panic!("{e}\n{printed}"),
    };
    assert_eq!(&parsed, g, "graph changed through text:\n{printed}");
    assert_eq!(text::print(&parsed), printed);
    printed
}

#[test]
fn coverage_graph_uses_every_variant() {
    let g = coverage_graph();
    let tags: BTreeSet<String> = g.nodes.iter().flat_map(|n| variant_tags(&n.op)).collect();
    let unary = tags.iter().filter(|t| t.starts_with("unary:")).count();
    let binary = tags.iter().filter(|t| t.starts_with("binary:")).count();
    let reduce = tags.iter().filter(|t| t.starts_with("reduce:")).count();
    let reduction = tags.iter().filter(|t| t.starts_with("reduction:")).count();
    let routing = tags.iter().filter(|t| t.starts_with("routing:")).count();
    let activation = tags.iter().filter(|t| t.starts_with("activation:")).count();
    assert_eq!(
        (unary, binary, reduce, reduction, routing, activation),
        (24, 17, 5, 5, 5, 5)
    );
    // The other 34 op variants.
    assert_eq!(
        tags.len() - unary - binary - reduce - reduction - routing - activation,
        34
    );

    let dtypes: BTreeSet<DType> = g.values.iter().map(|v| v.ty.dtype).collect();
    assert_eq!(dtypes, DType::ALL.into_iter().collect());

    let mut dims = BTreeSet::new();
    for v in &g.values {
        for d in v.ty.shape.dims() {
            dim_tags(d, &mut dims);
        }
    }
    assert_eq!(dims.len(), 9);

    let kinds: BTreeSet<&str> = g
        .initializers
        .iter()
        .map(|i| match i.data {
            WeightData::Inline(_) => "inline",
            WeightData::External(_) => "external",
            WeightData::Absent => "absent",
        })
        .collect();
    assert_eq!(kinds.len(), 3);
}

#[test]
fn coverage_graph_round_trips() {
    let printed = assert_round_trip(&coverage_graph());
    // A canonical graph needs no `declare` lines.
    assert!(!printed.contains("declare"));
    // Spot checks of the printed forms.
    for expected in [
        "graph @\"coverage graph/v1 \\\"quoted\\\"\" {\n",
        "  input %\"model.layers.0/attn:out\": f32[t, 8]\n",
        "  input %\"\": bool[t, 8]\n",
        "  input %\"odd\\tname \\\"with\\\" \\\\ escapes\\n\": f16[seq+1, seq-(pad-1), 2*seq, \
         (seq+1)/2, ceildiv(seq, 128), min(a, max(b, 0)), (1+2)*(c/1), \"sym with space\", min, \
         \"\", 18446744073709551615]\n",
        "  weight %w_f32: f32[4, 4] = inline 0x007f80ff00\n",
        "  weight %w_f16: f16[4, 4] = external \"shards/model-00001.safetensors\" offset 1024 \
         length 4096, \"shards/model-00002.safetensors\" offset 1024 length 4096\n",
        "  weight %w_bf16: bf16[4, 4] = absent\n",
        "  weight %empty: u8[0] = inline 0x\n",
        "  %clip_hi: f32[t, 8] = clip(%x, _, %\"é✓\")\n",
        "  %gemm: f32[t, 8] = gemm(%x, %\"model.layers.0/attn:out\", _) {alpha = \
         f32bits(0x7fc00001), beta = -0.0, trans_a = true, trans_b = false}\n",
        "  %topv: f32[t, 2], %topi: i64[t, 2] = topk(%x) {k = 2, axis = -1, largest = true, \
         sorted = false} @\"router topk\"\n",
        "  split(%x) {axis = 0, sizes = []} @\"split nothing\"\n",
        "{axes = [0, -1], starts = [-9223372036854775808, 1], ends = [9223372036854775807, -1], \
         steps = [1, -2]}",
        "{top_k = 4, routing = sigmoid_group_limited(n_group = 8, topk_group = 4, normalize = \
         true, scaling = 2.5), activation = silu} @model.layers.2.mlp\n",
        "routing = hash(normalize = true, scaling = -inf), activation = relu}",
        "{split = false, limit = 7.0}",
        "{axis = -1, epsilon = 1e-45}",
        "  return %\"neg odd\", %x, %empty, %\"quoted path\", %\"neg odd\"\n}\n",
    ] {
        assert!(
            printed.contains(expected),
            "missing {expected:?} in\n{printed}"
        );
    }
}

#[test]
fn value_order_is_kept_with_declarations() {
    // Values created in an order the statements cannot follow: a weight before the input, a
    // node whose results are in reverse id order, a node listed before its operand's producer,
    // and a value nothing defines.
    let ty = TensorType::new(DType::F32, Shape(vec![s("n")]));
    let mut g = Graph::new("reordered");
    let orphan = g.add_value("orphan", ty.clone());
    let w = g.add_initializer("w", ty.clone(), WeightData::Absent);
    let late = g.add_value("late", ty.clone());
    let x = g.add_input("x", ty.clone());
    let hi = g.add_value("hi", ty.clone());
    let lo = g.add_value("lo", ty.clone());
    g.add_node(Node {
        name: "uses late".into(),
        op: Op::Binary(BinaryOp::Add),
        inputs: vec![Some(late), Some(x)],
        outputs: vec![lo],
    });
    g.add_node(Node {
        name: String::new(),
        op: Op::Split {
            axis: 0,
            sizes: vec![s("a"), s("b")],
        },
        inputs: vec![Some(w)],
        outputs: vec![hi, late],
    });
    g.outputs = vec![lo, orphan];
    let printed = assert_round_trip(&g);
    assert!(printed.contains("  declare %orphan: f32[n]\n"));
}

#[test]
fn handwritten_text_parses_field_by_field() {
    let src = "\
graph @tiny_moe {
  input %input_ids: i64[batch, seq]
  weight %embed: bf16[256, 64] = external \"model.safetensors\" offset 1024 length 32768
  weight %scale: f32[] = inline 0x0000803f
  weight %router: bf16[64, 4] = absent
  %h: bf16[batch, seq, 64] = gather(%embed, %input_ids) {axis = 0} @model.embed
  %flat: bf16[batch*seq, 64] = reshape(%h) {shape = [batch*seq, 64]}
  %logits: bf16[batch*seq, 4] = matmul(%flat, %router)
  %p: f32[batch*seq, 4] = softmax(%logits) {axis = -1}
  %v: f32[batch*seq, 2], %i: i64[batch*seq, 2] = topk(%p) {k = 2, axis = -1, largest = true, sorted = true}
  return %v, %i
}
";
    let g = text::parse(src).unwrap();
    assert_eq!(g.name, "tiny_moe");
    let names: Vec<&str> = g.values.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "input_ids",
            "embed",
            "scale",
            "router",
            "h",
            "flat",
            "logits",
            "p",
            "v",
            "i"
        ]
    );
    assert_eq!(g.inputs, vec![ValueId(0)]);
    assert_eq!(
        g.values[0].ty,
        TensorType::new(DType::I64, Shape(vec![s("batch"), s("seq")]))
    );
    assert_eq!(g.initializers.len(), 3);
    assert_eq!(
        g.initializers[0].data,
        WeightData::file_slice("model.safetensors", 1024, 32768)
    );
    assert_eq!(
        g.initializers[1].data,
        WeightData::Inline(Arc::from(vec![0x00, 0x00, 0x80, 0x3f]))
    );
    assert_eq!(g.values[2].ty, TensorType::new(DType::F32, Shape::scalar()));
    assert_eq!(g.initializers[2].data, WeightData::Absent);
    assert_eq!(g.nodes.len(), 5);
    assert_eq!(g.nodes[0].name, "model.embed");
    assert_eq!(g.nodes[0].op, Op::Gather { axis: 0 });
    assert_eq!(g.nodes[0].inputs, vec![Some(ValueId(1)), Some(ValueId(0))]);
    assert_eq!(g.nodes[0].outputs, vec![ValueId(4)]);
    let batch_seq = Dim::Mul(bx(s("batch")), bx(s("seq")));
    assert_eq!(
        g.nodes[1].op,
        Op::Reshape {
            shape: vec![batch_seq.clone(), k(64)]
        }
    );
    assert_eq!(g.values[5].ty.shape, Shape(vec![batch_seq.clone(), k(64)]));
    assert_eq!(g.nodes[2].op, Op::MatMul);
    assert_eq!(g.nodes[2].name, "");
    assert_eq!(g.nodes[3].op, Op::Softmax { axis: -1 });
    assert_eq!(
        g.nodes[4].op,
        Op::TopK {
            k: 2,
            axis: -1,
            largest: true,
            sorted: true
        }
    );
    assert_eq!(g.nodes[4].outputs, vec![ValueId(8), ValueId(9)]);
    assert_eq!(g.values[9].ty.dtype, DType::I64);
    assert_eq!(g.outputs, vec![ValueId(8), ValueId(9)]);
    // The hand-written text is in the printer's canonical form.
    assert_eq!(text::print(&g), src);
}

#[test]
fn comments_whitespace_and_redundant_parentheses_are_accepted() {
    let src = "// a comment\ngraph @g{input %x:f32[((n)), (n+1)*2] // trailing\n\
               %y: f32[((n)), (n+1)*2] = relu(%x) {} return %y}";
    let g = text::parse(src).unwrap();
    assert_eq!(
        g.values[0].ty.shape,
        Shape(vec![
            s("n"),
            Dim::Mul(bx(Dim::Add(bx(s("n")), bx(k(1)))), bx(k(2)))
        ])
    );
    assert_eq!(
        text::print(&g),
        "graph @g {\n  input %x: f32[n, (n+1)*2]\n  %y: f32[n, (n+1)*2] = relu(%x)\n  return %y\n}\n"
    );
}

#[test]
fn float_attributes_keep_their_bits() {
    let specials = [
        0.0f32.to_bits(),
        (-0.0f32).to_bits(),
        1e-5f32.to_bits(),
        0.1f32.to_bits(),
        1.0e20f32.to_bits(),
        f32::MIN_POSITIVE.to_bits(),
        1,
        f32::MAX.to_bits(),
        f32::INFINITY.to_bits(),
        f32::NEG_INFINITY.to_bits(),
        f32::NAN.to_bits(),
        0xffc0_0000,
        0x7f80_0001,
    ];
    let mut g = Graph::new("floats");
    let x = g.add_input("x", TensorType::new(DType::F32, Shape::known(&[4])));
    for (i, b) in specials.into_iter().enumerate() {
        let out = g.add_value(
            format!("y{i}"),
            TensorType::new(DType::F32, Shape::known(&[4])),
        );
        g.add_node(Node {
            name: String::new(),
            op: Op::RmsNorm {
                axis: 0,
                epsilon_bits: b,
            },
            inputs: vec![Some(x), Some(x)],
            outputs: vec![out],
        });
    }
    assert_round_trip(&g);
}

#[test]
fn elided_inline_weights_print_their_size() {
    let mut g = Graph::new("consts");
    let ty = TensorType::new(DType::U8, Shape::known(&[4]));
    g.add_initializer(
        "small",
        ty.clone(),
        WeightData::Inline(Arc::from(vec![1, 2])),
    );
    g.add_initializer("big", ty, WeightData::Inline(Arc::from(vec![1, 2, 3, 4])));
    let options = PrintOptions {
        elide_inline_over: Some(2),
    };
    let printed = text::print_with(&g, &options);
    assert!(printed.contains("  weight %small: u8[4] = inline 0x0102\n"));
    assert!(printed.contains("  weight %big: u8[4] = inline <4 bytes elided>\n"));
    assert_eq!(
        text::print_with(&g, &PrintOptions::default()),
        text::print(&g)
    );
}

fn dim_strategy() -> impl Strategy<Value = Dim> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(Dim::Known),
        (0u64..300).prop_map(Dim::Known),
        "[a-z_][a-z0-9_]{0,4}".prop_map(Dim::sym),
        prop_oneof![Just("min"), Just("a b"), Just(""), Just("x\"y"), Just("é")].prop_map(Dim::sym),
    ];
    leaf.prop_recursive(6, 48, 2, |inner| {
        (0u8..7, inner.clone(), inner).prop_map(|(kind, a, b)| {
            let (a, b) = (Box::new(a), Box::new(b));
            match kind {
                0 => Dim::Add(a, b),
                1 => Dim::Sub(a, b),
                2 => Dim::Mul(a, b),
                3 => Dim::FloorDiv(a, b),
                4 => Dim::CeilDiv(a, b),
                5 => Dim::Min(a, b),
                _ => Dim::Max(a, b),
            }
        })
    })
}

proptest! {
    #[test]
    fn random_dims_round_trip(dims in prop::collection::vec(dim_strategy(), 0..4), len in dim_strategy()) {
        let mut g = Graph::new("dims");
        let x = g.add_input("x", TensorType::new(DType::F32, Shape(dims.clone())));
        let y = g.add_value("y", TensorType::new(DType::F32, Shape(vec![len.clone()])));
        g.add_node(Node {
            name: String::new(),
            op: Op::Reshape { shape: dims },
            inputs: vec![Some(x)],
            outputs: vec![y],
        });
        let z = g.add_value("z", TensorType::new(DType::I64, Shape(vec![len.clone()])));
        g.add_node(Node {
            name: String::new(),
            op: Op::Range { len },
            inputs: vec![Some(x), Some(x), Some(x)],
            outputs: vec![z],
        });
        let printed = text::print(&g);
        let parsed = text::parse(&printed);
        prop_assert_eq!(parsed.as_ref(), Ok(&g), "{}", printed);
    }

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,200}") {
        // Only the absence of a panic matters; either outcome is fine.
        let _ = text::parse(&src);
    }

    #[test]
    fn token_soup_never_panics(
        parts in prop::collection::vec(
            prop_oneof![
                Just("graph"), Just("@g"), Just("{"), Just("}"), Just("("), Just(")"),
                Just("["), Just("]"), Just("input"), Just("weight"), Just("declare"),
                Just("return"), Just("%x"), Just("%\"y\""), Just(":"), Just("="), Just(","),
                Just("f32"), Just("n"), Just("-"), Just("+"), Just("*"), Just("/"), Just("1"),
                Just("1e-5"), Just("0x0a"), Just("inline"), Just("<"), Just(">"), Just("_"),
                Just("min"), Just("split"), Just("moe"), Just("axis"), Just("\"s\\"),
            ],
            0..80,
        )
    ) {
        let _ = text::parse(&parts.join(" "));
    }

    #[test]
    fn mutated_printer_output_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 1..6)
    ) {
        let printed = text::print(&coverage_graph());
        let mut chars: Vec<char> = printed.chars().collect();
        for (at, kind, c) in edits {
            let i = at.index(chars.len());
            match kind {
                0 => { chars.remove(i); }
                1 => chars.insert(i, c),
                _ => chars[i] = c,
            }
        }
        let src: String = chars.into_iter().collect();
        let _ = text::parse(&src);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!(
        "graph @g {{ input %x: f32[{}n{}] return }}",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    let err = text::parse(&deep).unwrap_err();
    assert!(err.message().contains("nested deeper"), "{err}");
    let long = format!(
        "graph @g {{ input %x: f32[n{}] return }}",
        "+n".repeat(5000)
    );
    assert!(
        text::parse(&long)
            .unwrap_err()
            .message()
            .contains("nested deeper")
    );
}

#[test]
fn documented_example_parses_and_prints_back() {
    let doc = include_str!("../../docs/ir.md");
    let example = doc
        .split("## A complete example")
        .nth(1)
        .and_then(|rest| rest.split("```text\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("docs/ir.md has a complete example");
    let g = match text::parse(example) {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(g.name, "tiny_moe");
    assert_eq!(g.nodes.len(), 6);
    let without_comments: String = example
        .lines()
        .filter(|l| !l.starts_with("//"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(text::print(&g), without_comments);
}

/// A small deterministic generator for shuffling inside a property test.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// A graph whose value order, list orders and definitions are arbitrary: values may be defined
/// out of id order, used before their producer, or not defined at all.
fn scrambled_graph(roles: &[(u8, u8)], seed: u64) -> Graph {
    let mut rng = Lcg(seed);
    let prefixes = ["v", "a b/", "", "é\"", "x.y"];
    let mut g = Graph::new("scrambled");
    for (i, (_, name)) in roles.iter().enumerate() {
        let dims = vec![Dim::sym(format!("d{}", i % 3)), k(i as u64)];
        g.add_value(
            format!("{}{i}", prefixes[*name as usize % prefixes.len()]),
            TensorType::new(DType::ALL[i % DType::ALL.len()], Shape(dims)),
        );
    }
    let ids: Vec<ValueId> = (0..roles.len()).map(|i| ValueId(i as u32)).collect();
    let mut inputs = Vec::new();
    let mut weights = Vec::new();
    let mut results = Vec::new();
    for (id, (role, _)) in ids.iter().zip(roles) {
        match role % 4 {
            0 => inputs.push(*id),
            1 => weights.push(*id),
            2 => results.push(*id),
            _ => {} // defined by nothing
        }
    }
    rng.shuffle(&mut inputs);
    rng.shuffle(&mut weights);
    rng.shuffle(&mut results);
    g.inputs = inputs;
    for value in weights {
        let data = match rng.below(3) {
            0 => WeightData::Absent,
            1 => WeightData::Inline(Arc::from(vec![rng.below(256) as u8; rng.below(4)])),
            _ => WeightData::External(
                (0..1 + rng.below(2))
                    .map(|_| FileSlice {
                        path: PathBuf::from("w.bin"),
                        offset: rng.below(100) as u64,
                        length: 8,
                    })
                    .collect(),
            ),
        };
        g.initializers
            .push(cubevec_ir::graph::Initializer { value, data });
    }
    // Results grouped into `split` nodes of 0 to 3 results, operands anywhere in the graph.
    let mut rest = results.as_slice();
    loop {
        let take = rng.below(4).min(rest.len());
        if take == 0 && rest.is_empty() && rng.below(2) == 0 {
            break;
        }
        let (outputs, tail) = rest.split_at(take);
        rest = tail;
        let operand = ids[rng.below(ids.len())];
        g.add_node(Node {
            name: if rng.below(2) == 0 {
                String::new()
            } else {
                format!("node {}", g.nodes.len())
            },
            op: Op::Split {
                axis: 0,
                sizes: vec![k(1); outputs.len()],
            },
            inputs: vec![Some(operand)],
            outputs: outputs.to_vec(),
        });
    }
    rng.shuffle(&mut g.nodes);
    g.outputs = (0..rng.below(4))
        .map(|_| ids[rng.below(ids.len())])
        .collect();
    g
}

proptest! {
    #[test]
    fn scrambled_graphs_round_trip(
        roles in prop::collection::vec((0u8..4, 0u8..5), 1..16),
        seed in any::<u64>(),
    ) {
        let g = scrambled_graph(&roles, seed);
        let printed = text::print(&g);
        let parsed = text::parse(&printed);
        prop_assert_eq!(parsed.as_ref(), Ok(&g), "{}", printed);
        prop_assert_eq!(text::print(&g), printed);
    }
}
