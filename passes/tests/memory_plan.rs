//! Memory planning: random programs get plans in which no two tensors alive at the same time
//! share a byte (checked by brute force here and by `Program::check`), whole models reuse
//! memory across layers, and `Program::check` rejects a plan that overlaps live tensors.

use std::collections::BTreeMap;
use std::path::Path;

use cubevec_frontend::hf::{HfOptions, load};
use cubevec_ir::DType;
use cubevec_ir::kernel::{
    Binding, CoreType, GmTensor, Kernel, Launch, Param, ParamRole, Program, ProgramError, TensorId,
    TensorKind,
};
use cubevec_ir::shape::DimBindings;
use cubevec_ir::target::Target;
use cubevec_passes::partition::memory::{ARENA_ALIGNMENT, plan_memory};
use cubevec_passes::partition::partition;
use proptest::prelude::*;

/// A program over f32 tensors of `sizes` elements; launch `l` touches `launches[l]` (tensor
/// indices, deduplicated): the first touch of a tensor writes it, later ones read it. Tensor 0
/// is a model input; the last tensor is the output.
fn program(sizes: &[u64], launches: &[Vec<usize>]) -> Program {
    let mut written = vec![false; sizes.len()];
    written[0] = true;
    let mut p = Program {
        name: "random".into(),
        tensors: sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| GmTensor {
                name: format!("t{i}"),
                dtype: DType::F32,
                shape: vec![n],
                kind: if i == 0 {
                    TensorKind::Input
                } else {
                    TensorKind::Intermediate
                },
            })
            .collect(),
        ..Program::default()
    };
    for (l, touched) in launches.iter().enumerate() {
        let mut args: Vec<usize> = Vec::new();
        for &t in touched {
            if !args.contains(&t) {
                args.push(t);
            }
        }
        let params = args
            .iter()
            .map(|&t| Param {
                name: format!("p{t}"),
                dtype: DType::F32,
                shape: vec![sizes[t]],
                role: if std::mem::replace(&mut written[t], true) {
                    ParamRole::Input
                } else {
                    ParamRole::Output
                },
            })
            .collect();
        p.kernels.push(Kernel {
            name: format!("k{l}"),
            core: CoreType::Aiv,
            blocks: 1,
            params,
            buffers: Vec::new(),
            cube: Vec::new(),
            vector: Vec::new(),
            tiling: BTreeMap::new(),
        });
        p.launches.push(Launch {
            kernel: l,
            args: args.iter().map(|&t| TensorId(t as u32)).collect(),
        });
    }
    let last = sizes.len() - 1;
    if written[last] {
        p.outputs.push(Binding {
            name: "out".into(),
            tensor: TensorId(last as u32),
            shape: vec![sizes[last]],
        });
    }
    p
}

/// The first and last launch touching each tensor, computed directly (outputs to the end).
fn lifetimes(p: &Program) -> Vec<Option<(usize, usize)>> {
    (0..p.tensors.len())
        .map(|t| {
            let touches: Vec<usize> = (0..p.launches.len())
                .filter(|&l| p.launches[l].args.contains(&TensorId(t as u32)))
                .collect();
            let output = p.outputs.iter().any(|o| o.tensor.index() == t);
            match (touches.first(), output) {
                (Some(&first), true) => Some((first, p.launches.len())),
                (Some(&first), false) => Some((first, *touches.last().unwrap())),
                (None, _) => None,
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn plans_never_overlap_live_tensors(
        sizes in prop::collection::vec(1u64..5000, 2..24),
        picks in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 1..4), 1..30),
    ) {
        let launches: Vec<Vec<usize>> = picks
            .iter()
            .map(|l| l.iter().map(|i| i.index(sizes.len())).collect())
            .collect();
        let mut p = program(&sizes, &launches);
        prop_assume!(p.check().is_ok());
        p.memory = plan_memory(&p);
        p.check().expect("the plan passes the program check");
        let life = lifetimes(&p);
        for (a, ta) in p.tensors.iter().enumerate() {
            let offset = p.memory.offset(TensorId(a as u32));
            let wanted = ta.kind == TensorKind::Intermediate && life[a].is_some();
            prop_assert_eq!(offset.is_some(), wanted, "t{}", a);
            let Some(oa) = offset else { continue };
            prop_assert_eq!(oa % ARENA_ALIGNMENT, 0);
            prop_assert!(oa + ta.bytes() <= p.memory.arena_bytes);
            for (b, tb) in p.tensors.iter().enumerate().skip(a + 1) {
                let Some(ob) = p.memory.offset(TensorId(b as u32)) else { continue };
                let ((fa, la), (fb, lb)) = (life[a].unwrap(), life[b].unwrap());
                let live_together = fa <= lb && fb <= la;
                let share_bytes = oa < ob + tb.bytes() && ob < oa + ta.bytes();
                prop_assert!(!(live_together && share_bytes), "t{} and t{} overlap", a, b);
            }
        }
        // Never more than one allocation per tensor would take.
        let separate: u64 = p
            .tensors
            .iter()
            .enumerate()
            .filter(|&(i, _)| p.memory.offset(TensorId(i as u32)).is_some())
            .map(|(_, t)| t.bytes().next_multiple_of(ARENA_ALIGNMENT))
            .sum();
        prop_assert!(p.memory.arena_bytes <= separate);
    }
}

#[test]
fn the_program_check_rejects_overlapping_live_tensors() {
    // t1 is written by launch 0 and read by launch 1, which writes t2: both alive in launch 1.
    let mut p = program(&[64, 64, 64], &[vec![0, 1], vec![1, 2]]);
    p.memory = plan_memory(&p);
    p.check().expect("planned");
    let (o1, o2) = (p.memory.offsets[1].unwrap(), p.memory.offsets[2].unwrap());
    assert_ne!(o1, o2);
    p.memory.offsets[2] = Some(o1);
    match p.check() {
        Err(ProgramError::Memory(message)) => {
            assert!(
                message.contains("`t1`") && message.contains("`t2`"),
                "{message}"
            );
        }
        other => panic!("expected a memory plan error, got {other:?}"),
    }
    p.memory.offsets[2] = Some(p.memory.arena_bytes);
    assert!(matches!(p.check(), Err(ProgramError::Memory(_))));
}

#[test]
fn a_whole_model_reuses_memory_across_layers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/mixtral");
    let graph = load(&dir, HfOptions::default()).expect("load");
    let target = Target::by_name("ascend910b2").expect("target");
    let mut bindings = DimBindings::new();
    bindings.insert("batch".into(), 2);
    bindings.insert("seq".into(), 7);
    let part = partition(&graph, &target, &bindings).expect("partition");
    let p = &part.program;
    p.check().expect("program with its plan");
    let total: u64 = p
        .tensors
        .iter()
        .filter(|t| t.kind == TensorKind::Intermediate)
        .map(|t| t.bytes())
        .sum();
    assert!(
        p.memory.arena_bytes * 2 < total,
        "arena {} of {total} intermediate bytes",
        p.memory.arena_bytes
    );
}
