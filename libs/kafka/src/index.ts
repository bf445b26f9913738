export * from './consumer-port';
export * from './failure-policy';
export * from './kafka-client';
export * from './kafka.module';
export * from './kafka-publisher';
export * from './records';
export * from './topic-provisioner';
export * from './connection-failure';
