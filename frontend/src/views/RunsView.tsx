import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, type Experiment, listExperiments, listRuns, type RunPage, subscribe } from "../api";
import { availableColumns, defaultColumns, describeColumn, serverSort, sortRuns, sortValue } from "../columns";
import { formatDuration, formatNumber, formatTime, formatValue } from "../format";
import { loc, navigate, setQuery } from "../router";
import { selected, setSelected, toggleSelected } from "../state";
import { buildTree } from "../tree";
import { comparePath, MAX_COMPARE, readTableState, runPath, runsPath, type TableState, writeTableState } from "../urlstate";
import { FilterBox } from "./FilterBox";
import { useRowWindow } from "./rowWindow";
import { StatusBadge } from "./StatusBadge";
import { Tree } from "./Tree";

const PAGE = 1000; // runs read at once: up to this many are sorted in the page without asking the server
const COLS_KEY = "ml-dash-columns";
const FILTER_NAMES = ["status", "name", "prefix", "owner", "project", "description", "tags", "folders", "created",
  "started", "ended"];

function ColumnChooser({ available, shown, onChange }: {
  available: string[];
  shown: string[];
  onChange: (cols: string[]) => void;
}) {
  const [search, setSearch] = useState("");
  const visible = available.filter((id) => id.toLowerCase().includes(search.toLowerCase()));
  return (
    <details class="chooser">
      <summary>Columns ({shown.length})</summary>
      <div class="chooser-panel">
        <input type="search" placeholder="Find a column" aria-label="Find a column" value={search}
          onInput={(e) => setSearch(e.currentTarget.value)} />
        <ul>
          {visible.map((id) => (
            <li key={id}>
              <label>
                <input type="checkbox" checked={shown.includes(id)} onChange={(e) => {
                  const on = e.currentTarget.checked;
                  onChange(on ? available.filter((c) => c === id || shown.includes(c)) : shown.filter((c) => c !== id));
                }} /> {describeColumn(id)?.label ?? id}
              </label>
            </li>
          ))}
        </ul>
        <button type="button" onClick={() => onChange(defaultColumns(available))}>Default columns</button>
      </div>
    </details>
  );
}

/** A column's kind, for its width in a windowed table (fixed layout). */
function columnKind(id: string): string {
  return describeColumn(id)?.kind === "base" ? id : describeColumn(id)?.kind ?? "other";
}

function Cell({ run, id, now }: { run: RunPage["runs"][number]; id: string; now: number }) {
  switch (id) {
    case "status":
      return <td><StatusBadge status={run.status} /></td>;
    case "name":
      return (
        <td class="name" title={run.prefix}>
          <a href={runPath(run.prefix)}>{run.name}</a>
          {run.folders.length > 0 && <span class="muted"> {run.folders.join("/")}</span>}
        </td>
      );
    case "tags":
      return <td title={run.tags.length > 0 ? run.tags.join(", ") : undefined}>
        {run.tags.map((t) => <span class="tag" key={t}>{t}</span>)}</td>;
    case "created":
      return <td class="num">{formatTime(run.createdAt)}</td>;
    case "duration":
      return <td class="num">{formatDuration(sortValue(run, "duration", now) as number | null)}</td>;
  }
  const value = sortValue(run, id, now);
  return <td class={typeof value === "number" ? "num" : undefined}>{typeof value === "number" ? formatNumber(value)
    : formatValue(value)}</td>;
}

export function RunsView({ scope }: { scope: string[] }) {
  const state = readTableState(loc.value.query);
  const [experiments, setExperiments] = useState<Experiment[] | null>(null);
  const [page, setPage] = useState<RunPage | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [filterError, setFilterError] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [tick, setTick] = useState(0);
  const [owner, project, ...folders] = scope;
  const sortKey = state.sort !== null ? serverSort(state.sort) : null;
  const scopeKey = scope.join("/");

  useEffect(() => {
    const abort = new AbortController();
    listExperiments(undefined, undefined, abort.signal).then(setExperiments, (e: unknown) => {
      if (!abort.signal.aborted) setError(String(e instanceof Error ? e.message : e));
    });
    return () => abort.abort();
  }, [tick]);

  // A new sort asks the server only when it has more runs than the page holds.
  const lastQuery = useRef<{ key: string; whole: boolean } | null>(null);
  useEffect(() => {
    const key = JSON.stringify([scopeKey, state.where, tick]);
    if (lastQuery.current?.key === key && lastQuery.current.whole) return;
    const abort = new AbortController();
    setLoading(true);
    listRuns({ owner, project, folder: folders.length ? scope.join("/") : undefined, where: state.where || undefined,
      sort: sortKey ?? undefined, descending: sortKey !== null ? state.desc : undefined, offset: 0, limit: PAGE },
    abort.signal).then((p) => {
      lastQuery.current = { key, whole: p.total <= p.runs.length };
      setPage(p);
      setFilterError(null);
      setError(null);
      setLoading(false);
    }, (e: unknown) => {
      if (abort.signal.aborted) return;
      setLoading(false);
      if (e instanceof ApiError && e.status >= 400 && e.status < 500 && state.where) {
        setFilterError(e.message); // the table keeps what the last good filter showed
      } else setError(e instanceof Error ? e.message : String(e));
    });
    return () => abort.abort();
  }, [scopeKey, state.where, sortKey, state.desc, tick]);

  // New experiments and status changes under an owner come over the event stream.
  useEffect(() => {
    if (!owner) return;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const off = subscribe({ owner, project }, () => {
      timer ??= setTimeout(() => {
        timer = null;
        setTick((t) => t + 1);
      }, 1000);
    });
    return () => {
      off();
      if (timer) clearTimeout(timer);
    };
  }, [owner, project]);

  const runs = page?.runs ?? [];
  const available = useMemo(() => availableColumns(runs), [page]);
  const storedCols = useMemo(() => {
    try {
      const raw = localStorage.getItem(COLS_KEY);
      return raw ? (JSON.parse(raw) as string[]) : null;
    } catch {
      return null;
    }
  }, []);
  const shown = (state.cols ?? storedCols ?? defaultColumns(available)).filter((id) => describeColumn(id) !== null);
  const sorted = useMemo(() => (state.sort ? sortRuns(runs, state.sort, state.desc) : runs),
    [page, state.sort, state.desc]);
  const tree = useMemo(() => buildTree(experiments ?? []), [experiments]);
  const sel = selected.value;
  const allChecked = sorted.length > 0 && sorted.every((r) => sel.includes(r.prefix));
  const headerBox = useRef<HTMLInputElement>(null);
  const body = useRef<HTMLTableSectionElement>(null);
  const rowWindow = useRowWindow(sorted.length, body);
  useEffect(() => {
    if (headerBox.current) headerBox.current.indeterminate = !allChecked && sorted.some((r) => sel.includes(r.prefix));
  });

  const update = (next: Partial<TableState>, push = false): void =>
    setQuery(writeTableState(loc.value.query, { ...state, ...next }), push);
  const filterNames = useMemo(() => [...FILTER_NAMES, ...available.filter((id) => id.includes("."))], [available]);
  const now = Date.now() / 1000;

  return (
    <div class="runs-layout">
      <aside class="side">{experiments && <Tree nodes={tree} scope={scope} />}</aside>
      <section class="content" aria-labelledby="runs-title">
        <div class="crumbs">
          <h1 id="runs-title">
            <a href="/runs">Runs</a>
            {scope.map((part, i) => <span key={i}> / <a href={runsPath(scope.slice(0, i + 1))}>{part}</a></span>)}
          </h1>
          <span class="muted" data-testid="run-count">
            {page ? `${page.total} run${page.total === 1 ? "" : "s"}` : loading ? "loading…" : ""}
          </span>
        </div>
        <div class="toolbar">
          <FilterBox value={state.where} names={filterNames} error={filterError}
            onApply={(text) => update({ where: text }, true)} />
          <ColumnChooser available={available} shown={shown} onChange={(cols) => {
            try {
              localStorage.setItem(COLS_KEY, JSON.stringify(cols));
            } catch {
              // the choice stays in the URL only
            }
            update({ cols });
          }} />
          <button type="button" class="primary" disabled={sel.length === 0}
            onClick={() => navigate(comparePath({ runs: sel, stream: null, field: null, allParams: false }))}>
            Compare {sel.length} selected
          </button>
          {sel.length > 0 && <button type="button" onClick={() => setSelected([])}>Clear selection</button>}
        </div>
        {page?.limitation && <p class="note" role="status">{page.limitation}</p>}
        {error && <p class="error" role="alert">{error}</p>}
        <div class="table-wrap">
          <table class={rowWindow.windowed ? "runs windowed" : "runs"} data-testid="runs-table" aria-busy={loading}
            aria-rowcount={sorted.length + 1}>
            <thead>
              <tr>
                <th class="check" scope="col">
                  <input ref={headerBox} type="checkbox" aria-label="Select all shown runs" checked={allChecked}
                    onChange={() => setSelected(allChecked ? sel.filter((p) => !sorted.some((r) => r.prefix === p))
                      : [...sel, ...sorted.map((r) => r.prefix).filter((p) => !sel.includes(p))].slice(0, MAX_COMPARE))} />
                </th>
                {shown.map((id) => {
                  const active = state.sort === id;
                  return (
                    <th key={id} scope="col" class={`col-${columnKind(id)}`} aria-sort={active ? (state.desc ? "descending" : "ascending") : undefined}>
                      <button type="button" class="sort" data-column={id}
                        onClick={() => update({ sort: id, desc: active ? !state.desc : false })}>
                        {describeColumn(id)?.label ?? id}
                        <span aria-hidden="true" class="arrow">{active ? (state.desc ? "▼" : "▲") : ""}</span>
                      </button>
                    </th>
                  );
                })}
              </tr>
            </thead>
            <tbody ref={body}>
              {rowWindow.first > 0 && <tr class="spacer" aria-hidden="true"
                style={{ height: `${rowWindow.first * rowWindow.rowHeight}px` }}><td colSpan={shown.length + 1} /></tr>}
              {sorted.slice(rowWindow.first, rowWindow.last).map((run, i) => (
                <tr key={run.prefix} data-prefix={run.prefix} aria-rowindex={rowWindow.first + i + 2}
                  class={sel.includes(run.prefix) ? "selected" : undefined}>
                  <td class="check">
                    <input type="checkbox" aria-label={`Select ${run.prefix}`} checked={sel.includes(run.prefix)}
                      onChange={() => toggleSelected(run.prefix)} />
                  </td>
                  {shown.map((id) => <Cell key={id} run={run} id={id} now={now} />)}
                </tr>
              ))}
              {rowWindow.last < sorted.length && <tr class="spacer" aria-hidden="true"
                style={{ height: `${(sorted.length - rowWindow.last) * rowWindow.rowHeight}px` }}>
                <td colSpan={shown.length + 1} /></tr>}
            </tbody>
          </table>
          {page && page.runs.length === 0 && <p class="empty">No runs {state.where ? "match this filter" : "here yet"}.</p>}
          {page && page.total > page.runs.length && (
            <p class="muted">Showing the first {page.runs.length} of {page.total}: narrow the filter to see the rest.</p>
          )}
        </div>
      </section>
    </div>
  );
}
