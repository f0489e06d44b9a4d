// The Redis connection BullMQ gets, from QUEUE_URL (the variable the
// entrypoint waits for): redis://[:password@]host[:port][/db].
export function connection(env = process.env) {
  const url = new URL(env.QUEUE_URL ?? "redis://127.0.0.1:6379/0");
  return {
    host: url.hostname,
    port: Number(url.port || 6379),
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    db: Number(url.pathname.slice(1) || 0),
    // A worker's blocking commands must not give up while Redis restarts.
    maxRetriesPerRequest: null,
  };
}

export const queueName = process.env.QUEUE_NAME || "jobs";

export function log(event, fields = {}) {
  const pairs = Object.entries(fields).map(([key, value]) => `${key}=${value}`);
  process.stderr.write([event, ...pairs].join(" ") + "\n");
}
