import type { ChartState } from "../urlstate";

export function ChartToolbar({ state, fields, onChange }: {
  state: ChartState;
  fields: string[]; // numeric fields offered as x-axis
  onChange: (next: ChartState) => void;
}) {
  const axes = ["index", "_ts", "rel", ...fields.filter((f) => f !== "_ts")];
  const label = (x: string): string => (x === "index" ? "index" : x === "_ts" ? "wall time" : x === "rel"
    ? "relative time" : x);
  return (
    <div class="toolbar chart-toolbar" role="group" aria-label="Chart settings">
      <label>x-axis{" "}
        <select value={state.x} data-testid="x-axis" onChange={(e) => onChange({ ...state, x: e.currentTarget.value })}>
          {axes.map((x) => <option key={x} value={x}>{label(x)}</option>)}
          {!axes.includes(state.x) && <option value={state.x}>{state.x}</option>}
        </select>
      </label>
      <label><input type="checkbox" checked={state.log} data-testid="log-scale"
        onChange={(e) => onChange({ ...state, log: e.currentTarget.checked })} /> log scale</label>
      <label>smoothing{" "}
        <input type="range" min={0} max={0.99} step={0.01} value={state.smooth} data-testid="smoothing"
          aria-valuetext={state.smooth === 0 ? "off" : String(state.smooth)}
          onInput={(e) => onChange({ ...state, smooth: Number(e.currentTarget.value) })} />
        <output>{state.smooth === 0 ? "off" : state.smooth.toFixed(2)}</output>
      </label>
      <span class="muted small">Drag to zoom, double-click to reset.</span>
    </div>
  );
}
