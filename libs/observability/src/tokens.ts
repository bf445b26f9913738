/** Injection token of the service's root pino logger. */
export const LOGGER = Symbol('thorax.logger');
