//! cubevec model readers: they turn a model file into a verified graph-IR [`cubevec_ir::Graph`].
//!
//! - [`onnx`]: ONNX models (protobuf, external data, opsets 13 to 23 and the ops of MoE
//!   transformer exports), entry point [`onnx::load`].
//! - [`hf`]: Hugging Face checkpoint directories (`config.json` + `*.safetensors`), entry point
//!   [`hf::load`].

pub mod hf;
pub mod onnx;
