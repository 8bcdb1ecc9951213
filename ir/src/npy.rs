//! `.npy` reading and writing.
