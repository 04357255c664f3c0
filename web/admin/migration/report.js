/**
 * admin/migration/report.js: a run's account and report as the panel shows them: the account
 * table (written, unchanged, skipped, failed, read, deleted), every record not written with its
 * index, id and reason, a sample of the converted documents, and the report as a download.
 */

import { h } from '../../ui/dom.js';
import { countOf, formatCount } from '../../ui/format.js';

const REASON_ROWS_SHOWN = 200;

/** The account table of a run: `[outcome, records, meaning]` rows. */
export function accountRows(run) {
  const c = run?.counts ?? {};
  const would = run?.dryRun ? 'would be ' : '';
  const rows = [
    ['written', c.written ?? 0, `${would}created ${formatCount(c.created ?? 0)}, ${would}updated `
      + `${formatCount(c.updated ?? 0)}`],
    ['unchanged', c.unchanged ?? 0, 'same content already stored'],
    ['skipped', c.skipped ?? 0, 'create mode: the document exists and was left as it is'],
    ['failed', c.failed ?? 0, 'not written: each one is listed with its reason'],
    ['read', c.read ?? 0, `of ${countOf(run?.total ?? 0, 'record')} in the source`],
  ];
  if (run?.deletion?.requested) rows.push(['deleted', c.deleted ?? 0, run.deletion.reason ?? '']);
  return rows;
}

/** `<table id="migration-account">` of a run document. */
export function accountTable(stored) {
  return h('table', { class: 'account', id: 'migration-account' },
    h('thead', {}, h('tr', {}, h('th', { text: 'Outcome' }), h('th', { class: 'num', text: 'Records' }), h('th', { text: 'Meaning' }))),
    h('tbody', {}, accountRows(stored).map(([name, count, meaning]) => h('tr', { 'data-outcome': name },
      h('td', { text: name }), h('td', { class: 'num', text: formatCount(count) }), h('td', { class: 'muted', text: meaning })))));
}

/** The records a report lists as failed or skipped, by index (the first 200 shown). */
export function reasonsTable(report) {
  const failures = report.failures ?? [];
  const skipped = report.skipped ?? [];
  const rows = [...failures, ...skipped].sort((a, b) => a.index - b.index);
  const shown = rows.slice(0, REASON_ROWS_SHOWN);
  const caption = rows.length === 0 ? 'No record failed or was skipped.'
    : `${countOf(rows.length, 'record')} not written${rows.length > shown.length ? ` (the first ${REASON_ROWS_SHOWN} shown; the report has all)` : ''}:`;
  return h('div', { class: 'reasons' },
    h('p', { class: 'reasons-caption', text: caption }),
    rows.length === 0 ? null : h('div', { class: 'table-wrap reasons-wrap' }, h('table', { id: 'migration-reasons' },
      h('thead', {}, h('tr', {}, ...['Index', 'Id', 'Outcome', 'Reason', 'Message'].map((t) => h('th', { text: t })))),
      h('tbody', {}, shown.map((entry) => h('tr', { 'data-index': String(entry.index) },
        h('td', { class: 'num', text: String(entry.index) }),
        h('td', { class: 'mono', text: entry.id ?? '—' }),
        h('td', { text: entry.outcome ?? 'failed' }),
        h('td', {}, h('span', { class: 'pill reason', text: entry.reason })),
        h('td', { class: 'muted', text: entry.message ?? '' })))))));
}

/** The run's sample of converted documents, as they are (or would be) stored. */
export function sampleBlock(stored) {
  return h('details', { class: 'sample', id: 'migration-sample', open: true },
    h('summary', { text: `A sample of the converted documents (${stored.sample.length}), as they `
      + `${stored.dryRun ? 'would be' : 'were'} stored (createdAt and updatedAt are set when written)` }),
    h('pre', { class: 'mono', text: JSON.stringify(stored.sample, null, 2) }));
}

/** A link that downloads the report as JSON. */
export function downloadLink(runId, report) {
  const blob = new Blob([JSON.stringify(report, null, 2)], { type: 'application/json' });
  return h('a', { class: 'button', id: 'migration-download', href: URL.createObjectURL(blob),
    download: `migration-${runId}.report.json`, text: 'Download the report (JSON)' });
}
