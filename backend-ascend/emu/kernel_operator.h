// cubevec AscendC CPU emulation: the single header emitted kernels include.
//
// Provides the subset of the AscendC API (arch 2201, Atlas A2 / A3) that cubevec emits, with the
// device names and signatures, executed with CPU semantics and loud checks of API misuse. See
// docs/ascendc-emulation.md.
#pragma once

#include "emu_types.h"
#include "emu_core.h"
#include "emu_gm.h"
#include "emu_data_copy.h"
#include "emu_cube.h"
#include "emu_vector.h"
#include "emu_sync.h"
#include "emu_launch.h"
