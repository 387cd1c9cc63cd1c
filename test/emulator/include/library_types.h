// Stand-in for the CUDA toolkit header: the data types cuBLASLt layouts name (same values).
#pragma once
typedef enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType;
