//! Prints the chosen GEMM tilings and their modelled performance for DeepSeek-V3 and Mixtral
//! projection shapes on a target (default `ascend910b2`):
//! `cargo run -p cubevec-passes --release --example gemm_tiling [target]`.

use cubevec_ir::DType;
use cubevec_ir::target::Target;
use cubevec_passes::cost::KernelCost;
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
