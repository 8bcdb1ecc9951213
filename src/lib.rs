//! cubevec: a tensor compiler for Mixture-of-Experts models on Huawei Ascend NPUs.
pub use cubevec_ir as ir;
