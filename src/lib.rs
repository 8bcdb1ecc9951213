//! cubevec: a tensor compiler for Mixture-of-Experts models on Huawei Ascend NPUs.
//!
//! cubevec reads a model (the textual IR, an ONNX file, or a Hugging Face checkpoint directory),
//! lowers it to a graph IR ([`ir`]), optimises it, tiles it into kernels for a target, and emits
//! an AscendC project or runs the kernels on the CPU. This crate is the library API that the
//! `compile-model` command is built on.
//!
//! - [`Model`]: a model read with [`Model::load`], parsed with [`Model::from_ir_text`] or built
//!   in code with [`Model::from_graph`]; it runs on the reference interpreter
//!   ([`Model::run_reference`]), the oracle everything else is checked against.
//! - [`Compiler`]: optimise, plan kernels and emit AscendC in one call, keeping every artefact
//!   in memory as a [`CompiledModel`], which runs on the kernel reference executor or the CPU
//!   back end ([`Engine`]) and checks itself launch by launch ([`CompiledModel::verify_on`]).
//! - [`Deployment`]: the memory per device of a compiled model spread over several devices
//!   (experts sharded, the KV cache of [`Model::kv_cache`] split by sequence).
//! - [`extend`]: custom rewrite rules and op lowerings.
//!
//! ```
//! use cubevec::{Model, ir::Tensor, ir::DType};
//! use std::collections::HashMap;
//!
//! let model = Model::from_ir_text(
//!     "graph @double {\n  input %x: f32[2]\n  %y: f32[2] = add(%x, %x)\n  return %y\n}\n",
//! )?;
//! let inputs = HashMap::from([("x".to_string(), Tensor::from_f32(DType::F32, vec![2], &[1.0, 2.5]))]);
//! let outputs = model.run_reference(&inputs)?;
//! assert_eq!(outputs[0].1.to_f32_vec(), vec![2.0, 5.0]);
//! # Ok::<(), cubevec::Error>(())
//! ```

mod compiled;
mod compiler;
mod deployment;
mod error;
pub mod extend;
mod model;
mod output_dir;
mod roofline;

pub use compiled::{CompiledModel, CpuRunner, DATA_DIR, Engine, Mismatch, tolerance};
pub use compiler::{CompileOptions, Compiler};
pub use cubevec_backend_ascend::Project;
pub use cubevec_frontend::hf::{CacheEntry, CacheSpan, KvCache};
pub use cubevec_ir as ir;
pub use cubevec_ir::builder::GraphBuilder;
pub use cubevec_passes as passes;
pub use cubevec_passes::optimize::{OptimizeOptions, OptimizeReport};
pub use cubevec_passes::partition::{Partition, PartitionReport, PlannedKernel};
pub use deployment::{Deployment, DeploymentOptions};
pub use error::Error;
pub use model::{LoadOptions, Model, ModelFormat};
pub use output_dir::OutputDir;
pub use roofline::roofline_svg;
