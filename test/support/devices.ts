/** Which devices the suites run on: cpu always; cuda when this machine can run it. */
import { backendInfo, Device } from '../../ts/native'

const cuda = backendInfo().cuda

export const cudaReason: string | null = cuda.available ? null : cuda.reason

/** describe() for CUDA suites: skipped, with the reason printed once, where CUDA cannot run. */
export const describeCuda: jest.Describe = cuda.available ? describe : describe.skip

export function announceCudaSkip(suite: string): void {
  if (!cuda.available) {
    // Visible in the jest output so a skipped GPU suite is never mistaken for a passing one.
    process.stdout.write(`[${suite}] CUDA suite skipped: ${cuda.reason}\n`)
  }
}

export const devices: Device[] = cuda.available ? ['cpu', 'cuda'] : ['cpu']
