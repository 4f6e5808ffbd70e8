// The page's first-load budget (issue 16): a signed-in first visit of the Start page fetches at
// most 200 KB of wasm and JS once brotli-compressed (what a CDN would serve), and none of the
// code that sends files; that code (the uploads' wasm part) comes when the first file is queued.
import { expect, test } from "./fixtures";
import { Page, Response, TestInfo } from "@playwright/test";
import { BASE_URL } from "./env";
import { createHash, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { brotliCompressSync, constants } from "node:zlib";

const BUDGET_BYTES = 200_000;

/** Brotli at quality 11, the size a server or CDN precompressing the assets would send. */
function brotliSize(body: Buffer): number {
  return brotliCompressSync(body, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 11,
      [constants.BROTLI_PARAM_LGWIN]: 24,
      [constants.BROTLI_PARAM_SIZE_HINT]: body.length,
    },
  }).length;
}

/** Every wasm and JS file of the app that `page` fetches from now on. */
function recordCode(page: Page): Response[] {
  const seen: Response[] = [];
  page.on("response", (response) => {
    const url = new URL(response.url());
    if (url.origin === new URL(BASE_URL).origin && /\.(wasm|js)$/.test(url.pathname)) {
      seen.push(response);
    }
  });
  return seen;
}

const pathOf = (response: Response) => new URL(response.url()).pathname;

test("a first visit fetches at most 200 KB brotli of wasm and JS, and the upload code only with the first file", async ({
  browser,
  context,
  signIn,
}, testInfo) => {
  await signIn();
  // A first visit, signed in: a context of its own (an empty cache) with this one's session.
  const visit = await browser.newContext({ storageState: await context.storageState() });
  try {
    await firstVisit(await visit.newPage(), testInfo);
  } finally {
    await visit.close();
  }
});

async function firstVisit(page: Page, testInfo: TestInfo) {
  const code = recordCode(page);
  await page.goto("/");
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  await expect(page.getByRole("button", { name: "Start ingest" })).toBeEnabled();

  const byPath = new Map(code.map((response) => [pathOf(response), response]));
  const first = await Promise.all(
    [...byPath].map(async ([path, response]) => ({ path, body: await response.body() })),
  );
  const sizes = first.map(({ path, body }) => ({ path, raw: body.length, brotli: brotliSize(body) }));
  const total = sizes.reduce((sum, file) => sum + file.brotli, 0);
  const report = testInfo.outputPath("first-load.json");
  writeFileSync(report, JSON.stringify({ sizes, total, budget: BUDGET_BYTES }, null, 2));
  await testInfo.attach("first-load", { path: report, contentType: "application/json" });
  expect(sizes.map((file) => file.path)).toContain("/pkg/ingest.wasm");
  expect(sizes.some((file) => file.path.includes("uploads")), "the upload code is not in the first load").toBe(false);
  expect(total, `first load ${total} bytes brotli: ${JSON.stringify(sizes)}`).toBeLessThanOrEqual(BUDGET_BYTES);

  // The first file brings the uploads' part, and the file goes up to its digest.
  const before = code.length;
  const path = testInfo.outputPath("first.bin");
  const data = randomBytes(64 * 1024);
  writeFileSync(path, data);
  await page.locator("#file").setInputFiles(path);
  await page.getByRole("button", { name: "Start ingest" }).click();
  const uploaded = page.locator(".uploads .job").filter({ hasText: "first.bin" });
  await expect(uploaded).toHaveAttribute("data-status", "completed", { timeout: 20_000 });
  await expect(uploaded.locator(".digest")).toHaveText(createHash("sha256").update(data).digest("hex"));
  await expect(uploaded.locator(".verdict")).toHaveAttribute("data-verified", "true");
  const later = code.slice(before).map(pathOf);
  expect(later.some((path) => path.includes("uploads")), `fetched after the first file: ${later}`).toBe(true);
}

test("a wasm part that cannot be fetched is said in words; the uploads' part can be fetched again", async ({
  page,
  signIn,
}) => {
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await signIn();

  // The uploads' part fails once: the page says so, and "try again" fetches it.
  let refused = 0;
  await page.route("**/pkg/split_uploads.wasm", async (route) => {
    refused += 1;
    await route.abort("connectionfailed");
  });
  await page.getByLabel("Metadata (optional JSON object)").fill('{"part": "refused"}');
  await page.getByRole("button", { name: "Start ingest" }).click();
  const problem = page.getByRole("alert").filter({ hasText: "could not load what sends your files" });
  await expect(problem).toBeVisible();
  expect(refused).toBeGreaterThan(0);
  await page.unroute("**/pkg/split_uploads.wasm");
  await problem.getByRole("button", { name: "try again" }).click();
  const card = page.locator(".job").first();
  await expect(card).toHaveAttribute("data-status", "completed", { timeout: 20_000 });
  await expect(problem).toHaveCount(0);

  // A page whose part cannot be fetched stays as the server rendered it, with a notice.
  await page.route("**/pkg/split_history.wasm", (route) => route.abort("connectionfailed"));
  await page.goto("/jobs");
  await expect(page.getByRole("alert")).toContainText("This page could not load its code");
  await expect(page.locator(".history-row").first()).toBeVisible();
  await expect(page.locator("[data-hydrated=true]")).toHaveCount(0);
  // No wasm abort ("unreachable"). The one error allowed is the refused fetch itself: the loader
  // cargo-leptos generates (`__wasm_split.….js`) starts a part's own fetch before its chunks and
  // only awaits it after them, so the browser reports its rejection as unhandled meanwhile;
  // the wasm still gets the failure, as the notices above show.
  expect(errors.filter((error) => error !== "Failed to fetch")).toEqual([]);
});
