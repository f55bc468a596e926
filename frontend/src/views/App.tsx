import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, authNeeded, fallbackRoutes, liveState, logIn, logOut, session, whoAmI } from "../api";
import { loc } from "../router";
import { reloadTick, selected } from "../state";
import { comparePath } from "../urlstate";
import { CompareView } from "./CompareView";
import { RunsView } from "./RunsView";
import { RunView } from "./RunView";

/** The login form: the token is posted once; the server answers with an HttpOnly session cookie. */
function LoginForm() {
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);
  const submit = async (e: Event) => {
    e.preventDefault();
    const token = value.trim();
    if (!token || busy) return;
    setBusy(true);
    setError(null);
    try {
      await logIn(token);
      setValue("");
      reloadTick.value++;
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? "The server does not know this token, or it has been revoked."
        : err instanceof Error ? err.message : String(err));
      input.current?.select();
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="login">
      <form class="login-card" aria-labelledby="login-title" onSubmit={submit} data-testid="login-form">
        <h1 id="login-title">Log in to ML-Dash</h1>
        <p class="muted">This server needs a token. Create one with <code>ml-dash token create --owner NAME</code> and
          paste it here; you see the experiments of its owner.</p>
        <label>Token <input ref={input} type="password" name="token" autoComplete="off" spellcheck={false}
          value={value} aria-invalid={error ? "true" : undefined} aria-describedby={error ? "login-error" : undefined}
          onInput={(e) => setValue(e.currentTarget.value)} /></label>
        {error && <p id="login-error" class="error" role="alert">{error}</p>}
        <div class="row"><button type="submit" class="primary" disabled={busy}>{busy ? "Logging in…" : "Log in"}</button></div>
        <p class="muted small">The token is sent once. The server keeps the session in a cookie that scripts cannot
          read, until you log out.</p>
      </form>
    </section>
  );
}

function Account() {
  const s = session.value;
  if (!s?.auth || !s.owner || authNeeded.value) return null;
  return (
    <span class="account">
      <span class="muted" data-testid="owner">{s.owner}</span>
      <button type="button" class="link" onClick={() => void logOut()}>Log out</button>
    </span>
  );
}

export function App() {
  useEffect(() => void whoAmI(), []);
  const { route } = loc.value;
  const known = session.value !== null || authNeeded.value;
  const loggedOut = authNeeded.value;
  const count = selected.value.length;
  const live = liveState.value;
  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <a class="brand" href="/">ML-Dash</a>
        {!loggedOut && <nav aria-label="Main">
          <a href="/runs" aria-current={route.kind === "runs" ? "page" : undefined}>Runs</a>
          <a href={count ? comparePath({ runs: selected.value, stream: null, field: null, allParams: false }) : "/compare"}
            aria-current={route.kind === "compare" ? "page" : undefined}>Compare{count ? ` (${count})` : ""}</a>
        </nav>}
        <span class={`live live-${live}`} title={`live updates: ${live}`} data-testid="live-state">
          {live === "off" ? "" : live === "live" ? "● live" : live === "polling" ? "● polling" : "○ reconnecting"}
        </span>
        <Account />
      </header>
      {loggedOut ? <main id="main"><LoginForm /></main> : known && <main id="main" key={reloadTick.value}>
        {route.kind === "runs" && <RunsView scope={route.scope} />}
        {route.kind === "run" && <RunView prefix={route.prefix} />}
        {route.kind === "compare" && <CompareView />}
        {route.kind === "notfound" && (
          <section class="empty"><h1>No such page</h1><p>Nothing lives at {route.path}. <a href="/runs">See all runs</a>.</p></section>
        )}
      </main>}
      {fallbackRoutes.value.length > 0 && (
        <footer class="foot" data-testid="fallback-note">
          This server has no {fallbackRoutes.value.join(", ")} route: the dashboard reads raw points and polls instead
          (slower on big runs).
        </footer>
      )}
    </>
  );
}
