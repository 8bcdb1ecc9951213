//! Shape and dtype inference for every op.
