//! The op importers, one module per family, and the registry mapping `(domain, op_type)` to
//! them with the schema versions each implements.

mod attention;
mod contrib;
mod elementwise;
mod index;
mod linalg;
mod moe;
mod norm;
mod quant;
mod reduce;
mod shape;

use super::context::{Importer, NodeCx, Val};
use super::error::OnnxError;

/// Imports one node: returns one value per ONNX result; `None` (or a shorter list) for results
/// the importer does not produce, which is an error only if something reads them.
pub type ImportFn = fn(&mut Importer, &NodeCx) -> Result<Vec<Option<Val>>, OnnxError>;

/// An importer and the op schema versions it handles.
pub struct OpSpec {
    /// The domain (`""` for the default domain).
    pub domain: &'static str,
    /// The op type.
    pub op_type: &'static str,
    /// Every `since_version` of the op's schema up to opset 28, ascending.
    pub versions: &'static [i64],
    /// The importer.
    pub import: ImportFn,
}

impl OpSpec {
    /// The schema version in force at `opset`, if the importer implements it: the version in
    /// force at opset 13 (the oldest supported) or any later one.
    pub fn check_version(&self, opset: i64) -> Result<i64, String> {
        let in_force = |v: i64| self.versions.iter().rev().copied().find(|&s| s <= v);
        let Some(version) = in_force(opset) else {
            return Err(format!(
                "{} first appears in opset {}",
                self.op_type,
                self.versions.first().copied().unwrap_or(0)
            ));
        };
        let oldest = in_force(13).unwrap_or(version);
        if version < oldest {
            return Err(format!(
                "{} version {version} predates the supported version {oldest} (opset 13 or later)",
                self.op_type
            ));
        }
        Ok(version)
    }
}

/// Shorthand for registry entries of the default domain.
const fn spec(op_type: &'static str, versions: &'static [i64], import: ImportFn) -> OpSpec {
    OpSpec {
        domain: "",
        op_type,
        versions,
        import,
    }
}

/// The importer for an op.
pub fn lookup(domain: &str, op_type: &str) -> Option<&'static OpSpec> {
    [
        elementwise::OPS,
        linalg::OPS,
        reduce::OPS,
        norm::OPS,
        index::OPS,
        shape::OPS,
        quant::OPS,
        attention::OPS,
        moe::OPS,
        contrib::OPS,
    ]
    .into_iter()
    .flatten()
    .find(|s| s.domain == domain && s.op_type == op_type)
}

/// Unwraps a normalised axis or reports it as a bad attribute.
pub fn axis(n: &NodeCx, name: &str, axis: i64, rank: usize) -> Result<usize, OnnxError> {
    cubevec_ir::shape::normalize_axis(axis, rank)
        .ok_or_else(|| n.bad_attr(name, format!("axis {axis} is out of range for rank {rank}")))
}

/// The single result of an import as the result list.
pub fn one(v: Val) -> Result<Vec<Option<Val>>, OnnxError> {
    Ok(vec![Some(v)])
}

#[cfg(test)]
mod tests {
    use super::lookup;

    #[test]
    fn schema_versions_in_force_are_checked() {
        let not = lookup("", "Not").expect("Not");
        assert_eq!(not.check_version(1), Ok(1));
        assert_eq!(not.check_version(23), Ok(1));
        let softmax = lookup("", "Softmax").expect("Softmax");
        assert!(softmax.check_version(11).is_err());
        assert_eq!(softmax.check_version(13), Ok(13));
        assert_eq!(softmax.check_version(28), Ok(13));
        let cast = lookup("", "Cast").expect("Cast");
        assert_eq!(cast.check_version(28), Ok(28));
        assert!(
            lookup("", "SwiGLU")
                .expect("SwiGLU")
                .check_version(23)
                .is_err()
        );
        assert!(lookup("com.microsoft", "MoE").is_some());
        assert!(lookup("", "MoE").is_none());
    }
}
