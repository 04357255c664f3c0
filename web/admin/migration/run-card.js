/**
 * admin/migration/run-card.js: the card of the run the panel follows: its id and state, the
 * progress bar and line, and once it ends its account, report and sample (report.js).
 */

import { h } from '../../ui/dom.js';
import { accountTable, downloadLink, reasonsTable, sampleBlock } from './report.js';
import { progressOf, progressText } from './run.js';

/**
 * Fill `card` with `run` (`{ runId, dryRun }`), its stored document (null until the function
 * has scanned the source) and its report (when it ended). The card's `.run-actions` holds the
 * buttons (Resume, the download).
 */
export function renderRunCard(card, run, stored, report = null) {
  const progress = progressOf(stored);
  const state = stored ? progress.state : 'starting';
  const fill = h('div', { class: 'progress-fill' });
  fill.style.width = `${progress.percent.toFixed(1)}%`; // CSSOM: allowed by the page's CSP
  const bar = h('div', { class: 'progress', role: 'progressbar', id: 'migration-progress',
    'aria-valuemin': '0', 'aria-valuemax': String(progress.total),
    'aria-valuenow': String(progress.done), 'data-state': state }, fill);
  const dry = stored ? stored.dryRun : run.dryRun;
  const head = h('div', { class: 'card-head' },
    h('h2', {}, dry ? 'Dry run ' : 'Run ', h('span', { class: 'mono', id: 'migration-run-id', text: run.runId })),
    h('span', { class: `pill run-state state-${state}`, id: 'migration-state', text: state }));
  const source = stored ? `${stored.collection} ← ${stored.source} · mode ${stored.mode}`
    : 'waiting for the function to read the source…';
  const actions = h('div', { class: 'run-actions' });
  const parts = [
    h('p', { class: 'muted run-source', text: source }),
    bar,
    h('p', { class: 'run-progress', id: 'migration-progress-text',
      text: stored ? progressText(progress) : 'starting…' }),
    actions,
  ];
  if (stored && (state === 'completed' || report)) parts.push(accountTable(stored));
  if (report) {
    parts.push(reasonsTable(report));
    actions.append(downloadLink(run.runId, report));
  }
  if (stored?.sample?.length && (dry || state === 'completed')) parts.push(sampleBlock(stored));
  card.replaceChildren(head, h('div', { class: 'run-body' }, ...parts));
}
