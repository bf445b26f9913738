export * from './dicom';
export * from './dicom-pixels';
export * from './grey-levels';
export * from './media-type';
export * from './resize';
export * from './wire-image';
export * from './intake';
export * from './decode-pool';
