// axe-core on every page, in both themes: no serious or critical violation (contrast included).
import AxeBuilder from "@axe-core/playwright";
import { expect, test } from "./fixtures";
import { Page } from "@playwright/test";
import { TOKEN } from "./env";

async function serious(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

for (const scheme of ["light", "dark"] as const) {
  test(`no serious accessibility violation on any page (${scheme})`, async ({ page, signIn, request }, testInfo) => {
    await page.emulateMedia({ colorScheme: scheme });
    const accepted = await request.post("/api/ingest", {
      headers: { Authorization: `Bearer ${TOKEN}` },
      data: { metadata: { a11y: scheme } },
    });
    const { job_id } = await accepted.json();

    // Signed out: the sign-in form.
    await page.goto("/");
    await expect(page.locator("[data-hydrated=true]")).toBeVisible();
    expect(await serious(page), "/ signed out").toEqual([]);
    await page.goto("/jobs");
    await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
    expect(await serious(page), "/jobs signed out").toEqual([]);

    await page.goto("/");
    await signIn();
    // After signing in, focus is on the app, not lost on the page's body.
    expect(await page.evaluate(() => document.activeElement?.id)).toBe("start-title");
    await page.getByLabel("Choose files (optional)").setInputFiles({
      name: "a11y.txt",
      mimeType: "text/plain",
      buffer: Buffer.from("accessible"),
    });
    await page.getByRole("button", { name: "Start ingest" }).click();
    await expect(page.locator(".uploads .job")).toHaveAttribute("data-status", "completed", { timeout: 20_000 });
    await page.getByLabel("Metadata (optional JSON object)").fill("{");
    expect(await serious(page), "/ with a card").toEqual([]);
    await page.screenshot({ path: testInfo.outputPath(`home-${scheme}.png`), fullPage: true });

    for (const path of ["/jobs", `/jobs/${job_id}`, "/accounts", "/webhooks", "/no/such/page"]) {
      await page.goto(path);
      await expect(page.locator("[data-hydrated=true]")).toBeVisible();
      await page.waitForLoadState("networkidle").catch(() => {});
      expect(await serious(page), path).toEqual([]);
      await page.screenshot({ path: testInfo.outputPath(`${path.split("/")[1] || "home"}-${path.length}-${scheme}.png`), fullPage: true });
    }
    // The favicon is served (no 404 on every page).
    expect((await page.request.get("/favicon.svg")).status()).toBe(200);
  });
}
