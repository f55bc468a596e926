import { useState } from "preact/hooks";
import { authNeeded, fallbackRoutes, liveState, setToken } from "../api";
import { loc } from "../router";
import { reloadTick, selected } from "../state";
import { comparePath } from "../urlstate";
import { CompareView } from "./CompareView";
import { RunsView } from "./RunsView";
import { RunView } from "./RunView";

function TokenForm() {
  const [value, setValue] = useState("");
  return (
    <div class="modal-backdrop">
      <form class="modal" aria-labelledby="token-title" onSubmit={(e) => {
        e.preventDefault();
        if (value.trim()) {
          setToken(value.trim());
          reloadTick.value++;
        }
      }}>
        <h2 id="token-title">This server needs a token</h2>
        <p>Paste a token from <code>ml-dash token create --owner NAME</code>. It is kept for this tab only.</p>
        <label>Token <input type="password" autoFocus autoComplete="off" value={value}
          onInput={(e) => setValue(e.currentTarget.value)} /></label>
        <div class="row"><button type="submit" class="primary">Use token</button></div>
      </form>
    </div>
  );
}

export function App() {
  const { route } = loc.value;
  const count = selected.value.length;
  const live = liveState.value;
  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <a class="brand" href="/">ML-Dash</a>
        <nav aria-label="Main">
          <a href="/runs" aria-current={route.kind === "runs" ? "page" : undefined}>Runs</a>
          <a href={count ? comparePath({ runs: selected.value, stream: null, field: null, allParams: false }) : "/compare"}
            aria-current={route.kind === "compare" ? "page" : undefined}>Compare{count ? ` (${count})` : ""}</a>
        </nav>
        <span class={`live live-${live}`} title={`live updates: ${live}`} data-testid="live-state">
          {live === "off" ? "" : live === "live" ? "● live" : live === "polling" ? "● polling" : "○ reconnecting"}
        </span>
      </header>
      <main id="main" key={reloadTick.value}>
        {route.kind === "runs" && <RunsView scope={route.scope} />}
        {route.kind === "run" && <RunView prefix={route.prefix} />}
        {route.kind === "compare" && <CompareView />}
        {route.kind === "notfound" && (
          <section class="empty"><h1>No such page</h1><p>Nothing lives at {route.path}. <a href="/runs">See all runs</a>.</p></section>
        )}
      </main>
      {fallbackRoutes.value.length > 0 && (
        <footer class="foot" data-testid="fallback-note">
          This server has no {fallbackRoutes.value.join(", ")} route: the dashboard reads raw points and polls instead
          (slower on big runs).
        </footer>
      )}
      {authNeeded.value && <TokenForm />}
    </>
  );
}
