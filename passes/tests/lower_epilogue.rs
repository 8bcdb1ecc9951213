//! GEMMs with fused vector epilogues (MIX kernels), run with the kernel-IR reference executor
//! and compared with the graph interpreter evaluating the GEMM and then each epilogue node.

mod launches;
mod lower_run;
mod random_data;

use cubevec_ir::kernel::{CoreType, GmData, VecOp, execute, verify};
use cubevec_ir::op::{BinaryOp, UnaryOp};
use cubevec_ir::shape::DimBindings;
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Op, Tensor, interp};
use cubevec_passes::lower::epilogue::{EpilogueNode, lower_gemm_epilogue};
use cubevec_passes::lower::{OpContext, linear};
use cubevec_passes::tile::epilogue::{Epilogue, EpilogueOperand};
use cubevec_passes::tile::gemm::{GemmProblem, GemmTiling, Halves, build};
use cubevec_passes::tile::vector::{ChainArg, ChainStep, ElementwiseChain};
use lower_run::{Lowered, lower_and_run, lower_and_run_against};
use proptest::prelude::*;
use random_data::random;

/// The interpreter's value of `gemm` over `inputs[..gemm_inputs]` followed by `nodes`.
fn reference(
    gemm: &Op,
    gemm_inputs: usize,
    inputs: &[Option<Tensor>],
    nodes: &[EpilogueNode],
) -> Tensor {
    let bindings = DimBindings::new();
    let refs: Vec<Option<&Tensor>> = inputs[..gemm_inputs].iter().map(Option::as_ref).collect();
    let input = |i: usize| inputs[i].as_ref().expect("operand present");
    let mut x = interp::eval_op(gemm, &refs, &bindings)
        .expect("gemm")
        .remove(0);
    for node in nodes {
        x = match node {
            EpilogueNode::SwiGlu { up: None } => interp::eval_op(
                &Op::SwiGlu {
                    split: true,
                    limit_bits: None,
                },
                &[Some(&x)],
                &bindings,
            ),
            EpilogueNode::SwiGlu { up: Some(i) } => {
                let mut up_inputs = refs.clone();
                up_inputs[1] = Some(input(*i));
                let up = interp::eval_op(gemm, &up_inputs, &bindings)
                    .expect("up")
                    .remove(0);
                interp::eval_op(
                    &Op::SwiGlu {
                        split: false,
                        limit_bits: None,
                    },
                    &[Some(&x), Some(&up)],
                    &bindings,
                )
            }
            EpilogueNode::Unary(u) => interp::eval_op(&Op::Unary(*u), &[Some(&x)], &bindings),
            EpilogueNode::Cast { to, .. } => {
                interp::eval_op(&Op::Cast { to: *to }, &[Some(&x)], &bindings)
            }
            EpilogueNode::Binary {
                op,
                operand,
                product_first,
            } => {
                let y = input(*operand);
                let args = if *product_first {
                    [Some(&x), Some(y)]
                } else {
                    [Some(y), Some(&x)]
                };
                interp::eval_op(&Op::Binary(*op), &args, &bindings)
            }
        }
        .expect("epilogue node")
        .remove(0);
    }
    x
}

/// Lowers the fused GEMM + `nodes`, checks it is one MIX launch, runs it and compares with the
/// interpreter within `tol · max(1, |reference|)`. The first `gemm_inputs` tensors are the
/// GEMM's operands; a `Gemm` without its C operand gets an absent one, so the epilogue's
/// operands start at context input 3 for `Gemm` and 2 for `MatMul`.
fn check(gemm: Op, gemm_inputs: usize, inputs: Vec<Tensor>, nodes: &[EpilogueNode], tol: f64) {
    let mut operands: Vec<Option<Tensor>> = inputs.into_iter().map(Some).collect();
    if matches!(gemm, Op::Gemm { .. }) && gemm_inputs == 2 {
        operands.insert(2, None);
    }
    let want = reference(&gemm, gemm_inputs, &operands, nodes);
    let Lowered {
        lowering,
        mut got,
        expected,
    } = lower_and_run_against(
        &|ctx: &OpContext| lower_gemm_epilogue(ctx, nodes),
        &gemm,
        &operands,
        vec![want],
    );
    assert_eq!(lowering.calls.len(), 1);
    let kernel = &lowering.calls[0].kernel;
    assert_eq!(kernel.core, CoreType::Mix1To2);
    compare(&got.remove(0), &expected[0], tol, &kernel.to_string());
}

/// `got` is `want` within `tol · max(1, |want|)`.
fn compare(got: &Tensor, want: &Tensor, tol: f64, context: &str) {
    assert_eq!(got.shape(), want.shape());
    for (j, (a, b)) in got.to_f64_vec().iter().zip(want.to_f64_vec()).enumerate() {
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "element {j}: {a} vs {b}\n{context}"
        );
    }
}

/// `Gemm` as `nn.Linear` computes it: `a · bᵀ (+ c)`.
fn linear_layer() -> Op {
    Op::Gemm {
        alpha_bits: 1f32.to_bits(),
        beta_bits: 1f32.to_bits(),
        trans_a: false,
        trans_b: true,
    }
}

fn binary(op: BinaryOp, operand: usize, product_first: bool) -> EpilogueNode {
    EpilogueNode::Binary {
        op,
        operand,
        product_first,
    }
}

#[test]
fn residual_add_after_a_bf16_matmul() {
    check(
        Op::MatMul,
        2,
        vec![
            random(DType::BF16, &[2, 40, 96], 1),
            random(DType::BF16, &[96, 80], 2),
            random(DType::BF16, &[2, 40, 80], 3),
        ],
        &[binary(BinaryOp::Add, 2, false)],
        1e-2,
    );
}

#[test]
fn silu_times_up_after_a_matmul_with_tails() {
    check(
        Op::MatMul,
        2,
        vec![
            random(DType::BF16, &[333, 64], 4),
            random(DType::BF16, &[64, 300], 5),
            random(DType::BF16, &[333, 300], 6),
        ],
        &[
            EpilogueNode::Unary(UnaryOp::Silu),
            binary(BinaryOp::Mul, 2, true),
        ],
        2e-2,
    );
}

#[test]
fn bias_row_then_gelu_and_reversed_operands() {
    check(
        Op::MatMul,
        2,
        vec![
            random(DType::F16, &[50, 32], 7),
            random(DType::F16, &[32, 72], 8),
            random(DType::F16, &[72], 9),
            random(DType::F16, &[1, 72], 10),
        ],
        &[
            binary(BinaryOp::Add, 2, true),
            EpilogueNode::Unary(UnaryOp::Gelu),
            binary(BinaryOp::Sub, 3, false),
            binary(BinaryOp::Max, 2, false),
        ],
        1e-2,
    );
}

/// A per-token scale (`[m, 1]`, like Qwen2-MoE's shared-expert gate), then the routed
/// experts' output and the residual added: the shared expert's whole tail in one kernel.
#[test]
fn column_scale_then_two_residual_adds() {
    check(
        Op::MatMul,
        2,
        vec![
            random(DType::BF16, &[2, 37, 48], 60),
            random(DType::BF16, &[48, 70], 61),
            random(DType::BF16, &[2, 37, 1], 62),
            random(DType::BF16, &[2, 37, 70], 63),
            random(DType::BF16, &[2, 37, 70], 64),
        ],
        &[
            binary(BinaryOp::Mul, 2, false),
            binary(BinaryOp::Add, 3, false),
            binary(BinaryOp::Add, 4, true),
        ],
        2e-2,
    );
}

#[test]
fn f32_product_divided_by_a_column() {
    check(
        linear_layer(),
        2,
        vec![
            random(DType::F32, &[20, 32], 65),
            random(DType::F32, &[24, 32], 66),
            random(DType::F32, &[20, 1], 67),
        ],
        &[binary(BinaryOp::Div, 3, true)],
        1e-5,
    );
}

#[test]
fn gemm_bias_and_relu_in_f32() {
    let gemm = linear_layer();
    check(
        gemm,
        3,
        vec![
            random(DType::F32, &[70, 48], 11),
            random(DType::F32, &[56, 48], 12),
            random(DType::F32, &[56], 13),
        ],
        &[EpilogueNode::Unary(UnaryOp::Relu)],
        1e-5,
    );
}

#[test]
fn swiglu_of_stacked_gate_and_up_then_a_residual() {
    check(
        Op::MatMul,
        2,
        vec![
            random(DType::BF16, &[75, 64], 50),
            // [gate | up]: 2 × 90 columns, so the last tiles have tails in both halves.
            random(DType::BF16, &[64, 180], 51),
            random(DType::BF16, &[75, 90], 52),
        ],
        &[
            EpilogueNode::SwiGlu { up: None },
            binary(BinaryOp::Add, 2, false),
        ],
        2e-2,
    );
}

#[test]
fn swiglu_of_two_f32_gemms_sharing_their_input() {
    let gemm = linear_layer();
    check(
        gemm,
        2,
        vec![
            random(DType::F32, &[33, 40], 53),
            random(DType::F32, &[50, 40], 54),
            random(DType::F32, &[50, 40], 55),
        ],
        &[EpilogueNode::SwiGlu { up: Some(3) }],
        1e-5,
    );
}

/// `Gemm`'s own bias: fused or as a second kernel, whichever is modelled faster; either way
/// the interpreter's result.
#[test]
fn gemm_with_a_bias_term_matches_the_interpreter() {
    let gemm = linear_layer();
    for (m, seed) in [(8, 20), (300, 30)] {
        let inputs = vec![
            Some(random(DType::F32, &[m, 64], seed)),
            Some(random(DType::F32, &[40, 64], seed + 1)),
            Some(random(DType::F32, &[1, 40], seed + 2)),
        ];
        let Lowered {
            lowering,
            got,
            expected,
        } = lower_and_run(&linear::lower_gemm, &gemm, &inputs);
        compare(
            &got[0],
            &expected[0],
            1e-5,
            &format!("{} launches", lowering.calls.len()),
        );
    }
}

#[test]
fn epilogue_operands_are_told_apart_by_their_element_counts_at_any_rank() {
    use EpilogueOperand::{Column, Full, Row};
    let cases: [(&[u64], &[u64], Option<EpilogueOperand>); 10] = [
        (&[6, 8], &[6, 8], Some(Full)),
        (&[2, 3, 8], &[6, 8], Some(Full)),
        (&[8], &[6, 8], Some(Row)),
        (&[1, 1, 8], &[2, 3, 8], Some(Row)),
        (&[6, 1], &[6, 8], Some(Column)),
        (&[2, 3, 1], &[2, 3, 8], Some(Column)),
        (&[3, 8], &[2, 3, 8], None),
        (&[6, 2], &[6, 8], None),
        (&[1], &[6, 8], None),
        (&[], &[6, 8], None),
    ];
    for (operand, product, want) in cases {
        assert_eq!(
            EpilogueOperand::of(operand, product),
            want,
            "{operand:?} against {product:?}"
        );
    }
}

#[test]
fn operands_of_other_shapes_or_types_are_refused() {
    let target = Target::by_name("ascend910b2").expect("target");
    let shape = |dtype, dims: &[u64]| cubevec_passes::lower::TensorShape::new(dtype, dims.to_vec());
    let bf16 = DType::BF16;
    let refuse = |extra: cubevec_passes::lower::TensorShape| {
        let ctx = OpContext {
            name: "k3_fused",
            op: &Op::MatMul,
            inputs: vec![
                Some(shape(bf16, &[32, 64])),
                Some(shape(bf16, &[64, 48])),
                Some(extra),
            ],
            outputs: vec![shape(bf16, &[32, 48])],
            target: &target,
        };
        lower_gemm_epilogue(&ctx, &[binary(BinaryOp::Add, 2, true)])
            .expect_err("refused")
            .to_string()
    };
    assert!(refuse(shape(bf16, &[16, 2])).contains("not the product's shape, a row or a column"));
    assert!(refuse(shape(DType::F32, &[32, 48])).contains("of type f32 with a bf16 product"));
}

/// A bf16 product widened to f32, a residual added in f32, the sum rounded back to bf16: the
/// widening adds no step, the rounding is the store's.
#[test]
fn casts_around_an_f32_residual_add() {
    let (bf16, f32) = (DType::BF16, DType::F32);
    check(
        Op::MatMul,
        2,
        vec![
            random(bf16, &[2, 40, 96], 31),
            random(bf16, &[96, 80], 32),
            random(f32, &[2, 40, 80], 33),
        ],
        &[
            EpilogueNode::Cast {
                from: bf16,
                to: f32,
            },
            binary(BinaryOp::Add, 2, true),
            EpilogueNode::Cast {
                from: f32,
                to: bf16,
            },
        ],
        1e-2,
    );
}

/// Casts alone: bf16 logits widened to f32 (a bf16 model's head), and an f32 product rounded to
/// bf16.
#[test]
fn a_cast_alone_after_a_gemm() {
    let (bf16, f32) = (DType::BF16, DType::F32);
    check(
        linear_layer(),
        2,
        vec![random(bf16, &[24, 64], 41), random(bf16, &[200, 64], 42)],
        &[EpilogueNode::Cast {
            from: bf16,
            to: f32,
        }],
        1e-2,
    );
    check(
        linear_layer(),
        2,
        vec![random(f32, &[48, 72], 43), random(f32, &[40, 72], 44)],
        &[EpilogueNode::Cast {
            from: f32,
            to: bf16,
        }],
        1e-2,
    );
}

/// A rounding cast must be the chain's last node, and a cast must start from the running dtype.
#[test]
fn misplaced_casts_are_refused() {
    let target = Target::by_name("ascend910b2").expect("target");
    let (bf16, f32) = (DType::BF16, DType::F32);
    let t = |dtype, dims: &[u64]| cubevec_passes::lower::TensorShape::new(dtype, dims.to_vec());
    let ctx = OpContext {
        name: "k3_fused",
        op: &Op::MatMul,
        inputs: vec![Some(t(f32, &[32, 64])), Some(t(f32, &[64, 48]))],
        outputs: vec![t(f32, &[32, 48])],
        target: &target,
    };
    let refuse = |nodes: &[EpilogueNode]| {
        lower_gemm_epilogue(&ctx, nodes)
            .expect_err("refused")
            .to_string()
    };
    let rounding_first = [
        EpilogueNode::Cast {
            from: f32,
            to: bf16,
        },
        EpilogueNode::Cast {
            from: bf16,
            to: f32,
        },
    ];
    assert!(refuse(&rounding_first).contains("before other nodes"));
    let from_elsewhere = [
        EpilogueNode::Cast {
            from: bf16,
            to: f32,
        },
        EpilogueNode::Cast {
            from: DType::F16,
            to: f32,
        },
    ];
    assert!(refuse(&from_elsewhere).contains("after a f32 value"));
}

/// At prefill size the product's HBM round trip and the second launch's reads cost more than
/// the epilogue on the AIVs, which overlaps the Cube: the fused kernel is modelled faster than
/// the GEMM and the vector kernel together.
#[test]
fn fusing_a_residual_add_is_modelled_faster_at_prefill_size() {
    let target = Target::by_name("ascend910b2").expect("target");
    let bf16 = DType::BF16;
    let t = |dims: &[u64]| cubevec_passes::lower::TensorShape::new(bf16, dims.to_vec());
    let fused_ctx = OpContext {
        name: "k3_fused",
        op: &Op::MatMul,
        inputs: vec![
            Some(t(&[4096, 7168])),
            Some(t(&[7168, 2048])),
            Some(t(&[4096, 2048])),
        ],
        outputs: vec![t(&[4096, 2048])],
        target: &target,
    };
    let fused = lower_gemm_epilogue(&fused_ctx, &[binary(BinaryOp::Add, 2, true)]).expect("fused");
    let gemm_ctx = OpContext {
        inputs: fused_ctx.inputs[..2].to_vec(),
        ..fused_ctx.clone()
    };
    let add = Op::Binary(BinaryOp::Add);
    let add_ctx = OpContext {
        op: &add,
        inputs: vec![Some(t(&[4096, 2048])), Some(t(&[4096, 2048]))],
        ..fused_ctx.clone()
    };
    let apart = linear::lower_matmul(&gemm_ctx)
        .expect("gemm")
        .modeled_time_us()
        + cubevec_passes::lower::elementwise::lower_elementwise(&add_ctx)
            .expect("add")
            .modeled_time_us();
    let together = fused.modeled_time_us();
    assert!(together < apart, "fused {together} µs, apart {apart} µs");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For any fitting tiling (tails, A panel, two L0C stages, either swizzle) of one group,
    /// equal groups (a batch) or uneven groups with an empty one, the MIX kernel computes
    /// exactly what the plain GEMM of the same tiling followed by the epilogue in f32 does:
    /// `relu(a·b + e)` rounded once to f16.
    #[test]
    fn any_fitting_tiling_gives_the_unfused_result_exactly(
        m in 1u64..90,
        n in 1u64..90,
        k in 1u64..100,
        m1 in prop_oneof![Just(16u64), Just(32), Just(48)],
        n1 in prop_oneof![Just(16u64), Just(32), Just(64)],
        k0 in prop_oneof![Just(16u64), Just(32)],
        k1_mult in 1u64..3,
        l0c_stages in 1u64..3,
        swizzle in 1u64..4,
        swizzle_n_major in any::<bool>(),
        a_panel in any::<bool>(),
        grouping in 0u8..3,
    ) {
        let target = Target::by_name("ascend910b4").expect("target");
        let f16 = DType::F16;
        let groups = match grouping {
            0 => vec![m],
            1 => vec![m; 3],
            _ => vec![m, 0, m / 2 + 1],
        };
        let a_panel = a_panel && groups.len() == 1;
        let plain = GemmProblem {
            groups: groups.clone(),
            ..GemmProblem::plain("plain", m, n, k, f16, false)
        };
        let fused = GemmProblem {
            epilogue: Some(Epilogue {
                paired: false,
                operands: vec![(EpilogueOperand::Full, f16)],
                steps: vec![
                    ChainStep { op: VecOp::Add, dst: 0, srcs: vec![ChainArg::Input(0), ChainArg::Input(1)] },
                    ChainStep { op: VecOp::Relu, dst: 1, srcs: vec![ChainArg::Temp(0)] },
                ],
                output: 1,
                result: f16,
            }),
            ..plain.clone()
        };
        let tiling = GemmTiling {
            m1, n1, k1: k0 * k1_mult, k0, split_k: 1, l0c_stages, swizzle, swizzle_n_major,
            a_panel,
        };
        let (mu, nu, ku) = (plain.total_m() as usize, n as usize, k as usize);
        let a = GmData::from_tensor(&random(f16, &[mu, ku], m + 7 * k));
        let b = GmData::from_tensor(&random(f16, &[groups.len(), ku, nu], n + 3));
        let e = GmData::from_tensor(&random(f16, &[mu, nu], k + 11));
        let kernel = build(&plain, &tiling, &target).expect("plain");
        let mut params = [a.clone(), b.clone(), GmData::zeros(f16, mu * nu)];
        execute(&kernel, &mut params).expect("plain runs");
        let want: Vec<f64> = (0..mu * nu)
            .map(|i| f64::from((params[2].get(i) as f32 + e.get(i) as f32).max(0.0)))
            .collect();
        let want = GmData::from_f64(f16, &want);
        let kernel = build(&fused, &tiling, &target).expect("fused");
        verify(&kernel, &target).expect("verify");
        let ws: u64 = kernel.params[4].shape.iter().product();
        let mut params = [a, b, GmData::zeros(f16, mu * nu), e, GmData::zeros(f16, ws as usize)];
        execute(&kernel, &mut params).expect("fused runs");
        prop_assert_eq!(params[2].to_f64_vec(), want.to_f64_vec());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Paired (SwiGLU) tiles for any fitting tiling, gate and up stacked in one B or apart:
    /// `silu(a·g) · (a·u)` from the plain GEMM's f16 products, within one f16 rounding.
    #[test]
    fn paired_tiles_combine_the_matching_columns_of_gate_and_up(
        m in 1u64..70,
        n in 1u64..70,
        k in 1u64..80,
        m1 in prop_oneof![Just(16u64), Just(32), Just(48)],
        n1 in prop_oneof![Just(32u64), Just(64)],
        k0 in prop_oneof![Just(16u64), Just(32)],
        l0c_stages in 1u64..3,
        swizzle_n_major in any::<bool>(),
        a_panel in any::<bool>(),
        stacked in any::<bool>(),
    ) {
        let target = Target::by_name("ascend910b4").expect("target");
        let f16 = DType::F16;
        let swiglu = ElementwiseChain::swiglu("", 1, DType::F32);
        let (mu, nu, ku) = (m as usize, n as usize, k as usize);
        let a = GmData::from_tensor(&random(f16, &[mu, ku], m + 5 * k));
        let b = random(f16, &[ku, 2 * nu], n + 1);
        let fused = GemmProblem {
            epilogue: Some(Epilogue {
                paired: true,
                operands: Vec::new(),
                steps: swiglu.steps,
                output: swiglu.output,
                result: f16,
            }),
            halves: Some(if stacked { Halves::Stacked } else { Halves::Separate }),
            ..GemmProblem::plain("paired", m, n, k, f16, false)
        };
        let tiling = GemmTiling {
            m1, n1, k1: k0, k0, split_k: 1, l0c_stages, swizzle: 2, swizzle_n_major, a_panel,
        };
        // The plain product of all 2n columns: gate in the first n, up in the rest.
        let plain = GemmProblem::plain("plain", m, 2 * n, k, f16, false);
        let kernel = build(&plain, &GemmTiling { n1: 32, ..tiling }, &target).expect("plain");
        let mut params = [a.clone(), GmData::from_tensor(&b), GmData::zeros(f16, mu * 2 * nu)];
        execute(&kernel, &mut params).expect("plain runs");
        let product = params[2].to_f64_vec();
        let kernel = build(&fused, &tiling, &target).expect("fused");
        verify(&kernel, &target).expect("verify");
        let ws: usize = kernel.params.last().expect("ws").shape.iter().product::<u64>() as usize;
        // a, B (or the gate's), the result, then the up projection's B apart.
        let values = b.to_f64_vec();
        let columns = |from: usize| {
            let v: Vec<f64> = (0..ku * nu)
                .map(|i| values[(i / nu) * 2 * nu + from + i % nu])
                .collect();
            GmData::from_f64(f16, &v)
        };
        let mut params = vec![a];
        if stacked {
            params.push(GmData::from_tensor(&b));
            params.push(GmData::zeros(f16, mu * nu));
        } else {
            params.extend([columns(0), GmData::zeros(f16, mu * nu), columns(nu)]);
        }
        params.push(GmData::zeros(f16, ws));
        execute(&kernel, &mut params).expect("fused runs");
        for i in 0..mu * nu {
            let (row, col) = (i / nu, i % nu);
            let g = product[row * 2 * nu + col] as f32;
            let u = product[row * 2 * nu + nu + col] as f32;
            let want = f64::from(g / (1.0 + (-g).exp()) * u);
            let got = params[2].get(i);
            prop_assert!((got - want).abs() <= 2e-3 * want.abs().max(1.0), "{i}: {got} vs {want}");
        }
    }
}
