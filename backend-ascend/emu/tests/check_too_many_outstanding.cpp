// Check: more than 8 tensors allocated and not freed in one queue fail (8 event ids per pipe pair).
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void too_many_outstanding(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)x, (void)y, (void)workspace, (void)tiling;
    TPipe pipe;
    TQue<TPosition::VECIN, 1> inQueue;
    pipe.InitBuffer(inQueue, 9, 256);
    LocalTensor<float> held[9];
    for (int i = 0; i < 9; ++i) held[i] = inQueue.AllocTensor<float>();
    for (int i = 0; i < 9; ++i) inQueue.FreeTensor(held[i]);
}

int main() {
    emu::Launch(emu::KernelType::AIV_ONLY, 1, too_many_outstanding, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
