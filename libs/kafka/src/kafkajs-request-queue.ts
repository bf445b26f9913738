/**
 * kafkajs 2.2.4 (its last release) keeps one request queue per broker connection, and the queue
 * re-arms a timer after every check of its pending requests, also when nothing is pending and
 * nothing is throttled. The delay it computes is then negative (the throttle's end, -1, minus the
 * clock), which Node runs as 1 ms; the timer's check re-arms it. From its first request on, every
 * connection of every kafkajs client wakes its event loop about a thousand times a second for as
 * long as the process lives: 36 ms of CPU per second on each idle Thorax process that held a
 * kafkajs client, and its garbage (docs/inference.md, "Benchmark").
 *
 * This keeps kafkajs's own rule (wait for the throttle's end, else re-check in 10 ms) for a queue
 * that holds pending requests, and arms nothing for an empty one. A request that cannot go out
 * at once is pushed to the pending list and schedules its own check, and each answer checks the
 * list again, so nothing waits on the timer that is no longer armed.
 */
const KAFKAJS_REQUEST_QUEUE = 'kafkajs/src/network/requestQueue/index.js';
const FIXED = Symbol.for('thorax.kafkajs.requestQueue.idleTimer');

interface RequestQueuePrototype {
  scheduleCheckPendingRequests(this: { pending: unknown[] }): void;
  checkPendingRequests(): void;
  [FIXED]?: true;
}

/**
 * Applies the fix to kafkajs's RequestQueue class (its prototype, so queues already built get it
 * too). Returns false, changing nothing, when kafkajs's layout is not the expected one.
 */
export function fixKafkajsRequestQueueTimer(): boolean {
  let queueClass: { prototype?: RequestQueuePrototype } | undefined;
  try {
    queueClass = require(KAFKAJS_REQUEST_QUEUE) as { prototype?: RequestQueuePrototype };
  } catch {
    return false;
  }
  const prototype = queueClass?.prototype;
  if (
    !prototype ||
    typeof prototype.scheduleCheckPendingRequests !== 'function' ||
    typeof prototype.checkPendingRequests !== 'function'
  ) {
    return false;
  }
  if (prototype[FIXED]) return true;
  const schedule = prototype.scheduleCheckPendingRequests;
  prototype.scheduleCheckPendingRequests = function scheduleWhenPending(this: { pending: unknown[] }): void {
    if (!Array.isArray(this.pending) || this.pending.length > 0) schedule.call(this);
  };
  prototype[FIXED] = true;
  return true;
}
