// State shared between views: the selected runs (kept for this tab) and a tick that
// makes every view read again (after logging in).
import { signal } from "@preact/signals";
import { MAX_COMPARE } from "./urlstate";

const KEY = "ml-dash-selected";

function load(): string[] {
  try {
    const parsed: unknown = JSON.parse(sessionStorage.getItem(KEY) ?? "[]");
    return Array.isArray(parsed) ? parsed.filter((p): p is string => typeof p === "string").slice(0, MAX_COMPARE) : [];
  } catch {
    return [];
  }
}

export const selected = signal<string[]>(typeof sessionStorage === "undefined" ? [] : load());
export const reloadTick = signal(0);

export function setSelected(prefixes: string[]): void {
  selected.value = prefixes.slice(0, MAX_COMPARE);
  try {
    sessionStorage.setItem(KEY, JSON.stringify(selected.value));
  } catch {
    // the selection lives as long as the page
  }
}

export function toggleSelected(prefix: string): void {
  const now = selected.value;
  setSelected(now.includes(prefix) ? now.filter((p) => p !== prefix) : [...now, prefix]);
}
