//! The cubevec intermediate representations.
//!
//! - [`graph`]: the graph IR a model is read into and optimised in: typed values, [`op::Op`]
//!   nodes, weights by reference.
//! - [`dtype`], [`shape`], [`tensor`]: element types, symbolic shapes, concrete tensors.
//! - [`infer`]: shape and dtype inference for every op, in one place.
//! - [`verify`]: the verifier every graph passes before it is used.
//! - [`text`]: the textual form (printer and parser) that round-trips exactly.
//! - [`dot`]: Graphviz export.
//! - [`interp`]: the reference interpreter, the oracle for every optimisation and back end.
//! - [`npy`]: reading and writing `.npy` files.
//! - [`kernel`]: the kernel IR: tiled programs over explicit Ascend memory levels, which both back
//!   ends consume.
//! - [`target`]: target descriptions (910B1–B4, 910C) read from data files.

pub mod builder;
pub mod dot;
pub mod dtype;
pub mod graph;
pub mod infer;
pub mod interp;
pub mod kernel;
pub mod npy;
pub mod op;
pub mod parallel;
pub mod shape;
pub mod target;
pub mod tensor;
pub mod text;
pub mod verify;

pub use dtype::DType;
pub use graph::{Graph, Node, NodeId, TensorType, Value, ValueId, WeightData};
pub use op::Op;
pub use shape::{Dim, Shape};
pub use tensor::Tensor;
