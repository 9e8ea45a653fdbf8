// agentrl dashboard: runs, live curves, per-opponent × episode tables and the trajectory viewer.
// Plain ES modules (preact + htm, uPlot), served by src/dashboard/server.ts from node_modules: no build step.
import { h, render } from 'preact';
import { useEffect, useMemo, useRef, useState, useCallback } from 'preact/hooks';
import htm from 'htm';
import uPlot from 'uplot';

const html = htm.bind(h);
const SOURCES = ['prompt', 'model', 'tool', 'env'];
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];

async function getJson(path) {
  const r = await fetch(path, { headers: { Accept: 'application/json' } });
  const body = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(body.error ?? `${r.status} ${r.statusText}`);
  return body;
}

const q = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null)).toString();

/** Poll `fn` every `ms` while mounted (and once at once); `deps` restart it. */
function usePoll(fn, ms, deps) {
  useEffect(() => {
    let stop = false;
    let timer;
    const tick = async () => {
      try {
        await fn(() => stop);
      } finally {
        if (!stop) timer = setTimeout(tick, ms);
      }
    };
    tick();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, deps);
}

// ── location: #run=ID&tab=curves&traj=STEP.INDEX ──────────────────────────────────────────────
function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  return { run: p.get('run'), tab: p.get('tab') ?? 'curves', traj: p.get('traj') };
}
function useHash() {
  const [state, setState] = useState(readHash());
  useEffect(() => {
    const on = () => setState(readHash());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  const go = useCallback((patch) => {
    const next = { ...readHash(), ...patch };
    location.hash = q(Object.fromEntries(Object.entries(next).filter(([, v]) => v)));
  }, []);
  return [state, go];
}

// ── numbers ─────────────────────────────────────────────────────────────────────────────────
const fmt = (x, d = 3) => (x === null || x === undefined || Number.isNaN(x) ? '–' : typeof x === 'number' ? (Number.isInteger(x) ? String(x) : x.toFixed(d)) : String(x));
const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
function histMean(hist) {
  if (!hist || typeof hist !== 'object') return null;
  let n = 0, s = 0;
  for (const [k, c] of Object.entries(hist)) { n += c; s += Number(k) * c; }
  return n ? s / n : null;
}
const num = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);
const perSecond = (a, secs) => (num(a) !== null && num(secs) ? a / secs : null);

function smooth(ys, alpha) {
  if (!alpha) return ys;
  let acc = null;
  return ys.map((y) => {
    if (y === null) return null;
    acc = acc === null ? y : alpha * acc + (1 - alpha) * y;
    return acc;
  });
}

/** The charts' series from metrics rows (x = the row's line = step). */
function chartSpecs(rows) {
  const x = rows.map((r) => r.line);
  const get = (f) => rows.map((r) => num(f(r.data)));
  const K = Math.max(0, ...rows.map((r) => (Array.isArray(r.data.episodeReward) ? r.data.episodeReward.length : 0)));
  const opponents = [...new Set(rows.flatMap((r) => Object.keys(r.data.byOpponent ?? {})))].sort();
  const reward = [{ label: 'trajectory reward', y: get((d) => d.meanReward) }];
  if (K > 1) {
    reward.push({ label: 'first-episode reward', y: get((d) => d.episodeReward?.[0]) });
    reward.push({ label: `final-episode reward (episode ${K})`, y: get((d) => d.episodeReward?.[K - 1]) });
  }
  const lastWin = (w) => (Array.isArray(w) && w.length ? w[w.length - 1] : null);
  const win = opponents.length
    ? opponents.map((o) => ({ label: o || '(none)', y: get((d) => lastWin(d.byOpponent?.[o]?.winRate)) }))
    : [{ label: 'all opponents', y: get((d) => lastWin(d.winRate)) }];
  return [
    { key: 'reward', title: 'Reward', series: reward },
    { key: 'winrate', title: opponents.length ? 'Win rate per opponent (final episode)' : 'Win rate (final episode; per opponent needs byOpponent in metrics.jsonl)', series: win },
    { key: 'loss', title: 'Loss', series: [{ label: 'loss', y: get((d) => d.loss) }] },
    { key: 'kl', title: 'KL / entropy', series: [{ label: 'kl', y: get((d) => d.kl) }, { label: 'entropy', y: get((d) => d.entropy) }] },
    { key: 'clip', title: 'Clip fraction', series: [{ label: 'clip fraction', y: get((d) => d.clipFrac) }, { label: 'max over minibatches', y: get((d) => d.clipFracMax) }] },
    { key: 'staleness', title: 'Staleness', series: [
      { label: 'groups (mean)', y: get((d) => histMean(d.staleness)) },
      { label: 'tokens (mean)', y: get((d) => histMean(d.tokenStaleness)) },
      { label: 'max', y: get((d) => d.maxStaleness) },
    ] },
    { key: 'samples', title: 'Samples / s', series: [{ label: 'samples/s', y: get((d) => d.samplesPerSecond) }] },
    { key: 'tokens', title: 'Tokens / s', series: [
      { label: 'processed tokens/s', y: get((d) => perSecond(d.processedTokens, d.seconds)) },
      { label: 'trained tokens/s', y: get((d) => perSecond(d.trainedTokens, d.seconds)) },
    ] },
  ].map((c) => ({ ...c, x }));
}

/** Legend values to `digits` significant digits (uPlot's default shows 3 decimals: a PBT lr of 0.0012 reads 0.001). */
const legendValue = (digits) => (u, v, si, idx) => (idx === null || idx === undefined ? '--' : v === null || v === undefined ? '' : String(Number(v.toPrecision(digits))));

// ── components ──────────────────────────────────────────────────────────────────────────────
function Chart({ spec, alpha }) {
  const el = useRef(null);
  const plot = useRef(null);
  // The plot is rebuilt when its series or its x axis change (a population run's rounds vs a normal run's steps).
  const plotKey = [spec.xLabel ?? 'step', ...spec.series.map((s) => s.label)].join('\u0000');
  const data = useMemo(() => [spec.x, ...spec.series.map((s) => smooth(s.y, alpha))], [spec, alpha]);
  useEffect(() => {
    const width = Math.max(280, el.current.clientWidth);
    const opts = {
      width, height: 200,
      // A flat series (e.g. staleness 0 in a synchronous run) gets a ±1 range, not uPlot's 0–100.
      scales: { x: { time: false }, y: { range: (u, min, max) => (min === max ? [min - 1, max + 1] : uPlot.rangeNum(min, max, 0.1, true)) } },
      // Whole steps on x; room for negative, long y labels (uPlot's default width cuts the sign off).
      axes: [{ label: spec.xLabel ?? 'step', incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000] }, { size: 64, ...(spec.digits ? { values: (u, splits) => splits.map((v) => String(Number(v.toPrecision(spec.digits)))) } : {}) }],
      legend: { live: true },
      series: [{ label: spec.xLabel ?? 'step' }, ...spec.series.map((s, i) => ({ label: s.label, stroke: COLORS[(s.color ?? i) % COLORS.length], dash: s.dash ? [5, 3] : undefined, value: spec.digits ? legendValue(spec.digits) : undefined, width: 1.5, spanGaps: true, points: { show: spec.x.length < 40 } }))],
    };
    plot.current = new uPlot(opts, data, el.current);
    const ro = new ResizeObserver(() => {
      if (plot.current && el.current) plot.current.setSize({ width: Math.max(280, el.current.clientWidth), height: 200 });
    });
    ro.observe(el.current);
    return () => {
      ro.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [plotKey]);
  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);
  const empty = spec.series.every((s) => s.y.every((y) => y === null));
  return html`<section class="chart" data-testid=${`chart-${spec.key}`} data-points=${spec.x.length}>
    <h3>${spec.title}${empty ? html` <small class="muted">(no data)</small>` : null}</h3>
    <div ref=${el}></div>
  </section>`;
}

function Curves({ rows, population }) {
  const [alpha, setAlpha] = useState(0);
  // A population run's charts (per member over rounds) come from the server (src/dashboard/population-series.ts).
  const specs = useMemo(() => (population ? population.charts.map((c) => ({ ...c, x: population.rounds, xLabel: population.xLabel, digits: 4 })) : chartSpecs(rows)), [rows, population]);
  return html`<div>
    <div class="toolbar">
      <span data-testid="metrics-count">${population ? `${population.rounds.length} rounds · ${population.members.length} members` : `${rows.length} steps`}</span>
      <label>smoothing <select value=${alpha} onChange=${(e) => setAlpha(Number(e.target.value))}>
        ${[0, 0.6, 0.9, 0.98].map((a) => html`<option value=${a}>${a === 0 ? 'none' : `EMA ${a}`}</option>`)}
      </select></label>
    </div>
    ${rows.length === 0 ? html`<p class="muted">No steps logged yet.</p>` : html`<div class="charts">${specs.map((s) => html`<${Chart} key=${s.key} spec=${s} alpha=${alpha} />`)}</div>`}
  </div>`;
}

function Warnings({ warnings }) {
  if (!warnings.length) return null;
  return html`<div class="warnings" data-testid="warnings" role="alert">
    <strong>${warnings.length} problem${warnings.length > 1 ? 's' : ''} with this run</strong>
    <ul>${warnings.map((w) => html`<li data-testid="warning"><code>${w.file}</code> ${w.message}</li>`)}</ul>
  </div>`;
}

/** Per-opponent × episode means over the last `n` rows (byOpponent), or all opponents together. */
function trainingTable(rows, n = 10) {
  const last = rows.slice(-n);
  const opps = [...new Set(last.flatMap((r) => Object.keys(r.data.byOpponent ?? {})))].sort();
  const pick = opps.length ? opps.map((o) => [o || '(none)', last.map((r) => r.data.byOpponent?.[o]).filter(Boolean)]) : [['all opponents', last.map((r) => r.data)]];
  const K = Math.max(0, ...last.map((r) => r.data.episodeReward?.length ?? 0));
  return {
    K, steps: last.length,
    rows: pick.map(([name, ds]) => ({
      name,
      reward: Array.from({ length: K }, (_, k) => mean(ds.map((d) => d.episodeReward?.[k]).filter((x) => num(x) !== null))),
      win: Array.from({ length: K }, (_, k) => mean(ds.map((d) => d.winRate?.[k]).filter((x) => num(x) !== null))),
    })),
  };
}

function Tables({ rows, population, detail }) {
  const t = useMemo(() => trainingTable(rows), [rows]);
  const ev = detail.eval;
  return html`<div>
    ${population ? html`<${PopulationTables} t=${population.table} members=${population.members} />` : html`
    <h3>Training: last ${t.steps} steps, mean reward (win rate) by opponent × episode</h3>
    ${t.K === 0 ? html`<p class="muted">No per-episode metrics (single-episode task or no steps yet).</p>` : html`
    <table class="grid" data-testid="training-table">
      <thead><tr><th>opponent</th>${Array.from({ length: t.K }, (_, k) => html`<th>episode ${k + 1}</th>`)}</tr></thead>
      <tbody>${t.rows.map((r) => html`<tr><td>${r.name}</td>${r.reward.map((x, k) => html`<td>${fmt(x)} <small class="muted">(${fmt(r.win[k], 2)})</small></td>`)}</tr>`)}</tbody>
    </table>`}`}
    <h3>Evaluation</h3>
    ${ev?.reports ? ev.reports.map((rep) => html`<${EvalReport} rep=${rep} />`) : null}
    ${ev?.toolEval ? html`<p data-testid="tool-eval">Held-out reward: untrained ${fmt(ev.toolEval.untrained)} → trained ${fmt(ev.toolEval.trained)}</p>` : null}
    ${!ev?.reports && detail.evalMarkdown ? html`<pre class="md">${detail.evalMarkdown}</pre>` : null}
    ${!ev ? html`<p class="muted">No eval.json yet (written when training finishes).</p>` : null}
  </div>`;
}

/** A population's last rounds: member × episode, and opponent × member win rates (metrics.jsonl's `opponents`). */
function PopulationTables({ t, members }) {
  const span = t.rounds.length ? `rounds ${t.rounds[0]}–${t.rounds[t.rounds.length - 1]}` : 'no rounds';
  const cell = (s) => html`<td title=${`${s.score} of ${s.trials} trials`}>${fmt(s.winRate, 3)} <small class="muted">(${s.trials})</small></td>`;
  return html`<div>
    <h3>Training: ${span}, mean reward (win rate) by member × episode</h3>
    ${t.episodes === 0 ? html`<p class="muted">No per-episode metrics.</p>` : html`
    <table class="grid" data-testid="population-episode-table">
      <thead><tr><th>member</th>${Array.from({ length: t.episodes }, (_, k) => html`<th>episode ${k + 1}</th>`)}</tr></thead>
      <tbody>${t.members.map((m) => html`<tr><td>${m.member}</td>${m.reward.map((x, k) => html`<td>${fmt(x)} <small class="muted">(${fmt(m.winRate[k], 2)})</small></td>`)}</tr>`)}</tbody>
    </table>`}
    <h3>Training: ${span}, win rate (trials) by opponent × member <small class="muted">(draw = ½)</small></h3>
    ${t.opponents.length === 0 ? html`<p class="muted">No per-opponent scores.</p>` : html`
    <table class="grid" data-testid="population-opponent-table">
      <thead><tr><th>opponent</th>${members.map((m) => html`<th>${m}</th>`)}<th>all members</th></tr></thead>
      <tbody>${t.opponents.map((o) => html`<tr><td>${o.opponent}</td>${o.byMember.map(cell)}${cell(o.all)}</tr>`)}</tbody>
    </table>`}
  </div>`;
}

function EvalReport({ rep }) {
  const K = Math.max(0, ...rep.opponents.map((o) => o.episodes.length));
  return html`<table class="grid" data-testid="eval-table">
    <caption>${rep.policy}</caption>
    <thead><tr><th>opponent</th>${Array.from({ length: K }, (_, k) => html`<th>episode ${k + 1}</th>`)}</tr></thead>
    <tbody>${rep.opponents.map((o) => html`<tr><td>${o.opponent}</td>${o.episodes.map((e) => html`<td title=${`n = ${e.n}, win ${fmt(e.winRate, 3)}`}>${fmt(e.meanReturn)} <small class="muted">± ${fmt(e.seReturn, 3)}</small></td>`)}</tr>`)}</tbody>
  </table>`;
}

// ── trajectories ────────────────────────────────────────────────────────────────────────────
function TrajectoryList({ runId, onOpen, selected }) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [f, setF] = useState({ opponent: '', minReward: '', maxReward: '', maxStaleness: '', step: '' });
  usePoll(async (stopped) => {
    try {
      const d = await getJson(`api/trajectories?${q({ run: runId })}`);
      if (!stopped()) { setData(d); setError(null); }
    } catch (e) {
      if (!stopped()) setError(e.message);
    }
  }, 3000, [runId]);
  if (error) return html`<p class="error">${error}</p>`;
  if (!data) return html`<p class="muted">Loading…</p>`;
  // Newest steps first: a live run's latest behaviour is what one usually wants.
  const all = [...data.files].reverse().flatMap((file) => file.trajectories);
  if (all.length === 0) return html`<p class="muted">No trajectories logged (set <code>log.trajectories.every</code> in the run config; they are written to <code>trajectories/</code>).</p>`;
  const opponents = [...new Set(all.map((t) => t.opponent))].sort();
  const steps = data.files.map((file) => file.step).reverse();
  const n = (s) => (s === '' ? null : Number(s));
  const shown = all.filter((t) =>
    (f.opponent === '' || t.opponent === f.opponent) && (f.step === '' || t.step === Number(f.step)) &&
    (n(f.minReward) === null || t.reward >= n(f.minReward)) && (n(f.maxReward) === null || t.reward <= n(f.maxReward)) &&
    (n(f.maxStaleness) === null || (t.staleness ?? 0) <= n(f.maxStaleness)));
  const set = (k) => (e) => setF({ ...f, [k]: e.target.value });
  return html`<div>
    <div class="toolbar filters" data-testid="trajectory-filters">
      <label>step <select data-testid="filter-step" value=${f.step} onChange=${set('step')}><option value="">all</option>${steps.map((s) => html`<option value=${s}>${s}</option>`)}</select></label>
      <label>opponent <select data-testid="filter-opponent" value=${f.opponent} onChange=${set('opponent')}><option value="">all</option>${opponents.map((o) => html`<option value=${o}>${o || '(none)'}</option>`)}</select></label>
      <label>reward ≥ <input type="number" step="any" data-testid="filter-min-reward" value=${f.minReward} onInput=${set('minReward')} /></label>
      <label>≤ <input type="number" step="any" value=${f.maxReward} onInput=${set('maxReward')} /></label>
      <label>staleness ≤ <input type="number" min="0" step="1" data-testid="filter-staleness" value=${f.maxStaleness} onInput=${set('maxStaleness')} /></label>
      <span class="muted">${shown.length} of ${all.length}</span>
    </div>
    <div class="scroll">
    <table class="grid list" data-testid="trajectory-list">
      <thead><tr><th>step</th><th>#</th><th>opponent</th><th>reward</th><th>episodes</th><th>samples</th><th>tokens</th><th>versions</th><th>staleness</th></tr></thead>
      <tbody>${shown.map((t) => html`<tr data-testid="trajectory-row" data-step=${t.step} data-index=${t.index}
          class=${selected === `${t.step}.${t.index}` ? 'selected' : ''} onClick=${() => onOpen(`${t.step}.${t.index}`)}>
        <td>${t.step}</td><td>${t.index}</td><td>${t.opponent || '–'}</td><td>${fmt(t.reward)}</td>
        <td>${t.episodes.map((e) => html`<span class=${`ep ${e.won ? 'won' : ''}`}>${fmt(e.reward, 2)}</span>`)}</td>
        <td>${t.samples}</td><td>${t.tokens}${t.droppedTokens ? html` <small class="warn">(−${t.droppedTokens})</small>` : null}</td>
        <td>${t.minVersion === null ? '–' : t.minVersion === t.maxVersion ? t.minVersion : `${t.minVersion}–${t.maxVersion}`}</td><td>${fmt(t.staleness)}</td>
      </tr>`)}</tbody>
    </table></div>
  </div>`;
}

const SAMPLE_PAGE = 20;
const TOKEN_PAGE = 1000;

function tokenText(s) {
  if (s === '') return '∅';
  return s.replace(/ /g, '·').replace(/\n/g, '↵').replace(/\t/g, '→');
}

function chipStyle(mode, tok, trainerVersion, maxVersion) {
  if (tok.source !== 1) return undefined;
  if (mode === 'logprob') {
    const p = Math.exp(tok.logprob);
    return `background: hsl(${Math.round(120 * p)}, 75%, ${Math.round(88 - 18 * (1 - p))}%)`;
  }
  if (mode === 'version') {
    const ref = trainerVersion ?? maxVersion ?? tok.version;
    const stale = Math.max(0, ref - tok.version);
    return `background: hsl(${Math.max(0, 210 - 50 * stale)}, 70%, ${stale ? 78 : 85}%)`;
  }
  return undefined;
}

function TokenInspector({ tok, pinned }) {
  if (!tok) return html`<div class="inspector muted" data-testid="token-inspector">Hover a token (click to pin it) to see its id, logprob and version.</div>`;
  const row = (label, id, v) => html`<div><span class="k">${label}</span> <span data-testid=${id}>${v}</span></div>`;
  return html`<div class="inspector" data-testid="token-inspector" data-pinned=${pinned ? '1' : '0'}>
    ${row('text', 'tok-text', JSON.stringify(tok.text))}
    ${row('id', 'tok-id', tok.id)}
    ${row('source', 'tok-source', SOURCES[tok.source] ?? tok.source)}
    ${row('logprob', 'tok-logprob', tok.source === 1 ? String(tok.logprob) : '– (not sampled)')}
    ${row('prob', 'tok-prob', tok.source === 1 ? Math.exp(tok.logprob).toFixed(4) : '–')}
    ${row('version', 'tok-version', String(tok.version))}
    ${row('staleness', 'tok-staleness', tok.staleness === null ? '–' : String(tok.staleness))}
    ${row('loss mask', 'tok-mask', String(tok.mask))}
    ${row('advantage', 'tok-advantage', tok.mask ? fmt(tok.advantage, 4) : '– (not trained)')}
    ${row('position', 'tok-position', `sample ${tok.sample}, token ${tok.pos}`)}
    ${pinned ? html`<div class="muted">pinned: click another token, or this one to unpin</div>` : null}
  </div>`;
}

function sampleTitle(s) {
  const st = s.step;
  if (!st) return `sample ${s.index}`;
  if (st.kind === 'reflection') return `episode ${st.episode + 1} · reflection`;
  if (st.kind === 'play') return `episode ${st.episode + 1} · turn ${st.turn + 1}${st.valid ? '' : ' · invalid'}`;
  return `turn ${s.index + 1}${st.valid === false ? ' · invalid' : ''}`;
}

function TrajectoryViewer({ runId, traj, onClose }) {
  const [step, index] = traj.split('.').map(Number);
  const [t, setT] = useState(null);
  const [error, setError] = useState(null);
  const [mode, setMode] = useState('source');
  const [episode, setEpisode] = useState('');
  const [hover, setHover] = useState(null);
  const [pinned, setPinned] = useState(null);
  const base = { run: runId, step, index };
  useEffect(() => {
    setT(null); setError(null); setPinned(null); setHover(null);
    getJson(`api/trajectory?${q({ ...base, sampleLimit: SAMPLE_PAGE, tokenLimit: TOKEN_PAGE })}`).then(setT, (e) => setError(e.message));
  }, [runId, traj]);
  if (error) return html`<div class="viewer" data-testid="trajectory-viewer"><p class="error">${error}</p></div>`;
  if (!t) return html`<div class="viewer" data-testid="trajectory-viewer"><p class="muted">Loading trajectory…</p></div>`;

  const moreSamples = async () => {
    const next = await getJson(`api/trajectory?${q({ ...base, sampleOffset: t.sampleOffset + t.samples.length, sampleLimit: SAMPLE_PAGE, tokenLimit: TOKEN_PAGE })}`);
    setT({ ...t, samples: [...t.samples, ...next.samples] });
  };
  const moreTokens = async (i) => {
    const s = t.samples[i];
    const next = await getJson(`api/trajectory?${q({ ...base, sampleOffset: s.index, sampleLimit: 1, tokenOffset: s.tokenOffset + s.tokens.ids.length, tokenLimit: TOKEN_PAGE })}`);
    const n = next.samples[0];
    const cat = (k) => [...s.tokens[k], ...n.tokens[k]];
    const adv = Array.isArray(s.advantage) ? [...s.advantage, ...n.advantage] : s.advantage;
    const samples = [...t.samples];
    samples[i] = { ...s, advantage: adv, tokens: { ids: cat('ids'), text: cat('text'), logprobs: cat('logprobs'), versions: cat('versions'), mask: cat('mask'), source: cat('source') } };
    setT({ ...t, samples });
  };
  const maxVersion = Math.max(-1, ...t.samples.flatMap((s) => s.tokens.versions));
  const tokAt = (s, j) => ({
    sample: s.index, pos: s.tokenOffset + j, id: s.tokens.ids[j], text: s.tokens.text[j], logprob: s.tokens.logprobs[j],
    version: s.tokens.versions[j], mask: s.tokens.mask[j], source: s.tokens.source[j],
    advantage: Array.isArray(s.advantage) ? s.advantage[j] : s.advantage,
    staleness: s.tokens.source[j] === 1 && t.trainerVersion !== null ? t.trainerVersion - s.tokens.versions[j] : null,
  });
  const episodes = t.episodes ?? [];
  const visible = t.samples.filter((s) => episode === '' || s.step?.episode === Number(episode));
  const shown = pinned ?? hover;
  const key = (s, j) => `${s.index}:${j}`;
  return html`<div class="viewer" data-testid="trajectory-viewer">
    <div class="viewer-head">
      <h3>Trajectory <code>${t.id}</code> · step ${t.step} · #${t.batchIndex}</h3>
      <button onClick=${onClose}>close</button>
    </div>
    <div class="facts">
      <span>opponent <b>${t.opponent || '–'}</b></span>
      <span>reward <b data-testid="traj-reward">${fmt(t.reward)}</b></span>
      <span>trainer version <b>${fmt(t.trainerVersion)}</b></span>
      <span>${t.sampleTotal} sample${t.sampleTotal === 1 ? '' : 's'}, ${t.totalTokens} tokens</span>
      ${episodes.length ? html`<span>episodes ${episodes.map((e, k) => html`<span class=${`ep ${e.won ? 'won' : ''}`} title=${`seat ${e.seat || '–'}${e.done ? '' : ', cut by the turn cap'}`}>${k + 1}: ${fmt(e.reward, 2)}${e.won ? ' ✓' : ''}</span>`)}</span>` : null}
    </div>
    ${t.notes.length ? html`<div class="notes" data-testid="trajectory-notes">${t.notes.map((n) => html`<div>${n}</div>`)}</div>` : null}
    <div class="toolbar">
      <span>colour by</span>
      ${[['source', 'source'], ['logprob', 'logprob (heat map)'], ['version', 'policy version']].map(([m, label]) => html`<label><input type="radio" name="mode" data-testid=${`mode-${m}`} checked=${mode === m} onChange=${() => setMode(m)} /> ${label}</label>`)}
      ${episodes.length > 1 ? html`<label>episode <select data-testid="filter-episode" value=${episode} onChange=${(e) => setEpisode(e.target.value)}><option value="">all</option>${episodes.map((_, k) => html`<option value=${k}>${k + 1}</option>`)}</select></label>` : null}
      <span class="legend">${SOURCES.map((s, i) => html`<span class=${`chip src-${i}`}>${s}</span>`)} <span class="chip masked">trained (mask 1)</span></span>
    </div>
    <div class="viewer-body">
      <div class="samples">
        ${visible.map((s) => {
          const i = t.samples.indexOf(s);
          const advShown = Array.isArray(s.advantage) ? `per token (mean ${fmt(mean(s.advantage), 4)})` : fmt(s.advantage, 4);
          return html`<section class="sample" data-testid="sample" data-sample=${s.index}>
            <header><b>${sampleTitle(s)}</b>
              <span>reward <b data-testid="sample-reward">${fmt(s.reward)}</b></span>
              <span>return <b data-testid="sample-return">${fmt(s.ret, 4)}</b></span>
              <span>advantage <b data-testid="sample-advantage">${advShown}</b></span>
              <span class="muted">${s.tokenTotal} tokens${s.droppedTokens ? `, ${s.droppedTokens} not logged` : ''}</span>
            </header>
            <div class="tokens" onMouseLeave=${() => setHover(null)}>
              ${s.tokens.ids.map((_, j) => {
                const tok = tokAt(s, j);
                const k = key(s, j);
                const cls = `chip src-${tok.source}${tok.mask ? ' masked' : ''}${pinned && key(s, j) === pinned.key ? ' pinned' : ''}`;
                return html`<span class=${cls} style=${chipStyle(mode, tok, t.trainerVersion, maxVersion)} data-testid="token" data-source=${SOURCES[tok.source]} data-pos=${tok.pos}
                  title=${`${SOURCES[tok.source]} id ${tok.id}${tok.source === 1 ? ` logprob ${tok.logprob.toFixed(4)} v${tok.version}` : ''}`}
                  onMouseEnter=${() => setHover({ ...tok, key: k })} onClick=${() => setPinned(pinned?.key === k ? null : { ...tok, key: k })}>${tokenText(tok.text)}</span>`;
              })}
              ${s.tokenOffset + s.tokens.ids.length < s.tokenTotal ? html`<button class="more" data-testid="more-tokens" onClick=${() => moreTokens(i)}>${s.tokenTotal - s.tokenOffset - s.tokens.ids.length} more tokens…</button>` : null}
            </div>
          </section>`;
        })}
        ${t.sampleOffset + t.samples.length < t.sampleTotal ? html`<button class="more" data-testid="more-samples" onClick=${moreSamples}>${t.sampleTotal - t.sampleOffset - t.samples.length} more samples…</button>` : null}
      </div>
      <aside>
        <${TokenInspector} tok=${shown} pinned=${!!pinned} />
        <details><summary>info</summary><pre>${JSON.stringify(t.info, null, 2)}</pre></details>
      </aside>
    </div>
  </div>`;
}

function Trajectories({ runId, traj, go }) {
  return html`<div>
    <${TrajectoryList} runId=${runId} selected=${traj} onOpen=${(k) => go({ traj: k })} />
    ${traj ? html`<${TrajectoryViewer} runId=${runId} traj=${traj} onClose=${() => go({ traj: null })} />` : null}
  </div>`;
}

// ── a run ───────────────────────────────────────────────────────────────────────────────────
/** The population view `cur` with the update `next` applied: keep cur's first next.fromIndex rounds, append next's. */
function mergePopulation(cur, next) {
  if (!cur || next.fromIndex === 0) return next;
  const keep = next.fromIndex;
  return {
    ...next, rounds: [...cur.rounds.slice(0, keep), ...next.rounds],
    charts: next.charts.map((c, i) => ({ ...c, series: c.series.map((s, j) => ({ ...s, y: [...cur.charts[i].series[j].y.slice(0, keep), ...s.y] })) })),
  };
}

function useMetrics(runId) {
  const [state, setState] = useState({ generation: null, rows: [], warnings: [], population: null });
  const ref = useRef(state);
  ref.current = state;
  usePoll(async (stopped) => {
    const cur = ref.current;
    try {
      const d = await getJson(`api/metrics?${q({ run: runId, since: cur.rows.length, gen: cur.generation ?? undefined })}`);
      if (stopped()) return;
      const restart = d.generation !== cur.generation || d.from !== cur.rows.length;
      if (!restart && d.rows.length === 0 && JSON.stringify(d.warnings) === JSON.stringify(cur.warnings)) return;
      const population = restart ? d.population ?? null : d.population ? mergePopulation(cur.population, d.population) : cur.population;
      setState({ generation: d.generation, rows: restart ? d.rows : [...cur.rows, ...d.rows], warnings: d.warnings, population });
    } catch {
      // The run view shows the error from /api/run.
    }
  }, 1000, [runId]);
  return state;
}

function RunView({ runId, tab, traj, go }) {
  const [detail, setDetail] = useState(null);
  const [error, setError] = useState(null);
  const metrics = useMetrics(runId);
  usePoll(async (stopped) => {
    try {
      const d = await getJson(`api/run?${q({ run: runId })}`);
      if (!stopped()) { setDetail(d); setError(null); }
    } catch (e) {
      if (!stopped()) setError(e.message);
    }
  }, 2000, [runId]);
  if (error) return html`<p class="error" data-testid="run-error">${error}</p>`;
  if (!detail) return html`<p class="muted">Loading ${runId}…</p>`;
  const tabs = [['curves', 'Curves'], ['tables', 'Opponents × episodes'], ['trajectories', 'Trajectories'], ['config', 'Config']];
  return html`<div class="run" data-testid="run-view" data-run=${runId}>
    <div class="run-head">
      <h2>${detail.name} <small class="muted">${detail.task} · ${runId}</small></h2>
      <span class=${`status ${detail.status}`} data-testid="run-status">${detail.status}</span>
      <span>${detail.unit === 'rounds' ? detail.steps : Math.max(detail.steps, metrics.rows.length)}${detail.totalSteps !== null ? ` / ${detail.totalSteps}` : ''} ${detail.unit ?? 'steps'}</span>
      <span class="muted">updated ${new Date(detail.updatedMs).toLocaleTimeString()}</span>
    </div>
    <${Warnings} warnings=${detail.warnings} />
    <nav class="tabs">${tabs.map(([k, label]) => html`<button data-testid=${`tab-${k}`} class=${tab === k ? 'active' : ''} onClick=${() => go({ tab: k })}>${label}</button>`)}</nav>
    ${tab === 'curves' ? html`<${Curves} rows=${metrics.rows} population=${metrics.population} />` : null}
    ${tab === 'tables' ? html`<${Tables} rows=${metrics.rows} population=${metrics.population} detail=${detail} />` : null}
    ${tab === 'trajectories' ? html`<${Trajectories} runId=${runId} traj=${traj} go=${go} />` : null}
    ${tab === 'config' ? html`<pre class="config" data-testid="config">${detail.config ? JSON.stringify(detail.config, null, 2) : 'config.json is missing'}</pre>` : null}
  </div>`;
}

function App() {
  const [runs, setRuns] = useState(null);
  const [error, setError] = useState(null);
  const [{ run, tab, traj }, go] = useHash();
  usePoll(async (stopped) => {
    try {
      const d = await getJson('api/runs');
      if (!stopped()) { setRuns(d); setError(null); }
    } catch (e) {
      if (!stopped()) setError(e.message);
    }
  }, 3000, []);
  const selected = run ?? runs?.runs[0]?.id ?? null;
  return html`<div class="app">
    <aside class="sidebar">
      <h1>agentrl</h1>
      ${error ? html`<p class="error">${error}</p>` : null}
      ${runs ? html`<p class="muted small">${runs.root}</p>` : null}
      <ul class="runs" data-testid="runs">
        ${(runs?.runs ?? []).map((r) => html`<li data-testid="run-item" data-run=${r.id} class=${r.id === selected ? 'active' : ''} onClick=${() => go({ run: r.id, traj: null })}>
          <div><b>${r.name}</b> <span class=${`status ${r.status}`}>${r.status}</span></div>
          <div class="muted small">${r.id} · ${r.task} · ${r.steps}${r.totalSteps !== null ? `/${r.totalSteps}` : ''} ${r.unit ?? 'steps'}${r.warnings.length ? html` · <span class="warn">⚠ ${r.warnings.length}</span>` : null}</div>
        </li>`)}
      </ul>
      ${runs && runs.runs.length === 0 ? html`<p class="muted">No runs here yet: <code>agentrl train CONFIG --out ${runs.root}/NAME</code></p>` : null}
    </aside>
    <main>${selected ? html`<${RunView} key=${selected} runId=${selected} tab=${tab} traj=${traj} go=${go} />` : null}</main>
  </div>`;
}

// Preact 11 appends to the container's existing children: drop the static "Loading…" line first.
const root = document.getElementById('app');
root.replaceChildren();
render(html`<${App} />`, root);
