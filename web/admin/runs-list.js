/**
 * admin/runs-list.js: a list of migration runs (the migration panel's "Recent runs", the
 * status page's newest runs), each linking to `#migrate/<runId>`.
 */

import { h } from '../ui/dom.js';
import { formatCount } from '../ui/format.js';

/** The state a run shows: its `state`, or 'stalled' when its process is gone. */
export function runState(run) {
  return run.stalled ? 'stalled' : run.state;
}

/** `<ul class="recent-runs">` of `runs`; `started`: with each run's start time. */
export function runsList(runs, { started = false } = {}) {
  return h('ul', { class: 'recent-runs' }, runs.map((run) => {
    const state = runState(run);
    return h('li', {}, h('a', { class: 'mono', href: `#migrate/${run.runId}`, text: run.runId }), ' ',
      h('span', { class: `pill run-state state-${state}`, text: state }),
      h('span', { class: 'muted', text: ` ${run.collection}${run.dryRun ? ' · dry run' : ''} · `
        + `${formatCount(run.counts?.written ?? 0)} written, ${formatCount(run.counts?.failed ?? 0)} `
        + `failed of ${formatCount(run.total ?? 0)}${started ? ` · started ${run.startedAt ?? '?'}` : ''}` }));
  }));
}
