// Check: a vector op reading UB that MTE2 wrote, with no flag, queue event or barrier in between,
// fails (on the device it would read stale data).
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void missing_sync(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)y, (void)workspace, (void)tiling;
    GlobalTensor<float> xGm;
    xGm.SetGlobalBuffer((__gm__ float*)x, 64);
    TPipe pipe;
    TBuf<TPosition::VECCALC> buf;
    pipe.InitBuffer(buf, 512);
    LocalTensor<float> a = buf.Get<float>();
    LocalTensor<float> b = a[64];
    DataCopy(a, xGm, 64);
    Exp(b, a, 64);  // SetFlag<HardEvent::MTE2_V> / WaitFlag<HardEvent::MTE2_V> missing
}

int main() {
    uint8_t* x = emu::GmAlloc(64 * sizeof(float));
    emu::Launch(emu::KernelType::AIV_ONLY, 1, missing_sync, x, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
