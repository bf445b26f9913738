// Jest's node environment runs tests in a separate realm, so typed arrays made by native
// addons (onnxruntime-node's output tensors) fail `instanceof Float32Array` checks inside
// the sandbox. Sharing the host's typed-array constructors with the sandbox fixes that.
const { TestEnvironment } = require('jest-environment-node');

const SHARED = [
  'ArrayBuffer',
  'SharedArrayBuffer',
  'Int8Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'Float32Array',
  'Float64Array',
  'BigInt64Array',
  'BigUint64Array',
];

class ThoraxNodeEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
  }
}

module.exports = ThoraxNodeEnvironment;
