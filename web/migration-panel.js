/**
 * migration-panel.js: one-click migration of a legacy JSON file from the dashboard (admins).
 *
 * The admin picks a file from the computer (sent as the request body, at most the function's
 * MAX_BODY_BYTES) or names a gs:// object, the collection and the mode, runs a dry run (the
 * account before anything is written: outcomes, every failed record with its index, id and
 * reason, a sample of converted documents), then Migrate.
 *
 * `POST /migrate` answers only when the run ends (or pauses at the function's time budget),
 * so the panel picks the runId itself, puts it in the URL (`#migrate/<runId>`), POSTs, and
 * polls `GET /migrate/<runId>` meanwhile for the progress bar (404 until the file is scanned).
 * A 202 (paused) is POSTed again at once while this tab still holds the source. After a
 * reload the panel reads the run from the URL and follows it; a run that paused or stopped
 * resumes with Resume (for an uploaded file, after choosing the same file again: the function
 * checks its fingerprint). At the end: the report (downloadable as JSON), and the collection's
 * table reloads by itself.
 */

import {
  explain, formatBytes, formatCount, formatDuration, h,
} from './admin-api.js';

export const POLL_MS = 1000;
export const POST_TIMEOUT_MS = 65 * 60 * 1000; // over a function's longest timeout (60 min)
export const MODES = {
  upsert: 'upsert: create documents, or update the fields the file has',
  create: 'create: only add documents that do not exist yet',
  replace: 'replace: documents become exactly the file’s records',
};
const REASON_ROWS_SHOWN = 200;
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

/** Why this source cannot be sent (a sentence), or null: checked before any request. */
export function sourceProblem(source, maxBodyBytes) {
  if (source.kind === 'gcs') {
    return /^gs:\/\/[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]\/.+/.test(source.uri ?? '') ? null
      : 'Enter a Cloud Storage address like gs://my-bucket/legacy/users.json.';
  }
  if (!source.file) return 'Choose a legacy JSON file first.';
  if (source.file.size === 0) return `${source.file.name} is empty: there is nothing to migrate.`;
  if (maxBodyBytes && source.file.size > maxBodyBytes) {
    return `${source.file.name} has ${formatBytes(source.file.size)}; the function accepts at `
      + `most ${formatBytes(maxBodyBytes)} in a request. Upload it to Cloud Storage `
      + '(gcloud storage cp FILE gs://BUCKET/PATH) and migrate it by its gs:// address.';
  }
  return null;
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
  const parts = [`${formatCount(progress.done)} of ${formatCount(progress.total)} records`,
    `${Math.floor(progress.percent)}%`,
    `${formatCount(Math.round(progress.rate))} records/s`,
    `ETA ${formatDuration(progress.etaSeconds)}`,
    `${formatCount(progress.failed)} failed so far`];
  return parts.join(' · ');
}

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
    ['read', c.read ?? 0, `of ${formatCount(run?.total ?? 0)} records in the source`],
  ];
  if (run?.deletion?.requested) rows.push(['deleted', c.deleted ?? 0, run.deletion.reason ?? '']);
  return rows;
}

/** What the run needs next: 'poll', 'resume', 'done' or 'wait' (not started yet). */
export function nextStep(run) {
  if (!run) return 'wait';
  if (run.state === 'completed') return 'done';
  if (run.state === 'paused' || run.state === 'failed' || run.stalled) return 'resume';
  return 'poll';
}

/** The settings of the form that a dry run vouches for (Migrate needs the same). */
function sameInputs(a, b) {
  if (!a || !b || a.collection !== b.collection || a.mode !== b.mode) return false;
  if (a.source.kind !== b.source.kind) return false;
  if (a.source.kind === 'gcs') return a.source.uri === b.source.uri;
  const [x, y] = [a.source.file, b.source.file];
  return Boolean(x && y && x.name === y.name && x.size === y.size
    && x.lastModified === y.lastModified);
}

/**
 * Build the panel in `root` and follow `#migrate/<runId>`.
 * @param {HTMLElement} root
 * @param {{ api: ReturnType<import('./admin-api.js').createAdminApi>,
 *   client: import('./data-client.js').DataClient, collections: string[],
 *   location?: Location, history?: History }} options
 */
export function mountMigrationPanel(root, options) {
  const { api, client } = options;
  const loc = options.location ?? window.location;
  const hist = options.history ?? window.history;
  const ui = buildForm(options.collections);
  const runCard = h('section', { class: 'card admin-card', id: 'migration-run', hidden: true });
  const recentCard = h('section', { class: 'card admin-card', id: 'migration-recent' });
  root.replaceChildren(h('div', { class: 'admin-grid' }, ui.card, runCard, recentCard));

  const panel = {
    limits: { maxBodyBytes: null },
    admin: null, // true / false once GET /migrate/runs answered
    dryRun: null, // { inputs, runId } of the last completed dry run
    current: null, // the run this panel shows: { runId, inputs?, own, written }
    pollTimer: null,
  };

  // --- messages ---
  function say(kind, what, todo = '') {
    ui.message.hidden = !what;
    ui.message.dataset.kind = kind;
    ui.message.replaceChildren(h('strong', { text: what }), todo ? h('span', { text: ` ${todo}` }) : '');
  }

  function sayError(error, written) {
    const { what, todo } = explain(error, { url: api.url('/migrate'), written });
    say('error', what, todo);
  }

  // --- the form ---
  function readInputs() {
    const kind = ui.form.elements.namedItem('source-kind').value;
    return {
      collection: ui.collection.value,
      mode: ui.mode.value,
      source: kind === 'gcs' ? { kind, uri: ui.gcs.value.trim() } : { kind, file: ui.file.files[0] ?? null },
    };
  }

  function refreshButtons() {
    const inputs = readInputs();
    const busy = Boolean(panel.current?.own && !panel.current.finished);
    const admin = panel.admin !== false;
    ui.dry.disabled = busy || !admin;
    const vouched = panel.dryRun && sameInputs(panel.dryRun.inputs, inputs);
    ui.migrate.disabled = busy || !admin || !vouched;
    ui.migrate.title = vouched ? '' : 'Run a dry run of this file, collection and mode first';
    const failed = vouched ? panel.dryRun.failed : 0;
    ui.migrate.textContent = failed ? `Migrate (${formatCount(failed)} records will fail)` : 'Migrate';
    const gcs = ui.form.elements.namedItem('source-kind').value === 'gcs';
    ui.file.disabled = gcs;
    ui.gcs.disabled = !gcs;
  }

  ui.form.addEventListener('input', refreshButtons);
  ui.form.addEventListener('change', refreshButtons);
  ui.form.addEventListener('submit', (event) => event.preventDefault());
  ui.dry.addEventListener('click', () => start(true));
  ui.migrate.addEventListener('click', () => start(false));

  // --- starting a run from this tab ---
  async function start(dryRun) {
    const inputs = readInputs();
    const problem = sourceProblem(inputs.source, panel.limits.maxBodyBytes);
    if (problem) {
      say('error', problem, 'Nothing was sent.');
      return;
    }
    const runId = newRunId();
    follow({ runId, inputs, dryRun, own: true, written: false });
    hist.replaceState(null, '', `#migrate/${runId}`);
    await post(panel.current);
  }

  function query(run) {
    return {
      collection: run.inputs.collection, mode: run.inputs.mode, runId: run.runId,
      dryRun: run.dryRun ? 'true' : undefined, force: run.force ? 'true' : undefined,
      source: run.inputs.source.kind === 'gcs' ? run.inputs.source.uri : undefined,
    };
  }

  /** POST until the run is no longer paused; the answer is shown, errors explained. */
  async function post(run) {
    refreshButtons();
    say('info', run.dryRun ? 'Dry run: reading and checking every record…'
      : 'Migrating: reading the file, then writing…');
    schedulePoll(run, 0);
    try {
      for (;;) {
        const body = run.inputs.source.kind === 'file' ? run.inputs.source.file : undefined;
        const answer = await api.call('POST', '/migrate', { query: query(run), body,
          timeoutMs: POST_TIMEOUT_MS });
        if (panel.current !== run) return;
        if (answer.status === 202) {
          run.written = true;
          say('info', 'The function paused at its time budget: continuing the same run…');
          continue;
        }
        await finish(run, answer.body.run, answer.body.report ?? null);
        return;
      }
    } catch (error) {
      if (panel.current !== run) return;
      if (error.code === 'run_in_progress') { // someone else holds it: follow it instead
        run.own = false;
        sayError(error, true);
        schedulePoll(run);
        return;
      }
      run.finished = true;
      stopPolling();
      const stored = await readRun(run.runId).catch(() => null);
      if (stored) show(run, stored);
      const seen = stored ?? run.stored ?? null;
      sayError(error, Boolean(seen && !seen.dryRun && (seen.counts?.written ?? 0) > 0));
      refreshButtons();
    }
  }

  // --- following a run (this tab's, or one named by the URL) ---
  function follow(run) {
    stopPolling();
    panel.current = run;
    runCard.hidden = false;
    renderRun(run, null);
  }

  async function readRun(runId) {
    try {
      return (await api.call('GET', `/migrate/${runId}`)).body;
    } catch (error) {
      if (error.status === 404) return null;
      throw error;
    }
  }

  function schedulePoll(run, delay = POLL_MS) {
    stopPolling();
    panel.pollTimer = setTimeout(() => poll(run), delay);
  }

  function stopPolling() {
    clearTimeout(panel.pollTimer);
    panel.pollTimer = null;
  }

  async function poll(run) {
    if (panel.current !== run || run.finished) return;
    let stored;
    try {
      stored = await readRun(run.runId);
    } catch (error) {
      if (panel.current !== run) return;
      const { what } = explain(error, { url: api.url(`/migrate/${run.runId}`) });
      const line = runCard.querySelector('.run-progress');
      if (line) line.textContent = `Progress unavailable for now: ${what} Retrying…`;
      schedulePoll(run, POLL_MS * 3);
      return;
    }
    if (panel.current !== run || run.finished) return;
    if (stored === null && !run.own) {
      say('error', `There is no migration run ${run.runId}.`, 'It may never have started (the file '
        + 'was refused before anything was written). Start a new run.');
      run.finished = true;
      return;
    }
    if (stored) {
      show(run, stored);
      if (run.own && stored.state === 'running') {
        say('info', `${stored.dryRun ? 'Dry run: checking' : 'Migrating: writing'} ${stored.collection}; `
          + 'the progress below is read from the run document every second.');
      }
      const step = nextStep(stored);
      if (step === 'done' && !run.own) {
        await finish(run, stored, null);
        return;
      }
      if (step === 'resume' && !run.own) {
        offerResume(run, stored);
        return;
      }
    }
    schedulePoll(run);
  }

  function show(run, stored) {
    run.stored = stored;
    if (!stored.dryRun && (stored.counts?.written ?? 0) > 0) run.written = true;
    renderRun(run, stored);
  }

  async function finish(run, stored, report) {
    run.finished = true;
    stopPolling();
    show(run, stored);
    let full = report;
    if (!full) {
      try {
        full = (await api.call('GET', `/migrate/${run.runId}/report`, { timeoutMs: 60000 })).body;
      } catch (error) {
        sayError(error, true);
      }
    }
    if (panel.current !== run) return;
    renderRun(run, stored, full);
    const counts = stored.counts ?? {};
    if (stored.dryRun) {
      if (run.inputs) panel.dryRun = { inputs: run.inputs, runId: run.runId, failed: counts.failed ?? 0 };
      say('ok', `Dry run done: ${formatCount(counts.written ?? 0)} records would be written, `
        + `${formatCount(counts.failed ?? 0)} would fail. Nothing was written.`,
      run.inputs ? 'Check the account below, then Migrate.' : 'Choose the file again to migrate it.');
    } else {
      const changed = (counts.written ?? 0) + (counts.deleted ?? 0);
      let refreshed = '';
      if (changed > 0 && client.collections.includes(stored.collection)) {
        await client.reload(stored.collection).catch(() => {});
        refreshed = ` The ${stored.collection} table was reloaded.`;
      }
      say(counts.failed ? 'warn' : 'ok', `Migration done: ${formatCount(counts.written ?? 0)} `
        + `written, ${formatCount(counts.unchanged ?? 0)} unchanged, ${formatCount(counts.failed ?? 0)} `
        + `failed.${refreshed}`, counts.failed ? 'The failed records are listed below with their '
        + 'reasons; fix them in the file and migrate it again (written records stay unchanged).' : '');
      panel.dryRun = null;
    }
    refreshButtons();
    loadRecent();
  }

  // --- resuming ---
  function offerResume(run, stored) {
    run.finished = true;
    const gcs = String(stored.source ?? '').startsWith('gs://');
    const why = stored.stalled ? 'stopped: the process running it is gone (its lease expired)'
      : stored.state === 'paused' ? 'paused at the function’s time budget'
        : `stopped: ${stored.error?.message ?? 'failed'}`;
    say('warn', `Run ${stored.runId} ${why}. ${formatCount(stored.counts?.read ?? 0)} of `
      + `${formatCount(stored.total ?? 0)} records are done and kept.`,
    gcs ? 'Resume continues it.' : `Choose the same file (${stored.source}) above, then Resume.`);
    const button = h('button', { type: 'button', class: 'primary', id: 'migration-resume', text: 'Resume' });
    button.addEventListener('click', () => resume(stored, button));
    runCard.querySelector('.run-actions').prepend(button);
  }

  async function resume(stored, button) {
    const gcsUri = String(stored.source ?? '').startsWith('gs://') ? stored.source : null;
    const source = gcsUri ? { kind: 'gcs', uri: gcsUri } : readInputs().source;
    const problem = sourceProblem(source, panel.limits.maxBodyBytes);
    if (problem) {
      say('error', source.kind === 'file' && !source.file
        ? `Choose the file this run started with (${stored.source}), then Resume.` : problem,
      'Nothing was sent.');
      return;
    }
    button.remove();
    const run = {
      runId: stored.runId, own: true, written: true, dryRun: Boolean(stored.dryRun),
      inputs: { collection: stored.collection, mode: stored.mode, source },
    };
    follow(run);
    await post(run);
  }

  // --- rendering ---
  function renderRun(run, stored, report = null) {
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
    runCard.replaceChildren(head, h('div', { class: 'run-body' }, ...parts));
  }

  function accountTable(stored) {
    return h('table', { class: 'account', id: 'migration-account' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Outcome' }), h('th', { class: 'num', text: 'Records' }), h('th', { text: 'Meaning' }))),
      h('tbody', {}, accountRows(stored).map(([name, count, meaning]) => h('tr', { 'data-outcome': name },
        h('td', { text: name }), h('td', { class: 'num', text: formatCount(count) }), h('td', { class: 'muted', text: meaning })))));
  }

  function reasonsTable(report) {
    const failures = report.failures ?? [];
    const skipped = report.skipped ?? [];
    const rows = [...failures, ...skipped].sort((a, b) => a.index - b.index);
    const shown = rows.slice(0, REASON_ROWS_SHOWN);
    const caption = rows.length === 0 ? 'No record failed or was skipped.'
      : `${formatCount(rows.length)} records not written${rows.length > shown.length ? ` (the first ${REASON_ROWS_SHOWN} shown; the report has all)` : ''}:`;
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

  function sampleBlock(stored) {
    return h('details', { class: 'sample', id: 'migration-sample', open: true },
      h('summary', { text: `A sample of the converted documents (${stored.sample.length}), as they `
        + `${stored.dryRun ? 'would be' : 'were'} stored (createdAt and updatedAt are set when written)` }),
      h('pre', { class: 'mono', text: JSON.stringify(stored.sample, null, 2) }));
  }

  function downloadLink(runId, report) {
    const blob = new Blob([JSON.stringify(report, null, 2)], { type: 'application/json' });
    return h('a', { class: 'button', id: 'migration-download', href: URL.createObjectURL(blob),
      download: `migration-${runId}.report.json`, text: 'Download the report (JSON)' });
  }

  // --- recent runs, and who may migrate ---
  async function loadRecent() {
    try {
      const { body } = await api.call('GET', '/migrate/runs', { query: { limit: 5 } });
      panel.admin = true;
      panel.limits.maxBodyBytes = body.maxBodyBytes;
      ui.limit.textContent = `at most ${formatBytes(body.maxBodyBytes)}`;
      renderRecent(body.runs);
      if (ui.message.dataset.kind === 'access') say('', '');
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        panel.admin = false;
        const { what, todo } = explain(error);
        say('access', what, todo);
        ui.message.dataset.kind = 'access';
      }
      recentCard.replaceChildren(h('div', { class: 'card-head' }, h('h2', { text: 'Recent runs' })),
        h('p', { class: 'muted pad', text: explain(error, { url: api.url('/migrate/runs') }).what }));
    }
    refreshButtons();
  }

  function renderRecent(runs) {
    const list = h('ul', { class: 'recent-runs' }, runs.map((run) => {
      const link = h('a', { href: `#migrate/${run.runId}`, class: 'mono', text: run.runId });
      const state = run.stalled ? 'stalled' : run.state;
      return h('li', {}, link, ' ', h('span', { class: `pill run-state state-${state}`, text: state }),
        h('span', { class: 'muted', text: ` ${run.collection}${run.dryRun ? ' · dry run' : ''} · `
          + `${formatCount(run.counts?.written ?? 0)} written, ${formatCount(run.counts?.failed ?? 0)} failed of `
          + `${formatCount(run.total ?? 0)}` }));
    }));
    recentCard.replaceChildren(h('div', { class: 'card-head' }, h('h2', { text: 'Recent runs' })),
      runs.length ? list : h('p', { class: 'muted pad', text: 'No migration has run yet.' }));
  }

  // --- the URL ---
  async function openFromUrl() {
    const runId = runIdFromHash(loc.hash);
    if (!runId || panel.current?.runId === runId) return;
    const run = { runId, own: false, written: false };
    follow(run);
    say('info', `Following run ${runId}…`);
    poll(run);
  }

  window.addEventListener('hashchange', openFromUrl);
  loadRecent();
  openFromUrl();
  refreshButtons();
  return { refresh: loadRecent, get current() { return panel.current; } };
}

function buildForm(collections) {
  const file = h('input', { type: 'file', id: 'migration-file', name: 'file', accept: '.json,application/json' });
  const gcs = h('input', { type: 'text', id: 'migration-gcs', name: 'gcs', placeholder: 'gs://bucket/legacy/users.json', disabled: true });
  const collection = h('select', { id: 'migration-collection', name: 'collection' },
    collections.map((name) => h('option', { value: name, text: name })));
  const mode = h('select', { id: 'migration-mode', name: 'mode' },
    Object.entries(MODES).map(([value, text]) => h('option', { value, text })));
  const dry = h('button', { type: 'button', class: 'primary', id: 'migration-dry-run', text: 'Dry run' });
  const migrate = h('button', { type: 'button', id: 'migration-start', text: 'Migrate', disabled: true });
  const message = h('div', { class: 'admin-message', id: 'migration-message', role: 'alert', hidden: true });
  const limit = h('span', { class: 'hint', text: '' });
  const radio = (value, label, checked) => h('label', { class: 'choice' },
    h('input', { type: 'radio', name: 'source-kind', value, checked }), ` ${label}`);
  const form = h('form', { id: 'migration-form', novalidate: true },
    h('fieldset', { class: 'source-set' }, h('legend', { text: 'Legacy JSON' }),
      h('div', { class: 'source-row' }, radio('file', 'A file from this computer', true), file, limit),
      h('div', { class: 'source-row' }, radio('gcs', 'A Cloud Storage object', false), gcs)),
    h('div', { class: 'row' },
      h('div', { class: 'field' }, h('label', { for: 'migration-collection', text: 'Collection' }), collection),
      h('div', { class: 'field' }, h('label', { for: 'migration-mode', text: 'Mode' }), mode)),
    message,
    h('div', { class: 'form-actions' }, dry, migrate));
  const card = h('section', { class: 'card admin-card', id: 'migration-card' },
    h('div', { class: 'card-head' }, h('h2', { text: 'Migrate legacy JSON into Firestore' }),
      h('span', { class: 'muted', text: 'a dry run first: it shows the account before anything is written' })),
    form);
  return { card, form, file, gcs, collection, mode, dry, migrate, message, limit };
}
