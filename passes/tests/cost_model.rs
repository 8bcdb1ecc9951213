//! Cost-model properties: the memoised walk charges exactly the instructions the program
//! issues, estimates respect the roofline, and the classification follows the shape.

use cubevec_ir::DType;
use cubevec_ir::kernel::exec::run_instance;
use cubevec_ir::kernel::{Env, Side, Stmt};
use cubevec_ir::target::Target;
use cubevec_passes::cost::{Bound, estimate};
use cubevec_passes::tile::gemm::{
    GemmProblem, GemmTiling, candidates, evaluate, lower_bound_us, plan,
};
use proptest::prelude::*;

fn target() -> Target {
    Target::by_name("ascend910b2").expect("target")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The Cube busy time of the slowest core equals the Mmad cycles counted by walking every
    /// instruction of every block without memoisation.
    #[test]
    fn memoised_cube_time_matches_a_full_walk(m in 1u64..300, n in 1u64..300, k in 1u64..900) {
        let target = target();
        let problem = GemmProblem::plain("walk", m, n, k, DType::F16, true);
        let chosen = plan(&problem, &target).expect("plan");
        let overhead = target.model.instruction_overhead_cycles as f64;
        let mut slowest = 0.0f64;
        for block in 0..chosen.kernel.instances(Side::Cube) {
            let mut cycles = 0.0;
            let mut visit = |s: &Stmt, env: &Env| {
                if let Stmt::Mmad { m, n, k, .. } = s {
                    let e = |x: &cubevec_ir::kernel::Expr| x.eval(env).expect("eval") as f64;
                    cycles += e(m) * e(n) * (e(k) / 16.0).ceil() * 16.0 / 4096.0 + overhead;
                }
                Ok(())
            };
            run_instance(&chosen.kernel, Side::Cube, block, &mut visit).expect("walk");
            slowest = slowest.max(cycles);
        }
        let cube_us = chosen
            .cost
            .pipe_busy_us
            .iter()
            .find(|(p, _)| p == "M")
            .map(|(_, t)| *t)
            .expect("cube busy");
        // The slowest instance by span need not be the one with the most Mmads.
        prop_assert!(cube_us <= slowest / target.clock_hz() * 1e6 * (1.0 + 1e-9));
        prop_assert!(cube_us > 0.0);
        prop_assert!(chosen.cost.modeled_time_us >= chosen.cost.roofline_time_us * (1.0 - 1e-9));
        prop_assert!(chosen.cost.efficiency > 0.0 && chosen.cost.efficiency <= 1.0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// The planner's pruning bound never exceeds the modelled time, for every candidate (so
    /// pruning never drops the winner).
    #[test]
    fn lower_bound_never_exceeds_the_estimate(
        m in 1u64..700,
        n in 1u64..700,
        k in 1u64..1500,
        b_transposed in any::<bool>(),
    ) {
        let target = target();
        let problem = GemmProblem::plain("bound", m, n, k, DType::BF16, b_transposed);
        for t in candidates(&problem, &target).expect("candidates").iter().step_by(7) {
            let bound = lower_bound_us(&problem, t, &target);
            let time = evaluate(&problem, t, &target).expect("evaluate").cost.modeled_time_us;
            prop_assert!(bound > 0.0 && bound <= time * (1.0 + 1e-9), "{t:?}: {bound} > {time}");
        }
    }
}

#[test]
fn decode_is_memory_bound_and_large_square_is_compute_bound() {
    let target = target();
    let decode = plan(
        &GemmProblem::plain("d", 1, 7168, 2048, DType::BF16, true),
        &target,
    )
    .expect("plan");
    assert_eq!(decode.cost.bound, Bound::Memory);
    let square = plan(
        &GemmProblem::plain("s", 2048, 2048, 2048, DType::BF16, true),
        &target,
    )
    .expect("plan");
    assert_eq!(square.cost.bound, Bound::Compute);
    // Doubling K of a compute-bound GEMM roughly doubles its modelled time.
    let deeper = plan(
        &GemmProblem::plain("s2", 2048, 2048, 4096, DType::BF16, true),
        &target,
    )
    .expect("plan");
    let ratio = deeper.cost.modeled_time_us / square.cost.modeled_time_us;
    assert!((1.6..2.2).contains(&ratio), "{ratio}");
}

#[test]
fn search_never_loses_to_the_catlass_tiles() {
    let target = target();
    for (m, n, k) in [
        (4096, 4096, 4096),
        (128, 7168, 2048),
        (1, 4096, 7168),
        (333, 1000, 777),
    ] {
        let problem = GemmProblem::plain("cmp", m, n, k, DType::BF16, true);
        let chosen = plan(&problem, &target).expect("plan");
        let reference =
            evaluate(&problem, &GemmTiling::catlass_default(&problem), &target).expect("catlass");
        assert!(
            chosen.cost.modeled_time_us <= reference.cost.modeled_time_us * (1.0 + 1e-9),
            "{m}x{n}x{k}: {} > {}",
            chosen.cost.modeled_time_us,
            reference.cost.modeled_time_us
        );
    }
}

#[test]
fn a_slower_clock_is_slower() {
    let problem = GemmProblem::plain("clk", 2048, 2048, 2048, DType::F16, true);
    let b2 = target();
    let b4 = Target::by_name("ascend910b4").expect("910B4");
    let t2 = plan(&problem, &b2).expect("b2").cost.modeled_time_us;
    let t4 = plan(&problem, &b4).expect("b4").cost.modeled_time_us;
    assert!(t4 > t2, "{t4} <= {t2}");
    let kernel = plan(&problem, &b2).expect("b2").kernel;
    let same = estimate(&kernel, &b2, &problem.work()).expect("estimate");
    assert_eq!(same.modeled_time_us, t2, "estimates are deterministic");
}
