//! Target descriptions of Ascend NPUs (Atlas A2 910B1–B4, Atlas A3 910C), read from the JSON
//! data files in `ir/targets/`.
//!
//! Every figure in those files carries a `source` string per group saying where it comes from
//! (AscendC headers and docs, platform ini files, CATLASS, papers, or "model estimate"). The data
//! files are compiled in with `include_str!`, so a [`Target`] is always available without I/O.

use serde::{Deserialize, Serialize};

use crate::DType;

/// Errors when looking up or reading a target description.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// No target of that name is built in.
    #[error("unknown target `{name}` (known targets: {known})")]
    Unknown {
        /// The requested name.
        name: String,
        /// The built-in names, comma separated.
        known: String,
    },
    /// A built-in data file does not parse.
    #[error("target file `{file}` is malformed: {source}")]
    Malformed {
        /// The data file name.
        file: &'static str,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A data file parses but breaks an invariant.
    #[error("target `{name}`: {message}")]
    Invalid {
        /// The target name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// The built-in target data files, by file name.
const TARGET_FILES: [(&str, &str); 5] = [
    (
        "ascend910b1.json",
        include_str!("../../targets/ascend910b1.json"),
    ),
    (
        "ascend910b2.json",
        include_str!("../../targets/ascend910b2.json"),
    ),
    (
        "ascend910b3.json",
        include_str!("../../targets/ascend910b3.json"),
    ),
    (
        "ascend910b4.json",
        include_str!("../../targets/ascend910b4.json"),
    ),
    (
        "ascend910c.json",
        include_str!("../../targets/ascend910c.json"),
    ),
];

/// One Ascend NPU as the compiler sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// Name, e.g. `ascend910b2`.
    pub name: String,
    /// `__NPU_ARCH__` of the AI cores (2201 for 910B and 910C).
    pub npu_arch: u32,
    /// Dies in the package (2 for 910C).
    pub dies: u32,
    /// Free-form remarks about how the part is modelled.
    pub notes: String,
    /// Core counts and clock.
    pub cores: Cores,
    /// On-chip buffer sizes and alignments, per core.
    pub buffers: Buffers,
    /// Cube fractal shapes and rates per input dtype.
    pub fractals: Fractals,
    /// Vector unit throughput.
    pub vector: VectorUnit,
    /// Data-movement engine bandwidths.
    pub mte: Mte,
    /// Off-chip memory and L2.
    pub memory: Memory,
    /// Parameters of the cost model that are not published hardware figures.
    pub model: ModelParams,
}

/// Core counts and clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cores {
    /// Cube cores (AIC).
    pub aic: u32,
    /// Vector cores (AIV); two per AIC on arch 2201.
    pub aiv: u32,
    /// Core clock in MHz.
    pub clock_mhz: u32,
    /// Where the figures come from.
    pub source: String,
}

/// One on-chip buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferSpec {
    /// Physical size in bytes.
    pub bytes: u64,
    /// Required start-address alignment in bytes.
    pub align: u64,
    /// Bytes the runtime always keeps (not usable by kernels).
    pub reserved_bytes: u64,
    /// Further bytes reserved when the high-level AscendC APIs are used (kept free by cubevec).
    pub api_reserved_bytes: u64,
}

impl BufferSpec {
    /// Bytes a cubevec kernel may allocate: the size minus both reservations.
    pub fn usable_bytes(&self) -> u64 {
        self.bytes
            .saturating_sub(self.reserved_bytes)
            .saturating_sub(self.api_reserved_bytes)
    }
}

/// The on-chip buffers of one AI core pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Buffers {
    /// Where the figures come from.
    pub source: String,
    /// Unified buffer of each AIV.
    pub ub: BufferSpec,
    /// L1 of the AIC.
    pub l1: BufferSpec,
    /// L0A (left Cube operand).
    pub l0a: BufferSpec,
    /// L0B (right Cube operand).
    pub l0b: BufferSpec,
    /// L0C (Cube accumulator).
    pub l0c: BufferSpec,
    /// Bias table.
    pub bias_table: BufferSpec,
    /// Fixpipe parameter buffer.
    pub fixpipe_buffer: BufferSpec,
}

/// One Cube fractal: `m×k` of A times `k×n` of B per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FractalShape {
    /// Input dtype of A and B.
    #[serde(with = "dtype_name")]
    pub input: DType,
    /// Accumulator dtype in L0C.
    #[serde(with = "dtype_name")]
    pub acc: DType,
    /// Rows of an A fractal.
    pub m: u64,
    /// Columns of an A fractal (rows of a B fractal): 32 bytes of the input dtype.
    pub k: u64,
    /// Columns of a B fractal.
    pub n: u64,
    /// Multiply-accumulates per cycle per AIC.
    pub macs_per_cycle: u64,
}

/// Cube fractal shapes per input dtype.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fractals {
    /// Where the figures come from.
    pub source: String,
    /// One entry per supported input dtype.
    pub shapes: Vec<FractalShape>,
}

/// Vector unit throughput.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VectorUnit {
    /// Bytes processed per cycle per AIV (one 256-byte repeat).
    pub bytes_per_cycle: u64,
    /// Where the figure comes from.
    pub source: String,
}

/// Data-movement engine bandwidths.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mte {
    /// MTE1 L1→L0A bytes per cycle.
    pub l1_to_l0a_bytes_per_cycle: u64,
    /// MTE1 L1→L0B bytes per cycle.
    pub l1_to_l0b_bytes_per_cycle: u64,
    /// MTE2/MTE3 GM bandwidth of one core in bytes per cycle when all cores stream.
    pub gm_bytes_per_cycle_per_core: f64,
    /// Fixpipe L0C→GM bytes per cycle.
    pub fixpipe_bytes_per_cycle: u64,
    /// Largest GM burst.
    pub gm_burst_bytes: u64,
    /// Smallest GM burst: every row of a transfer costs a whole number of these.
    pub gm_min_burst_bytes: u64,
    /// Transfer size from which a GM copy reaches full bandwidth.
    pub full_bandwidth_transfer_bytes: u64,
    /// Where the figures come from.
    pub source: String,
}

/// Off-chip memory and L2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// HBM capacity in bytes.
    pub hbm_bytes: u64,
    /// HBM bandwidth in GB/s (10⁹ bytes per second).
    pub hbm_gbps: f64,
    /// L2 capacity in bytes.
    pub l2_bytes: u64,
    /// Aggregate L2 bandwidth in GB/s.
    pub l2_gbps: f64,
    /// Where the figures come from.
    pub source: String,
}

/// Cost-model parameters that are estimates rather than published figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelParams {
    /// Fixed issue cost per Cube or vector instruction, in cycles.
    pub instruction_overhead_cycles: u64,
    /// Fixed start-up latency of one GM transfer (MTE2, MTE3, Fixpipe), in cycles.
    pub transfer_latency_cycles: u64,
    /// Where the figures come from.
    pub source: String,
}

/// Serde adapter writing a [`DType`] by its textual name.
mod dtype_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::DType;

    pub fn serialize<S: Serializer>(dtype: &DType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(dtype.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DType, D::Error> {
        let name = String::deserialize(d)?;
        name.parse::<DType>()
            .map_err(|e| serde::de::Error::custom(format!("{e}")))
    }
}

impl Target {
    /// The built-in target of that name (`ascend910b1` … `ascend910b4`, `ascend910c`).
    pub fn by_name(name: &str) -> Result<Target, TargetError> {
        for (file, text) in TARGET_FILES {
            if file.strip_suffix(".json") == Some(name) {
                return Target::parse(file, text);
            }
        }
        Err(TargetError::Unknown {
            name: name.to_string(),
            known: TARGET_FILES
                .iter()
                .map(|(f, _)| f.trim_end_matches(".json"))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Every built-in target, in name order.
    pub fn all() -> Result<Vec<Target>, TargetError> {
        TARGET_FILES
            .iter()
            .map(|(file, text)| Target::parse(file, text))
            .collect()
    }

    /// Parses and checks one data file.
    fn parse(file: &'static str, text: &str) -> Result<Target, TargetError> {
        let target: Target =
            serde_json::from_str(text).map_err(|source| TargetError::Malformed { file, source })?;
        target.check()?;
        Ok(target)
    }

    /// Checks the invariants every target must satisfy.
    pub fn check(&self) -> Result<(), TargetError> {
        let fail = |message: String| {
            Err(TargetError::Invalid {
                name: self.name.clone(),
                message,
            })
        };
        if self.cores.aic == 0 || self.cores.aiv != 2 * self.cores.aic {
            return fail(format!(
                "expected AIV = 2 × AIC > 0, found {} AIC and {} AIV",
                self.cores.aic, self.cores.aiv
            ));
        }
        if self.cores.clock_mhz == 0 {
            return fail("clock is zero".into());
        }
        let b = &self.buffers;
        for (label, spec) in [
            ("ub", b.ub),
            ("l1", b.l1),
            ("l0a", b.l0a),
            ("l0b", b.l0b),
            ("l0c", b.l0c),
            ("bias_table", b.bias_table),
            ("fixpipe_buffer", b.fixpipe_buffer),
        ] {
            if !spec.align.is_power_of_two() || !spec.bytes.is_multiple_of(spec.align) {
                return fail(format!(
                    "buffer {label}: alignment {} must be a power of two dividing the size {}",
                    spec.align, spec.bytes
                ));
            }
            if spec.usable_bytes() == 0 {
                return fail(format!("buffer {label} has no usable bytes"));
            }
        }
        for f in &self.fractals.shapes {
            if f.m != 16 || f.n != 16 || f.k * (f.input.bits() as u64) != 256 {
                return fail(format!(
                    "fractal for {} must be 16 × (32 bytes) × 16, found {}×{}×{}",
                    f.input, f.m, f.k, f.n
                ));
            }
            if f.macs_per_cycle == 0 {
                return fail(format!("fractal for {} has a zero MAC rate", f.input));
            }
        }
        if self.memory.hbm_gbps <= 0.0
            || self.memory.l2_gbps < self.memory.hbm_gbps
            || self.mte.gm_bytes_per_cycle_per_core <= 0.0
        {
            return fail("bandwidths must be positive with L2 at least as fast as HBM".into());
        }
        Ok(())
    }

    /// Clock in Hz.
    pub fn clock_hz(&self) -> f64 {
        self.cores.clock_mhz as f64 * 1e6
    }

    /// The Cube fractal for an input dtype, if the Cube supports it.
    pub fn fractal(&self, input: DType) -> Option<&FractalShape> {
        self.fractals.shapes.iter().find(|f| f.input == input)
    }

    /// Peak Cube throughput in FLOP/s (2 per MAC) for an input dtype, over all AICs.
    pub fn peak_cube_flops(&self, input: DType) -> Option<f64> {
        self.fractal(input)
            .map(|f| 2.0 * f.macs_per_cycle as f64 * self.cores.aic as f64 * self.clock_hz())
    }

    /// The buffer specification of a memory level, or `None` for GM.
    pub fn buffer(&self, level: crate::kernel::MemLevel) -> Option<&BufferSpec> {
        use crate::kernel::MemLevel;
        let b = &self.buffers;
        match level {
            MemLevel::Gm => None,
            MemLevel::L1 => Some(&b.l1),
            MemLevel::L0A => Some(&b.l0a),
            MemLevel::L0B => Some(&b.l0b),
            MemLevel::L0C => Some(&b.l0c),
            MemLevel::Ub => Some(&b.ub),
            MemLevel::BiasTable => Some(&b.bias_table),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_loads_and_satisfies_invariants() {
        let all = Target::all().expect("built-in targets parse");
        let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ascend910b1",
                "ascend910b2",
                "ascend910b3",
                "ascend910b4",
                "ascend910c"
            ]
        );
        for t in &all {
            assert_eq!(Target::by_name(&t.name).expect("lookup"), *t);
            assert_eq!(t.npu_arch, 2201);
            assert_eq!(t.buffers.ub.bytes, 192 * 1024);
            assert_eq!(t.buffers.l1.bytes, 512 * 1024);
            assert_eq!(t.buffers.l0a.bytes, 64 * 1024);
            assert_eq!(t.buffers.l0c.bytes, 128 * 1024);
            assert_eq!(t.fractal(DType::F16).map(|f| f.k), Some(16));
            assert_eq!(t.fractal(DType::I8).map(|f| f.k), Some(32));
            assert_eq!(t.fractal(DType::F32).map(|f| f.k), Some(8));
            assert!(!t.cores.source.is_empty() && !t.memory.source.is_empty());
        }
    }

    #[test]
    fn peaks_match_the_documented_derivations() {
        let b2 = Target::by_name("ascend910b2").expect("910B2");
        let peak = b2.peak_cube_flops(DType::F16).expect("fp16 cube");
        assert!((peak / 1e12 - 353.9).abs() < 0.1, "{peak}");
        let c = Target::by_name("ascend910c").expect("910C");
        assert_eq!(c.dies, 2);
        let peak_c = c.peak_cube_flops(DType::BF16).expect("bf16 cube");
        assert!((peak_c / 1e12 - 707.8).abs() < 0.1, "{peak_c}");
        let b4 = Target::by_name("ascend910b4").expect("910B4");
        let peak_b4 = b4.peak_cube_flops(DType::F16).expect("fp16 cube");
        assert!((peak_b4 / 1e12 - 245.8).abs() < 0.1, "{peak_b4}");
    }

    #[test]
    fn unknown_target_names_the_known_ones() {
        let err = Target::by_name("ascend310p").expect_err("not built in");
        assert!(err.to_string().contains("ascend910b2"), "{err}");
    }
}
