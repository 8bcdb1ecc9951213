// A named kernel that leaves SetAtomicAdd on: the launch fails at kernel end, and the message
// names the kernel and the core.
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void leaves_atomic_on(GM_ADDR out, GM_ADDR workspace, GM_ADDR tiling) {
    (void)out;
    (void)workspace;
    (void)tiling;
    SetAtomicAdd<half>();
}

int main() {
    uint8_t* out = emu::GmAlloc(64);
    emu::Launch("leaves_atomic_on", emu::KernelType::AIV_ONLY, 1, leaves_atomic_on, out, (uint8_t*)nullptr,
                (uint8_t*)nullptr);
    return 0;
}
