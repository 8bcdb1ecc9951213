//! The ONNX protobuf messages the reader decodes, declared by hand for `prost`.
//!
//! Only the fields the frontend reads are declared; protobuf skips the others when decoding.
//! Field numbers and wire types are those of the ONNX format (IR version 14). Every scalar field
//! is `optional` in the format, so absent values decode to the type's default.

/// The top-level model: metadata, opset imports and the main graph.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// Version of the IR the model follows.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// Name of the tool that wrote the model.
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// The main graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// The operator sets (domain, version) the graph uses.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// Model-local functions.
    #[prost(message, repeated, tag = "25")]
    pub functions: Vec<FunctionProto>,
}

/// A domain and the version of its operator set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// The domain; empty (or `ai.onnx`) is the default ONNX domain.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// The opset version.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// A key/value string pair (external data locations, metadata).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// A graph: nodes in topological order, initializers, inputs, outputs and value types.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// The nodes.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// The graph's name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Constant tensors (weights).
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Graph inputs (an input that is also an initializer has a default value).
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Graph outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Types of intermediate values, when the producer recorded them.
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
    /// Sparse initializers (rejected by the reader).
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensorProto>,
}

/// One operator application.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Operand names; an empty name marks an absent optional operand.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Result names; an empty name marks an unused optional result.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// The node's name (may be empty).
    #[prost(string, tag = "3")]
    pub name: String,
    /// The operator.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// The operator's domain; empty is the default ONNX domain.
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// The kind of value an attribute holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AttributeType {
    /// Not set (old writers leave it out; the reader then looks at which field is filled).
    Undefined = 0,
    /// `f`.
    Float = 1,
    /// `i`.
    Int = 2,
    /// `s`.
    String = 3,
    /// `t`.
    Tensor = 4,
    /// `g`.
    Graph = 5,
    /// `floats`.
    Floats = 6,
    /// `ints`.
    Ints = 7,
    /// `strings`.
    Strings = 8,
    /// `tensors`.
    Tensors = 9,
    /// `graphs`.
    Graphs = 10,
    /// `sparse_tensor`.
    SparseTensor = 11,
    /// `sparse_tensors`.
    SparseTensors = 12,
    /// `tp`.
    TypeProto = 13,
    /// `type_protos`.
    TypeProtos = 14,
}

/// A named attribute of a node.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// The attribute's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// A float value.
    #[prost(float, tag = "2")]
    pub f: f32,
    /// An integer value.
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// A string value (UTF-8 bytes).
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    /// A tensor value.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// A subgraph (control flow; rejected by the reader).
    #[prost(message, optional, tag = "6")]
    pub g: Option<GraphProto>,
    /// A list of floats.
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    /// A list of integers.
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// A list of strings.
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    /// A list of tensors.
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
    /// The value's kind.
    #[prost(enumeration = "AttributeType", tag = "20")]
    pub r#type: i32,
    /// In a function body: the caller's attribute this one refers to.
    #[prost(string, tag = "21")]
    pub ref_attr_name: String,
    /// A sparse tensor value (rejected by the reader).
    #[prost(message, optional, tag = "22")]
    pub sparse_tensor: Option<SparseTensorProto>,
}

/// A named value with its type.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// The value's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// A value type; the frontend reads tensor types only.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// The type, when it is one the frontend declares.
    #[prost(oneof = "type_proto::Value", tags = "1, 4, 5, 7, 8, 9")]
    pub value: Option<type_proto::Value>,
}

/// The nested messages of [`TypeProto`].
pub mod type_proto {
    /// A dense tensor type.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        /// The element type (a [`super::DataType`] code).
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        /// The shape; absent when the rank is unknown.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<super::TensorShapeProto>,
    }

    /// A non-tensor type the reader only recognises to reject it by name.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Other {}

    /// Which type a [`super::TypeProto`] holds.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// A dense tensor.
        #[prost(message, tag = "1")]
        TensorType(Tensor),
        /// A sequence.
        #[prost(message, tag = "4")]
        SequenceType(Other),
        /// A map.
        #[prost(message, tag = "5")]
        MapType(Other),
        /// An opaque type.
        #[prost(message, tag = "7")]
        OpaqueType(Other),
        /// A sparse tensor.
        #[prost(message, tag = "8")]
        SparseTensorType(Other),
        /// An optional value.
        #[prost(message, tag = "9")]
        OptionalType(Other),
    }
}

/// A tensor shape: one entry per axis.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// The axes.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// The nested messages of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// One axis: a size, a symbol, or neither (unknown).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        /// The size or symbol.
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
    }

    /// The nested types of [`Dimension`].
    pub mod dimension {
        /// A known size or a symbol.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// A known size.
            #[prost(int64, tag = "1")]
            DimValue(i64),
            /// A symbolic size.
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

/// Element type codes of [`TensorProto::data_type`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Not set.
    Undefined = 0,
    /// f32.
    Float = 1,
    /// u8.
    Uint8 = 2,
    /// i8.
    Int8 = 3,
    /// u16.
    Uint16 = 4,
    /// i16.
    Int16 = 5,
    /// i32.
    Int32 = 6,
    /// i64.
    Int64 = 7,
    /// Strings.
    String = 8,
    /// bool.
    Bool = 9,
    /// f16.
    Float16 = 10,
    /// f64.
    Double = 11,
    /// u32.
    Uint32 = 12,
    /// u64.
    Uint64 = 13,
    /// Complex f32.
    Complex64 = 14,
    /// Complex f64.
    Complex128 = 15,
    /// bf16.
    Bfloat16 = 16,
    /// FP8 E4M3FN.
    Float8e4m3fn = 17,
    /// FP8 E4M3FNUZ.
    Float8e4m3fnuz = 18,
    /// FP8 E5M2.
    Float8e5m2 = 19,
    /// FP8 E5M2FNUZ.
    Float8e5m2fnuz = 20,
    /// u4.
    Uint4 = 21,
    /// i4.
    Int4 = 22,
    /// FP4 E2M1.
    Float4e2m1 = 23,
    /// UE8M0 scale.
    Float8e8m0 = 24,
    /// u2.
    Uint2 = 25,
    /// i2.
    Int2 = 26,
    /// FP6 E2M3.
    Float6e2m3 = 27,
    /// FP6 E3M2.
    Float6e3m2 = 28,
}

/// Where a tensor's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataLocation {
    /// In the message (`raw_data` or a typed field).
    Default = 0,
    /// In a separate file described by `external_data`.
    External = 1,
}

/// A byte range of a tensor split over several messages (rejected by the reader).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Segment {
    /// First element.
    #[prost(int64, tag = "1")]
    pub begin: i64,
    /// One past the last element.
    #[prost(int64, tag = "2")]
    pub end: i64,
}

/// A tensor value: initializer, `Constant` value, attribute or test data.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// Sizes.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// Element type (a [`DataType`] code).
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// Present when this message holds only part of the tensor.
    #[prost(message, optional, tag = "3")]
    pub segment: Option<Segment>,
    /// f32 elements, and the f32 parts of complex64.
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// Elements of i32, i16, i8, u16, u8, bool, f16, bf16 and the 8-bit float types, one per
    /// entry (16-bit floats as their bit patterns); packed 4-bit types two per entry.
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// String elements.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    /// i64 elements.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// The tensor's name.
    #[prost(string, tag = "8")]
    pub name: String,
    /// Little-endian element bytes (sub-byte types packed); decoded from a [`bytes::Bytes`]
    /// buffer, a view of it rather than a copy.
    #[prost(bytes = "bytes", optional, tag = "9")]
    pub raw_data: Option<bytes::Bytes>,
    /// f64 elements.
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// u32 and u64 elements.
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    /// For external data: `location`, `offset`, `length`, `checksum`.
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// Where the bytes are.
    #[prost(enumeration = "DataLocation", tag = "14")]
    pub data_location: i32,
}

/// A sparse tensor; the reader only needs to recognise it to reject it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SparseTensorProto {
    /// Dense sizes.
    #[prost(int64, repeated, tag = "3")]
    pub dims: Vec<i64>,
}

/// A model-local function (its body is not inlined by the reader).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionProto {
    /// The function's name (its op type).
    #[prost(string, tag = "1")]
    pub name: String,
    /// The function's domain.
    #[prost(string, tag = "10")]
    pub domain: String,
}
