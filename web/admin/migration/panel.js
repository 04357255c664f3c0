/**
 * admin/migration/panel.js: one-click migration of a legacy JSON file from the dashboard
 * (admins), in the `#migrate` tab.
 *
 * The admin picks a file from the computer (sent as the request body, at most the function's
 * MAX_BODY_BYTES) or names a gs:// object, the collection and the mode (source-form.js), runs a
 * dry run (the account before anything is written: outcomes, every failed record with its
 * index, id and reason, a sample of converted documents; run-card.js, report.js), then Migrate.
 *
 * `POST /migrate` answers only when the run ends (or pauses at the function's time budget),
 * so the panel picks the runId itself (run.js), puts it in the URL (`#migrate/<runId>`), POSTs,
 * and polls `GET /migrate/<runId>` meanwhile for the progress bar (404 until the file is
 * scanned). A 202 (paused) is POSTed again at once while this tab still holds the source. After
 * a reload the panel reads the run from the URL and follows it; a run that paused or stopped
 * resumes with Resume (for an uploaded file, after choosing the same file again: the function
 * checks its fingerprint). At the end: the report (downloadable as JSON), and the collection's
 * table reloads by itself. Recent runs are listed below (admin/runs-list.js).
 */

import { h } from '../../ui/dom.js';
import { explain } from '../../ui/explain.js';
import { countOf, formatBytes, formatCount } from '../../ui/format.js';
import { runsList } from '../runs-list.js';
import { renderRunCard } from './run-card.js';
import { newRunId, nextStep, runIdFromHash } from './run.js';
import {
  buildForm, readInputs, sameInputs, sourceKind, sourceProblem,
} from './source-form.js';

export const POLL_MS = 1000;
export const POST_TIMEOUT_MS = 65 * 60 * 1000; // over a function's longest timeout (60 min)
const REPORT_TIMEOUT_MS = 60 * 1000;

/** The query of `POST /migrate` for a run of this tab. */
function runQuery(run) {
  return {
    collection: run.inputs.collection, mode: run.inputs.mode, runId: run.runId,
    dryRun: run.dryRun ? 'true' : undefined, force: run.force ? 'true' : undefined,
    source: run.inputs.source.kind === 'gcs' ? run.inputs.source.uri : undefined,
  };
}

/**
 * Build the panel in `root` and follow `#migrate/<runId>`.
 * @param {HTMLElement} root
 * @param {{ api: ReturnType<import('../api.js').createAdminApi>,
 *   client: import('../../data-client.js').DataClient, collections: string[],
 *   location?: Location, history?: History }} options
 */
export function mountMigrationPanel(root, options) {
  const panel = new MigrationPanel(root, options);
  return { refresh: () => panel.loadRecent(), get current() { return panel.current; } };
}

class MigrationPanel {
  constructor(root, options) {
    this.api = options.api;
    this.client = options.client;
    this.location = options.location ?? window.location;
    this.history = options.history ?? window.history;
    this.ui = buildForm(options.collections);
    this.runCard = h('section', { class: 'card admin-card', id: 'migration-run', hidden: true });
    this.recentCard = h('section', { class: 'card admin-card', id: 'migration-recent' });
    root.replaceChildren(h('div', { class: 'admin-grid' }, this.ui.card, this.runCard, this.recentCard));
    this.maxBodyBytes = null;
    this.admin = null; // true / false once GET /migrate/runs answered
    this.dryRun = null; // { inputs, runId, failed } of the last completed dry run
    this.current = null; // the run this panel shows: { runId, inputs?, own, written, ... }
    this.pollTimer = null;

    const { ui } = this;
    ui.form.addEventListener('input', () => this.refreshButtons());
    ui.form.addEventListener('change', () => this.refreshButtons());
    ui.form.addEventListener('submit', (event) => event.preventDefault());
    ui.dry.addEventListener('click', () => this.start(true));
    ui.migrate.addEventListener('click', () => this.start(false));
    window.addEventListener('hashchange', () => this.openFromUrl());
    this.loadRecent();
    this.openFromUrl();
    this.refreshButtons();
  }

  // --- messages and buttons ---

  say(kind, what, todo = '') {
    const { message } = this.ui;
    message.hidden = !what;
    message.dataset.kind = kind;
    message.replaceChildren(h('strong', { text: what }), todo ? h('span', { text: ` ${todo}` }) : '');
  }

  sayError(error, written) {
    const { what, todo } = explain(error, { url: this.api.url('/migrate'), written });
    this.say('error', what, todo);
  }

  refreshButtons() {
    const { ui } = this;
    const busy = Boolean(this.current?.own && !this.current.finished);
    const admin = this.admin !== false;
    ui.dry.disabled = busy || !admin;
    const vouched = this.dryRun && sameInputs(this.dryRun.inputs, readInputs(ui));
    ui.migrate.disabled = busy || !admin || !vouched;
    ui.migrate.title = vouched ? '' : 'Run a dry run of this file, collection and mode first';
    const failed = vouched ? this.dryRun.failed : 0;
    ui.migrate.textContent = failed ? `Migrate (${countOf(failed, 'record')} will fail)` : 'Migrate';
    const gcs = sourceKind(ui) === 'gcs';
    ui.file.disabled = gcs;
    ui.gcs.disabled = !gcs;
  }

  // --- starting a run from this tab ---

  async start(dryRun) {
    const inputs = readInputs(this.ui);
    const problem = sourceProblem(inputs.source, this.maxBodyBytes);
    if (problem) {
      this.say('error', problem, 'Nothing was sent.');
      return;
    }
    const runId = newRunId();
    this.follow({ runId, inputs, dryRun, own: true, written: false });
    this.history.replaceState(null, '', `#migrate/${runId}`);
    await this.post(this.current);
  }

  /** POST until the run is no longer paused; the answer is shown, errors explained. */
  async post(run) {
    this.refreshButtons();
    this.say('info', run.dryRun ? 'Dry run: reading and checking every record…'
      : 'Migrating: reading the file, then writing…');
    this.schedulePoll(run, 0);
    try {
      for (;;) {
        const body = run.inputs.source.kind === 'file' ? run.inputs.source.file : undefined;
        const answer = await this.api.call('POST', '/migrate', { query: runQuery(run), body,
          timeoutMs: POST_TIMEOUT_MS });
        if (this.current !== run) return;
        if (answer.status === 202) {
          run.written = true;
          this.say('info', 'The function paused at its time budget: continuing the same run…');
          continue;
        }
        await this.finish(run, answer.body.run, answer.body.report ?? null);
        return;
      }
    } catch (error) {
      if (this.current === run) await this.postFailed(run, error);
    }
  }

  async postFailed(run, error) {
    if (error.code === 'run_in_progress') { // someone else holds it: follow it instead
      run.own = false;
      this.sayError(error, true);
      this.schedulePoll(run);
      return;
    }
    run.finished = true;
    this.stopPolling();
    const stored = await this.readRun(run.runId).catch(() => null);
    if (stored) this.show(run, stored);
    else if (!run.stored) this.forget(run);
    const seen = stored ?? run.stored ?? null;
    this.sayError(error, Boolean(seen && !seen.dryRun && (seen.counts?.written ?? 0) > 0));
    this.refreshButtons();
  }

  /** A run refused before it began (an invalid file, a 403): it never existed, so neither its
   * card nor its id in the URL stays (a reload would look for it). */
  forget(run) {
    if (this.current === run) this.current = null;
    this.runCard.hidden = true;
    this.runCard.replaceChildren();
    if (this.location.hash === `#migrate/${run.runId}`) this.history.replaceState(null, '', '#migrate');
  }

  // --- following a run (this tab's, or one named by the URL) ---

  follow(run) {
    this.stopPolling();
    this.current = run;
    this.runCard.hidden = false;
    renderRunCard(this.runCard, run, null);
  }

  async readRun(runId) {
    try {
      return (await this.api.call('GET', `/migrate/${runId}`)).body;
    } catch (error) {
      if (error.status === 404) return null;
      throw error;
    }
  }

  schedulePoll(run, delay = POLL_MS) {
    this.stopPolling();
    this.pollTimer = setTimeout(() => this.poll(run), delay);
  }

  stopPolling() {
    clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  async poll(run) {
    if (this.current !== run || run.finished) return;
    let stored;
    try {
      stored = await this.readRun(run.runId);
    } catch (error) {
      if (this.current !== run) return;
      const { what } = explain(error, { url: this.api.url(`/migrate/${run.runId}`) });
      const line = this.runCard.querySelector('.run-progress');
      if (line) line.textContent = `Progress unavailable for now: ${what} Retrying…`;
      this.schedulePoll(run, POLL_MS * 3);
      return;
    }
    if (this.current !== run || run.finished) return;
    if (stored === null && !run.own) {
      this.say('error', `There is no migration run ${run.runId}.`, 'It may never have started (the '
        + 'file was refused before anything was written). Start a new run.');
      run.finished = true;
      return;
    }
    if (stored) {
      this.show(run, stored);
      if (run.own && stored.state === 'running') {
        this.say('info', `${stored.dryRun ? 'Dry run: checking' : 'Migrating: writing'} `
          + `${stored.collection}; the progress below is read from the run document every second.`);
      }
      const step = nextStep(stored);
      if (step === 'done' && !run.own) {
        await this.finish(run, stored, null);
        return;
      }
      if (step === 'resume' && !run.own) {
        this.offerResume(run, stored);
        return;
      }
    }
    this.schedulePoll(run);
  }

  show(run, stored) {
    run.stored = stored;
    if (!stored.dryRun && (stored.counts?.written ?? 0) > 0) run.written = true;
    renderRunCard(this.runCard, run, stored);
  }

  /** The run ended: its report, what it did in a sentence, the table reloaded, recent runs. */
  async finish(run, stored, report) {
    run.finished = true;
    this.stopPolling();
    this.show(run, stored);
    let full = report;
    if (!full) {
      try {
        full = (await this.api.call('GET', `/migrate/${run.runId}/report`,
          { timeoutMs: REPORT_TIMEOUT_MS })).body;
      } catch (error) {
        this.sayError(error, true);
      }
    }
    if (this.current !== run) return;
    renderRunCard(this.runCard, run, stored, full);
    const counts = stored.counts ?? {};
    if (stored.dryRun) {
      if (run.inputs) this.dryRun = { inputs: run.inputs, runId: run.runId, failed: counts.failed ?? 0 };
      this.say('ok', `Dry run done: ${countOf(counts.written ?? 0, 'record')} would be written, `
        + `${formatCount(counts.failed ?? 0)} would fail. Nothing was written.`,
      run.inputs ? 'Check the account below, then Migrate.' : 'Choose the file again to migrate it.');
    } else {
      const refreshed = await this.reloadTable(stored);
      this.say(counts.failed ? 'warn' : 'ok', `Migration done: ${formatCount(counts.written ?? 0)} `
        + `written, ${formatCount(counts.unchanged ?? 0)} unchanged, ${formatCount(counts.failed ?? 0)} `
        + `failed.${refreshed}`, counts.failed ? 'The failed records are listed below with their '
        + 'reasons; fix them in the file and migrate it again (written records stay unchanged).' : '');
      this.dryRun = null;
    }
    this.refreshButtons();
    this.loadRecent();
  }

  /** Reload the migrated collection's table when the run changed it; a sentence that says so. */
  async reloadTable(stored) {
    const counts = stored.counts ?? {};
    if ((counts.written ?? 0) + (counts.deleted ?? 0) === 0
        || !this.client.collections.includes(stored.collection)) return '';
    await this.client.reload(stored.collection).catch(() => {});
    return ` The ${stored.collection} table was reloaded.`;
  }

  // --- resuming ---

  offerResume(run, stored) {
    run.finished = true;
    const gcs = String(stored.source ?? '').startsWith('gs://');
    const why = stored.stalled ? 'stopped: the process running it is gone (its lease expired)'
      : stored.state === 'paused' ? 'paused at the function’s time budget'
        : `stopped: ${stored.error?.message ?? 'failed'}`;
    this.say('warn', `Run ${stored.runId} ${why}. ${formatCount(stored.counts?.read ?? 0)} of `
      + `${countOf(stored.total ?? 0, 'record')} are done and kept.`,
    gcs ? 'Resume continues it.' : `Choose the same file (${stored.source}) above, then Resume.`);
    const button = h('button', { type: 'button', class: 'primary', id: 'migration-resume', text: 'Resume' });
    button.addEventListener('click', () => this.resume(stored, button));
    this.runCard.querySelector('.run-actions').prepend(button);
  }

  async resume(stored, button) {
    const gcsUri = String(stored.source ?? '').startsWith('gs://') ? stored.source : null;
    const source = gcsUri ? { kind: 'gcs', uri: gcsUri } : readInputs(this.ui).source;
    const problem = sourceProblem(source, this.maxBodyBytes);
    if (problem) {
      this.say('error', source.kind === 'file' && !source.file
        ? `Choose the file this run started with (${stored.source}), then Resume.` : problem,
      'Nothing was sent.');
      return;
    }
    button.remove();
    const run = {
      runId: stored.runId, own: true, written: true, dryRun: Boolean(stored.dryRun),
      inputs: { collection: stored.collection, mode: stored.mode, source },
    };
    this.follow(run);
    await this.post(run);
  }

  // --- recent runs, and who may migrate ---

  async loadRecent() {
    const { ui } = this;
    try {
      const { body } = await this.api.call('GET', '/migrate/runs', { query: { limit: 5 } });
      this.admin = true;
      this.maxBodyBytes = body.maxBodyBytes;
      ui.limit.textContent = `at most ${formatBytes(body.maxBodyBytes)}`;
      this.showRecent(body.runs.length ? runsList(body.runs)
        : h('p', { class: 'muted pad', text: 'No migration has run yet.' }));
      if (ui.message.dataset.kind === 'access') this.say('', '');
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        this.admin = false;
        const { what, todo } = explain(error);
        this.say('access', what, todo);
      }
      this.showRecent(h('p', { class: 'muted pad',
        text: explain(error, { url: this.api.url('/migrate/runs') }).what }));
    }
    this.refreshButtons();
  }

  showRecent(content) {
    this.recentCard.replaceChildren(h('div', { class: 'card-head' }, h('h2', { text: 'Recent runs' })),
      content);
  }

  // --- the URL ---

  openFromUrl() {
    const runId = runIdFromHash(this.location.hash);
    if (!runId || this.current?.runId === runId) return;
    const run = { runId, own: false, written: false };
    this.follow(run);
    this.say('info', `Following run ${runId}…`);
    this.poll(run);
  }
}
