export * from './classifier';
export * from './model-directory';
export * from './onnx-metadata';
export * from './providers';
export * from './worker-pool';
