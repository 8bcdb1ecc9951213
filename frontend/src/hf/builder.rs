//! The pieces every architecture is made of: weights bound by reference, linear layers, norms,
//! rotary tables, attention, SwiGLU MLPs and stacked expert weights, added to a graph.

use std::sync::Arc;

use cubevec_ir::builder::{BuildError, GraphBuilder};
use cubevec_ir::graph::{TensorType, WeightData};
use cubevec_ir::op::{BinaryOp, ReduceOp, UnaryOp};
use cubevec_ir::{DType, Dim, Op, Shape, Tensor, ValueId};

use super::HfError;
use super::checkpoint::Checkpoint;

/// Where weights come from: a checkpoint, or nowhere (shapes only).
#[derive(Debug, Clone, Copy)]
pub enum WeightSource<'a> {
    /// Bind every weight to its bytes in the checkpoint; FP8 weights with a `weight_scale_inv`
    /// sibling are dequantised in blocks of this shape.
    Checkpoint(&'a Checkpoint, [u64; 2]),
    /// Create weights without data, typed as the config says the real checkpoint stores them.
    ShapesOnly {
        /// Storage dtype of unquantised weights.
        dtype: DType,
        /// Block shape of FP8 linear weights with `weight_scale_inv` scales, if the config has a
        /// `quantization_config` of that kind.
        fp8_block: Option<[u64; 2]>,
    },
}

/// A graph under construction for one model, with its symbolic batch and sequence dimensions.
pub struct ModelBuilder<'g, 'a> {
    graph: GraphBuilder<'g>,
    source: WeightSource<'a>,
    /// The dtype activations are computed and stored in.
    pub dtype: DType,
    /// Symbolic batch size.
    pub batch: Dim,
    /// Symbolic sequence length.
    pub seq: Dim,
    /// `batch*seq`: the token count of flattened activations.
    pub tokens: Dim,
    /// Token positions `0..seq` as f32, created on first use.
    positions: Option<ValueId>,
}

impl<'g, 'a> ModelBuilder<'g, 'a> {
    /// A builder adding to `graph`, computing in `dtype`.
    pub fn new(graph: &'g mut cubevec_ir::Graph, source: WeightSource<'a>, dtype: DType) -> Self {
        let batch = Dim::sym("batch");
        let seq = Dim::sym("seq");
        let tokens = batch.mul(&seq);
        ModelBuilder {
            graph: graph.builder(),
            source,
            dtype,
            batch,
            seq,
            tokens,
            positions: None,
        }
    }

    /// Adds a node and returns all its results.
    pub fn node(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<Option<ValueId>>,
    ) -> Result<Vec<ValueId>, HfError> {
        self.graph
            .add_op(name, op, inputs, Vec::new())
            .map_err(graph_error(name))
    }

    /// Adds a single-result node over present operands.
    pub fn op(&mut self, name: &str, op: Op, inputs: &[ValueId]) -> Result<ValueId, HfError> {
        let results = self.node(name, op, inputs.iter().copied().map(Some).collect())?;
        Ok(results[0])
    }

    /// Adds a single-result node whose result gets the name `output` (a graph output name).
    pub fn op_named(
        &mut self,
        name: &str,
        op: Op,
        inputs: &[ValueId],
        output: &str,
    ) -> Result<ValueId, HfError> {
        let inputs = inputs.iter().copied().map(Some).collect();
        self.graph
            .add_op(name, op, inputs, vec![output.to_string()])
            .map(|v| v[0])
            .map_err(graph_error(name))
    }

    /// Adds the graph input `input_ids`: i64 `[batch, seq]`.
    pub fn token_ids(&mut self) -> Result<ValueId, HfError> {
        let ty = TensorType::new(
            DType::I64,
            Shape(vec![self.batch.clone(), self.seq.clone()]),
        );
        self.graph
            .add_input("input_ids", ty)
            .map_err(graph_error("input_ids"))
    }

    /// Marks `value` as a graph output.
    pub fn output(&mut self, value: ValueId) -> Result<(), HfError> {
        self.graph.add_output(value).map_err(graph_error("outputs"))
    }

    /// The type of a value.
    pub fn ty(&self, value: ValueId) -> &TensorType {
        &self.graph.graph().value(value).ty
    }

    /// Converts `x` to `dtype` unless it already is.
    pub fn cast(&mut self, name: &str, x: ValueId, dtype: DType) -> Result<ValueId, HfError> {
        if self.ty(x).dtype == dtype {
            Ok(x)
        } else {
            self.op(name, Op::Cast { to: dtype }, &[x])
        }
    }

    /// `x` with a new shape.
    pub fn reshape(&mut self, name: &str, x: ValueId, shape: Vec<Dim>) -> Result<ValueId, HfError> {
        self.op(name, Op::Reshape { shape }, &[x])
    }

    /// `x` with axes permuted.
    pub fn transpose(&mut self, name: &str, x: ValueId, perm: &[u64]) -> Result<ValueId, HfError> {
        self.op(
            name,
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }

    /// An elementwise binary op.
    pub fn binary(
        &mut self,
        name: &str,
        op: BinaryOp,
        a: ValueId,
        b: ValueId,
    ) -> Result<ValueId, HfError> {
        self.op(name, Op::Binary(op), &[a, b])
    }

    /// An elementwise unary op.
    pub fn unary(&mut self, name: &str, op: UnaryOp, x: ValueId) -> Result<ValueId, HfError> {
        self.op(name, Op::Unary(op), &[x])
    }

    /// A constant held in the graph.
    pub fn constant(&mut self, name: &str, tensor: &Tensor) -> Result<ValueId, HfError> {
        let shape = Shape::known(&tensor.shape().iter().map(|&d| d as u64).collect::<Vec<_>>());
        self.graph
            .add_initializer(
                name,
                TensorType::new(tensor.dtype(), shape),
                WeightData::Inline(Arc::from(tensor.bytes())),
            )
            .map_err(graph_error(name))
    }

    /// Binds a checkpoint tensor as stored (or an absent weight of `dtype` in shapes-only mode),
    /// checking its shape. Returns the value and its storage dtype.
    pub fn stored_weight(
        &mut self,
        name: &str,
        shape: &[u64],
        shapes_only_dtype: DType,
    ) -> Result<ValueId, HfError> {
        let (dtype, data) = match self.source {
            WeightSource::ShapesOnly { .. } => (shapes_only_dtype, WeightData::Absent),
            WeightSource::Checkpoint(checkpoint, _) => {
                let entry = checkpoint.get(name).ok_or_else(|| HfError::MissingTensor {
                    dir: checkpoint.dir().to_path_buf(),
                    tensor: name.to_string(),
                })?;
                if entry.shape != shape {
                    return Err(HfError::TensorShape {
                        file: entry.file.clone(),
                        tensor: name.to_string(),
                        expected: shape.to_vec(),
                        found: entry.shape.clone(),
                    });
                }
                let dtype = entry.dtype.clone().map_err(|dtype| HfError::TensorDtype {
                    file: entry.file.clone(),
                    tensor: name.to_string(),
                    dtype,
                })?;
                let data = WeightData::file_slice(&entry.file, entry.offset, entry.length);
                (dtype, data)
            }
        };
        self.graph
            .add_initializer(name, TensorType::new(dtype, Shape::known(shape)), data)
            .map_err(graph_error(name))
    }

    /// The block shape of an FP8 weight with a `weight_scale_inv` sibling, if `name` is one.
    fn fp8_block(&self, name: &str, linear: bool) -> Option<[u64; 2]> {
        match self.source {
            WeightSource::ShapesOnly { fp8_block, .. } => fp8_block.filter(|_| linear),
            WeightSource::Checkpoint(checkpoint, block) => {
                let entry = checkpoint.get(name)?;
                let is_fp8 = matches!(entry.dtype, Ok(DType::F8E4M3FN | DType::F8E5M2));
                (is_fp8 && checkpoint.contains(&scale_name(name))).then_some(block)
            }
        }
    }

    /// A weight in the compute dtype: bound by reference, dequantised if it is stored as FP8
    /// with block scales, cast if stored in another float type. `linear` marks projection
    /// weights (the ones a quantised checkpoint stores in FP8).
    pub fn weight(&mut self, name: &str, shape: &[u64], linear: bool) -> Result<ValueId, HfError> {
        let storage = self.storage_dtype();
        match self.fp8_block(name, linear) {
            Some(block) => {
                let data = self.stored_weight(name, shape, DType::F8E4M3FN)?;
                let scale_shape = block_scale_shape(shape, &block);
                let scale = self.stored_weight(&scale_name(name), &scale_shape, DType::F32)?;
                self.node(
                    &format!("{name}.dequantize"),
                    Op::Dequantize {
                        block: block.to_vec(),
                        to: self.dtype,
                    },
                    vec![Some(data), Some(scale), None],
                )
                .map(|v| v[0])
            }
            None => {
                let value = self.stored_weight(name, shape, storage)?;
                self.cast(&format!("{name}.cast"), value, self.dtype)
            }
        }
    }

    /// Storage dtype of unquantised weights in shapes-only mode (the compute dtype otherwise).
    fn storage_dtype(&self) -> DType {
        match self.source {
            WeightSource::ShapesOnly { dtype, .. } => dtype,
            WeightSource::Checkpoint(..) => self.dtype,
        }
    }

    /// `x [t, in] · Wᵀ (+ b)` for the `nn.Linear` named `prefix`, a projection that quantised
    /// checkpoints store in FP8.
    pub fn linear(
        &mut self,
        prefix: &str,
        x: ValueId,
        in_features: u64,
        out_features: u64,
        bias: bool,
    ) -> Result<ValueId, HfError> {
        self.projection(prefix, x, [in_features, out_features], bias, true)
    }

    /// `x [t, in] · Wᵀ (+ b)` for the `nn.Linear` named `prefix`; `quantizable` tells whether a
    /// quantised checkpoint stores its weight in FP8 (the output head does not).
    pub fn projection(
        &mut self,
        prefix: &str,
        x: ValueId,
        [in_features, out_features]: [u64; 2],
        bias: bool,
        quantizable: bool,
    ) -> Result<ValueId, HfError> {
        let w = self.weight(
            &format!("{prefix}.weight"),
            &[out_features, in_features],
            quantizable,
        )?;
        let b = if bias {
            Some(self.weight(&format!("{prefix}.bias"), &[out_features], false)?)
        } else {
            None
        };
        self.node(
            prefix,
            Op::Gemm {
                alpha_bits: 1f32.to_bits(),
                beta_bits: 1f32.to_bits(),
                trans_a: false,
                trans_b: true,
            },
            vec![Some(x), Some(w), b],
        )
        .map(|v| v[0])
    }

    /// RMSNorm over the last axis with the weight `{prefix}.weight` of `dim` elements.
    pub fn rms_norm(
        &mut self,
        prefix: &str,
        x: ValueId,
        dim: u64,
        epsilon: f64,
    ) -> Result<ValueId, HfError> {
        let scale = self.weight(&format!("{prefix}.weight"), &[dim], false)?;
        self.op(
            prefix,
            Op::RmsNorm {
                axis: -1,
                epsilon_bits: (epsilon as f32).to_bits(),
            },
            &[x, scale],
        )
    }

    /// Token positions `0, 1, …, seq-1` as f32 `[seq]` (shared by every layer).
    pub fn positions(&mut self) -> Result<ValueId, HfError> {
        if let Some(p) = self.positions {
            return Ok(p);
        }
        let one = self.constant("rope.one", &Tensor::scalar_f32(DType::F32, 1.0))?;
        let ones = self.op(
            "rope.ones",
            Op::Expand {
                shape: vec![self.seq.clone()],
            },
            &[one],
        )?;
        let positions = self.op(
            "rope.positions",
            Op::CumSum {
                axis: 0,
                exclusive: true,
                reverse: false,
            },
            &[ones],
        )?;
        self.positions = Some(positions);
        Ok(positions)
    }

    /// The rotary tables `cos, sin` `[seq, r]` (compute dtype) for inverse frequencies
    /// `inv_freq [r]`, both scaled by `attention_factor`, as transformers computes them (angles
    /// and cos/sin in f32).
    pub fn rope_tables(
        &mut self,
        prefix: &str,
        inv_freq: &[f32],
        attention_factor: f32,
    ) -> Result<(ValueId, ValueId), HfError> {
        let positions = self.positions()?;
        let column = self.op(
            &format!("{prefix}.positions"),
            Op::Unsqueeze { axes: vec![1] },
            &[positions],
        )?;
        let freqs = self.constant(
            &format!("{prefix}.inv_freq"),
            &Tensor::from_f32(DType::F32, vec![inv_freq.len()], inv_freq),
        )?;
        let angles = self.binary(&format!("{prefix}.angles"), BinaryOp::Mul, column, freqs)?;
        let mut tables = Vec::new();
        for (part, op) in [("cos", UnaryOp::Cos), ("sin", UnaryOp::Sin)] {
            let mut t = self.unary(&format!("{prefix}.{part}"), op, angles)?;
            if attention_factor != 1.0 {
                let factor = self.constant(
                    &format!("{prefix}.{part}.factor"),
                    &Tensor::scalar_f32(DType::F32, attention_factor),
                )?;
                t = self.binary(&format!("{prefix}.{part}.scaled"), BinaryOp::Mul, t, factor)?;
            }
            tables.push(self.cast(&format!("{prefix}.{part}.cast"), t, self.dtype)?);
        }
        Ok((tables[0], tables[1]))
    }

    /// Causal attention over `q [b, h, s, d]`, `k [b, hk, s, d]`, `v [b, hk, s, dv]`, optionally
    /// limited to a sliding window of `window` positions (`i - j < window`).
    pub fn attention(
        &mut self,
        name: &str,
        q: ValueId,
        k: ValueId,
        v: ValueId,
        scale: f64,
        window: Option<u64>,
    ) -> Result<ValueId, HfError> {
        let mask = match window {
            None => None,
            Some(window) => Some(self.sliding_window_mask(name, window)?),
        };
        self.node(
            name,
            Op::Attention {
                scale_bits: (scale as f32).to_bits(),
                causal: true,
            },
            vec![Some(q), Some(k), Some(v), mask],
        )
        .map(|r| r[0])
    }

    /// A bool `[seq, seq]` mask keeping key positions less than `window` behind the query.
    fn sliding_window_mask(&mut self, name: &str, window: u64) -> Result<ValueId, HfError> {
        let positions = self.positions()?;
        let rows = self.op(
            &format!("{name}.mask.rows"),
            Op::Unsqueeze { axes: vec![1] },
            &[positions],
        )?;
        let cols = self.op(
            &format!("{name}.mask.cols"),
            Op::Unsqueeze { axes: vec![0] },
            &[positions],
        )?;
        let distance = self.binary(&format!("{name}.mask.distance"), BinaryOp::Sub, rows, cols)?;
        let limit = self.constant(
            &format!("{name}.mask.window"),
            &Tensor::scalar_f32(DType::F32, window as f32),
        )?;
        self.binary(&format!("{name}.mask"), BinaryOp::Less, distance, limit)
    }

    /// `down(silu(gate(x)) * up(x))` with `nn.Linear` weights `{prefix}.{gate,up,down}_proj`
    /// (or the names given), over `x [t, hidden]`.
    pub fn swiglu_mlp(
        &mut self,
        prefix: &str,
        names: [&str; 3],
        x: ValueId,
        hidden: u64,
        intermediate: u64,
    ) -> Result<ValueId, HfError> {
        let [gate_name, up_name, down_name] = names;
        let gate = self.linear(
            &format!("{prefix}.{gate_name}"),
            x,
            hidden,
            intermediate,
            false,
        )?;
        let up = self.linear(
            &format!("{prefix}.{up_name}"),
            x,
            hidden,
            intermediate,
            false,
        )?;
        let act = self.op(
            &format!("{prefix}.act"),
            Op::SwiGlu {
                split: false,
                limit_bits: None,
            },
            &[gate, up],
        )?;
        self.linear(
            &format!("{prefix}.{down_name}"),
            act,
            intermediate,
            hidden,
            false,
        )
    }

    /// The per-expert `nn.Linear` weights `name(0..experts)` of shape `[out, in]` stacked into one
    /// `[experts, out, in]` value in the compute dtype. Experts are stacked as stored, then FP8
    /// ones dequantised once, with `[1, block…]` blocks over the stacked scales, and others cast
    /// once.
    pub fn stacked_experts(
        &mut self,
        stacked_name: &str,
        experts: u64,
        shape: [u64; 2],
        name: impl Fn(u64) -> String,
    ) -> Result<ValueId, HfError> {
        let [out_f, in_f] = shape;
        let names: Vec<String> = (0..experts).map(&name).collect();
        let block = self.fp8_block(&names[0], true);
        let stacked_shape = vec![Dim::Known(experts), Dim::Known(out_f), Dim::Known(in_f)];
        match block {
            Some(block) => {
                let mut data = Vec::with_capacity(names.len());
                let mut scales = Vec::with_capacity(names.len());
                let scale_shape = block_scale_shape(&shape, &block);
                for n in &names {
                    data.push(self.stored_weight(n, &shape, DType::F8E4M3FN)?);
                    scales.push(self.stored_weight(&scale_name(n), &scale_shape, DType::F32)?);
                }
                let data = self.concat_rows(&format!("{stacked_name}.fp8"), &data)?;
                let data =
                    self.reshape(&format!("{stacked_name}.fp8.stack"), data, stacked_shape)?;
                let scales = self.concat_rows(&format!("{stacked_name}.scale"), &scales)?;
                let scale_stacked = vec![
                    Dim::Known(experts),
                    Dim::Known(scale_shape[0]),
                    Dim::Known(scale_shape[1]),
                ];
                let scales = self.reshape(
                    &format!("{stacked_name}.scale.stack"),
                    scales,
                    scale_stacked,
                )?;
                self.node(
                    stacked_name,
                    Op::Dequantize {
                        block: vec![1, block[0], block[1]],
                        to: self.dtype,
                    },
                    vec![Some(data), Some(scales), None],
                )
                .map(|v| v[0])
            }
            None => {
                // Stacked as stored and cast once.
                let storage = self.storage_dtype();
                let mut weights = Vec::with_capacity(names.len());
                for n in &names {
                    weights.push(self.stored_weight(n, &shape, storage)?);
                }
                let rows = self.concat_rows(&format!("{stacked_name}.rows"), &weights)?;
                let stacked =
                    self.reshape(&format!("{stacked_name}.stack"), rows, stacked_shape)?;
                self.cast(stacked_name, stacked, self.dtype)
            }
        }
    }

    /// Where weights come from (the checkpoint, or nowhere in shapes-only mode).
    pub fn weight_source(&self) -> WeightSource<'a> {
        self.source
    }

    /// Binds a checkpoint tensor stored with shape `stored_shape` as a `dtype` tensor of shape
    /// `shape` over the same bytes (FP4 weights stored as `I8 [out, in/2]` become
    /// `F4E2M1 [out, in]`); the stored shape and the byte length are checked. In shapes-only
    /// mode the weight is absent, typed `dtype` `shape`.
    pub fn reinterpreted_weight(
        &mut self,
        name: &str,
        stored_shape: &[u64],
        dtype: DType,
        shape: &[u64],
    ) -> Result<ValueId, HfError> {
        let data = match self.source {
            WeightSource::ShapesOnly { .. } => WeightData::Absent,
            WeightSource::Checkpoint(checkpoint, _) => {
                let entry = checkpoint.get(name).ok_or_else(|| HfError::MissingTensor {
                    dir: checkpoint.dir().to_path_buf(),
                    tensor: name.to_string(),
                })?;
                if entry.shape != stored_shape {
                    return Err(HfError::TensorShape {
                        file: entry.file.clone(),
                        tensor: name.to_string(),
                        expected: stored_shape.to_vec(),
                        found: entry.shape.clone(),
                    });
                }
                let bits: u64 = shape.iter().product::<u64>() * dtype.bits() as u64;
                if bits.div_ceil(8) != entry.length {
                    return Err(HfError::TensorDtype {
                        file: entry.file.clone(),
                        tensor: name.to_string(),
                        dtype: format!(
                            "{} ({} bytes cannot hold {dtype} {shape:?})",
                            match &entry.dtype {
                                Ok(d) => d.to_string(),
                                Err(d) => d.clone(),
                            },
                            entry.length
                        ),
                    });
                }
                WeightData::file_slice(&entry.file, entry.offset, entry.length)
            }
        };
        self.graph
            .add_initializer(name, TensorType::new(dtype, Shape::known(shape)), data)
            .map_err(graph_error(name))
    }

    /// Sums `x` over `axis`, keeping it as size 1 if `keep_dims`.
    pub fn sum(
        &mut self,
        name: &str,
        x: ValueId,
        axis: i64,
        keep_dims: bool,
    ) -> Result<ValueId, HfError> {
        let op = Op::Reduce {
            op: ReduceOp::Sum,
            axes: vec![axis],
            keep_dims,
        };
        self.op(name, op, &[x])
    }

    /// Concatenates values along axis 0 (one operand is returned as is).
    fn concat_rows(&mut self, name: &str, values: &[ValueId]) -> Result<ValueId, HfError> {
        if values.len() == 1 {
            return Ok(values[0]);
        }
        self.op(name, Op::Concat { axis: 0 }, values)
    }
}

/// The name of the block-scale tensor of an FP8 weight (`x.weight` → `x.weight_scale_inv`).
pub fn scale_name(weight: &str) -> String {
    format!("{weight}_scale_inv")
}

/// The shape of the scale tensor of a block-quantised 2-D weight.
fn block_scale_shape(shape: &[u64], block: &[u64; 2]) -> Vec<u64> {
    shape
        .iter()
        .zip(block)
        .map(|(&d, &b)| d.div_ceil(b))
        .collect()
}

/// Wraps a graph-building error with the node it was building.
fn graph_error(node: &str) -> impl FnOnce(BuildError) -> HfError + '_ {
    move |source| HfError::Graph {
        node: node.to_string(),
        source: Box::new(source),
    }
}
