// Check: a count-form DataCopy whose byte length is not a multiple of 32 fails (the device would
// silently drop the tail).
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void copy_length(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)y, (void)workspace, (void)tiling;
    GlobalTensor<half> xGm;
    xGm.SetGlobalBuffer((__gm__ half*)x, 64);
    TPipe pipe;
    TQue<TPosition::VECIN, 1> inQueue;
    pipe.InitBuffer(inQueue, 1, 128);
    LocalTensor<half> t = inQueue.AllocTensor<half>();
    DataCopy(t, xGm, 10);  // 20 bytes
    inQueue.FreeTensor(t);
}

int main() {
    uint8_t* x = emu::GmAlloc(128);
    emu::Launch(emu::KernelType::AIV_ONLY, 1, copy_length, x, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
