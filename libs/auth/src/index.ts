export * from './auth-failure';
export * from './token-verifier';
export * from './from-config';
