//! The e-graph language: one e-node per IR operation, attributes carried in the node.
//!
//! An e-node is a [`TensorOp`] (an IR [`Op`] with its attributes, or one of the leaves and the
//! tuple projection) plus its operand e-classes. Operations with several results (`Split`, `TopK`)
//! are tuple nodes whose e-class holds all result types; each result is read by a
//! [`TensorOp::Get`] projection. An absent optional operand is the [`TensorOp::Absent`] leaf.

use std::sync::Arc;

use cubevec_ir::graph::TensorType;
use cubevec_ir::{DType, Op, Shape, Tensor};
use egg::{Id, Language};

/// A small constant tensor stored in an e-node (folded constants, inline graph constants).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConstTensor {
    /// Element type.
    pub dtype: DType,
    /// Known sizes.
    pub shape: Vec<usize>,
    /// Little-endian element bytes, as in [`Tensor`].
    pub bytes: Arc<[u8]>,
}

impl ConstTensor {
    /// The constant holding a tensor's elements.
    pub fn from_tensor(tensor: &Tensor) -> ConstTensor {
        ConstTensor {
            dtype: tensor.dtype(),
            shape: tensor.shape().to_vec(),
            bytes: Arc::from(tensor.bytes()),
        }
    }

    /// A tensor of `dtype` and `shape` whose elements all equal `value` (rounded to the dtype).
    pub fn filled(dtype: DType, shape: Vec<usize>, value: f64) -> ConstTensor {
        let count: usize = shape.iter().product();
        ConstTensor::from_tensor(&Tensor::from_f64(dtype, shape, &vec![value; count]))
    }

    /// The constant as a runtime tensor.
    pub fn to_tensor(&self) -> Tensor {
        // The bytes were taken from a tensor of this dtype and shape, so the sizes agree.
        Tensor::from_bytes(self.dtype, self.shape.clone(), self.bytes.clone())
            .unwrap_or_else(|_| Tensor::zeros(self.dtype, self.shape.clone()))
    }

    /// The constant's type.
    pub fn ty(&self) -> TensorType {
        let dims: Vec<u64> = self.shape.iter().map(|&d| d as u64).collect();
        TensorType::new(self.dtype, Shape::known(&dims))
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The common value of all elements, if every element is equal (and there is at least one).
    pub fn splat_value(&self) -> Option<f64> {
        let t = self.to_tensor();
        let first = (t.numel() > 0).then(|| t.get_f64(0))?;
        (1..t.numel())
            .all(|i| t.get_f64(i).to_bits() == first.to_bits())
            .then_some(first)
    }
}

/// What an e-node computes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TensorOp {
    /// The `index`-th external value of the segment being optimised: a weight (`weight`) or an
    /// activation computed elsewhere (a graph input or a result of an earlier segment).
    Param {
        /// Position in the segment's parameter list.
        index: u32,
        /// Whether it is a weight (its value is known before the model runs).
        weight: bool,
    },
    /// A small constant.
    Const(ConstTensor),
    /// An absent optional operand.
    Absent,
    /// Result `i` of a tuple node (the only child).
    Get(u32),
    /// An IR operation; a tuple node when the op has several results.
    Op(Op),
}

/// An e-node: the operation and its operand e-classes in the op's operand order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorNode {
    /// The operation.
    pub op: TensorOp,
    /// Operand e-classes.
    pub children: Vec<Id>,
}

impl TensorNode {
    /// A node from its parts.
    pub fn new(op: TensorOp, children: Vec<Id>) -> TensorNode {
        TensorNode { op, children }
    }

    /// An IR operation node.
    pub fn op(op: Op, children: Vec<Id>) -> TensorNode {
        TensorNode::new(TensorOp::Op(op), children)
    }

    /// The IR op, if the node is one.
    pub fn ir_op(&self) -> Option<&Op> {
        match &self.op {
            TensorOp::Op(op) => Some(op),
            _ => None,
        }
    }
}

impl Language for TensorNode {
    type Discriminant = TensorOp;

    fn discriminant(&self) -> TensorOp {
        self.op.clone()
    }

    fn matches(&self, other: &Self) -> bool {
        self.op == other.op && self.children.len() == other.children.len()
    }

    fn children(&self) -> &[Id] {
        &self.children
    }

    fn children_mut(&mut self) -> &mut [Id] {
        &mut self.children
    }
}
