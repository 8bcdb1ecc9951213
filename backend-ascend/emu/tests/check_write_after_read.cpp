// Check: MTE2 overwriting UB that V read, with no V_MTE2 ordering in between, fails (on the device
// the copy could land before the vector op has read the old data).
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void write_after_read(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)y, (void)workspace, (void)tiling;
    GlobalTensor<float> xGm;
    xGm.SetGlobalBuffer((__gm__ float*)x, 128);
    TPipe pipe;
    TBuf<TPosition::VECCALC> buf;
    pipe.InitBuffer(buf, 512);
    LocalTensor<float> a = buf.Get<float>();
    LocalTensor<float> b = a[64];
    DataCopy(a, xGm, 64);
    SetFlag<HardEvent::MTE2_V>(EVENT_ID0);
    WaitFlag<HardEvent::MTE2_V>(EVENT_ID0);
    Exp(b, a, 64);
    DataCopy(a, xGm[64], 64);  // SetFlag<HardEvent::V_MTE2> / WaitFlag<HardEvent::V_MTE2> missing
}

int main() {
    uint8_t* x = emu::GmAlloc(128 * sizeof(float));
    emu::Launch(emu::KernelType::AIV_ONLY, 1, write_after_read, x, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
