import type { ModelArtifact } from './model-directory';

/** Data a classifier worker starts with. */
export interface WorkerSetup {
  artifact: Omit<ModelArtifact, 'bytes'>;
  /** The model file; transferred, not copied. */
  bytes: ArrayBuffer;
  providers: string[];
  intraOpThreads: number;
  /** Return the class activation maps with the scores (when the model has them). */
  maps: boolean;
}

export type WorkerRequest = { kind: 'classify'; id: number; count: number; pixels: ArrayBuffer } | { kind: 'close' };

export type WorkerReply =
  | { kind: 'provider'; provider: string; outcome: 'skipped' | 'failed' | 'active'; reason?: string }
  | { kind: 'ready'; provider: string }
  | { kind: 'failed'; message: string }
  | { kind: 'result'; id: number; scores: ArrayBuffer; maps: ArrayBuffer | null; runMs: number }
  | { kind: 'error'; id: number; message: string };
