export * from './fixtures';
export * from './kafka';
export * from './processes';
