// cubevec AscendC CPU emulation: positions, per-core memories, tensors, TPipe / TQue / TBuf,
// block indices and the GM allocation registry.
#pragma once

#include <deque>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "emu_types.h"

/// Hardware pipes.
enum pipe_t { PIPE_S = 0, PIPE_V, PIPE_M, PIPE_MTE1, PIPE_MTE2, PIPE_MTE3, PIPE_ALL, PIPE_MTE4, PIPE_MTE5, PIPE_V2, PIPE_FIX };

/// Event ids of SetFlag / WaitFlag.
enum event_t { EVENT_ID0 = 0, EVENT_ID1, EVENT_ID2, EVENT_ID3, EVENT_ID4, EVENT_ID5, EVENT_ID6, EVENT_ID7 };

namespace AscendC {

/// Source_destination pipe pairs of SetFlag / WaitFlag.
enum class HardEvent : uint8_t {
    MTE2_MTE1,
    MTE1_MTE2,
    MTE1_M,
    M_MTE1,
    MTE2_V,
    V_MTE2,
    MTE3_V,
    V_MTE3,
    M_V,
    V_M,
    V_V,
    MTE3_MTE1,
    MTE1_MTE3,
    MTE1_V,
    MTE2_M,
    M_MTE2,
    V_MTE1,
    M_FIX,
    FIX_M,
    MTE3_MTE2,
    MTE2_MTE3,
    S_V,
    V_S,
    S_MTE2,
    MTE2_S,
    S_MTE3,
    MTE3_S,
    MTE2_FIX,
    FIX_MTE2,
    FIX_S,
    MTE1_FIX,
    FIX_MTE1,
    MAX,
};

/// Event id type of SetFlag / WaitFlag.
using TEventID = int8_t;

/// Logical buffer positions (subset of the AscendC enum, same names).
enum class TPosition : uint8_t {
    GM,
    A1,
    A2,
    B1,
    B2,
    C1,
    C2,
    CO1,
    CO2,
    VECIN,
    VECOUT,
    VECCALC,
    LCM = VECCALC,
    TSCM,
    C2PIPE2GM,
    MAX,
};
using QuePosition = TPosition;

/// Physical on-chip memories of arch 2201.
enum class Hardware : uint8_t { GM, UB, L1, L0A, L0B, L0C, BIAS, MAX };

namespace emu {

/// Name of a position, for messages.
inline const char* PositionName(TPosition p) {
    switch (p) {
        case TPosition::GM: return "GM";
        case TPosition::A1: return "A1";
        case TPosition::A2: return "A2";
        case TPosition::B1: return "B1";
        case TPosition::B2: return "B2";
        case TPosition::C1: return "C1";
        case TPosition::C2: return "C2";
        case TPosition::CO1: return "CO1";
        case TPosition::CO2: return "CO2";
        case TPosition::VECIN: return "VECIN";
        case TPosition::VECOUT: return "VECOUT";
        case TPosition::VECCALC: return "VECCALC";
        case TPosition::TSCM: return "TSCM";
        case TPosition::C2PIPE2GM: return "C2PIPE2GM";
        case TPosition::MAX: break;
    }
    return "?";
}

/// Physical memory a position lives in on arch 2201.
inline Hardware PositionHardware(TPosition p) {
    switch (p) {
        case TPosition::VECIN:
        case TPosition::VECOUT:
        case TPosition::VECCALC: return Hardware::UB;
        case TPosition::A1:
        case TPosition::B1:
        case TPosition::C1:
        case TPosition::TSCM: return Hardware::L1;
        case TPosition::A2: return Hardware::L0A;
        case TPosition::B2: return Hardware::L0B;
        case TPosition::CO1: return Hardware::L0C;
        case TPosition::C2: return Hardware::BIAS;
        default: return Hardware::GM;
    }
}

/// Name of a memory, for messages.
inline const char* HardwareName(Hardware h) {
    static const char* const names[] = {"GM", "UB", "L1", "L0A", "L0B", "L0C", "BiasTable", "?"};
    return names[static_cast<int>(h)];
}

/// Pool sizes of one core on arch 2201 (Atlas A2 / A3), in bytes.
inline uint32_t HardwareSize(Hardware h) {
    switch (h) {
        case Hardware::UB: return 192 * 1024;
        case Hardware::L1: return 512 * 1024;
        case Hardware::L0A: return 64 * 1024;
        case Hardware::L0B: return 64 * 1024;
        case Hardware::L0C: return 128 * 1024;
        case Hardware::BIAS: return 1024;
        default: return 0;
    }
}

/// Byte pattern on-chip memories start with, so reads of never-written data show up.
constexpr uint8_t kPoison = 0xCD;

/// Core kinds of a launch.
enum class CoreKind { AIC, AIV };

/// Pipes tracked by the hazard checker.
enum class Pipe : uint8_t { S, V, M, MTE1, MTE2, MTE3, FIX, Count };
constexpr int kPipes = static_cast<int>(Pipe::Count);

/// Name of a pipe, for messages.
inline const char* PipeName(Pipe p) {
    static const char* const names[] = {"S", "V", "M", "MTE1", "MTE2", "MTE3", "FIX"};
    return names[static_cast<int>(p)];
}

/// Vector clock of one pipe: clock[q] = number of instructions of pipe q known to be complete.
struct PipeClock {
    uint64_t clock[kPipes] = {};
};

/// Source and destination pipes of a HardEvent.
inline std::pair<Pipe, Pipe> EventPipes(HardEvent e) {
    switch (e) {
        case HardEvent::MTE2_MTE1: return {Pipe::MTE2, Pipe::MTE1};
        case HardEvent::MTE1_MTE2: return {Pipe::MTE1, Pipe::MTE2};
        case HardEvent::MTE1_M: return {Pipe::MTE1, Pipe::M};
        case HardEvent::M_MTE1: return {Pipe::M, Pipe::MTE1};
        case HardEvent::MTE2_V: return {Pipe::MTE2, Pipe::V};
        case HardEvent::V_MTE2: return {Pipe::V, Pipe::MTE2};
        case HardEvent::MTE3_V: return {Pipe::MTE3, Pipe::V};
        case HardEvent::V_MTE3: return {Pipe::V, Pipe::MTE3};
        case HardEvent::M_V: return {Pipe::M, Pipe::V};
        case HardEvent::V_M: return {Pipe::V, Pipe::M};
        case HardEvent::V_V: return {Pipe::V, Pipe::V};
        case HardEvent::MTE3_MTE1: return {Pipe::MTE3, Pipe::MTE1};
        case HardEvent::MTE1_MTE3: return {Pipe::MTE1, Pipe::MTE3};
        case HardEvent::MTE1_V: return {Pipe::MTE1, Pipe::V};
        case HardEvent::MTE2_M: return {Pipe::MTE2, Pipe::M};
        case HardEvent::M_MTE2: return {Pipe::M, Pipe::MTE2};
        case HardEvent::V_MTE1: return {Pipe::V, Pipe::MTE1};
        case HardEvent::M_FIX: return {Pipe::M, Pipe::FIX};
        case HardEvent::FIX_M: return {Pipe::FIX, Pipe::M};
        case HardEvent::MTE3_MTE2: return {Pipe::MTE3, Pipe::MTE2};
        case HardEvent::MTE2_MTE3: return {Pipe::MTE2, Pipe::MTE3};
        case HardEvent::S_V: return {Pipe::S, Pipe::V};
        case HardEvent::V_S: return {Pipe::V, Pipe::S};
        case HardEvent::S_MTE2: return {Pipe::S, Pipe::MTE2};
        case HardEvent::MTE2_S: return {Pipe::MTE2, Pipe::S};
        case HardEvent::S_MTE3: return {Pipe::S, Pipe::MTE3};
        case HardEvent::MTE3_S: return {Pipe::MTE3, Pipe::S};
        case HardEvent::MTE2_FIX: return {Pipe::MTE2, Pipe::FIX};
        case HardEvent::FIX_MTE2: return {Pipe::FIX, Pipe::MTE2};
        case HardEvent::FIX_S: return {Pipe::FIX, Pipe::S};
        case HardEvent::MTE1_FIX: return {Pipe::MTE1, Pipe::FIX};
        case HardEvent::FIX_MTE1: return {Pipe::FIX, Pipe::MTE1};
        case HardEvent::MAX: break;
    }
    return {Pipe::S, Pipe::S};
}

class TPipeState;

/// State of the core the current thread emulates.
struct CoreState {
    CoreKind kind = CoreKind::AIV;
    int64_t blockIdx = 0;
    int64_t blockNum = 1;
    int64_t taskRatio = 1;
    int64_t subBlockIdx = 0;
    std::unique_ptr<uint8_t[]> mem[static_cast<int>(Hardware::MAX)];
    void* pipe = nullptr;          ///< current TPipe
    uint8_t atomic = 0;            ///< element type of SetAtomicAdd (emu::AtomicType), 0 = off
    uint8_t flags[32][8] = {};     ///< SetFlag state per (HardEvent, id)
    PipeClock flagClock[32][8];    ///< source-pipe clock captured by each pending SetFlag
    PipeClock pipes[kPipes];       ///< what each pipe knows about every pipe's progress
    /// Last writer of every 32-byte block of each memory: (pipe << 56) | instruction number, 0 = none.
    std::vector<uint64_t> writer[static_cast<int>(Hardware::MAX)];
    /// Last read of every 32-byte block by each pipe: readers[h][block * kPipes + pipe] = instruction number.
    std::vector<uint64_t> readers[static_cast<int>(Hardware::MAX)];

    CoreState() {
        for (int h = 1; h < static_cast<int>(Hardware::MAX); ++h) {
            const uint32_t size = HardwareSize(static_cast<Hardware>(h));
            mem[h].reset(new uint8_t[size]);
            std::memset(mem[h].get(), kPoison, size);
            writer[h].assign(size / 32, 0);
            readers[h].assign(size / 32 * kPipes, 0);
        }
    }
};

/// The current thread's core; a default AIV core outside launches.
inline CoreState& Core() {
    thread_local CoreState state;
    return state;
}

/// Base address of a physical memory of the current core.
inline uint8_t* MemBase(Hardware h) { return Core().mem[static_cast<int>(h)].get(); }

/// Starts one instruction of pipe `p` and returns its number.
inline uint64_t Issue(Pipe p) {
    PipeClock& own = Core().pipes[static_cast<int>(p)];
    return ++own.clock[static_cast<int>(p)];
}

/// Captures the clock of `src` for a Set towards another pipe.
inline PipeClock Snapshot(Pipe src) { return Core().pipes[static_cast<int>(src)]; }

/// Makes everything `clock` knows visible to pipe `dst` (a Wait).
inline void Absorb(Pipe dst, const PipeClock& clock) {
    PipeClock& own = Core().pipes[static_cast<int>(dst)];
    for (int q = 0; q < kPipes; ++q) own.clock[q] = own.clock[q] > clock.clock[q] ? own.clock[q] : clock.clock[q];
}

/// Orders every pipe after every earlier instruction (PipeBarrier<PIPE_ALL>).
inline void BarrierAll() {
    CoreState& core = Core();
    PipeClock all;
    for (int q = 0; q < kPipes; ++q) all.clock[q] = core.pipes[q].clock[q];
    for (int p = 0; p < kPipes; ++p) core.pipes[p] = all;
}

/// Records an access of instruction `seq` of pipe `p` to `bytes` bytes at `offset` of `hw`, failing
/// when the block was last written (or, for a write, last read) by another pipe that `p` has not
/// been ordered after. Scalar accesses on an AIV are ordered by the compiler's automatic
/// synchronisation.
inline void Access(const char* call, const char* operand, Pipe p, uint64_t seq, Hardware hw, uint32_t offset,
                   uint64_t bytes, bool write) {
    CoreState& core = Core();
    if (hw == Hardware::GM || bytes == 0) return;
    const bool autoSync = p == Pipe::S && core.kind == CoreKind::AIV;
    std::vector<uint64_t>& blocks = core.writer[static_cast<int>(hw)];
    std::vector<uint64_t>& reads = core.readers[static_cast<int>(hw)];
    const uint64_t first = offset / 32;
    const uint64_t last = (offset + bytes - 1) / 32;
    const PipeClock& known = core.pipes[static_cast<int>(p)];
    for (uint64_t b = first; b <= last && b < blocks.size(); ++b) {
        const uint64_t w = blocks[b];
        if (w != 0 && !autoSync) {
            const int wp = static_cast<int>(w >> 56);
            const uint64_t wseq = w & ((uint64_t{1} << 56) - 1);
            if (wp != static_cast<int>(p) && known.clock[wp] < wseq) {
                Fail(Failure::Unsynchronized, call,
                     "%s %s %s bytes [%llu, %llu) last written by pipe %s, with no SetFlag/WaitFlag, queue "
                     "event or barrier ordering %s before %s",
                     operand, write ? "overwrites" : "reads", HardwareName(hw), static_cast<unsigned long long>(b * 32),
                     static_cast<unsigned long long>(b * 32 + 32), PipeName(static_cast<Pipe>(wp)),
                     PipeName(static_cast<Pipe>(wp)), PipeName(p));
            }
        }
        if (write && !autoSync) {
            for (int r = 0; r < kPipes; ++r) {
                const uint64_t rseq = reads[b * kPipes + r];
                if (r != static_cast<int>(p) && rseq != 0 && known.clock[r] < rseq) {
                    Fail(Failure::Unsynchronized, call,
                         "%s overwrites %s bytes [%llu, %llu) still being read by pipe %s, with no SetFlag/WaitFlag, "
                         "queue event (FreeTensor/AllocTensor) or barrier ordering %s before %s",
                         operand, HardwareName(hw), static_cast<unsigned long long>(b * 32),
                         static_cast<unsigned long long>(b * 32 + 32), PipeName(static_cast<Pipe>(r)),
                         PipeName(static_cast<Pipe>(r)), PipeName(p));
                }
            }
        }
        if (write) {
            blocks[b] = autoSync ? 0 : (static_cast<uint64_t>(p) << 56) | seq;
            if (autoSync) {
                for (int r = 0; r < kPipes; ++r) reads[b * kPipes + r] = 0;
            }
        } else if (!autoSync) {
            reads[b * kPipes + static_cast<int>(p)] = seq;
        }
    }
}

/// Registry of GM allocations, used to bound-check GM accesses.
struct GmRegistry {
    /// Releases memory obtained from std::aligned_alloc.
    struct FreeDeleter {
        void operator()(uint8_t* p) const { std::free(p); }
    };
    std::mutex lock;
    std::vector<std::pair<const uint8_t*, uint64_t>> regions;
    /// Allocations owned by the emulator (GmAlloc); freed at process exit.
    std::vector<std::unique_ptr<uint8_t, FreeDeleter>> owned;
    static GmRegistry& Get() {
        static GmRegistry registry;
        return registry;
    }
};

/// Registers `bytes` bytes at `ptr` as one GM allocation (bounds for GM accesses).
inline void RegisterGm(const void* ptr, uint64_t bytes) {
    auto& r = GmRegistry::Get();
    std::lock_guard<std::mutex> g(r.lock);
    r.regions.emplace_back(static_cast<const uint8_t*>(ptr), bytes);
}

/// Forgets the GM region registered last at `ptr` (after the memory is released, or when a
/// launch's view of a tensor ends).
inline void UnregisterGm(const void* ptr) {
    auto& r = GmRegistry::Get();
    std::lock_guard<std::mutex> g(r.lock);
    for (size_t i = r.regions.size(); i-- > 0;) {
        if (r.regions[i].first == static_cast<const uint8_t*>(ptr)) {
            r.regions.erase(r.regions.begin() + static_cast<std::ptrdiff_t>(i));
            return;
        }
    }
}

/// Registers a launch's GM arguments as regions of their own for the duration of the launch,
/// so an access past a tensor that shares an allocation with others (the host's arena) is
/// still caught.
class ScopedGmRegions {
public:
    ScopedGmRegions(std::initializer_list<std::pair<const void*, uint64_t>> regions) {
        for (const auto& region : regions) {
            if (region.first == nullptr) continue;
            RegisterGm(region.first, region.second);
            ptrs_.push_back(region.first);
        }
    }
    ~ScopedGmRegions() {
        for (size_t i = ptrs_.size(); i-- > 0;) UnregisterGm(ptrs_[i]);
    }
    ScopedGmRegions(const ScopedGmRegions&) = delete;
    ScopedGmRegions& operator=(const ScopedGmRegions&) = delete;

private:
    std::vector<const void*> ptrs_;
};

/// Checks that [ptr, ptr+bytes) lies inside the smallest registered GM region that holds
/// `ptr` (a launch argument inside an allocation, else the allocation). Unregistered pointers
/// are not checked.
inline void CheckGmRange(const char* call, const void* ptr, uint64_t bytes) {
    auto& r = GmRegistry::Get();
    std::lock_guard<std::mutex> g(r.lock);
    const uint8_t* p = static_cast<const uint8_t*>(ptr);
    const std::pair<const uint8_t*, uint64_t>* best = nullptr;
    for (const auto& region : r.regions) {
        if (p >= region.first && p < region.first + region.second &&
            (best == nullptr || region.second < best->second)) {
            best = &region;
        }
    }
    if (best != nullptr && static_cast<uint64_t>(p - best->first) + bytes > best->second) {
        Fail(Failure::BufferOverflow, call,
             "GM access of %llu bytes at offset %llu overflows its %llu-byte allocation",
             static_cast<unsigned long long>(bytes),
             static_cast<unsigned long long>(p - best->first),
             static_cast<unsigned long long>(best->second));
    }
}

}  // namespace emu

/// Block index of the current core (AIV in a MIX 1:2 launch: block*2 + sub-block).
inline int64_t GetBlockIdx() { return emu::Core().blockIdx; }
/// Number of blocks of the launch.
inline int64_t GetBlockNum() { return emu::Core().blockNum; }
/// AIVs per AI Core in this launch on an AIV, 1 on an AIC.
inline int64_t GetTaskRatio() { return emu::Core().taskRatio; }
/// Index of this AIV inside its AI Core (0 on an AIC).
inline int64_t GetSubBlockIdx() { return emu::Core().subBlockIdx; }

namespace emu {
inline bool IsAic() { return Core().kind == CoreKind::AIC; }
}  // namespace emu

}  // namespace AscendC

// On the device these are compile-time constants; here the core kind is known at run time.
// Use as `if ASCEND_IS_AIC { ... }`.
#define ASCEND_IS_AIC (::AscendC::emu::IsAic())
#define ASCEND_IS_AIV (!::AscendC::emu::IsAic())

namespace AscendC {

/// Global memory view. Offsets and sizes are in elements.
template <typename T>
class GlobalTensor {
public:
    void SetGlobalBuffer(__gm__ T* buffer, uint64_t bufferSize) {
        addr_ = buffer;
        size_ = bufferSize;
    }
    void SetGlobalBuffer(__gm__ T* buffer) {
        addr_ = buffer;
        size_ = 0;
    }
    GlobalTensor operator[](uint64_t offset) const {
        GlobalTensor t = *this;
        t.addr_ = addr_ + offset;
        return t;
    }
    T GetValue(uint64_t offset) const {
        emu::CheckGmRange("GlobalTensor::GetValue", addr_ + offset, sizeof(T));
        return addr_[offset];
    }
    void SetValue(uint64_t offset, T value) {
        emu::CheckGmRange("GlobalTensor::SetValue", addr_ + offset, sizeof(T));
        addr_[offset] = value;
    }
    /// The size given to SetGlobalBuffer (not reduced by operator[], as on the device).
    uint64_t GetSize() const { return size_; }
    __gm__ T* GetPhyAddr() const { return addr_; }
    __gm__ T* GetPhyAddr(uint64_t offset) const { return addr_ + offset; }

private:
    T* addr_ = nullptr;
    uint64_t size_ = 0;
};

/// On-chip memory view: a byte range of one physical memory of the current core.
template <typename T>
class LocalTensor {
public:
    LocalTensor() = default;
    /// Emulator constructor: `len` bytes at byte offset `offset` of the memory behind `pos`.
    LocalTensor(TPosition pos, uint32_t offset, uint32_t len) : pos_(pos), offset_(offset), len_(len) {}

    LocalTensor operator[](uint32_t offset) const {
        if (offset >= GetSize()) {
            emu::Fail(emu::Failure::BufferOverflow, "LocalTensor::operator[]",
                      "offset %u is not below the tensor size %u (position %s)", offset, GetSize(),
                      emu::PositionName(pos_));
        }
        return LocalTensor(pos_, offset_ + offset * sizeof(T), len_ - offset * sizeof(T));
    }
    T GetValue(uint32_t index) const {
        CheckIndex("LocalTensor::GetValue", index);
        emu::Access("LocalTensor::GetValue", "element", emu::Pipe::S, emu::Issue(emu::Pipe::S),
                    emu::PositionHardware(pos_), offset_ + index * sizeof(T), sizeof(T), false);
        T v;
        std::memcpy(&v, Bytes() + index * sizeof(T), sizeof(T));
        return v;
    }
    void SetValue(uint32_t index, T value) const {
        CheckIndex("LocalTensor::SetValue", index);
        emu::Access("LocalTensor::SetValue", "element", emu::Pipe::S, emu::Issue(emu::Pipe::S),
                    emu::PositionHardware(pos_), offset_ + index * sizeof(T), sizeof(T), true);
        std::memcpy(Bytes() + index * sizeof(T), &value, sizeof(T));
    }
    T& operator()(uint32_t index) const {
        CheckIndex("LocalTensor::operator()", index);
        const uint64_t seq = emu::Issue(emu::Pipe::S);
        emu::Access("LocalTensor::operator()", "element", emu::Pipe::S, seq, emu::PositionHardware(pos_),
                    offset_ + index * sizeof(T), sizeof(T), false);
        emu::Access("LocalTensor::operator()", "element", emu::Pipe::S, seq, emu::PositionHardware(pos_),
                    offset_ + index * sizeof(T), sizeof(T), true);
        return GetPhyAddr()[index];
    }
    /// Length in elements.
    uint32_t GetSize() const { return len_ / sizeof(T); }
    /// Length in bytes.
    uint32_t GetLength() const { return len_; }
    TPosition GetPosition() const { return pos_; }
    template <typename U>
    LocalTensor<U> ReinterpretCast() const {
        return LocalTensor<U>(pos_, offset_, len_);
    }
    T* GetPhyAddr() const { return reinterpret_cast<T*>(Bytes()); }
    T* GetPhyAddr(uint32_t offset) const { return GetPhyAddr() + offset; }

    /// Emulator: byte offset inside the physical memory.
    uint32_t EmuOffset() const { return offset_; }
    /// Emulator: first byte of the view.
    uint8_t* Bytes() const { return emu::MemBase(emu::PositionHardware(pos_)) + offset_; }
    /// Emulator: records a read of `bytes` bytes by instruction `seq` of pipe `p` (hazard check).
    void EmuRead(const char* call, const char* operand, emu::Pipe p, uint64_t seq, uint64_t bytes) const {
        emu::Access(call, operand, p, seq, emu::PositionHardware(pos_), offset_, bytes, false);
    }
    /// Emulator: records a write of `bytes` bytes by instruction `seq` of pipe `p` (hazard check).
    void EmuWrite(const char* call, const char* operand, emu::Pipe p, uint64_t seq, uint64_t bytes) const {
        emu::Access(call, operand, p, seq, emu::PositionHardware(pos_), offset_, bytes, true);
    }
    /// Emulator: fails unless the view holds `bytes` bytes.
    void EmuNeed(const char* call, const char* operand, uint64_t bytes) const {
        if (bytes > len_) {
            emu::Fail(emu::Failure::BufferOverflow, call,
                      "%s needs %llu bytes but the %s tensor holds %u", operand,
                      static_cast<unsigned long long>(bytes), emu::PositionName(pos_), len_);
        }
    }
    /// Emulator: fails unless the start address is `align`-byte aligned.
    void EmuAlign(const char* call, const char* operand, uint32_t align) const {
        if (offset_ % align != 0) {
            emu::Fail(emu::Failure::Misaligned, call,
                      "%s address %u in %s is not %u-byte aligned", operand, offset_,
                      emu::HardwareName(emu::PositionHardware(pos_)), align);
        }
    }
    /// Emulator: fails unless the tensor lives in one of the given memories.
    void EmuIn(const char* call, const char* operand, Hardware a, Hardware b = Hardware::MAX) const {
        const Hardware h = emu::PositionHardware(pos_);
        if (h != a && h != b) {
            emu::Fail(emu::Failure::WrongPosition, call, "%s is in position %s (%s), expected %s%s%s",
                      operand, emu::PositionName(pos_), emu::HardwareName(h), emu::HardwareName(a),
                      b == Hardware::MAX ? "" : " or ", b == Hardware::MAX ? "" : emu::HardwareName(b));
        }
    }

private:
    void CheckIndex(const char* call, uint32_t index) const {
        if (index >= GetSize()) {
            emu::Fail(emu::Failure::BufferOverflow, call, "index %u out of range (size %u, position %s)",
                      index, GetSize(), emu::PositionName(pos_));
        }
    }
    TPosition pos_ = TPosition::VECCALC;
    uint32_t offset_ = 0;
    uint32_t len_ = 0;
};

namespace emu {
/// Producer and consumer pipes of a TQue position (the events EnQue/DeQue and Free/Alloc stand for).
inline std::pair<Pipe, Pipe> QuePipes(TPosition p) {
    switch (p) {
        case TPosition::VECIN: return {Pipe::MTE2, Pipe::V};
        case TPosition::VECOUT: return {Pipe::V, Pipe::MTE3};
        case TPosition::A1:
        case TPosition::B1:
        case TPosition::C1: return {Pipe::MTE2, Pipe::MTE1};
        case TPosition::A2:
        case TPosition::B2:
        case TPosition::C2: return {Pipe::MTE1, Pipe::M};
        case TPosition::CO1: return {Pipe::M, Pipe::FIX};
        default: return {Pipe::S, Pipe::S};
    }
}
}  // namespace emu

template <TPosition pos, int32_t depth>
class TQue;
template <TPosition pos>
class TBuf;

/// Buffer allocator of one kernel: carves queue and scratch buffers bump-pointer style.
class TPipe {
public:
    TPipe() { emu::Core().pipe = this; }
    ~TPipe() {
        if (emu::Core().pipe == this) emu::Core().pipe = nullptr;
    }
    TPipe(const TPipe&) = delete;
    TPipe& operator=(const TPipe&) = delete;

    template <class Q>
    bool InitBuffer(Q& que, uint8_t num, uint32_t len) {
        if (que.EmuPosition() == TPosition::VECCALC || que.EmuPosition() == TPosition::CO2) {
            emu::Fail(emu::Failure::WrongPosition, "TPipe::InitBuffer",
                      "TQue position %s is not a valid queue position (use TBuf for scratch)",
                      emu::PositionName(que.EmuPosition()));
        }
        if (num < 1 || num > 64) {
            emu::Fail(emu::Failure::TooManyBuffers, "TPipe::InitBuffer", "num = %u outside [1, 64]", num);
        }
        const uint32_t start = Carve("TPipe::InitBuffer", que.EmuPosition(), num, len);
        que.EmuInit(start, num, RoundUp32(len));
        return true;
    }
    template <TPosition pos>
    bool InitBuffer(TBuf<pos>& buf, uint32_t len) {
        const uint32_t start = Carve("TPipe::InitBuffer", pos, 1, len);
        buf.EmuInit(start, RoundUp32(len));
        return true;
    }
    void Reset() {
        for (auto& u : used_) u = 0;
        buffers_ = 0;
    }
    void Destroy() { Reset(); }
    /// Reserves a free event id of `evt` for hand-written SetFlag/WaitFlag (ids 0-5; 6-7 are the
    /// framework's).
    template <HardEvent evt>
    TEventID AllocEventID() {
        const TEventID id = FetchEventID<evt>();
        eventIds_[static_cast<int>(evt)] = static_cast<uint8_t>(eventIds_[static_cast<int>(evt)] | (1u << id));
        return id;
    }
    /// Returns an id obtained from AllocEventID.
    template <HardEvent evt>
    void ReleaseEventID(TEventID id) {
        uint8_t& used = eventIds_[static_cast<int>(evt)];
        if (id < 0 || id > 5 || !(used & (1u << id))) {
            emu::Fail(emu::Failure::UnpairedFlag, "TPipe::ReleaseEventID", "event id %d was not allocated", id);
        }
        used = static_cast<uint8_t>(used & ~(1u << id));
    }
    /// The id AllocEventID would return next, without reserving it.
    template <HardEvent evt>
    TEventID FetchEventID() const {
        return FetchEventID(evt);
    }
    TEventID FetchEventID(HardEvent evt) const {
        for (int id = 0; id < 6; ++id) {
            if (!(eventIds_[static_cast<int>(evt)] & (1u << id))) return static_cast<TEventID>(id);
        }
        emu::Fail(emu::Failure::UnpairedFlag, "TPipe::AllocEventID", "all 6 event ids of this HardEvent are in use");
    }
    /// Emulator: bytes of `hw` carved so far.
    uint32_t EmuUsed(Hardware hw) const { return used_[static_cast<int>(hw)]; }

private:
    static uint32_t RoundUp32(uint32_t len) { return (len + 31u) / 32u * 32u; }
    uint32_t Carve(const char* call, TPosition pos, uint32_t num, uint32_t len) {
        const Hardware hw = emu::PositionHardware(pos);
        if (hw == Hardware::GM) {
            emu::Fail(emu::Failure::WrongPosition, call, "position %s has no on-chip buffer",
                      emu::PositionName(pos));
        }
        buffers_ += static_cast<int>(num);
        if (buffers_ > 64) {
            emu::Fail(emu::Failure::TooManyBuffers, call,
                      "%d buffers requested in one TPipe; at most 64 are allowed", buffers_);
        }
        uint32_t& used = used_[static_cast<int>(hw)];
        const uint64_t need = static_cast<uint64_t>(used) + static_cast<uint64_t>(num) * RoundUp32(len);
        if (need > emu::HardwareSize(hw)) {
            emu::Fail(emu::Failure::BufferOverflow, call,
                      "%s pool overflow: %llu bytes requested in total, capacity %u (position %s)",
                      emu::HardwareName(hw), static_cast<unsigned long long>(need), emu::HardwareSize(hw),
                      emu::PositionName(pos));
        }
        const uint32_t start = used;
        used = static_cast<uint32_t>(need);
        return start;
    }
    uint32_t used_[static_cast<int>(Hardware::MAX)] = {};
    uint8_t eventIds_[static_cast<int>(HardEvent::MAX)] = {};
    int buffers_ = 0;
};

/// Pointer to the kernel's TPipe.
inline TPipe* GetTPipePtr() { return static_cast<TPipe*>(emu::Core().pipe); }

/// Queue of on-chip buffers between two pipes; enforces the FREE → OCCUPIED → ENQUE → DEQUE →
/// FREE protocol of the device.
template <TPosition pos, int32_t depth = 1>
class TQue {
public:
    TQue() = default;
    TQue(const TQue&) = delete;
    TQue& operator=(const TQue&) = delete;
    ~TQue() {
        for (uint32_t i = 0; i < num_; ++i) {
            if (state_[i] != State::Free) {
                emu::Fail(emu::Failure::QueueMisuse, "TQue (kernel end)",
                          "buffer %u of the %s queue was not freed (FreeTensor missing)", i,
                          emu::PositionName(pos));
            }
        }
    }

    template <typename T>
    LocalTensor<T> AllocTensor() {
        static const char* call = "TQue::AllocTensor";
        if (num_ == 0) emu::Fail(emu::Failure::QueueMisuse, call, "queue %s was never initialised by InitBuffer", emu::PositionName(pos));
        uint32_t outstanding = 0;
        for (uint32_t i = 0; i < num_; ++i) outstanding += state_[i] != State::Free;
        if (outstanding >= 8) {
            emu::Fail(emu::Failure::QueueMisuse, call, "more than 8 tensors allocated and not freed in %s", emu::PositionName(pos));
        }
        const uint32_t idx = next_;
        if (state_[idx] != State::Free) {
            emu::Fail(emu::Failure::QueueMisuse, call,
                      "buffer %u of the %s queue is still in use (FreeTensor missing); the device would hang",
                      idx, emu::PositionName(pos));
        }
        next_ = (next_ + 1) % num_;
        state_[idx] = State::Occupied;
        emu::Absorb(emu::QuePipes(pos).first, freeClock_[idx]);
        return LocalTensor<T>(pos, start_ + idx * len_, len_);
    }
    template <typename T>
    void EnQue(const LocalTensor<T>& t) {
        const uint32_t idx = Find("TQue::EnQue", t);
        if (state_[idx] != State::Occupied) {
            emu::Fail(emu::Failure::QueueMisuse, "TQue::EnQue", "buffer %u of %s is %s, expected allocated",
                      idx, emu::PositionName(pos), Name(state_[idx]));
        }
        if (fifo_.size() >= static_cast<size_t>(depth)) {
            emu::Fail(emu::Failure::QueueMisuse, "TQue::EnQue", "more than depth=%d EnQue without DeQue in %s",
                      depth, emu::PositionName(pos));
        }
        state_[idx] = State::Enqueued;
        enqClock_[idx] = emu::Snapshot(emu::QuePipes(pos).first);
        fifo_.push_back(idx);
    }
    template <typename T>
    LocalTensor<T> DeQue() {
        if (fifo_.empty()) {
            emu::Fail(emu::Failure::QueueMisuse, "TQue::DeQue", "DeQue on the empty %s queue (no EnQue before it)",
                      emu::PositionName(pos));
        }
        const uint32_t idx = fifo_.front();
        fifo_.pop_front();
        state_[idx] = State::Dequeued;
        emu::Absorb(emu::QuePipes(pos).second, enqClock_[idx]);
        return LocalTensor<T>(pos, start_ + idx * len_, len_);
    }
    template <typename T>
    void FreeTensor(LocalTensor<T>& t) {
        const uint32_t idx = Find("TQue::FreeTensor", t);
        if (state_[idx] == State::Free || state_[idx] == State::Enqueued) {
            emu::Fail(emu::Failure::QueueMisuse, "TQue::FreeTensor", "buffer %u of %s is %s", idx,
                      emu::PositionName(pos), Name(state_[idx]));
        }
        state_[idx] = State::Free;
        freeClock_[idx] = emu::Snapshot(emu::QuePipes(pos).second);
    }

    /// Emulator: the queue's position.
    static constexpr TPosition EmuPosition() { return pos; }
    /// Emulator: called by TPipe::InitBuffer.
    void EmuInit(uint32_t start, uint32_t num, uint32_t len) {
        if (num_ != 0) emu::Fail(emu::Failure::QueueMisuse, "TPipe::InitBuffer", "queue %s initialised twice", emu::PositionName(pos));
        start_ = start;
        num_ = num;
        len_ = len;
        state_.assign(num, State::Free);
        enqClock_.assign(num, emu::PipeClock{});
        freeClock_.assign(num, emu::PipeClock{});
    }

private:
    enum class State { Free, Occupied, Enqueued, Dequeued };
    static const char* Name(State s) {
        switch (s) {
            case State::Free: return "free";
            case State::Occupied: return "allocated";
            case State::Enqueued: return "enqueued";
            case State::Dequeued: return "dequeued";
        }
        return "?";
    }
    template <typename T>
    uint32_t Find(const char* call, const LocalTensor<T>& t) const {
        if (t.GetPosition() == pos && t.EmuOffset() >= start_ && len_ != 0) {
            const uint32_t rel = t.EmuOffset() - start_;
            if (rel % len_ == 0 && rel / len_ < num_) return rel / len_;
        }
        emu::Fail(emu::Failure::QueueMisuse, call, "tensor does not start a buffer of this %s queue",
                  emu::PositionName(pos));
    }
    uint32_t start_ = 0, num_ = 0, len_ = 0, next_ = 0;
    std::vector<State> state_;
    std::vector<emu::PipeClock> enqClock_, freeClock_;
    std::deque<uint32_t> fifo_;
};

/// Scratch buffer without any synchronisation.
template <TPosition pos>
class TBuf {
public:
    template <typename T>
    LocalTensor<T> Get() const {
        Check();
        return LocalTensor<T>(pos, start_, len_);
    }
    template <typename T>
    LocalTensor<T> Get(uint32_t len) const {
        Check();
        if (static_cast<uint64_t>(len) * sizeof(T) > len_) {
            emu::Fail(emu::Failure::BufferOverflow, "TBuf::Get", "%u elements exceed the %u-byte buffer", len, len_);
        }
        return LocalTensor<T>(pos, start_, len * sizeof(T));
    }
    /// Emulator: called by TPipe::InitBuffer.
    void EmuInit(uint32_t start, uint32_t len) {
        start_ = start;
        len_ = len;
        init_ = true;
    }

private:
    void Check() const {
        if (!init_) emu::Fail(emu::Failure::QueueMisuse, "TBuf::Get", "TBuf %s was never initialised", emu::PositionName(pos));
    }
    uint32_t start_ = 0, len_ = 0;
    bool init_ = false;
};

}  // namespace AscendC
