export * from './connection-failure';
export * from './failure-policy';
export * from './kafka-client';
export * from './kafka.module';
export * from './kafka-publisher';
export * from './record-consumer';
export * from './records';
