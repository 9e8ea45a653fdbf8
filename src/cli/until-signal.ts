/** The long-running commands (servers, the dashboard) run until Ctrl-C or a termination signal. */
export function untilSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}
