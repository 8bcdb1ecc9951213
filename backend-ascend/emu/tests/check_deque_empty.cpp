// Check: DeQue on a queue nothing was enqueued to fails.
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void deque_empty(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)x, (void)y, (void)workspace, (void)tiling;
    TPipe pipe;
    TQue<TPosition::VECIN, 1> inQueue;
    pipe.InitBuffer(inQueue, 2, 256);
    LocalTensor<float> t = inQueue.AllocTensor<float>();
    LocalTensor<float> u = inQueue.DeQue<float>();  // EnQue missing
    inQueue.FreeTensor(u);
    inQueue.FreeTensor(t);
}

int main() {
    emu::Launch(emu::KernelType::AIV_ONLY, 1, deque_empty, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
