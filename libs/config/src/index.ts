export * from './api-security';
export * from './kafka-env';
export * from './load-config';
export * from './object-store-env';
export * from './server-tls';
export * from './topic-names';
