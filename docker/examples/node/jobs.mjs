// The example's queue from the command line:
//   node jobs.mjs add COUNT MS    enqueue COUNT jobs of MS milliseconds, print their ids
//   node jobs.mjs list            print every job as JSON: id, state, attempts, worker
import { Queue } from "bullmq";
import { connection, queueName } from "./connection.mjs";

const queue = new Queue(queueName, { connection: connection() });
const [command, count = "1", ms = "1000"] = process.argv.slice(2);
if (command === "add") {
  const jobs = await queue.addBulk(
    Array.from({ length: Number(count) }, () => ({ name: "sleep", data: { ms: Number(ms) } })),
  );
  process.stdout.write(jobs.map((job) => job.id).join(" ") + "\n");
} else if (command === "list") {
  const jobs = await queue.getJobs(["waiting", "active", "completed", "failed", "delayed"]);
  const rows = await Promise.all(
    jobs.map(async (job) => ({
      id: job.id,
      state: await job.getState(),
      attemptsStarted: job.attemptsStarted,
      attemptsMade: job.attemptsMade,
      worker: job.returnvalue?.worker ?? null,
    })),
  );
  process.stdout.write(JSON.stringify(rows) + "\n");
} else {
  process.stderr.write("usage: node jobs.mjs add COUNT MS | list\n");
  process.exitCode = 64;
}
await queue.close();
