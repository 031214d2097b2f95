/** Source of the current time. Expiry, intervals and sweeps take one so tests can move time. */
export interface Clock {
  now(): Date;
}

/** The machine's clock. */
export const systemClock: Clock = { now: () => new Date() };
