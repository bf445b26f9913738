export * from './audit';
export * from './fixtures';
export * from './kafka';
export * from './processes';
export * from './secure-kafka';
