//! Every error kind of the ONNX reader, triggered by a malformed or unsupported model, and a
//! fuzz-style check that truncated or corrupted real models give errors, never panics.

mod common;

use std::path::Path;

use common::{D, bytes, external, f32_raw, int_attr, model, node, scratch, str_attr, value};
use cubevec_frontend::onnx::{self, OnnxError, proto::DataType};
use proptest::prelude::*;

fn relu_model(opset: i64) -> Vec<u8> {
    bytes(&model(
        opset,
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![value("x", DataType::Float, &[D::N(2)])],
        vec![value("y", DataType::Float, &[D::N(2)])],
        vec![],
    ))
}

#[test]
fn unknown_op_names_node_op_and_domain() {
    let m = model(
        17,
        vec![node("FancyOp", &["x"], &["y"], vec![])],
        vec![value("x", DataType::Float, &[D::N(2)])],
        vec![value("y", DataType::Float, &[D::N(2)])],
        vec![],
    );
    let err = onnx::load_bytes(&bytes(&m), Path::new(".")).unwrap_err();
    assert!(matches!(err, OnnxError::UnknownOp { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("FancyOp_0") && msg.contains("ai.onnx::FancyOp"),
        "{msg}"
    );
}

#[test]
fn unsupported_opsets_are_rejected() {
    let err = onnx::load_bytes(&relu_model(99), Path::new(".")).unwrap_err();
    assert!(
        matches!(err, OnnxError::UnsupportedOpset { version: 99, .. }),
        "{err}"
    );
    // Softmax before opset 13 normalised a flattened 2-D view: a different semantics.
    let m = model(
        11,
        vec![node("Softmax", &["x"], &["y"], vec![])],
        vec![value("x", DataType::Float, &[D::N(2), D::N(3)])],
        vec![value("y", DataType::Float, &[D::N(2), D::N(3)])],
        vec![],
    );
    let err = onnx::load_bytes(&bytes(&m), Path::new(".")).unwrap_err();
    assert!(
        matches!(err, OnnxError::UnsupportedOpVersion { version: 11, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("Softmax"), "{err}");
}

#[test]
fn bad_attributes_are_named() {
    let m = model(
        20,
        vec![node(
            "Gelu",
            &["x"],
            &["y"],
            vec![str_attr("approximate", "cubic")],
        )],
        vec![value("x", DataType::Float, &[D::N(2)])],
        vec![value("y", DataType::Float, &[D::N(2)])],
        vec![],
    );
    let err = onnx::load_bytes(&bytes(&m), Path::new(".")).unwrap_err();
    assert!(
        matches!(&err, OnnxError::BadAttribute { attribute, .. } if attribute == "approximate"),
        "{err}"
    );
    // An attribute of the wrong kind.
    let m = model(
        13,
        vec![node(
            "Softmax",
            &["x"],
            &["y"],
            vec![str_attr("axis", "last")],
        )],
        vec![value("x", DataType::Float, &[D::N(2)])],
        vec![value("y", DataType::Float, &[D::N(2)])],
        vec![],
    );
    let err = onnx::load_bytes(&bytes(&m), Path::new(".")).unwrap_err();
    assert!(matches!(err, OnnxError::BadAttribute { .. }), "{err}");
    assert!(err.to_string().contains("expected INT"), "{err}");
}

fn add_weight_model(weight: cubevec_frontend::onnx::proto::TensorProto) -> Vec<u8> {
    bytes(&model(
        17,
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![value("x", DataType::Float, &[D::N(4)])],
        vec![value("y", DataType::Float, &[D::N(4)])],
        vec![weight],
    ))
}

#[test]
fn missing_external_file_names_the_file() {
    let tmp = scratch();
    let dir = tmp.path();
    let m = add_weight_model(external("w", &[4], DataType::Float, "weights.bin", 0, 16));
    let path = dir.join("model.onnx");
    std::fs::write(&path, m).unwrap();
    let err = onnx::load(&path).unwrap_err();
    assert!(matches!(err, OnnxError::ExternalFile { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("weights.bin") && msg.contains("model.onnx"),
        "{msg}"
    );
}

#[test]
fn external_range_past_the_end_and_escaping_paths_are_rejected() {
    let tmp = scratch();
    let dir = tmp.path();
    std::fs::write(dir.join("weights.bin"), [0u8; 8]).unwrap();
    let path = dir.join("model.onnx");
    std::fs::write(
        &path,
        add_weight_model(external("w", &[4], DataType::Float, "weights.bin", 0, 16)),
    )
    .unwrap();
    let err = onnx::load(&path).unwrap_err();
    assert!(
        matches!(
            err,
            OnnxError::ExternalRange {
                end: 16,
                file_len: 8,
                ..
            }
        ),
        "{err}"
    );
    std::fs::write(
        &path,
        add_weight_model(external(
            "w",
            &[4],
            DataType::Float,
            "../etc/weights.bin",
            0,
            16,
        )),
    )
    .unwrap();
    let err = onnx::load(&path).unwrap_err();
    assert!(matches!(err, OnnxError::BadTensorData { .. }), "{err}");
}

#[test]
fn truncated_file_is_a_decode_error() {
    let full = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/onnx-node/test_gemm_all_attributes/model.onnx"),
    )
    .unwrap();
    let err = onnx::load_bytes(&full[..full.len() - 7], Path::new(".")).unwrap_err();
    assert!(matches!(err, OnnxError::Decode { .. }), "{err}");
}

#[test]
fn bad_tensor_data_length_names_the_tensor() {
    let mut w = f32_raw("w", &[4], &[1.0, 2.0, 3.0, 4.0]);
    w.raw_data.as_mut().unwrap().truncate(15);
    let err = onnx::load_bytes(&add_weight_model(w), Path::new(".")).unwrap_err();
    assert!(
        matches!(&err, OnnxError::BadTensorData { tensor, .. } if tensor == "w"),
        "{err}"
    );
    assert!(err.to_string().contains("needs 16 bytes"), "{err}");
    // Typed storage with the wrong element count.
    let mut w = f32_raw("w", &[4], &[]);
    w.raw_data = None;
    w.float_data = vec![1.0, 2.0];
    let err = onnx::load_bytes(&add_weight_model(w), Path::new(".")).unwrap_err();
    assert!(
        err.to_string().contains("float_data holds 2 elements"),
        "{err}"
    );
}

#[test]
fn unsupported_element_types_and_values() {
    let mut w = f32_raw("w", &[1], &[]);
    w.raw_data = Some(vec![0; 8].into());
    w.data_type = DataType::Double as i32;
    let err = onnx::load_bytes(&add_weight_model(w), Path::new(".")).unwrap_err();
    assert!(
        matches!(&err, OnnxError::UnsupportedDType { data_type, .. } if data_type == "DOUBLE"),
        "{err}"
    );
    // A node reading a value nothing defines.
    let m = model(
        17,
        vec![node("Relu", &["nowhere"], &["y"], vec![])],
        vec![],
        vec![value("y", DataType::Float, &[D::N(2)])],
        vec![],
    );
    let err = onnx::load_bytes(&bytes(&m), Path::new(".")).unwrap_err();
    assert!(
        matches!(&err, OnnxError::UndefinedValue { value, .. } if value == "nowhere"),
        "{err}"
    );
    // A reshape target only known at run time.
    let m = model(
        17,
        vec![node("Reshape", &["x", "shape"], &["y"], vec![])],
        vec![
            value("x", DataType::Float, &[D::N(4)]),
            value("shape", DataType::Int64, &[D::N(2)]),
        ],
        vec![value("y", DataType::Float, &[D::N(2), D::N(2)])],
        vec![],
    );
    let err = onnx::load_bytes(&bytes(&m), Path::new(".")).unwrap_err();
    assert!(
        matches!(&err, OnnxError::NotConstant { value, .. } if value == "shape"),
        "{err}"
    );
    // Shape inference failure is reported against the node.
    let m = model(
        17,
        vec![node("MatMul", &["a", "b"], &["y"], vec![])],
        vec![
            value("a", DataType::Float, &[D::N(2), D::N(3)]),
            value("b", DataType::Float, &[D::N(4), D::N(5)]),
        ],
        vec![value("y", DataType::Float, &[D::N(2), D::N(5)])],
        vec![],
    );
    let err = onnx::load_bytes(&bytes(&m), Path::new(".")).unwrap_err();
    assert!(matches!(err, OnnxError::Build { .. }), "{err}");
    assert!(err.to_string().contains("MatMul_0"), "{err}");
}

#[test]
fn declared_types_must_match_the_import() {
    let m = model(
        17,
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![value("x", DataType::Float, &[D::N(2)])],
        vec![value("y", DataType::Float, &[D::N(3)])],
        vec![],
    );
    let err = onnx::load_bytes(&bytes(&m), Path::new(".")).unwrap_err();
    assert!(
        matches!(&err, OnnxError::BadValueType { value, .. } if value == "y"),
        "{err}"
    );
    assert!(err.to_string().contains("declared f32[3]"), "{err}");
    // Graph inputs need a tensor type with a shape.
    let mut x = value("x", DataType::Float, &[D::S("n")]);
    x.r#type = None;
    let m = model(
        17,
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![x],
        vec![value("y", DataType::Float, &[D::S("n")])],
        vec![],
    );
    let err = onnx::load_bytes(&bytes(&m), Path::new(".")).unwrap_err();
    assert!(err.to_string().contains("has no type"), "{err}");
}

#[test]
fn moe_biases_are_rejected_clearly() {
    let mut n = node(
        "MoE",
        &["x", "logits", "fc1", "b1", "fc2"],
        &["y"],
        vec![int_attr("k", 1)],
    );
    n.domain = "com.microsoft".into();
    let mut m = model(
        17,
        vec![n],
        vec![
            value("x", DataType::Float, &[D::N(2), D::N(4)]),
            value("logits", DataType::Float, &[D::N(2), D::N(2)]),
        ],
        vec![value("y", DataType::Float, &[D::N(2), D::N(4)])],
        vec![
            f32_raw("fc1", &[2, 3, 4], &[0.5; 24]),
            f32_raw("b1", &[2, 3], &[0.1; 6]),
            f32_raw("fc2", &[2, 4, 3], &[0.5; 24]),
        ],
    );
    m.opset_import
        .push(cubevec_frontend::onnx::proto::OperatorSetIdProto {
            domain: "com.microsoft".into(),
            version: 1,
        });
    let err = onnx::load_bytes(&bytes(&m), Path::new(".")).unwrap_err();
    assert!(
        err.to_string().contains("expert biases are not supported"),
        "{err}"
    );
}

/// Real models: node tests and an exported MoE block with run-time shape computations.
fn fuzz_corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    [
        "onnx-node/test_attention_4d_gqa_with_past_and_present/model.onnx",
        "onnx-node/test_layer_normalization_4d_axis1_expanded_ver18/model.onnx",
        "onnx-node/test_dequantizelinear_blocked/model.onnx",
        "onnx-node/cubevec_ms_moe_swiglu_fc3/model.onnx",
        "models/deepseek-v3-moe-block-opset20.onnx",
    ]
    .iter()
    .map(|c| std::fs::read(root.join(c)).expect("fixture model"))
    .collect()
}

/// Proptest cases: 256 by default, more with `CUBEVEC_FUZZ_CASES`.
fn cases() -> u32 {
    std::env::var("CUBEVEC_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Truncated or byte-flipped models give an error or a graph, never a panic.
    #[test]
    fn corrupted_models_never_panic(which in 0usize..5, cut in 0.0f64..1.0, flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 0..4)) {
        let corpus = fuzz_corpus();
        let mut data = corpus[which].clone();
        let keep = ((data.len() as f64) * cut) as usize;
        if flips.is_empty() {
            data.truncate(keep);
        }
        for (at, byte) in flips {
            let i = ((data.len() as f64) * at) as usize;
            if let Some(b) = data.get_mut(i) {
                *b ^= byte;
            }
        }
        let _ = onnx::load_bytes(&data, Path::new("."));
    }
}
