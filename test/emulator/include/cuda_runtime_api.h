// Stand-in for the CUDA toolkit header (cublasLt.h includes it).
#pragma once
#include "emu.h"
