/**
 * Ctrl-C for long commands: the first SIGINT aborts `controller` (the run stops after its
 * current step and saves a checkpoint); the copies that npm and npx forward within two
 * seconds are absorbed; a SIGINT after that exits at once with status 130. SIGTERM — what
 * process managers, Docker and batch schedulers send — is handled the same way, so a stopped
 * container leaves a checkpoint to resume from.
 * Returns the function that removes the handlers.
 */
export function abortOnSigint(controller: AbortController, err: NodeJS.WritableStream, who: string): () => void {
  let first = 0
  const onSigint = (signal: NodeJS.Signals): void => {
    const now = Date.now()
    if (first === 0) {
      first = now
      controller.abort()
      err.write(`\n${who}: ${signal === 'SIGTERM' ? 'SIGTERM: ' : ''}stopping after this step and saving a checkpoint ` +
        '(Ctrl-C again in 2 s to quit at once)\n')
    } else if (now - first > 2000) {
      err.write(`${who}: quitting without a checkpoint\n`)
      process.exit(130)
    }
  }
  process.on('SIGINT', onSigint)
  process.on('SIGTERM', onSigint)
  return () => {
    process.off('SIGINT', onSigint)
    process.off('SIGTERM', onSigint)
    // Once stopping, the process is on its way out with 130: a forwarded copy arriving while it
    // finishes its reports must not kill it mid-write (a listener does not keep it alive).
    if (first !== 0) {
      process.on('SIGINT', absorb)
      process.on('SIGTERM', absorb)
    }
  }
}

function absorb(): void {}
