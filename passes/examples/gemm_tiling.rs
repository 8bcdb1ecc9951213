//! Prints the chosen GEMM tilings and their modelled performance for DeepSeek-V3 and Mixtral
//! projection shapes on a target (default `ascend910b2`), and what fusing the vector work after
//! a projection into its kernel (a MIX epilogue) saves:
//! `cargo run -p cubevec-passes --release --example gemm_tiling [target]`.

use cubevec_ir::op::BinaryOp;
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Op};
use cubevec_passes::cost::KernelCost;
use cubevec_passes::lower::epilogue::{EpilogueNode, lower_gemm_epilogue};
use cubevec_passes::lower::{Lowering, OpContext, TensorShape, elementwise, linear};
use cubevec_passes::tile::gemm::{GemmPlan, GemmProblem, GemmTiling, evaluate, plan};

/// What sets the modelled time: the slowest core, the L2 traffic or the HBM traffic.
fn limiter(cost: &KernelCost) -> &'static str {
    if cost.hbm_time_us >= cost.core_time_us.max(cost.l2_time_us) {
        "hbm"
    } else if cost.l2_time_us >= cost.core_time_us {
        "l2"
    } else {
        "core"
    }
}

/// `m1xn1xk1/k0 sS cC`, with ` panel` for the A-panel schedule.
fn tiles(chosen: &GemmPlan) -> String {
    let t = chosen.tiling;
    format!(
        "{}x{}x{}/{} s{} c{}{}",
        t.m1,
        t.n1,
        t.k1,
        t.k0,
        chosen.kernel.tiling.get("split_k").copied().unwrap_or(1),
        t.l0c_stages,
        if t.a_panel { " panel" } else { "" }
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target_name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ascend910b2".into());
    let target = Target::by_name(&target_name)?;
    let peak = target.peak_cube_flops(DType::BF16).unwrap_or(0.0);
    println!(
        "target {} ({} AIC @ {} MHz, bf16 peak {:.1} TFLOPS, HBM {} GB/s)",
        target.name,
        target.cores.aic,
        target.cores.clock_mhz,
        peak / 1e12,
        target.memory.hbm_gbps
    );
    // (model, projection, N, K); weights stored [n, k] as in the checkpoints.
    let projections: [(&str, &str, u64, u64); 8] = [
        ("deepseek-v3", "q_a_proj", 1536, 7168),
        ("deepseek-v3", "kv_a_proj", 576, 7168),
        ("deepseek-v3", "o_proj", 7168, 16384),
        ("deepseek-v3", "expert_gate_up", 4096, 7168),
        ("deepseek-v3", "expert_down", 7168, 2048),
        ("deepseek-v3", "dense_down", 7168, 18432),
        ("mixtral-8x7b", "expert_gate_up", 28672, 4096),
        ("mixtral-8x7b", "expert_down", 4096, 14336),
    ];
    println!(
        "{:<13} {:<15} {:>5} {:>6} {:>6} | {:<30} | {:>10} {:>10} {:>7} {:<7} {:<4} | {:>8}",
        "model",
        "proj",
        "M",
        "N",
        "K",
        "tiles m1xn1xk1/k0 split l0c",
        "model_us",
        "roof_us",
        "eff",
        "bound",
        "lim",
        "catlass"
    );
    for (model, proj, n, k) in projections {
        for m in [1u64, 16, 64, 128, 256, 4096] {
            let problem = GemmProblem::plain("gemm", m, n, k, DType::BF16, true);
            let chosen = plan(&problem, &target)?;
            let baseline = evaluate(&problem, &GemmTiling::catlass_default(&problem), &target)?;
            println!(
                "{:<13} {:<15} {:>5} {:>6} {:>6} | {:<30} | {:>10.2} {:>10.2} {:>6.1}% {:<7} {:<4} | {:>7.1}%",
                model,
                proj,
                m,
                n,
                k,
                tiles(&chosen),
                chosen.cost.modeled_time_us,
                chosen.cost.roofline_time_us,
                chosen.cost.efficiency * 100.0,
                format!("{:?}", chosen.cost.bound),
                limiter(&chosen.cost),
                baseline.cost.efficiency * 100.0,
            );
        }
    }
    println!();
    println!("square GEMMs (bf16, B as [n, k]):");
    for s in [1024u64, 2048, 4096, 8192] {
        let problem = GemmProblem::plain("gemm", s, s, s, DType::BF16, true);
        let chosen = plan(&problem, &target)?;
        let baseline = evaluate(&problem, &GemmTiling::catlass_default(&problem), &target)?;
        println!(
            "{s:>5}^3 tiles {}: {:.2} us, {:.1} TFLOPS, {:.1}% of roofline ({:?}, {}); CATLASS tiles {:.1}%",
            tiles(&chosen),
            chosen.cost.modeled_time_us,
            chosen.cost.flops / chosen.cost.modeled_time_us / 1e6,
            chosen.cost.efficiency * 100.0,
            chosen.cost.bound,
            limiter(&chosen.cost),
            baseline.cost.efficiency * 100.0
        );
    }
    gm_read_ceiling(&target, DType::BF16);
    println!();
    fused_epilogues(&target)?;
    println!();
    let started = std::time::Instant::now();
    for s in [1024u64, 2048, 4096, 8192] {
        plan(
            &GemmProblem::plain("again", s, s, s, DType::BF16, true),
            &target,
        )?;
    }
    println!(
        "planning the square GEMMs again (cached): {:.3} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// Prints the most of the Cube's time a large GEMM can use when each core streams A and B from
/// GM at the target's per-core rate: an output tile must fit L0C in f32, and each K step of an
/// `m x n` tile reads `(m + n) * k` inputs for `m * n * k` MACs.
fn gm_read_ceiling(target: &Target, dtype: DType) {
    let Some(fractal) = target.fractal(dtype) else {
        return;
    };
    let outputs = target.buffers.l0c.bytes / 4;
    let bytes = dtype.bits() as f64 / 8.0;
    // GM bytes per cycle an `m x n` tile reads to keep the Cube busy, and the busy fraction
    // the target's rate allows.
    let needed =
        |m: u64, n: u64| fractal.macs_per_cycle as f64 * bytes * (m + n) as f64 / (m * n) as f64;
    let busy = |m: u64, n: u64| (target.mte.gm_bytes_per_cycle_per_core / needed(m, n)).min(1.0);
    let best = (1..=outputs / 16 / 16)
        .map(|m| 16 * m)
        .map(|m| (m, (outputs / m) / 16 * 16))
        .filter(|&(_, n)| n > 0)
        .max_by(|a, b| busy(a.0, a.1).total_cmp(&busy(b.0, b.1)));
    if let Some((m, n)) = best {
        println!(
            "ceiling: the best output tile that fits L0C ({m}x{n} f32) needs {:.1} B/cycle of GM \
             reads per core to keep the Cube busy; at {:.1} B/cycle it is busy at most {:.1}% of \
             the time",
            needed(m, n),
            target.mte.gm_bytes_per_cycle_per_core,
            busy(m, n) * 100.0
        );
    }
}

/// The projection and its vector work as separate kernels against one MIX kernel: a dense
/// SwiGLU MLP's gate/up projection (stacked weights) and an output projection with its
/// residual add, bf16.
fn fused_epilogues(target: &Target) -> Result<(), Box<dyn std::error::Error>> {
    println!("fused epilogues (bf16): modelled time apart (launches) -> one MIX kernel");
    // (model, what, N of the product, K, stacked SwiGLU halves or a residual add).
    let cases: [(&str, &str, u64, u64, bool); 4] = [
        (
            "deepseek-v3",
            "dense gate/up + swiglu",
            2 * 18432,
            7168,
            true,
        ),
        ("deepseek-v3", "o_proj + residual", 7168, 16384, false),
        (
            "qwen2-57b-a14b",
            "shared gate/up + swiglu",
            2 * 20480,
            3584,
            true,
        ),
        ("mixtral-8x7b", "o_proj + residual", 4096, 4096, false),
    ];
    let t = |dims: &[u64]| TensorShape::new(DType::BF16, dims.to_vec());
    for (model, what, n, k, swiglu) in cases {
        for m in [16u64, 256, 4096] {
            let out_n = if swiglu { n / 2 } else { n };
            let mut inputs = vec![Some(t(&[m, k])), Some(t(&[k, n]))];
            if !swiglu {
                inputs.push(Some(t(&[m, n])));
            }
            let ctx = OpContext {
                name: "fused",
                op: &Op::MatMul,
                inputs,
                outputs: vec![t(&[m, out_n])],
                target,
            };
            let nodes = if swiglu {
                vec![EpilogueNode::SwiGlu { up: None }]
            } else {
                vec![EpilogueNode::Binary {
                    op: BinaryOp::Add,
                    operand: 2,
                    product_first: true,
                }]
            };
            let fused = lower_gemm_epilogue(&ctx, &nodes)?;
            let gemm = linear::lower_matmul(&OpContext {
                inputs: ctx.inputs[..2].to_vec(),
                outputs: vec![t(&[m, n])],
                ..ctx.clone()
            })?;
            let vector = if swiglu {
                let op = Op::SwiGlu {
                    split: true,
                    limit_bits: None,
                };
                elementwise::lower_split_swiglu(&OpContext {
                    op: &op,
                    inputs: vec![Some(t(&[m, n]))],
                    ..ctx.clone()
                })?
            } else {
                let op = Op::Binary(BinaryOp::Add);
                elementwise::lower_elementwise(&OpContext {
                    op: &op,
                    inputs: vec![Some(t(&[m, n])), Some(t(&[m, n]))],
                    ..ctx.clone()
                })?
            };
            let launches = |l: &Lowering| l.calls.len();
            let apart = gemm.modeled_time_us() + vector.modeled_time_us();
            println!(
                "{:<14} {:<24} M {:>4}: {:>9.2} us ({}) -> {:>9.2} us ({:+.1}%)",
                model,
                what,
                m,
                apart,
                launches(&gemm) + launches(&vector),
                fused.modeled_time_us(),
                (fused.modeled_time_us() / apart - 1.0) * 100.0
            );
        }
    }
    Ok(())
}
