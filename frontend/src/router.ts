// Client-side routing over real URLs: links and history.pushState, the back button
// through popstate. The current location is a signal every view reads.
import { signal } from "@preact/signals";
import { parseRoute, type Route } from "./urlstate";

export interface Location {
  path: string;
  query: URLSearchParams;
  route: Route;
}

function current(): Location {
  return { path: location.pathname, query: new URLSearchParams(location.search), route: parseRoute(location.pathname) };
}

export const loc = signal<Location>(current());

export function navigate(url: string, replace = false): void {
  const target = new URL(url, location.href);
  if (target.origin !== location.origin) throw new Error(`refusing to navigate to another origin: ${url}`);
  const next = target.pathname + target.search;
  if (next === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", next);
  else history.pushState(null, "", next);
  const pathChanged = target.pathname !== loc.value.path;
  loc.value = current();
  if (pathChanged && !replace) window.scrollTo(0, 0);
}

/** Replace the query of the current URL (view state such as sort or x-axis): no new history entry. */
export function setQuery(query: URLSearchParams, push = false): void {
  const q = query.toString();
  navigate(location.pathname + (q ? "?" + q : ""), !push);
}

export function startRouter(): void {
  window.addEventListener("popstate", () => {
    loc.value = current();
  });
  // Same-origin <a href> clicks become history entries instead of page loads.
  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey ||
      event.altKey) return;
    const anchor = (event.target as Element | null)?.closest?.("a");
    if (!anchor || anchor.target || anchor.hasAttribute("download")) return;
    const href = anchor.getAttribute("href");
    if (!href || !href.startsWith("/") || href.startsWith("//") || href.startsWith("/api/")) return;
    event.preventDefault();
    navigate(href);
  });
}
