// A BullMQ worker with its scheduler inside, switched on by ENABLE_SCHEDULER,
// as applications write it ("Only ONE worker instance should have this enabled"):
//
//   node bullmq_scheduler_worker.mjs PORT DB PREFIX QUEUE RECORD JOBS EVERY_MS
//
// Every instance runs a Worker on QUEUE. Only with ENABLE_SCHEDULER === "true"
// does it also declare a job scheduler (queue.upsertJobScheduler) producing a
// "tick" every EVERY_MS, whose jobs carry the producer (REPLICA, from the
// environment) and the lease token it was given; on TERM it removes that
// scheduler, then closes. The scheduler's id is the producer's own, so that
// two producers at once would show as two interleaved streams of ticks.
//
// RECORD gets `start <pid> <ppid> <ENABLE_SCHEDULER> <token> <t>` before the
// scheduler part is declared, and `stop <pid> <t>` once it is removed
// (t: CLOCK_MONOTONIC in seconds, as tests/lease_child.py writes them). JOBS
// gets one line per tick processed, by whichever instance processed it:
// `tick <producer> <token> <scheduled ms> <processed by>`.
import { appendFileSync } from "node:fs";
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";

const [port, db, prefix, name, record, jobs, every] = process.argv.slice(2);
const replica = process.env.REPLICA ?? "?";
const flag = process.env.ENABLE_SCHEDULER ?? "-";
const token = process.env.ENTRYPOINT_LEASE_TOKEN ?? "-";
const monotonic = () => (Number(process.hrtime.bigint()) / 1e9).toFixed(6);
const note = (path, line) => appendFileSync(path, line + "\n");
// BullMQ 6 loads no Redis client by itself in ESM: it is given one.
const client = () =>
  new Redis({ host: "127.0.0.1", port: Number(port), db: Number(db), maxRetriesPerRequest: null });

let stopping = false;
let stop;
const stopped = new Promise((resolve) => {
  stop = resolve;
});
process.once("SIGTERM", () => {
  stopping = true;
  stop();
});

const queue = new Queue(name, { connection: client(), prefix });
const worker = new Worker(
  name,
  async (job) => {
    const scheduled = job.id.split(":").pop();
    note(jobs, `tick ${job.data.producer} ${job.data.token} ${scheduled} ${replica}`);
  },
  { connection: client(), prefix, concurrency: 1 },
);
await worker.waitUntilReady();

const scheduler = `tick-${replica}-${token}`;
const producing = flag === "true";
note(record, `start ${process.pid} ${process.ppid} ${flag} ${token} ${monotonic()}`);
if (producing && !stopping) {
  await queue.upsertJobScheduler(
    scheduler,
    { every: Number(every) },
    { name: "tick", data: { producer: replica, token } },
  );
}

await stopped;
if (producing) {
  await queue.removeJobScheduler(scheduler);
}
note(record, `stop ${process.pid} ${monotonic()}`);
await worker.close();
await queue.close();
process.exit(0);
