import { Fragment } from "preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { type Experiment, getExperiment, getRunSummary, type LiveEvent, type RunSummary, subscribe } from "../api";
import { formatDuration, formatTime, runDuration } from "../format";
import { loc, setQuery } from "../router";
import { readChartState, runsPath, writeChartState } from "../urlstate";
import { ChartToolbar } from "./ChartToolbar";
import { LogsPanel } from "./LogsPanel";
import { ParamsPanel } from "./ParamsPanel";
import { SeriesChart } from "./SeriesChart";
import { StatusBadge } from "./StatusBadge";
import { TracksPanel } from "./TracksPanel";

const TABS = ["charts", "params", "logs", "tracks"] as const;
type Tab = (typeof TABS)[number];
const ACCENT = "hsl(212 85% 48%)";

function Header({ exp }: { exp: Experiment }) {
  const now = Date.now() / 1000;
  const scope = [exp.owner, exp.project, ...exp.folders];
  return (
    <header class="run-header">
      <div class="crumbs">
        {scope.map((part, i) => <Fragment key={i}><a href={runsPath(scope.slice(0, i + 1))}>{part}</a>{" / "}</Fragment>)}
      </div>
      <h1><span data-testid="run-name">{exp.name}</span> <StatusBadge status={exp.status} /></h1>
      <dl class="facts">
        <div><dt>created</dt><dd>{formatTime(exp.createdAt)}</dd></div>
        {exp.startedAt !== null && <div><dt>started</dt><dd>{formatTime(exp.startedAt)}</dd></div>}
        {exp.endedAt !== null && <div><dt>ended</dt><dd>{formatTime(exp.endedAt)}</dd></div>}
        <div><dt>duration</dt><dd>{formatDuration(runDuration(exp, now)) || "—"}</dd></div>
        {exp.resumes.length > 0 && <div><dt>resumed</dt><dd>{exp.resumes.length}×</dd></div>}
      </dl>
      {exp.tags.length > 0 && <p class="tags">{exp.tags.map((t) => <span class="tag" key={t}>{t}</span>)}</p>}
      {exp.description && <p class="description" data-testid="run-description">{exp.description}</p>}
    </header>
  );
}

function Charts({ exp, summary, ticks }: { exp: Experiment; summary: RunSummary; ticks: Record<string, number> }) {
  const state = readChartState(loc.value.query);
  const streams = Object.keys(summary.metrics).sort();
  const numericFields = useMemo(() => {
    const all = new Set<string>();
    for (const fields of Object.values(summary.metrics)) Object.keys(fields).forEach((f) => all.add(f));
    return [...all].sort();
  }, [summary]);
  const origin = exp.startedAt ?? exp.createdAt;
  const run = { prefix: exp.prefix, label: exp.name, color: ACCENT, origin };
  return (
    <section aria-label="Charts">
      <ChartToolbar state={state} fields={numericFields} onChange={(next) => setQuery(writeChartState(loc.value.query, next))} />
      {streams.length === 0 && <p class="empty">This run has no metrics yet.</p>}
      {streams.map((stream) => {
        const fields = Object.keys(summary.metrics[stream]).filter((f) => f !== state.x && f !== "_ts").sort();
        const hasX = ["index", "_ts", "rel"].includes(state.x) || state.x in summary.metrics[stream];
        return (
          <section key={stream} class="stream" aria-labelledby={`stream-${stream}`}>
            <h2 id={`stream-${stream}`}>{stream}</h2>
            {!hasX && <p class="muted">This stream has no field {state.x}.</p>}
            {hasX && (
              <div class="grid">
                {fields.map((field) => (
                  <SeriesChart key={field} runs={[run]} stream={stream} field={field} x={state.x} log={state.log}
                    smooth={state.smooth} liveTick={ticks[stream] ?? 0} />
                ))}
              </div>
            )}
          </section>
        );
      })}
    </section>
  );
}

export function RunView({ prefix }: { prefix: string }) {
  const query = loc.value.query;
  const tab: Tab = (TABS as readonly string[]).includes(query.get("tab") ?? "") ? (query.get("tab") as Tab) : "charts";
  const [exp, setExp] = useState<Experiment | null>(null);
  const [summary, setSummary] = useState<RunSummary | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [summaryError, setSummaryError] = useState<string | null>(null);
  const streams = useRef<Set<string> | null>(null);
  const [ticks, setTicks] = useState<Record<string, number>>({});
  const [logTick, setLogTick] = useState(0);
  const [reread, setReread] = useState(0);
  const pending = useRef(new Set<string>());

  useEffect(() => {
    const abort = new AbortController();
    const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));
    getExperiment(prefix, abort.signal).then((e) => {
      setExp(e);
      setError(null);
      return getRunSummary(e, abort.signal).then((found) => {
        streams.current = new Set(Object.keys(found.metrics));
        setSummary(found);
        setSummaryError(null);
      }, (err: unknown) => {
        if (!abort.signal.aborted) setSummaryError(message(err));
      });
    }, (e: unknown) => {
      if (!abort.signal.aborted) setError(message(e));
    });
    return () => abort.abort();
  }, [prefix, reread]);

  // Live: the stream's charts read again at most once a second; a new stream or a
  // status change reads the run again.
  useEffect(() => {
    const timers: ReturnType<typeof setTimeout>[] = [];
    const off = subscribe({ prefixes: [prefix] }, (event: LiveEvent) => {
      if (event.type === "points") {
        if (pending.current.has(event.name)) return;
        pending.current.add(event.name);
        timers.push(setTimeout(() => {
          pending.current.delete(event.name);
          setTicks((t) => ({ ...t, [event.name]: (t[event.name] ?? 0) + 1 }));
          if (streams.current && !streams.current.has(event.name)) setReread((r) => r + 1); // a new stream
        }, 250));
      } else if (event.type === "logs") {
        setLogTick((t) => t + 1);
      } else if (event.type === "status") {
        setExp((e) => (e ? { ...e, status: event.status } : e));
        setReread((r) => r + 1);
      }
    });
    return () => {
      off();
      timers.forEach(clearTimeout);
    };
  }, [prefix]);

  const go = (t: Tab): void => {
    const q = new URLSearchParams(query);
    if (t === "charts") q.delete("tab");
    else q.set("tab", t);
    setQuery(q, true);
  };

  if (error) return <section class="content"><h1>{prefix}</h1><p class="error" role="alert">{error}</p></section>;
  if (!exp) return <section class="content"><p class="muted">Loading {prefix}…</p></section>;
  return (
    <section class="content run">
      <Header exp={exp} />
      <div class="tabs" role="tablist" aria-label="Run sections">
        {TABS.map((t) => (
          <button key={t} type="button" role="tab" id={`tab-${t}`} aria-selected={tab === t} aria-controls="tab-panel"
            tabIndex={tab === t ? 0 : -1} onClick={() => go(t)} onKeyDown={(e) => {
              const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
              if (step) {
                const next = TABS[(TABS.indexOf(t) + step + TABS.length) % TABS.length];
                go(next);
                requestAnimationFrame(() => document.getElementById(`tab-${next}`)?.focus());
              }
            }}>{t}</button>
        ))}
      </div>
      <div id="tab-panel" role="tabpanel" aria-labelledby={`tab-${tab}`}>
        {tab === "charts" && (summary ? <Charts exp={exp} summary={summary} ticks={ticks} />
          : summaryError ? <p class="error" role="alert">{summaryError}</p> : <p class="muted">Loading metrics…</p>)}
        {tab === "params" && <ParamsPanel prefix={prefix} />}
        {tab === "logs" && <LogsPanel prefix={prefix} liveTick={logTick} running={exp.status === "RUNNING"} />}
        {tab === "tracks" && <TracksPanel prefix={prefix} />}
      </div>
    </section>
  );
}
