//! GEMM tiling properties: for random shapes (primes and tails included) every chosen tiling
//! verifies, its tile loops cover every output element exactly once over the whole K range,
//! and every tile reads exactly the A rows, B columns and K range it needs.

use std::collections::BTreeMap;

use cubevec_ir::DType;
use cubevec_ir::kernel::exec::run_instance;
use cubevec_ir::kernel::{Env, Expr, GmTile, Kernel, KernelError, Side, Stmt, verify};
use cubevec_ir::target::Target;
use cubevec_passes::tile::gemm::{GemmProblem, GemmTiling, build, plan};
use proptest::prelude::*;

/// An evaluated GM region: (batch, row, col, rows, cols).
type Region = (i64, i64, i64, i64, i64);

/// Output rectangle (row, col, rows, cols) → the K ranges accumulated into it.
type Pieces = BTreeMap<(i64, i64, i64, i64), Vec<(i64, i64)>>;

fn eval(e: &Expr, env: &Env) -> Result<i64, KernelError> {
    e.eval(env).map_err(|source| KernelError::Expr {
        context: "test".into(),
        source,
    })
}

fn region(t: &GmTile, env: &Env) -> Result<Region, KernelError> {
    Ok((
        eval(&t.batch, env)?,
        eval(&t.row, env)?,
        eval(&t.col, env)?,
        eval(&t.rows, env)?,
        eval(&t.cols, env)?,
    ))
}

/// Walks every block and checks coverage; returns the number of (tile, K range) pieces.
fn check_coverage(problem: &GemmProblem, kernel: &Kernel) -> usize {
    let m = problem.total_m() as usize;
    let n = problem.n as usize;
    let k = problem.k as i64;
    // Group of each row of A / C.
    let mut group_of_row = Vec::with_capacity(m);
    for (g, &rows) in problem.groups.iter().enumerate() {
        group_of_row.extend(std::iter::repeat_n(g as i64, rows as usize));
    }
    // Output rectangle → K ranges accumulated into it.
    let mut pieces: Pieces = BTreeMap::new();
    let panel = kernel.tiling.get("a_panel") == Some(&1);
    for block in 0..kernel.instances(Side::Cube) {
        let mut a_loads: Vec<Region> = Vec::new();
        let mut b_loads: Vec<Region> = Vec::new();
        let mut visit = |stmt: &Stmt, env: &Env| -> Result<(), KernelError> {
            match stmt {
                Stmt::CopyIn { src, .. } if src.param == 0 => a_loads.push(region(src, env)?),
                Stmt::CopyIn { src, .. } if src.param == 1 => b_loads.push(region(src, env)?),
                Stmt::Fixpipe { dst, .. } => {
                    let (_, r0, c0, rows, cols) = region(dst, env)?;
                    assert!(
                        !b_loads.is_empty(),
                        "tile ({r0}, {c0}) stored without loads"
                    );
                    let k_lo = if problem.b_transposed {
                        b_loads[0].2
                    } else {
                        b_loads[0].1
                    };
                    if panel {
                        // The resident A panel: the tile's rows over the whole K range.
                        let a = a_loads.last().expect("A panel loaded");
                        assert_eq!((a.1, a.3), (r0, rows), "A panel rows of tile ({r0}, {c0})");
                        assert_eq!((a.2, a.4), (0, k), "A panel K range of tile ({r0}, {c0})");
                    } else {
                        assert_eq!(a_loads.len(), b_loads.len());
                    }
                    let mut k_next = k_lo;
                    for (i, b) in b_loads.iter().enumerate() {
                        let (b_k, b_klen, b_col, b_cols) = if problem.b_transposed {
                            (b.2, b.4, b.1, b.3)
                        } else {
                            (b.1, b.3, b.2, b.4)
                        };
                        assert_eq!(
                            b_k, k_next,
                            "K slices of tile ({r0}, {c0}) are not contiguous"
                        );
                        if !panel {
                            // A: the tile's rows, the same K slice.
                            let a = a_loads[i];
                            assert_eq!((a.1, a.3), (r0, rows), "A rows of tile ({r0}, {c0})");
                            assert_eq!((a.2, a.4), (b_k, b_klen), "A K slice of tile ({r0}, {c0})");
                        }
                        assert_eq!(
                            (b_col, b_cols),
                            (c0, cols),
                            "B columns of tile ({r0}, {c0})"
                        );
                        let g = group_of_row[r0 as usize];
                        assert_eq!(
                            group_of_row[(r0 + rows - 1) as usize],
                            g,
                            "tile spans groups"
                        );
                        let expected_batch = if problem.groups.len() > 1 { g } else { 0 };
                        assert_eq!(b.0, expected_batch, "B of the wrong expert");
                        k_next += b_klen;
                    }
                    pieces
                        .entry((r0, c0, rows, cols))
                        .or_default()
                        .push((k_lo, k_next));
                    if !panel {
                        a_loads.clear();
                    }
                    b_loads.clear();
                }
                _ => {}
            }
            Ok(())
        };
        run_instance(kernel, Side::Cube, block, &mut visit).expect("walk");
    }
    let mut covered = vec![0u8; m * n];
    for ((r0, c0, rows, cols), ranges) in &pieces {
        let mut ranges = ranges.clone();
        ranges.sort_unstable();
        let mut at = 0;
        for (lo, hi) in ranges {
            assert_eq!(
                lo, at,
                "K ranges of tile ({r0}, {c0}) leave a gap or overlap"
            );
            at = hi;
        }
        assert_eq!(at, k, "K ranges of tile ({r0}, {c0}) do not reach K");
        for r in *r0..r0 + rows {
            for c in *c0..c0 + cols {
                covered[r as usize * n + c as usize] += 1;
            }
        }
    }
    assert!(
        covered.iter().all(|&c| c == 1),
        "some output element is written {} times or never",
        if covered.contains(&0) { 0 } else { 2 }
    );
    pieces.values().map(Vec::len).sum()
}

fn dtype_strategy() -> impl Strategy<Value = (DType, bool)> {
    prop_oneof![
        Just((DType::F16, false)),
        Just((DType::BF16, true)),
        Just((DType::BF16, false)),
        Just((DType::I8, true)),
    ]
}

fn sizes() -> impl Strategy<Value = u64> {
    prop_oneof![
        1u64..40,
        Just(97u64),
        Just(131),
        Just(257),
        Just(509),
        16u64..600
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn chosen_tilings_verify_and_cover_every_element_once(
        groups in prop::collection::vec(prop_oneof![Just(0u64), sizes()], 1..4),
        n in sizes(),
        k in sizes(),
        (dtype, b_transposed) in dtype_strategy(),
    ) {
        prop_assume!(groups.iter().sum::<u64>() > 0);
        let target = Target::by_name("ascend910b2").expect("target");
        let output = if dtype == DType::I8 { DType::I32 } else { dtype };
        let problem = GemmProblem {
            name: "gemm_prop".into(),
            groups,
            n,
            k,
            input: dtype,
            output,
            b_transposed,
            relu: false,
            epilogue: None,
            halves: None,
        };
        let chosen = plan(&problem, &target).expect("plan");
        verify(&chosen.kernel, &target).expect("verify");
        check_coverage(&problem, &chosen.kernel);
        prop_assert!(chosen.cost.efficiency > 0.0 && chosen.cost.efficiency <= 1.0);
    }

    #[test]
    fn every_fitting_candidate_shape_is_correct_on_small_problems(
        m in 1u64..80,
        n in 1u64..80,
        k in 1u64..300,
        m1 in prop_oneof![Just(16u64), Just(32), Just(48)],
        n1 in prop_oneof![Just(16u64), Just(32), Just(64)],
        k0 in prop_oneof![Just(16u64), Just(32)],
        k1_mult in 1u64..4,
        split_k in 1u64..5,
        l0c_stages in 1u64..3,
        swizzle in 1u64..4,
        swizzle_n_major in any::<bool>(),
        a_panel in any::<bool>(),
    ) {
        let target = Target::by_name("ascend910b4").expect("target");
        let problem = GemmProblem::plain("gemm_any", m, n, k, DType::F16, false);
        let tiling = GemmTiling {
            m1, n1, k1: k0 * k1_mult, k0, split_k: if a_panel { 1 } else { split_k },
            l0c_stages, swizzle, swizzle_n_major, a_panel,
        };
        let kernel = build(&problem, &tiling, &target).expect("build");
        verify(&kernel, &target).expect("verify");
        let pieces = check_coverage(&problem, &kernel);
        let tiles = m.div_ceil(m1) * n.div_ceil(n1);
        prop_assert!(pieces as u64 >= tiles);
    }
}

#[test]
fn split_k_is_used_for_decode_shapes_and_accumulates_atomically() {
    let target = Target::by_name("ascend910b2").expect("target");
    // One 64×128 output tile and a deep K: a single core would stream all of A and B.
    let problem = GemmProblem::plain("decode", 64, 128, 8192, DType::BF16, true);
    let chosen = plan(&problem, &target).expect("plan");
    assert!(chosen.tiling.split_k > 1, "{:?}", chosen.tiling);
    assert!(
        chosen
            .kernel
            .to_string()
            .contains("fixpipe c(mo, no; ml x nl) +=")
    );
    check_coverage(&problem, &chosen.kernel);
}

#[test]
fn a_panel_is_chosen_when_the_a_strip_fits_l1_and_covers_every_element() {
    let target = Target::by_name("ascend910b2").expect("target");
    // K = 2048: a 96-row strip of A over all of K (384 KiB) fits L1 beside B's two stages.
    let problem = GemmProblem::plain("panel", 2048, 2048, 2048, DType::BF16, true);
    let chosen = plan(&problem, &target).expect("plan");
    assert!(chosen.tiling.a_panel, "{:?}", chosen.tiling);
    verify(&chosen.kernel, &target).expect("verify");
    check_coverage(&problem, &chosen.kernel);
    // Deeper K does not fit: the streamed schedule is kept.
    let deep = GemmProblem::plain("deep", 2048, 2048, 8192, DType::BF16, true);
    let mut t = plan(&deep, &target).expect("plan").tiling;
    assert!(!t.a_panel);
    t.a_panel = true;
    assert!(build(&deep, &t, &target).is_err());
}

#[test]
fn unsupported_layouts_and_empty_problems_are_rejected() {
    let target = Target::by_name("ascend910b2").expect("target");
    let int8_kn = GemmProblem {
        output: DType::I32,
        ..GemmProblem::plain("int8_kn", 64, 64, 64, DType::I8, false)
    };
    let err = plan(&int8_kn, &target).expect_err("int8 with B as [k, n]");
    assert!(err.to_string().contains("16-bit"), "{err}");
    let empty = GemmProblem::plain("empty", 0, 64, 64, DType::F16, false);
    assert!(plan(&empty, &target).is_err());
    let fp8 = GemmProblem::plain("fp8", 16, 16, 16, DType::F8E4M3FN, true);
    assert!(plan(&fp8, &target).is_err());
}
