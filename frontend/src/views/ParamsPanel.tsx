import { useEffect, useState } from "preact/hooks";
import { getParams, type ParamsDoc } from "../api";
import { formatValue } from "../format";
import { groupParams, nestParams, paramsJson } from "../params";

export function ParamsPanel({ prefix }: { prefix: string }) {
  const [doc, setDoc] = useState<ParamsDoc | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [search, setSearch] = useState("");
  const [copied, setCopied] = useState("");
  useEffect(() => {
    const abort = new AbortController();
    getParams(prefix, abort.signal).then(setDoc, (e: unknown) => {
      if (!abort.signal.aborted) setError(e instanceof Error ? e.message : String(e));
    });
    return () => abort.abort();
  }, [prefix]);
  if (error) return <p class="error" role="alert">{error}</p>;
  if (!doc) return <p class="muted">Loading params…</p>;
  const groups = groupParams(doc.data, search);
  const copy = async (): Promise<void> => {
    const text = paramsJson(nestParams(doc.data));
    try {
      await navigator.clipboard.writeText(text);
      setCopied("Copied.");
    } catch {
      setCopied("The browser refused the clipboard: select the JSON below instead.");
    }
  };
  return (
    <section aria-label="Params" class="params">
      <div class="toolbar">
        <input type="search" placeholder="Search params" aria-label="Search params" value={search}
          onInput={(e) => setSearch(e.currentTarget.value)} />
        <button type="button" onClick={() => void copy()}>Copy as JSON</button>
        <span class="muted small" role="status">{copied}</span>
      </div>
      {Object.keys(doc.data).length === 0 && <p class="empty">No params.</p>}
      {groups.map(([group, entries]) => (
        <details key={group} open class="param-group">
          <summary>{group || "(top level)"} <span class="count">{entries.length}</span></summary>
          <table class="kv">
            <tbody>
              {entries.map(([key, value]) => (
                <tr key={key}><th scope="row">{key}</th><td class={typeof value === "number" ? "num" : undefined}>
                  {formatValue(value)}</td></tr>
              ))}
            </tbody>
          </table>
        </details>
      ))}
      {copied.startsWith("The browser") && <pre class="json">{paramsJson(nestParams(doc.data))}</pre>}
    </section>
  );
}
