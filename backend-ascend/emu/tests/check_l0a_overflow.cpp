// Check: LoadData writing past the end of an L0A tensor fails.
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void l0a_overflow(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)x, (void)y, (void)workspace, (void)tiling;
    TPipe pipe;
    TQue<TPosition::A1, 1> qA1;
    TQue<TPosition::A2, 1> qA2;
    pipe.InitBuffer(qA1, 1, 8 * 512);
    pipe.InitBuffer(qA2, 1, 4 * 512);
    LocalTensor<half> a1 = qA1.AllocTensor<half>();
    LocalTensor<half> a2 = qA2.AllocTensor<half>();
    LoadData(a2, a1, LoadData2DParams(0, 8, 1, 0, 0, false, 0));  // 8 fractals into a 4-fractal tensor
    qA1.FreeTensor(a1);
    qA2.FreeTensor(a2);
}

int main() {
    emu::Launch(emu::KernelType::AIC_ONLY, 1, l0a_overflow, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
