import { useEffect, useRef, useState } from "preact/hooks";
import { type LogPage, readLogs } from "../api";
import { formatTime } from "../format";

const LEVELS = ["debug", "info", "warn", "error", "fatal"];
const PAGE = 100;

/** A datetime-local value (local time) as seconds since the epoch; undefined when empty. */
function seconds(value: string): number | undefined {
  const ms = value ? new Date(value).getTime() : NaN;
  return Number.isFinite(ms) ? ms / 1000 : undefined;
}

/** A line number to jump to: the server finds any page by its offset at the cost of the page alone. */
function GoToLine({ total, onGo }: { total: number; onGo: (line: number) => void }) {
  const [value, setValue] = useState("");
  return (
    <form class="goto" onSubmit={(e) => {
      e.preventDefault();
      const line = Math.round(Number(value));
      if (Number.isFinite(line) && value.trim() !== "") onGo(Math.min(Math.max(line, 1), total));
    }}>
      <label>line <input type="number" min={1} max={total} step={1} value={value} data-testid="log-goto"
        aria-label={`Go to line (1 to ${total})`} onInput={(e) => setValue(e.currentTarget.value)} /></label>
      <button type="submit">Go</button>
    </form>
  );
}

export function LogsPanel({ prefix, liveTick, running }: { prefix: string; liveTick: number; running: boolean }) {
  const [levels, setLevels] = useState<string[]>([]);
  const [search, setSearch] = useState("");
  const [typed, setTyped] = useState("");
  const [offset, setOffset] = useState(0);
  const [tail, setTail] = useState(running);
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [page, setPage] = useState<LogPage | null>(null);
  const [error, setError] = useState<string | null>(null);
  const list = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (typed === search) return; // on mount too: a page chosen within 300 ms must not go back to the first
    const timer = setTimeout(() => {
      setSearch(typed);
      setOffset(0);
    }, 300);
    return () => clearTimeout(timer);
  }, [typed]);

  useEffect(() => {
    const abort = new AbortController();
    // The live tail reads the newest page (newest first) and shows it oldest first.
    readLogs(prefix, { levels: levels.length ? levels : undefined, search: search || undefined,
      startTime: seconds(from), endTime: seconds(to),
      offset: tail ? 0 : offset, limit: PAGE, descending: tail }, abort.signal).then((p) => {
      setPage(tail ? { ...p, logs: [...p.logs].reverse() } : p);
      setError(null);
      if (tail) requestAnimationFrame(() => list.current?.scrollTo({ top: list.current.scrollHeight }));
    }, (e: unknown) => {
      if (!abort.signal.aborted) setError(e instanceof Error ? e.message : String(e));
    });
    return () => abort.abort();
  }, [prefix, levels.join(","), search, from, to, offset, tail, tail ? liveTick : 0]);

  const filtered = levels.length > 0 || search !== "" || from !== "" || to !== "";
  // The count describes the page shown (its own offset), not the one being asked for.
  const first = page && !tail ? page.offset : 0;
  const last = page ? Math.min(page.total, first + page.logs.length) : 0;
  return (
    <section aria-label="Logs" class="logs">
      <div class="toolbar">
        <fieldset class="levels">
          <legend class="visually-hidden">Levels</legend>
          {LEVELS.map((level) => (
            <label key={level} class={`level level-${level}`}>
              <input type="checkbox" checked={levels.includes(level)} onChange={(e) => {
                setLevels(e.currentTarget.checked ? [...levels, level] : levels.filter((l) => l !== level));
                setOffset(0);
              }} /> {level}
            </label>
          ))}
        </fieldset>
        <input type="search" placeholder="Search log lines" aria-label="Search log lines" value={typed}
          data-testid="log-search" onInput={(e) => setTyped(e.currentTarget.value)} />
        <label>from <input type="datetime-local" step={1} value={from} aria-label="Lines from (local time)"
          onChange={(e) => {
            setFrom(e.currentTarget.value);
            setOffset(0);
          }} /></label>
        <label>to <input type="datetime-local" step={1} value={to} aria-label="Lines until (local time)"
          onChange={(e) => {
            setTo(e.currentTarget.value);
            setOffset(0);
          }} /></label>
        <label><input type="checkbox" checked={tail} data-testid="live-tail"
          onChange={(e) => setTail(e.currentTarget.checked)} /> live tail</label>
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      {page && (
        <>
          <p class="muted small" data-testid="log-count">
            {page.total === 0 ? (filtered ? "No log lines match." : "This run has no log lines yet.") : tail ? `the last ${page.logs.length} of ${page.total} lines`
              : `lines ${first + 1}–${last} of ${page.total}`}
          </p>
          <div class="log-lines" ref={list} tabIndex={0} aria-label="Log lines">
            {page.logs.map((line) => (
              <div class={`log-line log-${line.level}`} key={line.sequenceNumber}>
                <span class="log-time">{formatTime(line.ts)}</span>
                <span class={`level level-${line.level}`}>{line.level}</span>
                <span class="log-message">{line.message}</span>
                {line.metadata && Object.keys(line.metadata).length > 0 && (
                  <span class="log-meta">{JSON.stringify(line.metadata)}</span>
                )}
              </div>
            ))}
          </div>
          {!tail && page.total > 0 && (
            <div class="pager">
              <button type="button" disabled={offset === 0} onClick={() => setOffset(0)}>First</button>
              <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
                ← Previous</button>
              <button type="button" disabled={!page.hasMore} onClick={() => setOffset(offset + PAGE)}>Next →</button>
              <button type="button" disabled={!page.hasMore}
                onClick={() => setOffset(Math.max(0, page.total - PAGE))}>Last</button>
              <GoToLine total={page.total} onGo={(line) => setOffset(line - 1)} />
            </div>
          )}
        </>
      )}
    </section>
  );
}
