// A BullMQ worker, run by the entrypoint bundle in an image without Python:
//
//   MODE=worker QUEUE_URL=redis://redis:6379/0 /opt/entrypoint/entrypoint run -- node worker.mjs
//
// Each job sleeps for its data.ms (a stand-in for real work). On SIGTERM or
// SIGINT (forwarded by the entrypoint on `docker stop`) the worker stops
// taking jobs, lets the job in flight finish (worker.close() waits for it),
// and exits 0.
import os from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { Worker } from "bullmq";
import { connection, log, queueName } from "./connection.mjs";

const me = `${os.hostname()}/${process.pid}`;
let stopping = false;

async function stop(signal) {
  if (stopping) return;
  stopping = true;
  log("stop_requested", { signal, action: "finish_job_then_exit" });
  await worker.close();
  log("worker_stopped", { worker: me });
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

const worker = new Worker(
  queueName,
  async (job) => {
    log("job_started", { id: job.id, ms: job.data.ms, worker: me });
    await sleep(job.data.ms ?? 1000);
    log("job_finished", { id: job.id, worker: me });
    return { worker: me };
  },
  { connection: connection(), concurrency: Number(process.env.CONCURRENCY || 1) },
);
worker.on("ready", () => log("worker_started", { queue: queueName, worker: me }));
worker.on("error", (error) => log("worker_error", { error: JSON.stringify(String(error)) }));
