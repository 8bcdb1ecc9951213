//! The MoE lowerings: every kernel verifies and binds tensors of the right dtype and size in a
//! sound launch order, and executing the launches with the reference kernel executor
//! reproduces the graph interpreter's `Moe` and `GroupedMatMul` on the tiny fixture shapes
//! (Mixtral, Qwen2-MoE, Qwen3-MoE, DeepSeek-V3), in f32 and bf16, with random and with skewed
//! routing (experts without tokens), also with binary nodes fused after the block.

mod launches;

use cubevec_ir::kernel::{CoreType, GmData, ParamRole};
use cubevec_ir::op::{BinaryOp, ExpertActivation, RoutingMode, UnaryOp};
use cubevec_ir::shape::DimBindings;
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Op, Tensor, interp};
use cubevec_passes::lower::epilogue::EpilogueNode;
use cubevec_passes::lower::moe::{lower_grouped_matmul, lower_moe};
use cubevec_passes::lower::{ArgRef, Lowering, OpContext, TensorShape};
use launches::{execute_launches, shape_of};

fn target() -> Target {
    Target::by_name("ascend910b2").expect("target")
}

/// A deterministic linear congruential generator of values in `[-1, 1)`.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn values(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// One MoE block: its shapes, routing and activation.
#[derive(Clone, Debug)]
struct Block {
    name: &'static str,
    tokens: usize,
    hidden: usize,
    experts: usize,
    inter: usize,
    top_k: u32,
    routing: RoutingMode,
    activation: ExpertActivation,
    bias: bool,
}

impl Block {
    fn op(&self) -> Op {
        Op::Moe {
            top_k: self.top_k,
            routing: self.routing.clone(),
            activation: self.activation.clone(),
        }
    }

    fn hashed(&self) -> bool {
        matches!(self.routing, RoutingMode::Hash { .. })
    }
}

const VOCAB: usize = 11;

fn mixtral() -> Block {
    Block {
        name: "mixtral",
        tokens: 7,
        hidden: 64,
        experts: 8,
        inter: 96,
        top_k: 2,
        routing: RoutingMode::SoftmaxTopK { normalize: true },
        activation: ExpertActivation::SwiGlu,
        bias: false,
    }
}

fn qwen2_moe() -> Block {
    Block {
        name: "qwen2_moe",
        inter: 32,
        routing: RoutingMode::SoftmaxTopK { normalize: false },
        ..mixtral()
    }
}

fn qwen3_moe() -> Block {
    Block {
        name: "qwen3_moe",
        inter: 32,
        ..mixtral()
    }
}

fn deepseek_v3() -> Block {
    Block {
        name: "deepseek_v3",
        inter: 32,
        routing: RoutingMode::SigmoidGroupLimited {
            n_group: 4,
            topk_group: 2,
            normalize: true,
            scaling_bits: 2.5f32.to_bits(),
        },
        bias: true,
        ..mixtral()
    }
}

/// Routing modes and activations beyond the fixtures, on small shapes.
fn variants() -> Vec<Block> {
    let base = Block {
        name: "variant",
        tokens: 5,
        hidden: 32,
        experts: 6,
        inter: 48,
        top_k: 3,
        routing: RoutingMode::TopKSoftmax,
        activation: ExpertActivation::Gelu,
        bias: false,
    };
    vec![
        base.clone(),
        Block {
            routing: RoutingMode::SqrtSoftplus {
                normalize: true,
                scaling_bits: 1.5f32.to_bits(),
            },
            activation: ExpertActivation::Silu,
            bias: true,
            ..base.clone()
        },
        Block {
            routing: RoutingMode::Hash {
                normalize: false,
                scaling_bits: 1.0f32.to_bits(),
            },
            activation: ExpertActivation::Relu,
            ..base.clone()
        },
        Block {
            routing: RoutingMode::SigmoidGroupLimited {
                n_group: 3,
                topk_group: 3,
                normalize: true,
                scaling_bits: 1.0f32.to_bits(),
            },
            activation: ExpertActivation::SwiGlu,
            bias: true,
            ..base.clone()
        },
        Block {
            experts: 16,
            routing: RoutingMode::SigmoidGroupLimited {
                n_group: 2,
                topk_group: 1,
                normalize: false,
                scaling_bits: 1.0f32.to_bits(),
            },
            activation: ExpertActivation::SwiGluClamped {
                limit_bits: 0.5f32.to_bits(),
            },
            bias: true,
            ..base
        },
    ]
}

/// The operands of a block in `dtype`: random, or with the router strongly preferring a few
/// experts (`skewed`) so that others get no token.
fn operands(b: &Block, dtype: DType, skewed: bool, seed: u64) -> Vec<Option<Tensor>> {
    let mut rng = Lcg(seed);
    let (t, h, e, i) = (b.tokens, b.hidden, b.experts, b.inter);
    let k = b.top_k as usize;
    let x = rng.values(t * h, 1.0);
    let mut logits = rng.values(t * e, 2.0);
    if skewed {
        for row in logits.chunks_mut(e) {
            for (j, l) in row.iter_mut().enumerate().take(k) {
                *l += 6.0 + j as f64;
            }
        }
    }
    let w_in = 1.0 / (h as f64).sqrt();
    let w_out = 1.0 / (i as f64).sqrt();
    let gated = b.activation.is_gated();
    let tensor = |dt, shape: Vec<usize>, v: &[f64]| Some(Tensor::from_f64(dt, shape, v));
    let mut ops = vec![
        tensor(dtype, vec![t, h], &x),
        tensor(dtype, vec![t, e], &logits),
        None,
        tensor(dtype, vec![e, i, h], &rng.values(e * i * h, w_in)),
        tensor(dtype, vec![e, h, i], &rng.values(e * h * i, w_out)),
    ];
    if gated {
        ops[2] = tensor(dtype, vec![e, i, h], &rng.values(e * i * h, w_in));
    }
    if b.bias || b.hashed() {
        ops.push(if b.bias {
            tensor(DType::F32, vec![e], &rng.values(e, 0.5))
        } else {
            None
        });
    }
    if b.hashed() {
        let ids: Vec<i64> = (0..t).map(|j| ((j * 7 + 3) % VOCAB) as i64).collect();
        let table: Vec<i64> = (0..VOCAB * k)
            .map(|j| {
                if skewed {
                    (j % 2) as i64
                } else {
                    ((j * 5 + 1) % e) as i64
                }
            })
            .collect();
        ops.push(Some(Tensor::from_i64(DType::I64, vec![t], &ids)));
        ops.push(Some(Tensor::from_i64(DType::I64, vec![VOCAB, k], &table)));
    }
    ops
}

/// Lowers `op` over `inputs` with results `outputs`.
fn lower(
    name: &str,
    op: &Op,
    inputs: &[Option<Tensor>],
    outputs: &[TensorShape],
    target: &Target,
) -> Lowering {
    let ctx = OpContext {
        name,
        op,
        inputs: inputs.iter().map(|t| t.as_ref().map(shape_of)).collect(),
        outputs: outputs.to_vec(),
        target,
    };
    match op {
        Op::Moe { .. } => lower_moe(&ctx, &[]),
        _ => lower_grouped_matmul(&ctx),
    }
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every parameter binds a tensor of its dtype and size, inputs are read only after they are
/// written, outputs never bind operands, and every scratch tensor and result is written.
fn check_bindings(lowering: &Lowering, inputs: &[Option<Tensor>], outputs: &[TensorShape]) {
    let mut written_scratch = vec![false; lowering.scratch.len()];
    let mut written_result = vec![false; outputs.len()];
    for call in &lowering.calls {
        let k = &call.kernel;
        assert_eq!(k.params.len(), call.args.len(), "{}", k.name);
        let mut writes = Vec::new();
        for (p, arg) in k.params.iter().zip(&call.args) {
            let (shape, written) = match *arg {
                ArgRef::Operand(i) => {
                    (shape_of(inputs[i].as_ref().expect("operand present")), true)
                }
                ArgRef::Result(i) => (outputs[i].clone(), written_result[i]),
                ArgRef::Scratch(i) => (lowering.scratch[i].tensor.clone(), written_scratch[i]),
            };
            assert_eq!(
                (p.dtype, p.shape.iter().product::<u64>()),
                (shape.dtype, shape.elements()),
                "{} parameter {}",
                k.name,
                p.name
            );
            match p.role {
                ParamRole::Input => assert!(written, "{} reads {} unwritten", k.name, p.name),
                _ => {
                    assert!(
                        !matches!(arg, ArgRef::Operand(_)),
                        "{} writes an operand",
                        k.name
                    );
                    writes.push(*arg);
                }
            }
        }
        for w in writes {
            match w {
                ArgRef::Result(i) => written_result[i] = true,
                ArgRef::Scratch(i) => written_scratch[i] = true,
                ArgRef::Operand(_) => {}
            }
        }
    }
    assert!(
        written_scratch.iter().all(|&w| w),
        "a scratch tensor is never written"
    );
    assert!(
        written_result.iter().all(|&w| w),
        "a result is never written"
    );
}

/// Largest absolute difference, and the largest reference magnitude.
fn compare(got: &[f64], want: &[f64]) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    let err = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
    (err, scale)
}

fn tolerance(dtype: DType) -> f64 {
    if dtype == DType::F32 { 1e-5 } else { 2e-2 }
}

/// Checks the bindings of `lowering`, runs it and compares its result with `want` at the
/// tolerance of `dtype`; returns the scratch tensors.
fn run_and_compare(
    lowering: &Lowering,
    inputs: &[Option<Tensor>],
    outputs: &[TensorShape],
    want: &Tensor,
    what: &str,
) -> Vec<GmData> {
    check_bindings(lowering, inputs, outputs);
    let (got, scratch) = execute_launches(lowering, inputs, outputs);
    let (err, scale) = compare(&got[0].to_f64_vec(), &want.to_f64_vec());
    assert!(
        err <= tolerance(want.dtype()) * scale.max(1e-3),
        "{what}: max error {err} against a scale of {scale}"
    );
    scratch
}

/// Lowers and runs one block and checks it against the interpreter; a skewed routing must
/// leave an expert without rows.
fn check_block(b: &Block, dtype: DType, skewed: bool, seed: u64) {
    let target = target();
    let op = b.op();
    let inputs = operands(b, dtype, skewed, seed);
    let refs: Vec<Option<&Tensor>> = inputs.iter().map(Option::as_ref).collect();
    let want = interp::eval_op(&op, &refs, &DimBindings::new()).expect("interpreter");
    let outputs = vec![shape_of(&want[0])];
    let lowering = lower(&format!("k_{}", b.name), &op, &inputs, &outputs, &target);
    let what = format!("{} {dtype} skewed={skewed}", b.name);
    let scratch = run_and_compare(&lowering, &inputs, &outputs, &want[0], &what);
    let offsets_at = lowering
        .scratch
        .iter()
        .position(|s| s.name == "offsets")
        .expect("offsets scratch");
    let offsets = scratch[offsets_at].to_f64_vec();
    assert_eq!(offsets.first(), Some(&0.0));
    assert_eq!(
        offsets.last(),
        Some(&((b.tokens * b.top_k as usize) as f64))
    );
    let empty = offsets.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(
        !skewed || empty > 0,
        "{}: the skewed routing left no expert empty ({offsets:?})",
        b.name
    );
}

#[test]
fn fixture_blocks_match_the_interpreter() {
    for b in [mixtral(), qwen2_moe(), qwen3_moe(), deepseek_v3()] {
        for dtype in [DType::F32, DType::BF16] {
            for (skewed, seed) in [(false, 11), (true, 12)] {
                check_block(&b, dtype, skewed, seed);
            }
        }
    }
}

#[test]
fn a_prefill_sized_block_matches_the_interpreter() {
    // Several tokens per routing tile, several M tiles per expert and their tails.
    let b = Block {
        name: "deepseek_v3_prefill",
        tokens: 150,
        ..deepseek_v3()
    };
    for dtype in [DType::F32, DType::BF16] {
        check_block(&b, dtype, true, 31);
    }
    check_block(
        &Block {
            tokens: 150,
            ..mixtral()
        },
        DType::BF16,
        false,
        32,
    );
}

#[test]
fn other_routings_and_activations_match_the_interpreter() {
    for b in variants() {
        for (skewed, seed) in [(false, 21), (true, 22)] {
            check_block(&b, DType::F32, skewed, seed);
        }
    }
}

/// The gate and up projections and the SwiGLU run as one paired MIX kernel when that is
/// modelled faster, as it is here: six launches instead of eight.
#[test]
fn a_moe_block_is_six_launches_with_the_routing_profile_stated() {
    let target = target();
    let b = mixtral();
    let inputs = operands(&b, DType::BF16, false, 1);
    let outputs = vec![TensorShape::new(DType::BF16, vec![7, 64])];
    let lowering = lower("k3_moe", &b.op(), &inputs, &outputs, &target);
    let names: Vec<&str> = lowering
        .calls
        .iter()
        .map(|c| c.kernel.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "k3_moe_route",
            "k3_moe_sort",
            "k3_moe_scatter",
            "k3_moe_gate_up",
            "k3_moe_down",
            "k3_moe_combine"
        ]
    );
    assert_eq!(lowering.calls[3].kernel.core, CoreType::Mix1To2);
    for name in ["k3_moe_gate_up", "k3_moe_down"] {
        let call = lowering
            .calls
            .iter()
            .find(|c| c.kernel.name == name)
            .expect("gemm");
        assert!(
            call.assumptions
                .iter()
                .any(|a| a.contains("14 routed rows balanced over 8 experts")),
            "{name}: {:?}",
            call.assumptions
        );
        assert_eq!(call.kernel.tiling.get("runtime_groups"), Some(&8));
    }
    let route = &lowering.calls[0].kernel;
    assert_eq!(route.blocks, 7, "one token per AIV");
    assert_eq!(
        lowering.calls[1].kernel.tiling.get("scalar_bookkeeping"),
        Some(&1)
    );
    for call in &lowering.calls {
        assert!(call.cost.modeled_time_us > 0.0, "{}", call.kernel.name);
    }
}

#[test]
fn grouped_matmul_reads_its_group_sizes_at_run_time() {
    let target = target();
    let (k, n) = (48, 40);
    for dtype in [DType::F32, DType::BF16] {
        for sizes in [
            vec![5i64, 0, 17, 1, 0, 9],
            vec![0, 0, 32, 0, 0, 0],
            vec![6; 6],
        ] {
            let t: usize = sizes.iter().sum::<i64>() as usize;
            let e = sizes.len();
            let mut rng = Lcg(t as u64 + 3);
            let inputs = vec![
                Some(Tensor::from_f64(dtype, vec![t, k], &rng.values(t * k, 1.0))),
                Some(Tensor::from_f64(
                    dtype,
                    vec![e, n, k],
                    &rng.values(e * n * k, 0.2),
                )),
                Some(Tensor::from_i64(DType::I64, vec![e], &sizes)),
            ];
            let refs: Vec<Option<&Tensor>> = inputs.iter().map(Option::as_ref).collect();
            let op = Op::GroupedMatMul;
            let want = interp::eval_op(&op, &refs, &DimBindings::new()).expect("interpreter");
            let outputs = vec![shape_of(&want[0])];
            let lowering = lower("k_grouped", &op, &inputs, &outputs, &target);
            assert_eq!(lowering.calls.len(), 1);
            let what = format!("{dtype} sizes {sizes:?}");
            run_and_compare(&lowering, &inputs, &outputs, &want[0], &what);
        }
    }
}

/// Binary nodes fused after the block run in its combine kernel: a residual add, then a
/// subtraction from another tensor (the combined rows second), give what the block and separate
/// elementwise nodes give, in f32 and bf16 (rounded between the nodes), in as many launches as
/// the block alone.
#[test]
fn binary_nodes_fused_after_the_block_run_in_its_combine() {
    let target = target();
    let b = Block {
        tokens: 150,
        ..mixtral()
    };
    let op = b.op();
    let plain_launches = {
        let inputs = operands(&b, DType::F32, false, 1);
        let outputs = vec![TensorShape::new(DType::F32, vec![150, 64])];
        lower("k3_moe", &op, &inputs, &outputs, &target).calls.len()
    };
    for dtype in [DType::F32, DType::BF16] {
        let mut inputs = operands(&b, dtype, false, 41);
        let refs: Vec<Option<&Tensor>> = inputs.iter().map(Option::as_ref).collect();
        let none = DimBindings::new();
        let block = interp::eval_op(&op, &refs, &none).expect("interpreter");
        let mut rng = Lcg(42);
        let n = b.tokens * b.hidden;
        let shape = vec![b.tokens, b.hidden];
        let residual = Tensor::from_f64(dtype, shape.clone(), &rng.values(n, 1.0));
        let other = Tensor::from_f64(dtype, shape, &rng.values(n, 1.0));
        let binary = |op: BinaryOp, a: &Tensor, b: &Tensor| {
            interp::eval_op(&Op::Binary(op), &[Some(a), Some(b)], &none)
                .expect("interpreter")
                .remove(0)
        };
        let sum = binary(BinaryOp::Add, &block[0], &residual);
        let want = binary(BinaryOp::Sub, &other, &sum);
        let first = inputs.len();
        inputs.extend([Some(residual), Some(other)]);
        let epilogue = [
            EpilogueNode::Binary {
                op: BinaryOp::Add,
                operand: first,
                product_first: true,
            },
            EpilogueNode::Binary {
                op: BinaryOp::Sub,
                operand: first + 1,
                product_first: false,
            },
        ];
        let outputs = vec![shape_of(&want)];
        let ctx = OpContext {
            name: "k3_moe",
            op: &op,
            inputs: inputs.iter().map(|t| t.as_ref().map(shape_of)).collect(),
            outputs: outputs.clone(),
            target: &target,
        };
        let lowering = lower_moe(&ctx, &epilogue).expect("fused lowering");
        assert_eq!(lowering.calls.len(), plain_launches);
        run_and_compare(&lowering, &inputs, &outputs, &want, &dtype.to_string());
    }
}

/// Unsupported forms are refused with the node's name: a gated block without its gate, and
/// nodes after the block other than binary ops with whole operands of the result's dtype.
#[test]
fn unsupported_forms_name_the_node() {
    let target = target();
    let b = mixtral();
    let op = b.op();
    let mut inputs = operands(&b, DType::F32, false, 1);
    let first = inputs.len();
    inputs.push(Some(Tensor::from_f64(DType::F32, vec![64], &[0.5; 64])));
    let refusal = |inputs: &[Option<Tensor>], epilogue: &[EpilogueNode]| {
        let ctx = OpContext {
            name: "k9_moe",
            op: &op,
            inputs: inputs.iter().map(|t| t.as_ref().map(shape_of)).collect(),
            outputs: vec![TensorShape::new(DType::F32, vec![7, 64])],
            target: &target,
        };
        lower_moe(&ctx, epilogue).expect_err("refused").to_string()
    };
    let row = EpilogueNode::Binary {
        op: BinaryOp::Add,
        operand: first,
        product_first: true,
    };
    let err = refusal(&inputs, &[row]);
    assert!(err.contains("k9_moe") && err.contains("Add"), "{err}");
    let err = refusal(&inputs, &[EpilogueNode::Unary(UnaryOp::Exp)]);
    assert!(err.contains("only binary ops"), "{err}");
    inputs[2] = None;
    let err = refusal(&inputs, &[]);
    assert!(err.contains("k9_moe") && err.contains("gate"), "{err}");
}
