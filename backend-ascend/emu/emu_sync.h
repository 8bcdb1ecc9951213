// cubevec AscendC CPU emulation: intra-core flags, barriers and cross-core flags.
//
// Pipes execute in program order here, so flags cannot reorder anything. The emulator checks their
// pairing (a Set must be consumed by exactly one Wait before it is set again, and nothing may stay
// set at kernel end) and uses them to propagate the per-pipe clocks of the hazard checker.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <map>
#include <tuple>

#include "emu_core.h"

namespace AscendC {

namespace emu {

/// Name of a HardEvent, for messages.
inline const char* EventName(int e) {
    static const char* const names[] = {"MTE2_MTE1", "MTE1_MTE2", "MTE1_M", "M_MTE1", "MTE2_V", "V_MTE2", "MTE3_V", "V_MTE3", "M_V", "V_M", "V_V", "MTE3_MTE1", "MTE1_MTE3", "MTE1_V", "MTE2_M", "M_MTE2", "V_MTE1", "M_FIX", "FIX_M", "MTE3_MTE2", "MTE2_MTE3", "S_V", "V_S", "S_MTE2", "MTE2_S", "S_MTE3", "MTE3_S", "MTE2_FIX", "FIX_MTE2", "FIX_S", "MTE1_FIX", "FIX_MTE1"};
    return e >= 0 && e < static_cast<int>(HardEvent::MAX) ? names[e] : "?";
}

inline void CheckEventId(const char* call, int32_t id) {
    if (id < 0 || id > 7) Fail(Failure::BadParameter, call, "event id %d outside [0, 7]", id);
}

/// Fails if any SetFlag of the current core was never waited for (called at kernel end).
inline void CheckFlagsConsumed() {
    for (int e = 0; e < static_cast<int>(HardEvent::MAX); ++e) {
        for (int id = 0; id < 8; ++id) {
            if (Core().flags[e][id]) {
                Fail(Failure::UnpairedFlag, "SetFlag (kernel end)",
                     "SetFlag<HardEvent::%s>(%d) has no matching WaitFlag; the device would hang at the next barrier", EventName(e), id);
            }
        }
    }
}

}  // namespace emu

/// Sets flag (e, eventID) on the source pipe.
template <HardEvent e>
inline void SetFlag(int32_t eventID) {
    emu::CheckEventId("SetFlag", eventID);
    uint8_t& f = emu::Core().flags[static_cast<int>(e)][eventID];
    if (f) {
        emu::Fail(emu::Failure::UnpairedFlag, "SetFlag",
                  "SetFlag<HardEvent::%s>(%d) set twice without a WaitFlag in between (undefined on the device)",
                  emu::EventName(static_cast<int>(e)), eventID);
    }
    f = 1;
    emu::Core().flagClock[static_cast<int>(e)][eventID] = emu::Snapshot(emu::EventPipes(e).first);
}

/// Waits for flag (e, eventID) on the destination pipe and clears it.
template <HardEvent e>
inline void WaitFlag(int32_t eventID) {
    emu::CheckEventId("WaitFlag", eventID);
    uint8_t& f = emu::Core().flags[static_cast<int>(e)][eventID];
    if (!f) {
        emu::Fail(emu::Failure::UnpairedFlag, "WaitFlag",
                  "WaitFlag<HardEvent::%s>(%d) without a preceding SetFlag (the device would hang)",
                  emu::EventName(static_cast<int>(e)), eventID);
    }
    f = 0;
    emu::Absorb(emu::EventPipes(e).second, emu::Core().flagClock[static_cast<int>(e)][eventID]);
}

/// Waits for all earlier instructions of pipe p (a no-op for in-order emulation, PIPE_S rejected).
template <pipe_t p>
inline void PipeBarrier() {
    if (p == PIPE_S) emu::Fail(emu::Failure::BadParameter, "PipeBarrier", "PipeBarrier<PIPE_S> is not supported");
    if (p == PIPE_ALL) emu::BarrierAll();
}

namespace emu {

/// Cross-core flag counters shared by all cores of one launch.
struct CrossCoreState {
    std::mutex lock;
    std::condition_variable changed;
    int64_t blocks = 0;
    int64_t ratio = 0;  ///< AIVs per AI Core (0 for AIC-only launches)
    bool hasAic = false;
    bool scheduler = false;  ///< MIX launches only
    std::map<std::pair<int, int64_t>, std::array<int, 16>> counters;    ///< (kind, idx) -> counters
    std::map<std::tuple<int, int64_t, int>, int> pendingSets;           ///< (mode group, flag) -> sets
    static CrossCoreState& Get() {
        static CrossCoreState state;
        return state;
    }
    void Bump(int kind, int64_t idx, int flag) {
        int& c = counters[{kind, idx}][flag];
        if (c >= 15) Fail(Failure::CrossCore, "CrossCoreSetFlag", "more than 15 pending sets of flag %d", flag);
        ++c;
    }
};

inline void CheckCrossCore(const char* call, uint8_t modeId, pipe_t pipe, uint16_t flagId, bool isSet) {
    auto& st = CrossCoreState::Get();
    if (!st.scheduler) Fail(Failure::CrossCore, call, "cross-core sync needs a MIX launch (no scheduler in AIV/AIC-only kernels)");
    if (flagId > 15) Fail(Failure::CrossCore, call, "flagId %u > 15", flagId);
    if (modeId > 2) Fail(Failure::CrossCore, call, "modeId %u not in {0, 1, 2}", modeId);
    if (isSet && (pipe == PIPE_S || pipe == PIPE_ALL)) Fail(Failure::CrossCore, call, "pipe must not be PIPE_S or PIPE_ALL");
}

}  // namespace emu

/// Signals flag `flagId` to the cores selected by `modeId` once earlier `pipe` work is done.
template <uint8_t modeId, pipe_t pipe>
inline void CrossCoreSetFlag(uint16_t flagId) {
    static const char* call = "CrossCoreSetFlag";
    emu::CheckCrossCore(call, modeId, pipe, flagId, true);
    auto& st = emu::CrossCoreState::Get();
    auto& core = emu::Core();
    const int kind = static_cast<int>(core.kind);
    std::lock_guard<std::mutex> g(st.lock);
    if (modeId == 0) {
        const int64_t total = core.kind == emu::CoreKind::AIC ? st.blocks : st.blocks * st.ratio;
        int& n = st.pendingSets[{kind, -1, flagId}];
        if (++n == total) {
            n = 0;
            for (int64_t i = 0; i < total; ++i) st.Bump(kind, i, flagId);
        }
    } else if (modeId == 1) {
        if (core.kind != emu::CoreKind::AIV) emu::Fail(emu::Failure::CrossCore, call, "mode 1 is for the AIVs of one AI Core");
        const int64_t group = core.blockIdx / st.ratio;
        int& n = st.pendingSets[{kind, group, flagId}];
        if (++n == st.ratio) {
            n = 0;
            for (int64_t s = 0; s < st.ratio; ++s) st.Bump(kind, group * st.ratio + s, flagId);
        }
    } else {
        if (!st.hasAic || st.ratio == 0) emu::Fail(emu::Failure::CrossCore, call, "mode 2 needs a MIX launch with AIC and AIV");
        if (core.kind == emu::CoreKind::AIC) {
            for (int64_t s = 0; s < st.ratio; ++s)
                st.Bump(static_cast<int>(emu::CoreKind::AIV), core.blockIdx * st.ratio + s, flagId);
        } else {
            const int64_t group = core.blockIdx / st.ratio;
            int& n = st.pendingSets[{kind + 2, group, flagId}];
            if (++n == st.ratio) {
                n = 0;
                st.Bump(static_cast<int>(emu::CoreKind::AIC), group, flagId);
            }
        }
    }
    st.changed.notify_all();
}

/// Blocks until this core's counter of `flagId` is non-zero, then decrements it.
template <uint8_t modeId = 0, pipe_t pipe = PIPE_S>
inline void CrossCoreWaitFlag(uint16_t flagId) {
    static const char* call = "CrossCoreWaitFlag";
    emu::CheckCrossCore(call, modeId, pipe, flagId, false);
    auto& st = emu::CrossCoreState::Get();
    auto& core = emu::Core();
    std::unique_lock<std::mutex> g(st.lock);
    int& c = st.counters[{static_cast<int>(core.kind), core.blockIdx}][flagId];
    if (!st.changed.wait_for(g, std::chrono::seconds(10), [&c] { return c > 0; })) {
        emu::Fail(emu::Failure::CrossCore, call, "flag %u never set for %s %lld within 10 s (deadlock)", flagId,
                  core.kind == emu::CoreKind::AIC ? "AIC" : "AIV", static_cast<long long>(core.blockIdx));
    }
    --c;
}

}  // namespace AscendC
