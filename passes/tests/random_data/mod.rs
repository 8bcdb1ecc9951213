//! Deterministic test data shared by the lowering tests.

use cubevec_ir::{DType, Tensor};

/// `n` deterministic values in [-2, 2) from a linear congruential generator seeded by `seed`.
pub fn lcg(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// A tensor of `shape` holding [`lcg`] values, rounded to `dtype`.
pub fn random(dtype: DType, shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f32(dtype, shape.to_vec(), &lcg(seed, n))
}
