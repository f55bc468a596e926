import { useEffect, useMemo, useState } from "preact/hooks";
import { type LiveEvent, listRuns, type RunSummary, subscribe } from "../api";
import { runColor } from "../colors";
import { formatValue } from "../format";
import { loc, navigate, setQuery } from "../router";
import { diffKeys } from "../params";
import { comparePath, readChartState, readCompareState, runPath, writeChartState } from "../urlstate";
import { ChartToolbar } from "./ChartToolbar";
import { SeriesChart } from "./SeriesChart";

function quoteList(prefixes: string[]): string {
  return `[${prefixes.map((p) => JSON.stringify(p)).join(", ")}]`;
}

/** The summaries of the given runs, asked per owner/project (the scope /runs takes). */
async function summaries(prefixes: string[], abort: AbortSignal): Promise<RunSummary[]> {
  const scopes = new Map<string, string[]>();
  for (const p of prefixes) {
    const [owner, project] = p.split("/");
    const key = `${owner}/${project}`;
    scopes.set(key, [...(scopes.get(key) ?? []), p]);
  }
  const found = new Map<string, RunSummary>();
  for (const [key, members] of scopes) {
    const [owner, project] = key.split("/");
    const page = await listRuns({ owner, project, where: `prefix in ${quoteList(members)}`,
      limit: members.length }, abort);
    for (const run of page.runs) if (members.includes(run.prefix)) found.set(run.prefix, run);
  }
  return prefixes.flatMap((p) => (found.has(p) ? [found.get(p)!] : []));
}

export function CompareView() {
  const query = loc.value.query;
  const state = readCompareState(query);
  const chart = readChartState(query);
  const [runs, setRuns] = useState<RunSummary[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const key = state.runs.join("\n");

  useEffect(() => {
    if (state.runs.length === 0) return;
    const abort = new AbortController();
    summaries(state.runs, abort.signal).then(setRuns, (e: unknown) => {
      if (!abort.signal.aborted) setError(e instanceof Error ? e.message : String(e));
    });
    return () => abort.abort();
  }, [key]);

  const fields = useMemo(() => {
    const pairs = new Set<string>();
    for (const run of runs ?? []) {
      for (const [stream, fs] of Object.entries(run.metrics)) {
        for (const f of Object.keys(fs)) if (f !== "_ts") pairs.add(JSON.stringify([stream, f]));
      }
    }
    return [...pairs].sort().map((p) => JSON.parse(p) as [string, string]);
  }, [runs]);

  const stream = state.stream ?? fields[0]?.[0] ?? null;
  const field = state.field ?? fields.find(([s]) => s === stream)?.[1] ?? null;

  useEffect(() => {
    if (!stream) return;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const off = subscribe({ prefixes: state.runs }, (e: LiveEvent) => {
      if (e.type === "points" && e.name === stream) {
        timer ??= setTimeout(() => {
          timer = null;
          setTick((t) => t + 1);
        }, 1000);
      }
    });
    return () => {
      off();
      if (timer) clearTimeout(timer);
    };
  }, [key, stream]);

  if (state.runs.length === 0) {
    return (
      <section class="content empty">
        <h1>Compare</h1>
        <p>Select runs in the <a href="/runs">run table</a> (up to 100), then press Compare.</p>
      </section>
    );
  }
  const lines = (runs ?? []).map((r) => ({ prefix: r.prefix, label: r.name, color: runColor(r.prefix),
    origin: r.startedAt ?? r.createdAt }));
  const numeric = [...new Set(fields.filter(([s]) => s === stream).map(([, f]) => f))];
  const diff = runs ? diffKeys(runs.map((r) => r.params), state.allParams) : [];
  const update = (next: Partial<typeof state>): void => navigate(comparePath({ ...state, ...next }, chart), true);
  const fieldKey = stream !== null && field !== null ? JSON.stringify([stream, field]) : "";

  return (
    <section class="content compare">
      <h1>Compare {state.runs.length} runs</h1>
      {error && <p class="error" role="alert">{error}</p>}
      <div class="toolbar">
        <label>Metric{" "}
          <select value={fieldKey} data-testid="compare-field" onChange={(e) => {
            const [s, f] = JSON.parse(e.currentTarget.value) as [string, string];
            update({ stream: s, field: f });
          }}>
            {fields.map(([s, f]) => <option key={`${s}\n${f}`} value={JSON.stringify([s, f])}>{s} · {f}</option>)}
          </select>
        </label>
      </div>
      <ChartToolbar state={chart} fields={numeric} onChange={(next) => setQuery(writeChartState(query, next))} />
      {runs && stream && field && (
        <SeriesChart runs={lines} stream={stream} field={field} x={chart.x} log={chart.log} smooth={chart.smooth}
          liveTick={tick} height={360} title={`${stream} · ${field}`} />
      )}
      <ul class="legend" aria-label="Runs">
        {lines.map((l) => (
          <li key={l.prefix}>
            <span class="swatch" style={{ background: l.color }} /> <a href={runPath(l.prefix)}>{l.label}</a>{" "}
            <span class="muted small">{l.prefix}</span>{" "}
            <button type="button" class="link" aria-label={`Remove ${l.prefix}`}
              onClick={() => update({ runs: state.runs.filter((p) => p !== l.prefix) })}>remove</button>
          </li>
        ))}
      </ul>
      <section aria-labelledby="diff-title" class="diff">
        <h2 id="diff-title">Params {state.allParams ? "" : "that differ"}</h2>
        <label><input type="checkbox" checked={state.allParams} data-testid="all-params"
          onChange={(e) => update({ allParams: e.currentTarget.checked })} /> show all params</label>
        {runs && diff.length === 0 && <p class="muted">No params differ.</p>}
        {runs && diff.length > 0 && (
          <div class="table-wrap">
            <table class="runs diff-table" data-testid="params-diff">
              <thead>
                <tr><th scope="col">param</th>{runs.map((r) => <th key={r.prefix} scope="col">
                  <span class="swatch" style={{ background: runColor(r.prefix) }} /> {r.name}</th>)}</tr>
              </thead>
              <tbody>
                {diff.map((k) => (
                  <tr key={k}><th scope="row">{k}</th>{runs.map((r) => <td key={r.prefix}
                    class={typeof r.params[k] === "number" ? "num" : undefined}>
                    {k in r.params ? formatValue(r.params[k]) : <span class="muted">—</span>}</td>)}</tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </section>
  );
}
