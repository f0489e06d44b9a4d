// Enqueue with the real BullMQ, hold one job active, print BullMQ's own counts.
//
//   node bullmq_jobs.mjs PORT DB PREFIX QUEUE
//
// Prints one JSON line (queue.getJobCounts) once the state is in place:
// 1 active (held by a Worker), 2 waiting, 1 prioritized, 1 delayed. Then waits
// for stdin to close, releases the job, removes every key of the queue
// (obliterate) and exits 0.
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";

const [port, db, prefix, name] = process.argv.slice(2);
// BullMQ 6 loads no Redis client by itself in ESM: it is given one.
const client = () =>
  new Redis({ host: "127.0.0.1", port: Number(port), db: Number(db), maxRetriesPerRequest: null });
const queue = new Queue(name, { connection: client(), prefix });

let release;
const held = new Promise((resolve) => {
  release = resolve;
});
const worker = new Worker(name, async () => held, {
  connection: client(),
  prefix,
  concurrency: 1,
});
const active = new Promise((resolve) => worker.once("active", resolve));

await queue.add("held", {});
await active;
await queue.add("a", {});
await queue.add("b", {});
await queue.add("later", {}, { delay: 600_000 });
await queue.add("urgent", {}, { priority: 5 });

const counts = await queue.getJobCounts("active", "wait", "prioritized", "delayed", "paused");
process.stdout.write(JSON.stringify(counts) + "\n");

process.stdin.resume();
process.stdin.on("end", async () => {
  release();
  await worker.close(true);
  await queue.obliterate({ force: true });
  await queue.close();
  process.exit(0);
});
