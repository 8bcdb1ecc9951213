// cubevec AscendC CPU emulation: the subset of the ACL runtime (acl/acl.h) that cubevec's host
// programs call, backed by host memory, so that the same host source compiles with g++ and runs
// the kernels on the emulated cores. Device memory comes from the host heap, filled with the
// poison byte 0xCD and registered for the kernels' GM bounds checks; a stream is a token and
// every launch completes before it returns, so synchronisation is immediate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "../emu_core.h"

/// ACL status code.
using aclError = int;
/// Success.
constexpr aclError ACL_SUCCESS = 0;
/// A parameter is invalid (null pointer, size too small, wrong state).
constexpr aclError ACL_ERROR_INVALID_PARAM = 100000;
/// The runtime was not initialised (aclInit) or no device was set.
constexpr aclError ACL_ERROR_UNINITIALIZE = 100001;
/// Out of (host) memory.
constexpr aclError ACL_ERROR_BAD_ALLOC = 200000;

/// A stream: work issued to it runs in order.
using aclrtStream = void*;

/// Allocation policies of aclrtMalloc (all behave the same here).
enum aclrtMemMallocPolicy { ACL_MEM_MALLOC_HUGE_FIRST = 0, ACL_MEM_MALLOC_HUGE_ONLY, ACL_MEM_MALLOC_NORMAL_ONLY };

/// Directions of aclrtMemcpy.
enum aclrtMemcpyKind {
    ACL_MEMCPY_HOST_TO_HOST = 0,
    ACL_MEMCPY_HOST_TO_DEVICE,
    ACL_MEMCPY_DEVICE_TO_HOST,
    ACL_MEMCPY_DEVICE_TO_DEVICE,
};

namespace AscendC {
namespace emu {

/// Runtime state of the emulated ACL.
struct AclState {
    bool initialized = false;
    int32_t device = -1;
    const char* lastError = "";
    static AclState& Get() {
        static AclState state;
        return state;
    }
};

/// Records `message` as the most recent error and returns `code`.
inline aclError AclFail(aclError code, const char* message) {
    AclState::Get().lastError = message;
    return code;
}

/// The error for calls that need aclInit and aclrtSetDevice first, or ACL_SUCCESS.
inline aclError AclReady() {
    const AclState& s = AclState::Get();
    if (!s.initialized) return AclFail(ACL_ERROR_UNINITIALIZE, "aclInit was not called");
    if (s.device < 0) return AclFail(ACL_ERROR_UNINITIALIZE, "aclrtSetDevice was not called");
    return ACL_SUCCESS;
}

}  // namespace emu
}  // namespace AscendC

/// Initialises the runtime (the configuration file is ignored).
inline aclError aclInit(const char* configPath) {
    (void)configPath;
    AscendC::emu::AclState::Get().initialized = true;
    return ACL_SUCCESS;
}

/// Shuts the runtime down.
inline aclError aclFinalize() {
    AscendC::emu::AclState::Get().initialized = false;
    return ACL_SUCCESS;
}

/// Selects the device; the emulation has exactly device 0.
inline aclError aclrtSetDevice(int32_t deviceId) {
    auto& s = AscendC::emu::AclState::Get();
    if (!s.initialized) return AscendC::emu::AclFail(ACL_ERROR_UNINITIALIZE, "aclInit was not called");
    if (deviceId != 0) return AscendC::emu::AclFail(ACL_ERROR_INVALID_PARAM, "the emulation has only device 0");
    s.device = deviceId;
    return ACL_SUCCESS;
}

/// Releases the device.
inline aclError aclrtResetDevice(int32_t deviceId) {
    auto& s = AscendC::emu::AclState::Get();
    if (deviceId != s.device) return AscendC::emu::AclFail(ACL_ERROR_INVALID_PARAM, "device was not set");
    s.device = -1;
    return ACL_SUCCESS;
}

/// Creates a stream.
inline aclError aclrtCreateStream(aclrtStream* stream) {
    if (const aclError e = AscendC::emu::AclReady(); e != ACL_SUCCESS) return e;
    if (stream == nullptr) return AscendC::emu::AclFail(ACL_ERROR_INVALID_PARAM, "null stream pointer");
    static int token = 0;
    *stream = &token;
    return ACL_SUCCESS;
}

/// Destroys a stream.
inline aclError aclrtDestroyStream(aclrtStream stream) {
    if (stream == nullptr) return AscendC::emu::AclFail(ACL_ERROR_INVALID_PARAM, "null stream");
    return ACL_SUCCESS;
}

/// Waits for the work of a stream; launches are synchronous here.
inline aclError aclrtSynchronizeStream(aclrtStream stream) {
    if (stream == nullptr) return AscendC::emu::AclFail(ACL_ERROR_INVALID_PARAM, "null stream");
    return ACL_SUCCESS;
}

/// Allocates `size` bytes of device memory (512-byte aligned, poisoned, bounds-checked as GM).
inline aclError aclrtMalloc(void** devPtr, size_t size, aclrtMemMallocPolicy policy) {
    (void)policy;
    if (const aclError e = AscendC::emu::AclReady(); e != ACL_SUCCESS) return e;
    if (devPtr == nullptr || size == 0) return AscendC::emu::AclFail(ACL_ERROR_INVALID_PARAM, "null pointer or zero size");
    const size_t rounded = (size + 511) / 512 * 512;
    void* p = std::aligned_alloc(512, rounded);
    if (p == nullptr) return AscendC::emu::AclFail(ACL_ERROR_BAD_ALLOC, "out of host memory");
    std::memset(p, AscendC::emu::kPoison, rounded);
    AscendC::emu::RegisterGm(p, size);
    *devPtr = p;
    return ACL_SUCCESS;
}

/// Frees device memory from aclrtMalloc.
inline aclError aclrtFree(void* devPtr) {
    if (devPtr == nullptr) return AscendC::emu::AclFail(ACL_ERROR_INVALID_PARAM, "null pointer");
    AscendC::emu::UnregisterGm(devPtr);
    std::free(devPtr);
    return ACL_SUCCESS;
}

/// Copies `count` bytes; fails when `destMax` is smaller.
inline aclError aclrtMemcpy(void* dst, size_t destMax, const void* src, size_t count, aclrtMemcpyKind kind) {
    (void)kind;
    if (dst == nullptr || src == nullptr) return AscendC::emu::AclFail(ACL_ERROR_INVALID_PARAM, "null pointer");
    if (count > destMax) return AscendC::emu::AclFail(ACL_ERROR_INVALID_PARAM, "count exceeds destMax");
    std::memmove(dst, src, count);
    return ACL_SUCCESS;
}

/// Fills `count` bytes with `value`, in stream order (immediately here).
inline aclError aclrtMemsetAsync(void* devPtr, size_t maxCount, int32_t value, size_t count, aclrtStream stream) {
    if (devPtr == nullptr || stream == nullptr) return AscendC::emu::AclFail(ACL_ERROR_INVALID_PARAM, "null pointer");
    if (count > maxCount) return AscendC::emu::AclFail(ACL_ERROR_INVALID_PARAM, "count exceeds maxCount");
    std::memset(devPtr, value, count);
    return ACL_SUCCESS;
}

/// The message of the most recent failed call.
inline const char* aclGetRecentErrMsg() { return AscendC::emu::AclState::Get().lastError; }
