// Long tables render only the rows near the screen (plus a margin), between two spacer
// rows that keep the scroll height: a browser lays out a 1,000-row table in about
// 0.6 s on a slow machine, 60 rows in a few ms (benchmarks/bench_dashboard.py).
import type { RefObject } from "preact";
import { useLayoutEffect, useState } from "preact/hooks";

/** Tables with more rows than this are windowed. */
export const WINDOW_FROM = 200;
const MARGIN = 25; // rows rendered above and below the screen
const GUESS = 32; // row height (px) until one is measured

export interface RowWindow {
  first: number; // the first row rendered
  last: number; // one past the last
  rowHeight: number; // px, for the spacers
  windowed: boolean;
}

function same(a: RowWindow, b: RowWindow): boolean {
  return a.first === b.first && a.last === b.last && a.rowHeight === b.rowHeight;
}

/** Which of `count` rows of `body` (a tbody scrolled with the window) to render. */
export function useRowWindow(count: number, body: RefObject<HTMLElement | null>): RowWindow {
  const windowed = count > WINDOW_FROM;
  const [view, setView] = useState<RowWindow>({ first: 0, last: 2 * MARGIN, rowHeight: GUESS, windowed });
  useLayoutEffect(() => {
    if (!windowed) return;
    let frame = 0;
    const update = (): void => {
      frame = 0;
      const el = body.current;
      if (!el) return;
      const row = el.querySelector("tr[data-prefix]");
      const height = row ? row.getBoundingClientRect().height || GUESS : GUESS;
      const top = el.getBoundingClientRect().top; // of the first row, spacer included
      const first = Math.min(count, Math.max(0, Math.floor(-top / height) - MARGIN));
      const last = Math.min(count, Math.max(first, Math.ceil((innerHeight - top) / height) + MARGIN));
      const next = { first, last, rowHeight: height, windowed };
      setView((v) => (same(v, next) ? v : next));
    };
    const schedule = (): void => {
      frame ||= requestAnimationFrame(update);
    };
    update();
    addEventListener("scroll", schedule, { passive: true });
    addEventListener("resize", schedule);
    return () => {
      removeEventListener("scroll", schedule);
      removeEventListener("resize", schedule);
      cancelAnimationFrame(frame);
    };
  }, [count, windowed]);
  if (!windowed) return { first: 0, last: count, rowHeight: 0, windowed };
  return { ...view, first: Math.min(view.first, count), last: Math.min(view.last, count), windowed };
}
