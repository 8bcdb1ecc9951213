// cubevec AscendC CPU emulation: GM-side state of a core: atomic accumulation
// (SetAtomicAdd / SetAtomicNone) and the scalar data cache (DataCacheCleanAndInvalid).
#pragma once

#include <mutex>

#include "emu_core.h"

namespace AscendC {

namespace emu {

/// Element type selected by SetAtomicAdd (0 = atomic accumulation off).
enum class AtomicType : uint8_t { None = 0, Float, Half, BFloat16, Int32, Int16, Int8 };

/// The atomic type of T, None for types arch 2201 cannot accumulate atomically.
template <typename T>
constexpr AtomicType AtomicTypeOf() {
    if constexpr (std::is_same_v<T, float>) return AtomicType::Float;
    if constexpr (std::is_same_v<T, half>) return AtomicType::Half;
    if constexpr (std::is_same_v<T, bfloat16_t>) return AtomicType::BFloat16;
    if constexpr (std::is_same_v<T, int32_t>) return AtomicType::Int32;
    if constexpr (std::is_same_v<T, int16_t>) return AtomicType::Int16;
    if constexpr (std::is_same_v<T, int8_t>) return AtomicType::Int8;
    return AtomicType::None;
}

/// Name of an atomic type, for messages.
inline const char* AtomicName(AtomicType t) {
    static const char* const names[] = {"none", "float", "half", "bfloat16_t", "int32_t", "int16_t", "int8_t"};
    return names[static_cast<int>(t)];
}

/// Serialises atomic read-modify-writes of all cores (GM is shared).
inline std::mutex& AtomicLock() {
    static std::mutex lock;
    return lock;
}

/// Stores `n` elements to GM as MTE3 / FIX do: a plain copy, or, after SetAtomicAdd<T>, an
/// atomic accumulation (sum rounded to T, integers wrap). An atomic type other than T fails.
template <typename T>
inline void StoreGm(const char* call, T* dst, const T* src, uint64_t n) {
    const AtomicType mode = static_cast<AtomicType>(Core().atomic);
    if (mode == AtomicType::None) {
        std::memmove(static_cast<void*>(dst), static_cast<const void*>(src), static_cast<size_t>(n) * sizeof(T));
        return;
    }
    if (mode != AtomicTypeOf<T>()) {
        Fail(Failure::Unsupported, call, "SetAtomicAdd<%s> is active but the destination holds %zu-byte elements of another type",
             AtomicName(mode), sizeof(T));
    }
    std::lock_guard<std::mutex> g(AtomicLock());
    for (uint64_t i = 0; i < n; ++i) {
        if constexpr (std::is_integral_v<T>) {
            dst[i] = static_cast<T>(static_cast<int64_t>(dst[i]) + static_cast<int64_t>(src[i]));
        } else {
            dst[i] = FromDouble<T>(ToDouble(dst[i]) + ToDouble(src[i]), Rounding::Rint);
        }
    }
}

/// Fails if SetAtomicAdd is still active (called at kernel end).
inline void CheckAtomicOff() {
    const AtomicType mode = static_cast<AtomicType>(Core().atomic);
    if (mode != AtomicType::None) {
        Fail(Failure::UnpairedFlag, "SetAtomicAdd (kernel end)",
             "SetAtomicAdd<%s> was never followed by SetAtomicNone; later GM writes of this core would accumulate",
             AtomicName(mode));
    }
}

}  // namespace emu

/// Makes later MTE3 and Fixpipe writes of this core add into GM instead of overwriting it.
template <typename T>
inline void SetAtomicAdd() {
    static_assert(emu::AtomicTypeOf<T>() != emu::AtomicType::None, "SetAtomicAdd: type not supported on arch 2201");
    emu::Core().atomic = static_cast<uint8_t>(emu::AtomicTypeOf<T>());
}

/// Turns atomic accumulation off again.
inline void SetAtomicNone() { emu::Core().atomic = 0; }

/// Which data cache lines DataCacheCleanAndInvalid acts on.
enum class CacheLine : uint64_t { SINGLE_CACHE_LINE = 0, ENTIRE_DATA_CACHE };

/// Which cache levels DataCacheCleanAndInvalid acts on.
enum class DcciDst : uint64_t { CACHELINE_ALL = 0, CACHELINE_UB, CACHELINE_OUT, CACHELINE_ATOMIC };

/// Writes back and invalidates the scalar data cache line holding `dst` (or the whole cache) so
/// that GetValue sees data other cores or earlier kernels wrote. The emulation has no data cache:
/// it only checks the address.
template <typename T, CacheLine entireType, DcciDst dcciDst>
inline void DataCacheCleanAndInvalid(const GlobalTensor<T>& dst) {
    if (entireType == CacheLine::SINGLE_CACHE_LINE) {
        emu::CheckGmRange("DataCacheCleanAndInvalid", dst.GetPhyAddr(), sizeof(T));
    }
}

}  // namespace AscendC
