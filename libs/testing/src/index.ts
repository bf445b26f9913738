export * from './audit';
export * from './fixtures';
export * from './kafka';
export * from './label-cardinality';
export * from './processes';
export * from './promql-names';
export * from './secure-kafka';
export * from './slow-model';
