import { expect, test } from "./fixtures";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TOKEN } from "./env";

const AUTH = { Authorization: `Bearer ${TOKEN}` };

/** A file of random bytes in the test's output dir, and its SHA-256. */
function randomFile(path: string, bytes: number): string {
  const data = randomBytes(bytes);
  writeFileSync(path, data);
  return createHash("sha256").update(data).digest("hex");
}

test("a 20 MB file goes up, reaches 100% with its real SHA-256, and shows in the history", async ({
  page,
  signIn,
}, testInfo) => {
  const path = testInfo.outputPath("twenty.bin");
  const digest = randomFile(path, 20 * 1024 * 1024);
  await signIn();
  await page.getByLabel("Choose files (optional)").setInputFiles(path);
  await expect(page.locator("#chosen-file .chosen-summary")).toHaveText("1 file chosen — 20.0 MiB");
  await expect(page.locator("#chosen-file .chosen-files")).toHaveText(/twenty\.bin — 20\.0 MiB/);
  await page.getByLabel("Metadata (optional JSON object)").fill('{"scenario": "20 MB"}');
  await page.getByRole("button", { name: "Start ingest" }).click();

  const card = page.locator(".job").first();
  await expect(card.locator(".filename")).toHaveText("twenty.bin");
  await expect(card).toHaveAttribute("data-status", "completed", { timeout: 30_000 });
  await expect(card.locator("progress")).toHaveAttribute("value", "100");
  await expect(card.locator("progress")).toHaveAttribute("aria-valuenow", "100");
  await expect(card.locator(".digest")).toHaveText(digest);
  await expect(card.locator(".size")).toContainText("20971520 bytes");
  await expect(card.locator(".content-type")).toHaveText("application/octet-stream");
  await expect(card.locator(".elapsed")).toHaveText(/\d+(\.\d)? (ms|s)|min/);
  await expect(card.locator(".state")).toHaveText("Completed");
  await expect(card.locator(".verdict")).toHaveAttribute("data-verified", "true");
  await expect(card.getByRole("button", { name: "Cancel" })).toHaveCount(0);
  await page.screenshot({ path: testInfo.outputPath("upload-completed.png"), fullPage: true });

  const id = (await card.locator(".job-id code").textContent())!.trim();
  await page.getByRole("link", { name: "History" }).click();
  // The filters respond once the page is hydrated (its rows are in the server's HTML before).
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  const row = page.locator(".history-row").filter({ hasText: id });
  await expect(row).toContainText("twenty.bin · 20.0 MiB");
  await expect(row.locator(".badge")).toHaveText("Completed");
  // Newest first: the upload just made heads the list.
  await expect(page.locator(".history-row").first()).toContainText(id);
  await page.getByLabel("Status").selectOption("failed");
  await expect(page).toHaveURL(/\/jobs\?status=failed$/);
  await expect(page.locator(".history-row").filter({ hasText: id })).toHaveCount(0);
  await page.getByLabel("Status").selectOption("completed");
  await expect(page.locator(".history-row").filter({ hasText: id })).toHaveCount(1);
  await page.screenshot({ path: testInfo.outputPath("history.png"), fullPage: true });

  await row.getByRole("link").click();
  await expect(page).toHaveURL(new RegExp(`/jobs/${id}$`));
  await expect(page.locator(".job .digest")).toHaveText(digest);
});

test("the history pages through older jobs", async ({ page, signIn, request }, testInfo) => {
  const ids: string[] = [];
  for (let i = 0; i < 22; i++) {
    const accepted = await request.post("/api/ingest", { headers: AUTH, data: { metadata: { i } } });
    ids.push((await accepted.json()).job_id);
  }
  await signIn();
  await page.goto("/jobs");
  await expect(page.locator(".history-row")).toHaveCount(20);
  await expect(page.locator(".history-row").first()).toContainText(ids[21]);
  await page.getByRole("link", { name: "Older →" }).click();
  await expect(page).toHaveURL(/before=/);
  await expect(page.locator(".history-row").first()).toContainText(ids[1]);
  await page.screenshot({ path: testInfo.outputPath("history-older.png"), fullPage: true });
  await page.getByRole("link", { name: "← Newest" }).click();
  await expect(page.locator(".history-row").first()).toContainText(ids[21]);
});

test("reloading a job page mid-run shows it live again", async ({ page, signIn, request }, testInfo) => {
  await signIn();
  const accepted = await request.post("/api/ingest", { headers: AUTH, data: { metadata: { reload: true } } });
  const { job_id } = await accepted.json();
  await page.goto(`/jobs/${job_id}`);
  const card = page.locator(".job");
  await expect(card).toHaveAttribute("data-status", /queued|processing/);
  // The server renders the job in its current state (the HTML, before any wasm runs)…
  const html = await (await page.request.get(`/jobs/${job_id}`)).text();
  expect(html).toMatch(/data-status="(queued|processing)"/);
  expect(html).toContain(job_id);
  await page.reload();
  // …and after a reload mid-run the page is live again.
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  await expect(card).toHaveAttribute("data-connection", "live");
  await expect(card).toHaveAttribute("data-status", /queued|processing/);
  await page.screenshot({ path: testInfo.outputPath("job-page-live.png"), fullPage: true });
  await expect(card).toHaveAttribute("data-status", "completed", { timeout: 20_000 });
  await expect(card.locator("progress")).toHaveAttribute("value", "100");
  await expect(card).toHaveAttribute("data-connection", "closed");
});

test("with the WebSocket blocked the page falls back to polling and still completes", async ({
  page,
  signIn,
}, testInfo) => {
  let refused = 0;
  await page.routeWebSocket(/\/ws\/status\//, (socket) => {
    refused += 1;
    socket.close();
  });
  const polls: string[] = [];
  page.on("request", (r) => {
    if (r.url().includes("/api/status/")) polls.push(r.url());
  });
  await signIn();
  await page.getByRole("button", { name: "Start ingest" }).click();
  const card = page.locator(".job").first();
  await expect(card).toHaveAttribute("data-connection", "polling");
  await expect(card.locator(".connection")).toContainText("checking every second");
  await page.screenshot({ path: testInfo.outputPath("polling.png"), fullPage: true });
  await expect(card).toHaveAttribute("data-status", "completed", { timeout: 30_000 });
  await expect(card.locator("progress")).toHaveAttribute("value", "100");
  expect(refused).toBeGreaterThanOrEqual(3);
  expect(polls.length).toBeGreaterThan(0);
  // "Poll status" asks by hand, as in the demo.
  const before = polls.length;
  await card.getByRole("button", { name: "Poll status" }).click();
  await expect.poll(() => polls.length).toBeGreaterThan(before);
});

test("a dropped WebSocket reconnects and the server's snapshot brings the card up to date", async ({
  page,
  signIn,
}, testInfo) => {
  let connections = 0;
  await page.routeWebSocket(/\/ws\/status\//, (socket) => {
    connections += 1;
    const server = socket.connectToServer();
    if (connections === 1) {
      // The first connection drops right after the snapshot.
      server.onMessage((message) => {
        socket.send(message);
        socket.close();
      });
    }
  });
  const polls: string[] = [];
  page.on("request", (r) => {
    if (r.url().includes("/api/status/")) polls.push(r.url());
  });
  let open = 0;
  let opened = 0;
  page.on("websocket", (ws) => {
    open += 1;
    opened += 1;
    ws.on("close", () => (open -= 1));
  });
  await signIn();
  await page.getByRole("button", { name: "Start ingest" }).click();
  const card = page.locator(".job").first();
  await expect(card).toHaveAttribute("data-status", "completed", { timeout: 20_000 });
  await expect(card.locator("progress")).toHaveAttribute("value", "100");
  expect(connections).toBeGreaterThanOrEqual(2);
  // One drop is not enough to fall back to polling.
  expect(polls).toEqual([]);
  // Finished: the card closed its socket and left nothing running.
  await expect(card).toHaveAttribute("data-connection", "closed");
  expect(opened).toBeGreaterThanOrEqual(2);
  await expect.poll(() => open).toBe(0);
  await page.screenshot({ path: testInfo.outputPath("reconnected.png"), fullPage: true });
});

test("cancelling mid-upload stops it: cancelled, and its bytes are gone", async ({ page, signIn, request }, testInfo) => {
  const path = testInfo.outputPath("slow.bin");
  randomFile(path, 20 * 1024 * 1024);
  await signIn();
  // A slow uplink, so the upload is still running when Cancel is pressed.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: 1024 * 1024,
  });
  await page.getByLabel("Choose files (optional)").setInputFiles(path);
  await page.getByRole("button", { name: "Start ingest" }).click();
  const card = page.locator(".job").first();
  await expect(card.locator(".state")).toHaveText(/^Uploading .* of 20\.0 MiB$/);
  await expect
    .poll(async () => Number(await card.locator("progress").getAttribute("value")))
    .toBeGreaterThan(0);
  await page.screenshot({ path: testInfo.outputPath("uploading.png"), fullPage: true });
  await card.getByRole("button", { name: "Cancel" }).click();
  await expect(card).toHaveAttribute("data-status", "cancelled");
  await expect(card.locator(".state")).toHaveText("Cancelled");
  await expect(card.getByRole("button", { name: "Cancel" })).toHaveCount(0);
  await page.screenshot({ path: testInfo.outputPath("cancelled.png"), fullPage: true });

  const id = (await card.locator(".job-id code").textContent())!.trim();
  const status = await (await request.get(`/api/status/${id}`, { headers: AUTH })).json();
  expect(status.status).toBe("cancelled");
  expect(status.sha256).toBeNull();
  const tmp = join("..", "target", "e2e-data", "tmp");
  await expect.poll(() => existsSync(tmp) && readdirSync(tmp).some((f) => f.startsWith(id))).toBe(false);
});

test("a browser upload survives a dropped network and a page reload, to the right SHA-256", async ({
  page,
  signIn,
  request,
}, testInfo) => {
  const MiB = 1024 * 1024;
  const path = testInfo.outputPath("résumé ü.bin"); // a name beyond ASCII goes through btoa
  const digest = randomFile(path, 40 * MiB); // ten PATCHes of up to 4 MiB
  await signIn();
  const cdp = await page.context().newCDPSession(page);
  const network = (offline: boolean) =>
    cdp.send("Network.emulateNetworkConditions", {
      offline,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: 8 * MiB,
    });
  await network(false);
  // The page asks the server's offset (HEAD) only when a chunk failed.
  const offsetQueries: string[] = [];
  page.on("request", (r) => {
    if (r.method() === "HEAD" && r.url().includes("/api/uploads/")) offsetQueries.push(r.url());
  });
  let failedChunks = 0;
  page.on("requestfailed", (r) => {
    if (r.method() === "PATCH" && r.url().includes("/api/uploads/")) failedChunks += 1;
  });
  const picker = page.getByLabel("Choose files (optional)");
  await picker.setInputFiles(path);
  await page.getByRole("button", { name: "Start ingest" }).click();
  const card = page.locator(".job").first();
  await expect(card.locator(".state")).toHaveText(/^Uploading /);
  await expect(card.locator(".filename")).toHaveText("résumé ü.bin");
  const id = (await card.locator(".job-id code").textContent())!.trim();
  const durable = async () =>
    Number(
      (await request.head(`/api/uploads/${id}`, { headers: { ...AUTH, "Tus-Resumable": "1.0.0" } })).headers()[
        "upload-offset"
      ],
    );

  // The network drops mid-chunk, then comes back: the page carries on from the server's offset.
  await expect.poll(() => card.locator("progress").getAttribute("value").then(Number)).toBeGreaterThan(10);
  await network(true);
  // Offline until a chunk has actually failed (in flight, or the next one).
  await expect.poll(() => failedChunks, { timeout: 15_000 }).toBeGreaterThan(0);
  await expect.poll(durable, { timeout: 15_000 }).toBeGreaterThan(0);
  await page.screenshot({ path: testInfo.outputPath("offline.png"), fullPage: true });
  await network(false);
  // The page noticed and asked the server where to go on from (after a jittered wait).
  await expect.poll(() => offsetQueries.length, { timeout: 15_000 }).toBeGreaterThan(0);
  await expect.poll(durable, { timeout: 30_000 }).toBeGreaterThanOrEqual(16 * MiB);

  // A reload mid-upload: choosing the same file again continues the same job.
  await page.reload();
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  const kept = await durable();
  expect(kept).toBeGreaterThanOrEqual(16 * MiB);
  expect(kept).toBeLessThan(40 * MiB);
  await picker.setInputFiles(path);
  await page.getByRole("button", { name: "Start ingest" }).click();
  const resumed = page.locator(".job").first();
  await expect(resumed.locator(".job-id code")).toHaveText(id);
  await expect(resumed).toHaveAttribute("data-status", "completed", { timeout: 30_000 });
  await expect(resumed.locator(".digest")).toHaveText(digest);
  await page.screenshot({ path: testInfo.outputPath("resumed.png"), fullPage: true });
});
