// Stands in for core/cuda/common.cuh in tests/emu (this folder comes first on test_emu's include path): of it,
// the device headers of core/cuda that the emulator runs (core/cuda/softmax_rows.cuh) need only the storage
// types and conversions (core/cuda/acc.cuh); the real one also brings tensors, dispatch and launch helpers.
#pragma once
#include "tests/emu/cuda_emu.h"
// (after cuda_emu.h: the device qualifiers are plain functions)
#include "core/cuda/acc.cuh"
