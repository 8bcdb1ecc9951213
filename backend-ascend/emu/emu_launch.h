// cubevec AscendC CPU emulation: kernel launch on emulated cores and GM allocation for tests.
#pragma once

#include <cstdlib>
#include <thread>
#include <utility>

#include "emu_gm.h"
#include "emu_sync.h"

namespace AscendC {
namespace emu {

/// Core mix of a launch (arch 2201: one AI Core = 1 AIC + 2 AIV).
enum class KernelType {
    AIV_ONLY,     ///< numBlocks AIVs
    AIC_ONLY,     ///< numBlocks AICs
    MIX_AIC_1_1,  ///< numBlocks AICs + numBlocks AIVs
    MIX_AIC_1_2,  ///< numBlocks AICs + 2*numBlocks AIVs
};

/// Allocates `bytes` of zeroed, 512-byte aligned GM that lives until the process exits, and
/// registers it for GM bounds checks.
inline uint8_t* GmAlloc(size_t bytes) {
    const size_t rounded = (bytes + 511) / 512 * 512;
    void* p = std::aligned_alloc(512, rounded == 0 ? 512 : rounded);
    if (p == nullptr) Fail(Failure::BufferOverflow, "GmAlloc", "out of host memory for %zu bytes", bytes);
    std::memset(p, 0, rounded == 0 ? 512 : rounded);
    RegisterGm(p, bytes);
    auto& registry = GmRegistry::Get();
    std::lock_guard<std::mutex> g(registry.lock);
    registry.owned.emplace_back(static_cast<uint8_t*>(p));
    return static_cast<uint8_t*>(p);
}

/// Runs `kernel(args...)` on every core of a launch, one thread per core so that cross-core
/// flags work. Each core starts with fresh, poisoned on-chip memories; at kernel end every
/// SetFlag must have been waited for and atomic accumulation must be off. `name` (may be null)
/// names the kernel in failure messages.
template <typename... Params, typename... Args>
inline void Launch(const char* name, KernelType type, uint32_t numBlocks, void (*kernel)(Params...), Args... args) {
    if (numBlocks == 0 || numBlocks > 65535) Fail(Failure::BadParameter, "Launch", "numBlocks %u outside [1, 65535]", numBlocks);
    const bool hasAic = type != KernelType::AIV_ONLY;
    const int64_t ratio = type == KernelType::AIC_ONLY ? 0 : (type == KernelType::MIX_AIC_1_2 ? 2 : 1);
    auto& st = CrossCoreState::Get();
    {
        std::lock_guard<std::mutex> g(st.lock);
        st.blocks = numBlocks;
        st.ratio = ratio;
        st.hasAic = hasAic;
        st.scheduler = type == KernelType::MIX_AIC_1_1 || type == KernelType::MIX_AIC_1_2;
        st.counters.clear();
        st.pendingSets.clear();
    }
    std::vector<std::thread> cores;
    auto start = [&](CoreKind kind, int64_t idx, int64_t sub) {
        cores.emplace_back([=] {
            if (name != nullptr) {
                std::snprintf(tlsFailContext, sizeof tlsFailContext, "kernel %s, %s %lld", name,
                              kind == CoreKind::AIC ? "AIC" : "AIV", static_cast<long long>(idx));
            }
            CoreState& core = Core();
            core.kind = kind;
            core.blockIdx = idx;
            core.blockNum = numBlocks;
            core.taskRatio = kind == CoreKind::AIC ? 1 : (ratio == 0 ? 1 : ratio);
            core.subBlockIdx = sub;
            kernel(args...);
            CheckFlagsConsumed();
            CheckAtomicOff();
        });
    };
    for (uint32_t b = 0; b < numBlocks; ++b) {
        if (hasAic) start(CoreKind::AIC, b, 0);
        for (int64_t s = 0; s < ratio; ++s) start(CoreKind::AIV, b * ratio + s, s);
    }
    for (auto& t : cores) t.join();
}

/// `Launch` without a kernel name in failure messages.
template <typename... Params, typename... Args>
inline void Launch(KernelType type, uint32_t numBlocks, void (*kernel)(Params...), Args... args) {
    Launch(static_cast<const char*>(nullptr), type, numBlocks, kernel, args...);
}

}  // namespace emu
}  // namespace AscendC
