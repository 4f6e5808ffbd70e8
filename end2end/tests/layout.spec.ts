import { expect, Page, test } from "@playwright/test";
import { TOKEN } from "./env";

async function overflowX(page: Page): Promise<number> {
  return page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
}

test("at 360 px, by keyboard alone: sign in, start an ingest, watch it complete; focus is visible", async ({
  page,
}, testInfo) => {
  await page.setViewportSize({ width: 360, height: 780 });
  await page.goto("/");
  await expect(page.locator("[data-hydrated=true]")).toBeVisible();
  await page.getByLabel("API token").focus();
  await page.keyboard.type(TOKEN);
  await page.keyboard.press("Enter");
  const start = page.getByRole("button", { name: "Start ingest" });
  await expect(start).toBeVisible();

  // The file chooser is reachable by Tab, and so is everything after it.
  await page.locator("header .brand").focus();
  const reached: string[] = [];
  for (let i = 0; i < 16; i++) {
    await page.keyboard.press("Tab");
    reached.push(await page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName || ""));
  }
  expect(reached).toEqual(expect.arrayContaining(["file", "folder", "metadata", "start"]));

  await page.getByLabel("Metadata (optional JSON object)").focus();
  await page.keyboard.type('{"keyboard": true}');
  await page.keyboard.press("Tab");
  await expect(start).toBeFocused();
  expect(await start.evaluate((el) => getComputedStyle(el).outlineStyle)).toBe("solid");
  await page.keyboard.press("Enter");
  const card = page.locator(".job").first();
  await expect(card).toHaveAttribute("data-status", "completed", { timeout: 20_000 });
  expect(await overflowX(page)).toBeLessThanOrEqual(0);
  await page.screenshot({ path: testInfo.outputPath("narrow-home.png"), fullPage: true });

  await page.goto("/jobs");
  await expect(page.locator(".history-row").first()).toBeVisible();
  expect(await overflowX(page)).toBeLessThanOrEqual(0);
  await page.screenshot({ path: testInfo.outputPath("narrow-history.png"), fullPage: true });
});

test("dark mode follows the system, and unknown pages say so with a 404", async ({ page }, testInfo) => {
  await page.emulateMedia({ colorScheme: "dark" });
  const response = await page.goto("/no/such/page");
  expect(response?.status()).toBe(404);
  await expect(page.getByRole("heading", { name: "Page not found" })).toBeVisible();
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  expect(background).toBe("rgb(17, 20, 24)");
  await page.screenshot({ path: testInfo.outputPath("dark-not-found.png"), fullPage: true });
});
