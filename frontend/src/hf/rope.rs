//! Rotary embedding frequencies from a config: the default schedule and YaRN, computed as
//! transformers computes them.

use super::HfError;
use super::config::Config;

/// Inverse frequencies of the rotary dimensions and the factor cos/sin are scaled by.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeFrequencies {
    /// `inv_freq[i]` for each of the `dim/2` rotated pairs.
    pub inv_freq: Vec<f32>,
    /// Multiplies cos and sin (YaRN's attention factor; 1 otherwise).
    pub attention_factor: f32,
}

/// The rope parameters of a config: `rope_parameters` (transformers 5) or `rope_scaling` plus
/// `rope_theta` (older configs and the published checkpoints).
pub struct RopeParameters {
    theta: f64,
    kind: String,
    params: Option<Config>,
}

impl RopeParameters {
    /// Reads the rope parameters of `config`.
    pub fn read(config: &Config) -> Result<RopeParameters, HfError> {
        let params = match config.opt_object("rope_parameters")? {
            Some(p) => Some(p),
            None => config.opt_object("rope_scaling")?,
        };
        let nested_theta = match &params {
            Some(p) => p.opt_f64("rope_theta")?,
            None => None,
        };
        let theta = match nested_theta {
            Some(theta) => theta,
            None => config.f64_or("rope_theta", 10000.0)?,
        };
        let kind = match &params {
            Some(p) => match p.opt_str("rope_type")? {
                Some(k) => k.to_string(),
                None => p.opt_str("type")?.unwrap_or("default").to_string(),
            },
            None => "default".to_string(),
        };
        Ok(RopeParameters {
            theta,
            kind,
            params,
        })
    }

    /// The frequencies for `dim` rotary features of a model whose `max_position_embeddings` is
    /// `max_positions`.
    pub fn frequencies(
        &self,
        config: &Config,
        dim: u64,
        max_positions: u64,
    ) -> Result<RopeFrequencies, HfError> {
        let exponents: Vec<f64> = (0..dim / 2)
            .map(|i| ((2 * i) as f32 / dim as f32) as f64)
            .collect();
        let pos_freqs: Vec<f32> = exponents
            .iter()
            .map(|&e| (self.theta as f32).powf(e as f32))
            .collect();
        match (self.kind.as_str(), &self.params) {
            ("default", _) => Ok(RopeFrequencies {
                inv_freq: pos_freqs.iter().map(|&p| 1.0 / p).collect(),
                attention_factor: 1.0,
            }),
            ("yarn", Some(params)) => yarn(params, self.theta, dim, max_positions, &pos_freqs),
            (kind, _) => Err(config.error(
                "rope_scaling",
                format!("rope type `{kind}` is not supported (supported: default, yarn)"),
            )),
        }
    }

    /// The YaRN `mscale` correction of the softmax scale, as DeepSeek applies it
    /// (`mscale_all_dim` squared); 1 for other rope types.
    pub fn softmax_scale_correction(&self) -> Result<f64, HfError> {
        match (self.kind.as_str(), &self.params) {
            ("yarn", Some(params)) => {
                let mscale_all_dim = params.f64_or("mscale_all_dim", 0.0)?;
                if mscale_all_dim == 0.0 {
                    return Ok(1.0);
                }
                let factor = params.f64_or("factor", 1.0)?;
                let m = yarn_mscale(factor, mscale_all_dim);
                Ok(m * m)
            }
            _ => Ok(1.0),
        }
    }
}

/// `0.1·m·ln(s) + 1` for `s > 1`, else 1.
fn yarn_mscale(scale: f64, m: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * scale.ln() + 1.0
    }
}

/// YaRN inverse frequencies: interpolation below the correction range, extrapolation above, a
/// linear ramp between (transformers' `_compute_yarn_parameters`).
fn yarn(
    params: &Config,
    base: f64,
    dim: u64,
    max_positions: u64,
    pos_freqs: &[f32],
) -> Result<RopeFrequencies, HfError> {
    let original = match params.opt_u64("original_max_position_embeddings")? {
        Some(o) => o,
        None => max_positions,
    };
    let factor = params.f64_or("factor", max_positions as f64 / original as f64)?;
    let mscale = params.f64_or("mscale", 0.0)?;
    let mscale_all_dim = params.f64_or("mscale_all_dim", 0.0)?;
    let attention_factor = match params.opt_f64("attention_factor")? {
        Some(a) => a,
        None if mscale != 0.0 && mscale_all_dim != 0.0 => {
            yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
        }
        None => yarn_mscale(factor, 1.0),
    };
    let beta_fast = nonzero_or(params.f64_or("beta_fast", 32.0)?, 32.0);
    let beta_slow = nonzero_or(params.f64_or("beta_slow", 1.0)?, 1.0);
    let correction_dim = |rotations: f64| {
        (dim as f64 * (original as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln())
            / (2.0 * base.ln())
    };
    let mut low = correction_dim(beta_fast);
    let mut high = correction_dim(beta_slow);
    if params.bool_or("truncate", true)? {
        low = low.floor();
        high = high.ceil();
    }
    let low = low.max(0.0) as f32;
    let mut high = high.min(dim as f64 - 1.0) as f32;
    if low == high {
        high += 0.001;
    }
    let inv_freq = pos_freqs
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
            let extrapolation_factor = 1.0 - ramp;
            let interpolation = 1.0 / (factor as f32 * p);
            let extrapolation = 1.0 / p;
            interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor
        })
        .collect();
    Ok(RopeFrequencies {
        inv_freq,
        attention_factor: attention_factor as f32,
    })
}

/// `value`, or `default` when it is 0 (transformers' `x or default`).
fn nonzero_or(value: f64, default: f64) -> f64 {
    if value == 0.0 { default } else { value }
}
