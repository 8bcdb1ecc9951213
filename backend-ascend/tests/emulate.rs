//! `build_and_run` on a small hand-written program: a clean run with exact results, and each
//! failure reported with its cause — an emulator check naming the kernel (a project whose flag
//! wait was removed), a compile error, and a missing input file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cubevec_backend_ascend::{EmulateError, build_and_run, emit_project};
use cubevec_ir::DType;
use cubevec_ir::kernel::{
    Binding, Buffer, BufferPlanner, CoreType, Expr, GmTensor, GmTile, Kernel, Launch, Layout,
    MemLevel, Param, ParamRole, Pipe, Program, Slice, Stmt, TensorId, TensorKind, Tile, VecArg,
    VecOp,
};
use cubevec_ir::target::Target;

/// `out = 3 · x` for `x: f32[2, 40]`, one row per AIV.
fn program() -> Program {
    let target = Target::by_name("ascend910b2").expect("target");
    let mut planner = BufferPlanner::new();
    let ub = planner.add(
        &target,
        Buffer {
            name: "row".into(),
            level: MemLevel::Ub,
            dtype: DType::F32,
            layout: Layout::Nd,
            rows: 1,
            cols: 40,
            stages: 1,
            offset: 0,
        },
    );
    let region = |param| GmTile {
        param,
        batch: Expr::c(0),
        row: Expr::var("blk"),
        col: Expr::c(0),
        rows: Expr::c(1),
        cols: Expr::c(40),
    };
    let tile = Tile {
        buf: ub,
        stage: Expr::c(0),
        row: Expr::c(0),
        col: Expr::c(0),
        rows: Expr::c(1),
        cols: Expr::c(40),
    };
    let row = Slice {
        buf: ub,
        stage: Expr::c(0),
        offset: Expr::c(0),
    };
    let flag = |from, to| {
        [
            Stmt::SetFlag {
                from,
                to,
                event: Expr::c(0),
            },
            Stmt::WaitFlag {
                from,
                to,
                event: Expr::c(0),
            },
        ]
    };
    let mut vector = vec![Stmt::CopyIn {
        dst: tile.clone(),
        src: region(0),
    }];
    vector.extend(flag(Pipe::Mte2, Pipe::V));
    vector.push(Stmt::Vector {
        op: VecOp::Muls,
        dst: row.clone(),
        srcs: vec![VecArg::Slice(row), VecArg::Imm(3.0)],
        count: Expr::c(40),
    });
    vector.extend(flag(Pipe::V, Pipe::Mte3));
    vector.push(Stmt::CopyOut {
        dst: region(1),
        src: tile,
    });
    let param = |name: &str, role| Param {
        name: name.into(),
        dtype: DType::F32,
        shape: vec![2, 40],
        role,
    };
    let tensor = |name: &str, kind| GmTensor {
        name: name.into(),
        dtype: DType::F32,
        shape: vec![2, 40],
        kind,
    };
    Program {
        name: "scale".into(),
        tensors: vec![
            tensor("x", TensorKind::Input),
            tensor("y", TensorKind::Intermediate),
        ],
        kernels: vec![Kernel {
            name: "scale".into(),
            core: CoreType::Aiv,
            blocks: 2,
            params: vec![param("x", ParamRole::Input), param("y", ParamRole::Output)],
            buffers: planner.finish(),
            cube: Vec::new(),
            vector,
            tiling: BTreeMap::new(),
        }],
        launches: vec![Launch {
            kernel: 0,
            args: vec![TensorId(0), TensorId(1)],
        }],
        inputs: vec![Binding {
            name: "x".into(),
            tensor: TensorId(0),
            shape: vec![2, 40],
        }],
        outputs: vec![Binding {
            name: "y".into(),
            tensor: TensorId(1),
            shape: vec![2, 40],
        }],
        memory: Default::default(),
    }
}

/// Writes the project (after `edit` of its kernel source) and the input into `dir`; returns
/// the project, input and output directories.
fn setup(dir: &Path, edit: impl Fn(String) -> String, with_input: bool) -> [PathBuf; 3] {
    let target = Target::by_name("ascend910b2").expect("target");
    let mut project = emit_project(&program(), &target).expect("emit");
    let source = project.files.get_mut("kernels/scale.cpp").expect("kernel");
    *source = edit(String::from_utf8(source.clone()).expect("utf-8")).into_bytes();
    let dirs = ["project", "inputs", "outputs"].map(|d| dir.join(d));
    std::fs::create_dir_all(&dirs[0]).expect("mkdir");
    std::fs::create_dir_all(&dirs[1]).expect("mkdir");
    project.write_into(&dirs[0]).expect("write");
    if with_input {
        let x: Vec<u8> = (0..80)
            .flat_map(|i| (i as f32 - 20.0).to_le_bytes())
            .collect();
        std::fs::write(dirs[1].join("x.bin"), x).expect("write input");
    }
    dirs
}

#[test]
fn clean_run_gives_exact_results_and_missing_inputs_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [project, inputs, outputs] = setup(dir.path(), |s| s, true);
    let run = build_and_run(&project, &inputs, &outputs).expect("run");
    assert_eq!(run.outputs, vec![outputs.join("y.bin")]);
    let y = std::fs::read(&run.outputs[0]).expect("read");
    let got: Vec<f32> = y
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    let want: Vec<f32> = (0..80).map(|i| 3.0 * (i as f32 - 20.0)).collect();
    assert_eq!(got, want);

    std::fs::remove_file(inputs.join("x.bin")).expect("remove input");
    match build_and_run(&project, &inputs, &outputs) {
        Err(EmulateError::Host { excerpt, .. }) => {
            assert!(excerpt.contains("cannot open"), "{excerpt}")
        }
        other => panic!("expected a host failure, got {other:?}"),
    }
}

#[test]
fn a_missing_flag_wait_fails_an_emulator_check_naming_the_kernel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let drop_wait = |s: String| {
        s.lines()
            .filter(|l| !l.contains("WaitFlag<AscendC::HardEvent::MTE2_V>"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let [project, inputs, outputs] = setup(dir.path(), drop_wait, true);
    match build_and_run(&project, &inputs, &outputs) {
        Err(EmulateError::Check {
            kernel,
            core,
            code,
            message,
        }) => {
            assert_eq!((kernel.as_str(), code), ("scale", 91), "{message}");
            assert!(core.starts_with("AIV"), "{core}");
            assert!(message.starts_with("Muls: "), "{message}");
        }
        other => panic!("expected an emulator check failure, got {other:?}"),
    }
}

#[test]
fn compile_errors_quote_the_compiler() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [project, inputs, outputs] = setup(dir.path(), |s| s + "\nthis is not C++;\n", true);
    match build_and_run(&project, &inputs, &outputs) {
        Err(EmulateError::Compile { excerpt, .. }) => {
            assert!(excerpt.contains("kernels/scale.cpp"), "{excerpt}")
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}
