//! The kernel verifier rejects broken kernels: each test breaks one rule in an otherwise valid
//! generated kernel and checks the error names it.

use cubevec_ir::DType;
use cubevec_ir::kernel::{Expr, Kernel, MemLevel, Pipe, Stmt, verify};
use cubevec_ir::target::Target;
use cubevec_passes::tile::gemm::{GemmProblem, GemmTiling, build};

fn target() -> Target {
    Target::by_name("ascend910b2").expect("target")
}

fn gemm() -> Kernel {
    let problem = GemmProblem::plain("small", 40, 50, 70, DType::F16, false);
    let tiling = GemmTiling {
        m1: 32,
        n1: 32,
        k1: 32,
        k0: 16,
        split_k: 1,
        l0c_stages: 2,
        swizzle: 2,
        swizzle_n_major: false,
        a_panel: false,
    };
    let kernel = build(&problem, &tiling, &target()).expect("build");
    verify(&kernel, &target()).expect("the unmodified kernel verifies");
    kernel
}

/// Removes the first statement (depth first) matching `pred`; returns whether one was found.
fn remove_first(body: &mut Vec<Stmt>, pred: &dyn Fn(&Stmt) -> bool) -> bool {
    if let Some(i) = body.iter().position(pred) {
        body.remove(i);
        return true;
    }
    body.iter_mut().any(|s| match s {
        Stmt::For { body, .. } => remove_first(body, pred),
        _ => false,
    })
}

/// Applies `f` to every statement, depth first.
fn for_each(body: &mut [Stmt], f: &mut dyn FnMut(&mut Stmt)) {
    for s in body {
        if let Stmt::For { body, .. } = s {
            for_each(body, f);
        }
        f(s);
    }
}

fn error_of(kernel: &Kernel) -> String {
    verify(kernel, &target())
        .expect_err("must be rejected")
        .to_string()
}

#[test]
fn missing_wait_is_a_hazard() {
    let mut k = gemm();
    let is_wait = |s: &Stmt| {
        matches!(
            s,
            Stmt::WaitFlag {
                from: Pipe::Mte2,
                to: Pipe::Mte1,
                ..
            }
        )
    };
    assert!(remove_first(&mut k.cube, &is_wait));
    // The flag is now set twice without a wait, or the MTE1 read races the MTE2 write.
    let err = error_of(&k);
    assert!(err.contains("MTE2") && err.contains("MTE1"), "{err}");
}

#[test]
fn missing_initial_set_deadlocks() {
    let mut k = gemm();
    assert!(remove_first(&mut k.cube, &|s| matches!(
        s,
        Stmt::SetFlag {
            from: Pipe::Fix,
            to: Pipe::M,
            ..
        }
    )));
    let err = error_of(&k);
    assert!(err.contains("deadlock"), "{err}");
}

#[test]
fn unwaited_flag_is_reported() {
    let mut k = gemm();
    let last_wait = k
        .cube
        .iter()
        .rposition(|s| matches!(s, Stmt::WaitFlag { .. }))
        .expect("final waits");
    k.cube.remove(last_wait);
    let err = error_of(&k);
    assert!(err.contains("never waited"), "{err}");
}

#[test]
fn accumulating_into_an_unwritten_accumulator_is_rejected() {
    let mut k = gemm();
    for_each(&mut k.cube, &mut |s| {
        if let Stmt::Mmad { init, .. } = s {
            *init = Expr::Const(0);
        }
    });
    let err = error_of(&k);
    assert!(err.contains("read before it is written"), "{err}");
}

#[test]
fn capacity_counts_every_stage() {
    let mut k = gemm();
    let l1b = k
        .buffers
        .iter_mut()
        .rfind(|b| b.level == MemLevel::L1)
        .expect("the last L1 buffer");
    // 2 stages × 512 × 256 f16 = 512 KiB on top of the A stages, although one stage would fit.
    l1b.rows = 512;
    l1b.cols = 256;
    let err = error_of(&k);
    assert!(err.contains("l1 needs"), "{err}");
}

#[test]
fn misaligned_l0_buffer_is_rejected() {
    let mut k = gemm();
    let l0a = k
        .buffers
        .iter_mut()
        .find(|b| b.level == MemLevel::L0A)
        .expect("an L0A buffer");
    l0a.offset = 256;
    let err = error_of(&k);
    assert!(err.contains("512-byte aligned"), "{err}");
}

#[test]
fn partial_fractal_buffer_is_rejected() {
    let mut k = gemm();
    let l0c = k
        .buffers
        .iter_mut()
        .find(|b| b.level == MemLevel::L0C)
        .expect("an L0C buffer");
    l0c.rows = 40;
    let err = error_of(&k);
    assert!(err.contains("fractals"), "{err}");
}

#[test]
fn out_of_bounds_region_is_rejected() {
    let mut k = gemm();
    for_each(&mut k.cube, &mut |s| {
        if let Stmt::Fixpipe { dst, .. } = s {
            dst.row = dst.row.clone().add(Expr::Const(16));
        }
    });
    let err = error_of(&k);
    assert!(err.contains("exceeds `c`"), "{err}");
}

#[test]
fn threads_report_the_same_first_failure() {
    use cubevec_ir::kernel::exec::BLOCK_VAR;
    use cubevec_ir::kernel::verify_with_threads;
    let valid = gemm();
    assert!(valid.blocks >= 3, "needs several instances");
    for threads in [1, 2, 4] {
        verify_with_threads(&valid, &target(), threads).expect("the unmodified kernel verifies");
    }
    // The last two blocks write their results 16 rows too low: only they fail, and the first of
    // them is the failure reported, whichever thread simulated it.
    let last_two = Expr::Div(
        Box::new(Expr::Var(BLOCK_VAR.to_string())),
        Box::new(Expr::Const(i64::from(valid.blocks) - 2)),
    );
    let mut k = valid.clone();
    for_each(&mut k.cube, &mut |s| {
        if let Stmt::Fixpipe { dst, .. } = s {
            dst.row = dst.row.clone().add(last_two.clone().mul(Expr::Const(16)));
        }
    });
    let alone = verify_with_threads(&k, &target(), 1).expect_err("must be rejected");
    let first_failing = format!("instance {}", valid.blocks - 2);
    assert!(alone.to_string().contains(&first_failing), "{alone}");
    for threads in [2, 4] {
        let shared = verify_with_threads(&k, &target(), threads).expect_err("must be rejected");
        assert_eq!(shared, alone);
    }
}

#[test]
fn core_type_must_match_programs() {
    let mut k = gemm();
    k.vector = k.cube.clone();
    let err = error_of(&k);
    assert!(err.contains("core type"), "{err}");
}

mod mix {
    use cubevec_ir::DType;
    use cubevec_ir::kernel::{
        BufId, Buffer, BufferPlanner, CoreType, Expr, GmTile, Kernel, Layout, MemLevel, Param,
        ParamRole, Pipe, Slice, Stmt, Tile, VecArg, VecOp, verify,
    };

    use super::target;

    fn c(v: u64) -> Expr {
        Expr::c(v)
    }

    fn whole(buf: BufId, rows: u64, cols: u64) -> Tile {
        Tile {
            buf,
            stage: c(0),
            row: c(0),
            col: c(0),
            rows: c(rows),
            cols: c(cols),
        }
    }

    fn gm(param: usize, row: Expr, rows: u64, cols: u64) -> GmTile {
        GmTile {
            param,
            batch: c(0),
            row,
            col: c(0),
            rows: c(rows),
            cols: c(cols),
        }
    }

    fn flag(set: bool, from: Pipe, to: Pipe) -> Stmt {
        if set {
            Stmt::SetFlag {
                from,
                to,
                event: c(0),
            }
        } else {
            Stmt::WaitFlag {
                from,
                to,
                event: c(0),
            }
        }
    }

    /// A 16×16×16 matmul on the AIC whose result the two AIVs each ReLU half of, handed over
    /// through a GM workspace with cross-core flags.
    fn mix_kernel() -> Kernel {
        let t = target();
        let mut p = BufferPlanner::new();
        let buf = |name: &str, level, dtype, layout, rows, cols| Buffer {
            name: name.into(),
            level,
            dtype,
            layout,
            rows,
            cols,
            stages: 1,
            offset: 0,
        };
        let l1a = p.add(&t, buf("l1a", MemLevel::L1, DType::F16, Layout::Nz, 16, 16));
        let l1b = p.add(&t, buf("l1b", MemLevel::L1, DType::F16, Layout::Nz, 16, 16));
        let l0a = p.add(
            &t,
            buf("l0a", MemLevel::L0A, DType::F16, Layout::Zz, 16, 16),
        );
        let l0b = p.add(
            &t,
            buf("l0b", MemLevel::L0B, DType::F16, Layout::Zn, 16, 16),
        );
        let l0c = p.add(
            &t,
            buf("l0c", MemLevel::L0C, DType::F32, Layout::Nz, 16, 16),
        );
        let ub = p.add(&t, buf("ub", MemLevel::Ub, DType::F32, Layout::Nd, 8, 16));
        let param = |name: &str, dtype, role| Param {
            name: name.into(),
            dtype,
            shape: vec![16, 16],
            role,
        };
        let cube = vec![
            Stmt::CopyIn {
                dst: whole(l1a, 16, 16),
                src: gm(0, c(0), 16, 16),
            },
            Stmt::CopyIn {
                dst: whole(l1b, 16, 16),
                src: gm(1, c(0), 16, 16),
            },
            flag(true, Pipe::Mte2, Pipe::Mte1),
            flag(false, Pipe::Mte2, Pipe::Mte1),
            Stmt::LoadL0 {
                dst: whole(l0a, 16, 16),
                src: whole(l1a, 16, 16),
                transpose: false,
            },
            Stmt::LoadL0 {
                dst: whole(l0b, 16, 16),
                src: whole(l1b, 16, 16),
                transpose: false,
            },
            flag(true, Pipe::Mte1, Pipe::M),
            flag(false, Pipe::Mte1, Pipe::M),
            Stmt::Mmad {
                c: l0c,
                c_stage: c(0),
                a: l0a,
                a_stage: c(0),
                b: l0b,
                b_stage: c(0),
                m: c(16),
                n: c(16),
                k: c(16),
                init: c(1),
            },
            flag(true, Pipe::M, Pipe::Fix),
            flag(false, Pipe::M, Pipe::Fix),
            Stmt::Fixpipe {
                dst: gm(2, c(0), 16, 16),
                src: whole(l0c, 16, 16),
                relu: false,
                atomic_add: false,
            },
            Stmt::CrossCoreSet {
                pipe: Pipe::Fix,
                flag: 0,
            },
        ];
        let half = Expr::var("blk").rem(c(2)).mul(c(8));
        let run = Slice {
            buf: ub,
            stage: c(0),
            offset: c(0),
        };
        let vector = vec![
            Stmt::CrossCoreWait { flag: 0 },
            Stmt::CopyIn {
                dst: whole(ub, 8, 16),
                src: gm(2, half.clone(), 8, 16),
            },
            flag(true, Pipe::Mte2, Pipe::V),
            flag(false, Pipe::Mte2, Pipe::V),
            Stmt::Vector {
                op: VecOp::Relu,
                dst: run.clone(),
                srcs: vec![VecArg::Slice(run)],
                count: c(128),
            },
            flag(true, Pipe::V, Pipe::Mte3),
            flag(false, Pipe::V, Pipe::Mte3),
            Stmt::CopyOut {
                dst: gm(3, half, 8, 16),
                src: whole(ub, 8, 16),
            },
        ];
        Kernel {
            name: "mix_relu_matmul".into(),
            core: CoreType::Mix1To2,
            blocks: 1,
            params: vec![
                param("a", DType::F16, ParamRole::Input),
                param("b", DType::F16, ParamRole::Input),
                param("ws", DType::F32, ParamRole::Workspace),
                param("c", DType::F32, ParamRole::Output),
            ],
            buffers: p.finish(),
            cube,
            vector,
            tiling: Default::default(),
        }
    }

    #[test]
    fn mix_kernel_with_cross_core_handoff_verifies() {
        verify(&mix_kernel(), &target()).expect("verify");
    }

    #[test]
    fn unbalanced_cross_core_flags_are_rejected() {
        let mut k = mix_kernel();
        k.vector.remove(0);
        let err = verify(&k, &target())
            .expect_err("AIVs never wait")
            .to_string();
        assert!(err.contains("`ws` is read before it is written"), "{err}");
        let mut k = mix_kernel();
        k.cube.push(Stmt::CrossCoreSet {
            pipe: Pipe::Fix,
            flag: 0,
        });
        let err = verify(&k, &target())
            .expect_err("a set nobody waits for")
            .to_string();
        assert!(err.contains("cross-core flag #0 unbalanced"), "{err}");
        let mut aic_only = mix_kernel();
        aic_only.core = CoreType::Aic;
        aic_only.vector.clear();
        aic_only.buffers.retain(|b| b.level != MemLevel::Ub);
        let err = verify(&aic_only, &target())
            .expect_err("no scheduler")
            .to_string();
        assert!(err.contains("MIX"), "{err}");
    }
}
