import { useEffect, useState } from "preact/hooks";
import { listTracks, readTracks, type TrackInfo } from "../api";
import type { ChartLine } from "../chart";
import { formatTime, formatValue } from "../format";
import { Chart } from "./Chart";

const ROWS = 100;
const ACCENT = "hsl(212 85% 48%)";

/** A line per numeric column of the entries on this page, against their timestamps. */
function columnLines(entries: Record<string, unknown>[], column: string): ChartLine {
  const x: number[] = [];
  const y: number[] = [];
  const bad: ChartLine["nonFinite"] = { x: [], values: [] };
  for (const entry of entries) {
    const t = entry.timestamp;
    const v = entry[column];
    if (typeof t !== "number" || typeof v !== "number") continue;
    if (Number.isFinite(v)) {
      x.push(t);
      y.push(v);
    } else {
      bad.x.push(t);
      bad.values.push(Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
    }
  }
  return { key: column, label: column, color: ACCENT, x, y, raw: true, total: x.length + bad.x.length, nonFinite: bad };
}

export function TracksPanel({ prefix }: { prefix: string }) {
  const [tracks, setTracks] = useState<TrackInfo[] | null>(null);
  const [topic, setTopic] = useState<string | null>(null);
  // Pages are walked by timestamp: each page starts after the last timestamp of the one before.
  const [starts, setStarts] = useState<(number | undefined)[]>([undefined]);
  const [entries, setEntries] = useState<Record<string, unknown>[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    listTracks(prefix, abort.signal).then((t) => {
      setTracks(t);
      if (t.length > 0) setTopic((now) => now ?? t[0].topic);
    }, (e: unknown) => {
      if (!abort.signal.aborted) setError(e instanceof Error ? e.message : String(e));
    });
    return () => abort.abort();
  }, [prefix]);
  const after = starts[starts.length - 1];
  useEffect(() => {
    if (topic === null) return;
    const abort = new AbortController();
    readTracks(prefix, topic, { limit: ROWS, after }, abort.signal).then(setEntries, (e: unknown) => {
      if (!abort.signal.aborted) setError(e instanceof Error ? e.message : String(e));
    });
    return () => abort.abort();
  }, [prefix, topic, after]);
  if (error) return <p class="error" role="alert">{error}</p>;
  if (!tracks) return <p class="muted">Loading tracks…</p>;
  if (tracks.length === 0) return <p class="empty">No tracks.</p>;
  const info = tracks.find((t) => t.topic === topic);
  const columns = entries ? ["timestamp", ...[...new Set(entries.flatMap((e) => Object.keys(e)))]
    .filter((c) => c !== "timestamp").sort()] : [];
  const first = (starts.length - 1) * ROWS;
  const numeric = columns.filter((c) => c !== "timestamp" && entries?.some((e) => typeof e[c] === "number"));
  const last = entries?.[entries.length - 1]?.timestamp;
  return (
    <section aria-label="Tracks" class="tracks">
      <div class="toolbar">
        <label>Topic{" "}
          <select value={topic ?? ""} onChange={(e) => {
            setTopic(e.currentTarget.value);
            setStarts([undefined]);
          }}>
            {tracks.map((t) => <option key={t.topic} value={t.topic}>{t.topic} ({t.totalEntries})</option>)}
          </select>
        </label>
      </div>
      {entries && numeric.length > 0 && (
        <div class="grid track-charts">
          {numeric.map((c) => (
            <figure class="card" key={c} data-column={c}>
              <figcaption><span class="field">{c}</span><span class="muted small">this page</span></figcaption>
              <Chart lines={[columnLines(entries, c)]} xKind="time" xLabel="time" log={false} smooth={0} zoom={null}
                onZoom={() => undefined} height={180} label={`${topic} ${c} against time`} />
            </figure>
          ))}
        </div>
      )}
      {entries && (
        <div class="table-wrap">
          <table class="runs tracks-table" data-testid="tracks-table">
            <thead><tr>{columns.map((c) => <th key={c} scope="col">{c}</th>)}</tr></thead>
            <tbody>
              {entries.map((entry, i) => (
                <tr key={first + i}>
                  {columns.map((c) => <td key={c} class={typeof entry[c] === "number" && c !== "timestamp" ? "num" : undefined}>
                    {c === "timestamp" ? formatTime(entry[c] as number) : formatValue(entry[c])}</td>)}
                </tr>
              ))}
            </tbody>
          </table>
          <div class="pager">
            <span class="muted small">entries {entries.length ? first + 1 : 0}–{first + entries.length}
              {info ? ` of ${info.totalEntries}` : ""}</span>
            <button type="button" disabled={starts.length === 1} onClick={() => setStarts(starts.slice(0, -1))}>
              ← Previous</button>
            <button type="button" disabled={entries.length < ROWS || typeof last !== "number"}
              onClick={() => setStarts([...starts, last as number])}>Next →</button>
          </div>
        </div>
      )}
    </section>
  );
}
