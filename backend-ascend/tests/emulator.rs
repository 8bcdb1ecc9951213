//! Compiles every C++ kernel test in `emu/tests/` against the AscendC CPU emulation (written out
//! from `EMULATOR_HEADERS`, as the emitter would) with `g++ -std=c++17 -O1 -Wall -Werror` and
//! checks its exit code and output. Checks of API misuse must exit with their own code and name
//! the failing call.

use std::path::Path;
use std::process::Command;

use cubevec_backend_ascend::{EMULATOR_HEADERS, emulator_include_dir, write_emulator_headers};

/// Result of compiling and running one C++ test.
struct RunOutcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Compiles `emu/tests/<name>.cpp` in a fresh temporary directory and runs it.
fn compile_and_run(name: &str) -> RunOutcome {
    let dir = tempfile::tempdir().expect("create temporary directory");
    write_emulator_headers(dir.path()).expect("write emulation headers");
    let source = emulator_include_dir()
        .join("tests")
        .join(format!("{name}.cpp"));
    let binary = dir.path().join(name);
    let compile = Command::new("g++")
        .args(["-std=c++17", "-O1", "-Wall", "-Werror", "-pthread", "-I"])
        .arg(dir.path())
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .output()
        .expect("run g++");
    assert!(
        compile.status.success(),
        "g++ failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&compile.stderr)
    );
    let run = Command::new(&binary)
        .output()
        .expect("run the compiled test");
    RunOutcome {
        code: run.status.code(),
        stdout: String::from_utf8_lossy(&run.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&run.stderr).into_owned(),
    }
}

/// Asserts that the test exits 0 and prints `expected` on stdout.
fn expect_pass(name: &str, expected: &str) {
    let out = compile_and_run(name);
    assert_eq!(
        out.code,
        Some(0),
        "{name} failed\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains(expected),
        "{name} printed:\n{}",
        out.stdout
    );
}

/// Asserts that the test fails with exit `code` and a stderr message containing `call` and
/// `message`, and returns what it printed.
fn expect_failure(name: &str, code: i32, call: &str, message: &str) -> RunOutcome {
    let out = compile_and_run(name);
    assert_eq!(
        out.code,
        Some(code),
        "{name}: wrong exit code\nstderr:\n{}",
        out.stderr
    );
    let wanted = format!("ascendc-emu: {call}: ");
    assert!(
        out.stderr.contains(&wanted),
        "{name}: stderr lacks {wanted:?}:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(message),
        "{name}: stderr lacks {message:?}:\n{}",
        out.stderr
    );
    out
}

/// Relative paths (`/`-separated) of the headers below `dir`, skipping the C++ tests.
fn headers_below(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("list emu/") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            if name != "tests" {
                headers_below(&path, &format!("{prefix}{name}/"), out);
            }
        } else if name.ends_with(".h") {
            out.push(format!("{prefix}{name}"));
        }
    }
}

#[test]
fn embedded_headers_match_the_source_tree() {
    let dir = emulator_include_dir();
    let mut on_disk = Vec::new();
    headers_below(&dir, "", &mut on_disk);
    on_disk.sort();
    let mut embedded: Vec<String> = EMULATOR_HEADERS
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    embedded.sort();
    assert_eq!(
        on_disk, embedded,
        "EMULATOR_HEADERS must list every header in emu/"
    );
    for (name, text) in EMULATOR_HEADERS {
        let file = std::fs::read_to_string(Path::new(&dir).join(name)).expect("read header");
        assert_eq!(&file, text, "{name} differs from its embedded copy");
    }
}

#[test]
fn vector_add_double_buffered() {
    expect_pass("vector_add", "vector_add: 8192 elements OK");
}

#[test]
fn cube_gemm_bf16_matches_reference() {
    expect_pass("gemm_bf16", "gemm_bf16: 50x40x72 OK");
}

#[test]
fn cube_gemv_and_int8_paths() {
    expect_pass("cube_variants", "cube_variants: OK");
}

#[test]
fn cast_rounding_modes() {
    expect_pass("cast_rounding", "cast_rounding: OK");
}

#[test]
fn vector_ops_and_unaligned_copies() {
    expect_pass("vector_ops", "vector_ops: OK");
}

#[test]
fn compare_and_select() {
    expect_pass("compare_select", "compare_select: OK");
}

#[test]
fn mix_kernel_cross_core_handover() {
    expect_pass("mix_cross_core", "mix_cross_core: OK");
}

#[test]
fn atomic_accumulation_data_cache_and_acl_runtime() {
    expect_pass("atomic_acl", "atomic_acl: OK");
}

#[test]
fn check_atomic_add_left_on_names_the_kernel() {
    let out = expect_failure(
        "check_atomic_left_on",
        85,
        "SetAtomicAdd (kernel end)",
        "SetAtomicAdd<half> was never followed by SetAtomicNone",
    );
    assert!(
        out.stderr
            .contains("ascendc-emu: in kernel leaves_atomic_on, AIV 0"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_cross_core_flag_outside_mix_launch() {
    expect_failure(
        "check_cross_core_no_mix",
        90,
        "CrossCoreSetFlag",
        "cross-core sync needs a MIX launch",
    );
}

#[test]
fn check_vector_read_without_mte2_sync() {
    expect_failure(
        "check_missing_sync",
        91,
        "Exp",
        "src reads UB bytes [0, 32) last written by pipe MTE2",
    );
}

#[test]
fn check_fixpipe_read_without_m_fix_sync() {
    expect_failure(
        "check_missing_sync_cube",
        91,
        "Fixpipe(L0C->GM)",
        "ordering M before FIX",
    );
}

#[test]
fn check_mte2_overwrite_without_v_sync() {
    expect_failure(
        "check_write_after_read",
        91,
        "DataCopy(GM->local, count)",
        "dst overwrites UB bytes [0, 32) still being read by pipe V",
    );
}

#[test]
fn check_ub_pool_overflow() {
    expect_failure(
        "check_ub_overflow",
        81,
        "TPipe::InitBuffer",
        "UB pool overflow",
    );
}

#[test]
fn check_l0a_tensor_overflow() {
    expect_failure(
        "check_l0a_overflow",
        81,
        "LoadData(L1->L0, LoadData2DParams)",
        "dst needs 4096 bytes but the A2 tensor holds 2048",
    );
}

#[test]
fn check_gm_overflow() {
    expect_failure(
        "check_gm_overflow",
        81,
        "DataCopy(GM->local, count)",
        "overflows its 256-byte allocation",
    );
}

#[test]
fn check_gm_overflow_inside_an_arena() {
    expect_failure(
        "check_gm_arena_overflow",
        81,
        "DataCopy(GM->local, count)",
        "overflows its 256-byte allocation",
    );
}

#[test]
fn check_misaligned_ub_address() {
    expect_failure(
        "check_misaligned",
        82,
        "DataCopy(GM->local, count)",
        "not 32-byte aligned",
    );
}

#[test]
fn check_copy_length_not_multiple_of_32() {
    expect_failure(
        "check_copy_length",
        83,
        "DataCopy(GM->local, count)",
        "20 bytes is not a multiple of 32",
    );
}

#[test]
fn check_deque_without_enque() {
    expect_failure(
        "check_deque_empty",
        84,
        "TQue::DeQue",
        "DeQue on the empty VECIN queue",
    );
}

#[test]
fn check_tensor_not_freed() {
    expect_failure("check_not_freed", 84, "TQue (kernel end)", "was not freed");
}

#[test]
fn check_more_than_8_outstanding_tensors() {
    expect_failure(
        "check_too_many_outstanding",
        84,
        "TQue::AllocTensor",
        "more than 8 tensors allocated and not freed in VECIN",
    );
}

#[test]
fn check_unpaired_setflag() {
    expect_failure(
        "check_unpaired_setflag",
        85,
        "SetFlag (kernel end)",
        "SetFlag<HardEvent::V_MTE3>(1) has no matching WaitFlag",
    );
}

#[test]
fn check_waitflag_without_setflag() {
    expect_failure(
        "check_waitflag_without_set",
        85,
        "WaitFlag",
        "WaitFlag<HardEvent::MTE2_V>(1) without a preceding SetFlag",
    );
}

#[test]
fn check_more_than_64_buffers() {
    expect_failure(
        "check_too_many_buffers",
        86,
        "TPipe::InitBuffer",
        "at most 64 are allowed",
    );
}

#[test]
fn check_illegal_cast_mode() {
    expect_failure("check_cast_mode", 89, "Cast", "not supported on arch 2201");
}
