//! Loading models from any supported format into the graph IR.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cubevec_frontend::hf::{self, HfOptions, KvCache};
use cubevec_ir::interp::{self, RunOptions};
use cubevec_ir::kernel::{TensorId, TensorKind};
use cubevec_ir::shape::DimBindings;
use cubevec_ir::target::Target;
use cubevec_ir::{DType, Graph, Tensor};
use cubevec_passes::optimize::{self, OptimizeOptions, OptimizeReport};
use cubevec_passes::partition::{self, Lowerings, Partition, PartitionReport};

use crate::Error;

/// The formats a model can be read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// cubevec's textual IR (`.cvir`).
    IrText,
    /// An ONNX model (`.onnx`, with external data files beside it).
    Onnx,
    /// A Hugging Face checkpoint directory (`config.json` + `*.safetensors`).
    HuggingFace,
    /// A graph built in code ([`Model::from_graph`]).
    Built,
}

/// Options for reading a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Build a Hugging Face model from `config.json` alone, without weights: the graph can be
    /// compiled but not run.
    pub shapes_only: bool,
    /// Compute a Hugging Face model's activations in this dtype instead of its checkpoint's.
    pub compute_dtype: Option<DType>,
}

/// A model read into the graph IR, with the directory its external weights are relative to.
#[derive(Clone, Debug)]
pub struct Model {
    graph: Graph,
    weight_dir: Option<PathBuf>,
    format: ModelFormat,
    kv_cache: Option<KvCache>,
}

impl Model {
    /// Reads a model, choosing the reader by what `path` is: a `.cvir` file is textual IR, an
    /// `.onnx` file ONNX, a directory with a `config.json` a Hugging Face checkpoint. The graph
    /// is verified before it is returned.
    pub fn load(path: impl AsRef<Path>) -> Result<Model, Error> {
        Model::load_with(path, &LoadOptions::default())
    }

    /// [`Model::load`] with options.
    pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Model, Error> {
        let path = path.as_ref();
        let format = detect_format(path)?;
        if (options.shapes_only || options.compute_dtype.is_some())
            && format != ModelFormat::HuggingFace
        {
            return Err(Error::Inputs(format!(
                "shapes-only mode and a compute dtype apply to Hugging Face checkpoint directories; `{}` is not one",
                path.display()
            )));
        }
        let hf_options = HfOptions {
            shapes_only: options.shapes_only,
            compute_dtype: options.compute_dtype,
        };
        let graph = match format {
            ModelFormat::Onnx => cubevec_frontend::onnx::load(path)?,
            ModelFormat::HuggingFace => hf::load(path, hf_options)?,
            ModelFormat::Built => return Err(Error::UnknownFormat(path.to_path_buf())),
            ModelFormat::IrText => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                cubevec_ir::text::parse(&text).map_err(|source| Error::Parse {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                })?
            }
        };
        let mut model = Model::from_graph_at(graph, format, path)?;
        if format == ModelFormat::HuggingFace {
            model.kv_cache = Some(hf::kv_cache(path, hf_options)?);
        }
        Ok(model)
    }

    /// Parses textual IR held in memory.
    pub fn from_ir_text(text: &str) -> Result<Model, Error> {
        let path = PathBuf::from("<text>");
        let graph = cubevec_ir::text::parse(text).map_err(|source| Error::Parse {
            path: path.clone(),
            source: Box::new(source),
        })?;
        cubevec_ir::verify::verify(&graph).map_err(|source| Error::Verify {
            path,
            source: Box::new(source),
        })?;
        Ok(Model {
            graph,
            weight_dir: None,
            format: ModelFormat::IrText,
            kv_cache: None,
        })
    }

    /// Wraps a graph built in code (with [`cubevec_ir::builder::GraphBuilder`]), after verifying
    /// it. Initializers must hold their data inline (or be absent, for a model that is only
    /// compiled).
    ///
    /// ```
    /// use cubevec::ir::graph::{TensorType, WeightData};
    /// use cubevec::ir::op::BinaryOp;
    /// use cubevec::ir::{DType, Graph, Op, Shape, Tensor};
    /// use cubevec::Model;
    /// use std::collections::HashMap;
    ///
    /// // y = relu(x · w) + x, with x: f32[2, 2] and a 2×2 weight held inline.
    /// let mut graph = Graph::new("tiny");
    /// let mut b = graph.builder();
    /// let f32_2x2 = TensorType::new(DType::F32, Shape::known(&[2, 2]));
    /// let x = b.add_input("x", f32_2x2.clone())?;
    /// let w = Tensor::from_f32(DType::F32, vec![2, 2], &[1.0, -1.0, 2.0, 0.5]);
    /// let w = b.add_initializer("w", f32_2x2, WeightData::Inline(w.bytes().into()))?;
    /// let xw = b.add_op("mm", Op::MatMul, vec![Some(x), Some(w)], vec![])?[0];
    /// let h = b.add_op("act", Op::Unary(cubevec::ir::op::UnaryOp::Relu), vec![Some(xw)], vec![])?[0];
    /// let y = b.add_op("res", Op::Binary(BinaryOp::Add), vec![Some(h), Some(x)], vec!["y".into()])?[0];
    /// b.add_output(y)?;
    /// let model = Model::from_graph(graph)?;
    ///
    /// let x = Tensor::from_f32(DType::F32, vec![2, 2], &[1.0, 2.0, -1.0, 0.0]);
    /// let outputs = model.run_reference(&HashMap::from([("x".to_string(), x)]))?;
    /// // Row 0: [1, 2]·w = [5, 0] → relu [5, 0] + [1, 2]; row 1: [-1, 0]·w = [-1, 1] → [0, 1] + [-1, 0].
    /// assert_eq!(outputs[0].1.to_f32_vec(), vec![6.0, 2.0, -1.0, 1.0]);
    /// # Ok::<(), cubevec::Error>(())
    /// ```
    pub fn from_graph(graph: Graph) -> Result<Model, Error> {
        cubevec_ir::verify::verify(&graph).map_err(|source| Error::Verify {
            path: PathBuf::from(format!("<graph {}>", graph.name)),
            source: Box::new(source),
        })?;
        Ok(Model {
            graph,
            weight_dir: None,
            format: ModelFormat::Built,
            kv_cache: None,
        })
    }

    fn from_graph_at(graph: Graph, format: ModelFormat, path: &Path) -> Result<Model, Error> {
        cubevec_ir::verify::verify(&graph).map_err(|source| Error::Verify {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let weight_dir = if path.is_dir() {
            Some(path.to_path_buf())
        } else {
            path.parent().map(Path::to_path_buf)
        };
        Ok(Model {
            graph,
            weight_dir,
            format,
            kv_cache: None,
        })
    }

    /// The model with its graph optimised by the e-graph optimiser, and what the optimiser did.
    pub fn optimize(&self, options: &OptimizeOptions) -> Result<(Model, OptimizeReport), Error> {
        let (graph, report) = optimize::optimize(self.graph.clone(), options)?;
        let model = Model {
            graph,
            weight_dir: self.weight_dir.clone(),
            format: self.format,
            kv_cache: self.kv_cache.clone(),
        };
        Ok((model, report))
    }

    /// Lowers the graph to a program of kernels tiled for `target`, with its symbolic
    /// dimensions bound by `bindings` (`batch`, `seq`, …), and reports each launch's modelled
    /// cost.
    pub fn plan_kernels(
        &self,
        target: &Target,
        bindings: &DimBindings,
    ) -> Result<(Partition, PartitionReport), Error> {
        self.plan_kernels_with(target, bindings, &Lowerings::new())
    }

    /// [`Model::plan_kernels`] with user lowerings, asked for every node before the built-in
    /// ones.
    pub fn plan_kernels_with(
        &self,
        target: &Target,
        bindings: &DimBindings,
        lowerings: &Lowerings,
    ) -> Result<(Partition, PartitionReport), Error> {
        let partition = partition::partition_with(&self.graph, target, bindings, lowerings)?;
        let report = partition::report(target, &partition);
        Ok((partition, report))
    }

    /// The contents of a partition's constant tensors (weights, and values computed from
    /// weights and bound shapes alone), evaluated with the reference interpreter on the graph
    /// the partition lowered.
    pub fn constants(
        &self,
        partition: &Partition,
        bindings: &DimBindings,
    ) -> Result<Vec<(TensorId, Tensor)>, Error> {
        let (graph, program) = (&partition.graph, &partition.program);
        let mut ids = Vec::new();
        let mut values = Vec::new();
        for (i, t) in program.tensors.iter().enumerate() {
            if t.kind != TensorKind::Constant {
                continue;
            }
            let value = graph.value_by_name(&t.name).ok_or_else(|| {
                Error::Inputs(format!("constant `{}` is not a value of the graph", t.name))
            })?;
            ids.push(TensorId(i as u32));
            values.push(value);
        }
        let options = RunOptions {
            weight_dir: self.weight_dir.clone(),
        };
        let tensors = interp::evaluate_constants(graph, &values, bindings, &options)?;
        Ok(ids.into_iter().zip(tensors).collect())
    }

    /// The directory external weights are read relative to.
    pub fn weight_dir(&self) -> Option<&Path> {
        self.weight_dir.as_deref()
    }

    /// The graph as read.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The KV cache a decoder of the model keeps between decode steps, as its architecture
    /// defines it (Hugging Face checkpoints; the graphs themselves are prefill passes without a
    /// cache).
    pub fn kv_cache(&self) -> Option<&KvCache> {
        self.kv_cache.as_ref()
    }

    /// The format the model was read from.
    pub fn format(&self) -> ModelFormat {
        self.format
    }

    /// Runs the graph with the reference interpreter; returns `(output name, tensor)` pairs in the
    /// graph's output order. Every graph input must be given, and nothing else.
    pub fn run_reference(
        &self,
        inputs: &HashMap<String, Tensor>,
    ) -> Result<Vec<(String, Tensor)>, Error> {
        self.check_input_names(inputs)?;
        let options = RunOptions {
            weight_dir: self.weight_dir.clone(),
        };
        let outputs = interp::run(&self.graph, inputs, &options)?;
        Ok(self
            .graph
            .outputs
            .iter()
            .map(|&v| self.graph.value(v).name.clone())
            .zip(outputs)
            .collect())
    }

    /// Checks that `inputs` names every graph input and nothing else.
    pub fn check_input_names(&self, inputs: &HashMap<String, Tensor>) -> Result<(), Error> {
        let names: Vec<&str> = self
            .graph
            .inputs
            .iter()
            .map(|&v| self.graph.value(v).name.as_str())
            .collect();
        let mut unknown: Vec<&str> = inputs
            .keys()
            .map(String::as_str)
            .filter(|k| !names.contains(k))
            .collect();
        unknown.sort_unstable();
        if let Some(name) = unknown.first() {
            return Err(Error::Inputs(format!(
                "`{name}` is not an input of graph `{}` (its inputs: {})",
                self.graph.name,
                names.join(", ")
            )));
        }
        if let Some(missing) = names.iter().find(|n| !inputs.contains_key(**n)) {
            return Err(Error::Inputs(format!(
                "graph `{}` needs input `{missing}`, which was not given",
                self.graph.name
            )));
        }
        Ok(())
    }
}

/// Decides which reader a path needs.
fn detect_format(path: &Path) -> Result<ModelFormat, Error> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let extension = path.extension().and_then(|e| e.to_str());
    match (meta.is_dir(), extension) {
        (false, Some("cvir")) => Ok(ModelFormat::IrText),
        (false, Some("onnx")) => Ok(ModelFormat::Onnx),
        (true, _) if hf::is_model_dir(path) => Ok(ModelFormat::HuggingFace),
        _ => Err(Error::UnknownFormat(path.to_path_buf())),
    }
}
