// Check: a DataCopy into a UB view that is not 32-byte aligned fails.
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void misaligned(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)y, (void)workspace, (void)tiling;
    GlobalTensor<half> xGm;
    xGm.SetGlobalBuffer((__gm__ half*)x, 64);
    TPipe pipe;
    TQue<TPosition::VECIN, 1> inQueue;
    pipe.InitBuffer(inQueue, 1, 256);
    LocalTensor<half> t = inQueue.AllocTensor<half>();
    DataCopy(t[1], xGm, 16);  // starts 2 bytes into the buffer
    inQueue.FreeTensor(t);
}

int main() {
    uint8_t* x = emu::GmAlloc(128);
    emu::Launch(emu::KernelType::AIV_ONLY, 1, misaligned, x, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
