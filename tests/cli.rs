//! The `compile-model` command as a user runs it: every flag, its output files and its errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cubevec::ir::npy::read_npy;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(path: &str) -> PathBuf {
    repo().join("tests/fixtures").join(path)
}

fn compile_model(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_compile-model"))
        .args(args)
        .output()
        .expect("compile-model runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a clean failure: exit code 1, one `error:` line naming what is wrong, no panic.
fn assert_fails_with(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
}

fn max_abs_diff(a: &Path, b: &Path) -> (f32, f32) {
    let (a, b) = (read_npy(a).unwrap(), read_npy(b).unwrap());
    assert_eq!(a.shape(), b.shape());
    let scale = b.to_f32_vec().iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a
        .to_f32_vec()
        .iter()
        .zip(b.to_f32_vec())
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    (diff, scale)
}

#[test]
fn emit_ir_prints_text_that_parses_back_to_the_same_graph() {
    let model = fixture("ir/swiglu_mlp.cvir");
    let out = compile_model(&[model.to_str().unwrap(), "--emit", "ir"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let original = std::fs::read_to_string(&model).unwrap();
    assert_eq!(printed, original);
}

#[test]
fn emit_ir_reads_hugging_face_checkpoints_and_onnx() {
    let hf = fixture("models/qwen3-moe");
    let out = compile_model(&[hf.to_str().unwrap(), "--emit", "ir"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("graph @qwen3_moe {"), "{text}");
    assert!(text.contains("= moe("), "no moe op");
    assert!(text.contains("return %logits"));

    let onnx = fixture("models/mixtral-opset20.onnx");
    let out = compile_model(&[onnx.to_str().unwrap(), "--emit", "ir"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("input %input_ids: i64["));
}

#[test]
fn emit_dot_prints_a_digraph() {
    let model = fixture("ir/swiglu_mlp.cvir");
    let out = compile_model(&[model.to_str().unwrap(), "--emit", "dot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dot = stdout(&out);
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("swiglu"));
}

#[test]
fn shapes_only_compiles_the_full_deepseek_v3_config() {
    let dir = fixture("configs/deepseek-v3");
    let out = compile_model(&[dir.to_str().unwrap(), "--shapes-only", "--emit", "ir"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.matches("= moe(").count(), 58);
    assert!(text.contains("f32[batch, seq, 129280]"));
}

#[test]
fn run_reference_writes_outputs_that_match_numpy() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let x = fixture("ir/swiglu_mlp.x.npy");
    let out = compile_model(&[
        fixture("ir/swiglu_mlp.cvir").to_str().unwrap(),
        "--run",
        "--reference",
        "--input",
        &format!("x={}", x.display()),
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (diff, scale) = max_abs_diff(&out_dir.join("y.npy"), &fixture("ir/swiglu_mlp.y.npy"));
    assert!(diff <= 1e-6 * scale.max(1.0), "diff {diff}");
}

#[test]
fn kernel_reference_runs_and_verifies_the_tiled_program() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let x = fixture("ir/swiglu_mlp.x.npy");
    let x_arg = format!("x={}", x.display());
    let model = fixture("ir/swiglu_mlp.cvir");
    let out = compile_model(&[
        model.to_str().unwrap(),
        "--target",
        "ascend910b2",
        "--run",
        "--kernel-reference",
        "--verify",
        "--input",
        &x_arg,
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("verified 4 launches"),
        "{}",
        stderr(&out)
    );
    let (diff, scale) = max_abs_diff(&out_dir.join("y.npy"), &fixture("ir/swiglu_mlp.y.npy"));
    assert!(diff <= 1e-6 * scale.max(1.0), "diff {diff}");
    // The kernels are specialised to the inputs' sizes: `tokens` comes from x.
    assert!(stderr(&out).contains("tokens=3"), "{}", stderr(&out));
    let out = compile_model(&[model.to_str().unwrap(), "--verify", "--input", &x_arg]);
    assert_fails_with(&out, &["--target"]);
}

#[test]
fn out_writes_the_ascend_project_and_emulate_runs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("project");
    let out_dir = tmp.path().join("out");
    let x = fixture("ir/swiglu_mlp.x.npy");
    let out = compile_model(&[
        fixture("ir/swiglu_mlp.cvir").to_str().unwrap(),
        "--target",
        "ascend910b2",
        "-o",
        project.to_str().unwrap(),
        "--run",
        "--emulate",
        "--input",
        &format!("x={}", x.display()),
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for file in ["CMakeLists.txt", "manifest.json", "host/main.cpp"] {
        assert!(project.join(file).is_file(), "{file} missing");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.join("manifest.json")).unwrap())
            .unwrap();
    for constant in manifest["constants"].as_array().unwrap() {
        let file = project
            .join("data")
            .join(constant["file"].as_str().unwrap());
        let bytes = std::fs::metadata(&file).unwrap().len();
        assert_eq!(
            bytes,
            constant["bytes"].as_u64().unwrap(),
            "{}",
            file.display()
        );
    }
    let (diff, scale) = max_abs_diff(&out_dir.join("y.npy"), &fixture("ir/swiglu_mlp.y.npy"));
    assert!(diff <= 1e-6 * scale.max(1.0), "diff {diff}");
    // A second write of the same project is byte-identical.
    let again = tmp.path().join("again");
    let out = compile_model(&[
        fixture("ir/swiglu_mlp.cvir").to_str().unwrap(),
        "--target",
        "ascend910b2",
        "--dim",
        "tokens=3",
        "-o",
        again.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for file in ["manifest.json", "host/main.cpp", "CMakeLists.txt"] {
        assert_eq!(
            std::fs::read(project.join(file)).unwrap(),
            std::fs::read(again.join(file)).unwrap(),
            "{file}"
        );
    }
}

/// Runs the checkpoint fixture `name` on its `input_ids.npy` with the reference interpreter,
/// with `extra` flags, and checks its logits against torch's within 1e-4 of the largest.
fn check_checkpoint_run(name: &str, extra: &[&str]) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("logits");
    let dir = fixture(&format!("models/{name}"));
    let ids = format!("input_ids={}", dir.join("input_ids.npy").display());
    let mut args = vec![
        dir.to_str().unwrap(),
        "--run",
        "--reference",
        "--input",
        &ids,
        "--output-dir",
        out_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = compile_model(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let (diff, scale) = max_abs_diff(&out_dir.join("logits.npy"), &dir.join("logits.npy"));
    assert!(diff <= 1e-4 * scale, "{name}: diff {diff} vs scale {scale}");
    out
}

#[test]
fn run_reference_on_a_checkpoint_matches_torch_logits() {
    let out = check_checkpoint_run("mixtral", &["-q"]);
    let err = stderr(&out);
    assert!(err.is_empty(), "-q prints nothing: {err}");
}

#[test]
fn compute_dtype_runs_a_bf16_checkpoint_in_f32() {
    check_checkpoint_run("mixtral-bf16", &["--compute-dtype", "f32"]);
}

#[test]
fn missing_model_is_a_clean_error() {
    let out = compile_model(&["no/such/model.onnx", "--emit", "ir"]);
    assert_fails_with(&out, &["no/such/model.onnx"]);
}

#[test]
fn unknown_format_is_a_clean_error() {
    let out = compile_model(&[
        fixture("ir/swiglu_mlp.x.npy").to_str().unwrap(),
        "--emit",
        "ir",
    ]);
    assert_fails_with(&out, &["swiglu_mlp.x.npy", "not a model"]);
}

#[test]
fn parse_errors_give_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.cvir");
    std::fs::write(&bad, "graph @g {\n  input %x: f33[2]\n  return %x\n}\n").unwrap();
    let out = compile_model(&[bad.to_str().unwrap(), "--emit", "ir"]);
    assert_fails_with(&out, &["bad.cvir:2:", "f33"]);
    // The message already holds the position: no repeated cause line.
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

#[test]
fn invalid_graph_names_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.cvir");
    std::fs::write(
        &bad,
        "graph @g {\n  input %x: f32[2]\n  %y: f32[3] = exp(%x) @the_exp\n  return %y\n}\n",
    )
    .unwrap();
    let out = compile_model(&[bad.to_str().unwrap(), "--emit", "ir"]);
    assert_fails_with(&out, &["the_exp"]);
}

#[test]
fn nothing_to_do_is_an_error() {
    let out = compile_model(&[fixture("ir/swiglu_mlp.cvir").to_str().unwrap()]);
    assert_fails_with(&out, &["nothing to do"]);
}

#[test]
fn run_needs_an_engine_an_output_dir_and_the_right_inputs() {
    let model = fixture("ir/swiglu_mlp.cvir");
    let model = model.to_str().unwrap();
    let x = format!("x={}", fixture("ir/swiglu_mlp.x.npy").display());
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let out_dir = out_dir.to_str().unwrap();

    let out = compile_model(&[model, "--run", "--input", &x, "--output-dir", out_dir]);
    assert_fails_with(&out, &["--reference"]);

    let out = compile_model(&[model, "--run", "--reference", "--input", &x]);
    assert_fails_with(&out, &["--output-dir"]);

    let out = compile_model(&[model, "--run", "--reference", "--output-dir", out_dir]);
    assert_fails_with(&out, &["needs input `x`"]);

    let wrong = format!("z={}", fixture("ir/swiglu_mlp.x.npy").display());
    let out = compile_model(&[
        model,
        "--run",
        "--reference",
        "--input",
        &wrong,
        "--output-dir",
        out_dir,
    ]);
    assert_fails_with(&out, &["`z` is not an input"]);

    let out = compile_model(&[
        model,
        "--run",
        "--reference",
        "--input",
        "x",
        "--output-dir",
        out_dir,
    ]);
    assert_fails_with(&out, &["NAME=FILE.npy"]);

    let missing = "x=no/such/input.npy";
    let out = compile_model(&[
        model,
        "--run",
        "--reference",
        "--input",
        missing,
        "--output-dir",
        out_dir,
    ]);
    assert_fails_with(&out, &["no/such/input.npy"]);
    assert!(
        !Path::new(out_dir).exists(),
        "no output directory after a failed run"
    );
}

#[test]
fn wrong_input_shape_fails_without_leaving_an_output_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    // input_ids.npy of the mixtral fixture is i64 [2, 7]; the MLP wants f32 [tokens, 4].
    let wrong = format!("x={}", fixture("models/mixtral/input_ids.npy").display());
    let out = compile_model(&[
        fixture("ir/swiglu_mlp.cvir").to_str().unwrap(),
        "--run",
        "--reference",
        "--input",
        &wrong,
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert_fails_with(&out, &["x"]);
    assert!(!out_dir.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn shapes_only_cannot_run_and_applies_to_checkpoints_only() {
    let dir = fixture("configs/mixtral-8x7b-v0.1");
    let out = compile_model(&[
        dir.to_str().unwrap(),
        "--shapes-only",
        "--run",
        "--reference",
    ]);
    assert_fails_with(&out, &["--shapes-only"]);
    let model = fixture("ir/swiglu_mlp.cvir");
    let out = compile_model(&[model.to_str().unwrap(), "--shapes-only", "--emit", "ir"]);
    assert_fails_with(&out, &["Hugging Face"]);
}

#[test]
fn output_is_deterministic() {
    let dir = fixture("configs/qwen3-30b-a3b");
    let first = compile_model(&[dir.to_str().unwrap(), "--shapes-only", "--emit", "ir"]);
    let second = compile_model(&[dir.to_str().unwrap(), "--shapes-only", "--emit", "ir"]);
    assert!(first.status.success());
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn emit_optimized_ir_fuses_the_exported_moe_and_report_writes_json() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report.json");
    let model = fixture("models/mixtral-opset20.onnx");
    let out = compile_model(&[
        model.to_str().unwrap(),
        "--emit",
        "optimized-ir",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.matches("= moe(").count(), 2, "one moe per layer");
    assert!(text.contains("= rms_norm("));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let optimize = &json["optimize"];
    assert_eq!(optimize["ops_after"]["moe"], 2);
    assert!(optimize["cost_after"].as_f64().unwrap() < optimize["cost_before"].as_f64().unwrap());
}

#[test]
fn verbose_prints_what_the_optimiser_did() {
    let model = fixture("ir/swiglu_mlp.cvir");
    let out = compile_model(&[model.to_str().unwrap(), "--emit", "optimized-ir", "-v"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("modelled time") && err.contains("time: read"),
        "{err}"
    );
}

#[test]
fn optimize_then_run_matches_torch_and_report_prints_phases() {
    let out = check_checkpoint_run("qwen2-moe", &["--optimize", "--report"]);
    let err = stderr(&out);
    assert!(err.contains("modelled time"), "{err}");
}

#[test]
fn emit_kernel_ir_for_a_target_with_a_json_report() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report.json");
    let model = fixture("ir/mlp_block_bf16.cvir");
    let out = compile_model(&[
        model.to_str().unwrap(),
        "--target",
        "ascend910b2",
        "--dim",
        "tokens=4096",
        "--emit",
        "kernel-ir",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // The norm, then two MIX kernels: gate and up projections with their SwiGLU, and the down
    // projection with the residual add.
    assert_eq!(text.matches("\nkernel ").count() + 1, 4, "{text}");
    assert!(text.contains("kernel k0_norm core=aiv"), "{text}");
    assert!(text.contains("kernel k1_gate_proj core=mix1:2"), "{text}");
    assert!(text.contains("kernel k4_down_proj core=mix1:2"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["target"], "ascend910b2");
    let kernels = json["kernels"].as_array().unwrap();
    assert_eq!(kernels.len(), 3);
    for k in kernels {
        for field in [
            "name",
            "kind",
            "tiles",
            "flops",
            "bytes",
            "modeled_time_us",
            "bound",
        ] {
            assert!(!k[field].is_null(), "{field} missing in {k}");
        }
        let efficiency = k["efficiency"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&efficiency), "{k}");
    }
    let gate = kernels
        .iter()
        .find(|k| k["name"] == "k1_gate_proj")
        .unwrap();
    assert_eq!(gate["bound"], "Compute");
    // Both projections' work: 2 · tokens · 2 · 14336 · 4096.
    assert_eq!(gate["flops"], 2.0 * 4096.0 * 2.0 * 14336.0 * 4096.0);
    let down = kernels
        .iter()
        .find(|k| k["name"] == "k4_down_proj")
        .unwrap();
    assert_eq!(down["kind"], "Mix");
}

#[test]
fn devices_and_context_set_the_memory_per_device() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report.json");
    let model = fixture("models/mixtral");
    let out = compile_model(&[
        model.to_str().unwrap(),
        "--target",
        "ascend910b2",
        "--batch",
        "3",
        "--seq-len",
        "8",
        "--devices",
        "2",
        "--context",
        "100",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stderr(&out);
    assert!(
        summary.contains("per device on 2 x ascend910b2")
            && summary.contains("(2 of 3 sequence(s) x 100 positions)"),
        "{summary}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let d = &json["deployment"];
    assert_eq!(d["devices"], 2);
    assert_eq!(d["sequences"], 3);
    assert_eq!(d["context"], 100);
    // Keys and values of 2 layers x 2 KV heads x 16 head features in f32, for 100 positions.
    let per_sequence = 100 * 2 * 2 * 2 * 16 * 4;
    assert_eq!(d["kv_bytes_per_sequence"], per_sequence);
    assert_eq!(d["kv_bytes_per_device"], 2 * per_sequence);
    let per_token = &json["per_token"];
    assert_eq!(per_token["prefill_tokens"], 24);
    assert_eq!(per_token["decode_tokens"], 3);
}

#[test]
fn kernel_planning_errors_name_the_target_or_the_dimension() {
    let model = fixture("ir/mlp_block_bf16.cvir");
    let model = model.to_str().unwrap();
    let out = compile_model(&[model, "--target", "ascend999", "--emit", "kernel-ir"]);
    assert_fails_with(&out, &["ascend999", "ascend910b2"]);
    let out = compile_model(&[model, "--target", "ascend910b2", "--emit", "kernel-ir"]);
    assert_fails_with(&out, &["`x`", "tokens", "--dim NAME=N"]);
    let out = compile_model(&[model, "--emit", "kernel-ir"]);
    assert_fails_with(&out, &["--target"]);
    let out = compile_model(&[
        model,
        "--target",
        "ascend910b2",
        "--dim",
        "tokens",
        "--emit",
        "kernel-ir",
    ]);
    assert_fails_with(&out, &["NAME=N"]);
}

#[test]
fn emit_ascendc_prints_every_kernel_source_in_path_order() {
    let model = fixture("ir/swiglu_mlp.cvir");
    let model = model.to_str().unwrap();
    let args = [
        model,
        "--target",
        "ascend910b2",
        "--dim",
        "tokens=3",
        "--emit",
        "ascendc",
    ];
    let out = compile_model(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let headers: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("// ==== "))
        .map(|l| l.trim_end_matches(" ===="))
        .collect();
    let mut sorted = headers.clone();
    sorted.sort_unstable();
    assert_eq!(headers, sorted, "path order");
    assert!(
        headers
            .iter()
            .all(|h| h.starts_with("include/") || h.starts_with("kernels/"))
    );
    // One source per distinct kernel of the plan.
    let kernel_ir = compile_model(&[&args[..5], &["--emit", "kernel-ir"]].concat());
    let kernel_ir = stdout(&kernel_ir);
    let kernels = kernel_ir
        .lines()
        .filter(|l| l.starts_with("kernel "))
        .count();
    assert_eq!(
        headers.iter().filter(|h| h.starts_with("kernels/")).count(),
        kernels
    );
    assert!(
        text.contains("extern \"C\" __global__ __aicore__"),
        "{text}"
    );
    assert_eq!(compile_model(&args).stdout, out.stdout, "deterministic");
    // `--target cpu` prints the schedule the CPU back end runs.
    let cpu = compile_model(&[&[model, "--target", "cpu"], &args[3..]].concat());
    assert_eq!(cpu.stdout, out.stdout);

    let out = compile_model(&[model, "--emit", "ascendc"]);
    assert_fails_with(&out, &["--emit ascendc", "--target"]);
}

#[test]
fn target_cpu_runs_and_verifies_on_the_cpu_back_end() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let x = format!("x={}", fixture("ir/swiglu_mlp.x.npy").display());
    let model = fixture("ir/swiglu_mlp.cvir");
    let model = model.to_str().unwrap();
    let out = compile_model(&[
        model,
        "--target",
        "cpu",
        "--run",
        "--verify",
        "--input",
        &x,
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("verified 4 launches on the CPU back end"),
        "{}",
        stderr(&out)
    );
    let (diff, scale) = max_abs_diff(&out_dir.join("y.npy"), &fixture("ir/swiglu_mlp.y.npy"));
    assert!(diff <= 1e-5 * scale.max(1.0), "diff {diff}");

    let out = compile_model(&[model, "--target", "cpu", "--verify"]);
    assert_fails_with(&out, &["--verify", "--input"]);
}

#[test]
fn summary_gives_kernels_per_token_times_memory_and_phases_without_progress_output() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("r.json");
    let model = fixture("models/mixtral");
    let out = compile_model(&[
        model.to_str().unwrap(),
        "--target",
        "ascend910b2",
        "--optimize",
        "--seq-len",
        "16",
        "--batch",
        "2",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let total = json["total_modeled_time_us"].as_f64().unwrap();
    // The kernels line counts launches by kind and names the bound sizes.
    let launches = json["kernels"].as_array().unwrap().len();
    assert!(
        err.contains(&format!("kernels for ascend910b2: {launches} launches")),
        "{err}"
    );
    assert!(err.contains("cube") && err.contains("vector"), "{err}");
    assert!(err.contains("batch=2, seq=16"), "{err}");
    // Prefill: the whole plan over its 32 tokens; decode: a second plan at seq=1.
    let per_token = format!(
        "prefill {:.2} us (32 tokens in {total:.1} us)",
        total / 32.0
    );
    assert!(err.contains(&per_token), "{per_token} not in {err}");
    assert!(
        err.contains("decode") && err.contains("2 tokens at seq=1"),
        "{err}"
    );
    assert!(
        err.contains("device memory: weights and constants"),
        "{err}"
    );
    for phase in ["read", "optimise", "plan kernels", "plan decode"] {
        assert!(err.contains(&format!("{phase} ")), "{phase} missing: {err}");
    }
    // Not a terminal: no progress bar (no carriage returns or terminal escapes).
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn quiet_prints_nothing_when_compiling() {
    let out = compile_model(&[
        fixture("ir/mlp_block_bf16.cvir").to_str().unwrap(),
        "--target",
        "ascend910b2",
        "--dim",
        "tokens=64",
        "--report",
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    // `--report` without a file prints to standard error, which `-q` leaves alone.
    assert!(!stderr(&out).contains("time: "), "{}", stderr(&out));
}

#[test]
fn usage_errors_exit_with_code_2_and_no_panic() {
    let model = fixture("ir/swiglu_mlp.cvir");
    let model = model.to_str().unwrap();
    for args in [
        vec![model, "--emit", "assembly"],
        vec![model, "--compute-dtype", "i8", "--emit", "ir"],
        vec![model, "--seq-len", "many", "--emit", "ir"],
        vec![model, "--reference", "--emit", "ir"],
        vec![model, "-q", "-v", "--emit", "ir"],
        vec![model, "--devices", "0", "--emit", "ir"],
        vec![model, "--context", "long", "--emit", "ir"],
    ] {
        let out = compile_model(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && !err.contains("panicked"),
            "{err}"
        );
    }
}
