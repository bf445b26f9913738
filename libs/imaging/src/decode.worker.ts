/**
 * Decode worker (worker_threads): turns one file into a wire image per message. Runs the same
 * toWireImage as the main thread; the pool (decode-pool.ts) stops it when a decode overruns.
 */
import { ThoraxError } from '@thorax/contracts';
import { parentPort } from 'node:worker_threads';
import type { DecodeReply, DecodeRequest } from './decode-pool';
import { toWireImage, type WireImage } from './wire-image';

/** The slot's shared input buffer, and this worker's own copy of a file (both kept for the next file). */
let shared: SharedArrayBuffer | null = null;
let inbox: Uint8Array | null = null;

/**
 * The request's file as a Uint8Array this thread owns. A file in the shared buffer is copied
 * once into the kept inbox: the decoders (sharp among them) refuse views of shared memory, and
 * the main thread writes the next file there as soon as this one is answered.
 */
function fileOf(request: DecodeRequest): Uint8Array {
  if (request.bytes) return new Uint8Array(request.bytes);
  if (request.shared) shared = request.shared;
  if (!shared || request.length > shared.byteLength) throw new Error('no shared input buffer for this request');
  if (!inbox || inbox.length < request.length) inbox = new Uint8Array(shared.byteLength);
  inbox.set(new Uint8Array(shared, 0, request.length));
  return inbox.subarray(0, request.length);
}

parentPort?.on('message', (request: DecodeRequest) => {
  void new Promise<WireImage>((resolve) => resolve(toWireImage(fileOf(request), request.options))).then(
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
