export * from './classifier';
export * from './model-directory';
export * from './onnx-metadata';
