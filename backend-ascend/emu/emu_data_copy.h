// cubevec AscendC CPU emulation: DataCopy (GM <-> UB, GM -> L1, ND2NZ) and DataCopyPad.
#pragma once

#include "emu_gm.h"

namespace AscendC {

/// Strided copy in 32-byte blocks; the strides are gaps (end of one chunk to start of the next).
struct DataCopyParams {
    uint16_t blockCount = 1;
    uint16_t blockLen = 0;
    uint16_t srcStride = 0;
    uint16_t dstStride = 0;
    DataCopyParams() = default;
    DataCopyParams(uint16_t count, uint16_t len, uint16_t srcGap, uint16_t dstGap)
        : blockCount(count), blockLen(len), srcStride(srcGap), dstStride(dstGap) {}
};

/// DataCopyPad parameters: blockLen in bytes; the GM-side gap in bytes, the UB-side gap in blocks.
struct DataCopyExtParams {
    uint16_t blockCount = 1;
    uint32_t blockLen = 0;
    uint32_t srcStride = 0;
    uint32_t dstStride = 0;
    uint32_t rsv = 0;
    DataCopyExtParams() = default;
    DataCopyExtParams(uint16_t count, uint32_t len, uint32_t srcGap, uint32_t dstGap, uint32_t reserved)
        : blockCount(count), blockLen(len), srcStride(srcGap), dstStride(dstGap), rsv(reserved) {}
};

/// Padding of each chunk of a GM → UB DataCopyPad (in elements).
template <typename T>
struct DataCopyPadExtParams {
    bool isPad = false;
    uint8_t leftPadding = 0;
    uint8_t rightPadding = 0;
    T paddingValue = T(0);
    DataCopyPadExtParams() = default;
    DataCopyPadExtParams(bool pad, uint8_t left, uint8_t right, T value)
        : isPad(pad), leftPadding(left), rightPadding(right), paddingValue(value) {}
};

/// GM (ND) → L1 (NZ) conversion parameters (arch 2201: all uint16).
struct Nd2NzParams {
    uint16_t ndNum = 0;
    uint16_t nValue = 0;
    uint16_t dValue = 0;
    uint16_t srcNdMatrixStride = 0;
    uint16_t srcDValue = 0;
    uint16_t dstNzC0Stride = 0;
    uint16_t dstNzNStride = 0;
    uint16_t dstNzMatrixStride = 0;
    Nd2NzParams() = default;
    Nd2NzParams(uint16_t nd, uint16_t n, uint16_t d, uint16_t srcNdStride, uint16_t srcD, uint16_t c0Stride,
                uint16_t nStride, uint16_t dstMatrixStride)
        : ndNum(nd), nValue(n), dValue(d), srcNdMatrixStride(srcNdStride), srcDValue(srcD),
          dstNzC0Stride(c0Stride), dstNzNStride(nStride), dstNzMatrixStride(dstMatrixStride) {}
};

namespace emu {

/// Block copy shared by the DataCopyParams forms. Byte offsets of chunk i: src i*(len+srcGap)*32,
/// dst i*(len+dstGap)*32.
inline void BlockCopy(uint8_t* dst, const uint8_t* src, const DataCopyParams& p) {
    for (uint32_t i = 0; i < p.blockCount; ++i) {
        std::memmove(dst + static_cast<uint64_t>(i) * (p.blockLen + p.dstStride) * 32u,
                     src + static_cast<uint64_t>(i) * (p.blockLen + p.srcStride) * 32u,
                     static_cast<size_t>(p.blockLen) * 32u);
    }
}

/// Bytes spanned by a DataCopyParams transfer on a side with gap `gap`.
inline uint64_t BlockSpan(const DataCopyParams& p, uint32_t gap) {
    if (p.blockCount == 0 || p.blockLen == 0) return 0;
    return (static_cast<uint64_t>(p.blockCount - 1) * (p.blockLen + gap) + p.blockLen) * 32u;
}

inline void CheckBlockParams(const char* call, const DataCopyParams& p) {
    if (p.blockCount > 4095) Fail(Failure::BadParameter, call, "blockCount %u > 4095", p.blockCount);
}

template <typename T>
inline void CheckCount32(const char* call, uint32_t count) {
    if ((static_cast<uint64_t>(count) * sizeof(T)) % 32 != 0) {
        Fail(Failure::BadLength, call,
             "%u elements of %zu bytes = %llu bytes is not a multiple of 32 (the device would silently truncate)",
             count, sizeof(T), static_cast<unsigned long long>(count) * sizeof(T));
    }
}

}  // namespace emu

/// GM → UB or GM → L1, `count` contiguous elements (count*sizeof(T) must be a multiple of 32).
template <typename T>
inline void DataCopy(const LocalTensor<T>& dst, const GlobalTensor<T>& src, uint32_t count) {
    static const char* call = "DataCopy(GM->local, count)";
    dst.EmuIn(call, "dst", Hardware::UB, Hardware::L1);
    dst.EmuAlign(call, "dst", 32);
    emu::CheckCount32<T>(call, count);
    dst.EmuNeed(call, "dst", static_cast<uint64_t>(count) * sizeof(T));
    emu::CheckGmRange(call, src.GetPhyAddr(), static_cast<uint64_t>(count) * sizeof(T));
    dst.EmuWrite(call, "dst", emu::Pipe::MTE2, emu::Issue(emu::Pipe::MTE2), static_cast<uint64_t>(count) * sizeof(T));
    std::memmove(dst.Bytes(), src.GetPhyAddr(), static_cast<size_t>(count) * sizeof(T));
}

/// UB → GM, `count` contiguous elements (count*sizeof(T) must be a multiple of 32).
template <typename T>
inline void DataCopy(const GlobalTensor<T>& dst, const LocalTensor<T>& src, uint32_t count) {
    static const char* call = "DataCopy(UB->GM, count)";
    src.EmuIn(call, "src", Hardware::UB);
    src.EmuAlign(call, "src", 32);
    emu::CheckCount32<T>(call, count);
    src.EmuNeed(call, "src", static_cast<uint64_t>(count) * sizeof(T));
    emu::CheckGmRange(call, dst.GetPhyAddr(), static_cast<uint64_t>(count) * sizeof(T));
    src.EmuRead(call, "src", emu::Pipe::MTE3, emu::Issue(emu::Pipe::MTE3), static_cast<uint64_t>(count) * sizeof(T));
    emu::StoreGm(call, dst.GetPhyAddr(), src.GetPhyAddr(), count);
}

/// GM → UB or GM → L1 with 32-byte block lengths and gaps.
template <typename T>
inline void DataCopy(const LocalTensor<T>& dst, const GlobalTensor<T>& src, const DataCopyParams& p) {
    static const char* call = "DataCopy(GM->local, DataCopyParams)";
    dst.EmuIn(call, "dst", Hardware::UB, Hardware::L1);
    dst.EmuAlign(call, "dst", 32);
    emu::CheckBlockParams(call, p);
    dst.EmuNeed(call, "dst", emu::BlockSpan(p, p.dstStride));
    emu::CheckGmRange(call, src.GetPhyAddr(), emu::BlockSpan(p, p.srcStride));
    dst.EmuWrite(call, "dst", emu::Pipe::MTE2, emu::Issue(emu::Pipe::MTE2), emu::BlockSpan(p, p.dstStride));
    emu::BlockCopy(dst.Bytes(), reinterpret_cast<const uint8_t*>(src.GetPhyAddr()), p);
}

/// UB → GM with 32-byte block lengths and gaps.
template <typename T>
inline void DataCopy(const GlobalTensor<T>& dst, const LocalTensor<T>& src, const DataCopyParams& p) {
    static const char* call = "DataCopy(UB->GM, DataCopyParams)";
    src.EmuIn(call, "src", Hardware::UB);
    src.EmuAlign(call, "src", 32);
    emu::CheckBlockParams(call, p);
    src.EmuNeed(call, "src", emu::BlockSpan(p, p.srcStride));
    emu::CheckGmRange(call, dst.GetPhyAddr(), emu::BlockSpan(p, p.dstStride));
    src.EmuRead(call, "src", emu::Pipe::MTE3, emu::Issue(emu::Pipe::MTE3), emu::BlockSpan(p, p.srcStride));
    for (uint32_t i = 0; i < p.blockCount; ++i) {
        emu::StoreGm(call,
                     reinterpret_cast<T*>(reinterpret_cast<uint8_t*>(dst.GetPhyAddr()) +
                                          static_cast<uint64_t>(i) * (p.blockLen + p.dstStride) * 32u),
                     reinterpret_cast<const T*>(src.Bytes() + static_cast<uint64_t>(i) * (p.blockLen + p.srcStride) * 32u),
                     static_cast<uint64_t>(p.blockLen) * 32u / sizeof(T));
    }
}

/// GM → UB with byte-granular chunks and per-chunk padding in UB.
template <typename T>
inline void DataCopyPad(const LocalTensor<T>& dst, const GlobalTensor<T>& src, const DataCopyExtParams& p,
                        const DataCopyPadExtParams<T>& pad) {
    static const char* call = "DataCopyPad(GM->UB)";
    dst.EmuIn(call, "dst", Hardware::UB);
    dst.EmuAlign(call, "dst", 32);
    if (p.blockCount > 4095) emu::Fail(emu::Failure::BadParameter, call, "blockCount %u > 4095", p.blockCount);
    if (p.blockLen > 2097151) emu::Fail(emu::Failure::BadParameter, call, "blockLen %u > 2097151 bytes", p.blockLen);
    if (p.blockLen % sizeof(T) != 0) {
        emu::Fail(emu::Failure::BadLength, call, "blockLen %u bytes is not a multiple of sizeof(T) = %zu", p.blockLen, sizeof(T));
    }
    if (pad.leftPadding * sizeof(T) > 32 || pad.rightPadding * sizeof(T) > 32) {
        emu::Fail(emu::Failure::BadParameter, call, "left/right padding (%u, %u elements) exceeds 32 bytes",
                  pad.leftPadding, pad.rightPadding);
    }
    if (p.blockCount == 0 || p.blockLen == 0) return;
    const uint32_t elems = p.blockLen / sizeof(T);
    const uint32_t chunkElems = pad.leftPadding + elems + pad.rightPadding;
    const uint64_t chunkBlocks = (static_cast<uint64_t>(chunkElems) * sizeof(T) + 31) / 32;
    const uint64_t ubStep = (chunkBlocks + p.dstStride) * 32;
    dst.EmuNeed(call, "dst", (p.blockCount - 1) * ubStep + chunkBlocks * 32);
    const uint8_t* gm = reinterpret_cast<const uint8_t*>(src.GetPhyAddr());
    emu::CheckGmRange(call, gm, static_cast<uint64_t>(p.blockCount - 1) * (p.blockLen + p.srcStride) + p.blockLen);
    dst.EmuWrite(call, "dst", emu::Pipe::MTE2, emu::Issue(emu::Pipe::MTE2), (p.blockCount - 1) * ubStep + chunkBlocks * 32);
    const uint32_t slots = static_cast<uint32_t>(chunkBlocks * 32 / sizeof(T));
    for (uint32_t i = 0; i < p.blockCount; ++i) {
        T* out = reinterpret_cast<T*>(dst.Bytes() + i * ubStep);
        const uint8_t* in = gm + static_cast<uint64_t>(i) * (p.blockLen + p.srcStride);
        std::memcpy(out + pad.leftPadding, in, p.blockLen);
        T fill{};
        bool poison = false;
        if (pad.isPad) {
            fill = pad.paddingValue;
        } else if (pad.leftPadding == 0 && pad.rightPadding == 0) {
            std::memcpy(&fill, in, sizeof(T));
        } else {
            poison = true;
        }
        for (uint32_t s = 0; s < slots; ++s) {
            if (s >= pad.leftPadding && s < pad.leftPadding + elems) continue;
            if (poison) {
                std::memset(static_cast<void*>(out + s), emu::kPoison, sizeof(T));
            } else {
                out[s] = fill;
            }
        }
    }
}

/// UB → GM, exactly blockLen bytes per chunk.
template <typename T>
inline void DataCopyPad(const GlobalTensor<T>& dst, const LocalTensor<T>& src, const DataCopyExtParams& p) {
    static const char* call = "DataCopyPad(UB->GM)";
    src.EmuIn(call, "src", Hardware::UB);
    src.EmuAlign(call, "src", 32);
    if (p.blockCount > 4095) emu::Fail(emu::Failure::BadParameter, call, "blockCount %u > 4095", p.blockCount);
    if (p.blockLen > 2097151) emu::Fail(emu::Failure::BadParameter, call, "blockLen %u > 2097151 bytes", p.blockLen);
    if (p.blockLen % sizeof(T) != 0) {
        emu::Fail(emu::Failure::BadLength, call, "blockLen %u bytes is not a multiple of sizeof(T) = %zu", p.blockLen, sizeof(T));
    }
    if (p.blockCount == 0 || p.blockLen == 0) return;
    const uint64_t chunkBlocks = (static_cast<uint64_t>(p.blockLen) + 31) / 32;
    const uint64_t ubStep = (chunkBlocks + p.srcStride) * 32;
    src.EmuNeed(call, "src", (p.blockCount - 1) * ubStep + p.blockLen);
    uint8_t* gm = reinterpret_cast<uint8_t*>(dst.GetPhyAddr());
    emu::CheckGmRange(call, gm, static_cast<uint64_t>(p.blockCount - 1) * (p.blockLen + p.dstStride) + p.blockLen);
    src.EmuRead(call, "src", emu::Pipe::MTE3, emu::Issue(emu::Pipe::MTE3), (p.blockCount - 1) * ubStep + p.blockLen);
    for (uint32_t i = 0; i < p.blockCount; ++i) {
        emu::StoreGm(call, reinterpret_cast<T*>(gm + static_cast<uint64_t>(i) * (p.blockLen + p.dstStride)),
                     reinterpret_cast<const T*>(src.Bytes() + i * ubStep), p.blockLen / sizeof(T));
    }
}

/// GM (ND, row-major) → L1 (NZ fractals) with zero-filled column tails.
template <typename T>
inline void DataCopy(const LocalTensor<T>& dst, const GlobalTensor<T>& src, const Nd2NzParams& p) {
    static const char* call = "DataCopy(GM->L1, Nd2NzParams)";
    dst.EmuIn(call, "dst", Hardware::L1);
    dst.EmuAlign(call, "dst", 32);
    if (p.ndNum > 4095 || p.nValue > 16384) {
        emu::Fail(emu::Failure::BadParameter, call, "ndNum %u > 4095 or nValue %u > 16384", p.ndNum, p.nValue);
    }
    if (p.ndNum == 0 || p.nValue == 0 || p.dValue == 0) return;
    if (p.srcDValue == 0 || p.dstNzC0Stride == 0 || p.dstNzC0Stride > 16384 || p.dstNzNStride == 0 ||
        p.dstNzNStride > 16384) {
        emu::Fail(emu::Failure::BadParameter, call,
                  "srcDValue %u, dstNzC0Stride %u, dstNzNStride %u: must be non-zero (strides <= 16384)",
                  p.srcDValue, p.dstNzC0Stride, p.dstNzNStride);
    }
    constexpr uint32_t c0 = 32 / sizeof(T);
    const uint32_t groups = (p.dValue + c0 - 1) / c0;
    uint64_t maxDst = 0;
    uint64_t maxSrc = 0;
    for (uint32_t n = 0; n < p.ndNum; ++n) {
        const uint64_t d = static_cast<uint64_t>(n) * p.dstNzMatrixStride +
                           static_cast<uint64_t>(groups - 1) * p.dstNzC0Stride * c0 +
                           static_cast<uint64_t>(p.nValue - 1) * p.dstNzNStride * c0 + c0;
        const uint64_t s = static_cast<uint64_t>(n) * p.srcNdMatrixStride +
                           static_cast<uint64_t>(p.nValue - 1) * p.srcDValue + p.dValue;
        maxDst = d > maxDst ? d : maxDst;
        maxSrc = s > maxSrc ? s : maxSrc;
    }
    dst.EmuNeed(call, "dst", maxDst * sizeof(T));
    emu::CheckGmRange(call, src.GetPhyAddr(), maxSrc * sizeof(T));
    dst.EmuWrite(call, "dst", emu::Pipe::MTE2, emu::Issue(emu::Pipe::MTE2), maxDst * sizeof(T));
    T* l1 = dst.GetPhyAddr();
    const T* gm = src.GetPhyAddr();
    for (uint32_t n = 0; n < p.ndNum; ++n) {
        for (uint32_t r = 0; r < p.nValue; ++r) {
            for (uint32_t c = 0; c < groups * c0; ++c) {
                T* out = l1 + static_cast<uint64_t>(n) * p.dstNzMatrixStride +
                         static_cast<uint64_t>(c / c0) * p.dstNzC0Stride * c0 +
                         static_cast<uint64_t>(r) * p.dstNzNStride * c0 + c % c0;
                if (c < p.dValue) {
                    *out = gm[static_cast<uint64_t>(n) * p.srcNdMatrixStride + static_cast<uint64_t>(r) * p.srcDValue + c];
                } else {
                    std::memset(static_cast<void*>(out), 0, sizeof(T));
                }
            }
        }
    }
}

}  // namespace AscendC
