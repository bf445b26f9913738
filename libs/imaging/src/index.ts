export * from './media-type';
export * from './wire-image';
