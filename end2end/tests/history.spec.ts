// The history people can use: it updates by itself while another browser uploads, finds a job
// by its metadata, filters without navigating, and the job page shows times, metadata,
// download and Delete.
import { expect, signInOn, test } from "./fixtures";
import { TOKEN } from "./env";

test("the history updates live while another browser uploads, and finds a job by its metadata", async ({
  page,
  browser,
  signIn,
}, testInfo) => {
  await signIn();
  await page.goto("/jobs");
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  // A mark in this document: it is still there at the end only if nothing loaded a new page.
  await page.evaluate(() => ((window as any).__samePage = true));

  // Someone else (another browser context, signed in on its own) uploads a file.
  const other = await browser.newContext();
  const uploader = await other.newPage();
  await signInOn(uploader);
  const marker = `zephyr-${Date.now()}`;
  await uploader.getByLabel("Choose files (optional)").setInputFiles({
    name: "notes.txt",
    mimeType: "text/plain",
    buffer: Buffer.from("hello from the other browser"),
  });
  await uploader.getByLabel("Metadata (optional JSON object)").fill(JSON.stringify({ project: marker }));
  await uploader.getByRole("button", { name: "Start ingest" }).click();
  const id = (await uploader.locator(".uploads .job .job-id code").textContent({ timeout: 10_000 }))!.trim();

  // The first page shows it without a reload, and then completed.
  const row = page.locator(".history-row").filter({ hasText: id });
  await expect(row).toHaveCount(1, { timeout: 15_000 });
  await expect(row.locator(".badge")).toHaveText("Completed", { timeout: 20_000 });
  await expect(row).toContainText(marker);

  // Search by metadata text, and filter by state, in place.
  await page.getByLabel("Search").fill(marker);
  await expect(page.locator(".history-row")).toHaveCount(1);
  await expect(page).toHaveURL(new RegExp(`q=${marker}`));
  await page.getByLabel("Status").selectOption("failed");
  await expect(page.locator(".history-row")).toHaveCount(0);
  await page.getByLabel("Status").focus();
  await page.keyboard.press("ArrowUp");
  await page.getByLabel("Status").selectOption("completed");
  await expect(page.locator(".history-row")).toHaveCount(1);
  expect(await page.evaluate(() => (window as any).__samePage)).toBe(true);
  await page.screenshot({ path: testInfo.outputPath("history-search.png"), fullPage: true });

  // The job page: times, metadata, download, and Delete.
  await row.getByRole("link").click();
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  await expect(page.locator(".job .filename")).toHaveText("notes.txt");
  await expect(page.locator(".times .created")).toHaveText(/UTC$/);
  await expect(page.locator(".times .updated")).toHaveText(/UTC$/);
  await expect(page.locator(".job .metadata pre")).toContainText(marker);
  await expect(page.getByRole("link", { name: "Download" })).toHaveAttribute("href", `/api/jobs/${id}/content`);
  await page.screenshot({ path: testInfo.outputPath("job-page.png"), fullPage: true });
  await page.getByRole("button", { name: "Delete…" }).click();
  await page.getByRole("button", { name: "Delete", exact: true }).click();
  await expect(page.getByRole("status").filter({ hasText: "Deleted" })).toBeVisible();
  const gone = await page.request.get(`/api/status/${id}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  expect(gone.status()).toBe(404);
  await other.close();
});
