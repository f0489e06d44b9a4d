<?php
// A PHP worker loop, run by the entrypoint bundle in an image without Python:
//
//   MODE=worker /opt/entrypoint/entrypoint run -- php /app/worker.php
//
// Each job takes JOB_SECONDS (default 1) and is never cut short: SIGTERM or
// SIGINT (forwarded by the entrypoint on `docker stop`) only sets a flag that
// the loop reads between jobs, so the job in flight finishes, then the worker
// exits 0. Needs the pcntl extension (Debian's php-cli has it; on the
// official php images: docker-php-ext-install pcntl).

declare(strict_types=1);

pcntl_async_signals(true);

$stop = null;
$onStop = function (int $signo) use (&$stop): void {
    $stop ??= $signo;
    fwrite(STDERR, "stop_requested signal={$signo} action=finish_job_then_exit\n");
};
pcntl_signal(SIGTERM, $onStop);
pcntl_signal(SIGINT, $onStop);

$seconds = (float) (getenv('JOB_SECONDS') ?: '1');
$me = gethostname() . '/' . getmypid();
fwrite(STDERR, "worker_started worker={$me} job_seconds={$seconds}\n");

$done = 0;
while ($stop === null) {
    $job = $done + 1;
    fwrite(STDERR, "job_started n={$job} worker={$me}\n");
    // The work: usleep() returns early when a signal arrives; sleep the rest.
    $end = microtime(true) + $seconds;
    while (($left = $end - microtime(true)) > 0) {
        usleep((int) ceil($left * 1e6));
    }
    $done = $job;
    fwrite(STDERR, "job_finished n={$job} worker={$me}\n");
}
fwrite(STDERR, "worker_stopped jobs={$done} worker={$me}\n");
exit(0);
