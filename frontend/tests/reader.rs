//! Reader features beyond single ops: external data, every initializer storage form, `Constant`
//! forms, and folding of run-time shape computations onto symbolic dimensions.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{D, bytes, external, f32_raw, i64_typed, int_attr, model, node, scratch, value};
use cubevec_frontend::onnx::{
    self,
    proto::{AttributeProto, AttributeType, DataType, TensorProto},
};
use cubevec_ir::interp::{self, RunOptions};
use cubevec_ir::{DType, Dim, Op, Tensor, WeightData};

fn run(graph: &cubevec_ir::Graph, dir: Option<&Path>, inputs: &[(&str, Tensor)]) -> Vec<Tensor> {
    let inputs: HashMap<String, Tensor> = inputs
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let options = RunOptions {
        weight_dir: dir.map(Path::to_path_buf),
    };
    interp::run(graph, &inputs, &options).expect("run")
}

#[test]
fn external_weights_stay_external_and_fold_through_mmap() {
    let tmp = scratch();
    let dir = tmp.path();
    // One sidecar file: 4 f32 weights, then an i64 reshape target [2, 2] at offset 16.
    let mut blob: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    blob.extend([2i64, 2].iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(dir.join("model.onnx.data"), &blob).unwrap();
    let m = model(
        17,
        vec![
            node("Add", &["x", "w"], &["sum"], vec![]),
            node("Reshape", &["sum", "shape"], &["y"], vec![]),
        ],
        vec![value("x", DataType::Float, &[D::N(4)])],
        vec![value("y", DataType::Float, &[D::N(2), D::N(2)])],
        vec![
            external("w", &[4], DataType::Float, "model.onnx.data", 0, 16),
            external("shape", &[2], DataType::Int64, "model.onnx.data", 16, 16),
        ],
    );
    let path = dir.join("model.onnx");
    std::fs::write(&path, bytes(&m)).unwrap();
    let graph = onnx::load(&path).unwrap();
    let weight = graph
        .initializers
        .iter()
        .find(|i| graph.value(i.value).name == "w")
        .expect("weight kept as an initializer");
    assert_eq!(
        weight.data,
        WeightData::file_slice("model.onnx.data", 0, 16)
    );
    assert!(graph.nodes.iter().any(|n| n.op
        == Op::Reshape {
            shape: vec![Dim::Known(2), Dim::Known(2)]
        }));
    let x = Tensor::from_f32(DType::F32, vec![4], &[10.0, 20.0, 30.0, 40.0]);
    let out = run(&graph, Some(dir), &[("x", x)]);
    assert_eq!(out[0].shape(), &[2, 2]);
    assert_eq!(out[0].to_f32_vec(), vec![11.0, 22.0, 33.0, 44.0]);
    assert_eq!(graph.value(graph.outputs[0]).name, "y");
}

#[test]
fn typed_storage_forms_and_constants_decode() {
    let mut half = TensorProto {
        name: "h".into(),
        dims: vec![2],
        data_type: DataType::Float16 as i32,
        // 1.5 and -2.0 as f16 bit patterns in int32_data.
        int32_data: vec![0x3E00, 0xC000],
        ..TensorProto::default()
    };
    half.raw_data = None;
    let mut float_typed = f32_raw("f", &[2], &[]);
    float_typed.raw_data = None;
    float_typed.float_data = vec![0.25, 0.5];
    let constant = |name: &str, out: &str, attr: AttributeProto| {
        let mut n = node("Constant", &[], &[out], vec![attr]);
        n.name = name.into();
        n
    };
    let floats = AttributeProto {
        name: "value_floats".into(),
        floats: vec![100.0, 200.0],
        r#type: AttributeType::Floats as i32,
        ..AttributeProto::default()
    };
    let m = model(
        17,
        vec![
            node(
                "Cast",
                &["h"],
                &["hf"],
                vec![int_attr("to", DataType::Float as i64)],
            ),
            constant("c0", "c", floats),
            node("Add", &["hf", "f"], &["s1"], vec![]),
            node("Add", &["s1", "c"], &["s2"], vec![]),
            node(
                "Cast",
                &["idx"],
                &["idxf"],
                vec![int_attr("to", DataType::Float as i64)],
            ),
            node("Add", &["s2", "idxf"], &["s3"], vec![]),
            node("Mul", &["x", "s3"], &["y"], vec![]),
        ],
        vec![value("x", DataType::Float, &[D::N(2)])],
        vec![value("y", DataType::Float, &[D::N(2)])],
        vec![half, float_typed, i64_typed("idx", &[2], &[1000, 2000])],
    );
    let graph = onnx::load_bytes(&bytes(&m), Path::new(".")).unwrap();
    // Everything but the final multiply folds away.
    assert_eq!(graph.nodes.len(), 1, "{:?}", graph.nodes);
    let x = Tensor::from_f32(DType::F32, vec![2], &[1.0, 2.0]);
    let out = run(&graph, None, &[("x", x)]);
    assert_eq!(
        out[0].to_f32_vec(),
        vec![
            1.5 + 0.25 + 100.0 + 1000.0,
            2.0 * (-2.0 + 0.5 + 200.0 + 2000.0)
        ]
    );
}

fn gather(data: &str, index: &str, out: &str) -> cubevec_frontend::onnx::proto::NodeProto {
    let mut n = node("Gather", &[data, index], &[out], vec![int_attr("axis", 0)]);
    n.name = format!("gather_{out}");
    n
}

#[test]
fn shape_computations_fold_onto_symbolic_dimensions() {
    // y = reshape(x, [batch, -1, 4]) with the target computed from Shape(x) at run time, and
    // pos = range(0, seq, 1) with seq read from the same shape.
    let mut unsq = node("Unsqueeze", &["b", "axes"], &["b1"], vec![]);
    unsq.name = "unsq".into();
    let mut concat = node(
        "Concat",
        &["b1", "minus_one", "four"],
        &["target"],
        vec![int_attr("axis", 0)],
    );
    concat.name = "concat".into();
    let m = model(
        17,
        vec![
            node("Shape", &["x"], &["shape"], vec![]),
            gather("shape", "zero", "b"),
            gather("shape", "one", "s"),
            unsq,
            concat,
            node("Reshape", &["x", "target"], &["y"], vec![]),
            node("Range", &["start", "s", "step"], &["pos"], vec![]),
        ],
        vec![value(
            "x",
            DataType::Float,
            &[D::S("batch"), D::S("seq"), D::N(8)],
        )],
        vec![
            value(
                "y",
                DataType::Float,
                &[D::S("batch"), D::S("seq2"), D::N(4)],
            ),
            value("pos", DataType::Int64, &[D::S("seq")]),
        ],
        vec![
            i64_typed("zero", &[], &[0]),
            i64_typed("one", &[], &[1]),
            i64_typed("axes", &[1], &[0]),
            i64_typed("minus_one", &[1], &[-1]),
            i64_typed("four", &[1], &[4]),
            i64_typed("start", &[], &[0]),
            i64_typed("step", &[], &[1]),
        ],
    );
    let graph = onnx::load_bytes(&bytes(&m), Path::new(".")).unwrap();
    let batch = Dim::sym("batch");
    let seq = Dim::sym("seq");
    let reshape = graph
        .nodes
        .iter()
        .find_map(|n| match &n.op {
            Op::Reshape { shape } => Some(shape.clone()),
            _ => None,
        })
        .expect("a reshape");
    assert_eq!(reshape[0], batch);
    assert_eq!(reshape[2], Dim::Known(4));
    let range = graph
        .nodes
        .iter()
        .find_map(|n| match &n.op {
            Op::Range { len } => Some(len.clone()),
            _ => None,
        })
        .expect("a range");
    assert_eq!(range, seq);
    let x = Tensor::from_f32(
        DType::F32,
        vec![2, 3, 8],
        &(0..48).map(|v| v as f32).collect::<Vec<_>>(),
    );
    let out = run(&graph, None, &[("x", x)]);
    assert_eq!(out[0].shape(), &[2, 6, 4]);
    assert_eq!(out[0].to_f32_vec()[47], 47.0);
    assert_eq!(out[1].to_i64_vec(), vec![0, 1, 2]);
}
