// A server-sent-events parser (the text/event-stream format of the HTML standard),
// fed with decoded text as it arrives. api.ts reads the stream with fetch, so it can
// send Last-Event-ID itself and see a 401 (back to the login form), which EventSource cannot.

export interface SseMessage {
  id: string | null; // the last id seen on the stream, as EventSource's lastEventId
  event: string;
  data: string;
}

export class SseParser {
  lastEventId: string | null = null;
  retry: number | null = null;
  private buffer = "";
  private event = "";
  private data: string[] = [];
  private hasData = false;

  /** Parse `chunk` (any split of the stream); the messages it completes. */
  feed(chunk: string): SseMessage[] {
    this.buffer += chunk;
    const out: SseMessage[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (m === null) break;
      // A lone \r at the end may be the first half of \r\n: wait for more.
      if (m[0] === "\r" && m.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      const message = this.line(line);
      if (message !== null) out.push(message);
    }
    return out;
  }

  private line(line: string): SseMessage | null {
    if (line === "") {
      if (!this.hasData) {
        this.event = "";
        return null;
      }
      const message = { id: this.lastEventId, event: this.event || "message", data: this.data.join("\n") };
      this.event = "";
      this.data = [];
      this.hasData = false;
      return message;
    }
    if (line.startsWith(":")) return null; // a comment: a heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") {
      this.data.push(value);
      this.hasData = true;
    } else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }
}
