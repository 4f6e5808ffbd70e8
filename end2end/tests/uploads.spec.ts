// The Start page for people who upload a lot: many files through a queue, folders with their
// paths, pause and resume, retry, cancel whatever the timing, leaving mid-upload and resuming,
// and end-to-end digests (a damaged chunk is refused, a good file is "verified").
import { expect, test } from "./fixtures";
import { Page } from "@playwright/test";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TOKEN } from "./env";

const AUTH = { Authorization: `Bearer ${TOKEN}` };
const MiB = 1024 * 1024;

function randomFile(path: string, bytes: number): string {
  const data = randomBytes(bytes);
  writeFileSync(path, data);
  return createHash("sha256").update(data).digest("hex");
}

/** Slows the page's uplink to `bytesPerSecond` (CDP network emulation). */
async function throttle(page: Page, bytesPerSecond: number) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond,
  });
  return cdp;
}

const card = (page: Page, title: string) => page.locator(".uploads .job").filter({ has: page.locator(".filename", { hasText: title }) });

/** Clicks an interrupted upload's "Resume" and picks `path` in the file chooser it opens. */
async function resumeWith(page: Page, name: string, path: string) {
  const chooser = page.waitForEvent("filechooser");
  await page.getByRole("button", { name: `Resume ${name}` }).click();
  await (await chooser).setFiles(path);
}

/** The resumed upload's card: the same job, completed, its digest verified end to end. */
async function expectContinuedAndVerified(page: Page, name: string, id: string, digest: string) {
  const resumed = card(page, name);
  await expect(resumed.locator(".job-id code")).toHaveText(id);
  await expect(resumed).toHaveAttribute("data-status", "completed", { timeout: 40_000 });
  await expect(resumed.locator(".digest")).toHaveText(digest);
  await expect(resumed.locator(".verdict")).toHaveAttribute("data-verified", "true");
}
const jobIdOf = async (page: Page, title: string) =>
  (await card(page, title).locator(".job-id code").textContent())!.trim();

test("50 files dropped at once all complete, each verified, with the overall bar, rate and time left", async ({
  page,
  signIn,
}, testInfo) => {
  test.setTimeout(180_000);
  await signIn();
  // Dropped as a person would: one drop event carrying 50 files.
  await page.evaluate(() => {
    const transfer = new DataTransfer();
    for (let i = 0; i < 50; i++) {
      const bytes = new Uint8Array(150_000 + i * 1000);
      for (let at = 0; at < bytes.length; at += 65536) {
        crypto.getRandomValues(bytes.subarray(at, Math.min(bytes.length, at + 65536)));
      }
      transfer.items.add(new File([bytes], `file-${String(i).padStart(2, "0")}.bin`));
    }
    const zone = document.querySelector(".drop-zone")!;
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
  });
  await expect(page.locator("#chosen-file")).toContainText("50 files chosen");
  // The native control never claims "No file chosen": it is replaced by the list.
  await expect(page.locator(".chosen-files li")).toHaveCount(50);
  await throttle(page, 1 * MiB);
  await page.getByRole("button", { name: "Start ingest" }).click();
  await expect(page.locator(".uploads .job")).toHaveCount(50);
  // Three at a time by default.
  await expect.poll(() => page.locator('.uploads .job[data-phase="sending"]').count()).toBeLessThanOrEqual(3);
  await expect(page.locator('.uploads .job[data-phase="waiting"]').first()).toBeVisible();
  await expect(page.getByRole("progressbar", { name: "All uploads" })).toBeVisible();
  await expect(page.locator("#overall")).toHaveText(/ of 50 files uploaded · .* of .* · .*\/s · .* left$/, {
    timeout: 20_000,
  });
  await page.screenshot({ path: testInfo.outputPath("fifty-uploading.png"), fullPage: true });
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await expect(page.locator('.uploads .job[data-status="completed"]')).toHaveCount(50, { timeout: 150_000 });
  await expect(page.locator('.uploads .verdict[data-verified="true"]')).toHaveCount(50);
  await expect(page.locator("#overall")).toContainText("50 of 50 files uploaded");
  await page.screenshot({ path: testInfo.outputPath("fifty-done.png"), fullPage: true });
});

test("a folder, chosen or dropped, keeps each file's relative path in its metadata", async ({
  page,
  signIn,
  request,
}, testInfo) => {
  const root = testInfo.outputPath("photos");
  mkdirSync(join(root, "2026", "june"), { recursive: true });
  writeFileSync(join(root, "a.txt"), "top");
  writeFileSync(join(root, "2026", "june", "b.txt"), "deep");
  await signIn();
  await page.locator("#folder").setInputFiles(root);
  await expect(page.locator(".chosen-files")).toContainText("photos/2026/june/b.txt");
  await page.getByLabel("Metadata (optional JSON object)").fill('{"album": "summer"}');
  await page.getByRole("button", { name: "Start ingest" }).click();
  const deep = card(page, "photos/2026/june/b.txt");
  await expect(deep).toHaveAttribute("data-status", "completed", { timeout: 30_000 });
  const id = await jobIdOf(page, "photos/2026/june/b.txt");
  const status = await (await request.get(`/api/status/${id}`, { headers: AUTH })).json();
  expect(status.metadata).toEqual({ path: "photos/2026/june/b.txt", album: "summer" });
  await expect(deep.locator(".metadata pre")).toContainText('"path":"photos/2026/june/b.txt"');

  // A dropped folder is walked through the entries API (given here as plain objects).
  await page.evaluate(() => {
    const file = (name: string, text: string, fullPath: string) => ({
      isFile: true,
      isDirectory: false,
      name,
      fullPath,
      file: (ok: (f: File) => void) => ok(new File([text], name)),
    });
    const folder = (name: string, fullPath: string, children: unknown[]) => ({
      isFile: false,
      isDirectory: true,
      name,
      fullPath,
      createReader: () => {
        let given = false;
        return {
          readEntries: (ok: (entries: unknown[]) => void) => {
            ok(given ? [] : children);
            given = true;
          },
        };
      },
    });
    const tree = folder("drop", "/drop", [
      file("c.txt", "c", "/drop/c.txt"),
      folder("inner", "/drop/inner", [file("d.txt", "d", "/drop/inner/d.txt")]),
    ]);
    const event = new Event("drop", { bubbles: true, cancelable: true });
    Object.defineProperty(event, "dataTransfer", {
      value: { items: { length: 1, 0: { kind: "file", webkitGetAsEntry: () => tree } }, files: [] },
    });
    document.querySelector(".drop-zone")!.dispatchEvent(event);
  });
  await expect(page.locator(".chosen-files li")).toHaveCount(2);
  await expect(page.locator(".chosen-files")).toContainText("drop/inner/d.txt");
  await page.getByRole("button", { name: "Remove drop/c.txt" }).click();
  await expect(page.locator(".chosen-files li")).toHaveCount(1);
  await page.getByRole("button", { name: "Start ingest" }).click();
  await expect(card(page, "drop/inner/d.txt")).toHaveAttribute("data-status", "completed", { timeout: 30_000 });
  const dropped = await jobIdOf(page, "drop/inner/d.txt");
  const droppedStatus = await (await request.get(`/api/status/${dropped}`, { headers: AUTH })).json();
  expect(droppedStatus.metadata.path).toBe("drop/inner/d.txt");
  await page.screenshot({ path: testInfo.outputPath("folders.png"), fullPage: true });
});

test("a paused upload resumes from the server's offset and ends verified", async ({ page, signIn, request }, testInfo) => {
  const path = testInfo.outputPath("pause.bin");
  const digest = randomFile(path, 12 * MiB);
  await signIn();
  await throttle(page, 2 * MiB);
  await page.getByLabel("Choose files (optional)").setInputFiles(path);
  await page.getByRole("button", { name: "Start ingest" }).click();
  const upload = card(page, "pause.bin");
  await expect(upload).toHaveAttribute("data-phase", "sending");
  const id = await jobIdOf(page, "pause.bin");
  // While sending: percentage, rate and time left on the card.
  await expect(upload.locator(".rate")).toHaveText(/^\d+% · .*\/s · .* left$/);
  const durable = async () =>
    Number((await request.head(`/api/uploads/${id}`, { headers: { ...AUTH, "Tus-Resumable": "1.0.0" } })).headers()["upload-offset"]);
  // Past the first 4 MiB chunk, so the server holds some of it.
  await expect.poll(durable, { timeout: 20_000 }).toBeGreaterThan(0);
  await upload.getByRole("button", { name: "Pause" }).click();
  await expect(upload).toHaveAttribute("data-phase", "paused");
  await expect(upload.locator(".state")).toHaveText(/^Paused at /);
  const held = await durable();
  expect(held).toBeGreaterThan(0);
  await page.screenshot({ path: testInfo.outputPath("paused.png"), fullPage: true });
  const resumedPatch = page.waitForRequest((r) => r.method() === "PATCH" && r.url().includes(id));
  const asked = page.waitForRequest((r) => r.method() === "HEAD" && r.url().includes(id));
  await upload.getByRole("button", { name: "Resume" }).click();
  await asked;
  expect(Number((await resumedPatch).headers()["upload-offset"])).toBe(held);
  await expect(upload.locator(".resumed")).toBeVisible();
  await expect(upload).toHaveAttribute("data-status", "completed", { timeout: 40_000 });
  await expect(upload.locator(".digest")).toHaveText(digest);
  await expect(upload.locator(".verdict")).toHaveAttribute("data-verified", "true");
});

test("bytes damaged on the way are refused and shown so; Retry sends them again and it completes", async ({
  page,
  signIn,
}, testInfo) => {
  const path = testInfo.outputPath("damaged.bin");
  const digest = randomFile(path, 5 * MiB);
  await signIn();
  let damaged = 0;
  // Flip one byte of the first PATCH body on its way to the server.
  await page.route("**/api/uploads/*", async (route) => {
    const request = route.request();
    if (request.method() === "PATCH" && damaged === 0) {
      damaged += 1;
      const body = Buffer.from(request.postDataBuffer()!);
      body[1000] ^= 0xff;
      await route.continue({ postData: body });
    } else {
      await route.continue();
    }
  });
  await page.getByLabel("Choose files (optional)").setInputFiles(path);
  await page.getByRole("button", { name: "Start ingest" }).click();
  const upload = card(page, "damaged.bin");
  await expect(upload).toHaveAttribute("data-status", "failed", { timeout: 20_000 });
  await expect(upload.locator(".reason")).toContainText("damaged on the way");
  await page.screenshot({ path: testInfo.outputPath("damaged.png"), fullPage: true });
  expect(damaged).toBe(1);
  await upload.getByRole("button", { name: "Retry" }).click();
  await expect(upload).toHaveAttribute("data-status", "completed", { timeout: 30_000 });
  await expect(upload.locator(".digest")).toHaveText(digest);
  await expect(upload.locator(".verdict")).toHaveAttribute("data-verified", "true");
});

test("cancel under a throttled connection always ends the card in Cancelled, at any moment", async ({
  page,
  signIn,
  request,
}, testInfo) => {
  test.setTimeout(150_000);
  const path = testInfo.outputPath("cancel.bin");
  randomFile(path, 6 * MiB);
  await signIn();
  await throttle(page, 512 * 1024);
  for (let round = 0; round < 10; round++) {
    await page.getByLabel("Choose files (optional)").setInputFiles(path);
    await page.getByRole("button", { name: "Start ingest" }).click();
    const upload = page.locator(".uploads .job").last();
    // Cancel at a different moment each round: at once (the job may not exist yet), then
    // later and later into the upload.
    if (round > 0) await page.waitForTimeout(round * 250);
    await upload.getByRole("button", { name: "Cancel" }).click();
    await expect(upload).toHaveAttribute("data-status", "cancelled", { timeout: 15_000 });
    await expect(upload.locator(".state")).toHaveText("Cancelled");
    await expect(upload.getByRole("button", { name: "Cancel" })).toHaveCount(0);
    const ids = await upload.locator(".job-id code").allTextContents();
    for (const id of ids.map((text) => text.trim())) {
      const status = await (await request.get(`/api/status/${id}`, { headers: AUTH })).json();
      expect(status.status).toBe("cancelled");
    }
    await upload.getByRole("button", { name: "Remove" }).click();
  }
  await page.screenshot({ path: testInfo.outputPath("cancelled.png"), fullPage: true });
});

test("leaving mid-upload warns; back on the page, Resume continues the same job; Discard ends one", async ({
  page,
  signIn,
  request,
}, testInfo) => {
  const path = testInfo.outputPath("leave.bin");
  const digest = randomFile(path, 12 * MiB);
  const other = testInfo.outputPath("other.bin");
  randomFile(other, 12 * MiB);
  await signIn();
  await throttle(page, 2 * MiB);
  await page.getByLabel("Choose files (optional)").setInputFiles([path, other]);
  await page.getByRole("button", { name: "Start ingest" }).click();
  await expect(card(page, "leave.bin")).toHaveAttribute("data-phase", "sending");
  await expect(card(page, "other.bin")).toHaveAttribute("data-phase", "sending");
  const id = await jobIdOf(page, "leave.bin");
  const otherId = await jobIdOf(page, "other.bin");
  await expect
    .poll(async () => Number(await card(page, "leave.bin").locator("progress").getAttribute("value")))
    .toBeGreaterThan(0);

  let warned = "";
  page.once("dialog", async (dialog) => {
    warned = dialog.type();
    await dialog.accept();
  });
  await page.reload();
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  expect(warned).toBe("beforeunload");

  const list = page.locator(".interrupted");
  await expect(list).toContainText("leave.bin");
  await expect(list).toContainText("other.bin");
  await page.screenshot({ path: testInfo.outputPath("interrupted.png"), fullPage: true });

  // A different file is not taken for the one to resume.
  await resumeWith(page, "leave.bin", other);
  await expect(list.getByRole("alert")).toContainText("not the same file");

  await resumeWith(page, "leave.bin", path);
  await expectContinuedAndVerified(page, "leave.bin", id, digest);

  await page.getByRole("button", { name: "Discard other.bin" }).click();
  await expect(list).toHaveCount(0);
  const gone = await request.head(`/api/uploads/${otherId}`, { headers: { ...AUTH, "Tus-Resumable": "1.0.0" } });
  expect(gone.status()).toBeGreaterThanOrEqual(400);
});

test("Resume refuses a file with the same name, size and time but other bytes; the right one goes on and is verified", async ({
  page,
  signIn,
  request,
}, testInfo) => {
  // Two files the fingerprint cannot tell apart: same name, size and modification time.
  const path = testInfo.outputPath("resume.bin");
  const digest = randomFile(path, 12 * MiB);
  mkdirSync(testInfo.outputPath("elsewhere"), { recursive: true });
  const imposter = testInfo.outputPath("elsewhere/resume.bin");
  randomFile(imposter, 12 * MiB);
  const time = new Date("2026-01-02T03:04:05Z");
  utimesSync(path, time, time);
  utimesSync(imposter, time, time);

  await signIn();
  await throttle(page, 2 * MiB);
  await page.getByLabel("Choose files (optional)").setInputFiles(path);
  await page.getByRole("button", { name: "Start ingest" }).click();
  await expect(card(page, "resume.bin")).toHaveAttribute("data-phase", "sending");
  const id = await jobIdOf(page, "resume.bin");
  const offset = async () => {
    const head = await request.head(`/api/uploads/${id}`, { headers: { ...AUTH, "Tus-Resumable": "1.0.0" } });
    return Number(head.headers()["upload-offset"]);
  };
  await expect.poll(offset, { timeout: 20_000 }).toBeGreaterThan(0);
  page.once("dialog", (dialog) => dialog.accept());
  await page.reload();
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  const list = page.locator(".interrupted");
  await expect(list).toContainText("resume.bin");
  // The last PATCH before the reload may still be landing: wait until the offset holds still.
  let held = await offset();
  await expect
    .poll(async () => held === (held = await offset()), { intervals: [500], timeout: 10_000 })
    .toBe(true);
  expect(held).toBeLessThan(12 * MiB);

  const patches: number[] = [];
  page.on("request", (r) => {
    if (r.method() === "PATCH" && r.url().includes(id)) patches.push(Number(r.headers()["upload-offset"]));
  });
  await resumeWith(page, "resume.bin", imposter);
  const refusal = list.getByRole("alert");
  await expect(refusal).toContainText("not the same file");
  await expect(refusal).toContainText("differ from what was sent");
  // Refused before anything was queued or sent: the job waits where it was.
  await expect(page.locator(".uploads .job")).toHaveCount(0);
  expect(patches).toEqual([]);
  expect(await offset()).toBe(held);
  await page.screenshot({ path: testInfo.outputPath("resume-refused.png"), fullPage: true });

  await resumeWith(page, "resume.bin", path);
  await expectContinuedAndVerified(page, "resume.bin", id, digest);
  // It went on from the server's offset, not from the start.
  expect(patches[0]).toBe(held);
  await expect(list).toHaveCount(0);
});

test("without the hashing worker (its script unreachable), files still go up, unverified", async ({
  page,
  signIn,
}, testInfo) => {
  await page.route("**/hash-worker.js", (route) => route.abort("connectionfailed"));
  await signIn();
  const path = testInfo.outputPath("no-worker.bin");
  const digest = randomFile(path, 9 * MiB);
  await page.getByLabel("Choose files (optional)").setInputFiles(path);
  await page.getByRole("button", { name: "Start ingest" }).click();
  const upload = card(page, "no-worker.bin");
  await expect(upload).toHaveAttribute("data-status", "completed", { timeout: 30_000 });
  await expect(upload.locator(".digest")).toHaveText(digest);
  await expect(upload.locator(".verdict")).toHaveText("Not verified: the hashing worker could not start");
  await expect(upload.locator(".verdict")).toHaveAttribute("data-verified", "false");
});

test("the browser's SHA-256 (wasm, in the worker): its speed and its cost to an upload are measured", async ({
  context,
  signIn,
}, testInfo) => {
  test.setTimeout(180_000);
  const size = 64 * MiB;
  await signIn();
  // Timed from Start until every byte is on the server (the card's phase "sent"), not until
  // "Completed": the test server holds each job in processing on purpose, which would only
  // dilute the difference.
  // Alternating, so neither side always runs on a warmer machine. Without hashing: the page
  // cannot make workers (an init script; a route would put every PATCH through Playwright's
  // interception and slow it), so every hash is refused at once, chunks go without
  // `Upload-Checksum` and the file is not verified.
  const runs: { hashing: boolean; uploadMs: number; hashMs?: number }[] = [];
  for (const hashing of [false, true, false, true]) {
    const tab = await context.newPage();
    if (!hashing) {
      await tab.addInitScript(() => {
        (window as unknown as { Worker: unknown }).Worker = class {
          constructor() {
            throw new Error("no workers here");
          }
        };
      });
    }
    await tab.goto("/");
    await expect(tab.locator("[data-hydrated=true]")).toBeVisible();
    const name = `speed-${runs.length}.bin`;
    const path = testInfo.outputPath(name);
    const digest = randomFile(path, size);
    await tab.getByLabel("Choose files (optional)").setInputFiles(path);
    const started = Date.now();
    await tab.getByRole("button", { name: "Start ingest" }).click();
    const upload = card(tab, name);
    await expect(upload).toHaveAttribute("data-phase", "sent", { timeout: 60_000 });
    const uploadMs = Date.now() - started;
    await expect(upload).toHaveAttribute("data-status", "completed", { timeout: 60_000 });
    await expect(upload.locator(".digest")).toHaveText(digest);
    if (!hashing) {
      await expect(upload.locator(".verdict")).toHaveText("Not verified: the hashing worker could not start");
      runs.push({ hashing, uploadMs });
    } else {
      await expect(upload.locator(".verdict")).toHaveAttribute("data-verified", "true", { timeout: 60_000 });
      const text = (await upload.locator(".verdict").textContent())!;
      const match = text.match(/hashed here in ([\d.]+) (ms|s)/);
      expect(match, text).not.toBeNull();
      runs.push({ hashing, uploadMs, hashMs: Number(match![1]) * (match![2] === "s" ? 1000 : 1) });
    }
    await tab.close();
  }
  // Reported for the README (figures, not asserted: this machine is shared and noisy).
  const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length;
  const hashed = runs.filter((run) => run.hashing);
  const plain = runs.filter((run) => !run.hashing);
  const hashRate = size / 1e6 / (mean(hashed.map((run) => run.hashMs!)) / 1000);
  const withHash = size / 1e6 / (mean(hashed.map((run) => run.uploadMs)) / 1000);
  const without = size / 1e6 / (mean(plain.map((run) => run.uploadMs)) / 1000);
  const summary =
    `hash: ${hashRate.toFixed(0)} MB/s; Start to every byte sent: ${withHash.toFixed(0)} MB/s hashing, ` +
    `${without.toFixed(0)} MB/s without (ratio ${(withHash / without).toFixed(2)}); runs ${JSON.stringify(runs)}`;
  console.log(summary);
  testInfo.annotations.push({ type: "hashing", description: summary });
});
