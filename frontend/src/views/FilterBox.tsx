// The filter box: text in the filter language, sent to the server as `where`, with
// completion of the names the loaded runs have (status, params.lr, metrics.train.loss.last …).
import { useMemo, useRef, useState } from "preact/hooks";

const WORD = /[A-Za-z_][A-Za-z0-9_.[\]"/-]*$/;

export function FilterBox({ value, names, error, onApply }: {
  value: string;
  names: string[];
  error: string | null;
  onApply: (text: string) => void;
}) {
  const [text, setText] = useState(value);
  const [caret, setCaret] = useState(0);
  const [active, setActive] = useState(0);
  const [open, setOpen] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const [lastValue, setLastValue] = useState(value);
  if (value !== lastValue) {
    setLastValue(value);
    setText(value);
  }
  const word = WORD.exec(text.slice(0, caret))?.[0] ?? "";
  const suggestions = useMemo(() => {
    if (!word) return [];
    const lower = word.toLowerCase();
    return names.filter((n) => n.toLowerCase().startsWith(lower) && n !== word).slice(0, 8);
  }, [word, names]);
  const showing = open && suggestions.length > 0;

  const accept = (name: string): void => {
    const before = text.slice(0, caret - word.length) + name;
    const next = before + text.slice(caret);
    setText(next);
    setOpen(false);
    requestAnimationFrame(() => {
      input.current?.setSelectionRange(before.length, before.length);
      setCaret(before.length);
    });
  };

  return (
    <form class="filter" role="search" onSubmit={(e) => {
      e.preventDefault();
      setOpen(false);
      onApply(text);
    }}>
      <label for="filter-input" class="visually-hidden">Filter runs</label>
      <div class="combo">
        <input id="filter-input" ref={input} type="search" spellcheck={false} autoComplete="off" value={text}
          placeholder='Filter: params.lr < 0.01 and status == "COMPLETED"'
          role="combobox" list={undefined} aria-expanded={showing} aria-controls="filter-suggestions" aria-autocomplete="list"
          aria-activedescendant={showing ? `filter-s-${active}` : undefined}
          aria-invalid={error !== null} aria-describedby={error !== null ? "filter-error" : undefined}
          onInput={(e) => {
            setText(e.currentTarget.value);
            setCaret(e.currentTarget.selectionStart ?? e.currentTarget.value.length);
            setActive(0);
            setOpen(true);
          }}
          onKeyDown={(e) => {
            if (!showing) return;
            if (e.key === "ArrowDown" || e.key === "ArrowUp") {
              e.preventDefault();
              const step = e.key === "ArrowDown" ? 1 : -1;
              setActive((active + step + suggestions.length) % suggestions.length);
            } else if (e.key === "Tab" || (e.key === "Enter" && open)) {
              e.preventDefault();
              accept(suggestions[active]);
            } else if (e.key === "Escape") {
              e.preventDefault();
              setOpen(false);
            }
          }}
          onBlur={() => setTimeout(() => setOpen(false), 150)}
        />
        {showing && (
          <ul id="filter-suggestions" class="suggestions" role="listbox">
            {suggestions.map((s, i) => (
              <li id={`filter-s-${i}`} key={s} role="option" aria-selected={i === active}
                onMouseDown={(e) => {
                  e.preventDefault();
                  accept(s);
                }}>{s}</li>
            ))}
          </ul>
        )}
      </div>
      <button type="submit">Apply</button>
      {text !== "" && <button type="button" onClick={() => {
        setText("");
        onApply("");
      }}>Clear</button>}
      {error !== null && <pre id="filter-error" class="error" role="alert" data-testid="filter-error">{error}</pre>}
    </form>
  );
}
