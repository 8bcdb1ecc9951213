// The GM side and the host runtime: device memory from the emulated ACL (acl/acl.h), atomic
// accumulation (SetAtomicAdd / SetAtomicNone) of 4 AIVs adding their rows into one GM row with
// DataCopyPad, and scalar GM reads after DataCacheCleanAndInvalid.
#include <cstdio>
#include <vector>

#include "acl/acl.h"
#include "kernel_operator.h"
using namespace AscendC;

// Each AIV b adds row b of x (4 x 24 floats) into out[0..24) and copies scale[0] * (b + 1) into
// out[24 + b] after reading scale[0] with a scalar load.
extern "C" __global__ __aicore__ void atomic_rows(GM_ADDR x, GM_ADDR scale, GM_ADDR out, GM_ADDR workspace,
                                                  GM_ADDR tiling) {
    (void)workspace;
    (void)tiling;
    const int64_t b = GetBlockIdx();
    GlobalTensor<float> xGm, scaleGm, outGm;
    xGm.SetGlobalBuffer((__gm__ float*)x, 96);
    scaleGm.SetGlobalBuffer((__gm__ float*)scale, 8);
    outGm.SetGlobalBuffer((__gm__ float*)out, 32);
    TPipe pipe;
    TBuf<TPosition::VECCALC> ub;
    pipe.InitBuffer(ub, 256);
    LocalTensor<float> row = ub.Get<float>();
    DataCopyPad(row, xGm[b * 24], DataCopyExtParams(1, 24 * sizeof(float), 0, 0, 0),
                DataCopyPadExtParams<float>(false, 0, 0, 0.0f));
    SetFlag<HardEvent::MTE2_MTE3>(0);
    WaitFlag<HardEvent::MTE2_MTE3>(0);
    SetAtomicAdd<float>();
    DataCopyPad(outGm, row, DataCopyExtParams(1, 24 * sizeof(float), 0, 0, 0));
    SetAtomicNone();
    DataCacheCleanAndInvalid<float, CacheLine::SINGLE_CACHE_LINE, DcciDst::CACHELINE_OUT>(scaleGm);
    const float s = scaleGm.GetValue(0);
    LocalTensor<float> one = ub.Get<float>()[32];
    SetFlag<HardEvent::MTE3_V>(0);
    WaitFlag<HardEvent::MTE3_V>(0);
    Duplicate(one, s * static_cast<float>(b + 1), 8);
    SetFlag<HardEvent::V_MTE3>(0);
    WaitFlag<HardEvent::V_MTE3>(0);
    DataCopyPad(outGm[24 + b], one, DataCopyExtParams(1, sizeof(float), 0, 0, 0));
}

static bool Check(aclError e, const char* what) {
    if (e == ACL_SUCCESS) return true;
    std::printf("%s failed: %d %s\n", what, e, aclGetRecentErrMsg());
    return false;
}

int main() {
    if (aclrtMalloc(nullptr, 4, ACL_MEM_MALLOC_HUGE_FIRST) != ACL_ERROR_UNINITIALIZE) return 1;
    if (!Check(aclInit(nullptr), "aclInit") || !Check(aclrtSetDevice(0), "aclrtSetDevice")) return 1;
    aclrtStream stream = nullptr;
    if (!Check(aclrtCreateStream(&stream), "aclrtCreateStream")) return 1;
    std::vector<float> x(96), scale(8, 0.5f), out(32);
    for (int i = 0; i < 96; ++i) x[i] = static_cast<float>(i % 24) + 0.25f * static_cast<float>(i / 24);
    void *dx = nullptr, *ds = nullptr, *dout = nullptr;
    if (!Check(aclrtMalloc(&dx, 96 * 4, ACL_MEM_MALLOC_HUGE_FIRST), "aclrtMalloc") ||
        !Check(aclrtMalloc(&ds, 8 * 4, ACL_MEM_MALLOC_HUGE_FIRST), "aclrtMalloc") ||
        !Check(aclrtMalloc(&dout, 32 * 4, ACL_MEM_MALLOC_HUGE_FIRST), "aclrtMalloc"))
        return 1;
    if (aclrtMemcpy(dx, 8, x.data(), 96 * 4, ACL_MEMCPY_HOST_TO_DEVICE) != ACL_ERROR_INVALID_PARAM) return 1;
    if (!Check(aclrtMemcpy(dx, 96 * 4, x.data(), 96 * 4, ACL_MEMCPY_HOST_TO_DEVICE), "aclrtMemcpy") ||
        !Check(aclrtMemcpy(ds, 8 * 4, scale.data(), 8 * 4, ACL_MEMCPY_HOST_TO_DEVICE), "aclrtMemcpy") ||
        !Check(aclrtMemsetAsync(dout, 32 * 4, 0, 32 * 4, stream), "aclrtMemsetAsync"))
        return 1;
    emu::Launch("atomic_rows", emu::KernelType::AIV_ONLY, 4, atomic_rows, (uint8_t*)dx, (uint8_t*)ds,
                (uint8_t*)dout, (uint8_t*)nullptr, (uint8_t*)nullptr);
    if (!Check(aclrtSynchronizeStream(stream), "aclrtSynchronizeStream")) return 1;
    if (!Check(aclrtMemcpy(out.data(), 32 * 4, dout, 32 * 4, ACL_MEMCPY_DEVICE_TO_HOST), "aclrtMemcpy")) return 1;
    for (int c = 0; c < 24; ++c) {
        const float want = 4.0f * static_cast<float>(c) + 0.25f * 6.0f;
        if (out[c] != want) {
            std::printf("out[%d] = %g, want %g\n", c, out[c], want);
            return 1;
        }
    }
    for (int b = 0; b < 4; ++b) {
        if (out[24 + b] != 0.5f * static_cast<float>(b + 1)) {
            std::printf("out[%d] = %g\n", 24 + b, out[24 + b]);
            return 1;
        }
    }
    if (!Check(aclrtFree(dx), "aclrtFree") || !Check(aclrtFree(ds), "aclrtFree") || !Check(aclrtFree(dout), "aclrtFree"))
        return 1;
    aclrtDestroyStream(stream);
    aclrtResetDevice(0);
    aclFinalize();
    std::printf("atomic_acl: OK\n");
    return 0;
}
