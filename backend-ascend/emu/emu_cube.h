// cubevec AscendC CPU emulation: cube path (LoadData L1 → L0A/L0B, Mmad, Fixpipe L0C → GM).
#pragma once

#include "emu_gm.h"

/// Conversion applied by Fixpipe while moving L0C out. On the device this is a compiler builtin
/// enum at global scope (kernels write `QuantMode_t::F322BF16` unqualified), so it lives outside
/// the AscendC namespace here too.
enum class QuantMode_t { NoQuant, F322F16, F322BF16, DEQF16, VDEQF16, QF322B8_PRE, VQF322B8_PRE, REQ8, VREQ8 };

namespace AscendC {

/// LoadData 2D parameters: one repeat moves one 512-byte fractal.
struct LoadData2DParams {
    uint16_t startIndex = 0;
    uint8_t repeatTimes = 0;
    uint16_t srcStride = 0;
    uint8_t sid = 0;
    uint16_t dstGap = 0;
    bool ifTranspose = false;
    uint8_t addrMode = 0;
    LoadData2DParams() = default;
    LoadData2DParams(uint16_t start, uint8_t repeat, uint16_t srcStrideIn, uint8_t sidIn, uint16_t dstGapIn,
                     bool transpose, uint8_t addrModeIn)
        : startIndex(start), repeatTimes(repeat), srcStride(srcStrideIn), sid(sidIn), dstGap(dstGapIn),
          ifTranspose(transpose), addrMode(addrModeIn) {}
};

/// L1 (A1/B1) → L0A (A2) / L0B (B2), fractal by fractal, optionally transposing 16×16 b16 fractals.
template <typename T>
inline void LoadData(const LocalTensor<T>& dst, const LocalTensor<T>& src, const LoadData2DParams& p) {
    static const char* call = "LoadData(L1->L0, LoadData2DParams)";
    dst.EmuIn(call, "dst", Hardware::L0A, Hardware::L0B);
    src.EmuIn(call, "src", Hardware::L1);
    dst.EmuAlign(call, "dst", 512);
    src.EmuAlign(call, "src", 32);
    if (p.ifTranspose && sizeof(T) != 2) {
        emu::Fail(emu::Failure::Unsupported, call, "ifTranspose requires a 16-bit type, got %zu-byte elements", sizeof(T));
    }
    if (p.repeatTimes == 0) return;
    const uint32_t r1 = p.repeatTimes - 1u;
    src.EmuNeed(call, "src", (static_cast<uint64_t>(p.startIndex) + static_cast<uint64_t>(r1) * p.srcStride + 1) * 512);
    dst.EmuNeed(call, "dst", (static_cast<uint64_t>(p.repeatTimes) + static_cast<uint64_t>(r1) * p.dstGap) * 512);
    const uint64_t seq = emu::Issue(emu::Pipe::MTE1);
    src.EmuRead(call, "src", emu::Pipe::MTE1, seq, (static_cast<uint64_t>(p.startIndex) + static_cast<uint64_t>(r1) * p.srcStride + 1) * 512);
    dst.EmuWrite(call, "dst", emu::Pipe::MTE1, seq, (static_cast<uint64_t>(p.repeatTimes) + static_cast<uint64_t>(r1) * p.dstGap) * 512);
    for (uint32_t r = 0; r < p.repeatTimes; ++r) {
        const uint8_t* in = src.Bytes() + (static_cast<uint64_t>(p.startIndex) + static_cast<uint64_t>(r) * p.srcStride) * 512;
        uint8_t* out = dst.Bytes() + static_cast<uint64_t>(r) * (1u + p.dstGap) * 512;
        if (!p.ifTranspose) {
            std::memmove(out, in, 512);
        } else {
            uint16_t tmp[256];
            std::memcpy(tmp, in, 512);
            uint16_t res[256];
            for (int i = 0; i < 16; ++i)
                for (int j = 0; j < 16; ++j) res[i * 16 + j] = tmp[j * 16 + i];
            std::memcpy(out, res, 512);
        }
    }
}

/// Mmad parameters; m, n, k are element counts.
struct MmadParams {
    uint16_t m = 0;
    uint16_t n = 0;
    uint16_t k = 0;
    bool isBias = false;
    int32_t fmOffset = 0;
    bool enSsparse = false;
    bool enWinogradA = false;
    bool enWinogradB = false;
    uint8_t unitFlag = 0;
    bool kDirectionAlign = false;
    bool cmatrixSource = false;
    bool cmatrixInitVal = true;
    MmadParams() = default;
    MmadParams(uint16_t mIn, uint16_t nIn, uint16_t kIn, bool isBiasIn, int32_t fmOffsetIn, bool enSsparseIn,
               bool enWinogradAIn, bool enWinogradBIn)
        : m(mIn), n(nIn), k(kIn), isBias(isBiasIn), fmOffset(fmOffsetIn), enSsparse(enSsparseIn),
          enWinogradA(enWinogradAIn), enWinogradB(enWinogradBIn) {}
    MmadParams(uint16_t mIn, uint16_t nIn, uint16_t kIn, uint8_t unitFlagIn, bool cmatrixSourceIn,
               bool cmatrixInitValIn)
        : m(mIn), n(nIn), k(kIn), unitFlag(unitFlagIn), cmatrixSource(cmatrixSourceIn),
          cmatrixInitVal(cmatrixInitValIn) {}
};

/// C (L0C, NZ) = [C +] A (L0A, ZZ) · B (L0B, ZN), accumulating in the C type. m = 1 is GEMV mode
/// (L0A read as k contiguous elements).
template <typename T, typename U, typename S>
inline void Mmad(const LocalTensor<T>& dst, const LocalTensor<U>& fm, const LocalTensor<S>& filter, const MmadParams& p) {
    static const char* call = "Mmad";
    constexpr bool legal = (std::is_same_v<U, half> && std::is_same_v<S, half> && std::is_same_v<T, float>) ||
                           (std::is_same_v<U, bfloat16_t> && std::is_same_v<S, bfloat16_t> && std::is_same_v<T, float>) ||
                           (std::is_same_v<U, float> && std::is_same_v<S, float> && std::is_same_v<T, float>) ||
                           (std::is_same_v<U, int8_t> && std::is_same_v<S, int8_t> && std::is_same_v<T, int32_t>);
    static_assert(legal, "Mmad: dtype triple not supported on arch 2201");
    dst.EmuIn(call, "dst", Hardware::L0C);
    fm.EmuIn(call, "fm", Hardware::L0A);
    filter.EmuIn(call, "filter", Hardware::L0B);
    dst.EmuAlign(call, "dst", 1024);
    fm.EmuAlign(call, "fm", 512);
    filter.EmuAlign(call, "filter", 512);
    if (p.m > 4095 || p.n > 4095 || p.k > 4095) {
        emu::Fail(emu::Failure::BadParameter, call, "m=%u n=%u k=%u: each must be <= 4095", p.m, p.n, p.k);
    }
    if (p.unitFlag != 0) emu::Fail(emu::Failure::Unsupported, call, "unitFlag %u is not emulated", p.unitFlag);
    if (p.cmatrixSource) emu::Fail(emu::Failure::Unsupported, call, "cmatrixSource (BiasTable) is not emulated");
    if (p.m == 0 || p.n == 0 || p.k == 0) return;
    constexpr uint32_t k0 = 32 / sizeof(U);
    const uint32_t m1 = (p.m + 15u) / 16u;
    const uint32_t k1 = (p.k + k0 - 1) / k0;
    const uint32_t n1 = (p.n + 15u) / 16u;
    const bool gemv = p.m == 1;
    fm.EmuNeed(call, "fm", gemv ? static_cast<uint64_t>(p.k) * sizeof(U) : static_cast<uint64_t>(m1) * k1 * 512);
    filter.EmuNeed(call, "filter", static_cast<uint64_t>(k1) * n1 * 512);
    dst.EmuNeed(call, "dst", static_cast<uint64_t>(m1) * n1 * 256 * sizeof(T));
    const bool init = p.cmatrixInitVal && !p.isBias;
    const uint64_t seq = emu::Issue(emu::Pipe::M);
    fm.EmuRead(call, "fm", emu::Pipe::M, seq, gemv ? static_cast<uint64_t>(p.k) * sizeof(U) : static_cast<uint64_t>(m1) * k1 * 512);
    filter.EmuRead(call, "filter", emu::Pipe::M, seq, static_cast<uint64_t>(k1) * n1 * 512);
    if (!init) dst.EmuRead(call, "dst", emu::Pipe::M, seq, static_cast<uint64_t>(m1) * n1 * 256 * sizeof(T));
    dst.EmuWrite(call, "dst", emu::Pipe::M, seq, static_cast<uint64_t>(m1) * n1 * 256 * sizeof(T));
    const U* a = fm.GetPhyAddr();
    const S* b = filter.GetPhyAddr();
    T* c = dst.GetPhyAddr();
    for (uint32_t i = 0; i < p.m; ++i) {
        for (uint32_t l = 0; l < p.n; ++l) {
            T* out = c + (static_cast<uint64_t>(l / 16) * m1 + i / 16) * 256 + (i % 16) * 16 + l % 16;
            T acc = init ? T(0) : *out;
            for (uint32_t j = 0; j < p.k; ++j) {
                const uint64_t ai = gemv ? j : (static_cast<uint64_t>(i / 16) * k1 + j / k0) * (16 * k0) + (i % 16) * k0 + j % k0;
                const uint64_t bi = (static_cast<uint64_t>(j / k0) * n1 + l / 16) * (16 * k0) + (l % 16) * k0 + j % k0;
                if constexpr (std::is_same_v<T, int32_t>) {
                    acc += static_cast<int32_t>(a[ai]) * static_cast<int32_t>(b[bi]);
                } else {
                    acc += static_cast<float>(a[ai]) * static_cast<float>(b[bi]);
                }
            }
            *out = acc;
        }
    }
}

using QuantMode = ::QuantMode_t;

/// Output layout of Fixpipe.
enum class CO2Layout : uint8_t { NZ = 0, ROW_MAJOR, COLUMN_MAJOR };

/// Fixpipe template configuration.
struct FixpipeConfig {
    CO2Layout format;
};
constexpr FixpipeConfig CFG_NZ = {CO2Layout::NZ};
constexpr FixpipeConfig CFG_ROW_MAJOR = {CO2Layout::ROW_MAJOR};

/// Fixpipe parameters for arch 2201.
struct FixpipeParamsV220 {
    uint16_t nSize = 0;
    uint16_t mSize = 0;
    uint16_t srcStride = 0;
    uint32_t dstStride = 0;
    QuantMode_t quantPre = QuantMode_t::NoQuant;
    uint64_t deqScalar = 0;
    uint16_t ndNum = 1;
    uint16_t srcNdStride = 0;
    uint16_t dstNdStride = 0;
    bool reluEn = false;
    uint8_t unitFlag = 0;
    bool isChannelSplit = false;
    FixpipeParamsV220() = default;
    FixpipeParamsV220(uint16_t n, uint16_t m, uint16_t srcStrideIn, uint32_t dstStrideIn, bool relu)
        : nSize(n), mSize(m), srcStride(srcStrideIn), dstStride(dstStrideIn), reluEn(relu) {}
    FixpipeParamsV220(uint16_t n, uint16_t m, uint16_t srcStrideIn, uint32_t dstStrideIn, bool relu,
                      QuantMode_t quant, uint64_t deq, uint16_t ndNumIn, uint16_t srcNdStrideIn,
                      uint16_t dstNdStrideIn, uint8_t unitFlagIn)
        : nSize(n), mSize(m), srcStride(srcStrideIn), dstStride(dstStrideIn), quantPre(quant), deqScalar(deq),
          ndNum(ndNumIn), srcNdStride(srcNdStrideIn), dstNdStride(dstNdStrideIn), reluEn(relu),
          unitFlag(unitFlagIn) {}
};

/// L0C (NZ) → GM (ND, CFG_ROW_MAJOR) with the quantPre conversion (RINT) and optional ReLU.
template <typename T, typename U, const FixpipeConfig& config = CFG_ROW_MAJOR>
inline void Fixpipe(const GlobalTensor<T>& dst, const LocalTensor<U>& src, const FixpipeParamsV220& p) {
    static const char* call = "Fixpipe(L0C->GM)";
    src.EmuIn(call, "src", Hardware::L0C);
    src.EmuAlign(call, "src", 64);
    if (config.format != CO2Layout::ROW_MAJOR) {
        emu::Fail(emu::Failure::Unsupported, call, "only CFG_ROW_MAJOR (NZ->ND) output is emulated");
    }
    bool legal = false;
    if constexpr (std::is_same_v<U, float>) {
        legal = (std::is_same_v<T, float> && p.quantPre == QuantMode_t::NoQuant) ||
                (std::is_same_v<T, half> && p.quantPre == QuantMode_t::F322F16) ||
                (std::is_same_v<T, bfloat16_t> && p.quantPre == QuantMode_t::F322BF16);
    } else if constexpr (std::is_same_v<U, int32_t>) {
        legal = std::is_same_v<T, int32_t> && p.quantPre == QuantMode_t::NoQuant;
    }
    if (!legal) {
        emu::Fail(emu::Failure::Unsupported, call,
                  "L0C %zu-byte element -> GM %zu-byte element with quantPre %d is not supported (or not emulated)",
                  sizeof(U), sizeof(T), static_cast<int>(p.quantPre));
    }
    if (p.nSize > 4095 || p.mSize > 8192) {
        emu::Fail(emu::Failure::BadParameter, call, "nSize %u > 4095 or mSize %u > 8192", p.nSize, p.mSize);
    }
    if (p.unitFlag != 0) emu::Fail(emu::Failure::Unsupported, call, "unitFlag %u is not emulated", p.unitFlag);
    if (p.ndNum != 1) emu::Fail(emu::Failure::Unsupported, call, "ndNum %u != 1 is not emulated (srcNdStride unit is unspecified)", p.ndNum);
    if (p.nSize == 0 || p.mSize == 0) return;
    if (p.srcStride < p.mSize) {
        emu::Fail(emu::Failure::BadParameter, call, "srcStride %u (rows per L0C fractal column) < mSize %u", p.srcStride, p.mSize);
    }
    if (p.dstStride < p.nSize) {
        emu::Fail(emu::Failure::BadParameter, call, "dstStride %u (GM row pitch) < nSize %u", p.dstStride, p.nSize);
    }
    const uint32_t groups = (p.nSize + 15u) / 16u;
    src.EmuNeed(call, "src", (static_cast<uint64_t>(groups - 1) * p.srcStride * 16 + static_cast<uint64_t>(p.mSize) * 16) * sizeof(U));
    emu::CheckGmRange(call, dst.GetPhyAddr(), (static_cast<uint64_t>(p.mSize - 1) * p.dstStride + p.nSize) * sizeof(T));
    src.EmuRead(call, "src", emu::Pipe::FIX, emu::Issue(emu::Pipe::FIX),
                (static_cast<uint64_t>(groups - 1) * p.srcStride * 16 + static_cast<uint64_t>(p.mSize) * 16) * sizeof(U));
    const U* c = src.GetPhyAddr();
    T* out = dst.GetPhyAddr();
    std::vector<T> row(p.nSize);
    for (uint32_t j = 0; j < p.mSize; ++j) {
        for (uint32_t col = 0; col < p.nSize; ++col) {
            U v = c[static_cast<uint64_t>(col / 16) * p.srcStride * 16 + j * 16 + col % 16];
            T y;
            if constexpr (std::is_same_v<T, int32_t> || std::is_same_v<T, float>) {
                y = static_cast<T>(v);
            } else {
                y = emu::FromDouble<T>(static_cast<double>(v), emu::Rounding::Rint);
            }
            if (p.reluEn && static_cast<double>(emu::ToDouble(y)) < 0) y = T(0);
            row[col] = y;
        }
        emu::StoreGm(call, out + static_cast<uint64_t>(j) * p.dstStride, row.data(), p.nSize);
    }
}

}  // namespace AscendC
