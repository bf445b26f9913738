/**
 * Decode worker (worker_threads): turns one file into a wire image per message. Runs the same
 * toWireImage as the main thread; the pool (decode-pool.ts) stops it when a decode overruns.
 */
import { ThoraxError } from '@thorax/contracts';
import { parentPort } from 'node:worker_threads';
import type { DecodeReply, DecodeRequest } from './decode-pool';
import { toWireImage } from './wire-image';

parentPort?.on('message', (request: DecodeRequest) => {
  void toWireImage(new Uint8Array(request.bytes), request.options).then(
    (wire) => {
      // sharp's output lives in memory V8 cannot transfer (an external buffer): the 64 KiB wire
      // image is copied once into a transferable one.
      const pixels = new Uint8Array(wire.pixels);
      const reply: DecodeReply = { id: request.id, ok: true, wire: { ...wire, pixels } };
      parentPort?.postMessage(reply, [pixels.buffer]);
    },
    (error: unknown) => {
      const reply: DecodeReply =
        error instanceof ThoraxError
          ? { id: request.id, ok: false, code: error.code, message: error.message }
          : { id: request.id, ok: false, code: 'CORRUPT_IMAGE', message: `decoder failed: ${String((error as Error)?.message ?? error)}` };
      parentPort?.postMessage(reply);
    },
  );
});
