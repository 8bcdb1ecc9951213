// Check: float → bfloat16 with CAST_NONE is rejected on arch 2201 (use CAST_RINT).
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void cast_mode(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)x, (void)y, (void)workspace, (void)tiling;
    TPipe pipe;
    TBuf<TPosition::VECCALC> a, b;
    pipe.InitBuffer(a, 256);
    pipe.InitBuffer(b, 256);
    LocalTensor<float> src = a.Get<float>();
    LocalTensor<bfloat16_t> dst = b.Get<bfloat16_t>();
    Duplicate(src, 1.5f, 64);
    Cast(dst, src, RoundMode::CAST_NONE, 64);
}

int main() {
    emu::Launch(emu::KernelType::AIV_ONLY, 1, cast_mode, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
