import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { authNeeded, listMetrics, logIn, logOut, session, whoAmI } from "../src/api";

interface Sent {
  url: string;
  method: string;
  headers: Record<string, string>;
  credentials: RequestCredentials | undefined;
  body: string | undefined;
}

let sent: Sent[] = [];
let answers: Response[] = [];

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

beforeEach(() => {
  sent = [];
  answers = [];
  session.value = null;
  authNeeded.value = false;
  vi.stubGlobal("fetch", async (url: string, init: RequestInit = {}) => {
    sent.push({ url, method: init.method ?? "GET", headers: { ...(init.headers as Record<string, string>) },
      credentials: init.credentials, body: init.body as string | undefined });
    const answer = answers.shift();
    if (!answer) throw new Error(`no answer for ${url}`);
    return answer;
  });
});

afterEach(() => vi.unstubAllGlobals());

describe("the session", () => {
  it("logs in by posting the token once as JSON; the cookie does the rest", async () => {
    authNeeded.value = true;
    answers.push(json(200, { auth: true, owner: "alice" }));
    expect(await logIn("mld_0123456789_secret")).toEqual({ auth: true, owner: "alice" });
    expect(sent[0]).toMatchObject({ url: "/api/v1/session", method: "POST", credentials: "same-origin",
      body: JSON.stringify({ token: "mld_0123456789_secret" }) });
    expect(sent[0].headers["Content-Type"]).toBe("application/json");
    expect(session.value).toEqual({ auth: true, owner: "alice" });
    expect(authNeeded.value).toBe(false);

    answers.push(json(200, { metrics: [] }));
    await listMetrics("alice/p/run-1");
    expect(sent[1].credentials).toBe("same-origin");
    expect(sent.every((s) => !("Authorization" in s.headers))).toBe(true); // never a header with the token
  });

  it("keeps the form up when the token is refused", async () => {
    authNeeded.value = true;
    answers.push(json(401, { code: "unauthorized", message: "the token is unknown or has been revoked" }));
    await expect(logIn("nope")).rejects.toMatchObject({ status: 401, code: "unauthorized" });
    expect(authNeeded.value).toBe(true);
    expect(session.value).toBeNull();
  });

  it("returns to the login form on a 401 from any route", async () => {
    answers.push(json(401, { code: "unauthorized", message: "the session has ended" }));
    await expect(listMetrics("alice/p/run-1")).rejects.toMatchObject({ status: 401 });
    expect(authNeeded.value).toBe(true);
  });

  it("logs out on the server and shows the form", async () => {
    session.value = { auth: true, owner: "alice" };
    answers.push(json(200, { auth: true, owner: null }));
    await logOut();
    expect(sent[0]).toMatchObject({ url: "/api/v1/session", method: "DELETE", credentials: "same-origin" });
    expect(authNeeded.value).toBe(true);
    expect(session.value).toEqual({ auth: true, owner: null });
  });

  it("asks who it is: logged in, logged out, or a server without auth", async () => {
    answers.push(json(200, { auth: true, owner: "bob" }));
    expect(await whoAmI()).toEqual({ auth: true, owner: "bob" });
    answers.push(json(401, { code: "unauthorized", message: "no session" }));
    expect(await whoAmI()).toEqual({ auth: true, owner: null });
    expect(authNeeded.value).toBe(true);
    authNeeded.value = false;
    answers.push(json(200, { auth: false, owner: null }));
    expect(await whoAmI()).toEqual({ auth: false, owner: null });
    answers.push(json(404, { code: "not_found", message: "Not Found" })); // an older server
    expect(await whoAmI()).toEqual({ auth: false, owner: null });
    expect(authNeeded.value).toBe(false);
  });
});
