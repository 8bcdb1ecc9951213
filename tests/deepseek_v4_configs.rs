//! The published DeepSeek-V4-Flash and V4-Pro configs compile in shapes-only mode to an
//! AscendC project for 910C, and the report gives the modelled prefill and decode time per
//! token and the weight and KV-cache memory per device.

use std::path::{Path, PathBuf};
use std::process::Command;

fn config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/configs")
        .join(name)
}

/// Compiles `name` for 910C at 4 tokens with a 128K-token context and returns the report.
fn compile(name: &str) -> (serde_json::Value, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let (out, report) = (tmp.path().join("project"), tmp.path().join("report.json"));
    let run = Command::new(env!("CARGO_BIN_EXE_compile-model"))
        .arg(config(name))
        .args(["--shapes-only", "--target", "ascend910c", "--seq-len", "4"])
        .args(["--context", "131072", "-q", "-o"])
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .output()
        .expect("compile-model runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let kernels = std::fs::read_dir(out.join("kernels"))
        .expect("kernels/")
        .count();
    assert!(kernels > 100, "{name}: {kernels} kernel files");
    let text = std::fs::read_to_string(&report).expect("report");
    (serde_json::from_str(&text).expect("JSON report"), tmp)
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn gib(v: &serde_json::Value) -> f64 {
    v.as_f64().expect("a number") / GIB
}

/// Checks the per-token times and the deployment; returns (devices, weights GiB per device).
fn check(report: &serde_json::Value, context_kv_gib: (f64, f64)) -> (u64, f64) {
    assert_eq!(report["target"], "ascend910c");
    let per_token = &report["per_token"];
    assert_eq!(per_token["prefill_tokens"], 4);
    assert_eq!(per_token["decode_tokens"], 1);
    for key in ["prefill_us", "decode_us"] {
        assert!(per_token[key].as_f64().is_some_and(|t| t > 0.0), "{key}");
    }
    let d = &report["deployment"];
    assert!(d["fits"].as_bool().expect("fits"), "{d}");
    assert_eq!(d["context"], 131_072);
    let devices = d["devices"].as_u64().expect("devices");
    let kv = gib(&d["kv_bytes_per_device"]);
    assert!(
        (context_kv_gib.0..context_kv_gib.1).contains(&kv),
        "KV cache {kv} GiB"
    );
    // Fewest devices: one fewer would not hold the replicated weights plus a share of the
    // experts.
    let (weights, experts) = (gib(&d["weight_bytes"]), gib(&d["expert_weight_bytes"]));
    let replicated = weights - experts;
    let hbm = gib(&d["hbm_bytes"]);
    let per_device = |n: f64| replicated + experts / n + kv;
    assert!(per_device(devices as f64) <= hbm);
    assert!(devices == 1 || per_device(devices as f64 - 1.0) > hbm * 0.999);
    (devices, gib(&d["weight_bytes_per_device"]))
}

#[test]
fn deepseek_v4_flash_compiles_for_910c_with_memory_per_device() {
    let (report, _tmp) = compile("deepseek-v4-flash");
    // 128K positions: 43 sliding windows, 21 rate-4 and 20 rate-128 compressed layers, bf16.
    let (devices, weights) = check(&report, (0.8, 0.9));
    // 284B parameters dequantised to bf16 for the Cube: about 530 GiB over 5 devices.
    assert_eq!(devices, 5);
    assert!(
        (100.0..128.0).contains(&weights),
        "{weights} GiB per device"
    );
}

#[test]
fn deepseek_v4_pro_compiles_for_910c_with_memory_per_device() {
    let (report, _tmp) = compile("deepseek-v4-pro");
    let (devices, weights) = check(&report, (1.1, 1.3));
    // 1.6T parameters in bf16: about 2.9 TiB, more than 30 devices of 128 GiB.
    assert!((30..40).contains(&devices), "{devices} devices");
    assert!(weights < 128.0, "{weights} GiB per device");
}
