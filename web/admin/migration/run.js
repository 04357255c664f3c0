/**
 * admin/migration/run.js: a migration run as the panel sees it (pure, no DOM): its id (the
 * page chooses it, so it can poll before the POST answers) and its URL (`#migrate/<runId>`),
 * its progress, and what it needs next.
 */

import { countOf, formatCount, formatDuration } from '../../ui/format.js';

const HASH = /^#migrate(?:\/([A-Za-z0-9_-]{1,100}))?$/;

/** A run id the page chooses (so it can poll before the POST answers): time + randomness. */
export function newRunId(date = new Date(), random = Math.random) {
  const stamp = date.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const suffix = Math.floor(random() * 0xffffffff).toString(16).padStart(8, '0');
  return `web-${stamp}-${suffix}`;
}

/** `#migrate/<runId>` -> runId; `#migrate` -> ''; anything else -> null. */
export function runIdFromHash(hash) {
  const match = HASH.exec(hash ?? '');
  if (!match) return null;
  return match[1] ?? '';
}

/** The progress of a run document for the bar: done, total, percent, rate, ETA, failures. */
export function progressOf(run) {
  const counts = run?.counts ?? {};
  const total = Number(run?.total ?? 0);
  const done = Number(counts.read ?? 0);
  const finished = run?.state === 'completed';
  const percent = total > 0 ? Math.min(100, (100 * done) / total) : (finished ? 100 : 0);
  return {
    state: run?.stalled ? 'stalled' : (run?.state ?? 'starting'),
    done, total, percent,
    rate: Number(run?.rate ?? 0),
    etaSeconds: finished ? 0 : run?.etaSeconds ?? null,
    failed: Number(counts.failed ?? 0),
  };
}

/** The progress line under the bar. */
export function progressText(progress) {
  const parts = [`${formatCount(progress.done)} of ${countOf(progress.total, 'record')}`,
    `${Math.floor(progress.percent)}%`,
    `${formatCount(Math.round(progress.rate))} records/s`,
    `ETA ${formatDuration(progress.etaSeconds)}`,
    `${formatCount(progress.failed)} failed so far`];
  return parts.join(' · ');
}

/** What the run needs next: 'poll', 'resume', 'done' or 'wait' (not started yet). */
export function nextStep(run) {
  if (!run) return 'wait';
  if (run.state === 'completed') return 'done';
  if (run.state === 'paused' || run.state === 'failed' || run.stalled) return 'resume';
  return 'poll';
}
